//! The relay: carries the tunnel between two nodes when one cannot dial the other (it is
//! behind NAT and lists no tunnel address), like a TURN server does for WebRTC peers.
//!
//! A node connects with TLS, authenticated by its node certificate (signed by the cluster
//! CA, with the key its Node lists in [`TUNNEL_KEY_ANNOTATION`]), and sends one line:
//! - `CONNECT {node}` opens a session to `node`: the relay asks that node over MQTT
//!   ([`NodeCommand::RelayDial`], MQTT carries the signalling) to connect and join it;
//! - `ACCEPT {session}` joins a session opened to the sender.
//!
//! Once joined, both get `OK` and the relay copies bytes between them until either ends:
//! those bytes are the two nodes' own TLS session, so the relay forwards ciphertext only.
//! Limits: [`MAX_CONNECTIONS`] relay connections, [`MAX_PENDING_PER_NODE`] sessions
//! waiting per node, [`JOIN_TIMEOUT`] to join; every refusal is answered with an `ERR`
//! line saying why.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rumqttc::{AsyncClient, QoS};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wasmfleet_protocol::logs::NodeCommand;
use wasmfleet_protocol::peers::{RelayDial, key_sha256, names_node, relay_line};
use wasmfleet_protocol::topic::{self, Down};
use wasmfleet_protocol::{Message, encode};

use crate::bootstrap::TlsMaterial;
use crate::identity::certificates::TUNNEL_KEY_ANNOTATION;
use crate::informer::Cache;

/// Relay connections at once (sessions count two).
pub const MAX_CONNECTIONS: usize = 1024;

/// Sessions that may wait for their peer per destination node.
pub const MAX_PENDING_PER_NODE: usize = 16;

/// How long a session waits for its peer to join.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the TLS handshake and the first line may take.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Its TLS material is unusable.
    #[error("relay TLS: {0}")]
    Tls(String),
    /// Its port could not be bound.
    #[error("binding the relay on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

type Conn = TlsStream<TcpStream>;

/// A session waiting for its destination to join.
struct Pending {
    to: String,
    join: oneshot::Sender<Conn>,
}

struct Relay {
    cache: Cache,
    client: AsyncClient,
    sessions: Mutex<HashMap<u64, Pending>>,
    tracker: TaskTracker,
    stop: CancellationToken,
}

/// Binds the relay's port (before the fleet link starts, which publishes the port).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, RelayError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RelayError::Bind { addr, source })
}

/// Serves the relay on `listener`, on `tracker`, until `stop`.
pub fn start(
    listener: TcpListener,
    tls: &TlsMaterial,
    cache: Cache,
    client: AsyncClient,
    tracker: &TaskTracker,
    stop: CancellationToken,
) -> Result<(), RelayError> {
    let acceptor = TlsAcceptor::from(server_config(tls)?);
    if let Ok(bound) = listener.local_addr() {
        tracing::info!(%bound, "relay listening for nodes that cannot reach each other");
    }
    let relay = Arc::new(Relay {
        cache,
        client,
        sessions: Mutex::default(),
        tracker: tracker.clone(),
        stop,
    });
    tracker.spawn(relay.serve(listener, acceptor));
    Ok(())
}

