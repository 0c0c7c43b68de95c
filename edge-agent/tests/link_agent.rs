//! The whole agent (`run`) against a real Mosquitto and a rumqttc client playing the server:
//! birth and heartbeats, desired pods to Succeeded with at-least-once reports, logs,
//! garbage input, broker restarts, and restarts from local state with no server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod link_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use link_support::{Broker, FakeServer, Received, init_tracing, workload};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wasmfleet_agent::config::AgentConfig;
use wasmfleet_agent::runtime::{Runtime, engine_config_for_target};
use wasmfleet_protocol::artifact::{ArtifactOutcome, ArtifactRequest, signed_message};
use wasmfleet_protocol::broker_url::BrokerUrl;
use wasmfleet_protocol::logs::{LogChunk, LogOptions, LogRequest, NodeCommand};
use wasmfleet_protocol::node::NodeState;
use wasmfleet_protocol::pod::{
    ContainerSpec, ContainerState, DesiredPods, ModuleRef, PodAssignment, PodPhase, PodStatus,
    RestartPolicy, StatusAck, StatusReport,
};
use wasmfleet_protocol::topic::{Down, Up};
use wasmfleet_protocol::{MAX_MESSAGE_SIZE, Message};

const NODE: &str = "edge-1";
const WAIT: Duration = Duration::from_secs(20);

/// An agent running in-process with `run`.
struct Agent {
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Agent {
    fn start(broker: &Broker, data_dir: &Path) -> Agent {
        Self::start_with(broker, data_dir, |_| {})
    }

    fn start_with(
        broker: &Broker,
        data_dir: &Path,
        adjust: impl FnOnce(&mut AgentConfig),
    ) -> Agent {
        let mut config = AgentConfig::new(
            BrokerUrl {
                tls: false,
                host: broker.addr.ip().to_string(),
                port: broker.addr.port(),
            },
            "node-token",
            NODE,
        );
        config.data_dir = data_dir.to_owned();
        config.labels = BTreeMap::from([("site".into(), "lab".into())]);
        config.heartbeat_interval = Duration::from_millis(200);
        config.restart_backoff_base = Duration::from_millis(200);
        adjust(&mut config);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(wasmfleet_agent::run::run(config, shutdown.clone()));
        Agent { shutdown, task }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("the agent stops in time")
            .expect("the agent task does not panic")
            .expect("the agent stops cleanly");
    }
}

fn pod(uid: &str, module: &ModuleRef, policy: RestartPolicy, args: &[&str]) -> PodAssignment {
    PodAssignment {
        config: Default::default(),
        network: None,
        uid: uid.into(),
        namespace: "default".into(),
        name: format!("pod-{uid}"),
        restart_policy: policy,
        containers: vec![ContainerSpec {
            name: "main".into(),
            image: "test:v1".into(),
            module: module.clone(),
            command: vec![],
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: vec![],
            memory_limit_bytes: None,
            cpu_limit_millis: None,
            probes: Default::default(),
        }],
    }
}

fn desired(revision: u64, pods: Vec<PodAssignment>) -> Message {
    Message::Desired(DesiredPods { revision, pods }.into())
}

fn births(received: &[Received]) -> Vec<NodeState> {
    received
        .iter()
        .filter_map(|r| match &r.message {
            Message::NodeState(state) if r.kind == Up::State && state.online => Some(state.clone()),
            _ => None,
        })
        .collect()
}

fn reports(received: &[Received]) -> Vec<StatusReport> {
    received
        .iter()
        .filter_map(|r| match &r.message {
            Message::Status(report) => Some(report.clone()),
            _ => None,
        })
        .collect()
}

fn pod_in<'a>(report: &'a StatusReport, uid: &str) -> Option<&'a PodStatus> {
    report.pods.iter().find(|p| p.uid == uid)
}

/// The latest report in which `uid` has `phase`.
fn report_with(received: &[Received], uid: &str, phase: PodPhase) -> Option<StatusReport> {
    reports(received)
        .into_iter()
        .rev()
        .find(|r| pod_in(r, uid).is_some_and(|p| p.phase == phase))
}

