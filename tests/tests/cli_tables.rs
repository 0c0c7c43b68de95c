//! `wasmfleet get` prints what the server's Table says, exactly as the real kubectl prints
//! it for the same cluster: the same columns (`-o wide` too), the same cells, the same
//! NAMESPACE (`-A`) and LABELS (`--show-labels`) decoration and the same layout, with
//! resource names resolved through the server's discovery rather than a list of the CLI's.

use wasmfleet_tests::cluster::{CliOutput, phase};
use wasmfleet_tests::manifests::pod_labelled;
use wasmfleet_tests::{Cluster, ClusterOptions};

/// Attempts at catching both clients within one tick of the AGE column.
const ATTEMPTS: usize = 3;

/// Runs `args` with kubectl, the CLI, then kubectl again, and asserts that the CLI printed
/// what one of the two kubectl runs printed (an AGE cell may tick between them).
fn assert_prints_like_kubectl(cluster: &Cluster, args: &[&str]) {
    let mut seen = String::new();
    for _ in 0..ATTEMPTS {
        let before = cluster.kubectl(args);
        let ours = cluster.cli(args);
        let after = cluster.kubectl(args);
        assert!(before.success, "kubectl {args:?}: {}", before.stderr);
        assert!(ours.success, "wasmfleet {args:?}: {}", ours.stderr);
        assert!(
            !ours.stdout.is_empty(),
            "wasmfleet {args:?} printed nothing"
        );
        if ours.stdout == before.stdout || ours.stdout == after.stdout {
            return;
        }
        seen = format!(
            "kubectl:\n{}\nwasmfleet:\n{}\nkubectl again:\n{}",
            before.stdout, ours.stdout, after.stdout
        );
    }
    panic!("wasmfleet {args:?} differs from kubectl:\n{seen}");
}

fn apply_in(cluster: &Cluster, namespace: &str, manifest: &str) -> CliOutput {
    let out = cluster.cli_with_stdin(&["-n", namespace, "apply", "-f", "-"], Some(manifest));
    assert!(out.success, "apply failed: {}{}", out.stdout, out.stderr);
    out
}

#[test]
fn get_prints_the_servers_columns_like_kubectl() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.push("hello", "hello:v1");
    let done = pod_labelled("done", &[("app", "hello")], None, "hello:v1", &[], "Never");
    cluster.apply(&done);
    let namespace = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: edge\n";
    assert_eq!(cluster.apply(namespace).stdout, "namespace/edge created\n");
    // Bound to no node: Pending for good, with <none> in its IP and NODE cells.
    let waiting = pod_labelled(
        "waiting",
        &[("tier", "sensor")],
        Some("nowhere"),
        "hello:v1",
        &[],
        "Never",
    );
    apply_in(&cluster, "edge", &waiting);
    cluster.wait_pod("done", "to succeed", |p| phase(p) == "Succeeded");

    let cases: [&[&str]; 12] = [
        &["get", "pods"],
        &["get", "po", "-o", "wide"],
        &["get", "pod", "done"],
        &["get", "pods", "-A"],
        &["get", "nodes"],
        &["get", "no", "-o", "wide"],
        &["get", "ns"],
        &["get", "namespaces", "-A"],
        &["-n", "edge", "get", "pods", "--show-labels"],
        &["get", "po", "-A", "-o", "wide", "--show-labels"],
        &["get", "node", "node-a", "--show-labels"],
        &["get", "pods", "--no-headers"],
    ];
    for args in cases {
        assert_prints_like_kubectl(&cluster, args);
    }
}

#[test]
fn unknown_resources_and_empty_lists_read_like_kubectl() {
    let cluster = Cluster::start(ClusterOptions { agents: Vec::new() });
    for args in [&["get", "foo"][..], &["get", "deployments.nope"][..]] {
        let ours = cluster.cli(args);
        let theirs = cluster.kubectl(args);
        assert!(!ours.success && !theirs.success, "{args:?}");
        assert_eq!(ours.stderr, theirs.stderr, "{args:?}");
    }
    let ours = cluster.cli(&["get", "po"]);
    let theirs = cluster.kubectl(&["get", "po"]);
    assert!(ours.success, "{}", ours.stderr);
    assert_eq!((ours.stdout, ours.stderr), (theirs.stdout, theirs.stderr));
}
