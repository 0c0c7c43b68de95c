//! Compiling modules, and the on-disk cache of their precompiled artifacts.
//!
//! Artifacts are keyed by the module's sha256 and the engine's compatibility key, so an
//! agent upgrade or a CPU with other features never loads a stale artifact: it misses the
//! cache and compiles again. Files are written to a temporary name and renamed into place,
//! so a crash never leaves a half-written artifact under a real key.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::component::Component;
use wasmtime::{Engine, Module};

use super::LoadError;

/// What a `.wasm` file holds, from its preamble.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleKind {
    /// A core module (wasm32-wasip1).
    Core,
    /// A component (wasm32-wasip2).
    Component,
}

/// Compiled code, ready to be linked.
pub enum Compiled {
    /// A core module.
    Core(Module),
    /// A component.
    Component(Component),
}

/// Reads the 8-byte preamble: `\0asm`, then version 1 for core modules or the component
/// layer encoding (`0d 00 01 00`).
pub fn detect_kind(bytes: &[u8]) -> Result<ModuleKind, LoadError> {
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => Ok(ModuleKind::Core),
        Some([0, b'a', b's', b'm', _, _, 1, 0]) => Ok(ModuleKind::Component),
        _ => Err(LoadError::NotWasm),
    }
}

/// The artifact cache in one private directory.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    compatibility_key: String,
    compilations: Arc<AtomicU64>,
}

impl ArtifactCache {
    /// A cache in `dir` (created on first write) for an engine with `compatibility_key`.
    pub fn new(dir: PathBuf, compatibility_key: String) -> Self {
        Self {
            dir,
            compatibility_key,
            compilations: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Where the artifact for `digest` lives.
    pub fn artifact_path(&self, digest: &str) -> PathBuf {
        let key = &self.compatibility_key[..self.compatibility_key.len().min(16)];
        self.dir.join(format!("{digest}-{key}.cwasm"))
    }

    /// Every artifact file, for any engine (an agent upgrade changes the key), with the
    /// module digest it belongs to and its size: one directory listing.
    fn artifacts(&self) -> Vec<(String, PathBuf, u64)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name();
                let (digest, _key) = name.to_str()?.strip_suffix(".cwasm")?.split_once('-')?;
                let len = entry.metadata().ok()?.len();
                Some((digest.to_owned(), entry.path(), len))
            })
            .collect()
    }

    /// Moves the verified artifact at `verified` into place for `digest` (same filesystem:
    /// an atomic rename; else a copy through a temporary file).
    pub fn install(&self, digest: &str, verified: &Path) -> std::io::Result<()> {
        if !is_sha256_hex(digest) {
            return Err(std::io::Error::other(format!("invalid digest {digest:?}")));
        }
        std::fs::create_dir_all(&self.dir)?;
        let target = self.artifact_path(digest);
        if std::fs::rename(verified, &target).is_ok() {
            return Ok(());
        }
        // Read before creating the temporary file, so a missing source leaves nothing.
        let bytes = std::fs::read(verified)?;
        let (temp, mut file) = tempfile_in(&self.dir)?;
        let written = file
            .write_all(&bytes)
            .and_then(|()| file.sync_all())
            .and_then(|()| std::fs::rename(&temp, &target));
        if let Err(err) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(err);
        }
        let _ = std::fs::remove_file(verified);
        Ok(())
    }

    /// How many modules were compiled here.
    pub fn compilations(&self) -> u64 {
        self.compilations.load(Ordering::Relaxed)
    }

    /// Bytes on disk of the artifacts of each module digest that has any.
    pub fn bytes_by_module(&self) -> HashMap<String, u64> {
        let mut bytes = HashMap::new();
        for (digest, _, len) in self.artifacts() {
            *bytes.entry(digest).or_default() += len;
        }
        bytes
    }

    /// Deletes the artifacts of every module in `digests` (one directory listing). A
    /// program loaded from one keeps working: its code is mapped, and the mapping outlives
    /// the file.
    pub fn remove(&self, digests: &[String]) {
        let doomed = self
            .artifacts()
            .into_iter()
            .filter(|(digest, _, _)| digests.contains(digest));
        for (_, path, _) in doomed {
            if let Err(err) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), %err, "cannot remove a compiled artifact");
            }
        }
    }

    /// The compiled code for the module at `wasm` with sha256 `digest`: from the cache if
    /// present and loadable, otherwise compiled and then stored. Blocking (compiles).
    pub fn load(&self, engine: &Engine, digest: &str, wasm: &Path) -> Result<Compiled, LoadError> {
        if !is_sha256_hex(digest) {
            return Err(LoadError::BadDigest(digest.to_string()));
        }
        let artifact = self.artifact_path(digest);
        if artifact.exists() {
            match deserialize(engine, &artifact) {
                Ok(compiled) => return Ok(compiled),
                Err(error) => {
                    tracing::warn!(path = %artifact.display(), error = %format!("{error:#}"),
                        "discarding unusable precompiled artifact");
                    let _ = std::fs::remove_file(&artifact);
                }
            }
        }
        let compiled = compile(engine, wasm)?;
        self.compilations.fetch_add(1, Ordering::Relaxed);
        if let Err(error) = self.store(&compiled, &artifact) {
            // The module still runs; the next start just compiles again.
            tracing::warn!(path = %artifact.display(), %error, "could not cache a precompiled artifact");
        }
        Ok(compiled)
    }

    #[cfg(feature = "compiler")]
    fn store(&self, compiled: &Compiled, artifact: &Path) -> std::io::Result<()> {
        let bytes = match compiled {
            Compiled::Core(module) => module.serialize(),
            Compiled::Component(component) => component.serialize(),
        }
        .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
        std::fs::create_dir_all(&self.dir)?;
        let mut temp = tempfile_in(&self.dir)?;
        temp.1.write_all(&bytes)?;
        temp.1.sync_all()?;
        std::fs::rename(&temp.0, artifact)
    }
}

