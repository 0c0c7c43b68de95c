//! The wasm runtime: one wasmtime `Engine` per process and the sandboxes pods run in.
//!
//! This module narrows wasmtime to what wasmfleet uses. The rest of the agent sees only
//! [`Runtime`] (engine facts, [`Runtime::load`], [`Runtime::run`]), [`Program`],
//! [`RunSpec`], [`Exit`] and [`LogBuffer`].
//!
//! - `engine`: the fixed engine settings and the epoch ticker;
//! - `cache`: compiling, and the on-disk cache of precompiled artifacts;
//! - `programs`: the loaded programs kept in memory, and their eviction;
//! - `heap`: giving freed heap back to the OS once a burst of work is over;
//! - `sandbox`: one container run (WASI context, limits, exit mapping);
//! - `http`: serving a `wasi:http/proxy` component, an instance per request;
//! - `limits`: the memory limiter and the CPU throttle;
//! - `budget`: the node's allocatable, enforced over all containers together;
//! - `usage`: what each container uses (CPU time, linear memory), for `kubectl top`;
//! - `logbuf` / `stdio`: the bounded per-container log and the guest's output streams;
//! - `logfile`: a container log's rotating file, so logs survive an agent restart.

mod budget;
mod cache;
mod engine;
mod heap;
mod http;
mod limits;
mod logbuf;
mod logfile;
mod programs;
mod sandbox;
mod stdio;
mod usage;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use wasmfleet_protocol::node::{EngineInfo, Resources};
use wasmtime::{Engine, ExternType, Linker};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

pub use cache::{ModuleKind, detect_kind};
pub use engine::{EPOCH_TICK, WASMTIME_VERSION, engine_config, engine_config_for_target};
pub use heap::HeapTrimmer;
pub use http::{HttpLimits, NO_PORT as HTTP_NO_PORT};
pub use logbuf::{
    LogBuffer, LogEvent, LogLine, LogSelection, LogSnapshot, MAX_BUFFER_BYTES, MAX_LINE_BYTES,
    MAX_LINES, NoPreviousRun,
};
pub use logfile::SEGMENT_BYTES as LOG_FILE_SEGMENT_BYTES;
pub use programs::IDLE_PROGRAMS;
pub use sandbox::{Exit, ExitReason, KILLED_EXIT_CODE, Preopen, RunSpec};
pub use usage::UsageMeter;

use budget::NodeBudget;
use cache::{ArtifactCache, Compiled};
use programs::Programs;
use sandbox::{ComponentState, CoreState, Prepared, Sandbox};

/// Creating the runtime failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// wasmtime refused the engine configuration or the WASI linkers.
    #[error("cannot set up the wasm engine: {0}")]
    Engine(String),
    /// The epoch ticker thread could not be started.
    #[error("cannot start the epoch ticker: {0}")]
    Ticker(#[source] std::io::Error),
    /// The heap trimming thread could not be started.
    #[error("cannot start the heap trimming thread: {0}")]
    HeapTrimmer(#[source] std::io::Error),
}

/// A module could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The digest is not 64 lowercase hex characters.
    #[error("invalid module digest {0:?}")]
    BadDigest(String),
    /// The module file could not be read.
    #[error("cannot read module {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The bytes do not start with the wasm magic and a known version.
    #[error("not a WebAssembly module or component (bad preamble)")]
    NotWasm,
    /// wasmtime rejected the module.
    #[error("invalid WebAssembly: {0}")]
    Invalid(String),
    /// The module is valid but cannot run as a WASI command here.
    #[error("cannot run this module: {0}")]
    Unrunnable(String),
    /// This agent has no compiler (built without the `compiler` feature) and no usable
    /// precompiled artifact of the module.
    #[error(
        "this agent is runtime only (built without a compiler) and has no precompiled \
         artifact of the module for its engine: the server must precompile it (agents need \
         an mqtts:// server and its CA to accept artifacts)"
    )]
    NoCompiler,
    /// The compile task failed.
    #[error("module compilation was aborted: {0}")]
    Aborted(String),
}

/// A loaded module: compiled and linked once, instantiated per container run. Cheap to
/// clone.
#[derive(Clone)]
pub struct Program {
    digest: Arc<str>,
    kind: ModuleKind,
    prepared: Arc<Prepared>,
}

impl Program {
    /// The module's sha256.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Core module or component.
    pub fn kind(&self) -> ModuleKind {
        self.kind
    }

    /// Whether it is a `wasi:http` proxy component, served on the container's port rather
    /// than run as a command.
    pub fn serves_http(&self) -> bool {
        matches!(*self.prepared, Prepared::Http(_))
    }
}

