//! The scheduler on real clusters: node selectors, architecture labels and pods that fit
//! nowhere (two nodes); topology spreading, pod affinity and anti-affinity by zone, driven
//! by the real kubectl (three nodes in two zones).

use std::time::Duration;

use serde_json::Value;
use wasmfleet_tests::cluster::phase;
use wasmfleet_tests::manifests::pod;
use wasmfleet_tests::wait::wait_for;
use wasmfleet_tests::{Cluster, ClusterOptions};

fn two_nodes() -> Cluster {
    let cluster = Cluster::start(ClusterOptions {
        agents: vec![
            ("node-a".into(), "site=barn".into()),
            ("node-b".into(), "site=field".into()),
        ],
    });
    cluster.push("hello", "hello:v1");
    cluster
}

fn with_selector(name: &str, key: &str, value: &str) -> String {
    format!(
        "{}  nodeSelector:\n    {key}: \"{value}\"\n",
        pod(name, "hello:v1", &[], "Never")
    )
}

#[test]
fn a_node_selector_places_the_pod_on_the_matching_node() {
    let cluster = two_nodes();
    cluster.apply(&with_selector("to-field", "site", "field"));
    cluster.apply(&with_selector("to-barn", "site", "barn"));

    let field = cluster.wait_pod("to-field", "to succeed", |p| phase(p) == "Succeeded");
    let barn = cluster.wait_pod("to-barn", "to succeed", |p| phase(p) == "Succeeded");
    assert_eq!(field["spec"]["nodeName"], "node-b");
    assert_eq!(barn["spec"]["nodeName"], "node-a");
}

#[test]
fn a_pod_that_fits_no_node_stays_pending_saying_why() {
    let cluster = two_nodes();
    cluster.apply(&with_selector("nowhere", "kubernetes.io/arch", "riscv64"));

    let pending = cluster.wait_pod("nowhere", "to be unschedulable", |p| {
        p["status"]["conditions"].as_array().is_some_and(|conds| {
            conds
                .iter()
                .any(|c| c["type"] == "PodScheduled" && c["status"] == "False")
        })
    });
    assert_eq!(phase(&pending), "Pending");
    assert!(pending["spec"]["nodeName"].is_null());
    let message = pending["status"]["conditions"].to_string();
    assert!(message.contains("0/2 nodes are available"), "{message}");
}

const ZONE: &str = "topology.kubernetes.io/zone";

/// A Deployment `name` of `replicas` long-running pods labelled `app: {name}`, with extra
/// pod-spec YAML (indented by 6 spaces) such as `affinity:`.
fn deployment(name: &str, replicas: u32, spec_extra: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
{spec_extra}      containers:
      - name: main
        image: app:v1
        args: [\"sleep\", \"600000\"]
"
    )
}

fn kubectl_apply(cluster: &Cluster, manifest: &str) {
    let out = cluster.kubectl_with_stdin(&["apply", "-f", "-"], Some(manifest));
    assert!(out.success, "{}{}", out.stdout, out.stderr);
}

/// The pods labelled `app={app}`, from `kubectl get -o json`.
fn pods_of(cluster: &Cluster, app: &str) -> Vec<Value> {
    let out = cluster.kubectl_ok(&["get", "pods", "-l", &format!("app={app}"), "-o", "json"]);
    let list: Value = serde_json::from_str(&out).expect("a JSON list");
    list["items"].as_array().cloned().unwrap_or_default()
}

/// Waits until `count` pods of `app` are bound; returns their nodes, sorted.
fn wait_bound(cluster: &Cluster, app: &str, count: usize) -> Vec<String> {
    wait_for(
        &format!("{count} {app} pods bound"),
        Duration::from_secs(30),
        || {
            let mut nodes: Vec<String> = pods_of(cluster, app)
                .iter()
                .filter_map(|p| p["spec"]["nodeName"].as_str().map(str::to_owned))
                .collect();
            nodes.sort();
            (nodes.len() == count)
                .then(|| nodes.clone())
                .ok_or(format!("{nodes:?}"))
        },
    )
}

#[test]
fn spreading_affinity_and_anti_affinity_by_zone_place_pods_as_kubernetes_does() {
    let cluster = Cluster::start(ClusterOptions {
        agents: vec![
            ("node-a".into(), format!("{ZONE}=z1")),
            ("node-b".into(), format!("{ZONE}=z1")),
            ("node-c".into(), format!("{ZONE}=z2")),
        ],
    });
    cluster.push("exerciser", "app:v1");

    // Four replicas, at most one more on any node than on another.
    let spread = "      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: kubernetes.io/hostname
        whenUnsatisfiable: DoNotSchedule
        labelSelector: {matchLabels: {app: spread}}
";
    kubectl_apply(&cluster, &deployment("spread", 4, spread));
    let nodes = wait_bound(&cluster, "spread", 4);
    let per_node = |node: &str| nodes.iter().filter(|n| *n == node).count();
    let counts = [per_node("node-a"), per_node("node-b"), per_node("node-c")];
    assert!(
        counts.iter().all(|c| (1..=2).contains(c)),
        "{nodes:?}: every node gets one or two"
    );

    // A pod that must run beside the db lands on the db's node.
    let pinned = "      nodeSelector: {kubernetes.io/hostname: node-b}\n";
    kubectl_apply(&cluster, &deployment("db", 1, pinned));
    assert_eq!(wait_bound(&cluster, "db", 1), ["node-b"]);
    let beside = "      affinity:
        podAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - {labelSelector: {matchLabels: {app: db}}, topologyKey: kubernetes.io/hostname}
";
    kubectl_apply(&cluster, &deployment("cache", 1, beside));
    assert_eq!(wait_bound(&cluster, "cache", 1), ["node-b"]);

    // One replica per zone: two zones hold two, the third waits and says why.
    let apart = format!(
        "      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - {{labelSelector: {{matchLabels: {{app: zoned}}}}, topologyKey: {ZONE}}}
"
    );
    kubectl_apply(&cluster, &deployment("zoned", 3, &apart));
    let nodes = wait_bound(&cluster, "zoned", 2);
    assert!(nodes.contains(&"node-c".to_owned()), "{nodes:?}: one in z2");
    let expected = "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules.";
    let event = wait_for("a FailedScheduling event", Duration::from_secs(30), || {
        let out = cluster.kubectl_ok(&[
            "get",
            "events",
            "--field-selector",
            "reason=FailedScheduling",
            "-o",
            "custom-columns=OBJ:.involvedObject.name,MSG:.message",
            "--no-headers",
        ]);
        out.lines()
            .find(|l| l.starts_with("zoned-") && l.contains(expected))
            .map(str::to_owned)
            .ok_or(out)
    });
    let pending = event.split_whitespace().next().unwrap_or_default();
    let pod = cluster.pod(pending).expect("the pending pod");
    assert_eq!(phase(&pod), "Pending");
    assert!(pod["spec"]["nodeName"].is_null(), "{pod}");
}