/// Compiles the module at `wasm`.
#[cfg(feature = "compiler")]
fn compile(engine: &Engine, wasm: &Path) -> Result<Compiled, LoadError> {
    let bytes = std::fs::read(wasm).map_err(|source| LoadError::Read {
        path: wasm.to_path_buf(),
        source,
    })?;
    let invalid = |e: wasmtime::Error| LoadError::Invalid(format!("{e:#}"));
    match detect_kind(&bytes)? {
        ModuleKind::Core => Module::new(engine, &bytes)
            .map(Compiled::Core)
            .map_err(invalid),
        ModuleKind::Component => Component::new(engine, &bytes)
            .map(Compiled::Component)
            .map_err(invalid),
    }
}

/// A runtime-only agent cannot compile.
#[cfg(not(feature = "compiler"))]
fn compile(_engine: &Engine, _wasm: &Path) -> Result<Compiled, LoadError> {
    Err(LoadError::NoCompiler)
}

#[cfg(not(feature = "compiler"))]
impl ArtifactCache {
    // Never reached: `compile` always fails without a compiler.
    fn store(&self, _compiled: &Compiled, _artifact: &Path) -> std::io::Result<()> {
        Err(std::io::Error::other(
            "a runtime-only agent does not compile",
        ))
    }
}

/// Loads a precompiled artifact written by [`ArtifactCache::store`].
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, artifact: &Path) -> wasmtime::Result<Compiled> {
    use wasmtime::Precompiled;
    let kind = Engine::detect_precompiled_file(artifact)?;
    // SAFETY: `deserialize_file` trusts the file to be native code that wasmtime produced
    // and maps it into memory. The file lives in the agent's private cache directory and was
    // put there either by `ArtifactCache::store` from a module this agent compiled, or by
    // `ArtifactCache::install` from a server artifact whose signature by the cluster CA and
    // sha256 were verified first. It is only ever replaced by an atomic rename (never
    // modified in place while mapped). Version or configuration mismatches are detected by
    // wasmtime and returned as errors.
    unsafe {
        match kind {
            Some(Precompiled::Module) => {
                Module::deserialize_file(engine, artifact).map(Compiled::Core)
            }
            Some(Precompiled::Component) => {
                Component::deserialize_file(engine, artifact).map(Compiled::Component)
            }
            None => Err(wasmtime::format_err!("not a precompiled wasmtime artifact")),
        }
    }
}

/// Creates a uniquely named temporary file in `dir`, returning its path and handle.
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!(
        ".tmp-{}-{nanos}-{}",
        std::process::id(),
        rand::random::<u32>()
    );
    let path = dir.join(name);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    Ok((path, file))
}

fn is_sha256_hex(digest: &str) -> bool {
    digest.len() == 64
        && digest
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(not(feature = "compiler"))]
    fn a_runtime_only_agent_refuses_to_compile_with_a_clear_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let wasm = dir.path().join("m.wasm");
        std::fs::write(&wasm, b"\0asm\x01\0\0\0").expect("write");
        let engine = Engine::new(&super::super::engine_config()).expect("engine");
        let cache = ArtifactCache::new(dir.path().join("cache"), "k".repeat(64));
        let result = cache.load(&engine, &"ab".repeat(32), &wasm);
        let err = result.err().expect("no compiler, no artifact: an error");
        assert!(matches!(err, LoadError::NoCompiler), "{err}");
        assert!(err.to_string().contains("runtime only"), "{err}");
        assert_eq!(cache.compilations(), 0);
    }

    #[test]
    fn artifact_bytes_are_summed_per_module_over_every_engine_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = ArtifactCache::new(dir.path().to_path_buf(), "k".repeat(64));
        let (a, b) = ("aa".repeat(32), "bb".repeat(32));
        for (name, len) in [
            (format!("{a}-old0000000000000.cwasm"), 100),
            (format!("{a}-kkkkkkkkkkkkkkkk.cwasm"), 20),
            (format!("{b}-kkkkkkkkkkkkkkkk.cwasm"), 3),
            ("stray.tmp".to_owned(), 1000),
        ] {
            std::fs::write(dir.path().join(name), vec![0; len]).expect("write");
        }
        let bytes = cache.bytes_by_module();
        assert_eq!(bytes.len(), 2, "{bytes:?}");
        assert_eq!(bytes[&a], 120);
        assert_eq!(bytes[&b], 3);

        cache.remove(std::slice::from_ref(&a));
        assert_eq!(cache.bytes_by_module().get(&a), None);
        assert_eq!(cache.bytes_by_module()[&b], 3);
    }

    #[test]
    fn a_core_module_preamble_is_recognised() {
        assert!(matches!(
            detect_kind(b"\0asm\x01\0\0\0rest"),
            Ok(ModuleKind::Core)
        ));
    }

    #[test]
    fn a_component_preamble_is_recognised() {
        assert!(matches!(
            detect_kind(b"\0asm\x0d\0\x01\0"),
            Ok(ModuleKind::Component)
        ));
    }

    #[test]
    fn bytes_without_the_wasm_magic_are_not_wasm() {
        assert!(matches!(
            detect_kind(b"garbage bytes"),
            Err(LoadError::NotWasm)
        ));
        assert!(matches!(detect_kind(b"\0as"), Err(LoadError::NotWasm)));
    }

    #[test]
    fn only_lowercase_sha256_hex_is_a_digest() {
        assert!(is_sha256_hex(&"ab".repeat(32)));
        assert!(!is_sha256_hex(&"AB".repeat(32)));
        assert!(!is_sha256_hex("../../etc/passwd"));
    }
}
