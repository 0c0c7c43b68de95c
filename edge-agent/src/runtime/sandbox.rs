//! Running one container: one `Store` with its WASI context, memory limiter and epoch
//! callback, from instantiation to exit.
//!
//! How a run ends is mapped onto Kubernetes terms in [`Exit`]:
//! - returning normally or `exit(0)`: `Completed`, code 0;
//! - `exit(n)` with n != 0 (or a p2 command returning `Err`, which is code 1): `Error`, code n;
//! - a trap (e.g. `unreachable` after a Rust panic): `Error`, code 1, with the trap as message;
//! - any failure or non-zero exit after the memory limiter denied growth: `OOMKilled`, 137
//!   (the guest's allocator aborts when memory cannot grow, so the trap is a symptom);
//! - stopped by the host: `Killed`, 137 (SIGKILL on Linux).
//!
//! A `wasi:http` proxy component is not run here but served, one store per request
//! ([`super::http`]); it shares the store construction and supervision below.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, InstancePre, Store, UpdateDeadline};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::budget::NodeBudget;
use super::http::HttpLimits;
use super::limits::{CpuThrottle, MemoryLimiter};
use super::logbuf::LogBuffer;
use super::stdio::LogSink;
use super::usage::{UsageMeter, metered};
use crate::net::PodNet;
use crate::net::http_egress::PodHttpHooks;
use crate::net::sockets::{self, PodSockets, PodSocketsView};
use wasmtime_wasi::sockets::WasiSocketsCtxView;

/// The most WASI handles (streams, sockets, ...) a component may hold at once.
const MAX_RESOURCE_HANDLES: usize = 10_000;

/// Exit code of a container killed for memory or by the host, as on Linux (128 + SIGKILL).
pub const KILLED_EXIT_CODE: i32 = 137;

/// What one container run is started with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSpec {
    /// The full argv, argv\[0\] included.
    pub argv: Vec<String>,
    /// Environment variables, in order.
    pub env: Vec<(String, String)>,
    /// Limit on each linear memory, bytes.
    pub memory_limit_bytes: Option<u64>,
    /// CPU limit in millicores.
    pub cpu_limit_millis: Option<u64>,
    /// The pod's network, shared by its containers; `None`: no sockets.
    pub network: Option<Arc<PodNet>>,
    /// The pod's name (its host name inside the pod network).
    pub pod_name: String,
    /// The container's port a `wasi:http` proxy component is served on (its first TCP
    /// `containerPort`); unused by commands.
    pub http_port: Option<u16>,
    /// The per-request limits of a served `wasi:http` proxy component.
    pub http_limits: HttpLimits,
    /// Host directories the guest sees at its mount paths (the pod's volumes).
    pub preopens: Vec<Preopen>,
    /// Where the container's CPU time and memory are counted ([`super::usage`]).
    pub usage: UsageMeter,
}

/// A host directory preopened for the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preopen {
    /// The directory on the host.
    pub host: std::path::PathBuf,
    /// Where the guest sees it (`/etc/config`).
    pub guest: String,
    /// Whether the guest may only read it.
    pub read_only: bool,
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// Exit code 0.
    Completed,
    /// A non-zero exit code or a trap.
    Error,
    /// Stopped after the memory limit was hit.
    OomKilled,
    /// Stopped by the host.
    Killed,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// The exit code.
    pub code: i32,
    /// Why it ended.
    pub reason: ExitReason,
    /// A human explanation (the trap or instantiation error); empty for plain exits.
    pub message: String,
}

impl Exit {
    pub(super) fn killed() -> Self {
        Self {
            code: KILLED_EXIT_CODE,
            reason: ExitReason::Killed,
            message: "stopped by the agent".into(),
        }
    }
}

/// Linked, ready-to-instantiate code.
pub enum Prepared {
    /// A wasip1 command module (`_start`).
    Core(InstancePre<CoreState>),
    /// A wasip2 command component (`wasi:cli/run`).
    Component(CommandPre<ComponentState>),
    /// A wasip2 `wasi:http/proxy` component (`wasi:http/incoming-handler`), served.
    Http(ProxyPre<ComponentState>),
}

/// Store data of a core-module container.
pub struct CoreState {
    pub(super) wasi: WasiP1Ctx,
    limiter: MemoryLimiter,
    _live: LiveGuard,
}

/// Store data of a component container.
pub struct ComponentState {
    ctx: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    network: Option<Arc<PodNet>>,
    pod_name: String,
    lookups: HashMap<u32, Option<u16>>,
    service_peers: HashMap<u32, std::net::SocketAddr>,
    udp_flows: crate::net::udp_flows::UdpFlows,
    http: WasiHttpCtx,
    http_hooks: PodHttpHooks,
    _live: LiveGuard,
}

impl WasiHttpView for ComponentState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

