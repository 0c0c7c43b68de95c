//! The pod manager running real guests (`workloads/dist`, built by `workloads/build`) in
//! real wasmtime: lifecycles, restart policy, limits, logs (in memory and persisted in a
//! temp dir), stopping and restore.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wasmfleet_agent::pods::{ModuleSource, PodManager, PodManagerConfig};
use wasmfleet_agent::runtime::{
    LOG_FILE_SEGMENT_BYTES, LogLine, LogSelection, MAX_BUFFER_BYTES, Runtime,
};
use wasmfleet_protocol::pod::{
    ContainerSpec, ContainerState, ModuleRef, PodAssignment, PodPhase, PodStatus, RestartPolicy,
};

/// Modules in directories on disk, found by the sha256 of their bytes: the shape of the
/// agent's real module cache, without the network.
struct DirSource {
    by_digest: HashMap<String, PathBuf>,
}

impl DirSource {
    fn new() -> Self {
        Self {
            by_digest: HashMap::new(),
        }
    }

    /// Registers the file at `path` and returns its module reference.
    fn add(&mut self, path: &Path) -> ModuleRef {
        let bytes = std::fs::read(path)
            .unwrap_or_else(|e| panic!("{}: {e} (run workloads/build first)", path.display()));
        let digest = hex::encode(Sha256::digest(&bytes));
        self.by_digest.insert(digest.clone(), path.to_path_buf());
        ModuleRef {
            digest,
            size: bytes.len() as u64,
        }
    }
}

impl ModuleSource for DirSource {
    fn fetch(
        &self,
        module: &ModuleRef,
    ) -> Pin<Box<dyn Future<Output = Result<PathBuf, String>> + Send + 'static>> {
        let found = self
            .by_digest
            .get(&module.digest)
            .cloned()
            .ok_or_else(|| format!("no module with digest {}", module.digest));
        Box::pin(async move { found })
    }
}

fn dist(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../workloads/dist")
        .join(format!("{name}.wasm"))
}

/// A pod manager over a fresh runtime, with the guests registered.
struct Node {
    manager: PodManager,
    runtime: Runtime,
    modules: HashMap<&'static str, ModuleRef>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start(backoff: Duration) -> Self {
        Self::start_with(backoff, None)
    }

    /// A node whose container logs are persisted under `log_dir`.
    fn start_with(backoff: Duration, log_dir: Option<PathBuf>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let garbage = dir.path().join("garbage.wasm");
        std::fs::write(&garbage, b"this is not a wasm module at all").expect("write garbage");
        let mut source = DirSource::new();
        let mut modules = HashMap::new();
        for name in ["hello", "exerciser", "exerciser-p2"] {
            modules.insert(name, source.add(&dist(name)));
        }
        modules.insert("garbage", source.add(&garbage));
        let runtime = Runtime::new(dir.path().join("cache")).expect("runtime");
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let manager = PodManager::new(
            runtime.clone(),
            Arc::new(source),
            PodManagerConfig {
                restart_backoff_base: backoff,
                log_dir,
                ..PodManagerConfig::default()
            },
            shutdown.clone(),
            tracker.clone(),
        );
        Self {
            manager,
            runtime,
            modules,
            shutdown,
            tracker,
            _dir: dir,
        }
    }

    fn container(&self, module: &str, args: &[&str]) -> ContainerSpec {
        ContainerSpec {
            name: "main".into(),
            image: format!("{module}:test"),
            module: self.modules[module].clone(),
            command: vec![],
            args: args.iter().map(|a| a.to_string()).collect(),
            env: vec![],
            memory_limit_bytes: None,
            cpu_limit_millis: None,
            probes: Default::default(),
        }
    }

    /// Waits until `done` holds for the statuses, re-checking on every change.
    async fn wait_until(
        &self,
        what: &str,
        limit: Duration,
        done: impl Fn(&[PodStatus]) -> bool,
    ) -> Vec<PodStatus> {
        let mut changes = self.manager.changes();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let statuses = self.manager.statuses();
            if done(&statuses) {
                return statuses;
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                panic!("timed out waiting for {what}; statuses: {statuses:#?}");
            }
        }
    }

    async fn wait_for_phase(&self, uid: &str, phase: PodPhase) -> PodStatus {
        let statuses = self
            .wait_until(
                &format!("{uid} to be {phase:?}"),
                Duration::from_secs(20),
                |s| pod(s, uid).is_some_and(|p| p.phase == phase),
            )
            .await;
        pod(&statuses, uid).cloned().expect("pod present")
    }

    /// Stops every pod, as an agent shutdown does; statuses and logs stay readable.
    async fn stop(&self) {
        self.shutdown.cancel();
        self.tracker.close();
        tokio::time::timeout(Duration::from_secs(2), self.tracker.wait())
            .await
            .expect("every pod task ends on shutdown");
    }
}

