//! The `wasmfleet-agent` binary: flags, signals, and the will a killed agent leaves behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod link_support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use link_support::{Broker, FakeServer, Received};
use wasmfleet_protocol::Message;
use wasmfleet_protocol::node::NodeState;
use wasmfleet_protocol::topic::Up;

const NODE: &str = "bin-node";
const WAIT: Duration = Duration::from_secs(20);

fn spawn_agent(broker: &Broker, data_dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_wasmfleet-agent"))
        .args([
            "--server",
            &broker.url(),
            "--token",
            "t",
            "--node-name",
            NODE,
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--labels", "site=lab", "--heartbeat-interval-ms", "200"])
        .args(["--ingress-port", "0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn wasmfleet-agent")
}

fn states(received: &[Received]) -> Vec<NodeState> {
    received
        .iter()
        .filter_map(|r| match &r.message {
            Message::NodeState(state) if r.kind == Up::State => Some(state.clone()),
            _ => None,
        })
        .collect()
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the agent did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_says_offline_and_sigkill_leaves_the_will_with_the_session_epoch() {
    link_support::init_tracing();
    let broker = Broker::start();
    let server = FakeServer::connect(broker.addr).await;
    let dir = tempfile::tempdir().unwrap();

    let mut agent = spawn_agent(&broker, dir.path());
    let first = server
        .wait_for("a birth", WAIT, |r| {
            states(r).into_iter().find(|s| s.online)
        })
        .await;
    assert_eq!(
        first.info.as_ref().map(|i| i.labels.get("site").cloned()),
        Some(Some("lab".into()))
    );
    let status = Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    server
        .wait_for("offline after SIGTERM", WAIT, |r| {
            states(r)
                .into_iter()
                .find(|s| !s.online && s.epoch == first.epoch)
        })
        .await;
    assert!(wait_exit(&mut agent).success(), "a graceful stop exits 0");

    // The same data dir: the next session has a higher epoch, and its will carries it.
    let mut agent = spawn_agent(&broker, dir.path());
    let second = server
        .wait_for("a second birth", WAIT, |r| {
            states(r)
                .into_iter()
                .find(|s| s.online && s.epoch > first.epoch)
        })
        .await;
    agent.kill().unwrap();
    agent.wait().unwrap();
    server
        .wait_for("the will", WAIT, |r| {
            states(r)
                .into_iter()
                .find(|s| !s.online && s.epoch == second.epoch)
        })
        .await;
}

#[test]
fn invalid_flags_exit_with_an_error_that_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_wasmfleet-agent"))
        .args([
            "--server",
            "mqtt://127.0.0.1:1",
            "--token",
            "t",
            "--node-name",
            "Not_Valid",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("node name"), "{stderr}");

    let output = Command::new(env!("CARGO_BIN_EXE_wasmfleet-agent"))
        .args([
            "--server",
            "tcp://nowhere",
            "--token",
            "t",
            "--node-name",
            "n",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("mqtt://"));
}
