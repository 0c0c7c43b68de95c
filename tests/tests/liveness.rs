//! Node liveness under attack and failure, and dry runs that must not write: a forged
//! heartbeat does not wedge a node, pods on a dead node stop looking ready (and come back),
//! and `kubectl --dry-run=server` changes nothing.

use std::time::{Duration, Instant};

use serde_json::Value;
use wasmfleet_protocol::node::Heartbeat;
use wasmfleet_protocol::topic::{self, Up};
use wasmfleet_protocol::{Message, encode};
use wasmfleet_tests::cluster::{container_status, node_ready, phase};
use wasmfleet_tests::manifests::pod;
use wasmfleet_tests::mqtt::publish_all;
use wasmfleet_tests::{Cluster, ClusterOptions, wait_for};

/// The harness's node grace period (`--node-monitor-grace-ms 3000`).
const GRACE: Duration = Duration::from_secs(3);
/// How long recovery may take in these tests.
const BOUND: Duration = Duration::from_secs(20);

fn condition<'a>(obj: &'a Value, type_: &str) -> &'a Value {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

fn pod_ready(pod: &Value) -> bool {
    condition(pod, "Ready")["status"] == "True" && container_status(pod, "main")["ready"] == true
}

fn unreachable_effects(node: &Value) -> Vec<String> {
    node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["key"] == "node.kubernetes.io/unreachable" && t["timeAdded"].is_string())
        .filter_map(|t| t["effect"].as_str().map(str::to_owned))
        .collect()
}

fn kubectl(cluster: &Cluster, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let out = cluster.kubectl_with_stdin(args, stdin);
    (out.success, format!("{}{}", out.stdout, out.stderr))
}

fn connections(cluster: &Cluster, node: &str) -> usize {
    cluster
        .agent_output(node)
        .matches("connected to the broker")
        .count()
}

#[test]
fn a_forged_heartbeat_with_a_huge_epoch_does_not_wedge_the_node() {
    let mut cluster = Cluster::start(ClusterOptions::default());
    cluster.push("exerciser", "exerciser:v1");
    let before = connections(&cluster, "node-a");

    // The node's own credential (a stolen device, or a buggy agent) logs in under its name,
    // which kicks the real agent off, and claims a session from the far future. (The join
    // token alone can no longer log in as a joined node: tests/tests/identity.rs.)
    let stolen = cluster.node_login("node-a");
    let forged_epoch = 1u64 << 62;
    let heartbeat = encode(&Message::Heartbeat(Heartbeat {
        epoch: forged_epoch,
        unix_ms: 1,
    }));
    publish_all(
        cluster.mqtt(),
        "node-a",
        "node-a",
        &stolen,
        &topic::up("node-a", Up::Heartbeat),
        &[heartbeat],
    )
    .expect("the forged heartbeat is published");
    // The real agent reconnects on its own...
    wait_for("the real agent to reconnect", BOUND, || {
        let now = connections(&cluster, "node-a");
        if now > before {
            Ok(())
        } else {
            Err(format!("{now} connections"))
        }
    });
    let reconnected = Instant::now();
    // ...and its session counts again: its status reports are applied...
    cluster.apply(&pod("after", "exerciser:v1", &["sleep", "600000"], "Never"));
    cluster.wait_pod_within("after", "to run and be ready", BOUND, |p| {
        phase(p) == "Running" && pod_ready(p)
    });
    // ...and its heartbeats keep the node Ready past the grace period.
    cluster.wait_node_condition_within("node-a", "True", BOUND);
    wait_for(
        "the node to stay Ready for two grace periods after the reconnect",
        BOUND,
        || {
            let node = cluster.node("node-a").unwrap_or_default();
            let ready = node_ready(&node);
            assert_eq!(ready, "True", "node went {ready}: {}", node["status"]);
            if reconnected.elapsed() > GRACE * 2 {
                Ok(())
            } else {
                Err("still watching".into())
            }
        },
    );
    assert!(
        cluster.agent_is_running("node-a"),
        "{}",
        cluster.agent_output("node-a")
    );
}

