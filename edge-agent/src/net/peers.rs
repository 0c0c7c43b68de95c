//! The other nodes, as this node's pods reach them: which node runs a pod IP (the
//! server's table of peers, [`PeerTable`]), and one [`Link`] per peer that carries every
//! stream to its pods.
//!
//! A link is dialed when a pod first needs it and kept while it answers its keep-alives:
//! - **directly**, to the peer's tunnel port on its `InternalIP`, when the table lists an
//!   address and it answers within [`DIRECT_TIMEOUT`];
//! - otherwise **through the server's relay** (a node behind NAT lists no address): this
//!   node opens a session to the peer there; the server asks the peer over MQTT to join it
//!   ([`RelayDial`]), and then forwards the two nodes' bytes, which are the inner TLS
//!   session's ciphertext.
//!
//! Both ends authenticate with their node certificates (issued by the cluster CA) and
//! accept a peer only if its certificate's key is the one the table lists for its name:
//! a deleted node, or one whose key changed, is refused at once. The path each peer is
//! reached by is logged and reported to the server as a Normal Event on this Node
//! (`PeerReachedDirectly` / `PeerReachedThroughRelay`), so `kubectl describe node` and
//! `kubectl get events` show it.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wasmfleet_protocol::Message;
use wasmfleet_protocol::peers::{
    Peer, PeerTable, RelayDial, certified_peer, key_sha256, relay_line,
};
use wasmfleet_protocol::pod::probe::{NodeEvent, NodeEventKind, PodEvents};
use wasmfleet_protocol::topic::Up;

use super::tunnel::{self, Link, Served, StreamError};
use crate::identity::certificate::TunnelIdentity;
use crate::link::Uplink;

/// How long a direct dial (TCP and TLS) may take before the relay is tried.
pub const DIRECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a relay session may take to be joined by the peer.
const RELAY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a TLS handshake on the tunnel port may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Tunnels served at once (direct and relayed).
const MAX_SERVED: usize = 256;

/// How often a tunnel port that cannot be bound is tried again.
const BIND_RETRY: Duration = Duration::from_secs(5);

/// Why a pod on another node cannot be reached.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// No peer's pod range holds the address.
    #[error("no node runs pod IP {0}")]
    NoOwner(Ipv4Addr),
    /// This node has no certificate yet (the server issues it at every birth).
    #[error("this node has no node certificate yet")]
    NoCredentials,
    /// Neither a direct dial nor the relay reached the peer.
    #[error("cannot reach node {node}: {why}")]
    Unreachable {
        /// The peer.
        node: String,
        /// What failed, last.
        why: String,
    },
    /// The tunnel was up but the stream failed.
    #[error(transparent)]
    Stream(#[from] StreamError),
}

/// What a stream carries: a TCP connection, or a UDP flow.
#[derive(Debug, Clone, Copy)]
enum Stream {
    Tcp(Option<Ipv4Addr>),
    Udp(Ipv4Addr),
}

impl Stream {
    async fn open(
        self,
        link: &Link,
        destination: SocketAddrV4,
    ) -> Result<TokioIo<Upgraded>, StreamError> {
        match self {
            Self::Tcp(source) => link.open(destination, source).await,
            Self::Udp(source) => link.open_datagrams(destination, source).await,
        }
    }
}

/// How a peer is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Path {
    Direct(SocketAddr),
    Relay { why: String },
}

/// The peers of this node; cheap to clone, shared by the pod network and the link.
#[derive(Clone)]
pub struct Peers {
    inner: Arc<Inner>,
}

/// A tunnel this node serves to a peer.
struct ServedTunnel {
    peer: String,
    key_sha256: [u8; 32],
    /// Cancelled to cut it (and its streams).
    cut: CancellationToken,
}

