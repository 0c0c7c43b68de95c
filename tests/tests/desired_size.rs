//! Desired state has no size cliff: pods whose delivery together exceeds one MQTT message
//! all run, later changes still reach the node, and a pod that could never be delivered is
//! refused at admission with a 422 naming why.

use std::io::Write;
use std::process::{Command, Stdio};

use wasmfleet_tests::cluster::{CONVERGE, phase};
use wasmfleet_tests::manifests::{pod, pod_with};
use wasmfleet_tests::{Cluster, ClusterOptions, wait_for};

/// A long-running exerciser pod carrying a `bytes`-long env value.
fn big_pod(name: &str, bytes: usize) -> String {
    let env = format!(
        "      env:\n        - name: BIG\n          value: \"{}\"\n",
        "x".repeat(bytes)
    );
    pod_with(name, "exerciser:v1", &["print", "100000"], "Never", &env)
}

#[test]
fn pods_larger_together_than_one_message_run_and_later_changes_still_reach_the_node() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.push("exerciser", "exerciser:v1");
    // 2 × 300 KB: more than the 512 KiB one snapshot of the node's pods could carry.
    cluster.apply(&big_pod("big-1", 300_000));
    cluster.apply(&big_pod("big-2", 300_000));
    for name in ["big-1", "big-2"] {
        cluster.wait_pod(name, "to run", |p| phase(p) == "Running");
    }

    // A new small pod still reaches the node...
    cluster.apply(&pod("small", "exerciser:v1", &["print", "100000"], "Never"));
    cluster.wait_pod("small", "to run", |p| phase(p) == "Running");

    // ...and a deleted big one stops.
    let out = cluster.cli(&["delete", "pod", "big-1"]);
    assert!(out.success, "{}", out.stderr);
    wait_for("the agent to stop big-1", CONVERGE, || {
        if cluster
            .agent_output("node-a")
            .contains("stopped pod default/big-1")
        {
            Ok(())
        } else {
            Err("not yet".to_owned())
        }
    });
    let big2 = cluster.pod("big-2").expect("big-2 still exists");
    assert_eq!(phase(&big2), "Running");
}

/// `kubectl create -f -` of `manifest` at verbosity 6 (which logs the response code).
fn kubectl_create(cluster: &Cluster, manifest: &str) -> (bool, String) {
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .args(["create", "-f", "-", "-v=6"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kubectl");
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(manifest.as_bytes())
            .expect("write manifest");
    }
    let out = child.wait_with_output().expect("kubectl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn a_pod_that_could_never_be_delivered_is_refused_with_a_422_naming_why() {
    let cluster = Cluster::start(ClusterOptions::default());

    let containers: String = (0..10_000)
        .map(|i| format!("    - name: c{i}\n      image: exerciser:v1\n"))
        .collect();
    let many = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: many\nspec:\n  containers:\n{containers}"
    );
    let (ok, text) = kubectl_create(&cluster, &many);
    assert!(!ok, "10,000 containers were accepted");
    assert!(text.contains("422"), "{text}");
    assert!(
        text.contains("spec.containers: Too many: 10000: a pod may have at most 64 containers"),
        "{text}"
    );

    let (ok, text) = kubectl_create(&cluster, &big_pod("huge-env", 600_000));
    assert!(!ok, "a 600 KB env value was accepted");
    assert!(text.contains("422"), "{text}");
    assert!(
        text.contains("spec.containers[0].env[0].value: Too long"),
        "{text}"
    );
    assert!(text.contains("600000 bytes"), "{text}");

    for name in ["many", "huge-env"] {
        assert!(cluster.pod(name).is_none(), "{name} was stored");
    }
}