fn assignment(uid: &str, policy: RestartPolicy, containers: Vec<ContainerSpec>) -> PodAssignment {
    PodAssignment {
        config: Default::default(),
        network: None,
        uid: uid.into(),
        namespace: "default".into(),
        name: format!("pod-{uid}"),
        restart_policy: policy,
        containers,
    }
}

fn pod<'a>(statuses: &'a [PodStatus], uid: &str) -> Option<&'a PodStatus> {
    statuses.iter().find(|p| p.uid == uid)
}

fn terminated(status: &PodStatus) -> (i32, String, String) {
    match &status.containers[0].state {
        ContainerState::Terminated {
            exit_code,
            reason,
            message,
            ..
        } => (*exit_code, reason.clone(), message.clone()),
        other => panic!("container not terminated: {other:?}"),
    }
}

/// The current run's lines of container `main`.
fn lines(node: &Node, uid: &str) -> Vec<String> {
    selected(node, uid, &LogSelection::default())
}

/// The previous run's lines of container `main` (`kubectl logs --previous`).
fn previous_lines(node: &Node, uid: &str) -> Vec<String> {
    let previous = LogSelection {
        previous: true,
        ..LogSelection::default()
    };
    selected(node, uid, &previous)
}

fn selected(node: &Node, uid: &str, selection: &LogSelection) -> Vec<String> {
    let stream = node.manager.logs(uid, "main", selection).expect("logs");
    texts(&stream.lines)
}

fn texts(lines: &[LogLine]) -> Vec<String> {
    lines.iter().map(|l| l.text.to_string()).collect()
}

/// The last `n` lines, then the lines that follow them.
fn following(n: usize) -> LogSelection {
    LogSelection {
        tail: Some(n),
        follow: true,
        ..LogSelection::default()
    }
}

