//! Deployments at scale (issue 9 §6), on real release processes driven with the real
//! kubectl:
//!
//! - `rollout [REPLICAS] [ROUNDS]` (the default; 100 and 3): a server and one agent. Both
//!   modules are pushed and run once first, so the agent has them fetched and compiled.
//!   Each round applies a Deployment of `REPLICAS` pods of `app:v1` (the exerciser,
//!   sleeping) and times each pod from `kubectl apply` to its `Ready` condition, then rolls
//!   it to `app:v2` (the same program under another digest: a new module) with `kubectl set
//!   image` (default strategy, maxSurge and maxUnavailable 25%) and times each new pod to
//!   Ready and the whole update to the last old pod gone; then deletes the Deployment.
//! - `rss [AGENTS] [DEPLOYMENTS] [REPLICAS]` (10, 100 and 10): a server and `AGENTS` real
//!   agents (110 pods each at most); applies `DEPLOYMENTS` Deployments of `REPLICAS` pods,
//!   waits until every pod is Ready, lets it settle and samples the server's resident memory.
//!
//! Pod readiness is read from one API watch on the pods (`?watch=true`), stamped on
//! arrival. Run: `cargo build --release -p wasmfleet-tests --bins -p wasmfleet-server
//! -p wasmfleet-agent -p wasmfleet-cli && target/release/wasmfleet-bench-deploy [MODE ...]`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use wasmfleet_tests::api::ApiClient;
use wasmfleet_tests::flood::rss_bytes;
use wasmfleet_tests::{Cluster, ClusterOptions, guest, with_custom_section};

/// The longest any phase may take before the bench gives up.
const PHASE_LIMIT: Duration = Duration::from_secs(300);

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: usize| -> anyhow::Result<usize> {
        args.get(i)
            .map_or(Ok(default), |a| a.parse().context("a number"))
    };
    match args.first().map(String::as_str) {
        None | Some("rollout") => rollout(number(1, 100)?, number(2, 3)?),
        Some("rss") => rss(number(1, 10)?, number(2, 100)?, number(3, 10)?),
        Some(other) => bail!("unknown mode {other:?}: rollout or rss"),
    }
}

/// What the watch saw of one pod.
#[derive(Debug, Clone, Default)]
struct Seen {
    hash: String,
    ready: Option<Instant>,
    deleted: bool,
}

/// Every pod the watch saw, by name.
type Pods = Arc<Mutex<BTreeMap<String, Seen>>>;

