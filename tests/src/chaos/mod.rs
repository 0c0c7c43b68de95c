//! Chaos: faults at random moments against a cluster of real processes, and the invariants
//! checked after each one ends.
//!
//! Agents run in network namespaces of their own ([`crate::netns`]) so that a partition drops
//! their packets silently; the broker (embedded or Mosquitto) listens on the namespaces'
//! bridge. Faults: kill -9 of the server (and with it the embedded broker), of an agent, of
//! Mosquitto, and a partition of one agent from everything. While a fault happens, a writer
//! applies and deletes pods through the `wasmfleet` CLI ([`writes`]); a watcher reads the
//! agents' container logs ([`logwatch`]). After the fault ends, within [`RECOVERY_BOUND`]:
//!
//! - every node is Ready and every pod is as its spec says: `Always` pods Running and Ready,
//!   and really running (their log grew after the fault ended); completed pods Succeeded
//!   and never ran again; no node keeps the log of a pod it no longer has (a deleted pod
//!   stopped); and the whole path works again: a probe pod applied on every node after the
//!   fault ended ran to completion there;
//! - no acknowledged write is lost;
//! - at no scan did a pod run twice (two interleaved instances on one agent, or one pod on
//!   two nodes).
//!
//! The recovery time (fault end to all of the above) is measured per round.

pub mod logwatch;
pub mod rng;
pub mod writes;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;

use crate::cluster::{AgentLaunch, Broker, Cluster, ClusterOptions, node_ready, phase};
use crate::manifests::pod_labelled;
use crate::netns::{Namespace, Network};
use logwatch::LogWatch;
use rng::Rng;
use writes::WriteModel;

/// How long after a fault ends every invariant must hold again. An agent's reconnect
/// back-off is capped at 15 s, and a partition can leave it waiting that long.
pub const RECOVERY_BOUND: Duration = Duration::from_secs(45);

/// How often the watcher reads the agents' logs.
const SCAN_EVERY: Duration = Duration::from_millis(200);

/// How often convergence is probed.
const PROBE_EVERY: Duration = Duration::from_millis(200);

/// One kind of fault.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// kill -9 of the server (the embedded broker dies with it), then a restart.
    KillServer,
    /// kill -9 of an agent, then a restart on the same data dir.
    KillAgent,
    /// kill -9 of Mosquitto (its retained messages are lost), then a restart.
    KillBroker,
    /// Every packet between an agent and the rest dropped silently, then healed.
    Partition,
    /// A partition during which the agent is killed (kill -9) and restarted, still cut
    /// off (a device rebooting during a network outage), then healed.
    AgentRebootInPartition,
    /// A partition of an agent during which the server is killed (kill -9) and restarted.
    ServerCrashInPartition,
}

impl FaultKind {
    /// The kinds that apply with `broker`.
    pub fn all(broker: Broker) -> Vec<FaultKind> {
        let mut kinds = vec![
            FaultKind::KillServer,
            FaultKind::KillAgent,
            FaultKind::Partition,
            FaultKind::AgentRebootInPartition,
            FaultKind::ServerCrashInPartition,
        ];
        if broker == Broker::Mosquitto {
            kinds.push(FaultKind::KillBroker);
        }
        kinds
    }

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillServer => "kill -9 server",
            FaultKind::KillAgent => "kill -9 agent",
            FaultKind::KillBroker => "kill -9 mosquitto",
            FaultKind::Partition => "partition agent",
            FaultKind::AgentRebootInPartition => "agent kill -9 in partition",
            FaultKind::ServerCrashInPartition => "server kill -9 in partition",
        }
    }
}

/// One fault, fully decided in advance (so a seed replays it).
#[derive(Debug, Clone)]
pub struct Fault {
    /// What happens.
    pub kind: FaultKind,
    /// The agent it happens to (agent faults and partitions).
    pub agent: String,
    /// How long the writer runs before the fault hits (the random moment).
    pub lead: Duration,
    /// How long the fault lasts.
    pub outage: Duration,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let target = match self.kind {
            FaultKind::KillServer | FaultKind::KillBroker => String::new(),
            _ => format!(" {}", self.agent),
        };
        write!(
            f,
            "{}{target} after {} ms, for {} ms",
            self.kind.name(),
            self.lead.as_millis(),
            self.outage.as_millis()
        )
    }
}

