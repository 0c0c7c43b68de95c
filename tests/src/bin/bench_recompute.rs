//! Counts the server's recomputations (issue 9, the informer): how many scheduler and
//! desired-state passes a node `Lease` write causes, and how many store list calls a pod
//! status report costs.
//!
//! Run (the counts do not depend on the build profile):
//!
//! ```sh
//! cargo build --workspace --bins
//! WASMFLEET_E2E_LOG=info,wasmfleet_server=trace target/debug/wasmfleet-bench-recompute
//! ```
//!
//! Optional argument: the number of crash-looping pods (default 20). It starts a real
//! server and two real agents (the harness's 3 s node grace: each node's `Lease` object is
//! written every second, heartbeats every 500 ms), the server logging its trace events, then
//! counts lines of the server's log in two windows:
//!
//! 1. idle, no pods: `lease written`, `scheduler pass`, `desired pass`;
//! 2. crash-looping pods (`exerciser exit 1`, restart policy Always, the agents' 300 ms
//!    restart back-off): `status report applied`, `store list`, and the passes again.

use std::thread::sleep;
use std::time::Duration;

use anyhow::{Context, bail};
use wasmfleet_tests::manifests::pod;
use wasmfleet_tests::{Cluster, ClusterOptions};

/// How long each window lasts.
const WINDOW: Duration = Duration::from_secs(15);

/// The server-log messages counted.
const EVENTS: [&str; 5] = [
    "lease written",
    "scheduler pass",
    "desired pass",
    "status report applied",
    "store list",
];

fn main() -> anyhow::Result<()> {
    let pods: usize = match std::env::args().nth(1) {
        Some(arg) => arg.parse().context("the number of pods")?,
        None => 20,
    };
    let log = std::env::var("WASMFLEET_E2E_LOG").unwrap_or_default();
    if !log.contains("wasmfleet_server=trace") {
        bail!("set WASMFLEET_E2E_LOG=info,wasmfleet_server=trace: the counts are trace events");
    }
    let cluster = Cluster::start(ClusterOptions {
        agents: vec![
            ("node-a".into(), String::new()),
            ("node-b".into(), String::new()),
        ],
    });
    cluster.push("exerciser", "exerciser:v1");
    sleep(Duration::from_secs(2));
    let idle = window(&cluster);
    report("idle, 2 nodes, no pods", &idle);
    per("scheduler passes per lease write", idle[1], idle[0]);
    per("desired passes per lease write", idle[2], idle[0]);

    for i in 0..pods {
        cluster.apply(&pod(
            &format!("crash-{i}"),
            "exerciser:v1",
            &["exit", "1"],
            "Always",
        ));
    }
    sleep(Duration::from_secs(5));
    let churn = window(&cluster);
    report(&format!("{pods} crash-looping pods"), &churn);
    per("store lists per status report", churn[4], churn[3]);
    per("scheduler passes per status report", churn[1], churn[3]);
    per("desired passes per status report", churn[2], churn[3]);
    Ok(())
}

/// The counts of [`EVENTS`] in the server's log over one [`WINDOW`].
fn window(cluster: &Cluster) -> [usize; 5] {
    let before = cluster.server_output().len();
    sleep(WINDOW);
    let log = cluster.server_output();
    let new = log.get(before..).unwrap_or_default();
    EVENTS.map(|event| new.lines().filter(|line| line.contains(event)).count())
}

fn report(title: &str, counts: &[usize; 5]) {
    println!("{title}, {} s:", WINDOW.as_secs());
    for (event, count) in EVENTS.iter().zip(counts) {
        println!("  {event:<24} {count}");
    }
}

fn per(what: &str, count: usize, of: usize) {
    let ratio = if of == 0 {
        0.0
    } else {
        count as f64 / of as f64
    };
    println!("  {what}: {ratio:.2}");
}
