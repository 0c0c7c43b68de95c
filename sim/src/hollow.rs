//! One hollow agent: the agent's [`Link`] and [`PodSync`] over [`HollowPods`], a pod
//! backend that only records the pods it is given and reports them Running.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wasmfleet_agent::link::{self, BackoffPolicy, Link, LinkConfig, Session};
use wasmfleet_agent::node_info::kubernetes_arch;
use wasmfleet_agent::pods::{LogError, LogStream};
use wasmfleet_agent::runtime::{LogSelection, WASMTIME_VERSION};
use wasmfleet_agent::state::{AgentState, StateError};
use wasmfleet_agent::sync::{PodBackend, PodSync};
use wasmfleet_protocol::node::{EngineInfo, NodeAddress, NodeInfo, Resources};
use wasmfleet_protocol::pod::probe::PodEvent;
use wasmfleet_protocol::pod::{
    ContainerRef, ContainerState, ContainerStatus, PodAssignment, PodImages, PodPhase, PodStatus,
    RunningImage,
};

use crate::config::SimConfig;
use crate::tally::Tally;

/// What a hollow node advertises: memory and CPU enough for any test pod.
const HOLLOW_MEMORY_BYTES: u64 = 4 << 30;
/// Millicores a hollow node advertises.
const HOLLOW_CPU_MILLIS: u64 = 4_000;

/// How long the link gets to send the final status and say goodbye (as the agent's).
const LINK_CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// The birth every hollow node sends, but for its host name: the simulator's machine, a
/// `hollow` engine (it asks for no artifacts), the capacity of `config`, no tunnel.
pub fn node_info(config: &SimConfig) -> NodeInfo {
    let resources = Resources {
        memory_bytes: HOLLOW_MEMORY_BYTES,
        cpu_millis: HOLLOW_CPU_MILLIS,
        pods: config.pods_per_agent,
    };
    NodeInfo {
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        architecture: kubernetes_arch(std::env::consts::ARCH).to_owned(),
        operating_system: std::env::consts::OS.to_owned(),
        kernel_version: String::new(),
        os_image: "wasmfleet-sim hollow node".to_owned(),
        hostname: String::new(),
        capacity: resources,
        allocatable: resources,
        labels: config.labels.clone(),
        engine: EngineInfo {
            wasmtime_version: WASMTIME_VERSION.to_owned(),
            target: "hollow".to_owned(),
            compatibility_key: String::new(),
            can_compile: false,
        },
        addresses: vec![NodeAddress::internal(std::net::Ipv4Addr::LOCALHOST.into())],
        tunnel: None,
    }
}

/// A running hollow agent.
pub struct HollowAgent {
    link: Link,
    sync: PodSync,
    tracker: TaskTracker,
    stopping: CancellationToken,
}

impl HollowAgent {
    /// Starts agent number `index` (1-based): it connects in the background, with the
    /// agent's jittered back-off between attempts.
    pub fn start(
        config: &SimConfig,
        index: u32,
        info: &NodeInfo,
        tally: Arc<Tally>,
    ) -> Result<HollowAgent, StateError> {
        let node = config.node_name(index);
        let state = AgentState::in_memory()?;
        let (uplink, parts) = link::uplink(&node);
        let tracker = TaskTracker::new();
        let link_config = LinkConfig {
            mqtt: config.mqtt.clone(),
            transport: config.transport.clone(),
            node_name: node.clone(),
            password: config.mqtt_password(&node),
            heartbeat_interval: config.heartbeat_interval,
            reconnect: BackoffPolicy::default(),
        };
        let mut info = info.clone();
        info.hostname.clone_from(&node);
        let (link, inbox) = Link::start(&link_config, parts, info, state.clone(), None, &tracker);
        let stopping = CancellationToken::new();
        tracker.spawn(count_sessions(
            uplink.sessions(),
            tally.clone(),
            stopping.clone(),
        ));
        let pods = HollowPods::new(node, tally);
        tracker.spawn(crate::usage::send(
            pods.clone(),
            uplink.clone(),
            config.usage_interval,
            stopping.clone(),
        ));
        let sync = PodSync::start(inbox, pods, state, uplink, None, &tracker);
        Ok(HollowAgent {
            link,
            sync,
            tracker,
            stopping,
        })
    }

    /// Stops as the agent does: a final status report, "offline", disconnect.
    pub async fn stop(self) {
        self.stopping.cancel();
        self.sync.freeze();
        self.sync.shutdown().await;
        if let Err(err) = self.link.shutdown(LINK_CLOSE_TIMEOUT).await {
            tracing::warn!(%err, "a hollow agent's link did not close cleanly");
        }
        self.tracker.close();
        if tokio::time::timeout(LINK_CLOSE_TIMEOUT, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("a hollow agent's tasks did not stop in time");
        }
    }
}

/// Counts the agent's sessions in the tally until its link ends.
async fn count_sessions(
    mut sessions: watch::Receiver<Session>,
    tally: Arc<Tally>,
    stopping: CancellationToken,
) {
    let mut connected = false;
    loop {
        let now = sessions.borrow_and_update().connected;
        if now != connected {
            connected = now;
            tally.session(now, !stopping.is_cancelled());
        }
        if sessions.changed().await.is_err() {
            break;
        }
    }
    if connected {
        tally.session(false, false);
    }
}