/// What one round showed.
#[derive(Debug, Clone)]
pub struct RoundReport {
    /// The fault.
    pub fault: Fault,
    /// From the fault's end until every invariant held (`None`: not within the bound).
    pub recovery: Option<Duration>,
    /// Broken invariants, each described.
    pub violations: Vec<String>,
    /// Writes with a success answer, and with an unknown outcome, during the round.
    pub writes: (u64, u64),
}

/// A cluster under chaos: a server, a broker, agents in namespaces, the stable pods.
pub struct Chaos {
    watch: Arc<Mutex<LogWatch>>,
    watcher_stop: Arc<AtomicBool>,
    watcher: Option<JoinHandle<()>>,
    cluster: Cluster,
    namespaces: BTreeMap<String, Namespace>,
    broker: Broker,
    rng: Rng,
    model: WriteModel,
    rounds: usize,
    long_outages: bool,
    /// Dropped after the cluster (fields drop in order): the agents run inside it.
    _network: Network,
}

impl Chaos {
    /// Starts the cluster with `broker` and one agent per name, each in its own namespace,
    /// and on every node a pod that runs for ever and one that completed; `seed` decides
    /// every later fault and write.
    pub fn start(agents: &[&str], broker: Broker, seed: u64) -> anyhow::Result<Chaos> {
        let mut network = Network::create().context(
            "the chaos tests need network namespaces for partitions (root, iproute2, nftables)",
        )?;
        let host = IpAddr::V4(network.host_addr());
        let mut cluster =
            Cluster::start_with_broker_on(ClusterOptions { agents: vec![] }, broker, host);
        let mut namespaces = BTreeMap::new();
        for agent in agents {
            let namespace = network.add_namespace(agent)?;
            let mut launch = AgentLaunch::host("");
            launch.netns = Some(namespace.name.clone());
            cluster.launch_agent(agent, launch);
            namespaces.insert((*agent).to_owned(), namespace);
        }
        for agent in agents {
            cluster.wait_node_ready(agent);
        }
        cluster.push("exerciser", "exerciser:v1");
        let nodes = agents
            .iter()
            .map(|a| ((*a).to_owned(), cluster.agent_dir(a)))
            .collect();
        let watch = Arc::new(Mutex::new(LogWatch::new(nodes)));
        let watcher_stop = Arc::new(AtomicBool::new(false));
        let watcher = Some(spawn_watcher(&watch, &watcher_stop));
        let mut chaos = Chaos {
            watch,
            watcher_stop,
            watcher,
            cluster,
            namespaces,
            broker,
            rng: Rng::new(seed),
            model: WriteModel::default(),
            rounds: 0,
            long_outages: false,
            _network: network,
        };
        chaos.apply_stable_pods(agents);
        chaos.wait_settled(Instant::now())?;
        Ok(chaos)
    }

    /// Lets a third of the outages last 15-30 s instead of at most 5-6 s: past the MQTT
    /// keep-alive (the broker and the agent give the connection up) and the agent's longest
    /// reconnect back-off. For long runs; CI keeps the short ones.
    pub fn with_long_outages(mut self) -> Chaos {
        self.long_outages = true;
        self
    }

    /// The cluster under test.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// `rounds` faults: every kind the broker allows once (in a random order), then random
    /// kinds.
    pub fn plan(&mut self, rounds: usize) -> Vec<Fault> {
        let mut kinds = FaultKind::all(self.broker);
        self.rng.shuffle(&mut kinds);
        let all = FaultKind::all(self.broker);
        while kinds.len() < rounds {
            kinds.push(all[self.rng.below(all.len())]);
        }
        kinds.truncate(rounds);
        kinds.into_iter().map(|kind| self.fault(kind)).collect()
    }

    /// `rounds` faults of `kind` only (to measure one fault kind).
    pub fn plan_only(&mut self, kind: FaultKind, rounds: usize) -> Vec<Fault> {
        (0..rounds).map(|_| self.fault(kind)).collect()
    }

