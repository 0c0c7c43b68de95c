//! The content-addressed module store: wasm modules and components, kept in the store's
//! redb file in tables of their own.
//!
//! - `module_tags`: `name:tag` → digest (hex sha256);
//! - `module_blobs`: digest → size in bytes;
//! - `module_chunks`: (digest, chunk index) → up to [`CHUNK_SIZE`] bytes;
//! - `module_meta`: the generation, bumped (and persisted) by every change;
//! - `module_artifacts`: `module digest/target/wasmtime version` → the digest of the
//!   precompiled artifact, itself a blob in `module_blobs`/`module_chunks` (served to agents
//!   like a module, never tagged).
//!
//! Identical content is stored once, whatever it is tagged as. Images are written as
//! `NAME:TAG`, bare `NAME` (meaning `NAME:latest`) or `sha256:HEX`. Every change bumps the
//! generation and wakes [`ModuleStore::subscribe`] receivers, so the fleet re-plans when a
//! module a pod waits for arrives.
//! Writes here do not bump the cluster revision: modules are not Kubernetes objects.

mod image;
mod validate;

use std::sync::Arc;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use wasmfleet_protocol::CHUNK_SIZE;
use wasmfleet_protocol::blob::chunk_count;
use wasmfleet_protocol::names::{self, InvalidName};
use wasmfleet_protocol::pod::ModuleRef;

use crate::store::Store;

pub use image::{ImageRef, parse_image};
pub use validate::validate_wasm;

/// The largest module accepted.
pub const MAX_MODULE_SIZE: usize = 64 * 1024 * 1024;

const TAGS: TableDefinition<&str, &str> = TableDefinition::new("module_tags");
const BLOBS: TableDefinition<&str, u64> = TableDefinition::new("module_blobs");
const CHUNKS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("module_chunks");
/// Counters; [`GENERATION`] only for now.
const META: TableDefinition<&str, u64> = TableDefinition::new("module_meta");
const ARTIFACTS: TableDefinition<&str, &str> = TableDefinition::new("module_artifacts");
/// Bumped by every change to tags or modules, persisted, so it never goes backwards.
const GENERATION: &str = "generation";

/// A module stored under a name and tag.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ModuleRecord {
    /// The module name.
    pub name: String,
    /// The tag.
    pub tag: String,
    /// sha256 of the bytes, 64 lowercase hex characters (no `sha256:` prefix).
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
}

/// One chunk of a stored module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The chunk's index.
    pub index: u32,
    /// How many chunks the module has.
    pub total: u32,
    /// The whole module's size.
    pub size: u64,
    /// The chunk's bytes.
    pub data: Vec<u8>,
}

/// Why a module operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// A name, tag or digest breaks the naming rules.
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    /// An image reference that is not `NAME[:TAG]` or `sha256:HEX`.
    #[error("invalid image reference {0:?}")]
    InvalidImage(String),
    /// The bytes are not a wasm module or component.
    #[error("not a WebAssembly module or component (missing the \\0asm magic number)")]
    NotWasm,
    /// The bytes start like wasm but do not validate (wasmparser's message).
    #[error("invalid WebAssembly: {0}")]
    Invalid(String),
    /// The module is larger than [`MAX_MODULE_SIZE`].
    #[error("module of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The module's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A stored chunk is missing (the file was damaged or written by something else).
    #[error("module {digest} is missing chunk {index}")]
    Corrupt {
        /// The module.
        digest: String,
        /// The missing chunk.
        index: u32,
    },
    /// redb failed.
    #[error("module database: {0}")]
    Database(#[from] redb::Error),
}

macro_rules! from_redb {
    ($($ty:ty),*) => {$(
        impl From<$ty> for ModuleError {
            fn from(err: $ty) -> Self {
                ModuleError::Database(err.into())
            }
        }
    )*};
}

from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Handle to the module store. Cheap to clone; all clones share the database and the
/// change notification.
#[derive(Clone)]
pub struct ModuleStore {
    store: Store,
    changes: Arc<watch::Sender<u64>>,
}

impl std::fmt::Debug for ModuleStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleStore").finish_non_exhaustive()
    }
}

