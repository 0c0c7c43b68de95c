//! CPU isolation: a busy-looping pod must not stall its neighbours on the same node.
//! Kept in its own test binary so no other test competes for the CPU while it runs.

use std::time::{Duration, Instant};

use wasmfleet_tests::cluster::{CONVERGE, phase};
use wasmfleet_tests::manifests::{limits, pod_with};
use wasmfleet_tests::{Cluster, ClusterOptions, wait_for};

#[test]
fn a_spinning_pod_does_not_stall_a_printing_pod_beside_it() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.push("exerciser", "exerciser:v1");
    // Two spinners, so that even a two-core node is fully busy without isolation.
    for name in ["spin-1", "spin-2"] {
        cluster.apply(&pod_with(
            name,
            "exerciser:v1",
            &["spin", "20000"],
            "Never",
            &limits("64Mi", "500m"),
        ));
    }
    for name in ["spin-1", "spin-2"] {
        cluster.wait_pod(name, "to run", |p| phase(p) == "Running");
    }

    let started = Instant::now();
    cluster.apply(&pod_with(
        "printer",
        "exerciser:v1",
        &["print", "30"],
        "Never",
        &limits("64Mi", "500m"),
    ));
    cluster.wait_pod("printer", "to finish printing", |p| phase(p) == "Succeeded");
    let elapsed = started.elapsed();

    // 30 lines at 100 ms each is 3 s of printing; with the spinners hogging the node it
    // would take until they finish (20 s).
    assert!(
        elapsed < Duration::from_secs(12),
        "printer took {elapsed:?} beside two spinners"
    );
    let logs = cluster.logs("printer");
    assert_eq!(logs.lines().count(), 30, "{logs}");
    for name in ["spin-1", "spin-2"] {
        let pod = cluster.pod(name).expect("spinner exists");
        assert_eq!(
            phase(&pod),
            "Running",
            "the spinner is still running: the printer did not wait for it"
        );
    }
    wait_for("spinners to be deleted", CONVERGE, || {
        let out = cluster.cli(&["delete", "pod", "spin-1"]);
        if out.success { Ok(()) } else { Err(out.stderr) }
    });
}