impl PodSocketsView for ComponentState {
    fn pod_sockets(&mut self) -> PodSockets<'_> {
        PodSockets {
            inner: WasiSocketsCtxView {
                ctx: self.ctx.sockets(),
                table: &mut self.table,
            },
            net: self.network.as_deref(),
            pod_name: &self.pod_name,
            lookups: &mut self.lookups,
            service_peers: &mut self.service_peers,
            udp_flows: &mut self.udp_flows,
        }
    }
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// Counts live stores, so the agent (and tests) can see that a stopped container's
/// instance is really gone.
struct LiveGuard(Arc<AtomicUsize>);

impl LiveGuard {
    fn new(live: &Arc<AtomicUsize>) -> Self {
        live.fetch_add(1, Ordering::Relaxed);
        Self(live.clone())
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Everything a run needs besides the code.
pub struct Sandbox<'a> {
    /// The engine the code was compiled for.
    pub engine: &'a Engine,
    /// The live-store counter.
    pub live: &'a Arc<AtomicUsize>,
    /// Where stdout and stderr go.
    pub logs: &'a LogBuffer,
    /// Cancelled to stop the run.
    pub stop: &'a CancellationToken,
    /// The node's allocatable, shared by every container.
    pub budget: &'a NodeBudget,
}

impl Sandbox<'_> {
    /// Runs `prepared` to completion, or until `stop` is cancelled. Stopping drops the
    /// store at once, also while the guest is blocked in a host call (a sleep).
    pub async fn run(&self, prepared: &Prepared, spec: &RunSpec) -> Exit {
        let limiter = MemoryLimiter::new(spec.memory_limit_bytes, self.budget.memory())
            .counting_into(spec.usage.clone());
        let oom = limiter.exceeded_flag();
        let result = tokio::select! {
            biased;
            () = self.stop.cancelled() => return Exit::killed(),
            result = metered(&spec.usage, self.execute(prepared, spec, limiter)) => result,
        };
        classify(result, &oom)
    }

    /// A store for one instance of a component: its WASI context (with the pod's sockets
    /// and outgoing HTTP), memory limiter and epoch supervision (interrupted past
    /// `deadline`, if given).
    pub(super) fn component_store(
        &self,
        spec: &RunSpec,
        limiter: MemoryLimiter,
        deadline: Option<Instant>,
    ) -> Store<ComponentState> {
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCE_HANDLES);
        let mut wasi = self.wasi(spec);
        if let Some(network) = &spec.network {
            sockets::grant(&mut wasi, network.clone());
        }
        let state = ComponentState {
            ctx: wasi.build(),
            table,
            limiter,
            network: spec.network.clone(),
            pod_name: spec.pod_name.clone(),
            lookups: HashMap::new(),
            service_peers: HashMap::new(),
            udp_flows: Default::default(),
            http: WasiHttpCtx::new(),
            http_hooks: PodHttpHooks::new(spec.network.clone(), spec.pod_name.clone()),
            _live: LiveGuard::new(self.live),
        };
        let mut store = Store::new(self.engine, state);
        store.limiter(|s| &mut s.limiter);
        self.supervise(&mut store, spec, deadline);
        store
    }

    async fn execute(
        &self,
        prepared: &Prepared,
        spec: &RunSpec,
        limiter: MemoryLimiter,
    ) -> wasmtime::Result<()> {
        match prepared {
            Prepared::Core(pre) => self.run_core(pre, spec, limiter).await,
            Prepared::Component(pre) => self.run_component(pre, spec, limiter).await,
            // Served by `super::http`, never run as a command.
            Prepared::Http(_) => Err(wasmtime::Error::msg(
                "a wasi:http proxy component is served, not run",
            )),
        }
    }

    /// Instantiates a wasip1 command module and calls its `_start`.
    async fn run_core(
        &self,
        pre: &InstancePre<CoreState>,
        spec: &RunSpec,
        limiter: MemoryLimiter,
    ) -> wasmtime::Result<()> {
        let state = CoreState {
            wasi: self.wasi(spec).build_p1(),
            limiter,
            _live: LiveGuard::new(self.live),
        };
        let mut store = Store::new(self.engine, state);
        store.limiter(|s| &mut s.limiter);
        self.supervise(&mut store, spec, None);
        let instance = pre.instantiate_async(&mut store).await?;
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
        start.call_async(&mut store, ()).await
    }

    /// Instantiates a wasip2 command component and calls `wasi:cli/run`.
    async fn run_component(
        &self,
        pre: &CommandPre<ComponentState>,
        spec: &RunSpec,
        limiter: MemoryLimiter,
    ) -> wasmtime::Result<()> {
        let mut store = self.component_store(spec, limiter, None);
        let command = pre.instantiate_async(&mut store).await?;
        match command.wasi_cli_run().call_run(&mut store).await? {
            Ok(()) => Ok(()),
            // `wasi:cli/run` returning `err` is the component's way of exiting with 1.
            Err(()) => Err(I32Exit(1).into()),
        }
    }

    /// The WASI context: argv, env, stdout/stderr into the log, the pod's volumes as
    /// preopened directories; no stdin, no
    /// network (the builder denies all sockets; a component of a pod with a network is
    /// granted its sockets by [`sockets::grant`]).
    fn wasi(&self, spec: &RunSpec) -> WasiCtxBuilder {
        let mut builder = WasiCtxBuilder::new();
        builder
            .args(&spec.argv)
            .envs(&spec.env)
            .stdout(LogSink::new(self.logs.clone()))
            .stderr(LogSink::new(self.logs.clone()));
        for preopen in &spec.preopens {
            let perms = match preopen.read_only {
                true => FsPerms::ReadOnly,
                false => FsPerms::ReadWrite,
            };
            // The pod manager checked the directory; one that vanished since stays unmounted.
            if let Err(err) = builder.preopened_dir(&preopen.host, &preopen.guest, perms) {
                tracing::warn!(guest = %preopen.guest, %err, "cannot preopen a volume");
            }
        }
        builder
    }

    /// Installs the epoch callback: interrupt when stopping or past `deadline`, otherwise
    /// yield to tokio on every tick (so a busy guest never starves other pods), pausing
    /// until the end of the accounting window when over its CPU limit or when all guests
    /// together used the node's allocatable CPU.
    fn supervise<T: Send + 'static>(
        &self,
        store: &mut Store<T>,
        spec: &RunSpec,
        deadline: Option<Instant>,
    ) {
        let stop = self.stop.clone();
        let budget = self.budget.clone();
        let mut throttle = spec
            .cpu_limit_millis
            .and_then(|millis| CpuThrottle::new(millis, Instant::now()));
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            let now = Instant::now();
            if stop.is_cancelled() || deadline.is_some_and(|deadline| now >= deadline) {
                return Ok(UpdateDeadline::Interrupt);
            }
            let own = throttle.as_mut().and_then(|t| t.on_tick(now));
            let pause = own.max(budget.on_tick(now));
            Ok(match pause {
                Some(until) => UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(tokio::time::sleep_until(tokio::time::Instant::from_std(
                        until,
                    ))),
                ),
                // tokio's own yield defers the wake-up until the scheduler has polled its
                // timers and I/O; a plain `Yield` re-queues at once, and a current-thread
                // runtime then checks timers only every few dozen polls.
                None => UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now())),
            })
        });
    }
}

