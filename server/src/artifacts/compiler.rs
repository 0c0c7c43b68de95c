//! Cross-compiles modules for agent engines: one wasmtime `Engine` per target, configured
//! exactly like an agent on that target (`wasmfleet_agent::runtime::engine_config_for_target`),
//! so the artifact loads there without compiling.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use wasmfleet_agent::runtime::{ModuleKind, detect_kind, engine_config_for_target};
use wasmtime::Engine;

/// Compiles for any target the server's wasmtime has a backend for (`all-arch`: x86_64,
/// aarch64, riscv64, s390x, and Pulley for everything else).
#[derive(Default)]
pub struct Compiler {
    engines: Mutex<HashMap<String, Arc<Engine>>>,
}

impl std::fmt::Debug for Compiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Compiler { .. }")
    }
}

impl Compiler {
    /// Compiles `wasm` (a core module or a component) for `target`. Blocking: seconds for
    /// a large module.
    pub fn compile(&self, target: &str, wasm: &[u8]) -> Result<Vec<u8>, String> {
        let engine = self.engine(target)?;
        let compiled = match detect_kind(wasm).map_err(|e| e.to_string())? {
            ModuleKind::Component => engine.precompile_component(wasm),
            ModuleKind::Core => engine.precompile_module(wasm),
        };
        compiled.map_err(|e| format!("the module does not compile for {target}: {e:#}"))
    }

    fn engine(&self, target: &str) -> Result<Arc<Engine>, String> {
        let mut engines = self.engines.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(engine) = engines.get(target) {
            return Ok(engine.clone());
        }
        let config = engine_config_for_target(target)?;
        let engine =
            Arc::new(Engine::new(&config).map_err(|e| format!("no engine for {target}: {e:#}"))?);
        engines.insert(target.to_owned(), engine.clone());
        Ok(engine)
    }
}
