//! Server-side AOT: modules precompiled once per agent target, signed, and served to agents
//! as blobs (see `wasmfleet_protocol::artifact` for the exchange).
//!
//! - `compiler`: one wasmtime engine per target, configured like the agents on it;
//! - `signer`: signatures by the cluster CA key.
//!
//! [`Artifacts::offer`] answers one request: the stored artifact if this module was
//! compiled for this target and wasmtime version before, else it compiles now. Requests for
//! the same artifact wait for one compilation. Compilations run one at a time (Cranelift
//! already spreads one module over every core): measured with 100 distinct modules on two
//! cores, running them all at once delayed every pod until the last compile finished
//! (p50 12.4 s), one at a time let the first pods start early (p50 6.2 s; BENCHMARKS.md).
//! Stored artifacts are served without waiting for a compilation.

mod compiler;
mod signer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use wasmfleet_agent::runtime::{HeapTrimmer, WASMTIME_VERSION};
use wasmfleet_protocol::artifact::{ArtifactOutcome, ArtifactRequest};
use wasmfleet_protocol::names::validate_digest_hex;
use wasmfleet_protocol::pod::ModuleRef;

pub use signer::SignerError;

/// The artifact service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactsError {
    /// The CA key cannot sign.
    #[error(transparent)]
    Signer(#[from] SignerError),
    /// The heap trimming thread could not start.
    #[error("cannot start the heap trimming thread: {0}")]
    HeapTrimmer(#[source] std::io::Error),
}

use crate::modules::ModuleStore;
use compiler::Compiler;
use signer::Signer;

/// The artifact service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Artifacts {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    modules: ModuleStore,
    compiler: Compiler,
    signer: Signer,
    /// One lock per artifact being looked up or compiled.
    compiling: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Held while compiling: one compilation at a time.
    compile_slot: Mutex<()>,
    /// Compiling leaves freed memory in glibc's arenas; this gives it back once quiet.
    heap: HeapTrimmer,
}

impl Artifacts {
    /// A service storing artifacts in `modules` and signing with the CA key `ca_key_pem`.
    pub fn new(modules: ModuleStore, ca_key_pem: &str) -> Result<Self, ArtifactsError> {
        Ok(Self {
            inner: Arc::new(Inner {
                modules,
                compiler: Compiler::default(),
                signer: Signer::from_pem(ca_key_pem)?,
                compiling: Mutex::new(HashMap::new()),
                compile_slot: Mutex::new(()),
                heap: HeapTrimmer::start().map_err(ArtifactsError::HeapTrimmer)?,
            }),
        })
    }

    /// The answer to `request`. Blocking (it may compile): call from `spawn_blocking`.
    pub fn offer(&self, request: &ArtifactRequest) -> ArtifactOutcome {
        match self.artifact(request) {
            Ok(artifact) => match self.inner.signer.sign(request, &artifact.digest) {
                Ok(signature) => ArtifactOutcome::Ready {
                    artifact,
                    signature,
                },
                Err(err) => ArtifactOutcome::Unavailable(err.to_string()),
            },
            Err(why) => ArtifactOutcome::Unavailable(why),
        }
    }

    fn artifact(&self, request: &ArtifactRequest) -> Result<ModuleRef, String> {
        validate_digest_hex(&request.module_digest).map_err(|e| e.to_string())?;
        if request.wasmtime_version != WASMTIME_VERSION {
            return Err(format!(
                "the server compiles for wasmtime {WASMTIME_VERSION}, not {}",
                request.wasmtime_version
            ));
        }
        let key = format!(
            "{}/{}/{}",
            request.module_digest, request.target, request.wasmtime_version
        );
        let lock = self.lock_for(&key);
        let guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let result = self.stored_or_compiled(request, &key);
        drop(guard);
        self.release(&key, lock);
        result
    }

    fn lock_for(&self, key: &str) -> Arc<Mutex<()>> {
        let mut locks = self
            .inner
            .compiling
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        locks.entry(key.to_owned()).or_default().clone()
    }

    /// Forgets the lock of `key` once nobody else holds or waits for it.
    fn release(&self, key: &str, lock: Arc<Mutex<()>>) {
        let mut locks = self
            .inner
            .compiling
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Two references: ours and the map's.
        if Arc::strong_count(&lock) == 2 {
            locks.remove(key);
        }
    }

    fn stored_or_compiled(
        &self,
        request: &ArtifactRequest,
        key: &str,
    ) -> Result<ModuleRef, String> {
        let modules = &self.inner.modules;
        if let Some(artifact) = modules.artifact(key).map_err(|e| e.to_string())? {
            return Ok(artifact);
        }
        let wasm = modules
            .read(&request.module_digest)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("unknown module sha256:{}", request.module_digest))?;
        let started = std::time::Instant::now();
        let slot = self
            .inner
            .compile_slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let compiled = self.inner.compiler.compile(&request.target, &wasm);
        drop(slot);
        self.inner.heap.poke();
        let compiled = compiled?;
        let artifact = modules.put_blob(&compiled).map_err(|e| e.to_string())?;
        modules
            .set_artifact(key, &artifact)
            .map_err(|e| e.to_string())?;
        tracing::info!(
            module = %request.module_digest,
            target = %request.target,
            artifact = %artifact.digest,
            size = artifact.size,
            took = ?started.elapsed(),
            "precompiled a module for a node target"
        );
        Ok(artifact)
    }
}