/// Maps the result of a run onto an [`Exit`] (see the module docs).
pub(super) fn classify(result: wasmtime::Result<()>, oom: &AtomicBool) -> Exit {
    let oom = oom.load(Ordering::Relaxed);
    let (code, message) = match result {
        Ok(()) => (0, String::new()),
        Err(error) => match error.downcast_ref::<I32Exit>() {
            Some(I32Exit(code)) => (*code, String::new()),
            None => (1, format!("{error:#}")),
        },
    };
    let reason = match (code, oom) {
        (0, _) => ExitReason::Completed,
        (_, true) => ExitReason::OomKilled,
        (_, false) => ExitReason::Error,
    };
    match reason {
        ExitReason::OomKilled => Exit {
            code: KILLED_EXIT_CODE,
            reason,
            message: if message.is_empty() {
                "memory limit exceeded".into()
            } else {
                format!("memory limit exceeded: {message}")
            },
        },
        _ => Exit {
            code,
            reason,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_normal_return_is_completed() {
        let exit = classify(Ok(()), &AtomicBool::new(false));
        assert_eq!((exit.code, exit.reason), (0, ExitReason::Completed));
    }

    #[test]
    fn an_explicit_exit_code_is_kept() {
        let exit = classify(Err(I32Exit(3).into()), &AtomicBool::new(false));
        assert_eq!((exit.code, exit.reason), (3, ExitReason::Error));
        assert!(exit.message.is_empty());
    }

    #[test]
    fn a_trap_is_an_error_with_code_1_and_its_message() {
        let exit = classify(
            Err(wasmtime::Trap::UnreachableCodeReached.into()),
            &AtomicBool::new(false),
        );
        assert_eq!((exit.code, exit.reason), (1, ExitReason::Error));
        assert!(exit.message.contains("unreachable"), "{}", exit.message);
    }

    #[test]
    fn a_failure_after_denied_growth_is_oom_killed() {
        let exit = classify(
            Err(wasmtime::Trap::UnreachableCodeReached.into()),
            &AtomicBool::new(true),
        );
        assert_eq!((exit.code, exit.reason), (137, ExitReason::OomKilled));
    }

    #[test]
    fn a_clean_exit_after_denied_growth_is_completed() {
        let exit = classify(Err(I32Exit(0).into()), &AtomicBool::new(true));
        assert_eq!((exit.code, exit.reason), (0, ExitReason::Completed));
    }
}