#[test]
fn pods_on_a_dead_node_become_not_ready_and_recover_when_it_returns() {
    let mut cluster = Cluster::start(ClusterOptions::default());
    cluster.push("exerciser", "exerciser:v1");
    cluster.apply(&pod(
        "steady",
        "exerciser:v1",
        &["sleep", "600000"],
        "Always",
    ));
    cluster.wait_pod("steady", "to run and be ready", |p| {
        phase(p) == "Running" && pod_ready(p)
    });

    cluster.kill_agent("node-a");

    let node = cluster.wait_node_condition_within("node-a", "Unknown", BOUND);
    let down = cluster.wait_pod_within("steady", "to be marked not ready", BOUND, |p| {
        condition(p, "Ready")["status"] == "False"
            && condition(p, "ContainersReady")["status"] == "False"
            && container_status(p, "main")["ready"] == false
    });
    assert_eq!(condition(&down, "Ready")["reason"], "NodeNotReady");
    assert!(
        condition(&down, "Ready")["message"]
            .as_str()
            .is_some_and(|m| m.contains("node-a")),
        "{}",
        down["status"]
    );
    let (ok, table) = kubectl(&cluster, &["get", "pod", "steady", "--no-headers"], None);
    assert!(ok, "{table}");
    assert!(table.contains(" 0/1 "), "READY is not 0/1: {table}");
    let tainted = wait_for("the unreachable taints", BOUND, || {
        let node = cluster.node("node-a").unwrap_or_default();
        let mut effects = unreachable_effects(&node);
        effects.sort();
        if effects == ["NoExecute", "NoSchedule"] {
            Ok(node)
        } else {
            Err(format!("{} / {}", node["spec"], node_ready(&node)))
        }
    });
    assert_eq!(node_ready(&tainted), "Unknown", "{}", node["status"]);

    cluster.restart_agent("node-a");

    cluster.wait_pod_within("steady", "to be ready again", BOUND, |p| {
        phase(p) == "Running" && pod_ready(p)
    });
    wait_for(
        "the node Ready without the unreachable taints",
        BOUND,
        || {
            let node = cluster.node("node-a").unwrap_or_default();
            if node_ready(&node) == "True" && unreachable_effects(&node).is_empty() {
                Ok(())
            } else {
                Err(format!("{} / {}", node["spec"], node_ready(&node)))
            }
        },
    );
    let (ok, table) = kubectl(&cluster, &["get", "pod", "steady", "--no-headers"], None);
    assert!(ok && table.contains(" 1/1 "), "{table}");
}

#[test]
fn kubectl_server_dry_runs_never_write() {
    let cluster = Cluster::start(ClusterOptions { agents: vec![] });
    let manifest = pod("keep", "exerciser:v1", &["sleep", "1000"], "Never");
    cluster.apply(&manifest);
    // Settled: the scheduler has said why it cannot place the pod (no nodes), and writes
    // nothing more.
    let before = cluster.wait_pod("keep", "to be marked unschedulable", |p| {
        condition(p, "PodScheduled")["status"] == "False"
    });

    // A dry-run delete answers like a delete and deletes nothing.
    let (ok, out) = kubectl(
        &cluster,
        &["delete", "pod", "keep", "--dry-run=server"],
        None,
    );
    assert!(ok, "{out}");
    assert!(out.contains("server dry run"), "{out}");
    let (ok, out) = kubectl(
        &cluster,
        &["delete", "pod", "missing", "--dry-run=server"],
        None,
    );
    assert!(!ok && out.contains("not found"), "{out}");
    let (ok, out) = kubectl(
        &cluster,
        &["delete", "namespace", "default", "--dry-run=server"],
        None,
    );
    assert!(!ok, "the built-in namespace check still runs: {out}");
    let (ok, out) = kubectl(&cluster, &["create", "namespace", "scratch"], None);
    assert!(ok, "{out}");
    let (ok, out) = kubectl(
        &cluster,
        &["delete", "namespace", "scratch", "--dry-run=server"],
        None,
    );
    assert!(ok, "{out}");

    // Dry runs of writes answer what would be and perform nothing.
    let changed = manifest.replace("test: e2e", "test: changed");
    let (ok, out) = kubectl(
        &cluster,
        &["apply", "--dry-run=server", "-f", "-"],
        Some(&changed),
    );
    assert!(ok && out.contains("server dry run"), "{out}");
    let fresh = manifest.replace("name: keep", "name: fresh");
    let (ok, out) = kubectl(
        &cluster,
        &["create", "--dry-run=server", "-f", "-"],
        Some(&fresh),
    );
    assert!(ok && out.contains("server dry run"), "{out}");
    let (ok, out) = kubectl(
        &cluster,
        &["label", "pod", "keep", "x=y", "--dry-run=server"],
        None,
    );
    assert!(ok && out.contains("server dry run"), "{out}");

    let after = cluster.pod("keep").expect("the pod still exists");
    assert_eq!(after["metadata"], before["metadata"]);
    assert!(cluster.pod("fresh").is_none());
    let (ok, out) = kubectl(&cluster, &["get", "namespace", "scratch"], None);
    assert!(ok, "the namespace was deleted: {out}");
}
