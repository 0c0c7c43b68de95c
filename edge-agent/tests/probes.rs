//! Probes in the real runtime: `tcp-echo` pods (wasm32-wasip2, listening through the
//! wrapped `wasi:sockets` on their loopback alias) probed by the pod manager's prober over
//! real sockets. Each test uses its own pod IPs, so their aliases never collide.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wasmfleet_agent::pods::{ModuleSource, PodManager, PodManagerConfig};
use wasmfleet_agent::runtime::{LogSelection, Runtime};
use wasmfleet_protocol::network::{ClusterCidr, PodNetwork};
use wasmfleet_protocol::pod::probe::{PodEvent, PodEventKind};
use wasmfleet_protocol::pod::{
    ContainerSpec, ContainerState, ModuleRef, PodAssignment, PodStatus, Probe, ProbeAction,
    ProbeKind, Probes, RestartPolicy,
};

fn tcp_echo() -> (PathBuf, ModuleRef) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workloads/dist/tcp-echo.wasm");
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run workloads/build first)", path.display()));
    let module = ModuleRef {
        digest: hex::encode(Sha256::digest(&bytes)),
        size: bytes.len() as u64,
    };
    (path, module)
}

/// The one module these tests run, from `workloads/dist`.
struct OneModule(PathBuf);

impl ModuleSource for OneModule {
    fn fetch(
        &self,
        _module: &ModuleRef,
    ) -> Pin<Box<dyn Future<Output = Result<PathBuf, String>> + Send + 'static>> {
        let path = self.0.clone();
        Box::pin(async move { Ok(path) })
    }
}

/// A pod manager with fast restarts, its probe events, and the tcp-echo module.
struct Node {
    manager: PodManager,
    events: mpsc::Receiver<PodEvent>,
    module: ModuleRef,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (path, module) = tcp_echo();
        let runtime = Runtime::new(dir.path().join("cache")).expect("runtime");
        let shutdown = CancellationToken::new();
        let manager = PodManager::new(
            runtime,
            Arc::new(OneModule(path)),
            PodManagerConfig {
                restart_backoff_base: Duration::from_millis(100),
                ..PodManagerConfig::default()
            },
            shutdown.clone(),
            TaskTracker::new(),
        );
        let events = manager.take_events().expect("the probe events");
        Self {
            manager,
            events,
            module,
            shutdown,
            _dir: dir,
        }
    }

    /// A pod `uid` at `ip` running `tcp-echo ARGS` with `probes`.
    fn pod(&self, uid: &str, ip: &str, args: &[&str], probes: Probes) -> PodAssignment {
        PodAssignment {
            config: Default::default(),
            uid: uid.into(),
            namespace: "default".into(),
            name: format!("pod-{uid}"),
            restart_policy: RestartPolicy::Always,
            containers: vec![ContainerSpec {
                name: "web".into(),
                image: "tcp-echo:test".into(),
                module: self.module.clone(),
                command: vec![],
                args: args.iter().map(|a| a.to_string()).collect(),
                env: vec![],
                memory_limit_bytes: None,
                cpu_limit_millis: None,
                probes,
            }],
            network: Some(PodNetwork {
                ip: ip.parse().expect("ip"),
                cluster_cidr: ClusterCidr::default().net(),
                ports: vec![],
                egress: vec![],
            }),
        }
    }

    /// Waits until `done` holds for the statuses, re-checking on every change.
    async fn wait_until(&self, what: &str, done: impl Fn(&[PodStatus]) -> bool) -> Vec<PodStatus> {
        let mut changes = self.manager.changes();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
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

    /// Collects probe events until `enough` holds for those of pod `uid`.
    async fn events_of(
        &mut self,
        uid: &str,
        enough: impl Fn(&[PodEvent]) -> bool,
    ) -> Vec<PodEvent> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !enough(&seen) {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) if event.uid == uid => seen.push(event),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => panic!("timed out waiting for events of {uid}: {seen:#?}"),
            }
        }
        seen
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn probe(action: ProbeAction, failure_threshold: u32) -> Probe {
    Probe {
        action,
        initial_delay_seconds: 0,
        period_seconds: 1,
        timeout_seconds: 1,
        success_threshold: 1,
        failure_threshold,
    }
}

fn tcp(port: u16) -> ProbeAction {
    ProbeAction::TcpSocket { port }
}

fn readiness(action: ProbeAction) -> Probes {
    Probes {
        readiness: Some(probe(action, 1)),
        ..Probes::default()
    }
}

fn container<'a>(
    statuses: &'a [PodStatus],
    uid: &str,
) -> Option<&'a wasmfleet_protocol::pod::ContainerStatus> {
    statuses.iter().find(|p| p.uid == uid)?.containers.first()
}

fn is_running(statuses: &[PodStatus], uid: &str) -> bool {
    container(statuses, uid).is_some_and(|c| matches!(c.state, ContainerState::Running { .. }))
}

fn is_ready(statuses: &[PodStatus], uid: &str) -> bool {
    container(statuses, uid).is_some_and(|c| c.ready)
}