fn log_chunks(received: &[Received], request_id: u64) -> Vec<LogChunk> {
    received
        .iter()
        .filter_map(|r| match &r.message {
            Message::LogChunk(chunk) if chunk.request_id == request_id => Some(chunk.clone()),
            _ => None,
        })
        .collect()
}

fn hello(server: &FakeServer) -> ModuleRef {
    server.add_module(std::fs::read(workload("hello")).expect("workloads/dist/hello.wasm"))
}

fn exerciser(server: &FakeServer) -> ModuleRef {
    server.add_module(std::fs::read(workload("exerciser")).expect("workloads/dist/exerciser.wasm"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_publishes_a_retained_birth_with_its_node_info_and_heartbeats() {
    init_tracing();
    let broker = Broker::start();
    let server = FakeServer::connect(broker.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&broker, dir.path());

    let birth = server
        .wait_for("a birth", WAIT, |r| births(r).into_iter().next())
        .await;
    assert!(birth.epoch >= 1);
    let info = birth.info.expect("a birth carries node info");
    assert_eq!(
        info.architecture,
        wasmfleet_agent::node_info::kubernetes_arch(std::env::consts::ARCH)
    );
    assert_eq!(info.operating_system, "linux");
    assert_eq!(info.labels.get("site").map(String::as_str), Some("lab"));
    assert_eq!(info.capacity.pods, 110);
    assert!(info.allocatable.memory_bytes > 0);
    assert!(!info.engine.wasmtime_version.is_empty());

    let heartbeats = server
        .wait_for("two heartbeats", WAIT, |r| {
            let beats: Vec<u64> = r
                .iter()
                .filter_map(|r| match &r.message {
                    Message::Heartbeat(hb) => Some(hb.epoch),
                    _ => None,
                })
                .collect();
            (beats.len() >= 2).then_some(beats)
        })
        .await;
    assert!(heartbeats.iter().all(|epoch| *epoch == birth.epoch));

    // The birth is retained: a server that connects later still sees it.
    let late = FakeServer::connect(broker.addr).await;
    let retained = late
        .wait_for("the retained birth", WAIT, |r| {
            r.iter()
                .find(|r| r.kind == Up::State && r.retained)
                .cloned()
        })
        .await;
    assert!(matches!(
        retained.message,
        Message::NodeState(NodeState { online: true, .. })
    ));

    agent.stop().await;
    // A graceful stop says "offline" itself (the will only fires on a lost connection).
    server
        .wait_for("the offline state", WAIT, |r| {
            r.iter().find(|r| {
                matches!(&r.message, Message::NodeState(s) if !s.online && s.epoch == birth.epoch)
            })
            .cloned()
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_desired_pod_runs_to_succeeded_and_its_report_is_resent_until_acked() {
    init_tracing();
    let broker = Broker::start();
    let server = FakeServer::connect(broker.addr).await;
    let module = hello(&server);
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&broker, dir.path());
    server
        .publish_down(
            NODE,
            Down::Desired,
            &desired(5, vec![pod("p1", &module, RestartPolicy::Never, &["hi"])]),
            true,
        )
        .await;

    let done = server
        .wait_for("p1 Succeeded", WAIT, |r| {
            report_with(r, "p1", PodPhase::Succeeded)
        })
        .await;
    assert_eq!(done.observed_revision, 5);
    let container = &pod_in(&done, "p1").unwrap().containers[0];
    assert!(
        matches!(
            container.state,
            ContainerState::Terminated { exit_code: 0, .. }
        ),
        "{container:?}"
    );

    // Nobody acked: the same report comes again.
    let (epoch, seq) = (done.epoch, done.seq);
    server
        .wait_for("the unacked report again", WAIT, |r| {
            let copies = reports(r)
                .iter()
                .filter(|x| x.epoch == epoch && x.seq == seq)
                .count();
            (copies >= 2).then_some(())
        })
        .await;

    // Acked: it stops (watch for longer than the re-send interval, while heartbeats flow).
    server
        .publish_down(
            NODE,
            Down::Ack,
            &Message::StatusAck(StatusAck { epoch, seq }),
            false,
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.clear();
    let resend = wasmfleet_agent::sync::RESEND_INTERVAL + Duration::from_secs(1);
    tokio::time::sleep(resend).await;
    let received = server.received();
    assert!(
        received
            .iter()
            .any(|r| matches!(r.message, Message::Heartbeat(_)))
    );
    assert!(
        reports(&received).is_empty(),
        "no report after the ack: {:?}",
        reports(&received)
    );

    // The container's output can be read back.
    let request = |request_id, pod_uid: &str| {
        Message::Command(NodeCommand::Logs(LogRequest {
            request_id,
            pod_uid: pod_uid.into(),
            container: "main".into(),
            options: LogOptions::default(),
        }))
    };
    server
        .publish_down(NODE, Down::Cmd, &request(7, "p1"), false)
        .await;
    server
        .publish_down(NODE, Down::Cmd, &request(8, "nope"), false)
        .await;
    let lines = server
        .wait_for("the logs of p1", WAIT, |r| {
            let chunks = log_chunks(r, 7);
            chunks
                .last()
                .is_some_and(|c| c.done)
                .then(|| chunks.into_iter().flat_map(|c| c.lines).collect::<Vec<_>>())
        })
        .await;
    assert_eq!(lines, vec!["hello from wasmfleet".to_owned(), "hi".into()]);
    let unknown = server
        .wait_for("an error for an unknown pod", WAIT, |r| {
            log_chunks(r, 8).pop()
        })
        .await;
    assert!(unknown.done && unknown.error.is_some_and(|e| e.contains("nope")));

    // An older snapshot is ignored.
    server
        .publish_down(
            NODE,
            Down::Desired,
            &desired(4, vec![pod("p-old", &module, RestartPolicy::Never, &[])]),
            true,
        )
        .await;
    server.set_auto_ack(true);
    server
        .publish_down(
            NODE,
            Down::Desired,
            &desired(6, vec![pod("p1", &module, RestartPolicy::Never, &["hi"])]),
            true,
        )
        .await;
    let latest = server
        .wait_for("a report observing revision 6", WAIT, |r| {
            reports(r).into_iter().find(|x| x.observed_revision == 6)
        })
        .await;
    assert!(pod_in(&latest, "p-old").is_none());
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followed_logs_stream_in_batches_until_cancelled() {
    init_tracing();
    let broker = Broker::start();
    let server = FakeServer::connect(broker.addr).await;
    server.set_auto_ack(true);
    let module = exerciser(&server);
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&broker, dir.path());
    server
        .publish_down(
            NODE,
            Down::Desired,
            &desired(
                1,
                vec![pod(
                    "printer",
                    &module,
                    RestartPolicy::Never,
                    &["print", "100000"],
                )],
            ),
            true,
        )
        .await;
    server
        .wait_for("the printer running", WAIT, |r| {
            report_with(r, "printer", PodPhase::Running)
        })
        .await;
    let follow = Message::Command(NodeCommand::Logs(LogRequest {
        request_id: 1,
        pod_uid: "printer".into(),
        container: "main".into(),
        options: LogOptions {
            tail_lines: Some(1),
            follow: true,
            ..LogOptions::default()
        },
    }));
    server.publish_down(NODE, Down::Cmd, &follow, false).await;
    server
        .wait_for("several followed chunks", WAIT, |r| {
            let lines: usize = log_chunks(r, 1).iter().map(|c| c.lines.len()).sum();
            (lines >= 5).then_some(())
        })
        .await;
    let chunks = log_chunks(&server.received(), 1);
    assert!(chunks.iter().all(|c| !c.done && c.error.is_none()));
    let first: Vec<String> = chunks.iter().flat_map(|c| c.lines.clone()).collect();
    let numbers: Vec<u64> = first
        .iter()
        .filter_map(|l| l.strip_prefix("line ").and_then(|n| n.parse().ok()))
        .collect();
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "lines in order, none lost: {first:?}"
    );

    server
        .publish_down(
            NODE,
            Down::Cmd,
            &Message::Command(NodeCommand::CancelLogs { request_id: 1 }),
            false,
        )
        .await;
    server
        .wait_for("the final chunk", WAIT, |r| {
            log_chunks(r, 1).into_iter().find(|c| c.done)
        })
        .await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_down_topics_is_survived() {
    init_tracing();
    let broker = Broker::start();
    let server = FakeServer::connect(broker.addr).await;
    server.set_auto_ack(true);
    let module = hello(&server);
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&broker, dir.path());
    let birth = server
        .wait_for("a birth", WAIT, |r| births(r).into_iter().next())
        .await;

    let mut future_version = wasmfleet_protocol::encode(&desired(9, vec![]));
    future_version[0] = 1;
    let wrong_kind =
        wasmfleet_protocol::encode(&Message::StatusAck(StatusAck { epoch: 1, seq: 1 }));
    let payloads = [
        b"garbage".to_vec(),
        Vec::new(),
        vec![0xff; 12],
        future_version,
        wrong_kind,
        vec![0; MAX_MESSAGE_SIZE + 1],
    ];
    for kind in [Down::Desired, Down::Ack, Down::Blob, Down::Cmd] {
        for payload in &payloads {
            let topic = wasmfleet_protocol::topic::down(NODE, kind);
            server.publish_raw(&topic, payload.clone(), false).await;
        }
    }
    server
        .publish_raw(
            wasmfleet_protocol::topic::SERVER_STATE,
            b"junk".to_vec(),
            true,
        )
        .await;

    // Still connected in the same session, and still doing its job.
    server
        .publish_down(
            NODE,
            Down::Desired,
            &desired(2, vec![pod("p1", &module, RestartPolicy::Never, &[])]),
            true,
        )
        .await;
    let done = server
        .wait_for("p1 Succeeded", WAIT, |r| {
            report_with(r, "p1", PodPhase::Succeeded)
        })
        .await;
    assert_eq!(done.epoch, birth.epoch, "the session survived");
    assert_eq!(births(&server.received()).len(), 1);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_broker_restart_the_agent_reconnects_rebirths_and_reports_again() {
    init_tracing();
    let mut broker = Broker::start();
    let server = FakeServer::connect(broker.addr).await;
    server.set_auto_ack(true);
    let module = hello(&server);
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&broker, dir.path());
    server
        .publish_down(
            NODE,
            Down::Desired,
            &desired(3, vec![pod("p1", &module, RestartPolicy::Never, &[])]),
            true,
        )
        .await;
    let before = server
        .wait_for("p1 Succeeded", WAIT, |r| {
            report_with(r, "p1", PodPhase::Succeeded)
        })
        .await;

    broker.kill();
    broker.spawn();
    drop(server);
    let server = FakeServer::connect(broker.addr).await;
    let birth = server
        .wait_for("a new birth", WAIT, |r| {
            births(r).into_iter().find(|b| b.epoch > before.epoch)
        })
        .await;
    let after = server
        .wait_for("a report in the new session", WAIT, |r| {
            reports(r).into_iter().find(|x| x.epoch == birth.epoch)
        })
        .await;
    assert_eq!(after.observed_revision, 3);
    assert_eq!(
        pod_in(&after, "p1"),
        pod_in(&before, "p1"),
        "the finished pod is reported as it was"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_resumes_its_pods_from_local_state_without_a_server() {
    init_tracing();
    let mut broker = Broker::start();
    let server = FakeServer::connect(broker.addr).await;
    server.set_auto_ack(true);
    let hello = hello(&server);
    let sleeper = exerciser(&server);
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&broker, dir.path());
    let pods = vec![
        pod("once", &hello, RestartPolicy::Never, &[]),
        pod(
            "sleeper",
            &sleeper,
            RestartPolicy::Always,
            &["sleep", "600000"],
        ),
    ];
    server
        .publish_down(NODE, Down::Desired, &desired(8, pods), true)
        .await;
    let before = server
        .wait_for("once Succeeded and sleeper Running", WAIT, |r| {
            report_with(r, "once", PodPhase::Succeeded)
                .filter(|x| pod_in(x, "sleeper").is_some_and(|p| p.phase == PodPhase::Running))
        })
        .await;
    agent.stop().await;
    drop(server);
    broker.kill();

    // No broker, no server: the agent starts its pods from local state alone.
    let agent = Agent::start(&broker, dir.path());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let broker_back = wasmfleet_agent::link::unix_ms();
    broker.spawn();
    let server = FakeServer::connect(broker.addr).await;
    let after = server
        .wait_for("a report with the sleeper running again", WAIT, |r| {
            reports(r)
                .into_iter()
                .find(|x| pod_in(x, "sleeper").is_some_and(|p| p.phase == PodPhase::Running))
        })
        .await;
    assert_eq!(after.observed_revision, 8);
    assert_eq!(
        pod_in(&after, "once"),
        pod_in(&before, "once"),
        "the finished pod did not run again"
    );
    let sleeper = &pod_in(&after, "sleeper").unwrap().containers[0];
    match sleeper.state {
        ContainerState::Running { started_unix_ms } => {
            assert!(
                started_unix_ms < broker_back,
                "started before the broker was back"
            );
        }
        ref other => panic!("sleeper is {other:?}"),
    }
    assert!(after.epoch > before.epoch, "a fresh session epoch");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_comes_back_with_a_new_epoch_gets_a_new_birth_and_report() {
    init_tracing();
    let broker = Broker::start();
    let server = FakeServer::connect(broker.addr).await;
    server.set_auto_ack(true);
    let server_state = |epoch| {
        wasmfleet_protocol::encode(&Message::ServerState(
            wasmfleet_protocol::node::ServerState {
                online: true,
                epoch,
            },
        ))
    };
    let topic = wasmfleet_protocol::topic::SERVER_STATE;
    server.publish_raw(topic, server_state(1), true).await;
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&broker, dir.path());
    let birth = server
        .wait_for("a birth", WAIT, |r| births(r).into_iter().next())
        .await;
    server
        .wait_for("a first report", WAIT, |r| reports(r).into_iter().next())
        .await;

    // The same epoch again (a re-delivered retained state) changes nothing…
    server.publish_raw(topic, server_state(1), true).await;
    // …a new one means the server restarted.
    server.publish_raw(topic, server_state(2), true).await;
    server
        .wait_for("a second birth in the same session", WAIT, |r| {
            let all = births(r);
            (all.len() == 2).then_some(())
        })
        .await;
    let received = server.received();
    assert!(births(&received).iter().all(|b| b.epoch == birth.epoch));
    let second_birth = received
        .iter()
        .rposition(|r| matches!(&r.message, Message::NodeState(s) if s.online))
        .unwrap();
    server
        .wait_for("a report after the second birth", WAIT, |r| {
            r[second_birth..]
                .iter()
                .any(|r| matches!(r.message, Message::Status(_)))
                .then_some(())
        })
        .await;
    assert_eq!(
        births(&server.received()).len(),
        2,
        "only the new epoch caused a birth"
    );
    agent.stop().await;
}

/// The module file and compiled artifacts of `digest` under the agent's data dir.
fn files_of(data_dir: &Path, digest: &str) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for dir in ["modules", "cache"] {
        let Ok(entries) = std::fs::read_dir(data_dir.join(dir)) else {
            continue;
        };
        files.extend(
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(digest))
                .map(|e| e.path()),
        );
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modules_no_pod_uses_are_deleted_from_disk_once_the_cache_is_over_budget() {
    init_tracing();
    let broker = Broker::start();
    let server = FakeServer::connect(broker.addr).await;
    let (hello, exerciser) = (hello(&server), exerciser(&server));
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start_with(&broker, dir.path(), |config| config.module_cache_bytes = 1);

    let first = vec![pod("p1", &hello, RestartPolicy::Never, &[])];
    server
        .publish_down(NODE, Down::Desired, &desired(1, first), true)
        .await;
    server
        .wait_for("p1 Succeeded", WAIT, |r| {
            report_with(r, "p1", PodPhase::Succeeded)
        })
        .await;
    let hello_files = files_of(dir.path(), &hello.digest);
    assert_eq!(hello_files.len(), 2, "module and artifact: {hello_files:?}");

    // p1 is gone, p2 uses another module: hello is no longer used by any pod.
    let second = vec![pod("p2", &exerciser, RestartPolicy::Never, &["exit", "0"])];
    server
        .publish_down(NODE, Down::Desired, &desired(2, second), true)
        .await;
    server
        .wait_for("p2 Succeeded", WAIT, |r| {
            report_with(r, "p2", PodPhase::Succeeded)
        })
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !files_of(dir.path(), &hello.digest).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "hello's files were not deleted: {:?}",
            files_of(dir.path(), &hello.digest)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The module of a pod that is still assigned stays, whatever the budget.
    assert_eq!(files_of(dir.path(), &exerciser.digest).len(), 2);
    agent.stop().await;
}

/// A cluster CA for signing artifacts in tests: its certificate (PEM) and signing key.
struct TestCa {
    cert_pem: String,
    key: ring::signature::EcdsaKeyPair,
}

impl TestCa {
    fn new() -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert_pem = params.self_signed(&key).unwrap().pem();
        let rng = ring::rand::SystemRandom::new();
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &key.serialize_der(),
            &rng,
        )
        .unwrap();
        TestCa { cert_pem, key }
    }

    fn sign(&self, request: &ArtifactRequest, artifact_digest: &str) -> Vec<u8> {
        let message = signed_message(request, artifact_digest);
        let rng = ring::rand::SystemRandom::new();
        self.key.sign(&rng, &message).unwrap().as_ref().to_vec()
    }
}

/// What this host's agent asks for, and hello precompiled for it the way the server does.
fn hello_artifact(module: &ModuleRef) -> (ArtifactRequest, Vec<u8>) {
    let scratch = tempfile::tempdir().unwrap();
    let engine = Runtime::new(scratch.path()).unwrap().engine_info();
    let request = ArtifactRequest {
        module_digest: module.digest.clone(),
        target: engine.target.clone(),
        wasmtime_version: engine.wasmtime_version,
    };
    let config = engine_config_for_target(&engine.target).unwrap();
    let wasm = std::fs::read(workload("hello")).unwrap();
    let artifact = wasmtime::Engine::new(&config)
        .unwrap()
        .precompile_module(&wasm)
        .unwrap();
    (request, artifact)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The agent's cached artifact of `digest`, if any.
fn cached_artifact(data_dir: &Path, digest: &str) -> Option<Vec<u8>> {
    files_of(data_dir, digest)
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .map(|p| std::fs::read(p).unwrap())
}

async fn run_hello_to_success(server: &FakeServer, module: &ModuleRef) {
    let pods = vec![pod("p1", module, RestartPolicy::Never, &[])];
    server
        .publish_down(NODE, Down::Desired, &desired(1, pods), true)
        .await;
    server
        .wait_for("p1 Succeeded", WAIT, |r| {
            report_with(r, "p1", PodPhase::Succeeded)
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_artifact_from_the_server_is_installed_and_run_instead_of_compiling() {
    init_tracing();
    let broker = Broker::start();
    let server = FakeServer::connect(broker.addr).await;
    let module = hello(&server);
    let ca = TestCa::new();
    let (request, artifact) = hello_artifact(&module);
    let blob = server.add_module(artifact.clone());
    let signature = ca.sign(&request, &blob.digest);
    server.offer_artifact(
        &module.digest,
        ArtifactOutcome::Ready {
            artifact: blob.clone(),
            signature,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let cert = ca.cert_pem.clone().into_bytes();
    let agent = Agent::start_with(&broker, dir.path(), |config| config.ca_pem = Some(cert));

    run_hello_to_success(&server, &module).await;
    let asked = server
        .received()
        .iter()
        .any(|r| matches!(&r.message, Message::ArtifactRequest(a) if *a == request));
    assert!(asked, "the agent asked for an artifact for its own target");
    let cached = cached_artifact(dir.path(), &module.digest).expect("an artifact is cached");
    assert_eq!(
        sha256_hex(&cached),
        blob.digest,
        "the server's artifact is what runs"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_or_foreign_signed_artifact_is_refused_and_the_module_compiled_locally() {
    init_tracing();
    let broker = Broker::start();
    let server = FakeServer::connect(broker.addr).await;
    let module = hello(&server);
    let ca = TestCa::new();
    let (request, artifact) = hello_artifact(&module);
    let genuine = server.add_module(artifact.clone());
    let signature = ca.sign(&request, &genuine.digest);

    // Changed code under the genuine signature: the signature does not cover its digest.
    let mut tampered = artifact.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0xff;
    let tampered = server.add_module(tampered);
    server.offer_artifact(
        &module.digest,
        ArtifactOutcome::Ready {
            artifact: tampered.clone(),
            signature,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let cert = ca.cert_pem.clone().into_bytes();
    let agent = Agent::start_with(&broker, dir.path(), |config| config.ca_pem = Some(cert));
    run_hello_to_success(&server, &module).await;
    let cached = cached_artifact(dir.path(), &module.digest).expect("compiled locally");
    assert_ne!(sha256_hex(&cached), tampered.digest);
    let pulled_tampered = server
        .received()
        .iter()
        .any(|r| matches!(&r.message, Message::BlobRequest(b) if b.digest == tampered.digest));
    assert!(
        !pulled_tampered,
        "a bad signature is refused before any download"
    );
    agent.stop().await;

    // Signed, but by another cluster's CA.
    let stranger = TestCa::new();
    server.offer_artifact(
        &module.digest,
        ArtifactOutcome::Ready {
            artifact: tampered.clone(),
            signature: stranger.sign(&request, &tampered.digest),
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let cert = ca.cert_pem.clone().into_bytes();
    let agent = Agent::start_with(&broker, dir.path(), |config| config.ca_pem = Some(cert));
    server.clear();
    run_hello_to_success(&server, &module).await;
    let cached = cached_artifact(dir.path(), &module.digest).expect("compiled locally");
    assert_ne!(sha256_hex(&cached), tampered.digest);
    agent.stop().await;
}

/// Every file under the agent's module and artifact caches.
fn cache_files(data_dir: &Path) -> Vec<(std::path::PathBuf, u64)> {
    ["modules", "cache"]
        .iter()
        .filter_map(|dir| std::fs::read_dir(data_dir.join(dir)).ok())
        .flat_map(|entries| entries.flatten())
        .map(|e| (e.path(), e.metadata().unwrap().len()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_starting_one_new_module_together_share_one_artifact_fetch_and_install() {
    init_tracing();
    let broker = Broker::start();
    let server = FakeServer::connect(broker.addr).await;
    let module = hello(&server);
    let ca = TestCa::new();
    let (request, artifact) = hello_artifact(&module);
    let blob = server.add_module(artifact);
    let signature = ca.sign(&request, &blob.digest);
    server.offer_artifact(
        &module.digest,
        ArtifactOutcome::Ready {
            artifact: blob.clone(),
            signature,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let cert = ca.cert_pem.clone().into_bytes();
    let agent = Agent::start_with(&broker, dir.path(), |config| config.ca_pem = Some(cert));

    let uids = ["p1", "p2", "p3", "p4"];
    let pods = uids
        .iter()
        .map(|uid| pod(uid, &module, RestartPolicy::Never, &[]))
        .collect();
    server
        .publish_down(NODE, Down::Desired, &desired(1, pods), true)
        .await;
    for uid in uids {
        server
            .wait_for(&format!("{uid} Succeeded"), WAIT, |r| {
                report_with(r, uid, PodPhase::Succeeded)
            })
            .await;
    }
    let artifact_requests = server
        .received()
        .iter()
        .filter(|r| matches!(&r.message, Message::ArtifactRequest(a) if *a == request))
        .count();
    assert_eq!(
        artifact_requests, 1,
        "one fetch of the artifact for all pods"
    );
    let cached = cached_artifact(dir.path(), &module.digest).expect("an artifact is cached");
    assert_eq!(
        sha256_hex(&cached),
        blob.digest,
        "the server's artifact runs"
    );
    let files = cache_files(dir.path());
    assert!(
        files.iter().all(|(path, len)| *len > 0
            && !path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".tmp"))),
        "no empty or temporary files are left: {files:?}"
    );
    agent.stop().await;
}