fn snapshot(pods: &Pods) -> BTreeMap<String, Seen> {
    pods.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// Watches the pods with `selector` in the background, recording when each turns Ready.
fn watch_pods(runtime: &tokio::runtime::Runtime, client: ApiClient, selector: &str) -> Pods {
    let pods: Pods = Arc::default();
    let seen = Arc::clone(&pods);
    let path = format!("/api/v1/pods?watch=true&labelSelector={selector}");
    runtime.spawn(async move {
        let result = client
            .watch(&path, |event| {
                record(&seen, &event);
                true
            })
            .await;
        if let Err(err) = result {
            eprintln!("pod watch ended: {err:#}");
        }
    });
    pods
}

fn record(pods: &Pods, event: &Value) {
    let pod = &event["object"];
    let Some(name) = pod["metadata"]["name"].as_str() else {
        return;
    };
    let ready = pod["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    });
    let mut pods = pods.lock().unwrap_or_else(PoisonError::into_inner);
    let seen = pods.entry(name.to_owned()).or_default();
    seen.hash = pod["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if ready && seen.ready.is_none() {
        seen.ready = Some(Instant::now());
    }
    seen.deleted |= event["type"] == "DELETED";
}

/// Polls `done` over the watched pods every 5 ms until it holds; returns when it did.
fn wait_until(
    pods: &Pods,
    what: &str,
    done: impl Fn(&BTreeMap<String, Seen>) -> bool,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + PHASE_LIMIT;
    while Instant::now() < deadline {
        if done(&snapshot(pods)) {
            return Ok(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    bail!("{what}: not within {PHASE_LIMIT:?}")
}

fn kubectl(cluster: &Cluster, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    let out = cluster.kubectl_with_stdin(args, stdin);
    if !out.success {
        bail!("kubectl {args:?}: {}{}", out.stdout, out.stderr);
    }
    Ok(out.stdout)
}

fn deployment(name: &str, replicas: usize, image: &str, label: &str) -> String {
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
      labels: {{app: {name}, bench: {label}}}
    spec:
      containers:
      - name: main
        image: {image}
        args: [\"sleep\", \"86400000\"]
"
    )
}

/// Pushes the exerciser as `app:v1` and, under another digest, as `app:v2`.
fn push_modules(cluster: &Cluster) -> anyhow::Result<()> {
    let v2 = cluster.dir().join("exerciser-v2.wasm");
    std::fs::write(
        &v2,
        with_custom_section(&std::fs::read(guest("exerciser"))?, "v2"),
    )?;
    cluster.push("exerciser", "app:v1");
    let out = cluster.cli(&["push", &v2.display().to_string(), "app:v2"]);
    if !out.success {
        bail!("push app:v2: {}", out.stderr);
    }
    Ok(())
}

/// Runs one pod of each module to completion of its start, so both are cached.
fn warm_cache(cluster: &Cluster) -> anyhow::Result<()> {
    for (name, image) in [("warm-1", "app:v1"), ("warm-2", "app:v2")] {
        cluster.apply(&wasmfleet_tests::manifests::pod(
            name,
            image,
            &["sleep", "1000"],
            "Never",
        ));
        cluster.wait_pod_within(name, "running", PHASE_LIMIT, |pod| {
            pod["status"]["phase"] != "Pending"
        });
        kubectl(cluster, &["delete", "pod", name], None)?;
    }
    Ok(())
}

fn rollout(replicas: usize, rounds: usize) -> anyhow::Result<()> {
    let cluster = Cluster::start(ClusterOptions::default());
    let runtime = tokio::runtime::Runtime::new()?;
    push_modules(&cluster)?;
    warm_cache(&cluster)?;
    let pods = watch_pods(
        &runtime,
        ApiClient::from_kubeconfig(&cluster)?,
        "bench%3Droll",
    );
    println!("{replicas} replicas on one agent, modules cached; {rounds} rounds");
    for round in 0..rounds {
        let started = Instant::now();
        let manifest = deployment("web", replicas, "app:v1", "roll");
        kubectl(&cluster, &["apply", "-f", "-"], Some(&manifest))?;
        let done = wait_until(&pods, "all pods ready", |seen| {
            live(seen).filter(|(_, s)| s.ready.is_some()).count() == replicas
        })?;
        let v1: BTreeMap<String, Seen> = live(&snapshot(&pods))
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect();
        let old_hash = v1
            .values()
            .next()
            .map(|s| s.hash.clone())
            .unwrap_or_default();
        report(
            &format!("round {round}: apply -> Ready"),
            started,
            done,
            &v1,
        );

        let started = Instant::now();
        kubectl(
            &cluster,
            &["set", "image", "deploy/web", "main=app:v2"],
            None,
        )?;
        let done = wait_until(&pods, "the rolling update", |seen| {
            let new_ready = live(seen)
                .filter(|(_, s)| s.hash != old_hash && s.ready.is_some())
                .count();
            let old_left = live(seen).filter(|(_, s)| s.hash == old_hash).count();
            new_ready == replicas && old_left == 0
        })?;
        let v2: BTreeMap<String, Seen> = live(&snapshot(&pods))
            .filter(|(_, s)| s.hash != old_hash)
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect();
        report(
            &format!("round {round}: rolling update -> Ready"),
            started,
            done,
            &v2,
        );

        kubectl(&cluster, &["delete", "deploy", "web"], None)?;
        wait_until(&pods, "the pods to go", |seen| live(seen).next().is_none())?;
    }
    Ok(())
}

/// The pods not deleted.
fn live(seen: &BTreeMap<String, Seen>) -> impl Iterator<Item = (&String, &Seen)> {
    seen.iter().filter(|(_, s)| !s.deleted)
}

fn report(what: &str, started: Instant, done: Instant, pods: &BTreeMap<String, Seen>) {
    let mut latencies: Vec<Duration> = pods
        .values()
        .filter_map(|s| s.ready.map(|at| at.saturating_duration_since(started)))
        .collect();
    latencies.sort();
    if latencies.is_empty() {
        println!("{what}: no pods");
        return;
    }
    let at = |q: f64| {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let rank = (latencies.len() as f64 * q).ceil() as usize;
        latencies[rank.saturating_sub(1).min(latencies.len() - 1)]
    };
    println!(
        "{what}: {} pods, per pod p50 {:.0?}, p99 {:.0?}; total {:.0?}",
        latencies.len(),
        at(0.50),
        at(0.99),
        done.saturating_duration_since(started),
    );
}

fn rss(agents: usize, deployments: usize, replicas: usize) -> anyhow::Result<()> {
    let names: Vec<(String, String)> = (0..agents)
        .map(|i| (format!("node-{i:02}"), String::new()))
        .collect();
    let cluster = Cluster::start(ClusterOptions { agents: names });
    let runtime = tokio::runtime::Runtime::new()?;
    cluster.push("exerciser", "app:v1");
    let server = cluster.server_pid().context("server pid")?;
    settle_and_print_rss(server, &format!("idle, {agents} agents, no pods"));
    let pods = watch_pods(
        &runtime,
        ApiClient::from_kubeconfig(&cluster)?,
        "bench%3Drss",
    );
    let manifest = (0..deployments)
        .map(|i| deployment(&format!("d-{i:03}"), replicas, "app:v1", "rss"))
        .collect::<Vec<_>>()
        .join("---\n");
    let started = Instant::now();
    kubectl(&cluster, &["apply", "-f", "-"], Some(&manifest))?;
    let total = deployments * replicas;
    let done = wait_until(&pods, "every pod ready", |seen| {
        live(seen).filter(|(_, s)| s.ready.is_some()).count() == total
    })?;
    println!(
        "{deployments} Deployments x {replicas} replicas = {total} pods on {agents} agents \
         Ready in {:.1?}",
        done - started
    );
    settle_and_print_rss(
        server,
        &format!("idle, {total} pods, {deployments} Deployments"),
    );
    Ok(())
}

/// Waits 15 s for the server to go quiet, then samples its RSS five times, 2 s apart.
fn settle_and_print_rss(pid: u32, what: &str) {
    std::thread::sleep(Duration::from_secs(15));
    let samples: Vec<u64> = (0..5)
        .filter_map(|i| {
            if i > 0 {
                std::thread::sleep(Duration::from_secs(2));
            }
            rss_bytes(pid)
        })
        .map(|bytes| bytes >> 20)
        .collect();
    println!("server RSS, {what}: {samples:?} MiB");
}
