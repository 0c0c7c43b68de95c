//! One container's task: fetch and load its module, run it, and follow the lifecycle's
//! decisions (restart after a back-off, retry a failed fetch, or stop) until it is done
//! or its pod is stopped.
//!
//! When its image changes ([`Pod::update_images`]) while it runs, the new module is
//! fetched and loaded while the current run goes on; then the run is ended and the
//! container restarts on the new module at once (a module that cannot be had is the
//! usual module failure, retried with back-off). A change while it waits ends the wait.
//! Status names the new image only from the new run's start.
//!
//! A stop (pod removed, agent shutting down) ends the task without recording anything:
//! a removed pod has no status any more, and on shutdown the last recorded status is what
//! a restarted agent should continue from.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use wasmfleet_protocol::network::Protocol;
use wasmfleet_protocol::pod::{ContainerSpec, ProbeKind};

use super::lifecycle::{Event, Next, TerminationReason, WaitingReason};
use super::manager::Shared;
use super::pod::Pod;
use super::prober;
use super::volumes;
use crate::runtime::{
    Exit, ExitReason, HTTP_NO_PORT, LogBuffer, ModuleKind, Preopen, Program, RunSpec,
};

/// Runs container `index` of `pod`.
pub async fn run(pod: Arc<Pod>, index: usize, shared: Arc<Shared>) {
    let Some(spec) = pod.assignment.containers.get(index) else {
        return;
    };
    let Some(logs) = pod.logs.get(index) else {
        return;
    };
    let Some(mut wanted) = pod.wanted(index) else {
        return;
    };
    let mut task = Task {
        pod: &pod,
        index,
        spec,
        run_spec: RunSpec {
            network: pod.net.clone(),
            pod_name: pod.assignment.name.clone(),
            http_port: serving_port(&pod, &spec.name),
            usage: pod.usage.get(index).cloned().unwrap_or_default(),
            ..run_spec(spec)
        },
        logs,
        shared: &shared,
    };
    let mut program: Option<Loaded> = None;
    loop {
        if program.as_ref().is_some_and(|p| p.spec != *wanted.borrow()) {
            // The image changed while it waited (or ran out by itself as the new module
            // was loading): the new image's module is the one to run.
            program = None;
        }
        let step = match program.take() {
            None => {
                let module = wanted.borrow_and_update().clone();
                match until_stopped(&pod.stop, task.load(module)).await {
                    None => None,
                    Some(Ok(loaded)) => {
                        program = Some(loaded);
                        continue;
                    }
                    Some(Err(failure)) => Some(task.module_failed(failure)),
                }
            }
            Some(loaded) => {
                let (step, next) = task.run_once(loaded, &mut wanted).await;
                program = next;
                step
            }
        };
        let proceed = match step {
            None | Some(Next::Done) => false,
            Some(Next::Continue) => true,
            Some(Next::RetryAfter(delay)) => {
                let wait = tokio::time::timeout(delay, wanted.changed());
                until_stopped(&pod.stop, wait).await.is_some()
            }
        };
        if !proceed {
            break;
        }
    }
    logs.finish();
    // This container no longer holds its program; unload what went idle past the budget.
    drop(program);
    shared.runtime.unload_idle();
}

/// A container's module, loaded and ready to run.
struct Loaded {
    program: Program,
    /// The spec it was loaded for (its image).
    spec: ContainerSpec,
    /// The container's volume mounts.
    preopens: Vec<Preopen>,
}

/// One container's fixed context.
struct Task<'a> {
    pod: &'a Arc<Pod>,
    index: usize,
    spec: &'a ContainerSpec,
    run_spec: RunSpec,
    logs: &'a LogBuffer,
    shared: &'a Arc<Shared>,
}

/// How a run ended.
enum Ended {
    /// By itself (or killed for a failed probe).
    Exited(Exit),
    /// The agent ended it for a new image: its module, or why there is none.
    Replaced(Box<Result<Loaded, Event>>),
}

