//! The fleet simulator (issue 13): `wasmfleet-sim` runs hollow agents (the agent's own link
//! and pod sync over pods that run nothing) against a real server and broker. Their Nodes
//! become Ready, a Deployment spread over them is reported Running, `kubectl logs` reaches
//! a hollow pod, `kubectl top` shows what the hollow nodes report (every second here), and
//! stopping the simulator prints its report and takes the nodes offline.

use std::collections::BTreeSet;

use serde_json::Value;
use wasmfleet_tests::cluster::{CONVERGE, node_ready, phase};
use wasmfleet_tests::wait::wait_for;
use wasmfleet_tests::{Cluster, ClusterOptions};

const AGENTS: u32 = 20;
const REPLICAS: usize = 40;
const PREFIX: &str = "hollow";

fn deployment(replicas: usize) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: fleet
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: fleet}}
  template:
    metadata:
      labels: {{app: fleet}}
    spec:
      containers:
      - name: app
        image: hollow:v1
"
    )
}

fn items(cluster: &Cluster, args: &[&str]) -> Vec<Value> {
    let out = cluster.kubectl_ok(args);
    let list: Value = serde_json::from_str(&out).expect("a JSON list");
    list["items"].as_array().cloned().unwrap_or_default()
}

fn hollow_nodes(cluster: &Cluster) -> Vec<Value> {
    items(cluster, &["get", "nodes", "-o", "json"])
        .into_iter()
        .filter(|n| {
            n["metadata"]["name"]
                .as_str()
                .is_some_and(|name| name.starts_with(PREFIX))
        })
        .collect()
}

/// Waits until all `AGENTS` hollow nodes have the Ready status `status`.
fn wait_nodes(cluster: &Cluster, status: &str) {
    wait_for(&format!("{AGENTS} hollow nodes {status}"), CONVERGE, || {
        let nodes = hollow_nodes(cluster);
        let matching = nodes.iter().filter(|n| node_ready(n) == status).count();
        (matching == AGENTS as usize)
            .then_some(())
            .ok_or(format!("{matching} of {} nodes", nodes.len()))
    });
}

#[test]
fn hollow_agents_join_run_a_spread_deployment_answer_logs_and_leave_on_sigint() {
    // Only hollow agents: every pod lands on one.
    let cluster = Cluster::start(ClusterOptions { agents: Vec::new() });
    // Hollow agents never fetch or run the module: the smallest valid one will do.
    let module = cluster.dir().join("empty.wasm");
    std::fs::write(&module, b"\0asm\x01\0\0\0").expect("write the module");
    let pushed = cluster.cli(&["push", &module.display().to_string(), "hollow:v1"]);
    assert!(pushed.success, "{}{}", pushed.stdout, pushed.stderr);

    let sim = cluster.start_simulator(
        AGENTS,
        PREFIX,
        &["--summary-interval-secs", "1", "--usage-interval", "1"],
    );
    wait_nodes(&cluster, "True");

    let applied = cluster.kubectl_with_stdin(&["apply", "-f", "-"], Some(&deployment(REPLICAS)));
    assert!(applied.success, "{}{}", applied.stdout, applied.stderr);
    let pods = wait_for(&format!("{REPLICAS} pods Running"), CONVERGE, || {
        let pods = items(&cluster, &["get", "pods", "-l", "app=fleet", "-o", "json"]);
        let running = pods.iter().filter(|p| phase(p) == "Running").count();
        (running == REPLICAS && pods.len() == REPLICAS)
            .then(|| pods.clone())
            .ok_or(format!("{running} of {} pods Running", pods.len()))
    });
    let nodes: BTreeSet<&str> = pods
        .iter()
        .filter_map(|p| p["spec"]["nodeName"].as_str())
        .collect();
    assert!(
        nodes.iter().all(|n| n.starts_with(PREFIX)) && nodes.len() > 1,
        "the replicas are spread over hollow nodes: {nodes:?}"
    );
    let pod = pods[0]["metadata"]["name"].as_str().expect("a pod name");
    let logs = cluster.kubectl_ok(&["logs", pod]);
    assert!(
        logs.contains("hollow container app of pod default/"),
        "a hollow pod answers logs: {logs}"
    );

    // Hollow containers report 1m and 1Mi each; their nodes 20m and 32Mi more.
    wait_for("kubectl top pod for every replica", CONVERGE, || {
        let out = cluster.kubectl(&["top", "pod", "-l", "app=fleet", "--no-headers"]);
        let rows: Vec<Vec<&str>> = out
            .stdout
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        let all = rows.len() == REPLICAS && rows.iter().all(|r| r[1..] == ["1m", "1Mi"]);
        all.then_some(())
            .ok_or(format!("{}{}", out.stdout, out.stderr))
    });
    let node = pods[0]["spec"]["nodeName"].as_str().expect("a node name");
    let out = cluster.kubectl_ok(&["top", "node", node, "--no-headers"]);
    let columns: Vec<&str> = out.split_whitespace().collect();
    let replicas_there = pods
        .iter()
        .filter(|p| p["spec"]["nodeName"] == node)
        .count();
    assert_eq!(columns[0], node, "{out}");
    assert_eq!(columns[1], format!("{}m", 20 + replicas_there), "{out}");
    assert_eq!(columns[3], format!("{}Mi", 32 + replicas_there), "{out}");

    sim.signal("INT");
    let report = wait_for("the final report", CONVERGE, || {
        let out = sim.output();
        out.contains("wasmfleet-sim final report")
            .then(|| out.clone())
            .ok_or_else(|| out.lines().last().unwrap_or_default().to_owned())
    });
    assert!(
        report.contains(&format!("pods started       {REPLICAS}")),
        "{report}"
    );
    assert!(
        report.contains("sessions           20 (0 lost)"),
        "{report}"
    );
    // A graceful stop says "offline": every node is Unknown at once, not after the grace.
    wait_nodes(&cluster, "Unknown");
}
