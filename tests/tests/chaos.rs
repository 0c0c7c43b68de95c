//! Chaos: kill -9 of the server, an agent and the broker, and network partitions, at random
//! moments while pods are applied and deleted; after each fault every invariant holds again
//! within the recovery bound (see `wasmfleet_tests::chaos`). Runs with the embedded broker,
//! and with Mosquitto under `WASMFLEET_E2E_BROKER=mosquitto` (which adds the broker kill).
//! The seed is printed; `WASMFLEET_CHAOS_SEED=N` replays a run. The long run is the
//! `wasmfleet-chaos` tool (BENCHMARKS.md).

use wasmfleet_tests::chaos::{self, Chaos, FaultKind};
use wasmfleet_tests::cluster::Broker;

#[test]
fn random_faults_lose_no_write_run_no_pod_twice_and_recover() {
    let seed = chaos::seed_from_env();
    let broker = Broker::from_env();
    println!("chaos seed {seed} ({broker:?} broker; WASMFLEET_CHAOS_SEED={seed} replays it)");
    let mut chaos = Chaos::start(&["node-a", "node-b"], broker, seed)
        .unwrap_or_else(|err| panic!("cannot set up the chaos cluster: {err:#}"));
    // Every fault kind the broker allows, once (BENCHMARKS.md has 100 rounds of each).
    let plan: Vec<_> = FaultKind::all(broker)
        .into_iter()
        .map(|kind| chaos.fault(kind))
        .collect();
    for fault in &plan {
        let report = chaos
            .round(fault)
            .unwrap_or_else(|err| panic!("round {fault}: {err:#}"));
        println!(
            "{fault}: recovered in {:?}, writes {} acknowledged / {} unknown",
            report.recovery, report.writes.0, report.writes.1
        );
        assert!(
            report.violations.is_empty(),
            "seed {seed}, {fault}: {:#?}",
            report.violations
        );
    }
}
