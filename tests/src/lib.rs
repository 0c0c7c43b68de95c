//! The end-to-end harness: real `wasmfleet-server`, `wasmfleet-agent` and `wasmfleet`
//! processes talking over real sockets, with the embedded broker or a real Mosquitto.
//!
//! Set `WASMFLEET_E2E_BROKER=mosquitto` to run every test against a Mosquitto broker the
//! harness starts (with passwords and topic ACLs); the default is the server's embedded
//! broker. The binaries come from the same cargo target directory as the test (build
//! them first with `cargo build --workspace --bins`; `scripts/test` does).

pub mod api;
pub mod chaos;
pub mod cluster;
pub mod flood;
pub mod manifests;
pub mod mosquitto;
pub mod mqtt;
pub mod netns;
pub mod ports;
pub mod process;
pub mod timeline;
pub mod wait;

pub use cluster::{Cluster, ClusterOptions};
pub use wait::wait_for;

use std::path::PathBuf;

/// The directory holding the workspace's binaries: `target/<profile>`, found from the
/// running executable (a test in `target/<profile>/deps`, or a tool in `target/<profile>`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("executable path");
    let dir = exe.parent().expect("executable has a directory");
    if dir.ends_with("deps") {
        dir.parent().expect("deps has a parent").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The path of a built guest module in `workloads/dist`.
pub fn guest(name: &str) -> PathBuf {
    let path = repo_root()
        .join("workloads/dist")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run workloads/build",
        path.display()
    );
    path
}

/// `module` with a wasm custom section (id 0) named `name` appended: the same program under
/// another digest (valid in modules and components), so an agent must fetch it anew.
pub fn with_custom_section(module: &[u8], name: &str) -> Vec<u8> {
    let mut section = Vec::new();
    section.push(u8::try_from(name.len()).unwrap_or(u8::MAX) & 0x7f);
    section.extend_from_slice(name.as_bytes());
    let mut out = module.to_vec();
    out.push(0);
    out.push(u8::try_from(section.len()).unwrap_or(u8::MAX) & 0x7f);
    out.extend_from_slice(&section);
    out
}