impl Task<'_> {
    /// Fetches and loads `spec`'s module and prepares the container's mounts.
    async fn load(&self, spec: ContainerSpec) -> Result<Loaded, Event> {
        let program = load(self.shared, &spec, self.pod).await?;
        let preopens = mounts(self.shared, self.pod, self.spec)?;
        Ok(Loaded {
            program,
            spec,
            preopens,
        })
    }

    /// Waits until the container's image changes, then loads the new module.
    async fn next_module(
        &self,
        wanted: &mut watch::Receiver<ContainerSpec>,
    ) -> Result<Loaded, Event> {
        if wanted.changed().await.is_err() {
            // The pod is gone: nothing will change any more.
            std::future::pending::<()>().await;
        }
        let spec = wanted.borrow_and_update().clone();
        tracing::info!(uid = self.pod.uid(), container = %self.spec.name, image = %spec.image, "image changed; loading the new module");
        self.load(spec).await
    }

    /// Records a fetch or load failure.
    fn module_failed(&self, failure: Event) -> Next {
        tracing::warn!(uid = self.pod.uid(), container = %self.spec.name, ?failure, "module not available");
        self.pod.record(self.index, failure)
    }

    /// Runs the container once, with its probes, and records how it went; `None` when it
    /// was stopped. A new image ends the run once its module is loaded. Returns what the
    /// container runs next time, if it is loaded.
    async fn run_once(
        &mut self,
        loaded: Loaded,
        wanted: &mut watch::Receiver<ContainerSpec>,
    ) -> (Option<Next>, Option<Loaded>) {
        self.run_spec.preopens.clone_from(&loaded.preopens);
        self.pod.set_running(self.index, &loaded.spec);
        let started = Event::Started {
            at_unix_ms: now_unix_ms(),
        };
        self.pod.record(self.index, started);
        tracing::info!(uid = self.pod.uid(), container = %self.spec.name, image = %loaded.spec.image, "container started");
        // Ends this run only: the pod's stop, a failed liveness or startup verdict, a new image.
        let run = self.pod.stop.child_token();
        let probes = prober::start(self.pod, self.index, &run, self.shared);
        self.logs.begin_run();
        let ended = {
            let running = self
                .shared
                .runtime
                .run(&loaded.program, &self.run_spec, self.logs, &run);
            tokio::pin!(running);
            tokio::select! {
                exit = &mut running => Ended::Exited(exit),
                next = self.next_module(wanted) => {
                    run.cancel();
                    running.await;
                    Ended::Replaced(Box::new(next))
                }
            }
        };
        self.logs.end_run();
        run.cancel();
        if self.pod.stop.is_cancelled() {
            return (None, None);
        }
        match ended {
            Ended::Exited(exit) => {
                let event = match probes.and_then(|p| p.killed_by()) {
                    Some(kind) => killed_by_probe(&self.spec.name, kind),
                    None => exited(exit),
                };
                tracing::info!(uid = self.pod.uid(), container = %self.spec.name, ?event, "container exited");
                (Some(self.pod.record(self.index, event)), Some(loaded))
            }
            Ended::Replaced(next) => {
                drop(loaded);
                let replaced = Event::Replaced {
                    message: format!(
                        "Container {} definition changed, restarted on its new image",
                        self.spec.name
                    ),
                    at_unix_ms: now_unix_ms(),
                };
                let step = self.pod.record(self.index, replaced);
                self.shared.runtime.unload_idle();
                match *next {
                    Ok(new) => (Some(step), Some(new)),
                    Err(failure) => (Some(self.module_failed(failure)), None),
                }
            }
        }
    }
}

/// The argv, env and limits of one run (the pod's network is added by the caller). argv is `command` then `args`; with no `command`
/// argv\[0\] is the container's name, as a program's own name would be.
pub fn run_spec(spec: &ContainerSpec) -> RunSpec {
    let head = if spec.command.is_empty() {
        vec![spec.name.clone()]
    } else {
        spec.command.clone()
    };
    RunSpec {
        argv: head.into_iter().chain(spec.args.iter().cloned()).collect(),
        env: spec.env.clone(),
        memory_limit_bytes: spec.memory_limit_bytes,
        cpu_limit_millis: spec.cpu_limit_millis,
        ..RunSpec::default()
    }
}

/// The container's volume mounts as preopened directories; a failure (a `subPath` that
/// names a file, no volume directory) is the lifecycle event for it.
fn mounts(shared: &Shared, pod: &Pod, spec: &ContainerSpec) -> Result<Vec<Preopen>, Event> {
    let config = &pod.assignment.config;
    let roots = shared.volume_dir.as_ref();
    volumes::preopens(roots, &shared.host_paths, pod.uid(), config, &spec.name).map_err(|err| {
        Event::ModuleFailed {
            reason: err.reason,
            message: err.message,
        }
    })
}

/// Fetches and loads the container's module; a failure is the lifecycle event for it.
async fn load(shared: &Shared, spec: &ContainerSpec, pod: &Pod) -> Result<Program, Event> {
    let path = shared
        .source
        .fetch(&spec.module)
        .await
        .map_err(|message| Event::ModuleFailed {
            reason: WaitingReason::ErrModulePull,
            message: format!(
                "cannot fetch module {} (sha256:{}): {message}",
                spec.image, spec.module.digest
            ),
        })?;
    precompiled_by_server(shared, spec).await;
    let cannot_run = |error: String| Event::ModuleFailed {
        reason: WaitingReason::CreateContainerError,
        message: format!(
            "module {} (sha256:{}): {error}",
            spec.image, spec.module.digest
        ),
    };
    let program = shared
        .runtime
        .load(&spec.module.digest, &path)
        .await
        .map_err(|error| cannot_run(error.to_string()))?;
    if program.kind() == ModuleKind::Core && declares_ports(pod, &spec.name) {
        return Err(cannot_run(format!(
            "container {:?} declares ports, but its module is a wasm32-wasip1 core module, \
             which has no sockets: build it for wasm32-wasip2",
            spec.name
        )));
    }
    if program.serves_http() && serving_port(pod, &spec.name).is_none() {
        return Err(cannot_run(format!(
            "container {:?}: {HTTP_NO_PORT}",
            spec.name
        )));
    }
    Ok(program)
}

