//! UDP to pods on other nodes, reachable on this node at their loopback aliases like
//! local ones (the datagram side of [`super::remote`]).
//!
//! Before a datagram goes to the alias of a pod on another node, [`DatagramForwarders::
//! reach`] makes sure a forwarder holds that alias and port: a UDP socket there whose
//! datagrams, per client address (a pod's socket, or a NodePort's flow), travel as one
//! stream of the tunnel to the pod's node ([`super::peers::Peers::open_datagrams`],
//! [`super::datagrams`]). Answers come back on the stream and leave the forwarder's
//! socket, so the client sees the remote pod's alias (its pod IP) as their source.
//!
//! A flow ends after [`IDLE_TIMEOUT`] without datagrams either way; the forwarder closes
//! once it has no flow and nothing reached it for as long. If a flow's stream cannot be
//! opened (the node is unreachable, or refused it), the next datagrams to that pod port
//! are refused for [`UNREACHABLE_FOR`] ([`Refusal::Unreachable`], the guest's
//! `remote-unreachable`), as an ICMP error would; the datagram that found out is lost.
//! At most [`MAX_FORWARDERS`] forwarders and [`MAX_FLOWS`] flows per forwarder; a
//! datagram beyond them is refused (a forwarder) or dropped (a flow), as a full queue
//! drops it. An alias that cannot be bound because something on this host holds it (a
//! pod of another agent sharing the host's loopback in tests, or this node's own socket
//! of a flow served for that pod) is reached as it is. (The converse, a forwarder holding
//! the alias port before a pod of another agent on the same loopback binds it, can only
//! happen where agents share a loopback, as in some tests; the pod's bind then fails
//! until the forwarder has been idle for 30 s.)

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Refusal;
use super::datagrams::{ClientFlows, IDLE_TIMEOUT, Local, MAX_DATAGRAM, Room, carry};
use super::peers::Peers;

/// The most UDP forwarders (remote pod ports) open at once.
pub const MAX_FORWARDERS: usize = 1024;

/// The most flows (client addresses) one forwarder carries at once.
pub const MAX_FLOWS: usize = 256;

/// How long datagrams to a pod port are refused after a flow to it could not be opened.
pub const UNREACHABLE_FOR: Duration = Duration::from_secs(5);

/// The node's UDP forwarders to remote pods; cheap to clone.
#[derive(Clone)]
pub struct DatagramForwarders {
    inner: Arc<Inner>,
}

struct Inner {
    peers: Peers,
    open: Mutex<HashMap<SocketAddrV4, Forwarder>>,
    tracker: TaskTracker,
    stop: CancellationToken,
}

/// What [`DatagramForwarders::reach`] and a forwarder's task share about one forwarder.
struct Forwarder {
    /// When a datagram was last announced to it: it stays open for as long after.
    reached: Instant,
    /// When a flow of it last failed to open, and why.
    unreachable: Option<(Instant, String)>,
}

impl DatagramForwarders {
    /// Forwards through `peers`; forwarders run on `tracker` until `stop`.
    pub fn new(peers: Peers, tracker: TaskTracker, stop: CancellationToken) -> Self {
        Self {
            inner: Arc::new(Inner {
                peers,
                open: Mutex::default(),
                tracker,
                stop,
            }),
        }
    }

    /// Prepares datagrams to `alias`, the alias of the remote pod port `destination`.
    pub fn reach(&self, alias: SocketAddrV4, destination: SocketAddrV4) -> Result<(), Refusal> {
        let mut open = lock(&self.inner.open);
        if let Some(forwarder) = open.get_mut(&alias) {
            if let Some((when, why)) = &forwarder.unreachable
                && when.elapsed() < UNREACHABLE_FOR
            {
                tracing::debug!(%destination, %why, "refusing a datagram to an unreachable pod");
                return Err(Refusal::Unreachable);
            }
            forwarder.reached = Instant::now();
            return Ok(());
        }
        if open.len() >= MAX_FORWARDERS {
            tracing::warn!(%destination, limit = MAX_FORWARDERS, "too many UDP forwarders to remote pods open");
            return Err(Refusal::Unreachable);
        }
        let socket = match std::net::UdpSocket::bind(alias)
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .and_then(UdpSocket::from_std)
        {
            Ok(socket) => socket,
            Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => return Ok(()),
            Err(err) => {
                tracing::warn!(%err, %destination, "cannot open a UDP forwarder to a remote pod");
                return Err(Refusal::Unreachable);
            }
        };
        open.insert(
            alias,
            Forwarder {
                reached: Instant::now(),
                unreachable: None,
            },
        );
        let forwarders = self.clone();
        self.inner
            .tracker
            .spawn(forwarders.run(socket, alias, destination));
        Ok(())
    }

