//! Scheduler throughput (issue 9 §6): pods bound per second with 1,000 nodes in the store.
//!
//! Run: `cargo bench -p wasmfleet-server --bench scheduler -- [NODES] [PODS] [ROUNDS]
//! [spread]` (defaults 1000, 2000, 3; release build). With `spread`, every pod also has a
//! topology spread constraint (`maxSkew: 1` by `kubernetes.io/hostname`, `DoNotSchedule`,
//! selecting the ReplicaSet's pods), so each pick also counts the placed pods by domain. It lives beside the server, not in the e2e
//! crate, so the suite never builds the server's dependencies in a second feature set.
//!
//! In-process, on the server's real code: a [`Store`] in a temporary directory on disk
//! (durable commits, like the server's) and the informer [`Cache`] over it. It writes
//! `NODES` simulated Ready nodes (4 CPUs, 8 GiB, 110 pods each, in 10 zones), then, per round, `PODS`
//! pending pods of one ReplicaSet (10m CPU and 16Mi requested, as admission defaults), and
//! times [`scheduler::schedule_pending`] (the pass the scheduler loop runs: node views from
//! the cache, filter and score every node for every pod, one bind write and one `Scheduled`
//! event per pod) from all pending to all bound. It also times the pure part alone
//! ([`fit::pick`] over the 1,000 node views) per pod.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wasmfleet_server::informer::{Cache, RESOURCES};
use wasmfleet_server::scheduler::pod_affinity::NamespaceLabels;
use wasmfleet_server::scheduler::{self, fit, view};
use wasmfleet_server::store::{ObjectKey, Store};

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench` to a harness-less bench: only numbers are ours.
    let words: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let spread = words.iter().any(|w| w == "spread");
    let mut args = words
        .iter()
        .filter(|w| *w != "spread")
        .map(|a| a.parse::<usize>());
    let nodes = args.next().transpose()?.unwrap_or(1000);
    let pods = args.next().transpose()?.unwrap_or(2000);
    let rounds = args.next().transpose()?.unwrap_or(3);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(bench(nodes, pods, rounds, spread))
}

async fn bench(nodes: usize, pods: usize, rounds: usize, spread: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path().join("state.redb"))?;
    let (shutdown, tracker) = (CancellationToken::new(), TaskTracker::new());
    let cache = Cache::start(&store, &RESOURCES, shutdown.clone(), &tracker)?;
    for i in 0..nodes {
        let name = format!("node-{i:04}");
        store.create(&ObjectKey::cluster("nodes", &name), node(&name, i % 10))?;
    }
    println!(
        "{nodes} nodes, {pods} pending pods per round{}, data dir on {}",
        if spread { " (spread by hostname)" } else { "" },
        dir.path().display()
    );
    for round in 0..rounds {
        for i in 0..pods {
            let name = format!("web-{round}-{i:05}");
            let pod = pod(&name, spread);
            store.create(&ObjectKey::namespaced("pods", "default", &name), pod)?;
        }
        cache.wait_for(store.revision()).await;
        let pure = time_pure_pick(&cache, pods)?;
        let started = Instant::now();
        let bound = scheduler::schedule_pending(&store, &cache)?;
        let elapsed = started.elapsed();
        if bound != pods {
            bail!("round {round}: bound {bound} of {pods}");
        }
        println!(
            "round {round}: {bound} pods bound in {elapsed:.2?}: {:.0} pods/s; \
             pure filter+score (pick over {nodes} nodes): {:.1} µs/pod",
            rate(bound, elapsed),
            pure.as_secs_f64() * 1e6,
        );
        cache.wait_for(store.revision()).await;
    }
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    Ok(())
}

#[allow(clippy::cast_precision_loss)] // a rate for a report
fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

/// The mean time of [`fit::pick`] for one pending pod over the cache's node views (built
/// as the scheduler builds them), without binding anything.
fn time_pure_pick(cache: &Cache, pods: usize) -> anyhow::Result<Duration> {
    let views: Vec<fit::NodeView> = cache
        .list("nodes")
        .iter()
        .map(|node| {
            let node: Node = serde_json::from_value(node.as_ref().clone())?;
            let mut view = view::node_view(&node);
            for pod in cache.pods_on_node(&view.name).iter() {
                let pod: Pod = serde_json::from_value(pod.as_ref().clone())?;
                view.place(&pod, &NamespaceLabels::new());
            }
            Ok(view)
        })
        .collect::<anyhow::Result<_>>()?;
    let pending = cache.unbound_pods();
    let first: Pod =
        serde_json::from_value(pending.first().context("a pending pod")?.as_ref().clone())?;
    let demand = view::demand(&first, &NamespaceLabels::new());
    let samples = pods.min(500);
    let started = Instant::now();
    for _ in 0..samples {
        std::hint::black_box(fit::pick(&demand, &views).map(|n| n.name.len()).ok());
    }
    Ok(started.elapsed() / u32::try_from(samples).unwrap_or(1))
}

fn node(name: &str, zone: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/arch": "amd64",
            "topology.kubernetes.io/zone": format!("zone-{zone}")}},
        "spec": {},
        "status": {
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "AgentReady"}],
        },
    })
}

fn pod(name: &str, spread: bool) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": "default",
            "labels": {"app": "web", "pod-template-hash": "abc"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "web-abc", "uid": "rs-uid-1", "controller": true}],
        },
        "spec": {"containers": [{"name": "web", "image": "app:v1",
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                          "limits": {"cpu": "500m", "memory": "128Mi"}}}]},
        "status": {"phase": "Pending"},
    });
    if spread {
        pod["spec"]["topologySpreadConstraints"] = json!([{
            "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "web"}},
        }]);
    }
    pod
}
