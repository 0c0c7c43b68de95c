//! One pod: its shared record (lifecycles, logs, stop token) and its supervisor task.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use wasmfleet_protocol::pod::{
    ContainerRef, ContainerSpec, ContainerState, PodAssignment, PodImages, PodPhase, PodReason,
    PodStatus, RunningImage,
};

use super::container;
use super::lifecycle::{Backoff, Event, Lifecycle, Next, pod_phase};
use super::logfiles;
use super::manager::Shared;
use super::update::restarted_containers;
use crate::net::{PodNet, ServiceDirectory};
use crate::runtime::{LogBuffer, UsageMeter};
use crate::usage::{ContainerSample, PodSample};

/// How long a stopped pod's containers get to end before the supervisor complains. Runs
/// are dropped at once on cancellation, so this is only a safety net for the log.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// Everything the agent knows about one pod, shared by its tasks and the manager.
pub struct Pod {
    /// The assignment it was created from (same uid, same pod). Of its containers only the
    /// image may change later: each container's current one is in `wanted`.
    pub assignment: PodAssignment,
    /// When this agent accepted it, Unix ms.
    pub start_unix_ms: u64,
    /// Cancelled when the pod is removed or the agent shuts down.
    pub stop: CancellationToken,
    /// One log per container, in spec order.
    pub logs: Vec<LogBuffer>,
    /// One usage meter per container, in spec order (CPU time across its runs, memory of
    /// its live instance).
    pub usage: Vec<UsageMeter>,
    /// The pod's network, shared by its containers (none if the server sent none).
    pub net: Option<Arc<PodNet>>,
    // Where the logs are persisted, if anywhere.
    log_dir: Option<PathBuf>,
    lifecycles: Mutex<Vec<Lifecycle>>,
    // Each container's spec as last assigned, in spec order; its task moves to a new image.
    wanted: Vec<watch::Sender<ContainerSpec>>,
    // The image each container's current or last run runs (the assigned one before its
    // first run), in spec order: what status reports.
    running: Mutex<Vec<RunningImage>>,
    // Restored in a final phase: nothing runs, the status is kept as it was.
    finished: bool,
    // That phase (an evicted pod that restarts `Always` is Failed, not what its
    // containers' states alone would say).
    final_phase: Option<PodPhase>,
    // Set once its supervisor has ended (its containers have stopped).
    ended: AtomicBool,
    // Why the agent evicted it, and when (Unix ms): it is Failed, its containers stopped.
    evicted: OnceLock<(PodReason, u64)>,
    backoff: Backoff,
    changes: watch::Sender<u64>,
}

impl Pod {
    /// A pod about to start, or continuing from `restored` (its status in an earlier agent
    /// process): finished pods stay finished, unfinished containers run again. With a
    /// `log_dir`, container logs are persisted under it and start with what an earlier
    /// process persisted (read here, synchronously: at most about 1 MiB per container).
    pub fn new(
        assignment: PodAssignment,
        restored: Option<&PodStatus>,
        log_dir: Option<&Path>,
        now_unix_ms: u64,
        stop: CancellationToken,
        backoff: Backoff,
        changes: watch::Sender<u64>,
    ) -> Self {
        let final_phase = restored
            .map(|s| s.phase)
            .filter(|phase| matches!(phase, PodPhase::Succeeded | PodPhase::Failed));
        let finished = final_phase.is_some();
        let lifecycles = assignment
            .containers
            .iter()
            .map(|spec| {
                let previous = restored
                    .and_then(|s| s.containers.iter().find(|c| c.name == spec.name))
                    .map(Lifecycle::restore);
                let mut lifecycle = previous.unwrap_or_default();
                if spec.probes.startup.is_some() || spec.probes.readiness.is_some() {
                    lifecycle = lifecycle.gated_by_probes();
                }
                if spec.probes.startup.is_some() {
                    lifecycle = lifecycle.with_startup_probe();
                }
                if !finished {
                    lifecycle.resume(now_unix_ms);
                }
                lifecycle
            })
            .collect();
        let log_dir = log_dir.and_then(|dir| logfiles::pod_dir(dir, &assignment.uid));
        let logs: Vec<LogBuffer> = assignment
            .containers
            .iter()
            .map(|spec| logfiles::container_log(log_dir.as_deref(), &spec.name))
            .collect();
        if finished {
            logs.iter().for_each(LogBuffer::finish);
        }
        let usage = assignment
            .containers
            .iter()
            .map(|_| UsageMeter::default())
            .collect();
        let wanted = assignment
            .containers
            .iter()
            .map(|spec| watch::Sender::new(spec.clone()))
            .collect();
        let running = assignment.containers.iter().map(running_image).collect();
        Self {
            net: None,
            usage,
            wanted,
            running: Mutex::new(running),
            start_unix_ms: restored
                .and_then(|s| s.start_unix_ms)
                .unwrap_or(now_unix_ms),
            assignment,
            stop,
            logs,
            log_dir,
            lifecycles: Mutex::new(lifecycles),
            finished,
            final_phase,
            ended: AtomicBool::new(false),
            evicted: OnceLock::new(),
            backoff,
            changes,
        }
    }

