//! Full validation of pushed modules, one home for both doors (the HTTPS push and the MQTT
//! upload): size, the `\0asm` magic, then `wasmparser` with the WebAssembly features the
//! agents' wasmtime accepts, so a module the agents would refuse is refused at push instead
//! of being stored and failing on every node.
//!
//! Validation is CPU work proportional to the module (tens of milliseconds for 16 MiB):
//! callers on an async runtime run it in `spawn_blocking` (both doors do, through
//! [`super::ModuleStore::put`]).

use wasmparser::{Validator, WasmFeatures};

use super::{MAX_MODULE_SIZE, ModuleError};

/// The magic number every wasm binary (core module or component) starts with.
const WASM_MAGIC: &[u8; 4] = b"\0asm";

/// The features wasmtime 48 enables by default, as the agents build it (no `gc`, no
/// `threads`, component model on, component-model async off): see wasmtime's
/// `Config::features`.
fn agent_features() -> WasmFeatures {
    let mut features = WasmFeatures::WASM3;
    features.remove(WasmFeatures::GC_TYPES | WasmFeatures::EXCEPTIONS | WasmFeatures::THREADS);
    features.insert(WasmFeatures::COMPONENT_MODEL);
    features
}

/// Refuses oversize input, anything that is not wasm, and wasm that does not validate.
pub fn validate_wasm(bytes: &[u8]) -> Result<(), ModuleError> {
    if bytes.len() > MAX_MODULE_SIZE {
        return Err(ModuleError::TooLarge {
            size: bytes.len(),
            limit: MAX_MODULE_SIZE,
        });
    }
    // Magic plus the 4-byte version/layer field: the smallest valid binary is 8 bytes.
    if bytes.len() < 8 || !bytes.starts_with(WASM_MAGIC) {
        return Err(ModuleError::NotWasm);
    }
    Validator::new_with_features(agent_features())
        .validate_all(bytes)
        .map(|_| ())
        .map_err(|err| ModuleError::Invalid(err.to_string()))
}