impl ModuleStore {
    /// Opens the module tables inside `store`'s database, creating them on first use.
    pub fn open(store: &Store) -> Result<Self, ModuleError> {
        let write = store.database().begin_write()?;
        {
            write.open_table(TAGS)?;
            write.open_table(BLOBS)?;
            write.open_table(CHUNKS)?;
            write.open_table(META)?;
            write.open_table(ARTIFACTS)?;
        }
        write.commit()?;
        let (changes, _) = watch::channel(0);
        Ok(Self {
            store: store.clone(),
            changes: Arc::new(changes),
        })
    }

    /// A receiver woken whenever a tag or module is added or moved.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// How many changes the module store has seen, ever (persisted). Desired snapshots add
    /// it to the store revision, so a snapshot that changes only because a module arrived
    /// still carries a higher revision than the one before.
    pub fn generation(&self) -> Result<u64, ModuleError> {
        let read = self.store.database().begin_read()?;
        let meta = read.open_table(META)?;
        Ok(meta.get(GENERATION)?.map_or(0, |g| g.value()))
    }

    /// Stores `bytes` as `name:tag`. Identical content is stored once; re-pushing the same
    /// bytes under the same tag changes nothing and does not notify.
    ///
    /// The bytes are validated in full first (see [`validate_wasm`]).
    ///
    /// Synchronous: validating, hashing and writing a large module takes tens of
    /// milliseconds, so async callers with many clients should use `spawn_blocking`.
    pub fn put(&self, name: &str, tag: &str, bytes: &[u8]) -> Result<ModuleRecord, ModuleError> {
        names::validate_module_name(name)?;
        names::validate_tag(tag)?;
        validate_wasm(bytes)?;
        let digest = hex::encode(Sha256::digest(bytes));
        let size = bytes.len() as u64;
        let changed = self.write_module(&format!("{name}:{tag}"), &digest, bytes)?;
        if let Some(generation) = changed {
            self.changes.send_replace(generation);
            tracing::info!(module = %name, %tag, %digest, size, "module stored");
        }
        Ok(ModuleRecord {
            name: name.to_owned(),
            tag: tag.to_owned(),
            digest,
            size,
        })
    }

    /// Writes the chunks (unless the digest is known) and points the tag at the digest, in
    /// one transaction. Returns the new generation when anything changed.
    fn write_module(
        &self,
        tag_key: &str,
        digest: &str,
        bytes: &[u8],
    ) -> Result<Option<u64>, ModuleError> {
        let write = self.store.database().begin_write()?;
        let changed = {
            let mut blobs = write.open_table(BLOBS)?;
            let new_blob = blobs.get(digest)?.is_none();
            if new_blob {
                let mut chunks = write.open_table(CHUNKS)?;
                for (index, data) in (0u32..).zip(bytes.chunks(CHUNK_SIZE)) {
                    chunks.insert((digest, index), data)?;
                }
                blobs.insert(digest, bytes.len() as u64)?;
            }
            let mut tags = write.open_table(TAGS)?;
            let previous = tags.insert(tag_key, digest)?.map(|g| g.value().to_owned());
            if new_blob || previous.as_deref() != Some(digest) {
                let mut meta = write.open_table(META)?;
                let generation = meta.get(GENERATION)?.map_or(0, |g| g.value()) + 1;
                meta.insert(GENERATION, generation)?;
                Some(generation)
            } else {
                None
            }
        };
        if changed.is_some() {
            write.commit()?;
        }
        // Otherwise dropping `write` aborts it: nothing was changed.
        Ok(changed)
    }

    /// Resolves an image reference to a stored module; `Ok(None)` when it is well-formed
    /// but unknown.
    pub fn resolve(&self, image: &str) -> Result<Option<ModuleRef>, ModuleError> {
        let read = self.store.database().begin_read()?;
        let digest = match parse_image(image)? {
            ImageRef::Digest(digest) => digest,
            ImageRef::Tagged { name, tag } => {
                let tags = read.open_table(TAGS)?;
                match tags.get(format!("{name}:{tag}").as_str())? {
                    Some(guard) => guard.value().to_owned(),
                    None => return Ok(None),
                }
            }
        };
        let blobs = read.open_table(BLOBS)?;
        let size = blobs.get(digest.as_str())?.map(|g| g.value());
        Ok(size.map(|size| ModuleRef { digest, size }))
    }