    /// Whether its supervisor has ended.
    pub fn has_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// Records that its supervisor has ended.
    pub fn set_ended(&self) {
        self.ended.store(true, Ordering::Release);
    }

    /// Takes the images of `assigned`, a new assignment of this pod: each container whose
    /// image changed is told to restart on its new module (a finished one keeps its end).
    /// Returns their names.
    pub fn update_images(&self, assigned: &PodAssignment) -> Vec<String> {
        let wanted: Vec<ContainerSpec> = self.wanted.iter().map(|w| w.borrow().clone()).collect();
        restarted_containers(&wanted, &assigned.containers)
            .into_iter()
            .filter_map(|(index, spec)| {
                self.wanted.get(index)?.send_replace(spec.clone());
                Some(spec.name.clone())
            })
            .collect()
    }

    /// Container `index`'s spec as last assigned; it changes when its image does.
    pub fn wanted(&self, index: usize) -> Option<watch::Receiver<ContainerSpec>> {
        self.wanted.get(index).map(watch::Sender::subscribe)
    }

    /// Records that container `index` now runs `spec`'s module (call before its start is
    /// recorded, so that no status names a run with the image of another).
    pub fn set_running(&self, index: usize, spec: &ContainerSpec) {
        if let Some(image) = self.running_images().get_mut(index) {
            *image = running_image(spec);
        }
    }

    /// The digests of the modules its containers run or are assigned.
    pub fn module_digests(&self) -> Vec<String> {
        let running = self
            .running_images()
            .iter()
            .map(|i| i.digest.clone())
            .collect::<Vec<_>>();
        let wanted = self.wanted.iter().map(|w| w.borrow().module.digest.clone());
        running.into_iter().chain(wanted).collect()
    }

    /// The pod with its network (if the server sent one), routing Services by `services`.
    pub fn with_network(mut self, services: &ServiceDirectory) -> Self {
        let assignment = &self.assignment;
        self.net = assignment.network.as_ref().and_then(|network| {
            PodNet::new(network, &assignment.namespace, services.clone())
                .inspect_err(|err| {
                    tracing::warn!(uid = %assignment.uid, %err, "pod runs without a network");
                })
                .ok()
                .map(Arc::new)
        });
        self
    }

