//! A misbehaving device cannot exhaust the server: junk a node throws at full speed (oversize
//! packets and floods of allowed-size ones) leaves the server's memory bounded, and a good
//! node's pod is still scheduled, run and reported meanwhile.

use wasmfleet_tests::cluster::phase;
use wasmfleet_tests::flood::{Flood, RssSampler, rss_bytes};
use wasmfleet_tests::manifests::pod;
use wasmfleet_tests::{Cluster, ClusterOptions, wait_for};

use std::time::Duration;

/// How much the server's RSS may grow while the junk flows.
const MAX_GROWTH: u64 = 200 << 20;

#[test]
fn a_node_flooding_junk_leaves_server_memory_bounded_and_good_pods_running() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.push("hello", "hello:v1");
    cluster.wait_node_ready("node-a");
    let junk_login = cluster.allow_node_login("junk-node");
    let pid = cluster.server_pid().expect("server pid");
    let before = rss_bytes(pid).expect("server RSS");
    let sampler = RssSampler::start(pid);

    // ~1 GiB: 48 rounds of one 15 MiB packet and 40 x 400 KiB ones.
    let flood = Flood::start(
        cluster.mqtt(),
        "junk-node",
        &junk_login,
        48,
        (15 << 20, 400 << 10, 40),
    );
    wait_for("the flood to get going", Duration::from_secs(30), || {
        (flood.sent() > 64 << 20)
            .then_some(())
            .ok_or_else(|| "not yet".to_owned())
    });
    cluster.apply(&pod("hello", "hello:v1", &["during", "flood"], "Never"));
    let done = cluster.wait_pod("hello", "to succeed during the flood", |p| {
        phase(p) == "Succeeded"
    });
    let sent_by_then = flood.sent();
    let report = flood.join();
    let peak = sampler.peak();
    let growth = peak.saturating_sub(before);
    eprintln!(
        "junk: {} messages, {} MiB in {:?} ({} MiB when the pod succeeded); server RSS {} MiB before, {} MiB peak (+{} MiB)",
        report.messages,
        report.bytes >> 20,
        report.elapsed,
        sent_by_then >> 20,
        before >> 20,
        peak >> 20,
        growth >> 20
    );
    assert_eq!(done["spec"]["nodeName"], "node-a");
    assert!(
        report.bytes > 512 << 20,
        "the flood sent too little to prove anything: {report:?}"
    );
    assert!(
        growth < MAX_GROWTH,
        "server RSS grew by {} MiB (limit {} MiB)",
        growth >> 20,
        MAX_GROWTH >> 20
    );
    assert!(cluster.node("node-a").is_some());
}
