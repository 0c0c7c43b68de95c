//! Pods on this node: their lifecycles, restart policy, limits and logs.
//!
//! [`PodManager`] converges on the set of pods the server assigns ([`PodManager::apply`]),
//! runs each container in the [`Runtime`](crate::runtime::Runtime), and reports
//! [`PodStatus`](wasmfleet_protocol::pod::PodStatus)es. Modules come from a
//! [`ModuleSource`] (the agent's module cache).
//!
//! - `lifecycle`: pure container lifecycle, back-off and pod phase;
//! - `manager`: the handle, apply/restore/statuses/logs;
//! - `pod`: one pod's shared record and its supervisor task;
//! - `update`: which containers a pod's new assignment restarts (pure);
//! - `container`: one container's task (fetch, load, run, restart);
//! - `probing`: what a container's probes decide (pure); `prober`: running them;
//! - `events`: probe events queued for the link;
//! - `logs`: what [`PodManager::logs`] returns;
//! - `logfiles`: where container logs live on disk, so they survive an agent restart;
//! - `volumes`: pods' volumes on disk and the WASI preopened directories they become;
//! - `host_paths`: which node directories pods may mount (`hostPath`), the administrator's
//!   decision;
//! - `volume_limits`: `emptyDir` `sizeLimit`s, measured and enforced by eviction;
//! - `memory_volumes`: where `emptyDir`s with `medium: Memory` live (a tmpfs the agent finds).

pub mod lifecycle;
pub mod probing;

mod container;
mod events;
pub mod host_paths;
mod logfiles;
mod logs;
mod manager;
pub mod memory_volumes;
mod pod;
mod prober;
mod update;
pub mod volume_limits;
pub mod volumes;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use wasmfleet_protocol::node::EngineInfo;
use wasmfleet_protocol::pod::ModuleRef;

use crate::modules::gc::CachedModule;

pub use logs::{LogError, LogStream};
pub use manager::PodManager;

/// Where modules come from: resolves a module to the path of a complete,
/// sha256-verified `.wasm` file on disk (fetching it first if needed).
///
/// The error is a human message; the container shows it as `ErrModulePull`.
pub trait ModuleSource: Send + Sync + 'static {
    /// Fetches `module` (or finds it locally) and returns its path.
    fn fetch(
        &self,
        module: &ModuleRef,
    ) -> Pin<Box<dyn Future<Output = Result<PathBuf, String>> + Send + 'static>>;

    /// The modules kept locally, for garbage collection (none, for a source that keeps
    /// nothing of its own).
    fn cached(&self) -> Vec<CachedModule> {
        Vec::new()
    }

    /// Deletes a local module that no pod uses any more.
    fn remove(&self, _digest: &str) {}

    /// Fetches the server's signed, verified precompiled artifact of `module` for `engine`;
    /// the error says why there is none (the module is then compiled locally).
    fn fetch_artifact(
        &self,
        _module: &ModuleRef,
        _engine: &EngineInfo,
    ) -> Pin<Box<dyn Future<Output = Result<PathBuf, String>> + Send + 'static>> {
        Box::pin(async { Err("this module source has no precompiled artifacts".to_owned()) })
    }
}

/// How the pod manager behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodManagerConfig {
    /// The delay before the second restart of a crash streak (the first is immediate) and
    /// before the first module retry; it doubles up to 5 minutes.
    pub restart_backoff_base: Duration,
    /// Where container logs are persisted (`<log_dir>/<pod uid>/<container>.log`), so
    /// that they survive an agent restart; `None` keeps them in memory only.
    pub log_dir: Option<PathBuf>,
    /// Where pods' volumes live (`<root>/<pod uid>/<volume>`, on disk or for `medium:
    /// Memory` on a tmpfs, [`volumes`]); `None`: a container that mounts a volume cannot start.
    pub volume_dir: Option<volumes::VolumeRoots>,
    /// The disk budget of cached modules and their compiled artifacts; modules no pod uses
    /// are deleted, least recently used first, to stay within it.
    pub module_cache_bytes: u64,
    /// The node's table of Services, which pods' networks route by.
    pub services: crate::net::ServiceDirectory,
    /// The node directories pods may mount as `hostPath` volumes.
    pub host_paths: host_paths::HostPathPolicy,
}

impl Default for PodManagerConfig {
    fn default() -> Self {
        Self {
            restart_backoff_base: Duration::from_secs(10),
            log_dir: None,
            volume_dir: None,
            module_cache_bytes: crate::modules::gc::DEFAULT_BUDGET_BYTES,
            services: crate::net::ServiceDirectory::new("", None),
            host_paths: host_paths::HostPathPolicy::default(),
        }
    }
}
