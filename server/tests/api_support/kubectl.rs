//! The real `kubectl` against a test [`Server`], with its own cache directory.

use std::path::Path;
use std::process::Output;

use super::Server;

/// Runs kubectl with the server's admin kubeconfig.
pub struct Kubectl<'a> {
    pub server: &'a Server,
    pub dir: &'a Path,
}

impl Kubectl<'_> {
    pub async fn run(&self, args: &[&str]) -> Output {
        tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.server.data_dir.join("admin.kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.join("kube-cache"))
            .args(args)
            .output()
            .await
            .unwrap()
    }

    /// Runs kubectl and returns stdout; panics with stderr on failure.
    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "kubectl {args:?} failed: {stderr}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl expecting failure and returns stderr.
    pub async fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(!out.status.success(), "kubectl {args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Writes `manifest` to `manifest.yaml` in the test directory and returns its path.
    pub fn manifest(&self, manifest: &str) -> String {
        let path = self.dir.join("manifest.yaml");
        std::fs::write(&path, manifest).unwrap();
        path.to_str().unwrap().to_owned()
    }

    /// `kubectl apply -f` of `manifest`.
    pub async fn apply(&self, manifest: &str) -> Output {
        let path = self.manifest(manifest);
        self.run(&["apply", "-f", &path]).await
    }
}

/// Fails the test when kubectl is missing: a skipped check is not a passed one.
pub fn require_kubectl() {
    let found = std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|out| out.status.success());
    assert!(
        found,
        "kubectl is not on PATH: this test needs the real kubectl"
    );
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