    /// Every tag, sorted by name then tag.
    pub fn list(&self) -> Result<Vec<ModuleRecord>, ModuleError> {
        let read = self.store.database().begin_read()?;
        let tags = read.open_table(TAGS)?;
        let blobs = read.open_table(BLOBS)?;
        let mut records = Vec::new();
        for entry in tags.iter()? {
            let (key, digest) = entry?;
            let Some((name, tag)) = key.value().split_once(':') else {
                continue;
            };
            let digest = digest.value().to_owned();
            let size = blobs.get(digest.as_str())?.map_or(0, |g| g.value());
            records.push(ModuleRecord {
                name: name.to_owned(),
                tag: tag.to_owned(),
                digest,
                size,
            });
        }
        // Keys sort as `name:tag` strings, where `a-b:x` comes before `a:x`.
        records.sort_by(|a, b| (&a.name, &a.tag).cmp(&(&b.name, &b.tag)));
        Ok(records)
    }

    /// The size of a stored module, `None` when the digest is unknown.
    pub fn size(&self, digest: &str) -> Result<Option<u64>, ModuleError> {
        let read = self.store.database().begin_read()?;
        let blobs = read.open_table(BLOBS)?;
        Ok(blobs.get(digest)?.map(|g| g.value()))
    }

    /// Chunk `index` of module `digest`; `None` when the module is unknown or the index is
    /// past its end.
    pub fn chunk(&self, digest: &str, index: u32) -> Result<Option<Chunk>, ModuleError> {
        let read = self.store.database().begin_read()?;
        let Some(size) = read.open_table(BLOBS)?.get(digest)?.map(|g| g.value()) else {
            return Ok(None);
        };
        let total = chunk_count(size);
        if index >= total {
            return Ok(None);
        }
        let chunks = read.open_table(CHUNKS)?;
        let data = chunks
            .get((digest, index))?
            .map(|g| g.value().to_vec())
            .ok_or_else(|| ModuleError::Corrupt {
                digest: digest.to_owned(),
                index,
            })?;
        Ok(Some(Chunk {
            index,
            total,
            size,
            data,
        }))
    }

    /// Stores an untagged blob (a precompiled artifact) and returns its reference. Does not
    /// bump the generation: no pod waits for an artifact by name.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<ModuleRef, ModuleError> {
        let digest = hex::encode(Sha256::digest(bytes));
        let write = self.store.database().begin_write()?;
        {
            let mut blobs = write.open_table(BLOBS)?;
            if blobs.get(digest.as_str())?.is_none() {
                let mut chunks = write.open_table(CHUNKS)?;
                for (index, data) in (0u32..).zip(bytes.chunks(CHUNK_SIZE)) {
                    chunks.insert((digest.as_str(), index), data)?;
                }
                blobs.insert(digest.as_str(), bytes.len() as u64)?;
            }
        }
        write.commit()?;
        Ok(ModuleRef {
            digest,
            size: bytes.len() as u64,
        })
    }

    /// The artifact recorded under `key` (see [`ModuleStore::set_artifact`]), if its blob
    /// is still there.
    pub fn artifact(&self, key: &str) -> Result<Option<ModuleRef>, ModuleError> {
        let digest = {
            let read = self.store.database().begin_read()?;
            let artifacts = read.open_table(ARTIFACTS)?;
            let Some(digest) = artifacts.get(key)?.map(|g| g.value().to_owned()) else {
                return Ok(None);
            };
            digest
        };
        Ok(self.size(&digest)?.map(|size| ModuleRef { digest, size }))
    }

    /// Records that `artifact` is the precompiled form named by `key`.
    pub fn set_artifact(&self, key: &str, artifact: &ModuleRef) -> Result<(), ModuleError> {
        let write = self.store.database().begin_write()?;
        write
            .open_table(ARTIFACTS)?
            .insert(key, artifact.digest.as_str())?;
        write.commit()?;
        Ok(())
    }

    /// The whole module, reassembled; `None` when the digest is unknown.
    pub fn read(&self, digest: &str) -> Result<Option<Vec<u8>>, ModuleError> {
        let Some(size) = self.size(digest)? else {
            return Ok(None);
        };
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        for index in 0..chunk_count(size) {
            match self.chunk(digest, index)? {
                Some(chunk) => bytes.extend_from_slice(&chunk.data),
                None => {
                    return Err(ModuleError::Corrupt {
                        digest: digest.to_owned(),
                        index,
                    });
                }
            }
        }
        Ok(Some(bytes))
    }
}

#[cfg(test)]
mod tests;
