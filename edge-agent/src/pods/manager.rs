//! [`PodManager`]: the cheap handle through which the agent converges on its assigned
//! pods, reads their statuses and logs, and is told about status changes.

use crate::net::ServiceDirectory;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wasmfleet_protocol::pod::probe::PodEvent;
use wasmfleet_protocol::pod::{ContainerRef, PodAssignment, PodImages, PodReason, PodStatus};

use super::container::now_unix_ms;
use super::events::EventSink;
use super::lifecycle::Backoff;
use super::logfiles;
use super::logs::{LogError, LogStream};
use super::pod::{Pod, supervise};
use super::{ModuleSource, PodManagerConfig};
use super::{volume_limits, volumes};
use crate::modules::gc;
use crate::modules::single_flight::SingleFlight;
use crate::runtime::{LogSelection, NoPreviousRun, Runtime};

/// What every pod task needs.
pub struct Shared {
    /// The wasm runtime.
    pub runtime: Runtime,
    /// Where modules come from.
    pub source: Arc<dyn ModuleSource>,
    /// Every task is spawned here, so shutdown can wait for all of them.
    pub tracker: TaskTracker,
    /// Where container logs are persisted, if anywhere.
    pub log_dir: Option<PathBuf>,
    /// Where pods' volumes live, if anywhere ([`super::volumes`]).
    pub volume_dir: Option<volumes::VolumeRoots>,
    /// One fetch-and-install of the server's artifact per module digest at a time, shared
    /// by every container starting that module.
    pub artifact_installs: SingleFlight<()>,
    /// The node's table of Services.
    pub services: ServiceDirectory,
    /// Probe events on their way to the link.
    pub events: EventSink,
    /// The node directories pods may mount.
    pub host_paths: super::host_paths::HostPathPolicy,
}

/// Runs this node's pods. Cheap to clone; all clones manage the same pods.
///
/// A uid names one pod for its whole life, so [`PodManager::apply`] starts new uids, stops
/// missing ones and restarts only the containers whose image changed ([`super::update`]). On shutdown (the token given to
/// [`PodManager::new`] is cancelled) every container stops and statuses are left as they
/// were, so that a restarted agent continues from them via [`PodManager::restore`].
#[derive(Clone)]
pub struct PodManager {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    backoff: Backoff,
    shutdown: CancellationToken,
    state: Mutex<State>,
    changes: watch::Sender<u64>,
    module_cache_bytes: u64,
    // One garbage collection at a time.
    gc: Mutex<()>,
}

#[derive(Default)]
struct State {
    pods: BTreeMap<String, Arc<Pod>>,
    // Pods removed from the set whose containers have not ended yet: still reported, so
    // the server removes a pod being deleted only once it has really stopped.
    stopping: BTreeMap<String, Arc<Pod>>,
    restored: HashMap<String, PodStatus>,
    // Whether the log directories of pods this process never saw have been cleaned up.
    swept_logs: bool,
}

