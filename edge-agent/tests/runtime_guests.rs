//! The guests of the networking work (`workloads/sensor`, `tcp-echo`, `http-hello`,
//! `fetch`, built into `workloads/dist` by `workloads/build`) in the real runtime: how each
//! loads and is told apart.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use wasmfleet_agent::runtime::{
    ExitReason, LoadError, LogBuffer, ModuleKind, Program, RunSpec, Runtime, engine_config,
};
use wasmtime::component::types::ComponentItem;

fn dist(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../workloads/dist")
        .join(format!("{name}.wasm"))
}

fn digest_of(path: &Path) -> String {
    let bytes = std::fs::read(path)
        .unwrap_or_else(|e| panic!("{}: {e} (run workloads/build first)", path.display()));
    hex::encode(Sha256::digest(&bytes))
}

async fn load(runtime: &Runtime, name: &str) -> Result<Program, LoadError> {
    let wasm = dist(name);
    runtime.load(&digest_of(&wasm), &wasm).await
}

fn argv(words: &[&str]) -> RunSpec {
    RunSpec {
        argv: words.iter().map(|w| w.to_string()).collect(),
        ..RunSpec::default()
    }
}

/// `12.34` style: digits, a point, exactly `decimals` digits.
fn is_fixed(value: &str, decimals: usize) -> bool {
    value.split_once('.').is_some_and(|(whole, fraction)| {
        !whole.is_empty()
            && whole.bytes().all(|b| b.is_ascii_digit())
            && fraction.len() == decimals
            && fraction.bytes().all(|b| b.is_ascii_digit())
    })
}

#[tokio::test]
async fn the_sensor_prints_the_requested_readings_and_exits_0() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(dir.path()).expect("runtime");
    let program = load(&runtime, "sensor").await.expect("loads");
    assert_eq!(program.kind(), ModuleKind::Core);
    let mut spec = argv(&["sensor", "--count", "3", "--interval-ms", "10"]);
    spec.env = vec![("SENSOR_NAME".into(), "greenhouse".into())];

    let logs = LogBuffer::new();
    let exit = runtime
        .run(&program, &spec, &logs, &CancellationToken::new())
        .await;

    assert_eq!((exit.code, exit.reason), (0, ExitReason::Completed));
    let lines = logs.lines();
    assert_eq!(lines.len(), 3, "{lines:?}");
    for (seq, line) in lines.iter().enumerate() {
        let fields: Vec<&str> = line.split(' ').collect();
        let [name, seq_field, temperature, humidity] = fields[..] else {
            panic!("not four fields: {line:?}");
        };
        assert_eq!(name, "sensor=greenhouse", "{line:?}");
        assert_eq!(seq_field, format!("seq={seq}"), "{line:?}");
        let celsius = temperature.strip_prefix("temperature_c=");
        assert!(celsius.is_some_and(|v| is_fixed(v, 2)), "{line:?}");
        let percent = humidity.strip_prefix("humidity_pct=");
        assert!(percent.is_some_and(|v| is_fixed(v, 1)), "{line:?}");
    }
}

#[tokio::test]
async fn the_sensor_repeats_its_readings_after_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(dir.path()).expect("runtime");
    let program = load(&runtime, "sensor").await.expect("loads");
    let spec = argv(&["sensor", "--count", "5", "--interval-ms", "0"]);

    let mut runs = Vec::new();
    for _ in 0..2 {
        let logs = LogBuffer::new();
        let exit = runtime
            .run(&program, &spec, &logs, &CancellationToken::new())
            .await;
        assert_eq!(exit.reason, ExitReason::Completed);
        runs.push(logs.lines());
    }

    assert_eq!(runs[0].len(), 5);
    assert_eq!(runs[0], runs[1]);
    assert!(runs[0][0].starts_with("sensor=sensor seq=0 "), "{runs:?}");
}

#[tokio::test]
async fn tcp_echo_loads_as_a_command_component() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(dir.path()).expect("runtime");

    // Loading links every import (wasi:sockets included) and checks for `wasi:cli/run`.
    let program = load(&runtime, "tcp-echo").await.expect("loads");

    assert_eq!(program.kind(), ModuleKind::Component);
}

/// A container without a pod network (a pod from a server older than the pod network) gets
/// no sockets: a guest that tries to listen is denied by the host and says so in its log.
#[tokio::test]
async fn tcp_echo_cannot_listen_because_the_sandbox_grants_no_network() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(dir.path()).expect("runtime");
    let program = load(&runtime, "tcp-echo").await.expect("loads");

    let logs = LogBuffer::new();
    let exit = runtime
        .run(
            &program,
            &argv(&["tcp-echo", "--port", "7007"]),
            &logs,
            &CancellationToken::new(),
        )
        .await;

    assert_eq!((exit.code, exit.reason), (1, ExitReason::Error));
    // wasi-libc reports the host's `access-denied` as EACCES (WASI numbers it 2).
    let lines = logs.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("tcp-echo: cannot listen on 0.0.0.0:7007: Permission denied"),
        "{lines:?}"
    );
}

#[tokio::test]
async fn http_hello_loads_as_a_served_wasi_http_proxy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(dir.path()).expect("runtime");

    let program = load(&runtime, "http-hello")
        .await
        .expect("http-hello loads");

    // A proxy is served on its container's port (edge-agent/tests/http_serving.rs), not
    // run as a command; commands, even ones importing wasi:http, are not served.
    assert_eq!(program.kind(), ModuleKind::Component);
    assert!(program.serves_http());
    let fetch = load(&runtime, "fetch").await.expect("fetch loads");
    assert!(!fetch.serves_http());
}

#[test]
fn http_hello_exports_the_wasi_http_incoming_handler() {
    let engine = wasmtime::Engine::new(&engine_config()).expect("engine");
    let component =
        wasmtime::component::Component::from_file(&engine, dist("http-hello")).expect("compiles");
    let ty = component.component_type();

    let exports: Vec<(&str, ComponentItem)> =
        ty.exports(&engine).map(|(name, e)| (name, e.ty)).collect();

    let [(name, ComponentItem::ComponentInstance(handler))] = &exports[..] else {
        panic!("expected one exported instance, got {exports:?}");
    };
    assert!(
        name.starts_with("wasi:http/incoming-handler@0.2."),
        "{name}"
    );
    let functions: Vec<&str> = handler
        .exports(&engine)
        .filter(|(_, e)| matches!(e.ty, ComponentItem::ComponentFunc(_)))
        .map(|(name, _)| name)
        .collect();
    assert_eq!(functions, ["handle"]);
    // A proxy, not a command: nothing for `Runtime::run` to call.
    assert!(ty.get_export(&engine, "wasi:cli/run@0.2.0").is_none());
}