/// The process's wasm runtime. Cheap to clone; create one per process.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    core_linker: Linker<CoreState>,
    component_linker: wasmtime::component::Linker<ComponentState>,
    cache: ArtifactCache,
    programs: Mutex<Programs>,
    live: Arc<AtomicUsize>,
    heap: HeapTrimmer,
    info: EngineInfo,
    budget: NodeBudget,
    oom_kills: std::sync::atomic::AtomicU64,
}

impl Runtime {
    /// Creates the engine, its WASI linkers and its epoch ticker. Precompiled artifacts are
    /// cached in `cache_dir`, which must be private to the agent (artifacts are native code).
    pub fn new(cache_dir: impl Into<PathBuf>) -> Result<Self, RuntimeError> {
        Self::with_config(cache_dir.into(), &engine_config())
    }

    /// A runtime whose engine targets `target` instead of the host, e.g. `pulley64` to
    /// run guests on wasmtime's interpreter as an armv7 agent does (benchmarks compare the
    /// two on one machine). The target's backend must be compiled in.
    pub fn for_target(cache_dir: impl Into<PathBuf>, target: &str) -> Result<Self, RuntimeError> {
        let config = engine_config_for_target(target).map_err(RuntimeError::Engine)?;
        Self::with_config(cache_dir.into(), &config)
    }