    /// Receives the clients' datagrams and hands each to its flow, until idle or stop.
    async fn run(self, socket: UdpSocket, alias: SocketAddrV4, destination: SocketAddrV4) {
        let socket = Arc::new(socket);
        let mut flows = ClientFlows::new(MAX_FLOWS);
        let (ended, mut endings) = mpsc::unbounded_channel::<(SocketAddr, u64)>();
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let idle = flows.is_empty();
            let (len, client) = tokio::select! {
                () = self.inner.stop.cancelled() => break,
                Some((client, id)) = endings.recv() => {
                    flows.end(client, id);
                    continue;
                }
                received = socket.recv_from(&mut buf) => match received {
                    Ok(received) => received,
                    Err(_) => continue,
                },
                () = tokio::time::sleep(IDLE_TIMEOUT), if idle => {
                    let mut open = lock(&self.inner.open);
                    if open.get(&alias).is_none_or(|f| f.reached.elapsed() >= IDLE_TIMEOUT) {
                        open.remove(&alias);
                        // Closed under the lock: a new `reach` binds afresh, never a closing one.
                        drop(socket);
                        return;
                    }
                    continue;
                }
            };
            let Some(payload) = flows.deliver(client, Bytes::copy_from_slice(&buf[..len])) else {
                continue;
            };
            let Some(source) = self.source_of(client) else {
                tracing::debug!(%client, %destination, "dropping a datagram from outside this node's pods");
                continue;
            };
            if let Room::Full { first } = flows.room() {
                if first {
                    tracing::warn!(%destination, limit = MAX_FLOWS, "too many UDP flows to one remote pod port; dropping new clients' datagrams");
                }
                continue;
            }
            let (id, queue) = flows.start(client, payload);
            let flow = Flow {
                alias,
                destination,
                client,
                source,
            };
            let (forwarders, ended, socket) = (self.clone(), ended.clone(), Arc::clone(&socket));
            self.inner.tracker.spawn(async move {
                forwarders.flow(socket, flow, queue).await;
                let _ = ended.send((client, id));
            });
        }
        lock(&self.inner.open).remove(&alias);
    }

    /// Carries one client's flow through the tunnel.
    async fn flow(&self, socket: Arc<UdpSocket>, flow: Flow, queue: mpsc::Receiver<Bytes>) {
        match self
            .inner
            .peers
            .open_datagrams(flow.destination, flow.source)
            .await
        {
            Ok(stream) => {
                let local = Local::Shared {
                    socket: &socket,
                    client: flow.client,
                    queue,
                };
                carry(stream, local, self.inner.stop.clone()).await;
            }
            Err(err) => {
                tracing::info!(destination = %flow.destination, %err, "cannot reach a remote pod over UDP");
                if let Some(forwarder) = lock(&self.inner.open).get_mut(&flow.alias) {
                    forwarder.unreachable = Some((Instant::now(), err.to_string()));
                }
            }
        }
    }

    /// The pod IP (of this node's range) a client address is the alias of.
    fn source_of(&self, client: SocketAddr) -> Option<Ipv4Addr> {
        let IpAddr::V4(alias) = client.ip() else {
            return None;
        };
        let table = self.inner.peers.table();
        let own = table.get(self.inner.peers.node())?;
        super::peers::pod_ip_of_alias(&table, alias).filter(|ip| own.pod_cidr.contains(ip))
    }
}

/// One client's flow through a forwarder.
#[derive(Debug, Clone, Copy)]
struct Flow {
    alias: SocketAddrV4,
    destination: SocketAddrV4,
    client: SocketAddr,
    source: Ipv4Addr,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