/// Waits until exactly `n` container instances are alive (a container is reported
/// Running just before its instance is created).
async fn wait_for_live_instances(node: &Node, n: usize) {
    let start = Instant::now();
    while node.runtime.live_instances() != n {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{} live instances, expected {n}",
            node.runtime.live_instances()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn hello_prints_its_arguments_and_greeting_and_succeeds() {
    let node = Node::start(Duration::from_millis(10));
    let mut hello = node.container("hello", &["first", "second"]);
    hello.env = vec![("GREETING".into(), "good morning".into())];
    node.manager
        .apply(vec![assignment("hello", RestartPolicy::Never, vec![hello])]);

    let status = node.wait_for_phase("hello", PodPhase::Succeeded).await;

    assert_eq!(terminated(&status), (0, "Completed".into(), String::new()));
    assert_eq!(
        lines(&node, "hello"),
        ["hello from wasmfleet", "first", "second", "good morning"]
    );
    assert!(status.start_unix_ms.is_some());
    node.stop().await;
}

#[tokio::test]
async fn a_non_zero_exit_under_never_fails_the_pod_with_that_code() {
    let node = Node::start(Duration::from_millis(10));
    let exit = node.container("exerciser", &["exit", "3"]);
    node.manager
        .apply(vec![assignment("exit", RestartPolicy::Never, vec![exit])]);

    let status = node.wait_for_phase("exit", PodPhase::Failed).await;

    assert_eq!(terminated(&status), (3, "Error".into(), String::new()));
    assert_eq!(status.containers[0].restart_count, 0);
    assert_eq!(lines(&node, "exit"), ["exiting with 3"]);
    node.stop().await;
}

#[tokio::test]
async fn on_failure_restarts_a_failing_container_with_a_growing_restart_count() {
    let node = Node::start(Duration::from_millis(20));
    let exit = node.container("exerciser", &["exit", "3"]);
    node.manager.apply(vec![assignment(
        "crash",
        RestartPolicy::OnFailure,
        vec![exit],
    )]);

    let statuses = node
        .wait_until("three restarts", Duration::from_secs(20), |s| {
            pod(s, "crash").is_some_and(|p| p.containers[0].restart_count >= 3)
        })
        .await;

    let status = pod(&statuses, "crash").expect("pod");
    assert_eq!(status.phase, PodPhase::Running);
    assert!(matches!(
        status.containers[0].last_state,
        Some(ContainerState::Terminated { exit_code: 3, .. })
    ));
    // `logs` shows the current run (empty until it prints), `--previous` the one before.
    assert!(lines(&node, "crash").len() <= 1);
    assert_eq!(previous_lines(&node, "crash"), ["exiting with 3"]);
    node.stop().await;
}

#[tokio::test]
async fn a_trap_terminates_the_container_with_an_error_naming_the_trap() {
    let node = Node::start(Duration::from_millis(10));
    let trap = node.container("exerciser", &["trap"]);
    node.manager
        .apply(vec![assignment("trap", RestartPolicy::Never, vec![trap])]);

    let status = node.wait_for_phase("trap", PodPhase::Failed).await;

    let (code, reason, message) = terminated(&status);
    assert_eq!((code, reason.as_str()), (1, "Error"));
    assert!(message.contains("unreachable"), "message: {message}");
    node.stop().await;
}

#[tokio::test]
async fn exceeding_the_memory_limit_is_oom_killed_while_a_neighbour_keeps_running() {
    let node = Node::start(Duration::from_millis(10));
    let mut hog = node.container("exerciser", &["alloc", "64"]);
    hog.memory_limit_bytes = Some(32 << 20);
    let neighbour = node.container("exerciser", &["sleep", "60000"]);
    let neighbour = assignment("neighbour", RestartPolicy::Never, vec![neighbour]);
    // The neighbour runs first (its module compiles before the hog's would), so the check
    // below sees the same run going on, not one that had not started yet.
    node.manager.apply(vec![neighbour.clone()]);
    let running = node.wait_for_phase("neighbour", PodPhase::Running).await;
    node.manager.apply(vec![
        neighbour,
        assignment("hog", RestartPolicy::Never, vec![hog]),
    ]);

    let status = node.wait_for_phase("hog", PodPhase::Failed).await;

    let (code, reason, _) = terminated(&status);
    assert_eq!((code, reason.as_str()), (137, "OOMKilled"));
    let progress = lines(&node, "hog");
    assert!(
        progress.iter().any(|l| l == "allocated 16 MiB"),
        "{progress:?}"
    );
    assert!(!progress.iter().any(|l| l == "done"), "{progress:?}");
    let statuses = node.manager.statuses();
    let after = pod(&statuses, "neighbour").expect("the neighbour is still there");
    assert_eq!(after.phase, PodPhase::Running);
    assert_eq!(
        after.containers, running.containers,
        "the same run, not restarted"
    );
    wait_for_live_instances(&node, 1).await;
    node.stop().await;
}

// One tokio thread: the print pod only makes progress if the spinning guest yields.
#[tokio::test(flavor = "current_thread")]
async fn a_spinning_guest_does_not_starve_a_printing_neighbour() {
    let node = Node::start(Duration::from_millis(10));
    let spin = node.container("exerciser", &["spin", "3000"]);
    let print = node.container("exerciser", &["print", "10"]);
    node.manager.apply(vec![
        assignment("spin", RestartPolicy::Never, vec![spin]),
        assignment("print", RestartPolicy::Never, vec![print]),
    ]);
    node.wait_until("both running", Duration::from_secs(20), |s| {
        s.iter().all(|p| p.phase == PodPhase::Running) && s.len() == 2
    })
    .await;
    let started = Instant::now();

    node.wait_for_phase("print", PodPhase::Succeeded).await;

    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(2000),
        "print took {took:?} beside the spinner"
    );
    assert_eq!(lines(&node, "print").len(), 10);
    let statuses = node.manager.statuses();
    assert_eq!(
        pod(&statuses, "spin").map(|p| p.phase),
        Some(PodPhase::Running)
    );
    node.stop().await;
}

#[tokio::test]
async fn a_cpu_limited_guest_still_runs_to_completion() {
    let node = Node::start(Duration::from_millis(10));
    let mut spin = node.container("exerciser", &["spin", "300"]);
    spin.cpu_limit_millis = Some(100);
    node.manager.apply(vec![assignment(
        "limited",
        RestartPolicy::Never,
        vec![spin],
    )]);

    node.wait_for_phase("limited", PodPhase::Succeeded).await;

    assert_eq!(lines(&node, "limited"), ["spun 300 ms"]);
    node.stop().await;
}

#[tokio::test]
async fn removing_a_pod_drops_its_sleeping_instance_within_a_second() {
    let node = Node::start(Duration::from_millis(10));
    let sleeper = node.container("exerciser", &["sleep", "60000"]);
    node.manager.apply(vec![assignment(
        "sleeper",
        RestartPolicy::Always,
        vec![sleeper],
    )]);
    node.wait_for_phase("sleeper", PodPhase::Running).await;
    let mut follow = node
        .manager
        .logs("sleeper", "main", &following(10))
        .expect("logs");
    wait_for_live_instances(&node, 1).await;

    let removed = Instant::now();
    node.manager.apply(vec![]);
    while node.runtime.live_instances() > 0 {
        assert!(
            removed.elapsed() < Duration::from_secs(1),
            "instance still alive"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    assert!(node.manager.statuses().is_empty());
    let end = tokio::time::timeout(Duration::from_secs(1), follow.next_line()).await;
    assert_eq!(end, Ok(None), "a follow ends when its pod is removed");
    node.stop().await;
}

#[tokio::test]
async fn a_p2_component_prints_and_succeeds() {
    let node = Node::start(Duration::from_millis(10));
    let print = node.container("exerciser-p2", &["print", "3"]);
    node.manager
        .apply(vec![assignment("p2", RestartPolicy::Never, vec![print])]);

    let status = node.wait_for_phase("p2", PodPhase::Succeeded).await;

    assert_eq!(terminated(&status).0, 0);
    assert_eq!(lines(&node, "p2"), ["line 1", "line 2", "line 3"]);
    node.stop().await;
}

#[tokio::test]
async fn a_p2_component_exiting_non_zero_fails_with_code_1() {
    let node = Node::start(Duration::from_millis(10));
    let exit = node.container("exerciser-p2", &["exit", "3"]);
    node.manager.apply(vec![assignment(
        "p2-exit",
        RestartPolicy::Never,
        vec![exit],
    )]);

    let status = node.wait_for_phase("p2-exit", PodPhase::Failed).await;

    // wasi:cli/exit@0.2 carries only ok/err.
    assert_eq!(terminated(&status), (1, "Error".into(), String::new()));
    assert_eq!(lines(&node, "p2-exit"), ["exiting with 3"]);
    node.stop().await;
}

#[tokio::test]
async fn garbage_bytes_leave_the_container_waiting_with_a_clear_error() {
    let node = Node::start(Duration::from_millis(10));
    let garbage = node.container("garbage", &[]);
    node.manager.apply(vec![assignment(
        "garbage",
        RestartPolicy::Never,
        vec![garbage],
    )]);

    let statuses = node
        .wait_until("a waiting error", Duration::from_secs(10), |s| {
            pod(s, "garbage").is_some_and(|p| {
                matches!(&p.containers[0].state, ContainerState::Waiting { reason, .. } if reason == "CreateContainerError")
            })
        })
        .await;

    let status = pod(&statuses, "garbage").expect("pod");
    assert_eq!(status.phase, PodPhase::Pending);
    let ContainerState::Waiting { message, .. } = &status.containers[0].state else {
        unreachable!()
    };
    assert!(message.contains("not a WebAssembly module"), "{message}");
    node.stop().await;
}

#[tokio::test]
async fn an_unfetchable_module_waits_as_err_module_pull_and_is_retried() {
    let node = Node::start(Duration::from_millis(10));
    let mut missing = node.container("hello", &[]);
    missing.module.digest = "00".repeat(32);
    node.manager.apply(vec![assignment(
        "missing",
        RestartPolicy::Never,
        vec![missing],
    )]);

    let statuses = node
        .wait_until("an ErrModulePull", Duration::from_secs(10), |s| {
            pod(s, "missing").is_some_and(|p| {
                matches!(&p.containers[0].state, ContainerState::Waiting { reason, .. } if reason == "ErrModulePull")
            })
        })
        .await;
    let ContainerState::Waiting { message, .. } =
        &pod(&statuses, "missing").expect("pod").containers[0].state
    else {
        unreachable!()
    };
    assert!(message.contains("no module with digest"), "{message}");

    // Retries keep bumping the change counter (10 ms, 20 ms, 40 ms, ...).
    let mut changes = node.manager.changes();
    changes.borrow_and_update();
    tokio::time::timeout(Duration::from_secs(2), changes.changed())
        .await
        .expect("the fetch is retried")
        .expect("manager alive");
    node.stop().await;
}

#[tokio::test]
async fn a_follower_gets_the_tail_then_new_lines_until_the_container_ends() {
    let node = Node::start(Duration::from_millis(10));
    let print = node.container("exerciser", &["print", "5"]);
    node.manager.apply(vec![assignment(
        "follow",
        RestartPolicy::Never,
        vec![print],
    )]);
    node.wait_until("the first line", Duration::from_secs(20), |_| {
        !lines(&node, "follow").is_empty()
    })
    .await;

    let mut stream = node
        .manager
        .logs("follow", "main", &following(1))
        .expect("logs");
    let mut seen = texts(&stream.lines);
    while let Some(line) = tokio::time::timeout(Duration::from_secs(5), stream.next_line())
        .await
        .expect("the follow ends by itself")
    {
        seen.push(line.text.to_string());
    }

    assert_eq!(seen.last().map(String::as_str), Some("line 5"));
    assert!(seen.len() >= 2 && seen.len() <= 5, "{seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "in order, no repeats: {seen:?}"
    );
    let all = LogSelection::default();
    assert!(node.manager.logs("follow", "other", &all).is_err());
    assert!(node.manager.logs("nope", "main", &all).is_err());
    node.stop().await;
}

#[tokio::test]
async fn a_restored_finished_pod_is_not_run_again_and_an_unfinished_one_restarts() {
    let node = Node::start(Duration::from_millis(10));
    let done = assignment(
        "done",
        RestartPolicy::Never,
        vec![node.container("hello", &[])],
    );
    let busy = assignment(
        "busy",
        RestartPolicy::Always,
        vec![node.container("exerciser", &["sleep", "60000"])],
    );
    node.manager.apply(vec![done.clone(), busy.clone()]);
    node.wait_until("done and busy", Duration::from_secs(20), |s| {
        pod(s, "done").is_some_and(|p| p.phase == PodPhase::Succeeded)
            && pod(s, "busy").is_some_and(|p| p.phase == PodPhase::Running)
    })
    .await;
    let before = node.manager.statuses();
    node.stop().await;

    let node = Node::start(Duration::from_millis(10));
    node.manager.restore(before.clone());
    node.manager.apply(vec![done, busy]);
    let statuses = node
        .wait_until("busy running again", Duration::from_secs(20), |s| {
            pod(s, "busy")
                .is_some_and(|p| matches!(p.containers[0].state, ContainerState::Running { .. }))
        })
        .await;
    let busy_status = pod(&statuses, "busy").expect("pod");

    assert_eq!(pod(&node.manager.statuses(), "done"), pod(&before, "done"));
    assert!(
        lines(&node, "done").is_empty(),
        "the finished pod did not run again"
    );
    assert_eq!(busy_status.containers[0].restart_count, 1);
    assert!(matches!(
        &busy_status.containers[0].last_state,
        Some(ContainerState::Terminated { reason, .. }) if reason == "Unknown"
    ));
    wait_for_live_instances(&node, 1).await;
    node.stop().await;
}

/// Polls until the log of `uid` satisfies `done` (log lines do not bump `changes`).
async fn wait_for_lines(node: &Node, uid: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let start = Instant::now();
    loop {
        let lines = lines(node, uid);
        if done(&lines) {
            return lines;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for the log of {uid}: {lines:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

#[tokio::test]
async fn persisted_logs_survive_an_agent_restart_and_the_rerun_is_the_next_run() {
    let data = tempfile::tempdir().expect("temp dir");
    let log_dir = data.path().join("logs");
    let node = Node::start_with(Duration::from_millis(10), Some(log_dir.clone()));
    let done = assignment(
        "done",
        RestartPolicy::Never,
        vec![node.container("hello", &["a", "b"])],
    );
    let busy = assignment(
        "busy",
        RestartPolicy::Always,
        vec![node.container("exerciser", &["print", "1000"])],
    );
    node.manager.apply(vec![done.clone(), busy.clone()]);
    node.wait_for_phase("done", PodPhase::Succeeded).await;
    wait_for_lines(&node, "busy", |l| l.len() >= 2).await;
    node.stop().await;
    let before = node.manager.statuses();
    let busy_before = lines(&node, "busy");
    drop(node);
    assert!(log_dir.join("done/main.log").is_file());

    let node = Node::start_with(Duration::from_millis(10), Some(log_dir.clone()));
    node.manager.restore(before);
    node.manager.apply(vec![done, busy]);

    assert_eq!(lines(&node, "done"), ["hello from wasmfleet", "a", "b"]);
    let follow = node
        .manager
        .logs("done", "main", &following(1))
        .expect("logs");
    assert_eq!(texts(&follow.lines), ["b"]);
    assert!(!follow.is_following(), "a finished pod's log has ended");
    let busy_after = wait_for_lines(&node, "busy", |l| !l.is_empty()).await;
    assert_eq!(busy_after[0], "line 1", "the rerun is a new run");
    assert_eq!(
        previous_lines(&node, "busy"),
        busy_before,
        "the run before the agent restarted is the previous one"
    );
    node.stop().await;
}

#[tokio::test]
async fn a_persisted_log_is_rotated_and_keeps_its_newest_lines() {
    let data = tempfile::tempdir().expect("temp dir");
    let log_dir = data.path().join("logs");
    let node = Node::start_with(Duration::from_millis(10), Some(log_dir.clone()));
    // 150 lines of 15,000 bytes: 2.25 MB, more than both segments hold.
    let args: Vec<String> = (0..150)
        .map(|i| format!("{i:04}{}", "x".repeat(14_996)))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let chatty = assignment(
        "chatty",
        RestartPolicy::Never,
        vec![node.container("hello", &args)],
    );
    node.manager.apply(vec![chatty.clone()]);
    node.wait_for_phase("chatty", PodPhase::Succeeded).await;
    node.stop().await;
    let before = node.manager.statuses();
    let in_memory = lines(&node, "chatty");
    drop(node);

    let log = log_dir.join("chatty/main.log");
    let previous = log_dir.join("chatty/main.log.1");
    assert!(file_size(&previous) > 0, "rotated");
    assert!(file_size(&log) <= LOG_FILE_SEGMENT_BYTES);
    assert!(file_size(&previous) <= LOG_FILE_SEGMENT_BYTES);

    let node = Node::start_with(Duration::from_millis(10), Some(log_dir));
    node.manager.restore(before);
    node.manager.apply(vec![chatty]);
    let reloaded = lines(&node, "chatty");
    assert_eq!(reloaded.len(), MAX_BUFFER_BYTES / 15_000);
    assert_eq!(
        reloaded, in_memory,
        "the same newest lines as before the restart"
    );
    assert!(reloaded.last().is_some_and(|l| l.starts_with("0149")));
    node.stop().await;
}

#[tokio::test]
async fn removing_a_pod_deletes_its_logs_and_a_restart_deletes_logs_of_pods_gone_meanwhile() {
    let data = tempfile::tempdir().expect("temp dir");
    let log_dir = data.path().join("logs");
    std::fs::create_dir_all(log_dir.join("stale")).expect("mkdir");
    std::fs::write(log_dir.join("stale/main.log"), "old\n").expect("write");
    std::fs::create_dir_all(log_dir.join("restored")).expect("mkdir");
    let node = Node::start_with(Duration::from_millis(10), Some(log_dir.clone()));
    node.manager.restore(vec![PodStatus {
        uid: "restored".into(),
        phase: PodPhase::Succeeded,
        start_unix_ms: Some(1),
        containers: vec![],
    }]);
    let hello = assignment(
        "hello",
        RestartPolicy::Never,
        vec![node.container("hello", &[])],
    );
    // The set the earlier agent process persisted.
    node.manager.resume(vec![hello]);
    node.wait_for_phase("hello", PodPhase::Succeeded).await;
    assert!(log_dir.join("hello/main.log").is_file());
    assert!(!log_dir.join("stale").exists(), "not on the node any more");
    assert!(log_dir.join("restored").exists(), "may still be applied");

    node.manager.apply(vec![]);

    assert!(!log_dir.join("hello").exists());
    assert!(
        !log_dir.join("restored").exists(),
        "the server's set does not list it: it left the node"
    );
    node.stop().await;
}

/// Found by the chaos tests: an agent killed after it saved a set without pod P, before it
/// stopped P and saved the statuses, restores P's status; the server's sets never list P
/// again, and P's logs stayed on the node for ever (the restored status too).
#[tokio::test]
async fn a_restored_pod_the_servers_set_does_not_list_is_forgotten_with_its_logs() {
    let data = tempfile::tempdir().expect("temp dir");
    let log_dir = data.path().join("logs");
    std::fs::create_dir_all(log_dir.join("gone")).expect("mkdir");
    std::fs::write(log_dir.join("gone/main.log"), "line 1\n").expect("write");
    let node = Node::start_with(Duration::from_millis(10), Some(log_dir.clone()));
    node.manager.restore(vec![PodStatus {
        uid: "gone".into(),
        phase: PodPhase::Succeeded,
        start_unix_ms: Some(1),
        containers: vec![],
    }]);
    node.manager.resume(vec![]);
    assert!(
        log_dir.join("gone").exists(),
        "the server's set may list it"
    );

    let hello = assignment(
        "hello",
        RestartPolicy::Never,
        vec![node.container("hello", &[])],
    );
    node.manager.apply(vec![hello]);
    node.wait_for_phase("hello", PodPhase::Succeeded).await;

    assert!(!log_dir.join("gone").exists(), "its logs outlived it");
    assert!(pod(&node.manager.statuses(), "gone").is_none());
    node.stop().await;
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// One thread, so the thread-local subscriber sees the container's warnings.
#[tokio::test(flavor = "current_thread")]
async fn an_unwritable_log_dir_leaves_logs_in_memory_with_a_warning() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let data = tempfile::tempdir().expect("temp dir");
    let not_a_dir = data.path().join("file");
    std::fs::write(&not_a_dir, b"").expect("write");
    let node = Node::start_with(Duration::from_millis(10), Some(not_a_dir.join("logs")));
    let hello = assignment(
        "hello",
        RestartPolicy::Never,
        vec![node.container("hello", &["x"])],
    );

    node.manager.apply(vec![hello]);
    node.wait_for_phase("hello", PodPhase::Succeeded).await;

    assert_eq!(lines(&node, "hello"), ["hello from wasmfleet", "x"]);
    let output = String::from_utf8_lossy(&captured.0.lock().expect("lock")).into_owned();
    assert!(
        output.contains("WARN") && output.contains("keeping this log in memory only"),
        "{output}"
    );
    node.stop().await;
}

/// Two long-running containers, `c1` and `c2`.
fn two_sleepers(node: &Node) -> Vec<ContainerSpec> {
    ["c1", "c2"]
        .into_iter()
        .map(|name| ContainerSpec {
            name: name.into(),
            ..node.container("exerciser", &["sleep", "600000"])
        })
        .collect()
}

#[tokio::test]
async fn a_new_image_whose_module_cannot_be_had_ends_only_that_container_and_names_no_new_image() {
    let node = Node::start(Duration::from_secs(60));
    let containers = two_sleepers(&node);
    node.manager.apply(vec![assignment(
        "img",
        RestartPolicy::Always,
        containers.clone(),
    )]);
    let running = node.wait_for_phase("img", PodPhase::Running).await;
    wait_for_live_instances(&node, 2).await;
    let c1_before = running.containers[0].clone();

    let mut changed = containers.clone();
    changed[1].image = "exerciser:missing".into();
    changed[1].module.digest = "00".repeat(32);
    node.manager
        .apply(vec![assignment("img", RestartPolicy::Always, changed)]);

    let statuses = node
        .wait_until("c2 to wait for its module", Duration::from_secs(10), |s| {
            pod(s, "img").is_some_and(|p| {
                matches!(&p.containers[1].state, ContainerState::Waiting { reason, .. } if reason == "ErrModulePull")
            })
        })
        .await;
    let status = pod(&statuses, "img").expect("pod");
    assert_eq!(status.containers[0], c1_before, "c1 keeps its run");
    let c2 = &status.containers[1];
    assert_eq!(c2.restart_count, 0, "no run on the new image yet");
    assert!(
        matches!(
            &c2.last_state,
            Some(ContainerState::Terminated { exit_code: 137, .. })
        ),
        "{c2:?}"
    );
    wait_for_live_instances(&node, 1).await;
    let (_, images) = node.manager.report();
    let c2_image = &images[0].containers[1];
    assert_eq!(
        (c2_image.image.as_str(), c2_image.digest.as_str()),
        ("exerciser:test", containers[1].module.digest.as_str()),
        "status names the image of c2's last run, not one that never ran"
    );

    // Back to the old image: c2 runs again at once, without waiting out the back-off.
    node.manager
        .apply(vec![assignment("img", RestartPolicy::Always, containers)]);
    let statuses = node
        .wait_until("c2 to run again", Duration::from_secs(10), |s| {
            pod(s, "img")
                .is_some_and(|p| matches!(p.containers[1].state, ContainerState::Running { .. }))
        })
        .await;
    let status = pod(&statuses, "img").expect("pod");
    assert_eq!(status.containers[1].restart_count, 1);
    assert_eq!(status.containers[0], c1_before, "c1 still keeps its run");
    node.stop().await;
}
