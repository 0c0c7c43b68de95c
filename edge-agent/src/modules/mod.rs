//! The module cache and fetcher: turns a [`ModuleRef`] into a verified `.wasm` file on disk.
//!
//! Modules live in `<data-dir>/modules/<digest>.wasm`. A missing module is pulled from the
//! server by digest: the fetcher publishes [`BlobRequest`]s for a few chunks at a time, the
//! link routes the [`BlobReply`]s back through [`ModuleFetcher::deliver`], chunks are written
//! into `<digest>.partial`, and only a file whose sha256 equals the digest is renamed into
//! place. Requests are repeated for exactly the missing chunks after a timeout or a
//! reconnect. Concurrent fetches of one digest share one download.
//!
//! A fetch of a cached module marks it used (its modification time), so [`gc`] can keep the
//! cache within its disk budget by deleting the modules no pod has used for longest.
//!
//! [`BlobRequest`]: wasmfleet_protocol::blob::BlobRequest

mod artifact;
pub use artifact::{ArtifactError, OFFER_TIMEOUT};
mod download;
pub mod gc;
pub mod progress;
pub mod single_flight;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wasmfleet_protocol::blob::{BlobBody, BlobReply};
use wasmfleet_protocol::names::validate_digest_hex;
use wasmfleet_protocol::node::EngineInfo;
use wasmfleet_protocol::pod::ModuleRef;

use crate::link::Uplink;

/// No module may be larger than this, whatever its `ModuleRef` says (the server's limit too).
pub const MAX_MODULE_SIZE: u64 = 64 << 20;

/// How many chunks a download keeps requested at once.
pub const WINDOW: usize = 4;

/// Why a module could not be fetched.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    /// The module reference is unusable (bad digest, zero or oversize size).
    #[error("invalid module reference: {0}")]
    InvalidRef(String),
    /// The server has no module with this digest.
    #[error("module sha256:{0} was not found on the server")]
    NotFound(String),
    /// No chunk arrived for too long.
    #[error("timed out fetching module sha256:{digest}: no chunk arrived for {waited:?} ({state})")]
    Timeout {
        /// The module.
        digest: String,
        /// How long the download waited for progress.
        waited: Duration,
        /// Whether the agent was connected, for the operator.
        state: &'static str,
    },
    /// The server sent a chunk that does not fit the module.
    #[error("bad chunk of module sha256:{digest}: {why}")]
    BadChunk {
        /// The module.
        digest: String,
        /// What was wrong.
        why: String,
    },
    /// The downloaded bytes do not hash to the digest.
    #[error("module sha256:{expected} arrived with sha256:{actual}; discarded")]
    DigestMismatch {
        /// The digest asked for.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// Reading or writing the cache failed.
    #[error("module cache I/O for sha256:{digest}: {why}")]
    Io {
        /// The module.
        digest: String,
        /// The I/O error.
        why: String,
    },
    /// The agent is shutting down.
    #[error("the agent is shutting down")]
    ShuttingDown,
}

/// Timings of a download; the defaults suit a real network, tests shorten them.
#[derive(Debug, Clone, Copy)]
pub struct FetchTimeouts {
    /// Re-request outstanding chunks after this long without a reply.
    pub request: Duration,
    /// Give up after this long without any chunk arriving.
    pub stall: Duration,
}

impl Default for FetchTimeouts {
    fn default() -> Self {
        FetchTimeouts {
            request: Duration::from_secs(5),
            stall: Duration::from_secs(60),
        }
    }
}

type Outcome = Option<Result<PathBuf, FetchError>>;

/// A download in progress, shared by everyone fetching its digest.
struct Download {
    replies: mpsc::Sender<BlobBody>,
    outcome: watch::Receiver<Outcome>,
}

struct Inner {
    dir: PathBuf,
    artifact_ca: Option<Vec<u8>>,
    offers: artifact::Offers,
    uplink: Uplink,
    timeouts: FetchTimeouts,
    downloads: Mutex<HashMap<String, Download>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// Bytes of chunks received for downloads (the agent's `/metrics`).
    fetched_bytes: std::sync::atomic::AtomicU64,
}