impl Relay {
    async fn serve(self: Arc<Self>, listener: TcpListener, acceptor: TlsAcceptor) {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let accepted = tokio::select! {
                () = self.stop.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let Ok((tcp, remote)) = accepted else {
                continue;
            };
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                tracing::warn!(%remote, "too many relay connections; refusing one");
                continue;
            };
            let relay = Arc::clone(&self);
            let acceptor = acceptor.clone();
            self.tracker.spawn(async move {
                tcp.set_nodelay(true).ok();
                match tokio::time::timeout(HELLO_TIMEOUT, relay.hello(acceptor, tcp)).await {
                    Ok(Ok((conn, node, request))) => relay.handle(conn, node, request).await,
                    Ok(Err(why)) => tracing::info!(%remote, %why, "refused a relay connection"),
                    Err(_) => tracing::info!(%remote, "a relay connection said nothing in time"),
                }
                drop(slot);
            });
        }
    }

    /// TLS, who the node is, and what it asks for.
    async fn hello(
        &self,
        acceptor: TlsAcceptor,
        tcp: TcpStream,
    ) -> Result<(Conn, String, relay_line::Request), String> {
        let mut conn = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let certs = conn.get_ref().1.peer_certificates().unwrap_or_default();
        let node = certs.first().and_then(|cert| self.node_of(cert));
        let Some(node) = node else {
            refuse(&mut conn, "the certificate is not that of a current node").await;
            return Err("a certificate of no current node".into());
        };
        let line = read_line(&mut conn).await?;
        match relay_line::parse(&line) {
            Some(request) => Ok((conn, node, request)),
            None => {
                refuse(&mut conn, "expected CONNECT {node} or ACCEPT {session}").await;
                Err(format!("{node} sent an unknown request"))
            }
        }
    }

    /// The node whose pinned key `cert` carries, if the certificate names it.
    fn node_of(&self, cert: &CertificateDer<'_>) -> Option<String> {
        let hash = hex::encode(key_sha256(cert)?);
        let node = self.cache.list("nodes").into_iter().find(|node| {
            node["metadata"]["annotations"][TUNNEL_KEY_ANNOTATION].as_str() == Some(&hash)
        })?;
        let name = node["metadata"]["name"].as_str()?;
        names_node(cert, name).then(|| name.to_owned())
    }

    async fn handle(&self, conn: Conn, node: String, request: relay_line::Request) {
        match request {
            relay_line::Request::Connect(to) => self.connect(conn, node, to).await,
            relay_line::Request::Accept(session) => self.accept(conn, &node, session).await,
        }
    }

    /// Opens a session from `from` to `to`, asks `to` to join, and splices the two.
    async fn connect(&self, mut conn: Conn, from: String, to: String) {
        if !self.is_peer(&to) {
            return refuse(&mut conn, &format!("{to} is not a node with a tunnel")).await;
        }
        let session = rand::random::<u64>();
        let (join, joined) = oneshot::channel();
        if !self.open_session(
            session,
            Pending {
                to: to.clone(),
                join,
            },
        ) {
            return refuse(&mut conn, &format!("too many sessions wait for {to}")).await;
        }
        let dial = Message::Command(NodeCommand::RelayDial(RelayDial {
            session,
            from: from.clone(),
        }));
        let asked = self
            .client
            .publish(
                topic::down(&to, Down::Cmd),
                QoS::AtLeastOnce,
                false,
                encode(&dial),
            )
            .await;
        let joined = match asked {
            Ok(()) => tokio::time::timeout(JOIN_TIMEOUT, joined)
                .await
                .ok()
                .and_then(Result::ok),
            Err(err) => {
                tracing::warn!(%err, %to, "cannot ask a node to join a relay session");
                None
            }
        };
        lock(&self.sessions).remove(&session);
        let Some(mut other) = joined else {
            let why = format!("{to} did not join within {JOIN_TIMEOUT:?}");
            return refuse(&mut conn, &why).await;
        };
        for side in [&mut conn, &mut other] {
            if side.write_all(relay_line::READY.as_bytes()).await.is_err() {
                return;
            }
        }
        tracing::debug!(%from, %to, "relaying a tunnel");
        tokio::select! {
            () = self.stop.cancelled() => {}
            result = tokio::io::copy_bidirectional(&mut conn, &mut other) => {
                if let Ok((up, down)) = result {
                    tracing::debug!(%from, %to, up, down, "relayed tunnel closed");
                }
            }
        }
    }

    /// Registers a session waiting for its destination, within the per-node limit.
    fn open_session(&self, session: u64, pending: Pending) -> bool {
        let mut sessions = lock(&self.sessions);
        let waiting = sessions.values().filter(|p| p.to == pending.to).count();
        if waiting >= MAX_PENDING_PER_NODE {
            return false;
        }
        sessions.insert(session, pending);
        true
    }

    /// Joins `session`, which must have been opened to `node`.
    async fn accept(&self, mut conn: Conn, node: &str, session: u64) {
        let pending = {
            let mut sessions = lock(&self.sessions);
            match sessions.get(&session) {
                Some(p) if p.to == node => sessions.remove(&session),
                _ => None,
            }
        };
        match pending {
            Some(pending) => {
                if let Err(mut conn) = pending.join.send(conn) {
                    refuse(&mut conn, "the session was given up").await;
                }
            }
            None => refuse(&mut conn, "no such session for this node").await,
        }
    }

    fn is_peer(&self, node: &str) -> bool {
        self.cache
            .get(&crate::store::ObjectKey::cluster("nodes", node))
            .is_some_and(|n: Arc<Value>| {
                n["metadata"]["annotations"][TUNNEL_KEY_ANNOTATION].is_string()
            })
    }
}

/// Reads the first line (without its newline), at most [`relay_line::MAX_LEN`] bytes.
async fn read_line(conn: &mut Conn) -> Result<String, String> {
    let mut line = Vec::new();
    // One byte at a time: what follows the line belongs to the nodes' own session.
    let mut reader = BufReader::with_capacity(1, conn);
    loop {
        let byte = reader.fill_buf().await.map_err(|e| e.to_string())?;
        let Some(&byte) = byte.first() else {
            return Err("closed before its request".into());
        };
        reader.consume(1);
        if byte == b'\n' {
            break;
        }
        line.push(byte);
        if line.len() > relay_line::MAX_LEN {
            return Err("a request line too long".into());
        }
    }
    String::from_utf8(line).map_err(|_| "a request that is not text".into())
}

/// Answers a refusal and closes.
async fn refuse(conn: &mut Conn, why: &str) {
    let _ = conn.write_all(format!("ERR {why}\n").as_bytes()).await;
    let _ = conn.shutdown().await;
}

/// The server's certificate; clients must present one signed by the cluster CA.
fn server_config(tls: &TlsMaterial) -> Result<Arc<ServerConfig>, RelayError> {
    let bad = |e: &dyn std::fmt::Display| RelayError::Tls(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(tls.ca_cert_pem.as_bytes()) {
        roots.add(ca.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .build()
            .map_err(|e| bad(&e))?;
    let certs = CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes()).map_err(|e| bad(&e))?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| bad(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| bad(&e))?;
    Ok(Arc::new(config))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