/// The port a `wasi:http` proxy in container `name` is served on: its first TCP
/// `containerPort`.
fn serving_port(pod: &Pod, name: &str) -> Option<u16> {
    let network = pod.assignment.network.as_ref()?;
    network
        .ports
        .iter()
        .find(|p| p.container == name && p.protocol == Protocol::Tcp)
        .map(|p| p.port)
}

/// Whether the pod declares `containerPorts` for container `name`.
fn declares_ports(pod: &Pod, name: &str) -> bool {
    let network = pod.assignment.network.as_ref();
    network.is_some_and(|n| n.ports.iter().any(|p| p.container == name))
}

/// Installs the server's signed artifact for the module, unless one is cached already, so
/// that loading does not compile. Without one the runtime compiles locally. Containers
/// starting the same module together share one fetch and install.
async fn precompiled_by_server(shared: &Shared, spec: &ContainerSpec) {
    shared
        .artifact_installs
        .run(
            &spec.module.digest,
            fetch_and_install_artifact(shared, spec),
        )
        .await;
}

async fn fetch_and_install_artifact(shared: &Shared, spec: &ContainerSpec) {
    let runtime = &shared.runtime;
    let digest = &spec.module.digest;
    if runtime.has_artifact(digest) {
        return;
    }
    let artifact = match shared
        .source
        .fetch_artifact(&spec.module, &runtime.engine_info())
        .await
    {
        Ok(artifact) => artifact,
        Err(why) => {
            tracing::info!(image = %spec.image, %digest, %why, "compiling locally");
            return;
        }
    };
    match runtime.install_artifact(digest, &artifact) {
        Ok(()) => {
            tracing::info!(image = %spec.image, %digest, "installed the server's signed artifact")
        }
        Err(err) => {
            tracing::warn!(image = %spec.image, %digest, %err, "cannot install the server's artifact; compiling locally")
        }
    }
}

/// How a run the agent killed for a failed probe ended: like a SIGKILL (137, `Error`).
fn killed_by_probe(container: &str, kind: ProbeKind) -> Event {
    Event::Exited {
        exit_code: crate::runtime::KILLED_EXIT_CODE,
        reason: TerminationReason::Error,
        message: format!(
            "Container {container} failed {} probe, will be restarted",
            kind.title().to_ascii_lowercase()
        ),
        at_unix_ms: now_unix_ms(),
    }
}

fn exited(exit: Exit) -> Event {
    Event::Exited {
        exit_code: exit.code,
        reason: match exit.reason {
            ExitReason::Completed => TerminationReason::Completed,
            ExitReason::OomKilled => TerminationReason::OomKilled,
            ExitReason::Error | ExitReason::Killed => TerminationReason::Error,
        },
        message: exit.message,
        at_unix_ms: now_unix_ms(),
    }
}

/// Runs `work` unless `stop` is cancelled first (`None` then).
async fn until_stopped<T>(stop: &CancellationToken, work: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        biased;
        () = stop.cancelled() => None,
        value = work => Some(value),
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmfleet_protocol::pod::ModuleRef;

    fn container(command: &[&str], args: &[&str]) -> ContainerSpec {
        ContainerSpec {
            name: "main".into(),
            image: "exerciser:v1".into(),
            module: ModuleRef {
                digest: "ab".repeat(32),
                size: 1,
            },
            command: command.iter().map(|s| s.to_string()).collect(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec![("K".into(), "V".into())],
            memory_limit_bytes: Some(1 << 20),
            cpu_limit_millis: Some(250),
            probes: Default::default(),
        }
    }

    #[test]
    fn without_a_command_argv0_is_the_container_name() {
        assert_eq!(
            run_spec(&container(&[], &["exit", "3"])).argv,
            ["main", "exit", "3"]
        );
    }

    #[test]
    fn a_command_replaces_argv0_and_comes_before_the_args() {
        let spec = run_spec(&container(&["tool", "sub"], &["x"]));
        assert_eq!(spec.argv, ["tool", "sub", "x"]);
        assert_eq!(spec.env, [("K".to_string(), "V".to_string())]);
        assert_eq!(
            (spec.memory_limit_bytes, spec.cpu_limit_millis),
            (Some(1 << 20), Some(250))
        );
    }
}