/// A cheap, cloneable handle on the module cache.
#[derive(Clone)]
pub struct ModuleFetcher {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ModuleFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleFetcher")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl ModuleFetcher {
    /// A fetcher caching in `dir` (created if missing) and asking the server via `uplink`.
    /// Precompiled artifacts are accepted only with a signature by `artifact_ca` (PEM).
    pub fn new(
        dir: PathBuf,
        artifact_ca: Option<Vec<u8>>,
        uplink: Uplink,
        timeouts: FetchTimeouts,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        remove_partials(&dir);
        Ok(ModuleFetcher {
            inner: Arc::new(Inner {
                dir,
                artifact_ca,
                offers: artifact::Offers::default(),
                uplink,
                timeouts,
                downloads: Mutex::new(HashMap::new()),
                shutdown,
                tracker,
                fetched_bytes: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    /// Bytes of chunks received for downloads since the agent started.
    pub fn fetched_bytes(&self) -> u64 {
        self.inner
            .fetched_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Where a verified module with this digest is (or will be) stored.
    pub fn path_of(&self, digest: &str) -> PathBuf {
        self.inner.dir.join(format!("{digest}.wasm"))
    }

    /// The path of the verified module, downloading it first if it is not cached.
    pub fn fetch(
        &self,
        module: &ModuleRef,
    ) -> impl Future<Output = Result<PathBuf, FetchError>> + Send + 'static {
        let this = self.clone();
        let module = module.clone();
        async move { this.fetch_owned(module).await }
    }

    /// Hands a chunk (or a not-found) from the server to the download waiting for it.
    pub fn deliver(&self, reply: BlobReply) {
        let downloads = self.lock();
        let Some(download) = downloads.get(&reply.digest) else {
            tracing::debug!(digest = %reply.digest, "blob reply for no running download; dropped");
            return;
        };
        if let BlobBody::Chunk { data, .. } = &reply.body {
            let bytes = u64::try_from(data.len()).unwrap_or(u64::MAX);
            self.inner
                .fetched_bytes
                .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        }
        if download.replies.try_send(reply.body).is_err() {
            // The download will ask for this chunk again after its request timeout.
            tracing::debug!(digest = %reply.digest, "download is busy; blob reply dropped");
        }
    }

    async fn fetch_owned(self, module: ModuleRef) -> Result<PathBuf, FetchError> {
        check_ref(&module)?;
        let path = self.path_of(&module.digest);
        if cached(&path, module.size).await {
            mark_used(&path);
            return Ok(path);
        }
        let mut outcome = self.join_or_start(&module);
        let done = outcome
            .wait_for(Option::is_some)
            .await
            .map_err(|_| FetchError::ShuttingDown)?;
        done.clone().unwrap_or(Err(FetchError::ShuttingDown))
    }

    /// Joins the running download of this digest, or starts one.
    fn join_or_start(&self, module: &ModuleRef) -> watch::Receiver<Outcome> {
        let mut downloads = self.lock();
        if let Some(download) = downloads.get(&module.digest) {
            return download.outcome.clone();
        }
        let (replies_tx, replies_rx) = mpsc::channel(4 * WINDOW);
        let (outcome_tx, outcome_rx) = watch::channel(None);
        downloads.insert(
            module.digest.clone(),
            Download {
                replies: replies_tx,
                outcome: outcome_rx.clone(),
            },
        );
        let this = self.clone();
        let module = module.clone();
        self.inner.tracker.spawn(async move {
            let job = download::Job {
                module: &module,
                dir: &this.inner.dir,
                uplink: &this.inner.uplink,
                timeouts: this.inner.timeouts,
                shutdown: &this.inner.shutdown,
            };
            let result = job.run(replies_rx).await;
            match &result {
                Ok(path) => tracing::info!(digest = %module.digest, path = %path.display(), "module fetched"),
                Err(err) => tracing::warn!(%err, "module fetch failed"),
            }
            this.lock().remove(&module.digest);
            outcome_tx.send_replace(Some(result));
        });
        outcome_rx
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Download>> {
        // The map is only touched in short critical sections that cannot panic; a poisoned
        // lock still holds a consistent map.
        self.inner
            .downloads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl crate::pods::ModuleSource for ModuleFetcher {
    fn fetch(
        &self,
        module: &ModuleRef,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<PathBuf, String>> + Send + 'static>> {
        let fetch = ModuleFetcher::fetch(self, module);
        Box::pin(async move { fetch.await.map_err(|err| err.to_string()) })
    }

    fn cached(&self) -> Vec<gc::CachedModule> {
        let Ok(entries) = std::fs::read_dir(&self.inner.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name();
                let digest = name.to_str()?.strip_suffix(".wasm")?;
                validate_digest_hex(digest).ok()?;
                let meta = entry.metadata().ok()?;
                Some(gc::CachedModule {
                    digest: digest.to_owned(),
                    bytes: meta.len(),
                    last_used: meta.modified().ok()?,
                })
            })
            .collect()
    }

    fn fetch_artifact(
        &self,
        module: &ModuleRef,
        engine: &EngineInfo,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<PathBuf, String>> + Send + 'static>> {
        let (this, module, engine) = (self.clone(), module.clone(), engine.clone());
        Box::pin(async move {
            ModuleFetcher::fetch_artifact(&this, &module, &engine)
                .await
                .map_err(|err| err.to_string())
        })
    }

    fn remove(&self, digest: &str) {
        if self.lock().contains_key(digest) {
            return; // being downloaded again right now
        }
        let path = self.path_of(digest);
        match std::fs::remove_file(&path) {
            Ok(()) => tracing::info!(%digest, "removed an unused module from the cache"),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                tracing::warn!(path = %path.display(), %err, "cannot remove a cached module")
            }
        }
    }
}

/// Sets the module's modification time to now: the garbage collector's "last used".
fn mark_used(path: &Path) {
    let touched = std::fs::File::options()
        .append(true)
        .open(path)
        .and_then(|file| file.set_modified(std::time::SystemTime::now()));
    if let Err(err) = touched {
        tracing::debug!(path = %path.display(), %err, "cannot mark a cached module as used");
    }
}

fn check_ref(module: &ModuleRef) -> Result<(), FetchError> {
    validate_digest_hex(&module.digest).map_err(|e| FetchError::InvalidRef(e.to_string()))?;
    if module.size == 0 {
        return Err(FetchError::InvalidRef(format!(
            "module sha256:{} has size 0",
            module.digest
        )));
    }
    if module.size > MAX_MODULE_SIZE {
        return Err(FetchError::InvalidRef(format!(
            "module sha256:{} has {} bytes, more than the {MAX_MODULE_SIZE} byte limit",
            module.digest, module.size
        )));
    }
    Ok(())
}

/// A cached file is trusted when its size matches: it was verified before the rename.
async fn cached(path: &Path, size: u64) -> bool {
    match tokio::fs::metadata(path).await {
        Ok(meta) if meta.len() == size => true,
        Ok(meta) => {
            tracing::warn!(path = %path.display(), len = meta.len(), size, "cached module has the wrong size; fetching again");
            false
        }
        Err(_) => false,
    }
}

/// Partial files of an earlier process are useless without their chunk map.
fn remove_partials(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "partial")
            && let Err(err) = std::fs::remove_file(&path)
        {
            tracing::warn!(path = %path.display(), %err, "cannot remove a stale partial module");
        }
    }
}
