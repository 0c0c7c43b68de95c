//! The real `kubectl` (v1.32) against the real server: apply, get, an image update, the
//! 422s wasmfleet promises, label, and delete.
//!
//! Needs `kubectl` on `PATH` (the development machines and the CI image have it; scripts/test
//! checks for it up front). Without it the test fails: a skipped check is not a passed one.

#![allow(clippy::unwrap_used)]

mod api_support;

use std::path::Path;
use std::process::Output;

use api_support::{Server, data_dir};

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: hello
  labels: {app: hello}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: hello:latest
    args: ["print", "3"]
    resources:
      limits: {memory: 64Mi, cpu: 500m}
"#;

struct Kubectl<'a> {
    server: &'a Server,
    dir: &'a Path,
}

impl Kubectl<'_> {
    async fn run(&self, args: &[&str]) -> Output {
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
    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "kubectl {args:?} failed: {stderr}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl expecting failure and returns stderr.
    async fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(!out.status.success(), "kubectl {args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    async fn apply(&self, manifest: &str) -> Output {
        let path = self.dir.join("manifest.yaml");
        std::fs::write(&path, manifest).unwrap();
        self.run(&["apply", "-f", path.to_str().unwrap()]).await
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn kubectl_applies_gets_updates_and_deletes_pods() {
    assert!(
        std::process::Command::new("kubectl")
            .arg("version")
            .arg("--client")
            .output()
            .is_ok(),
        "kubectl is not on PATH: this test needs the real kubectl"
    );
    let (dir, path) = data_dir();
    let server = Server::start(&path).await;
    let kubectl = Kubectl {
        server: &server,
        dir: dir.path(),
    };

    let out = kubectl.apply(POD).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let names = kubectl.ok(&["get", "pods", "-o", "name"]).await;
    assert_eq!(names.trim(), "pod/hello");

    let out = kubectl
        .apply(&POD.replace("hello:latest", "hello:v2"))
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let image = kubectl
        .ok(&[
            "get",
            "pod",
            "hello",
            "-o",
            "jsonpath={.spec.containers[0].image}",
        ])
        .await;
    assert_eq!(image, "hello:v2");

    let out = kubectl
        .apply(&POD.replace(r#"["print", "3"]"#, r#"["exit", "1"]"#))
        .await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("Forbidden"), "{}", stderr(&out));

    let ported = POD
        .replace("name: hello\n", "name: ported\n")
        .replace("    args:", "    ports: [{containerPort: 80}]\n    args:");
    let out = kubectl.apply(&ported).await;
    assert!(
        stderr(&out).contains("spec.containers[0].ports: Unsupported value"),
        "{}",
        stderr(&out)
    );

    kubectl.ok(&["label", "pod", "hello", "tier=edge"]).await;
    let labelled = kubectl
        .ok(&["get", "pods", "-l", "tier=edge", "-o", "name"])
        .await;
    assert_eq!(labelled.trim(), "pod/hello");

    let missing = kubectl.fails(&["get", "pod", "nope"]).await;
    assert!(missing.contains("NotFound"), "{missing}");

    kubectl.ok(&["delete", "pod", "hello"]).await;
    let names = kubectl.ok(&["get", "pods", "-o", "name"]).await;
    assert_eq!(names.trim(), "");
    server.stop().await;
}