impl PodManager {
    /// A manager with no pods. Its tasks are spawned on `tracker` and stop when `shutdown`
    /// is cancelled.
    pub fn new(
        runtime: Runtime,
        source: Arc<dyn ModuleSource>,
        config: PodManagerConfig,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> Self {
        let (changes, _) = watch::channel(0);
        Self {
            inner: Arc::new(Inner {
                shared: Arc::new(Shared {
                    runtime,
                    source,
                    tracker,
                    log_dir: config.log_dir,
                    volume_dir: config.volume_dir,
                    artifact_installs: SingleFlight::default(),
                    services: config.services,
                    events: EventSink::default(),
                    host_paths: config.host_paths,
                }),
                backoff: Backoff::with_base(config.restart_backoff_base),
                shutdown,
                state: Mutex::new(State::default()),
                changes,
                module_cache_bytes: config.module_cache_bytes,
                gc: Mutex::new(()),
            }),
        }
    }

    /// Remembers statuses persisted by an earlier agent process. A later
    /// [`PodManager::apply`] that includes one of these uids continues the pod: a pod that
    /// had Succeeded or Failed is not run again, and unfinished containers start again
    /// (counted as restarts), and each container's persisted log (see
    /// [`PodManagerConfig::log_dir`]) is read back, so `logs` shows the earlier lines and a
    /// container that runs again appends to them. Call before the first `apply`.
    pub fn restore(&self, statuses: Vec<PodStatus>) {
        let mut state = self.state();
        for status in statuses {
            state.restored.insert(status.uid.clone(), status);
        }
    }

    /// Converges on `desired`, a set from the server: starts pods with new uids and stops
    /// pods that are no longer listed (their instances are dropped at once; their statuses
    /// and logs disappear, persisted logs included). The first apply also deletes the
    /// persisted logs of pods that are neither listed nor restored (removed while the agent
    /// was down). Restored statuses of pods the set does not list are forgotten with their
    /// logs: the pod left the node while the agent was down, or after the set persisted
    /// last was saved and before the statuses were (a kill -9 in between).
    pub fn apply(&self, desired: Vec<PodAssignment>) {
        self.converge(desired, true);
    }

    /// Like [`Self::apply`] for the set an earlier agent process persisted. Restored
    /// statuses it does not list are kept until the server's set: that one may still list
    /// them if persisting a newer set failed (a finished pod must then not run again).
    pub fn resume(&self, desired: Vec<PodAssignment>) {
        self.converge(desired, false);
    }

    fn converge(&self, desired: Vec<PodAssignment>, forget_unlisted_restored: bool) {
        if self.inner.shutdown.is_cancelled() {
            return;
        }
        let wanted: HashSet<String> = desired.iter().map(|p| p.uid.clone()).collect();
        let mut state = self.state();
        if !state.swept_logs {
            state.swept_logs = true;
            if let Some(log_dir) = &self.inner.shared.log_dir {
                let mut keep = wanted.clone();
                keep.extend(state.restored.keys().cloned());
                logfiles::remove_others(log_dir, &keep);
            }
            if let Some(volume_dir) = &self.inner.shared.volume_dir {
                let mut keep = wanted.clone();
                keep.extend(state.restored.keys().cloned());
                volumes::remove_others(volume_dir, &keep);
            }
        }
        let forgotten: Vec<String> = if forget_unlisted_restored {
            let unlisted = state
                .restored
                .keys()
                .filter(|uid| !wanted.contains(*uid))
                .cloned()
                .collect();
            state.restored.retain(|uid, _| wanted.contains(uid));
            unlisted
        } else {
            Vec::new()
        };
        let removed: Vec<String> = state
            .pods
            .keys()
            .filter(|uid| !wanted.contains(*uid))
            .cloned()
            .collect();
        let mut changed = !removed.is_empty();
        let mut stopped = Vec::new();
        for uid in removed {
            if let Some(pod) = state.pods.remove(&uid) {
                tracing::info!(%uid, name = %pod.assignment.name, "stopping pod");
                pod.stop.cancel();
                pod.finish_logs();
                if !pod.has_ended() {
                    state.stopping.insert(uid, pod.clone());
                }
                stopped.push(pod);
            }
        }
        for assignment in desired {
            let restored = state.restored.remove(&assignment.uid);
            if let Some(running) = state.pods.get(&assignment.uid) {
                // New files of its volumes (a ConfigMap changed) reach the running
                // containers; their env stays as it was.
                if running.assignment.config != assignment.config {
                    self.sync_volumes(&assignment);
                }
                let restarted = running.update_images(&assignment);
                if !restarted.is_empty() {
                    tracing::info!(uid = %assignment.uid, name = %assignment.name, containers = ?restarted, "image changed; restarting those containers on the new one");
                    changed = true;
                }
                continue;
            }
            self.sync_volumes(&assignment);
            let pod = Pod::new(
                assignment,
                restored.as_ref(),
                self.inner.shared.log_dir.as_deref(),
                now_unix_ms(),
                self.inner.shutdown.child_token(),
                self.inner.backoff,
                self.inner.changes.clone(),
            )
            .with_network(&self.inner.shared.services);
            let pod = Arc::new(pod);
            state.pods.insert(pod.uid().to_string(), pod.clone());
            let manager = self.clone();
            let shared = self.inner.shared.clone();
            self.inner.shared.tracker.spawn(async move {
                supervise(pod.clone(), shared).await;
                manager.supervisor_ended(&pod);
            });
            changed = true;
        }
        drop(state);
        // Outside the lock: deleting files should not hold up `statuses` and `logs`.
        stopped.iter().for_each(|pod| pod.delete_logs());
        if let Some(volume_dir) = &self.inner.shared.volume_dir {
            stopped
                .iter()
                .for_each(|pod| volumes::remove(volume_dir, pod.uid()));
        }
        if let Some(log_dir) = &self.inner.shared.log_dir {
            for uid in &forgotten {
                tracing::info!(%uid, "forgetting a restored pod the node no longer has");
                if let Some(dir) = logfiles::pod_dir(log_dir, uid) {
                    logfiles::remove_pod_dir(&dir);
                }
            }
        }
        if changed {
            self.inner.changes.send_modify(|v| *v = v.wrapping_add(1));
            self.collect_module_garbage();
        }
    }

    /// Writes the pod's volumes (a failure leaves its mounting containers unable to start,
    /// with the reason in their status).
    fn sync_volumes(&self, assignment: &PodAssignment) {
        let Some(volume_dir) = &self.inner.shared.volume_dir else {
            return;
        };
        if assignment.config.volumes.is_empty() {
            return;
        }
        if let Err(err) = volumes::sync(volume_dir, &assignment.uid, &assignment.config) {
            tracing::warn!(uid = %assignment.uid, %err, "cannot write the pod's volumes");
        }
    }

    /// Deletes cached modules (and their artifacts) that no pod uses, least recently used
    /// first, while the cache is over its budget. Runs on a blocking thread; returns at once.
    fn collect_module_garbage(&self) {
        let this = self.clone();
        let task = tokio::task::spawn_blocking(move || {
            let _one_at_a_time = this.inner.gc.lock().unwrap_or_else(|p| p.into_inner());
            let in_use = this.modules_in_use();
            let runtime = &this.inner.shared.runtime;
            let mut cached = this.inner.shared.source.cached();
            let artifact_bytes = runtime.artifact_bytes_by_module();
            for module in &mut cached {
                module.bytes += artifact_bytes.get(&module.digest).copied().unwrap_or(0);
            }
            let doomed = gc::plan(cached, &in_use, this.inner.module_cache_bytes);
            for digest in &doomed {
                this.inner.shared.source.remove(digest);
            }
            runtime.remove_artifacts(&doomed);
        });
        self.inner.shared.tracker.spawn(async move {
            if let Err(err) = task.await {
                tracing::warn!(%err, "module garbage collection failed");
            }
        });
    }

    /// The digests of every module a pod on this node references.
    fn modules_in_use(&self) -> HashSet<String> {
        self.state()
            .pods
            .values()
            .flat_map(|pod| pod.module_digests())
            .collect()
    }

    /// Marks `pod`'s supervisor ended: a pod that was stopping is no longer reported.
    fn supervisor_ended(&self, pod: &Arc<Pod>) {
        pod.set_ended();
        let mut state = self.state();
        let stopping = state.stopping.get(pod.uid());
        if stopping.is_some_and(|s| Arc::ptr_eq(s, pod)) {
            state.stopping.remove(pod.uid());
            drop(state);
            tracing::info!(uid = pod.uid(), name = %pod.assignment.name, "pod stopped");
            self.inner.changes.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    /// The status of every pod on the node, ordered by uid: the assigned ones, and those
    /// removed from the set whose containers are still stopping.
    pub fn statuses(&self) -> Vec<PodStatus> {
        self.reported().iter().map(|pod| pod.status()).collect()
    }

    /// [`Self::statuses`] and the images the same pods' containers run, for a report.
    pub fn report(&self) -> (Vec<PodStatus>, Vec<PodImages>) {
        let pods = self.reported();
        (
            pods.iter().map(|pod| pod.status()).collect(),
            pods.iter().map(|pod| pod.images()).collect(),
        )
    }

    /// Why the pods the agent evicted ended, for a report.
    pub fn reasons(&self) -> Vec<PodReason> {
        self.reported()
            .iter()
            .filter_map(|pod| pod.reason())
            .collect()
    }

    /// Enforces the pods' `emptyDir` `sizeLimit`s until `shutdown`: every `interval`, one
    /// blocking pass measures each limited volume of the pods still running and evicts
    /// those over a limit ([`super::volume_limits`]).
    pub async fn enforce_volume_limits(self, interval: Duration, shutdown: CancellationToken) {
        let Some(root) = self.inner.shared.volume_dir.clone() else {
            return;
        };
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let limited: Vec<Arc<Pod>> = self
                .state()
                .pods
                .values()
                .filter(|pod| !pod.assignment.config.size_limits.is_empty())
                .filter(|pod| pod.reason().is_none() && !pod.has_ended())
                .cloned()
                .collect();
            if limited.is_empty() {
                continue;
            }
            let root = root.clone();
            let pass = tokio::task::spawn_blocking(move || {
                for pod in limited {
                    let config = &pod.assignment.config;
                    let usage = |volume: &str| {
                        root.volume_dir(config, pod.uid(), volume)
                            .map_or(0, |dir| volume_limits::disk_usage(&dir))
                    };
                    if let Some(message) = volume_limits::exceeded(config, usage) {
                        tracing::warn!(uid = pod.uid(), name = %pod.assignment.name, %message, "evicting the pod");
                        pod.evict(volume_limits::EVICTED, message, now_unix_ms());
                        // The kubelet frees an evicted pod's volumes: the point is the disk.
                        volumes::remove(&root, pod.uid());
                    }
                }
            });
            if let Err(err) = pass.await {
                tracing::warn!(%err, "measuring the pods' volumes failed");
            }
        }
    }

    fn reported(&self) -> Vec<Arc<Pod>> {
        {
            let state = self.state();
            let stopping = state
                .stopping
                .iter()
                .filter(|(uid, _)| !state.pods.contains_key(*uid))
                .map(|(_, pod)| pod);
            let mut pods: Vec<Arc<Pod>> = state.pods.values().chain(stopping).cloned().collect();
            pods.sort_by(|a, b| a.uid().cmp(b.uid()));
            pods
        }
    }

    /// What the containers of every running pod have used so far, ordered by uid (pods
    /// being stopped are left out: they are gone from the server's point of view; so are
    /// finished ones, as in Kubernetes, where only running containers have metrics).
    pub fn usage(&self) -> Vec<crate::usage::PodSample> {
        let pods: Vec<Arc<Pod>> = self.state().pods.values().cloned().collect();
        pods.iter()
            .filter(|pod| pod.status().phase == wasmfleet_protocol::pod::PodPhase::Running)
            .map(|pod| pod.usage())
            .collect()
    }

    /// The running containers whose startup probe has not succeeded yet, on every pod.
    pub fn starting(&self) -> Vec<ContainerRef> {
        let pods: Vec<Arc<Pod>> = self.state().pods.values().cloned().collect();
        pods.iter().flat_map(|pod| pod.starting()).collect()
    }

    /// A receiver whose value changes after every status change (and every apply that
    /// added or removed pods).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// The lines of a container's log that `selection` asks for, and when it follows the
    /// lines that come after them.
    pub fn logs(
        &self,
        uid: &str,
        container: &str,
        selection: &LogSelection,
    ) -> Result<LogStream, LogError> {
        let pod = self
            .state()
            .pods
            .get(uid)
            .cloned()
            .ok_or_else(|| LogError::UnknownPod(uid.to_string()))?;
        let log = pod
            .log(container)
            .ok_or_else(|| LogError::UnknownContainer {
                pod: uid.to_string(),
                container: container.to_string(),
            })?;
        let snapshot =
            log.snapshot(selection)
                .map_err(|NoPreviousRun| LogError::NoPreviousRun {
                    pod: uid.to_string(),
                    container: container.to_string(),
                })?;
        Ok(LogStream::new(snapshot.lines, snapshot.follow))
    }

    /// The probe events of the node's containers (probe failures and the restarts they
    /// cause), for the link to report; `None` after the first call.
    pub fn take_events(&self) -> Option<mpsc::Receiver<PodEvent>> {
        self.inner.shared.events.take_receiver()
    }

    /// The runtime the pods run in.
    pub fn runtime(&self) -> &Runtime {
        &self.inner.shared.runtime
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The map is only ever changed by whole inserts and removals.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
