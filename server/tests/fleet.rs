//! The fleet link end to end: the real embedded broker, a real store in a temp dir, the
//! real `Fleet`, and a rumqttc client acting as a node with the node token.

use std::collections::BTreeMap;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Packet, QoS};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wasmfleet_protocol::artifact::{ArtifactOutcome, ArtifactRequest, verify};
use wasmfleet_protocol::blob::{BlobBody, BlobRequest};
use wasmfleet_protocol::logs::{LogChunk, LogOptions, NodeCommand};
use wasmfleet_protocol::network::ClusterCidr;
use wasmfleet_protocol::node::{EngineInfo, Heartbeat, NodeInfo, NodeState, Resources};
use wasmfleet_protocol::pod::{
    ContainerRef, ContainerState, ContainerStatus, DesiredPods, PodPhase, PodStatus, StatusReport,
};
use wasmfleet_protocol::topic::{self, Up};
use wasmfleet_protocol::{Message, decode, encode};
use wasmfleet_server::artifacts::Artifacts;
use wasmfleet_server::bootstrap;
use wasmfleet_server::broker::auth::{ADMIN_USERNAME, SERVER_USERNAME};
use wasmfleet_server::broker::{BrokerCredentials, EmbeddedBroker};
use wasmfleet_server::controllers::ipam::Ipam;
use wasmfleet_server::controllers::node_lifecycle;
use wasmfleet_server::controllers::runner::{self, RunnerConfig};
use wasmfleet_server::fleet::front_door::{FrontDoor, FrontDoorHandle};
use wasmfleet_server::fleet::{Fleet, FleetConfig, FleetHandle, LogParams, MqttTarget};
use wasmfleet_server::informer::{self, Cache};
use wasmfleet_server::modules::ModuleStore;
use wasmfleet_server::store::{ObjectKey, Store};

mod broker_support;

const WAIT: Duration = Duration::from_secs(10);
const NODE: &str = "pi-1";

struct Cluster {
    _dir: tempfile::TempDir,
    broker: Option<EmbeddedBroker>,
    ca_pem: Vec<u8>,
    store: Store,
    cache: Cache,
    modules: ModuleStore,
    fleet: FleetHandle,
    front_door: FrontDoorHandle,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl Cluster {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path().join("state.redb")).expect("store");
        let modules = ModuleStore::open(&store).expect("modules");
        let (broker, ca_pem) = broker_support::start_broker(
            dir.path(),
            "127.0.0.1:0".parse().expect("addr"),
            credentials(),
            store.clone(),
        )
        .await;
        let mqtt = MqttTarget {
            broker: broker_support::url(broker.local_addr().port()),
            ca_pem: Some(ca_pem.clone()),
            username: SERVER_USERNAME.into(),
            password: "server-password".into(),
        };
        let mut config = FleetConfig::new(mqtt.clone());
        config.node_grace = Duration::from_secs(2);
        config.log_timeout = Duration::from_millis(800);
        let ca_key = bootstrap::load_or_create(dir.path(), &[])
            .expect("the broker's TLS material")
            .tls
            .ca_key_pem;
        config.artifacts = Some(Artifacts::new(modules.clone(), &ca_key).expect("signer"));
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let cache =
            Cache::start(&store, &informer::RESOURCES, shutdown.clone(), &tracker).expect("cache");
        let grace = config.node_grace;
        let fleet = Fleet::start(
            config,
            store.clone(),
            cache.clone(),
            modules.clone(),
            shutdown.clone(),
            &tracker,
        )
        .expect("fleet starts");
        let front_door = FrontDoor::start(
            &mqtt,
            store.clone(),
            modules.clone(),
            wasmfleet_protocol::service::DEFAULT_SERVICE_NET,
            wasmfleet_server::api::auth::Authorizer::new(cache.clone()),
            &shutdown,
            &tracker,
        )
        .expect("front door starts");
        // Pods are delivered once they have their IP: the IPAM controller hands them out.
        tracker.spawn(runner::run(
            Ipam::new(ClusterCidr::default()),
            store.clone(),
            cache.clone(),
            RunnerConfig::default(),
            shutdown.clone(),
        ));
        tracker.spawn(node_lifecycle::run(
            store.clone(),
            cache.clone(),
            fleet.leases().clone(),
            modules.clone(),
            grace,
            shutdown.clone(),
        ));
        Self {
            _dir: dir,
            broker: Some(broker),
            ca_pem,
            store,
            cache,
            modules,
            fleet,
            front_door,
            shutdown,
            tracker,
        }
    }

    fn port(&self) -> u16 {
        self.broker.as_ref().map_or(0, |b| b.local_addr().port())
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        self.tracker.close();
        tokio::time::timeout(WAIT, self.tracker.wait())
            .await
            .expect("fleet tasks stop");
        if let Some(broker) = self.broker.take() {
            broker.shutdown().await;
        }
    }

    fn node(&self) -> Option<Value> {
        self.store
            .get(&ObjectKey::cluster("nodes", NODE))
            .expect("store read")
    }

    fn pod(&self, name: &str) -> Option<Value> {
        self.store
            .get(&ObjectKey::namespaced("pods", "default", name))
            .expect("store read")
    }

    fn create_pod(&self, name: &str, image: &str) -> Value {
        self.store
            .create(
                &ObjectKey::namespaced("pods", "default", name),
                json!({
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": name, "namespace": "default"},
                    "spec": {
                        "nodeName": NODE,
                        "restartPolicy": "Never",
                        "containers": [{"name": "main", "image": image, "args": ["exit", "0"]}]
                    }
                }),
            )
            .expect("pod created")
    }
}