    /// Evicts the pod (once): it ends `Failed` with `reason` and `message`, its containers
    /// stop and do not run again, and watchers are told.
    pub fn evict(&self, reason: &str, message: String, now_unix_ms: u64) {
        let why = PodReason {
            uid: self.assignment.uid.clone(),
            reason: reason.to_owned(),
            message,
        };
        if self.evicted.set((why, now_unix_ms)).is_ok() {
            self.stop.cancel();
            self.changes.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    /// Why the pod ended, when its containers do not say it (an eviction).
    pub fn reason(&self) -> Option<PodReason> {
        self.evicted.get().map(|(why, _)| why.clone())
    }

    /// The uid.
    pub fn uid(&self) -> &str {
        &self.assignment.uid
    }

    /// Applies `event` to container `index`, tells watchers, and says what to do next.
    pub fn record(&self, index: usize, event: Event) -> Next {
        let next = match self.lifecycles().get_mut(index) {
            Some(lifecycle) => {
                lifecycle.apply(event, self.assignment.restart_policy, &self.backoff)
            }
            None => Next::Done,
        };
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
        next
    }

    /// Records what container `index`'s probes concluded about its readiness and tells
    /// watchers (the link reports it at once).
    pub fn set_probe_ready(&self, index: usize, ready: bool) {
        if let Some(lifecycle) = self.lifecycles().get_mut(index) {
            lifecycle.set_probe_ready(ready);
        }
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Records that container `index`'s startup probe succeeded and tells watchers.
    pub fn set_probe_started(&self, index: usize) {
        if let Some(lifecycle) = self.lifecycles().get_mut(index) {
            lifecycle.set_probe_started();
        }
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// The running containers whose startup probe has not succeeded yet.
    pub fn starting(&self) -> Vec<ContainerRef> {
        let lifecycles = self.lifecycles();
        self.assignment
            .containers
            .iter()
            .zip(lifecycles.iter())
            .filter(|(_, lifecycle)| lifecycle.is_starting())
            .map(|(spec, _)| ContainerRef {
                uid: self.assignment.uid.clone(),
                container: spec.name.clone(),
            })
            .collect()
    }

    /// The wire status (an evicted pod's unfinished containers show as killed).
    pub fn status(&self) -> PodStatus {
        let lifecycles = self.lifecycles();
        let mut status = PodStatus {
            uid: self.assignment.uid.clone(),
            phase: pod_phase(self.assignment.restart_policy, lifecycles.iter()),
            start_unix_ms: Some(self.start_unix_ms),
            containers: self
                .assignment
                .containers
                .iter()
                .zip(lifecycles.iter())
                .map(|(spec, lifecycle)| lifecycle.status(&spec.name))
                .collect(),
        };
        if let Some(phase) = self.final_phase {
            status.phase = phase;
        }
        if let Some((_, at)) = self.evicted.get() {
            status.phase = PodPhase::Failed;
            for container in &mut status.containers {
                container.ready = false;
                let started_unix_ms = match container.state {
                    ContainerState::Terminated { .. } => continue,
                    ContainerState::Running { started_unix_ms } => started_unix_ms,
                    ContainerState::Waiting { .. } => *at,
                };
                container.state = ContainerState::Terminated {
                    exit_code: 137,
                    reason: "Error".to_owned(),
                    message: "The container was stopped: the pod was evicted".to_owned(),
                    started_unix_ms,
                    finished_unix_ms: *at,
                };
            }
        }
        status
    }

    /// What its containers have used so far.
    pub fn usage(&self) -> PodSample {
        PodSample {
            uid: self.assignment.uid.clone(),
            containers: self
                .assignment
                .containers
                .iter()
                .zip(&self.usage)
                .map(|(spec, meter)| ContainerSample {
                    name: spec.name.clone(),
                    cpu_time: meter.cpu_time(),
                    memory_bytes: meter.memory_bytes(),
                })
                .collect(),
        }
    }

    /// The images its containers run: each one's current or last run's (the assigned one
    /// before its first run), so a new image is named only once a run on it has started.
    pub fn images(&self) -> PodImages {
        PodImages {
            uid: self.assignment.uid.clone(),
            containers: self.running_images().clone(),
        }
    }

    /// The containers that still have to run.
    pub fn containers_to_run(&self) -> Vec<usize> {
        if self.finished || self.evicted.get().is_some() {
            return Vec::new();
        }
        let lifecycles = self.lifecycles();
        (0..lifecycles.len())
            .filter(|i| !lifecycles[*i].is_done())
            .collect()
    }

    /// Ends every log follower.
    pub fn finish_logs(&self) {
        self.logs.iter().for_each(LogBuffer::finish);
    }

    /// Deletes the persisted logs (the pod was removed); its logs go on in memory only.
    pub fn delete_logs(&self) {
        if let Some(dir) = &self.log_dir {
            self.logs.iter().for_each(LogBuffer::detach_file);
            logfiles::remove_pod_dir(dir);
        }
    }

    /// The log of the container called `name`.
    pub fn log(&self, name: &str) -> Option<&LogBuffer> {
        let index = self
            .assignment
            .containers
            .iter()
            .position(|c| c.name == name)?;
        self.logs.get(index)
    }

    fn running_images(&self) -> MutexGuard<'_, Vec<RunningImage>> {
        // Only ever changed by single assignments.
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lifecycles(&self) -> MutexGuard<'_, Vec<Lifecycle>> {
        // Lifecycle updates are single assignments; a panicking holder cannot leave a
        // half-applied transition that matters more than losing the pod's status.
        self.lifecycles
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn running_image(spec: &ContainerSpec) -> RunningImage {
    RunningImage {
        name: spec.name.clone(),
        image: spec.image.clone(),
        digest: spec.module.digest.clone(),
    }
}

/// The pod's supervisor: starts one task per container that still has to run, and waits
/// for them. After a stop it gives them [`STOP_GRACE`] and says so if they overrun.
pub async fn supervise(pod: Arc<Pod>, shared: Arc<Shared>) {
    let tasks: Vec<_> = pod
        .containers_to_run()
        .into_iter()
        .map(|index| {
            shared
                .tracker
                .spawn(container::run(pod.clone(), index, shared.clone()))
        })
        .collect();
    tracing::info!(uid = pod.uid(), name = %pod.assignment.name, containers = tasks.len(), "pod started");
    let all = futures::future::join_all(tasks);
    tokio::pin!(all);
    let results = tokio::select! {
        results = &mut all => Some(results),
        () = pod.stop.cancelled() => {
            let results = tokio::time::timeout(STOP_GRACE, &mut all).await.ok();
            if results.is_none() {
                tracing::warn!(uid = pod.uid(), "pod containers did not stop within {STOP_GRACE:?}");
            }
            results
        }
    };
    for error in results.into_iter().flatten().filter_map(Result::err) {
        tracing::error!(uid = pod.uid(), %error, "a container task failed");
    }
    pod.finish_logs();
    tracing::info!(uid = pod.uid(), name = %pod.assignment.name, "pod supervisor ended");
}