fn count(events: &[PodEvent], kind: PodEventKind) -> usize {
    events.iter().filter(|e| e.kind == kind).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_follows_a_tcp_probe_of_the_port_the_pod_listens_on() {
    let mut node = Node::start();
    node.manager.apply(vec![
        node.pod("open", "10.42.91.2", &["--port", "7"], readiness(tcp(7))),
        node.pod("closed", "10.42.91.3", &["--port", "7"], readiness(tcp(9))),
    ]);
    node.wait_until("both running", |s| {
        is_running(s, "open") && is_running(s, "closed")
    })
    .await;
    node.wait_until("the probed port to make its pod ready", |s| {
        is_ready(s, "open")
    })
    .await;
    let failures = node
        .events_of("closed", |e| {
            count(e, PodEventKind::ProbeFailed(ProbeKind::Readiness)) >= 2
        })
        .await;
    assert!(
        failures[0].detail.starts_with("dial tcp 10.42.91.3:9: ")
            && failures[0].detail.contains("refused"),
        "the failure names the pod IP and why: {failures:?}"
    );
    let statuses = node.manager.statuses();
    assert!(is_running(&statuses, "closed") && !is_ready(&statuses, "closed"));
    assert_eq!(
        container(&statuses, "closed").map(|c| c.restart_count),
        Some(0),
        "readiness never restarts"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http_probe_sends_a_real_get_and_needs_an_http_answer() {
    let mut node = Node::start();
    let get = |port| ProbeAction::HttpGet {
        port,
        path: "/healthz".into(),
        headers: vec![("X-Probe".into(), "yes".into())],
    };
    node.manager.apply(vec![
        node.pod(
            "http",
            "10.42.92.2",
            &["--port", "8080", "--http"],
            readiness(get(8080)),
        ),
        // An echo server sends the request back: not an HTTP response.
        node.pod(
            "echo",
            "10.42.92.3",
            &["--port", "8080"],
            readiness(get(8080)),
        ),
    ]);
    node.wait_until("the HTTP server to be ready", |s| is_ready(s, "http"))
        .await;
    let following = LogSelection {
        follow: true,
        ..LogSelection::default()
    };
    let mut log = node.manager.logs("http", "web", &following).expect("log");
    let mut seen: Vec<String> = log.lines.iter().map(|l| l.text.to_string()).collect();
    while !seen.iter().any(|l| l.ends_with(" GET /healthz")) {
        match tokio::time::timeout(Duration::from_secs(10), log.next_line()).await {
            Ok(Some(line)) => seen.push(line.text.to_string()),
            _ => panic!("the guest never logged the probe's GET: {seen:?}"),
        }
    }
    let failures = node
        .events_of("echo", |e| {
            count(e, PodEventKind::ProbeFailed(ProbeKind::Readiness)) >= 1
        })
        .await;
    assert!(
        failures[0].detail.contains("malformed HTTP response"),
        "{failures:?}"
    );
    assert!(!is_ready(&node.manager.statuses(), "echo"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_liveness_probe_restarts_the_container_and_says_why() {
    let mut node = Node::start();
    let liveness = Probes {
        liveness: Some(probe(tcp(9), 2)),
        ..Probes::default()
    };
    node.manager.apply(vec![node.pod(
        "sick",
        "10.42.93.2",
        &["--port", "7"],
        liveness,
    )]);
    let statuses = node
        .wait_until("a restart", |s| {
            container(s, "sick").is_some_and(|c| c.restart_count >= 1)
        })
        .await;
    match &container(&statuses, "sick").and_then(|c| c.last_state.clone()) {
        Some(ContainerState::Terminated {
            exit_code, message, ..
        }) => {
            assert_eq!(*exit_code, 137);
            assert_eq!(
                message,
                "Container web failed liveness probe, will be restarted"
            );
        }
        other => panic!("no terminated last state: {other:?}"),
    }
    let events = node
        .events_of("sick", |e| {
            count(e, PodEventKind::Restarting(ProbeKind::Liveness)) >= 1
        })
        .await;
    assert!(
        count(&events, PodEventKind::ProbeFailed(ProbeKind::Liveness)) >= 2,
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_startup_probe_holds_liveness_back_and_restarts_when_it_fails() {
    let mut node = Node::start();
    let probes = Probes {
        startup: Some(probe(tcp(9), 2)),
        liveness: Some(probe(tcp(9), 1)),
        readiness: None,
    };
    node.manager.apply(vec![node.pod(
        "slow",
        "10.42.94.2",
        &["--port", "7"],
        probes,
    )]);
    let events = node
        .events_of("slow", |e| {
            count(e, PodEventKind::Restarting(ProbeKind::Startup)) >= 1
        })
        .await;
    assert_eq!(
        count(&events, PodEventKind::ProbeFailed(ProbeKind::Startup)),
        2
    );
    assert_eq!(
        count(&events, PodEventKind::ProbeFailed(ProbeKind::Liveness)),
        0,
        "{events:?}"
    );
    let statuses = node.manager.statuses();
    assert!(!is_ready(&statuses, "slow"), "not ready before it started");
}
