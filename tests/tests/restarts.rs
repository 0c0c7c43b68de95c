//! Crashes and restarts: the server, the agent and the broker come and go; nothing is lost
//! and running pods are not restarted needlessly.

use wasmfleet_tests::cluster::{CONVERGE, container_status, phase};
use wasmfleet_tests::manifests::pod;
use wasmfleet_tests::{Cluster, ClusterOptions, wait_for};

fn started_at(pod: &serde_json::Value) -> String {
    container_status(pod, "main")["state"]["running"]["startedAt"].to_string()
}

fn last_line_number(logs: &str) -> u64 {
    logs.lines()
        .filter_map(|l| l.strip_prefix("line ").and_then(|n| n.trim().parse().ok()))
        .max()
        .unwrap_or(0)
}

#[test]
fn a_server_restart_keeps_state_and_does_not_restart_running_pods() {
    let mut cluster = Cluster::start(ClusterOptions::default());
    cluster.push("exerciser", "exerciser:v1");
    cluster.apply(&pod("long", "exerciser:v1", &["print", "100000"], "Never"));
    let before = cluster.wait_pod("long", "to run", |p| phase(p) == "Running");
    let uid = before["metadata"]["uid"].clone();

    cluster.restart_server();

    // The pod is still there, with the same identity, and its container was never restarted.
    let after = cluster.wait_pod("long", "to be reported running again", |p| {
        phase(p) == "Running"
    });
    assert_eq!(after["metadata"]["uid"], uid);
    assert_eq!(started_at(&after), started_at(&before));
    assert_eq!(container_status(&after, "main")["restartCount"], 0);
    cluster.wait_node_ready("node-a");
    // The agent reconnects to the restarted broker on its own back-off schedule; until
    // then its logs are out of reach, as for a user retrying `kubectl logs`.
    // Its output continued across the restart instead of starting over at line 1.
    let logs = wait_for("logs after the restart", CONVERGE, || {
        cluster.try_logs("long")
    });
    assert!(logs.starts_with("line 1\n"), "{logs}");
    wait_for("more lines after the restart", CONVERGE, || {
        let n = last_line_number(&cluster.try_logs("long")?);
        if n > last_line_number(&logs) {
            Ok(())
        } else {
            Err(format!("last line {n}"))
        }
    });
    // The module store survived too: a new pod can use the module pushed before.
    cluster.apply(&pod("after", "exerciser:v1", &["exit", "0"], "Never"));
    cluster.wait_pod("after", "to succeed", |p| phase(p) == "Succeeded");
}

#[test]
fn an_agent_restart_resumes_its_pods_and_does_not_rerun_finished_ones() {
    let mut cluster = Cluster::start(ClusterOptions::default());
    cluster.push("exerciser", "exerciser:v1");
    cluster.apply(&pod("done", "exerciser:v1", &["print", "1"], "Never"));
    cluster.wait_pod("done", "to succeed", |p| phase(p) == "Succeeded");
    cluster.apply(&pod("long", "exerciser:v1", &["print", "100000"], "Never"));
    let before = cluster.wait_pod("long", "to run", |p| phase(p) == "Running");
    // Two lines in before the agent goes, for `--previous` to show below.
    wait_for("two lines from the first run", CONVERGE, || {
        let logs = cluster.try_logs("long")?;
        match logs.lines().count() >= 2 {
            true => Ok(()),
            false => Err(logs),
        }
    });

    cluster.kill_agent("node-a");
    cluster.wait_node_condition("node-a", "Unknown");
    cluster.restart_agent("node-a");
    cluster.wait_node_ready("node-a");

    // Timestamps have one-second precision, so the new run shows in the restart count and
    // in the last state, which records that the agent went away while the container ran.
    let resumed = cluster.wait_pod("long", "to run again", |p| {
        phase(p) == "Running" && container_status(p, "main")["restartCount"] == 1
    });
    assert_eq!(resumed["metadata"]["uid"], before["metadata"]["uid"]);
    let last = &container_status(&resumed, "main")["lastState"]["terminated"];
    assert_eq!(last["reason"], "Unknown", "{last}");
    assert!(container_status(&resumed, "main")["state"]["running"].is_object());
    // `logs` shows the run since the restart, `--previous` the run before it.
    let previous = cluster.kubectl_ok(&["logs", "long", "--previous"]);
    assert!(previous.starts_with("line 1\nline 2\n"), "{previous}");
    let current = wait_for("the new run's first line", CONVERGE, || {
        let logs = cluster.try_logs("long")?;
        if logs.is_empty() {
            Err("no line yet".into())
        } else {
            Ok(logs)
        }
    });
    assert!(current.starts_with("line 1\n"), "{current}");
    let done = cluster.pod("done").expect("finished pod still exists");
    assert_eq!(phase(&done), "Succeeded");
    assert_eq!(
        cluster.logs("done"),
        "line 1\n",
        "a finished pod must not run again"
    );
}

#[test]
fn a_node_whose_agent_disappears_becomes_not_ready() {
    let mut cluster = Cluster::start(ClusterOptions::default());
    let node = cluster.wait_node_ready("node-a");
    let labels = &node["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/hostname"], "node-a");
    assert!(labels["kubernetes.io/arch"].is_string());
    assert!(node["status"]["capacity"]["memory"].is_string());
    assert!(node["status"]["nodeInfo"]["kernelVersion"].is_string());

    cluster.kill_agent("node-a");
    cluster.wait_node_condition("node-a", "Unknown");
}
