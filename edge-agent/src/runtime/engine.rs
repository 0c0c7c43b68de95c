//! The process-wide wasmtime `Engine`: its fixed settings, the epoch ticker, and what the
//! agent reports about it.
//!
//! Every setting that changes compiled code is set explicitly here, so that the
//! compatibility key (and so the on-disk artifact cache, and any module the server
//! precompiles for this node) does not drift with wasmtime's platform defaults.

use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmfleet_protocol::node::EngineInfo;
use wasmtime::{Config, Engine};

/// How often the engine-wide ticker advances the epoch. One tick is the unit of CPU
/// accounting and the longest a guest runs before the host gets control back.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The wasmtime version this agent embeds (pinned in the workspace manifest).
pub const WASMTIME_VERSION: &str = "48.0.8";

/// Linear-memory address-space settings: `(reservation, guard, growth reservation)`. On
/// 64-bit hosts a 4 GiB reservation plus a guard lets compiled code skip bounds checks;
/// 32-bit hosts cannot reserve that much. They shape compiled code, so a server compiling
/// for a node must use the node's values, not its own.
fn memory_settings(pointer_width: u32) -> (u64, u64, u64) {
    if pointer_width == 64 {
        (4 << 30, 32 << 20, 2 << 30)
    } else {
        (10 << 20, 64 << 10, 1 << 20)
    }
}

/// The engine configuration every wasmfleet agent uses on this host.
pub fn engine_config() -> Config {
    let host_width = if cfg!(target_pointer_width = "64") {
        64
    } else {
        32
    };
    base_config(host_width)
}

/// The configuration of an agent engine for `target` (a target triple such as
/// `aarch64-unknown-linux-gnu`, or `pulley32`/`pulley64`): what the server uses to
/// precompile modules for that agent. The caller's wasmtime must have the target's backend
/// (the server enables `all-arch`).
pub fn engine_config_for_target(target: &str) -> Result<Config, String> {
    let width = pointer_width_of(target)
        .ok_or_else(|| format!("unsupported target {target:?}: unknown pointer width"))?;
    let mut config = base_config(width);
    config
        .target(target)
        .map_err(|e| format!("unsupported target {target:?}: {e:#}"))?;
    Ok(config)
}

/// The pointer width of the targets wasmfleet agents run on.
fn pointer_width_of(target: &str) -> Option<u32> {
    let arch = target.split('-').next()?;
    match arch {
        "x86_64" | "aarch64" | "riscv64gc" | "s390x" | "pulley64" | "pulley64be" => Some(64),
        "armv7" | "arm" | "i686" | "pulley32" | "pulley32be" => Some(32),
        _ => None,
    }
}

fn base_config(pointer_width: u32) -> Config {
    let (reservation, guard, growth) = memory_settings(pointer_width);
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .wasm_component_model(true)
        .memory_reservation(reservation)
        .memory_guard_size(guard)
        .memory_reservation_for_growth(growth)
        .max_wasm_stack(512 << 10)
        .async_stack_size(2 << 20);
    config
}

/// Starts the engine-wide epoch ticker on its own thread. The thread only holds a weak
/// reference, so it exits by itself once the last `Engine` clone is dropped.
pub fn start_ticker(engine: &Engine) -> std::io::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })
        .map(|_| ())
}

/// What the agent tells the server about its engine at birth.
pub fn engine_info(engine: &Engine) -> EngineInfo {
    EngineInfo {
        wasmtime_version: WASMTIME_VERSION.to_string(),
        target: target_triple(engine),
        compatibility_key: compatibility_key(engine),
        // Cranelift (or its Pulley backend on 32-bit hosts), unless built runtime only.
        can_compile: cfg!(feature = "compiler"),
    }
}

/// The engine's `precompile_compatibility_hash`, digested with sha256 so that it is
/// stable across processes (std's `DefaultHasher` is not), as 64 hex characters.
#[cfg(feature = "compiler")]
pub fn compatibility_key(engine: &Engine) -> String {
    use std::hash::Hash;
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(hasher.0.finalize())
}

/// Without a compiler wasmtime offers no compatibility hash. The key then only names the
/// cache namespace (wasmtime still checks every artifact it loads): it changes with the
/// wasmtime version and the target, which is what invalidates artifacts.
#[cfg(not(feature = "compiler"))]
pub fn compatibility_key(engine: &Engine) -> String {
    let mut hasher = Sha256::new();
    hasher.update(format!(
        "runtime-only/{WASMTIME_VERSION}/{}",
        target_triple(engine)
    ));
    hex::encode(hasher.finalize())
}

/// The target triple the engine compiles for. wasmtime has no public getter, so it is
/// derived from the host the agent was built for (the engine never cross-compiles).
fn target_triple(engine: &Engine) -> String {
    if engine.is_pulley() {
        let width = if cfg!(target_pointer_width = "64") {
            "64"
        } else {
            "32"
        };
        let endian = if cfg!(target_endian = "big") {
            "be"
        } else {
            ""
        };
        return format!("pulley{width}{endian}");
    }
    let env = if cfg!(target_env = "musl") {
        "-musl"
    } else if cfg!(target_env = "gnu") {
        "-gnu"
    } else {
        ""
    };
    format!(
        "{}-unknown-{}{env}",
        std::env::consts::ARCH,
        std::env::consts::OS
    )
}

/// Feeds `Hash` output into sha256.
#[cfg(feature = "compiler")]
struct Sha256Hasher(Sha256);

#[cfg(feature = "compiler")]
impl std::hash::Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        // Only the sha256 digest is used; `finish` exists to satisfy the trait.
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(feature = "compiler")]
    #[allow(unsafe_code)]
    fn the_config_for_the_host_target_compiles_artifacts_this_engine_loads() {
        let host = Engine::new(&engine_config()).expect("engine");
        let target = target_triple(&host);
        let config = engine_config_for_target(&target).expect("config");
        let cross = Engine::new(&config).expect("engine");
        let empty_module = b"\0asm\x01\0\0\0";
        let artifact = cross.precompile_module(empty_module).expect("precompiles");
        // SAFETY: the bytes were just produced by wasmtime's own precompile_module.
        let loaded = unsafe { wasmtime::Module::deserialize(&host, &artifact) };
        assert!(loaded.is_ok(), "{:?}", loaded.err());
    }

    #[test]
    fn unknown_targets_are_refused() {
        assert!(engine_config_for_target("mips-unknown-linux-gnu").is_err());
        assert!(engine_config_for_target("").is_err());
    }

    #[test]
    fn two_engines_with_the_same_config_share_a_compatibility_key() {
        let a = Engine::new(&engine_config()).expect("engine");
        let b = Engine::new(&engine_config()).expect("engine");
        assert_eq!(compatibility_key(&a), compatibility_key(&b));
        assert_eq!(compatibility_key(&a).len(), 64);
    }

    #[test]
    fn engine_info_names_the_pinned_wasmtime_and_the_host_target() {
        let engine = Engine::new(&engine_config()).expect("engine");
        let info = engine_info(&engine);
        assert_eq!(info.wasmtime_version, "48.0.8");
        assert!(
            info.target.starts_with(std::env::consts::ARCH) || info.target.starts_with("pulley")
        );
        assert_eq!(info.can_compile, cfg!(feature = "compiler"));
    }
}
