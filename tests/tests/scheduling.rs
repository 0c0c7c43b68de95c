//! The scheduler on a real two-node cluster: node selectors, architecture labels and
//! pods that fit nowhere.

use wasmfleet_tests::cluster::phase;
use wasmfleet_tests::manifests::pod;
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