struct Inner {
    node: String,
    table: RwLock<Arc<PeerTable>>,
    credentials: watch::Receiver<Option<Arc<TunnelIdentity>>>,
    /// The host the agent reaches the broker at: the relay is there unless the table of
    /// peers names its own host.
    broker_host: String,
    /// Per peer, its link (once dialed), behind a lock so one dial serves every waiter.
    links: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Link>>>>>,
    /// The tunnels this node serves, by the peer and key that opened them: cut when the
    /// table no longer lists that peer with that key.
    served: Mutex<Vec<ServedTunnel>>,
    paths: Mutex<HashMap<String, Path>>,
    uplink: Option<Uplink>,
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl Peers {
    /// The peers of `node`, reached with `credentials` once there are some; the relay is
    /// on `broker_host` unless the table says otherwise. Tunnels run on `tracker` until
    /// `stop`.
    pub fn new(
        node: &str,
        credentials: watch::Receiver<Option<Arc<TunnelIdentity>>>,
        broker_host: &str,
        uplink: Option<Uplink>,
        tracker: TaskTracker,
        stop: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                node: node.to_owned(),
                table: RwLock::default(),
                credentials,
                broker_host: broker_host.to_owned(),
                links: Mutex::default(),
                served: Mutex::default(),
                paths: Mutex::default(),
                uplink,
                tracker,
                stop,
            }),
        }
    }

    /// Replaces the table of peers (the server sent a new one). Links to peers that left
    /// the table, or whose key changed, are dropped, and the tunnels they opened to this
    /// node are cut.
    pub fn replace(&self, table: PeerTable) {
        let table = Arc::new(table);
        let old = std::mem::replace(
            &mut *self
                .inner
                .table
                .write()
                .unwrap_or_else(PoisonError::into_inner),
            Arc::clone(&table),
        );
        let key = |t: &PeerTable, node: &str| t.get(node).map(|p| p.key_sha256);
        lock(&self.inner.links)
            .retain(|node, _| key(&table, node).is_some() && key(&table, node) == key(&old, node));
        lock(&self.inner.served).retain(|tunnel| {
            let listed = key(&table, &tunnel.peer) == Some(tunnel.key_sha256);
            if !listed && !tunnel.cut.is_cancelled() {
                tracing::info!(peer = %tunnel.peer, "cutting a tunnel: the peer left the table or changed its key");
                tunnel.cut.cancel();
            }
            listed && !tunnel.cut.is_cancelled()
        });
    }

    /// The current table.
    pub fn table(&self) -> Arc<PeerTable> {
        Arc::clone(
            &self
                .inner
                .table
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// The peer (another node) that runs `pod_ip`.
    pub fn remote_owner(&self, pod_ip: Ipv4Addr) -> Option<Peer> {
        self.table()
            .owner_of(pod_ip)
            .filter(|p| p.node != self.inner.node)
            .cloned()
    }

    /// Opens a stream to `destination`, a pod on another node, from the local pod `source`.
    pub async fn open(
        &self,
        destination: SocketAddrV4,
        source: Option<Ipv4Addr>,
    ) -> Result<TokioIo<Upgraded>, PeerError> {
        self.open_stream(destination, Stream::Tcp(source)).await
    }

    /// Opens a stream carrying a UDP flow to `destination`, a pod on another node, from
    /// the local pod (or this node's own pod address) `source`.
    pub async fn open_datagrams(
        &self,
        destination: SocketAddrV4,
        source: Ipv4Addr,
    ) -> Result<TokioIo<Upgraded>, PeerError> {
        self.open_stream(destination, Stream::Udp(source)).await
    }

    async fn open_stream(
        &self,
        destination: SocketAddrV4,
        stream: Stream,
    ) -> Result<TokioIo<Upgraded>, PeerError> {
        let peer = self
            .remote_owner(*destination.ip())
            .ok_or(PeerError::NoOwner(*destination.ip()))?;
        let link = self.link(&peer).await?;
        match stream.open(&link, destination).await {
            Err(StreamError::Closed(_)) => {
                // The tunnel died since its last use: dial once more.
                self.forget(&peer.node);
                let link = self.link(&peer).await?;
                Ok(stream.open(&link, destination).await?)
            }
            opened => Ok(opened?),
        }
    }

    fn forget(&self, node: &str) {
        lock(&self.inner.links).remove(node);
    }

    /// The link to `peer`, dialed if there is none (or it closed).
    async fn link(&self, peer: &Peer) -> Result<Link, PeerError> {
        let slot = Arc::clone(
            lock(&self.inner.links)
                .entry(peer.node.clone())
                .or_default(),
        );
        let mut slot = slot.lock().await;
        if let Some(link) = slot.as_ref().filter(|link| link.is_open()) {
            return Ok(link.clone());
        }
        let link = self.dial(peer).await?;
        *slot = Some(link.clone());
        Ok(link)
    }

    async fn dial(&self, peer: &Peer) -> Result<Link, PeerError> {
        let credentials = self
            .inner
            .credentials
            .borrow()
            .clone()
            .ok_or(PeerError::NoCredentials)?;
        let direct_failure = match peer.address {
            Some(address) => match self.dial_direct(peer, address, &credentials).await {
                Ok(link) => {
                    self.record_path(&peer.node, Path::Direct(address));
                    return Ok(link);
                }
                Err(why) => format!("{address} did not answer: {why}"),
            },
            None => "it accepts no connections (behind NAT)".to_owned(),
        };
        let table = self.table();
        let Some((host, port)) = table.relay(&self.inner.broker_host) else {
            return Err(PeerError::Unreachable {
                node: peer.node.clone(),
                why: format!("{direct_failure}, and the server runs no relay"),
            });
        };
        match self.dial_relay(peer, (host, port), &credentials).await {
            Ok(link) => {
                self.record_path(
                    &peer.node,
                    Path::Relay {
                        why: direct_failure,
                    },
                );
                Ok(link)
            }
            Err(why) => Err(PeerError::Unreachable {
                node: peer.node.clone(),
                why: format!("{direct_failure}; through the relay: {why}"),
            }),
        }
    }

    async fn dial_direct(
        &self,
        peer: &Peer,
        address: SocketAddr,
        credentials: &TunnelIdentity,
    ) -> Result<Link, String> {
        let attempt = async {
            let tcp = TcpStream::connect(address)
                .await
                .map_err(|e| e.to_string())?;
            tcp.set_nodelay(true).ok();
            self.tls_client(tcp, peer, credentials).await
        };
        let tls = tokio::time::timeout(DIRECT_TIMEOUT, attempt)
            .await
            .map_err(|_| format!("no answer within {DIRECT_TIMEOUT:?}"))??;
        Link::handshake(tls, &self.inner.tracker, self.inner.stop.clone())
            .await
            .map_err(|e| e.to_string())
    }

    async fn dial_relay(
        &self,
        peer: &Peer,
        relay: (&str, u16),
        credentials: &TunnelIdentity,
    ) -> Result<Link, String> {
        let attempt = async {
            let relay = self.relay_stream(relay, credentials).await?;
            let relay = relay_handshake(relay, &relay_line::connect(&peer.node)).await?;
            self.tls_client(relay, peer, credentials).await
        };
        let tls = tokio::time::timeout(RELAY_TIMEOUT, attempt)
            .await
            .map_err(|_| format!("the session was not joined within {RELAY_TIMEOUT:?}"))??;
        Link::handshake(tls, &self.inner.tracker, self.inner.stop.clone())
            .await
            .map_err(|e| e.to_string())
    }

    /// A TLS connection to the relay, authenticated with this node's certificate.
    async fn relay_stream(
        &self,
        (host, relay_port): (&str, u16),
        credentials: &TunnelIdentity,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
        let tcp = TcpStream::connect((host, relay_port))
            .await
            .map_err(|e| format!("relay {host}:{relay_port}: {e}"))?;
        tcp.set_nodelay(true).ok();
        let name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
        TlsConnector::from(client_config(credentials)?)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("relay {host}:{relay_port}: {e}"))
    }

    /// The inner TLS session to `peer`, as the client, over `io`; checks the peer's key.
    async fn tls_client<S>(
        &self,
        io: S,
        peer: &Peer,
        credentials: &TunnelIdentity,
    ) -> Result<tokio_rustls::client::TlsStream<S>, String>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = ServerName::try_from(peer.node.clone()).map_err(|e| e.to_string())?;
        let tls = TlsConnector::from(client_config(credentials)?)
            .connect(name, io)
            .await
            .map_err(|e| format!("TLS with {}: {e}", peer.node))?;
        let certs = tls.get_ref().1.peer_certificates().unwrap_or_default();
        match certs.first().and_then(key_sha256) {
            Some(hash) if hash == peer.key_sha256 => Ok(tls),
            _ => Err(format!(
                "{} presented a certificate for another key",
                peer.node
            )),
        }
    }

    /// Serves the tunnel port until `stop`: every connection that authenticates as a peer
    /// of the table carries that peer's streams. A port that cannot be bound is logged and
    /// tried again.
    pub async fn listen(self, port: u16) {
        if port == 0 {
            tracing::info!("no tunnel port: other nodes reach this node's pods through the relay");
            return;
        }
        let listener = loop {
            match TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).await {
                Ok(listener) => break listener,
                Err(err) => {
                    tracing::warn!(%err, port, "cannot listen on the tunnel port; trying again");
                    tokio::select! {
                        () = self.inner.stop.cancelled() => return,
                        () = tokio::time::sleep(BIND_RETRY) => {}
                    }
                }
            }
        };
        tracing::info!(
            port,
            "tunnel port open: other nodes reach this node's pods here"
        );
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_SERVED));
        loop {
            let accepted = tokio::select! {
                () = self.inner.stop.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let Ok((tcp, remote)) = accepted else {
                continue;
            };
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                tracing::warn!(%remote, "too many tunnels; refusing one");
                continue;
            };
            let peers = self.clone();
            self.inner.tracker.spawn(async move {
                tcp.set_nodelay(true).ok();
                peers.serve_tunnel(tcp, None, remote.to_string()).await;
                drop(slot);
            });
        }
    }

    /// Joins, in the background, a relay session another node opened to this one.
    pub fn join_relay(&self, dial: RelayDial) {
        let peers = self.clone();
        self.inner.tracker.spawn(peers.accept_relayed(dial));
    }

    /// Joins a relay session another node opened to this one, and serves its streams.
    async fn accept_relayed(self, dial: RelayDial) {
        let table = self.table();
        let Some(relay) = table.relay(&self.inner.broker_host) else {
            tracing::warn!(from = %dial.from, "cannot join a relay session: the table of peers names no relay");
            return;
        };
        let Some(credentials) = self.inner.credentials.borrow().clone() else {
            tracing::warn!(from = %dial.from, "cannot join a relay session: no node certificate yet");
            return;
        };
        let joined = async {
            let relay = self.relay_stream(relay, &credentials).await?;
            relay_handshake(relay, &relay_line::accept(dial.session)).await
        };
        match tokio::time::timeout(RELAY_TIMEOUT, joined).await {
            Ok(Ok(relay)) => {
                let what = format!("{} through the relay", dial.from);
                self.serve_tunnel(relay, Some(&dial.from), what).await;
            }
            Ok(Err(why)) => tracing::warn!(from = %dial.from, %why, "cannot join a relay session"),
            Err(_) => tracing::warn!(from = %dial.from, "joining a relay session timed out"),
        }
    }

    /// The server side of a tunnel: TLS, identify the peer by its key, serve its streams.
    async fn serve_tunnel<S>(&self, io: S, expected: Option<&str>, remote: String)
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let Some(credentials) = self.inner.credentials.borrow().clone() else {
            tracing::debug!(%remote, "refusing a tunnel: no node certificate yet");
            return;
        };
        let config = match server_config(&credentials) {
            Ok(config) => config,
            Err(why) => return tracing::warn!(%why, "cannot serve tunnels"),
        };
        let handshake = TlsAcceptor::from(config).accept(io);
        let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(err)) => return tracing::info!(%remote, %err, "refused a tunnel"),
            Err(_) => return tracing::info!(%remote, "a tunnel handshake timed out"),
        };
        let certs = tls.get_ref().1.peer_certificates().unwrap_or_default();
        let table = self.table();
        let peer = certs.first().and_then(|cert| certified_peer(&table, cert));
        let (Some(peer), Some(own)) = (peer, table.get(&self.inner.node)) else {
            return tracing::warn!(%remote, "refused a tunnel from a node that is not a peer");
        };
        if expected.is_some_and(|name| name != peer.node) {
            return tracing::warn!(%remote, node = %peer.node, "a relay session was joined by another node");
        }
        tracing::debug!(peer = %peer.node, %remote, "serving a tunnel");
        let served = Served {
            peer: peer.node.clone(),
            peer_pods: peer.pod_cidr,
            own_pods: own.pod_cidr,
        };
        let cut = self.inner.stop.child_token();
        {
            let mut tunnels = lock(&self.inner.served);
            tunnels.retain(|tunnel| !tunnel.cut.is_cancelled());
            tunnels.push(ServedTunnel {
                peer: peer.node.clone(),
                key_sha256: peer.key_sha256,
                cut: cut.clone(),
            });
        }
        // Ended either way, the tunnel leaves the list at its next pruning.
        let _forget = cut.clone().drop_guard();
        tunnel::serve(tls, served, self.inner.tracker.clone(), cut).await;
    }

    /// Logs and reports a peer's path when it changes.
    fn record_path(&self, node: &str, path: Path) {
        let previous = lock(&self.inner.paths).insert(node.to_owned(), path.clone());
        if previous.as_ref() == Some(&path) {
            return;
        }
        let (kind, detail) = match &path {
            Path::Direct(address) => (
                NodeEventKind::PeerReachedDirectly,
                format!("reaching node {node} directly at {address}"),
            ),
            Path::Relay { why } => (
                NodeEventKind::PeerReachedThroughRelay,
                format!("reaching node {node} through the server's relay: {why}"),
            ),
        };
        tracing::info!("{detail}");
        if let Some(uplink) = &self.inner.uplink {
            let message = Message::PodEvents(PodEvents {
                events: Vec::new(),
                node_events: vec![NodeEvent { kind, detail }],
            });
            let _ = uplink.try_send(Up::Events, &message);
        }
    }
}