    fn with_config(cache_dir: PathBuf, config: &wasmtime::Config) -> Result<Self, RuntimeError> {
        let engine_err = |e: wasmtime::Error| RuntimeError::Engine(format!("{e:#}"));
        let engine = Engine::new(config).map_err(engine_err)?;
        let mut core_linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut core_linker, |s: &mut CoreState| &mut s.wasi)
            .map_err(engine_err)?;
        let mut component_linker = wasmtime::component::Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut component_linker).map_err(engine_err)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut component_linker)
            .map_err(engine_err)?;
        crate::net::sockets::add_to_linker(&mut component_linker).map_err(engine_err)?;
        engine::start_ticker(&engine).map_err(RuntimeError::Ticker)?;
        let heap = HeapTrimmer::start().map_err(RuntimeError::HeapTrimmer)?;
        let info = engine::engine_info(&engine);
        let cache = ArtifactCache::new(cache_dir, info.compatibility_key.clone());
        Ok(Self {
            inner: Arc::new(RuntimeInner {
                engine,
                core_linker,
                component_linker,
                cache,
                programs: Mutex::new(Programs::default()),
                live: Arc::new(AtomicUsize::new(0)),
                heap,
                info,
                budget: NodeBudget::default(),
                oom_kills: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    /// Limits all containers together to the node's `allocatable` memory and CPU (until
    /// called, only each container's own limits apply).
    pub fn limit_to(&self, allocatable: &Resources) {
        self.inner
            .budget
            .limit_to(allocatable.memory_bytes, allocatable.cpu_millis);
    }

    /// Bytes of linear memory all containers hold now.
    pub fn memory_in_use(&self) -> u64 {
        self.inner.budget.memory().used()
    }

    /// What the agent reports about its engine at birth.
    pub fn engine_info(&self) -> EngineInfo {
        self.inner.info.clone()
    }

    /// Where the precompiled artifact of `digest` is (or would be) cached.
    pub fn artifact_path(&self, digest: &str) -> PathBuf {
        self.inner.cache.artifact_path(digest)
    }

    /// Bytes on disk of the compiled artifacts of each module digest that has any.
    pub fn artifact_bytes_by_module(&self) -> HashMap<String, u64> {
        self.inner.cache.bytes_by_module()
    }

    /// Whether a precompiled artifact of `digest` for this engine is cached.
    pub fn has_artifact(&self, digest: &str) -> bool {
        self.artifact_path(digest).exists()
    }

    /// Moves a verified precompiled artifact (the server's, signature checked) into the
    /// cache, where [`Runtime::load`] finds it. Artifacts are native code: never call this
    /// with a file whose origin was not verified.
    pub fn install_artifact(&self, digest: &str, verified: &Path) -> std::io::Result<()> {
        self.inner.cache.install(digest, verified)
    }

    /// How many modules this runtime compiled itself (rather than loading an artifact).
    pub fn compilations(&self) -> u64 {
        self.inner.cache.compilations()
    }

    /// Deletes the compiled artifacts of the modules in `digests` (gone from the cache).
    pub fn remove_artifacts(&self, digests: &[String]) {
        self.inner.cache.remove(digests);
    }

    /// How many programs are loaded in memory (in use, plus up to [`IDLE_PROGRAMS`] idle).
    pub fn loaded_programs(&self) -> usize {
        self.programs().len()
    }

    /// Unloads the least recently used idle programs past [`IDLE_PROGRAMS`]; the pod manager
    /// calls it when a container lets go of its program. Freed memory goes back to the OS
    /// once the agent is quiet.
    pub fn unload_idle(&self) {
        self.programs().trim();
        self.inner.heap.poke();
    }

    /// Whether the program of `digest` is loaded in memory.
    pub fn is_loaded(&self, digest: &str) -> bool {
        self.programs().contains(digest)
    }

    /// How many container instances (stores) are alive right now.
    pub fn live_instances(&self) -> usize {
        self.inner.live.load(Ordering::Relaxed)
    }

    /// Loads the verified module at `wasm` whose sha256 is `digest`: from memory if it is
    /// still loaded, else from the artifact cache, else by compiling it (on a blocking
    /// thread). Invalid bytes give a [`LoadError`], never a panic.
    pub async fn load(&self, digest: &str, wasm: &Path) -> Result<Program, LoadError> {
        if let Some(program) = self.programs().get(digest) {
            return Ok(program.clone());
        }
        let runtime = self.clone();
        let (digest, wasm) = (digest.to_string(), wasm.to_path_buf());
        let program = tokio::task::spawn_blocking(move || runtime.load_blocking(&digest, &wasm))
            .await
            .map_err(|e| LoadError::Aborted(e.to_string()));
        // Compiling (or failing to) freed the compiler's working memory.
        self.inner.heap.poke();
        let program = program??;
        self.programs().insert(program.clone());
        Ok(program)
    }

    /// Runs one container to its end, or until `stop` is cancelled (then it returns a
    /// [`ExitReason::Killed`] exit immediately, the instance already dropped). Output goes
    /// to `logs`. A `wasi:http` proxy ([`Program::serves_http`]) is served on
    /// `spec.http_port` instead, until `stop` is cancelled, then drained.
    pub async fn run(
        &self,
        program: &Program,
        spec: &RunSpec,
        logs: &LogBuffer,
        stop: &CancellationToken,
    ) -> Exit {
        if let Prepared::Http(pre) = &*program.prepared {
            let proxy = http::Proxy {
                engine: self.inner.engine.clone(),
                live: self.inner.live.clone(),
                budget: self.inner.budget.clone(),
                logs: logs.clone(),
                pre: pre.clone(),
                spec: spec.clone(),
            };
            return http::serve(proxy, stop).await;
        }
        let sandbox = Sandbox {
            engine: &self.inner.engine,
            live: &self.inner.live,
            logs,
            stop,
            budget: &self.inner.budget,
        };
        let exit = sandbox.run(&program.prepared, spec).await;
        if exit.reason == ExitReason::OomKilled {
            self.inner.oom_kills.fetch_add(1, Ordering::Relaxed);
        }
        exit
    }

    /// How many container runs ended `OOMKilled` since the runtime started.
    pub fn oom_kills(&self) -> u64 {
        self.inner.oom_kills.load(Ordering::Relaxed)
    }

    fn load_blocking(&self, digest: &str, wasm: &Path) -> Result<Program, LoadError> {
        let compiled = self.inner.cache.load(&self.inner.engine, digest, wasm)?;
        let (kind, prepared) = self.link(compiled)?;
        Ok(Program {
            digest: Arc::from(digest),
            kind,
            prepared: Arc::new(prepared),
        })
    }

    /// Resolves the module's imports against WASI and checks it is a command (or, for a
    /// component, a `wasi:http` proxy).
    fn link(&self, compiled: Compiled) -> Result<(ModuleKind, Prepared), LoadError> {
        let unrunnable = |e: wasmtime::Error| LoadError::Unrunnable(format!("{e:#}"));
        match compiled {
            Compiled::Core(module) => {
                if !matches!(module.get_export("_start"), Some(ExternType::Func(_))) {
                    return Err(LoadError::Unrunnable(
                        "not a WASI command: no `_start` function export".into(),
                    ));
                }
                let pre = self
                    .inner
                    .core_linker
                    .instantiate_pre(&module)
                    .map_err(unrunnable)?;
                Ok((ModuleKind::Core, Prepared::Core(pre)))
            }
            Compiled::Component(component) => {
                let pre = self
                    .inner
                    .component_linker
                    .instantiate_pre(&component)
                    .map_err(unrunnable)?;
                let prepared = match CommandPre::new(pre.clone()) {
                    Ok(command) => Prepared::Component(command),
                    Err(not_command) => match ProxyPre::new(pre) {
                        Ok(proxy) => Prepared::Http(proxy),
                        Err(_) => {
                            return Err(LoadError::Unrunnable(format!(
                                "neither a WASI command nor a wasi:http proxy (it exports \
                                 neither wasi:cli/run nor wasi:http/incoming-handler): \
                                 {not_command:#}"
                            )));
                        }
                    },
                };
                Ok((ModuleKind::Component, prepared))
            }
        }
    }

    fn programs(&self) -> std::sync::MutexGuard<'_, Programs> {
        // The map only caches; a panic elsewhere cannot corrupt it.
        self.inner
            .programs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
