//! The runtime on its own: engine facts, loading (cache, bad bytes) and single runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use wasmfleet_agent::runtime::{
    ExitReason, IDLE_PROGRAMS, LoadError, LogBuffer, ModuleKind, RunSpec, Runtime,
};

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

fn argv(words: &[&str]) -> RunSpec {
    RunSpec {
        argv: words.iter().map(|w| w.to_string()).collect(),
        ..RunSpec::default()
    }
}

#[tokio::test]
async fn engine_info_describes_this_host() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(dir.path()).expect("runtime");
    let info = runtime.engine_info();
    assert_eq!(info.wasmtime_version, "48.0.8");
    assert!(
        info.target.contains(std::env::consts::ARCH),
        "{}",
        info.target
    );
    assert_eq!(info.compatibility_key.len(), 64);
    assert!(info.can_compile);
}

#[tokio::test]
async fn a_precompiled_artifact_is_reused_by_a_second_runtime() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("cache");
    let wasm = dir.path().join("exerciser.wasm");
    std::fs::copy(dist("exerciser"), &wasm).expect("copy module");
    let digest = digest_of(&wasm);

    let first = Runtime::new(&cache).expect("runtime");
    first.load(&digest, &wasm).await.expect("compiles");
    let artifact = first.artifact_path(&digest);
    assert!(
        artifact.exists(),
        "artifact written to {}",
        artifact.display()
    );
    drop(first);

    // Without the .wasm the second runtime can only succeed from the artifact.
    std::fs::remove_file(&wasm).expect("remove module");
    let second = Runtime::new(&cache).expect("runtime");
    let program = second
        .load(&digest, &wasm)
        .await
        .expect("loads from the cache");
    assert_eq!(program.kind(), ModuleKind::Core);

    let logs = LogBuffer::new();
    let exit = second
        .run(
            &program,
            &argv(&["x", "exit", "0"]),
            &logs,
            &CancellationToken::new(),
        )
        .await;
    assert_eq!(exit.reason, ExitReason::Completed);
    assert_eq!(logs.lines(), ["exiting with 0"]);
}

/// A distinct module (own digest) that behaves like `hello`: hello with a custom section
/// appended.
fn hello_variant(dir: &Path, n: u8) -> (String, PathBuf) {
    let mut bytes = std::fs::read(dist("hello")).expect("hello");
    let name = b"variant";
    bytes.extend_from_slice(&[0, 1 + name.len() as u8 + 1, name.len() as u8]);
    bytes.extend_from_slice(name);
    bytes.push(n);
    let path = dir.join(format!("hello-{n}.wasm"));
    std::fs::write(&path, &bytes).expect("write variant");
    (digest_of(&path), path)
}

#[tokio::test]
async fn idle_programs_are_unloaded_past_the_budget_but_programs_in_use_stay() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(dir.path().join("cache")).expect("runtime");
    let (held_digest, held_path) = hello_variant(dir.path(), 0);
    let held = runtime.load(&held_digest, &held_path).await.expect("loads");

    for n in 1..=(IDLE_PROGRAMS as u8 + 4) {
        let (digest, path) = hello_variant(dir.path(), n);
        runtime.load(&digest, &path).await.expect("loads");
    }

    // The held program, the idle budget, and the one loaded last: it was still being
    // handed out when the others were weighed.
    assert_eq!(runtime.loaded_programs(), IDLE_PROGRAMS + 2);
    assert!(runtime.is_loaded(&held_digest), "a program in use stays");
    let (oldest, _) = hello_variant(dir.path(), 1);
    assert!(!runtime.is_loaded(&oldest), "the oldest idle program went");
    // An evicted program loads again (from the artifact cache) and runs.
    let (digest, path) = hello_variant(dir.path(), 1);
    let again = runtime.load(&digest, &path).await.expect("reloads");
    let logs = LogBuffer::new();
    let exit = runtime
        .run(&again, &argv(&["hello"]), &logs, &CancellationToken::new())
        .await;
    assert_eq!(exit.reason, ExitReason::Completed);
    assert_eq!(logs.lines(), ["hello from wasmfleet"]);
    // Once nothing runs them, only the budget stays.
    drop((held, again));
    runtime.unload_idle();
    assert_eq!(runtime.loaded_programs(), IDLE_PROGRAMS);
    assert!(
        !runtime.is_loaded(&held_digest),
        "the released program was the oldest"
    );
}