/// Pods that run nothing: each is Running from the moment it is assigned, until it is
/// removed. Cheap to clone.
#[derive(Clone)]
pub struct HollowPods {
    inner: Arc<Inner>,
}

struct Inner {
    node: String,
    tally: Arc<Tally>,
    /// By uid.
    pods: Mutex<BTreeMap<String, HollowPod>>,
    changes: watch::Sender<u64>,
    /// Whether a desired set has arrived yet.
    synced: Mutex<bool>,
}

struct HollowPod {
    assignment: PodAssignment,
    started_unix_ms: u64,
}

impl HollowPods {
    /// No pods yet, on `node`.
    pub fn new(node: String, tally: Arc<Tally>) -> Self {
        HollowPods {
            inner: Arc::new(Inner {
                node,
                tally,
                pods: Mutex::new(BTreeMap::new()),
                changes: watch::channel(0).0,
                synced: Mutex::new(false),
            }),
        }
    }

    /// Every pod's uid and container names (all of them run, as far as anyone can tell).
    pub fn containers(&self) -> Vec<(String, Vec<String>)> {
        self.pods()
            .iter()
            .map(|(uid, pod)| {
                let names = pod.assignment.containers.iter().map(|c| c.name.clone());
                (uid.clone(), names.collect())
            })
            .collect()
    }

    fn pods(&self) -> MutexGuard<'_, BTreeMap<String, HollowPod>> {
        self.inner
            .pods
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl PodBackend for HollowPods {
    fn apply(&self, desired: Vec<PodAssignment>) {
        let tally = &self.inner.tally;
        {
            let mut synced = self
                .inner
                .synced
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !*synced {
                *synced = true;
                tally.first_sync();
            }
        }
        let now = unix_ms();
        let mut pods = self.pods();
        let before = pods.len();
        let wanted: BTreeMap<String, PodAssignment> =
            desired.into_iter().map(|p| (p.uid.clone(), p)).collect();
        pods.retain(|uid, _| wanted.contains_key(uid));
        let stopped = before - pods.len();
        let mut started = 0;
        for (uid, assignment) in wanted {
            match pods.get_mut(&uid) {
                // An image change only swaps what the pod reports it runs.
                Some(pod) => pod.assignment = assignment,
                None => {
                    started += 1;
                    pods.insert(
                        uid,
                        HollowPod {
                            assignment,
                            started_unix_ms: now,
                        },
                    );
                }
            }
        }
        drop(pods);
        use std::sync::atomic::Ordering::Relaxed;
        tally.pod_starts.fetch_add(started, Relaxed);
        tally.pod_stops.fetch_add(stopped as u64, Relaxed);
        tally.pods.fetch_add(started, Relaxed);
        tally.pods.fetch_sub(stopped as u64, Relaxed);
        self.inner.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn report(&self) -> (Vec<PodStatus>, Vec<PodImages>) {
        self.inner
            .tally
            .reports
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pods = self.pods();
        pods.iter().map(|(uid, pod)| pod.report(uid)).unzip()
    }

    fn starting(&self) -> Vec<ContainerRef> {
        Vec::new()
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    fn logs(
        &self,
        uid: &str,
        container: &str,
        _selection: &LogSelection,
    ) -> Result<LogStream, LogError> {
        let pods = self.pods();
        let pod = pods
            .get(uid)
            .ok_or_else(|| LogError::UnknownPod(uid.to_owned()))?;
        if !pod
            .assignment
            .containers
            .iter()
            .any(|c| c.name == container)
        {
            return Err(LogError::UnknownContainer {
                pod: uid.to_owned(),
                container: container.to_owned(),
            });
        }
        let line = format!(
            "hollow container {container} of pod {}/{} on node {} (wasmfleet-sim runs nothing)",
            pod.assignment.namespace, pod.assignment.name, self.inner.node
        );
        Ok(LogStream::lines_only(vec![line]))
    }

    fn take_events(&self) -> Option<mpsc::Receiver<PodEvent>> {
        None
    }
}

impl HollowPod {
    /// Running, every container ready since the pod arrived.
    fn report(&self, uid: &str) -> (PodStatus, PodImages) {
        let containers = &self.assignment.containers;
        let status = PodStatus {
            uid: uid.to_owned(),
            phase: PodPhase::Running,
            start_unix_ms: Some(self.started_unix_ms),
            containers: containers
                .iter()
                .map(|c| ContainerStatus {
                    name: c.name.clone(),
                    restart_count: 0,
                    state: ContainerState::Running {
                        started_unix_ms: self.started_unix_ms,
                    },
                    last_state: None,
                    ready: true,
                })
                .collect(),
        };
        let images = PodImages {
            uid: uid.to_owned(),
            containers: containers
                .iter()
                .map(|c| RunningImage {
                    name: c.name.clone(),
                    image: c.image.clone(),
                    digest: c.module.digest.clone(),
                })
                .collect(),
        };
        (status, images)
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
