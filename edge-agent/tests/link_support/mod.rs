//! Test support for the link tests: a real Mosquitto on a free port, and a rumqttc client
//! playing the server (it records what the agent sends, serves module chunks, acks reports).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use wasmfleet_protocol::artifact::{ArtifactOffer, ArtifactOutcome};
use wasmfleet_protocol::blob::{BlobBody, BlobReply, chunk_count};
use wasmfleet_protocol::pod::{ModuleRef, StatusAck};
use wasmfleet_protocol::topic::{self, Down, ServerInbound, Up};
use wasmfleet_protocol::{CHUNK_SIZE, Message, decode, encode};

/// A Mosquitto that can be killed and started again on the same port.
pub struct Broker {
    dir: tempfile::TempDir,
    pub addr: SocketAddr,
    child: Option<Child>,
}

impl Broker {
    pub fn start() -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr = free_port();
        let mut broker = Broker {
            dir,
            addr,
            child: None,
        };
        broker.spawn();
        broker
    }

    /// An address where nothing listens (yet): a broker can be started there later.
    pub fn unstarted() -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        Broker {
            dir,
            addr: free_port(),
            child: None,
        }
    }

    pub fn spawn(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        let mut text = format!(
            "listener {} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n\
             log_type error\nlog_type warning\n",
            self.addr.port()
        );
        if is_root() {
            text.push_str("user root\n");
        }
        std::fs::write(&conf, text).expect("write mosquitto.conf");
        let log = std::fs::File::create(self.dir.path().join("mosquitto.log")).expect("log");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mosquitto (apt-get install -y mosquitto)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(self.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not start on {}",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://{}", self.addr)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// One message the agent sent.
#[derive(Debug, Clone)]
pub struct Received {
    pub node: String,
    pub kind: Up,
    pub message: Message,
    pub retained: bool,
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    modules: Mutex<HashMap<String, Vec<u8>>>,
    auto_ack: AtomicBool,
    /// Blob requests to ignore before answering (to exercise re-requests).
    drop_blob_requests: AtomicUsize,
    blob_requests: AtomicUsize,
    /// What to answer artifact requests for a module digest with.
    artifact_offers: Mutex<HashMap<String, ArtifactOutcome>>,
}

/// A rumqttc client playing the server.
pub struct FakeServer {
    pub client: AsyncClient,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl FakeServer {
    pub async fn connect(addr: SocketAddr) -> FakeServer {
        let mut options = MqttOptions::new("wasmfleet-server", addr.ip().to_string(), addr.port());
        options
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(4 << 20, 4 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, 256);
        let shared = Arc::new(Shared::default());
        let stop = CancellationToken::new();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let mut ready_tx = Some(ready_tx);
        let task_client = client.clone();
        let task_shared = shared.clone();
        let task_stop = stop.clone();
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    () = task_stop.cancelled() => return,
                    event = eventloop.poll() => event,
                };
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        task_client
                            .subscribe(topic::ALL_NODES_UP, QoS::AtLeastOnce)
                            .await
                            .expect("subscribe");
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        handle(&task_client, &task_shared, &p.topic, &p.payload, p.retain).await;
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .expect("fake server subscribed")
            .expect("fake server task");
        FakeServer {
            client,
            shared,
            stop,
        }
    }

    /// Makes a module available; returns its reference.
    pub fn add_module(&self, bytes: Vec<u8>) -> ModuleRef {
        let digest = hex::encode(Sha256::digest(&bytes));
        let size = bytes.len() as u64;
        self.shared
            .modules
            .lock()
            .unwrap()
            .insert(digest.clone(), bytes);
        ModuleRef { digest, size }
    }

    /// Serves `bytes` under a digest they do not hash to.
    pub fn add_module_as(&self, digest: &str, bytes: Vec<u8>) -> ModuleRef {
        let size = bytes.len() as u64;
        self.shared
            .modules
            .lock()
            .unwrap()
            .insert(digest.to_owned(), bytes);
        ModuleRef {
            digest: digest.to_owned(),
            size,
        }
    }

    /// Answers artifact requests for `module_digest` with `outcome` (by default: none).
    pub fn offer_artifact(&self, module_digest: &str, outcome: ArtifactOutcome) {
        self.shared
            .artifact_offers
            .lock()
            .unwrap()
            .insert(module_digest.to_owned(), outcome);
    }

    pub fn set_auto_ack(&self, on: bool) {
        self.shared.auto_ack.store(on, Ordering::SeqCst);
    }

    pub fn drop_next_blob_requests(&self, n: usize) {
        self.shared.drop_blob_requests.store(n, Ordering::SeqCst);
    }

    pub fn blob_requests(&self) -> usize {
        self.shared.blob_requests.load(Ordering::SeqCst)
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.shared.received.lock().unwrap().clear();
    }

    /// Polls what was received until `probe` finds something, or panics after `timeout`.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut(&[Received]) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = probe(&self.received()) {
                return found;
            }
            if Instant::now() > deadline {
                let seen: Vec<String> = self
                    .received()
                    .iter()
                    .rev()
                    .take(8)
                    .map(|r| format!("{:?}", r.message))
                    .collect();
                panic!("timed out after {timeout:?} waiting for {what}; last received: {seen:#?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn publish_down(&self, node: &str, kind: Down, message: &Message, retain: bool) {
        self.publish_raw(&topic::down(node, kind), encode(message), retain)
            .await;
    }

    pub async fn publish_raw(&self, topic: &str, payload: Vec<u8>, retain: bool) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .expect("publish");
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn handle(
    client: &AsyncClient,
    shared: &Shared,
    topic: &str,
    payload: &[u8],
    retained: bool,
) {
    let Some(ServerInbound::FromNode { node, kind }) = topic::parse_server_inbound(topic) else {
        return;
    };
    let Ok(message) = decode(payload) else {
        return;
    };
    shared.received.lock().unwrap().push(Received {
        node: node.to_owned(),
        kind,
        message: message.clone(),
        retained,
    });
    match message {
        Message::Status(report) if shared.auto_ack.load(Ordering::SeqCst) => {
            let ack = Message::StatusAck(StatusAck {
                epoch: report.epoch,
                seq: report.seq,
            });
            let _ = client
                .publish(
                    topic::down(node, Down::Ack),
                    QoS::AtLeastOnce,
                    false,
                    encode(&ack),
                )
                .await;
        }
        Message::ArtifactRequest(request) => {
            let outcome = shared
                .artifact_offers
                .lock()
                .unwrap()
                .get(&request.module_digest)
                .cloned()
                .unwrap_or_else(|| {
                    ArtifactOutcome::Unavailable("the fake server compiles nothing".into())
                });
            let offer = Message::ArtifactOffer(ArtifactOffer { request, outcome });
            let _ = client
                .publish(
                    topic::down(node, Down::Blob),
                    QoS::AtLeastOnce,
                    false,
                    encode(&offer),
                )
                .await;
        }
        Message::BlobRequest(request) => {
            shared.blob_requests.fetch_add(1, Ordering::SeqCst);
            let dropped = shared
                .drop_blob_requests
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if dropped {
                return;
            }
            let module = shared.modules.lock().unwrap().get(&request.digest).cloned();
            for reply in blob_replies(&request.digest, module.as_deref(), &request.chunks) {
                let _ = client
                    .publish(
                        topic::down(node, Down::Blob),
                        QoS::AtLeastOnce,
                        false,
                        encode(&reply),
                    )
                    .await;
            }
        }
        _ => {}
    }
}

/// The replies a server sends for a blob request.
pub fn blob_replies(digest: &str, module: Option<&[u8]>, chunks: &[u32]) -> Vec<Message> {
    let Some(bytes) = module else {
        return vec![Message::BlobReply(BlobReply {
            digest: digest.to_owned(),
            body: BlobBody::NotFound,
        })];
    };
    let total = chunk_count(bytes.len() as u64);
    let wanted: Vec<u32> = if chunks.is_empty() {
        (0..total).collect()
    } else {
        chunks.to_vec()
    };
    wanted
        .into_iter()
        .filter(|i| *i < total)
        .map(|index| {
            let start = index as usize * CHUNK_SIZE;
            let end = (start + CHUNK_SIZE).min(bytes.len());
            Message::BlobReply(BlobReply {
                digest: digest.to_owned(),
                body: BlobBody::Chunk {
                    index,
                    total,
                    size: bytes.len() as u64,
                    data: bytes[start..end].to_vec(),
                },
            })
        })
        .collect()
}

/// The guest built by `workloads/build`.
pub fn workload(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../workloads/dist")
        .join(format!("{name}.wasm"))
}

/// Installs a test tracing subscriber once (RUST_LOG controls it).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "wasmfleet_agent=debug".into()),
        )
        .with_test_writer()
        .try_init();
}