fn credentials() -> BrokerCredentials {
    BrokerCredentials {
        admin_token: "admin-token".into(),
        server_mqtt_password: "server-password".into(),
    }
}

/// A rumqttc client standing in for an agent.
struct FakeNode {
    client: AsyncClient,
    inbox: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    /// Assembles desired sets from every index and pod seen, as the agent does.
    assembler: wasmfleet_agent::link::assembly::Assembler,
    /// Complete desired sets not yet looked at by [`FakeNode::desired`].
    sets: std::collections::VecDeque<DesiredPods>,
}

impl FakeNode {
    async fn connect(port: u16, ca_pem: &[u8]) -> Self {
        let mut options = broker_support::tls_options(NODE, port, ca_pem);
        options
            .set_credentials(NODE, broker_support::NODE_LOGIN)
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (tx, inbox) = mpsc::unbounded_channel();
        let resubscriber = client.clone();
        tokio::spawn(async move {
            let mut connects = 0;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if tx.send((p.topic, p.payload.to_vec())).is_err() {
                            break;
                        }
                    }
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        connects += 1;
                        // A clean session forgets subscriptions: redo them after a reconnect
                        // (the first ones are made by `connect`, before anything is sent).
                        if connects > 1 {
                            let _ = resubscriber
                                .try_subscribe(topic::node_down_filter(NODE), QoS::AtLeastOnce);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        client
            .subscribe(topic::node_down_filter(NODE), QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        client
            .subscribe(topic::SERVER_STATE, QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        Self {
            client,
            inbox,
            assembler: Default::default(),
            sets: Default::default(),
        }
    }

    async fn send(&self, kind: Up, message: &Message) {
        self.raw(kind, encode(message)).await;
    }

    /// Publishes like the agent does: node state retained, so a server that subscribes
    /// later (the broker runs on its own threads, so no ordering is guaranteed) still gets it.
    async fn raw(&self, kind: Up, payload: Vec<u8>) {
        let retain = kind == Up::State;
        self.client
            .publish(topic::up(NODE, kind), QoS::AtLeastOnce, retain, payload)
            .await
            .expect("publish");
    }

    /// Waits for the first message (down to this node) for which `pick` returns something.
    async fn expect<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&str, Message) -> Option<T>,
    ) -> T {
        tokio::time::timeout(WAIT, async {
            loop {
                let (topic, payload) = self.inbox.recv().await.expect("node inbox open");
                let decoded = decode(&payload);
                if let Ok(message) = &decoded {
                    self.assemble(&topic, message.clone());
                }
                if let Ok(message) = decoded
                    && let Some(found) = pick(&topic, message)
                {
                    return found;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }

    fn assemble(&mut self, topic: &str, message: Message) {
        let set = match message {
            Message::DesiredIndex(index) => self.assembler.on_index(index),
            Message::DesiredPodV3(pod) => match topic::parse_node_pod(NODE, topic) {
                Some(uid) => self.assembler.on_pod(uid, pod),
                None => None,
            },
            _ => None,
        };
        self.sets.extend(set);
    }

    /// Waits for a complete desired set (index plus per-pod messages, assembled the way the
    /// agent does) that `accept`s.
    async fn desired(&mut self, mut accept: impl FnMut(&DesiredPods) -> bool) -> DesiredPods {
        loop {
            while let Some(set) = self.sets.pop_front() {
                if accept(&set) {
                    return set;
                }
            }
            self.expect("a desired set", |topic, m| {
                matches!(m, Message::DesiredIndex(_) | Message::DesiredPodV3(_))
                    .then(|| topic.to_owned())
            })
            .await;
        }
    }
}

fn birth(epoch: u64) -> Message {
    Message::NodeState(NodeState {
        epoch,
        online: true,
        info: Some(NodeInfo {
            agent_version: "0.1.0".into(),
            architecture: "amd64".into(),
            operating_system: "linux".into(),
            kernel_version: "6.1.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            hostname: "host-1".into(),
            capacity: Resources {
                memory_bytes: 2 << 30,
                cpu_millis: 2000,
                pods: 50,
            },
            allocatable: Resources {
                memory_bytes: 1 << 30,
                cpu_millis: 2000,
                pods: 50,
            },
            labels: BTreeMap::from([("site".into(), "lab".into())]),
            engine: EngineInfo {
                wasmtime_version: "48.0.8".into(),
                target: "x86_64-unknown-linux-gnu".into(),
                compatibility_key: "00".into(),
                can_compile: true,
            },
            addresses: Vec::new(),
            tunnel: None,
        }),
    })
}

/// A valid empty core module with `len` bytes of padding in a custom section (modules are
/// validated at push).
fn wasm(len: usize) -> Vec<u8> {
    let mut bytes = b"\0asm\x01\0\0\0".to_vec();
    bytes.push(0); // custom section
    let mut size = len + 2; // the name, "x", and the padding
    loop {
        let byte = (size & 0x7f) as u8;
        size >>= 7;
        if size == 0 {
            bytes.push(byte);
            break;
        }
        bytes.push(byte | 0x80);
    }
    bytes.extend_from_slice(&[1, b'x']);
    bytes.extend((0..len).map(|i| (i % 253) as u8));
    bytes
}

/// Polls `check` until it returns something, or fails after [`WAIT`].
async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn ready_status(node: &Value) -> Option<String> {
    node.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["status"].as_str().map(str::to_owned))
}

fn ready_message(node: &Value) -> String {
    node.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
        .to_owned()
}

async fn register(cluster: &Cluster) -> FakeNode {
    let node = FakeNode::connect(cluster.port(), &cluster.ca_pem).await;
    node.send(Up::State, &birth(1)).await;
    eventually("the node to be Ready", || {
        cluster
            .node()
            .filter(|n| ready_status(n).as_deref() == Some("True"))
    })
    .await;
    node
}

#[tokio::test]
async fn a_node_is_born_runs_a_pod_reports_its_status_and_downloads_the_module() {
    let cluster = Cluster::start().await;
    let mut node = register(&cluster).await;
    let stored = cluster.node().expect("node exists");
    assert_eq!(stored["metadata"]["labels"]["kubernetes.io/arch"], "amd64");
    assert_eq!(stored["metadata"]["labels"]["site"], "lab");
    assert_eq!(stored["status"]["allocatable"]["memory"], "1048576Ki");
    assert_eq!(
        stored["status"]["nodeInfo"]["containerRuntimeVersion"],
        "wasmtime://48.0.8"
    );

    // Push a module (three chunks), then bind a pod that uses it.
    let bytes = wasm(600 * 1024);
    let record = cluster
        .modules
        .put("hello", "v1", &bytes)
        .expect("module stored");
    let pod = cluster.create_pod("web", "hello:v1");
    let uid = pod["metadata"]["uid"].as_str().expect("uid").to_owned();
    let desired = node.desired(|d| !d.pods.is_empty()).await;
    assert_eq!(desired.pods[0].uid, uid);
    assert_eq!(desired.pods[0].containers[0].module.digest, record.digest);
    assert_eq!(
        desired.pods[0].containers[0].args,
        vec!["exit".to_owned(), "0".to_owned()]
    );
    assert!(
        desired.revision
            >= pod["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|r| r.parse().ok())
                .unwrap_or(u64::MAX)
    );

    // A status report lands in the pod and is acknowledged.
    let report = StatusReport {
        epoch: 1,
        seq: 5,
        observed_revision: desired.revision,
        pods: vec![PodStatus {
            uid: uid.clone(),
            phase: PodPhase::Running,
            start_unix_ms: Some(1_700_000_000_000),
            containers: vec![ContainerStatus {
                name: "main".into(),
                restart_count: 0,
                state: ContainerState::Running {
                    started_unix_ms: 1_700_000_000_000,
                },
                last_state: None,
                ready: false,
            }],
        }],
        // Its startup probe has not succeeded yet.
        starting: vec![ContainerRef {
            uid: uid.clone(),
            container: "main".into(),
        }],
        images: Vec::new(),
        reasons: Vec::new(),
    };
    node.send(Up::Status, &Message::Status(report)).await;
    let ack = node
        .expect("a status ack", |_, m| match m {
            Message::StatusAck(ack) => Some(ack),
            _ => None,
        })
        .await;
    assert_eq!((ack.epoch, ack.seq), (1, 5));
    let web = cluster.pod("web").expect("pod exists");
    assert_eq!(web["status"]["phase"], "Running");
    assert_eq!(
        web["status"]["containerStatuses"][0]["imageID"],
        format!("sha256:{}", record.digest)
    );
    assert_eq!(web["status"]["containerStatuses"][0]["started"], false);

    // The module comes back in chunks that reassemble to the pushed bytes.
    let request = BlobRequest {
        digest: record.digest.clone(),
        chunks: vec![],
    };
    node.send(Up::BlobRequest, &Message::BlobRequest(request))
        .await;
    let mut chunks = BTreeMap::new();
    while chunks.len() < 3 {
        let (index, data) = node
            .expect("a module chunk", |_, m| match m {
                Message::BlobReply(reply) => match reply.body {
                    BlobBody::Chunk {
                        index,
                        total: 3,
                        data,
                        ..
                    } => Some((index, data)),
                    _ => None,
                },
                _ => None,
            })
            .await;
        chunks.insert(index, data);
    }
    assert_eq!(chunks.into_values().flatten().collect::<Vec<u8>>(), bytes);

    // An unknown digest is answered with NotFound.
    let unknown = BlobRequest {
        digest: "00".repeat(32),
        chunks: vec![0],
    };
    node.send(Up::BlobRequest, &Message::BlobRequest(unknown))
        .await;
    node.expect("NotFound", |_, m| match m {
        Message::BlobReply(reply) if reply.body == BlobBody::NotFound => Some(()),
        _ => None,
    })
    .await;
    cluster.stop().await;
}

#[tokio::test]
async fn garbage_is_dropped_and_later_messages_still_work() {
    let cluster = Cluster::start().await;
    let node = FakeNode::connect(cluster.port(), &cluster.ca_pem).await;
    node.raw(Up::State, vec![0xff; 40]).await;
    node.raw(Up::Status, vec![]).await;
    node.raw(Up::Heartbeat, vec![9, 1, 2, 3]).await; // unknown envelope version
    node.raw(
        Up::Status,
        vec![0; wasmfleet_protocol::MAX_MESSAGE_SIZE + 1],
    )
    .await;
    // A valid message on the wrong topic.
    node.send(
        Up::Status,
        &Message::Heartbeat(Heartbeat {
            epoch: 1,
            unix_ms: 0,
        }),
    )
    .await;
    // A report about a pod that is not bound to this node is acked but changes nothing.
    let stray = StatusReport {
        epoch: 1,
        seq: 1,
        observed_revision: 0,
        pods: vec![PodStatus {
            uid: "not-a-pod".into(),
            phase: PodPhase::Failed,
            start_unix_ms: None,
            containers: vec![],
        }],
        starting: vec![],
        images: Vec::new(),
        reasons: Vec::new(),
    };
    node.send(Up::Status, &Message::Status(stray)).await;
    node.send(Up::State, &birth(1)).await;
    eventually("the node to be Ready after the garbage", || {
        cluster
            .node()
            .filter(|n| ready_status(n).as_deref() == Some("True"))
    })
    .await;
    cluster.stop().await;
}

#[tokio::test]
async fn a_silent_node_becomes_unknown_and_recovers_when_heartbeats_resume() {
    let cluster = Cluster::start().await;
    let node = register(&cluster).await;
    eventually("the node to go Unknown", || {
        cluster
            .node()
            .filter(|n| ready_status(n).as_deref() == Some("Unknown"))
    })
    .await;
    let unknown = cluster.node().expect("node");
    let reason = unknown["status"]["conditions"][0]["reason"].clone();
    assert_eq!(reason, "NodeStatusUnknown");
    node.send(
        Up::Heartbeat,
        &Message::Heartbeat(Heartbeat {
            epoch: 1,
            unix_ms: 0,
        }),
    )
    .await;
    eventually("the node to be Ready again", || {
        cluster
            .node()
            .filter(|n| ready_status(n).as_deref() == Some("True"))
    })
    .await;
    cluster.stop().await;
}

#[tokio::test]
async fn a_will_of_the_current_session_marks_the_node_unknown_and_a_stale_one_does_not() {
    let cluster = Cluster::start().await;
    let node = FakeNode::connect(cluster.port(), &cluster.ca_pem).await;
    node.send(Up::State, &birth(3)).await;
    eventually("the node to be Ready", || {
        cluster
            .node()
            .filter(|n| ready_status(n).as_deref() == Some("True"))
    })
    .await;
    let will = |epoch| {
        Message::NodeState(NodeState {
            epoch,
            online: false,
            info: None,
        })
    };
    node.send(Up::State, &will(2)).await;
    // Followed by a marker we can wait for: the stale will was handled before it.
    let marker = StatusReport {
        epoch: 3,
        seq: 1,
        observed_revision: 0,
        pods: vec![],
        starting: vec![],
        images: Vec::new(),
        reasons: Vec::new(),
    };
    let mut node = node;
    node.send(Up::Status, &Message::Status(marker)).await;
    node.expect("the marker's ack", |_, m| {
        matches!(m, Message::StatusAck(_)).then_some(())
    })
    .await;
    // (The node may already be Unknown for lack of heartbeats on a slow machine, but never
    // because of the stale will.)
    assert!(!ready_message(&cluster.node().expect("node")).contains("disconnected"));
    node.send(Up::State, &will(3)).await;
    eventually("the node to go Unknown as disconnected", || {
        cluster.node().filter(|n| {
            ready_status(n).as_deref() == Some("Unknown")
                && ready_message(n).contains("disconnected")
        })
    })
    .await;
    cluster.stop().await;
}

#[tokio::test]
async fn a_pod_with_an_unknown_module_waits_and_runs_once_the_module_arrives() {
    let cluster = Cluster::start().await;
    let mut node = register(&cluster).await;
    let empty = node.desired(|d| d.pods.is_empty()).await;
    cluster.create_pod("late", "later:v1");
    let waiting = eventually("ErrModuleNotFound", || {
        cluster
            .pod("late")
            .map(|p| p["status"]["containerStatuses"][0]["state"]["waiting"].clone())
            .filter(|w| w["reason"] == "ErrModuleNotFound")
    })
    .await;
    assert!(
        waiting["message"]
            .as_str()
            .is_some_and(|m| m.contains("later:v1"))
    );

    // Upload over MQTT as the admin; the snapshot then includes the pod.
    assert!(cluster.front_door.wait_subscribed().await);
    let mut options = broker_support::tls_options("cli", cluster.port(), &cluster.ca_pem);
    options
        .set_credentials(ADMIN_USERNAME, "admin-token")
        .set_max_packet_size(4 << 20, 4 << 20);
    let (admin, mut admin_loop) = AsyncClient::new(options, 8);
    let bytes = wasm(2 << 20);
    admin
        .publish(
            topic::module_upload("later", "v1"),
            QoS::AtLeastOnce,
            false,
            bytes.clone(),
        )
        .await
        .expect("queue");
    tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(Event::Incoming(Packet::PubAck(_))) = admin_loop.poll().await {
                break;
            }
        }
    })
    .await
    .expect("upload acknowledged");
    let desired = node.desired(|d| !d.pods.is_empty()).await;
    assert!(
        desired.revision > empty.revision,
        "a module arrival moves the revision on"
    );
    let module = &desired.pods[0].containers[0].module;
    assert_eq!(module.size, bytes.len() as u64);
    assert_eq!(
        cluster.modules.read(&module.digest).expect("read"),
        Some(bytes)
    );
    cluster.stop().await;
}

#[tokio::test]
async fn logs_are_requested_from_the_node_and_streamed_back() {
    let cluster = Cluster::start().await;
    let mut node = register(&cluster).await;
    let params = LogParams {
        pod_uid: "u-1".into(),
        container: "main".into(),
        options: LogOptions {
            tail_lines: Some(10),
            ..LogOptions::default()
        },
    };
    let mut logs = cluster
        .fleet
        .logs(NODE, params.clone())
        .await
        .expect("request sent");
    let request = node
        .expect("a log request", |_, m| match m {
            Message::Command(NodeCommand::Logs(request)) => Some(request),
            _ => None,
        })
        .await;
    assert_eq!(request.pod_uid, "u-1");
    assert_eq!(request.options.tail_lines, Some(10));
    for (lines, done) in [
        (vec!["one".to_owned()], false),
        (vec!["two".to_owned()], true),
    ] {
        let chunk = LogChunk {
            request_id: request.request_id,
            lines,
            done,
            error: None,
            times: Vec::new(),
        };
        node.send(Up::Logs, &Message::LogChunk(chunk)).await;
    }
    let mut lines = Vec::new();
    while let Some(chunk) = tokio::time::timeout(WAIT, logs.recv())
        .await
        .expect("stream ends")
    {
        lines.extend(chunk.lines);
    }
    assert_eq!(lines, vec!["one".to_owned(), "two".to_owned()]);

    // No answer: an error chunk after the timeout.
    let mut silent = cluster
        .fleet
        .logs(NODE, params.clone())
        .await
        .expect("request sent");
    let chunk = tokio::time::timeout(WAIT, silent.recv())
        .await
        .expect("timeout chunk in time")
        .expect("a chunk");
    assert!(chunk.done && chunk.error.is_some_and(|e| e.contains("did not answer")));

    // A follow whose reader goes away is cancelled on the node.
    let follow = LogParams {
        options: LogOptions {
            follow: true,
            ..params.options.clone()
        },
        ..params
    };
    let reader = cluster
        .fleet
        .logs(NODE, follow)
        .await
        .expect("request sent");
    let request = node
        .expect("the follow request", |_, m| match m {
            Message::Command(NodeCommand::Logs(r)) if r.options.follow => Some(r),
            _ => None,
        })
        .await;
    let first = LogChunk {
        request_id: request.request_id,
        lines: vec!["live".into()],
        done: false,
        error: None,
        times: Vec::new(),
    };
    node.send(Up::Logs, &Message::LogChunk(first)).await;
    drop(reader);
    let cancelled = node
        .expect("CancelLogs", |_, m| match m {
            Message::Command(NodeCommand::CancelLogs { request_id }) => Some(request_id),
            _ => None,
        })
        .await;
    assert_eq!(cancelled, request.request_id);
    cluster.stop().await;
}

#[tokio::test]
async fn the_server_announces_itself_and_republishes_desired_state_after_a_restart() {
    let cluster = Cluster::start().await;
    let mut node = register(&cluster).await;
    node.expect("the server's presence", |topic, m| match m {
        Message::ServerState(state) if topic == topic::SERVER_STATE => state.online.then_some(()),
        _ => None,
    })
    .await;
    cluster
        .modules
        .put("hello", "v1", &wasm(10))
        .expect("module");
    cluster.create_pod("web", "hello:v1");
    let before = node.desired(|d| d.pods.len() == 1).await;

    // A second fleet link on the same store (a server restart) publishes the snapshot again.
    let port = cluster.port();
    let restarted = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut config = FleetConfig::new(MqttTarget {
        broker: broker_support::url(port),
        ca_pem: Some(cluster.ca_pem.clone()),
        username: SERVER_USERNAME.into(),
        password: "server-password".into(),
    });
    config.client_id = "wasmfleet-server-2".into();
    Fleet::start(
        config,
        cluster.store.clone(),
        cluster.cache.clone(),
        cluster.modules.clone(),
        restarted.clone(),
        &tracker,
    )
    .expect("second fleet starts");
    // The same pods come again, under the same revision or a newer one (a lease written
    // meanwhile moves the store's revision); an agent that holds them changes nothing.
    node.expect("the republished index", |_, m| match m {
        Message::DesiredIndex(index) => {
            (index.revision >= before.revision && index.pods.len() == 1).then_some(())
        }
        _ => None,
    })
    .await;
    restarted.cancel();
    tracker.close();
    tracker.wait().await;
    cluster.stop().await;
}

#[tokio::test]
async fn a_module_upload_that_is_not_wasm_is_refused_and_later_uploads_work() {
    let cluster = Cluster::start().await;
    // Uploads are not retained: make sure the front door is subscribed before sending any.
    assert!(cluster.front_door.wait_subscribed().await);
    let mut options = broker_support::tls_options("cli", cluster.port(), &cluster.ca_pem);
    options.set_credentials(ADMIN_USERNAME, "admin-token");
    let (admin, mut admin_loop) = AsyncClient::new(options, 8);
    let admin_task = tokio::spawn(async move { while admin_loop.poll().await.is_ok() {} });
    admin
        .publish(
            topic::module_upload("bad", "v1"),
            QoS::AtLeastOnce,
            false,
            b"#!/bin/sh".to_vec(),
        )
        .await
        .expect("queue");
    admin
        .publish(
            topic::module_upload("good", "v1"),
            QoS::AtLeastOnce,
            false,
            wasm(100),
        )
        .await
        .expect("queue");
    eventually("the good module", || {
        cluster.modules.resolve("good:v1").expect("resolve")
    })
    .await;
    assert_eq!(cluster.modules.resolve("bad:v1").expect("resolve"), None);
    admin_task.abort();
    cluster.stop().await;
}

#[tokio::test]
async fn after_a_broker_restart_the_fleet_reconnects_and_republishes_desired_state() {
    let mut cluster = Cluster::start().await;
    let mut node = register(&cluster).await;
    cluster
        .modules
        .put("hello", "v1", &wasm(10))
        .expect("module");
    cluster.create_pod("web", "hello:v1");
    node.desired(|d| d.pods.len() == 1).await;

    // The broker keeps retained messages in memory only: after a restart the snapshot is
    // gone until the fleet, reconnecting, publishes it again.
    let addr = cluster
        .broker
        .as_ref()
        .map(EmbeddedBroker::local_addr)
        .expect("broker");
    if let Some(broker) = cluster.broker.take() {
        broker.shutdown().await;
    }
    cluster.broker = Some(
        broker_support::start_broker(
            cluster._dir.path(),
            addr,
            credentials(),
            cluster.store.clone(),
        )
        .await
        .0,
    );
    // Forget what was assembled, like an agent that starts now: only a republished index
    // and pod message can give it the set again (the old retained ones died with the broker).
    node.assembler = Default::default();
    node.sets.clear();
    node.desired(|d| d.pods.len() == 1).await;
    cluster.stop().await;
}

#[tokio::test]
async fn a_deleted_pod_leaves_the_snapshot_of_its_node() {
    let cluster = Cluster::start().await;
    let mut node = register(&cluster).await;
    cluster
        .modules
        .put("hello", "v1", &wasm(10))
        .expect("module");
    cluster.create_pod("web", "hello:v1");
    node.desired(|d| d.pods.len() == 1).await;
    cluster
        .store
        .delete(&ObjectKey::namespaced("pods", "default", "web"), None)
        .expect("delete");
    node.desired(|d| d.pods.is_empty()).await;
    cluster.stop().await;
}

#[tokio::test]
async fn probe_events_become_pod_events_only_for_the_nodes_own_pods() {
    use wasmfleet_protocol::pod::ProbeKind;
    use wasmfleet_protocol::pod::probe::{
        NodeEvent, NodeEventKind, PodEvent, PodEventKind, PodEvents,
    };
    let cluster = Cluster::start().await;
    let node = register(&cluster).await;
    let pod = cluster.create_pod("web", "hello:v1");
    let uid = pod["metadata"]["uid"].as_str().expect("uid").to_owned();
    eventually("the pod in the cache", || {
        (!cluster.cache.pods_on_node(NODE).is_empty()).then_some(())
    })
    .await;
    let event = |uid: &str, kind| PodEvent {
        uid: uid.to_owned(),
        container: "main".into(),
        kind,
        detail: "dial tcp 10.42.0.2:9: Connection refused".into(),
    };
    let events = PodEvents {
        events: vec![
            event(
                "not-a-pod-of-this-node",
                PodEventKind::ProbeFailed(ProbeKind::Liveness),
            ),
            event(&uid, PodEventKind::ProbeFailed(ProbeKind::Readiness)),
            event(&uid, PodEventKind::Restarting(ProbeKind::Liveness)),
        ],
        node_events: vec![NodeEvent {
            kind: NodeEventKind::FailedToListen,
            detail: "cannot listen on 127.0.0.1:18080 for default/web".into(),
        }],
    };
    node.send(Up::Events, &Message::PodEvents(events)).await;
    let recorded = eventually("the probe events", || {
        let items = cluster
            .store
            .list(&wasmfleet_server::store::Scope::all("events"))
            .expect("list")
            .items;
        let about: Vec<(String, String)> = items
            .iter()
            .filter(|e| matches!(e["reason"].as_str(), Some("Unhealthy" | "Killing")))
            .map(|e| {
                (
                    e["involvedObject"]["uid"].as_str().unwrap_or("").to_owned(),
                    e["message"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        (!about.is_empty()).then_some(about)
    })
    .await;
    let mut messages: Vec<&str> = recorded.iter().map(|(_, m)| m.as_str()).collect();
    messages.sort();
    assert_eq!(
        messages,
        [
            "Container main failed liveness probe, will be restarted",
            "Readiness probe failed: dial tcp 10.42.0.2:9: Connection refused",
        ]
    );
    assert!(
        recorded.iter().all(|(about, _)| *about == uid),
        "{recorded:?}"
    );
    // The node's own events are recorded on its Node.
    let node_event = eventually("the node event", || {
        let items = cluster
            .store
            .list(&wasmfleet_server::store::Scope::all("events"))
            .expect("list")
            .items;
        items.into_iter().find(|e| e["reason"] == "FailedToListen")
    })
    .await;
    assert_eq!(node_event["involvedObject"]["kind"], "Node");
    assert_eq!(node_event["involvedObject"]["name"], NODE);
    assert_eq!(node_event["type"], "Warning");
    cluster.stop().await;
}

/// Asks for an artifact and returns the outcome of the offer that answers it.
async fn ask_artifact(node: &mut FakeNode, request: &ArtifactRequest) -> ArtifactOutcome {
    node.send(Up::BlobRequest, &Message::ArtifactRequest(request.clone()))
        .await;
    let wanted = request.clone();
    node.expect("an artifact offer", move |_, m| match m {
        Message::ArtifactOffer(offer) if offer.request == wanted => Some(offer.outcome),
        _ => None,
    })
    .await
}

/// Downloads a blob by digest, all chunks.
async fn download(node: &mut FakeNode, digest: &str) -> Vec<u8> {
    let request = BlobRequest {
        digest: digest.to_owned(),
        chunks: vec![],
    };
    node.send(Up::BlobRequest, &Message::BlobRequest(request))
        .await;
    let mut chunks = BTreeMap::new();
    loop {
        let wanted = digest.to_owned();
        let (index, total, data) = node
            .expect("a blob chunk", move |_, m| match m {
                Message::BlobReply(reply) if reply.digest == wanted => match reply.body {
                    BlobBody::Chunk {
                        index, total, data, ..
                    } => Some((index, total, data)),
                    BlobBody::NotFound => panic!("blob {wanted} not found"),
                },
                _ => None,
            })
            .await;
        chunks.insert(index, data);
        if chunks.len() == total as usize {
            return chunks.into_values().flatten().collect();
        }
    }
}

#[tokio::test]
async fn a_node_gets_a_signed_artifact_compiled_once_per_target() {
    let cluster = Cluster::start().await;
    let mut node = register(&cluster).await;
    let module = cluster
        .modules
        .put("empty", "v1", b"\0asm\x01\0\0\0")
        .expect("module");
    let arm64 = ArtifactRequest {
        module_digest: module.digest.clone(),
        target: "aarch64-unknown-linux-gnu".into(),
        wasmtime_version: "48.0.8".into(),
    };

    let ArtifactOutcome::Ready {
        artifact,
        signature,
    } = ask_artifact(&mut node, &arm64).await
    else {
        panic!("no artifact for aarch64");
    };
    verify(&cluster.ca_pem, &arm64, &artifact.digest, &signature)
        .expect("signed by the cluster CA");
    let bytes = download(&mut node, &artifact.digest).await;
    assert_eq!(bytes.len() as u64, artifact.size);
    assert_eq!(&bytes[..4], b"\x7fELF", "wasmtime artifacts are ELF files");
    assert_eq!(
        u16::from_le_bytes([bytes[18], bytes[19]]),
        183,
        "EM_AARCH64"
    );

    // The signature binds the artifact to this module, target and version.
    let mut other_target = arm64.clone();
    other_target.target = "x86_64-unknown-linux-gnu".into();
    assert!(verify(&cluster.ca_pem, &other_target, &artifact.digest, &signature).is_err());
    assert!(verify(&cluster.ca_pem, &arm64, &"0".repeat(64), &signature).is_err());

    // Asked again, the stored artifact is offered (same digest), not a new compilation.
    match ask_artifact(&mut node, &arm64).await {
        ArtifactOutcome::Ready {
            artifact: again, ..
        } => assert_eq!(again, artifact),
        other => panic!("{other:?}"),
    }

    // armv7 agents run Pulley: a separate artifact.
    let armv7 = ArtifactRequest {
        target: "pulley32".into(),
        ..arm64.clone()
    };
    match ask_artifact(&mut node, &armv7).await {
        ArtifactOutcome::Ready {
            artifact: pulley, ..
        } => {
            assert_ne!(pulley.digest, artifact.digest)
        }
        other => panic!("{other:?}"),
    }

    // What the server cannot provide is said, not ignored.
    let unknown = ArtifactRequest {
        module_digest: "ab".repeat(32),
        ..arm64.clone()
    };
    assert!(matches!(
        ask_artifact(&mut node, &unknown).await,
        ArtifactOutcome::Unavailable(why) if why.contains("unknown module")
    ));
    let old_wasmtime = ArtifactRequest {
        wasmtime_version: "47.0.0".into(),
        ..arm64.clone()
    };
    assert!(matches!(
        ask_artifact(&mut node, &old_wasmtime).await,
        ArtifactOutcome::Unavailable(why) if why.contains("wasmtime 48.0.8")
    ));
    cluster.stop().await;
}

#[tokio::test]
async fn usage_reports_are_kept_per_node_and_malformed_ones_are_dropped_without_harm() {
    use std::time::Instant;
    use wasmfleet_protocol::usage::{ContainerUsage, PodUsage, Usage, UsageReport};
    let cluster = Cluster::start().await;
    let node = register(&cluster).await;
    let report = |window_ms, memory_bytes| UsageReport {
        window_ms,
        node: Usage {
            cpu_nanocores: 5,
            memory_bytes,
        },
        pods: vec![PodUsage {
            uid: "u-1".into(),
            containers: vec![ContainerUsage {
                name: "main".into(),
                usage: Usage::default(),
            }],
        }],
    };
    let usage = cluster.fleet.usage().clone();
    node.send(Up::Usage, &Message::Usage(report(1_000, 4096)))
        .await;
    let kept = eventually("the report", || usage.node(NODE, Instant::now())).await;
    assert_eq!(kept.pods["u-1"][0].name, "main");

    // Refused: an empty window, garbage, a message of another kind. The dispatcher goes on:
    // the next valid report (after them, from the same client) replaces the first.
    node.send(Up::Usage, &Message::Usage(report(0, 1))).await;
    node.raw(Up::Usage, vec![0, 20, 0xff, 0xff, 0xff]).await;
    let heartbeat = Message::Heartbeat(Heartbeat {
        epoch: 1,
        unix_ms: 1,
    });
    node.send(Up::Usage, &heartbeat).await;
    node.send(Up::Usage, &Message::Usage(report(2_000, 8192)))
        .await;
    let latest = eventually("the next valid report", || {
        usage
            .node(NODE, Instant::now())
            .filter(|u| u.node.memory_bytes != 4096)
    })
    .await;
    assert_eq!(
        latest.node.memory_bytes, 8192,
        "only valid reports are kept"
    );
    assert_eq!(latest.window, Duration::from_secs(2));
    cluster.stop().await;
}