#[tokio::test]
async fn a_corrupt_artifact_is_replaced_by_compiling_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let wasm = dist("hello");
    let digest = digest_of(&wasm);
    let runtime = Runtime::new(dir.path()).expect("runtime");
    std::fs::write(runtime.artifact_path(&digest), b"not an artifact").expect("write");

    let program = runtime.load(&digest, &wasm).await.expect("recompiles");

    assert_eq!(program.kind(), ModuleKind::Core);
    let artifact = std::fs::read(runtime.artifact_path(&digest)).expect("artifact");
    assert_ne!(artifact, b"not an artifact");
}

#[tokio::test]
async fn garbage_and_truncated_modules_are_clear_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(dir.path().join("cache")).expect("runtime");
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"\x7fELF definitely not wasm").expect("write");
    let truncated = dir.path().join("truncated.wasm");
    let hello = std::fs::read(dist("hello")).expect("hello");
    std::fs::write(&truncated, &hello[..hello.len() / 2]).expect("write");

    let not_wasm = runtime.load(&digest_of(&garbage), &garbage).await;
    let invalid = runtime.load(&digest_of(&truncated), &truncated).await;
    let bad_digest = runtime.load("../../etc", &garbage).await;

    assert!(matches!(not_wasm, Err(LoadError::NotWasm)));
    assert!(matches!(invalid, Err(LoadError::Invalid(_))));
    assert!(matches!(bad_digest, Err(LoadError::BadDigest(_))));
}

#[tokio::test]
async fn a_component_is_detected_and_runs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(dir.path()).expect("runtime");
    let wasm = dist("exerciser-p2");
    let program = runtime.load(&digest_of(&wasm), &wasm).await.expect("loads");
    assert_eq!(program.kind(), ModuleKind::Component);

    let logs = LogBuffer::new();
    let exit = runtime
        .run(
            &program,
            &argv(&["x", "sleep", "10"]),
            &logs,
            &CancellationToken::new(),
        )
        .await;

    assert_eq!((exit.code, exit.reason), (0, ExitReason::Completed));
    assert_eq!(logs.lines(), ["slept 10 ms"]);
}

#[tokio::test]
async fn a_stop_ends_a_sleeping_component_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(dir.path()).expect("runtime");
    let wasm = dist("exerciser-p2");
    let program = runtime.load(&digest_of(&wasm), &wasm).await.expect("loads");
    let stop = CancellationToken::new();
    let canceller = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        canceller.cancel();
    });

    let logs = LogBuffer::new();
    let exit = tokio::time::timeout(
        Duration::from_secs(2),
        runtime.run(&program, &argv(&["x", "sleep", "60000"]), &logs, &stop),
    )
    .await
    .expect("stopped promptly");

    assert_eq!((exit.code, exit.reason), (137, ExitReason::Killed));
    assert_eq!(runtime.live_instances(), 0);
}

#[tokio::test]
async fn a_stop_interrupts_a_spinning_module() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(dir.path()).expect("runtime");
    let wasm = dist("exerciser");
    let program = runtime.load(&digest_of(&wasm), &wasm).await.expect("loads");
    let stop = CancellationToken::new();
    let canceller = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        canceller.cancel();
    });

    let exit = tokio::time::timeout(
        Duration::from_secs(2),
        runtime.run(
            &program,
            &argv(&["x", "spin", "60000"]),
            &LogBuffer::new(),
            &stop,
        ),
    )
    .await
    .expect("stopped promptly");

    assert_eq!(exit.reason, ExitReason::Killed);
    assert_eq!(runtime.live_instances(), 0);
}

/// CPU time (user + system) this thread has used, from /proc (Linux clock ticks of 10 ms).
fn thread_cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("/proc/thread-self/stat");
    let after_name = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `after_name` starts at field 3.
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_millis(ticks * 10)
}

// One tokio thread, so the guest runs on this thread and its CPU time is measurable.
#[tokio::test(flavor = "current_thread")]
async fn a_cpu_limit_throttles_a_busy_guest_to_its_share() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(dir.path()).expect("runtime");
    let wasm = dist("exerciser");
    let program = runtime.load(&digest_of(&wasm), &wasm).await.expect("loads");
    let mut spec = argv(&["x", "spin", "1000"]);
    spec.cpu_limit_millis = Some(200);

    let before = thread_cpu_time();
    let exit = runtime
        .run(
            &program,
            &spec,
            &LogBuffer::new(),
            &CancellationToken::new(),
        )
        .await;
    let used = thread_cpu_time() - before;

    assert_eq!(exit.reason, ExitReason::Completed);
    // 200m of a 1 s spin is 200 ms; unthrottled it would be the full second.
    assert!(used < Duration::from_millis(500), "used {used:?} of CPU");
}