/// Sends a relay request line and waits for the relay's answer.
async fn relay_handshake<S>(mut relay: S, line: &str) -> Result<S, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    relay
        .write_all(line.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    relay.flush().await.map_err(|e| e.to_string())?;
    // Read the answer a byte at a time: what follows it belongs to the inner TLS session.
    let mut answer = Vec::new();
    let mut reader = BufReader::with_capacity(1, &mut relay);
    reader
        .read_until(b'\n', &mut answer)
        .await
        .map_err(|e| e.to_string())?;
    if answer.len() > relay_line::MAX_LEN || answer != relay_line::READY.as_bytes() {
        let text = String::from_utf8_lossy(&answer);
        return Err(format!("the relay said: {}", text.trim()));
    }
    Ok(relay)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Presents this node's certificate and trusts the cluster CA (for peers and the relay).
fn client_config(credentials: &TunnelIdentity) -> Result<Arc<ClientConfig>, String> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_root_certificates(credentials.roots())
        .with_client_auth_cert(vec![credentials.cert.clone()], credentials.key.clone_key())
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(config))
}

/// Presents this node's certificate and requires one signed by the cluster CA.
fn server_config(credentials: &TunnelIdentity) -> Result<Arc<ServerConfig>, String> {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(credentials.roots()), provider())
            .build()
            .map_err(|e| e.to_string())?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![credentials.cert.clone()], credentials.key.clone_key())
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(config))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The pod IP whose alias is `alias`, if some peer's pod range holds it (an alias keeps
/// the last three octets of the pod IP).
pub fn pod_ip_of_alias(table: &PeerTable, alias: Ipv4Addr) -> Option<Ipv4Addr> {
    let [first, b, c, d] = alias.octets();
    if first != 127 {
        return None;
    }
    table.peers.iter().find_map(|peer| {
        let candidate = Ipv4Addr::new(peer.pod_cidr.addr().octets()[0], b, c, d);
        peer.pod_cidr.contains(&candidate).then_some(candidate)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn aliases_map_back_to_the_pod_ips_of_the_peers_ranges() {
        let peer = |node: &str, cidr: &str| Peer {
            node: node.into(),
            pod_cidr: cidr.parse().unwrap(),
            address: None,
            key_sha256: [0; 32],
        };
        let table = PeerTable {
            peers: vec![peer("a", "10.42.0.0/24"), peer("b", "10.42.1.0/24")],
            ..PeerTable::default()
        };
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(
            pod_ip_of_alias(&table, ip("127.42.1.7")),
            Some(ip("10.42.1.7"))
        );
        assert_eq!(
            pod_ip_of_alias(&table, ip("127.42.0.2")),
            Some(ip("10.42.0.2"))
        );
        assert_eq!(pod_ip_of_alias(&table, ip("127.42.9.2")), None);
        assert_eq!(pod_ip_of_alias(&table, ip("127.0.0.1")), None);
        assert_eq!(pod_ip_of_alias(&table, ip("10.42.1.7")), None);
    }
}