    /// A fault of `kind` with a random target, moment and length.
    pub fn fault(&mut self, kind: FaultKind) -> Fault {
        let agents: Vec<&String> = self.namespaces.keys().collect();
        let agent = agents[self.rng.below(agents.len())].clone();
        // Outages cross the node grace period (3 s) about half the time.
        let outage = match kind {
            _ if self.long_outages && self.rng.percent(33) => self.rng.millis(15_000, 30_000),
            FaultKind::Partition
            | FaultKind::AgentRebootInPartition
            | FaultKind::ServerCrashInPartition => self.rng.millis(500, 6000),
            _ => self.rng.millis(100, 5000),
        };
        Fault {
            kind,
            agent,
            lead: self.rng.millis(0, 1500),
            outage,
        }
    }

    /// Runs one fault with writes during it, then checks every invariant.
    pub fn round(&mut self, fault: &Fault) -> anyhow::Result<RoundReport> {
        self.rounds += 1;
        self.delete_probes()?;
        let before = (self.model.acknowledged, self.model.unknown);
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let clients = self.cluster.clients();
            let rng = self.rng.fork();
            let model = std::mem::take(&mut self.model);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || writes::write_until(&clients, rng, model, &stop))
        };
        std::thread::sleep(fault.lead);
        let ended = self.inject(fault);
        stop.store(true, Ordering::Relaxed);
        self.model = writer
            .join()
            .map_err(|_| anyhow::anyhow!("the writer thread panicked"))?;
        let ended = ended?;
        let mut violations = Vec::new();
        let recovery = match self.wait_settled(ended) {
            Ok(took) => Some(took),
            Err(problem) => {
                violations.push(format!("{problem:#}"));
                None
            }
        };
        violations.extend(self.lock_watch().take_violations());
        Ok(RoundReport {
            fault: fault.clone(),
            recovery,
            violations,
            writes: (
                self.model.acknowledged - before.0,
                self.model.unknown - before.1,
            ),
        })
    }

    /// Causes the fault, waits out its length and ends it; returns when it ended.
    fn inject(&mut self, fault: &Fault) -> anyhow::Result<Instant> {
        match fault.kind {
            FaultKind::KillServer => {
                self.cluster.kill_server();
                std::thread::sleep(fault.outage);
                let ended = Instant::now();
                self.cluster.restart_server();
                Ok(ended)
            }
            FaultKind::KillBroker => {
                self.cluster.kill_broker();
                std::thread::sleep(fault.outage);
                let ended = Instant::now();
                self.cluster.restart_broker();
                Ok(ended)
            }
            FaultKind::KillAgent => {
                self.cluster.kill_agent(&fault.agent);
                std::thread::sleep(fault.outage);
                let ended = Instant::now();
                self.cluster.restart_agent(&fault.agent);
                Ok(ended)
            }
            FaultKind::Partition => self.partitioned(fault, |_| {}),
            FaultKind::AgentRebootInPartition => {
                self.partitioned(fault, |cluster| cluster.restart_agent(&fault.agent))
            }
            FaultKind::ServerCrashInPartition => self.partitioned(fault, |cluster| {
                cluster.kill_server();
                cluster.restart_server();
            }),
        }
    }

    /// Partitions the fault's agent, runs `during` halfway through the outage, and heals.
    fn partitioned(
        &mut self,
        fault: &Fault,
        during: impl FnOnce(&mut Cluster),
    ) -> anyhow::Result<Instant> {
        let namespace = self
            .namespaces
            .get(&fault.agent)
            .context("no namespace for the partitioned agent")?
            .clone();
        namespace.partition()?;
        let started = Instant::now();
        std::thread::sleep(fault.outage / 2);
        during(&mut self.cluster);
        std::thread::sleep(fault.outage.saturating_sub(started.elapsed()));
        let ended = Instant::now();
        namespace.heal()?;
        Ok(ended)
    }

    /// The probe pods of the current round: one per node.
    fn probes(&self) -> Vec<(String, String)> {
        self.namespaces
            .keys()
            .map(|node| (format!("probe-{}-{node}", self.rounds), node.clone()))
            .collect()
    }

    /// Applies the missing probe pods; `Err` while the API refuses.
    fn apply_probes(&self, pods: &[Value]) -> Result<(), String> {
        for (name, node) in self.probes() {
            if pods.iter().any(|p| p["metadata"]["name"] == name.as_str()) {
                continue;
            }
            let manifest = pod_labelled(
                &name,
                &[],
                Some(&node),
                "exerciser:v1",
                &["print", "2"],
                "Never",
            );
            let out = self
                .cluster
                .cli_with_stdin(&["apply", "-f", "-"], Some(&manifest));
            if !out.success {
                return Err(format!("apply {name}: {}", out.stderr.trim()));
            }
        }
        Ok(())
    }

    /// Deletes the previous round's probe pods (their nodes must then drop their logs).
    fn delete_probes(&self) -> anyhow::Result<()> {
        let pods = self.list_pods().map_err(anyhow::Error::msg)?;
        for pod in &pods {
            let name = pod["metadata"]["name"].as_str().unwrap_or_default();
            if name.starts_with("probe-") {
                let out = self.cluster.cli(&["delete", "pod", name]);
                anyhow::ensure!(out.success, "delete {name}: {}", out.stderr);
            }
        }
        Ok(())
    }

    fn apply_stable_pods(&self, agents: &[&str]) {
        for agent in agents {
            self.cluster.apply(&pod_labelled(
                &format!("steady-{agent}"),
                &[],
                Some(agent),
                "exerciser:v1",
                &["print", "100000000"],
                "Always",
            ));
            self.cluster.apply(&pod_labelled(
                &format!("done-{agent}"),
                &[],
                Some(agent),
                "exerciser:v1",
                &["print", "3"],
                "Never",
            ));
        }
    }

    /// Waits until every invariant holds, at most [`RECOVERY_BOUND`] after `since`;
    /// returns how long after `since` that was, or what still did not hold.
    fn wait_settled(&mut self, since: Instant) -> anyhow::Result<Duration> {
        let progress = self.log_progress();
        let deadline = since + RECOVERY_BOUND;
        let mut last = String::from("never probed");
        while Instant::now() < deadline {
            match self.unsettled(&progress) {
                Ok(pods) => {
                    let took = since.elapsed();
                    self.check_writes(&pods)?;
                    return Ok(took);
                }
                Err(problem) => last = problem,
            }
            std::thread::sleep(PROBE_EVERY);
        }
        anyhow::bail!(
            "not recovered {} s after the fault ended: {last}",
            RECOVERY_BOUND.as_secs()
        )
    }

    /// Lines read per (node, uid) so far: running pods must add to them.
    fn log_progress(&self) -> BTreeMap<(String, String), u64> {
        let mut watch = self.lock_watch();
        watch.scan();
        self.namespaces
            .keys()
            .flat_map(|node| {
                watch
                    .uids_on(node)
                    .into_iter()
                    .map(|uid| {
                        let lines = watch.log(node, &uid).map_or(0, |l| l.lines);
                        ((node.clone(), uid), lines)
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// `Ok(pods)` when nodes and pods are all as they should be, else what is not.
    fn unsettled(&self, progress: &BTreeMap<(String, String), u64>) -> Result<Vec<Value>, String> {
        for node in self.namespaces.keys() {
            let status = self.cluster.node(node).map(|n| node_ready(&n));
            if status.as_deref() != Some("True") {
                return Err(format!("node {node} Ready={status:?}"));
            }
        }
        let pods = self.list_pods()?;
        self.apply_probes(&pods)?;
        let missing: Vec<String> = self
            .probes()
            .into_iter()
            .map(|(name, _)| name)
            .filter(|name| !pods.iter().any(|p| p["metadata"]["name"] == name.as_str()))
            .collect();
        if !missing.is_empty() {
            return Err(format!("probe pods {missing:?} just applied"));
        }
        let mut watch = self.lock_watch();
        watch.scan();
        let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for pod in &pods {
            let (node, uid) = pod_is_settled(pod, &watch, progress)?;
            expected.entry(node).or_default().insert(uid);
        }
        for node in self.namespaces.keys() {
            let want = expected.remove(node).unwrap_or_default();
            let have = watch.uids_on(node);
            if have != want {
                return Err(format!(
                    "node {node} holds logs of pods {:?}, its pods are {want:?}",
                    have.difference(&want).collect::<Vec<_>>()
                ));
            }
        }
        Ok(pods)
    }

    fn check_writes(&self, pods: &[Value]) -> anyhow::Result<()> {
        let violations = self.model.violations(&writes::churn_states(pods));
        anyhow::ensure!(violations.is_empty(), "{}", violations.join("; "));
        Ok(())
    }

    fn list_pods(&self) -> Result<Vec<Value>, String> {
        let out = self.cluster.cli(&["get", "pods", "-o", "json"]);
        if !out.success {
            return Err(format!("get pods: {}", out.stderr.trim()));
        }
        let list: Value = serde_json::from_str(&out.stdout).map_err(|e| e.to_string())?;
        Ok(list["items"].as_array().cloned().unwrap_or_default())
    }

    fn lock_watch(&self) -> std::sync::MutexGuard<'_, LogWatch> {
        self.watch.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Chaos {
    fn drop(&mut self) {
        self.watcher_stop.store(true, Ordering::Relaxed);
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
    }
}

/// Whether one pod is as its spec says; `Ok((node, uid))` when it is.
fn pod_is_settled(
    pod: &Value,
    watch: &LogWatch,
    progress: &BTreeMap<(String, String), u64>,
) -> Result<(String, String), String> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let uid = pod["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let node = pod["spec"]["nodeName"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let log = watch.log(&node, &uid);
    if pod["spec"]["restartPolicy"] == "Never" {
        if phase(pod) != "Succeeded" {
            return Err(format!("pod {name} is {}, not Succeeded", pod["status"]));
        }
        let runs = log.map_or(0, |l| l.runs);
        if runs != 1 {
            return Err(format!("completed pod {name} ran {runs} times"));
        }
        return Ok((node, uid));
    }
    if phase(pod) != "Running" || !is_ready(pod) {
        return Err(format!(
            "pod {name} is not Running and Ready: {}",
            pod["status"]
        ));
    }
    let before = progress
        .get(&(node.clone(), uid.clone()))
        .copied()
        .unwrap_or(0);
    let now = log.map_or(0, |l| l.lines);
    if now <= before {
        return Err(format!(
            "pod {name} on {node} printed nothing since the fault ended"
        ));
    }
    Ok((node, uid))
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn spawn_watcher(watch: &Arc<Mutex<LogWatch>>, stop: &Arc<AtomicBool>) -> JoinHandle<()> {
    let watch = Arc::clone(watch);
    let stop = Arc::clone(stop);
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            watch.lock().unwrap_or_else(PoisonError::into_inner).scan();
            std::thread::sleep(SCAN_EVERY);
        }
    })
}

/// Recovery times and violations per fault kind, over many rounds.
#[derive(Debug, Default)]
pub struct Summary {
    kinds: BTreeMap<FaultKind, (Vec<Duration>, usize, usize)>,
}

impl Summary {
    /// Adds one round.
    pub fn add(&mut self, report: &RoundReport) {
        let entry = self.kinds.entry(report.fault.kind).or_default();
        entry.1 += 1;
        entry.2 += report.violations.len();
        if let Some(took) = report.recovery {
            entry.0.push(took);
        }
    }

    /// All violations counted.
    pub fn violations(&self) -> usize {
        self.kinds.values().map(|(_, _, v)| v).sum()
    }

    /// A table: per kind, rounds, recovery p50/p99/max and violations.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| fault | rounds | recovery p50 | p99 | max | invariant violations |\n|---|---|---|---|---|---|\n",
        );
        for (kind, (times, rounds, violations)) in &self.kinds {
            let mut sorted = times.clone();
            sorted.sort();
            out.push_str(&format!(
                "| {} | {rounds} | {} | {} | {} | {violations} |\n",
                kind.name(),
                seconds(percentile(&sorted, 0.50)),
                seconds(percentile(&sorted, 0.99)),
                seconds(sorted.last().copied()),
            ));
        }
        out
    }
}

/// The `q` quantile (nearest rank) of sorted samples.
pub fn percentile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (sorted.len() as f64 * q).ceil() as usize;
    sorted
        .get(rank.saturating_sub(1).min(sorted.len() - 1))
        .copied()
}

fn seconds(duration: Option<Duration>) -> String {
    duration.map_or("-".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()))
}

/// The seed from `WASMFLEET_CHAOS_SEED`, or a fresh one from the clock.
pub fn seed_from_env() -> u64 {
    std::env::var("WASMFLEET_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_secs).collect();
        assert_eq!(percentile(&samples, 0.5), Some(Duration::from_secs(50)));
        assert_eq!(percentile(&samples, 0.99), Some(Duration::from_secs(99)));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn mosquitto_adds_the_broker_kill() {
        assert!(!FaultKind::all(Broker::Embedded).contains(&FaultKind::KillBroker));
        assert!(FaultKind::all(Broker::Mosquitto).contains(&FaultKind::KillBroker));
    }
}
