//! Pods on other nodes, reachable on this node at their loopback aliases, like local ones.
//!
//! A pod's sockets reach a pod IP `a.b.c.d` at its alias `127.b.c.d` (see
//! [`super::PodNet`]). For a pod of this node that is the pod's own socket; for a pod on
//! another node, [`Remote::reach`] first opens a forwarder on that alias and port: a
//! listener whose connections become streams through the tunnel to the peer that runs the
//! pod ([`super::peers`]), from the connecting pod's IP (its alias is the source address).
//! Everything that connects to pods (wasi:sockets, outgoing wasi:http, Services, NodePorts,
//! the ingress) calls `reach` and then connects to the alias as before.
//!
//! A forwarder lives only as long as connects are announced to it: each `reach` expects one
//! connection, and the listener closes once every expected connection arrived (or after
//! [`CONNECT_WAIT`] without one). So a remote pod's alias is held on this node only for the
//! moment of a connect, and never keeps a pod of this host from binding it (agents that
//! share one host's loopback, as in tests, see each other's pods there directly). At most
//! [`MAX_FORWARDERS`] are open at once. A remote pod port where nothing listens shows as
//! a connection that closes at once (the forwarder had accepted it).
//!
//! Datagrams to remote pods take forwarders of their own, which live while their flows do
//! ([`super::remote_datagrams`], [`Remote::reach_datagrams`]).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Refusal;
use super::peers::{Peers, pod_ip_of_alias};
use super::remote_datagrams::DatagramForwarders;
use super::tunnel::splice;

/// How long a forwarder waits for a connect it was told about.
pub const CONNECT_WAIT: Duration = Duration::from_secs(5);

/// The most forwarders open at once.
pub const MAX_FORWARDERS: usize = 4096;

/// The remote pods this node reaches; cheap to clone.
#[derive(Clone)]
pub struct Remote {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Remote { .. }")
    }
}

struct Inner {
    peers: Peers,
    /// Per open forwarder, how many connects it still expects.
    forwarders: Mutex<HashMap<SocketAddrV4, usize>>,
    /// The UDP forwarders.
    datagrams: DatagramForwarders,
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl Remote {
    /// Reaches remote pods through `peers`; forwarders run on `tracker` until `stop`.
    pub fn new(peers: Peers, tracker: TaskTracker, stop: CancellationToken) -> Self {
        Self {
            inner: Arc::new(Inner {
                datagrams: DatagramForwarders::new(peers.clone(), tracker.clone(), stop.clone()),
                peers,
                forwarders: Mutex::default(),
                tracker,
                stop,
            }),
        }
    }

    /// The peers behind the forwarders.
    pub fn peers(&self) -> &Peers {
        &self.inner.peers
    }

    /// Whether `ip` is a pod IP that a peer other than this node owns.
    pub fn is_remote_pod(&self, ip: Ipv4Addr) -> bool {
        self.inner
            .peers
            .table()
            .owner_of(ip)
            .is_some_and(|p| p.node != self.inner.peers.node())
    }

    /// This node's own address in its pod range: the range's first address (`.1` of a
    /// `/24`), which the server never gives a pod.
    pub fn node_pod_address(&self) -> Option<Ipv4Addr> {
        let table = self.inner.peers.table();
        let own = table.get(self.inner.peers.node())?;
        own.pod_cidr.hosts().next()
    }

    /// Prepares one connect to the host address `host`: if it is the alias of a pod on
    /// another node, a forwarder takes it. `false`: it is such an alias, but no forwarder
    /// could be opened; any other address is left as it is.
    pub fn reach(&self, host: SocketAddr) -> bool {
        match self.remote_pod(host) {
            Some((alias, destination)) => self.forwarder(alias, destination),
            None => true,
        }
    }

    /// Prepares a datagram to the host address `host`: if it is the alias of a pod on
    /// another node, a UDP forwarder takes it (see [`super::remote_datagrams`]); any other
    /// address is left as it is.
    pub fn reach_datagrams(&self, host: SocketAddr) -> Result<(), Refusal> {
        match self.remote_pod(host) {
            Some((alias, destination)) => self.inner.datagrams.reach(alias, destination),
            None => Ok(()),
        }
    }

    /// The alias `host` and the pod address on another node it stands for, if it is one.
    fn remote_pod(&self, host: SocketAddr) -> Option<(SocketAddrV4, SocketAddrV4)> {
        let SocketAddr::V4(host) = host else {
            return None;
        };
        let table = self.inner.peers.table();
        let pod_ip = pod_ip_of_alias(&table, *host.ip()).filter(|ip| {
            table
                .owner_of(*ip)
                .is_some_and(|p| p.node != self.inner.peers.node())
        })?;
        Some((host, SocketAddrV4::new(pod_ip, host.port())))
    }

    fn forwarder(&self, alias: SocketAddrV4, destination: SocketAddrV4) -> bool {
        let mut forwarders = lock(&self.inner.forwarders);
        if let Some(expected) = forwarders.get_mut(&alias) {
            *expected += 1;
            return true;
        }
        if forwarders.len() >= MAX_FORWARDERS {
            tracing::warn!(%destination, "too many forwarders to remote pods open");
            return false;
        }
        let listener = match std::net::TcpListener::bind(alias)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(TcpListener::from_std)
        {
            Ok(listener) => listener,
            // A pod of another agent on this host listens there: it is reachable as it is.
            Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => return true,
            Err(err) => {
                tracing::warn!(%err, %destination, "cannot open a forwarder to a remote pod");
                return false;
            }
        };
        forwarders.insert(alias, 1);
        let remote = self.clone();
        self.inner.tracker.spawn(async move {
            remote.forward(listener, alias, destination).await;
        });
        true
    }

    /// Accepts the expected connections, then closes.
    async fn forward(&self, listener: TcpListener, alias: SocketAddrV4, destination: SocketAddrV4) {
        loop {
            let accepted = tokio::select! {
                () = self.inner.stop.cancelled() => None,
                () = tokio::time::sleep(CONNECT_WAIT) => None,
                accepted = listener.accept() => accepted.ok(),
            };
            let mut forwarders = lock(&self.inner.forwarders);
            let expected = forwarders.entry(alias).or_default();
            let Some((local, from)) = accepted else {
                // Nothing came: the connects it expected were given up.
                forwarders.remove(&alias);
                return drop(listener);
            };
            *expected = expected.saturating_sub(1);
            if *expected == 0 {
                forwarders.remove(&alias);
                // Closed under the lock: a new `reach` binds afresh, never a closing one.
                drop(listener);
                drop(forwarders);
                return self.spawn_connection(local, from, destination);
            }
            drop(forwarders);
            self.spawn_connection(local, from, destination);
        }
    }

    fn spawn_connection(&self, local: TcpStream, from: SocketAddr, destination: SocketAddrV4) {
        let remote = self.clone();
        self.inner.tracker.spawn(async move {
            remote.connection(local, from, destination).await;
        });
    }

    async fn connection(&self, local: TcpStream, from: SocketAddr, destination: SocketAddrV4) {
        local.set_nodelay(true).ok();
        let source = match from.ip() {
            IpAddr::V4(alias) => {
                let table = self.inner.peers.table();
                pod_ip_of_alias(&table, alias).filter(|ip| {
                    table
                        .get(self.inner.peers.node())
                        .is_some_and(|own| own.pod_cidr.contains(ip))
                })
            }
            IpAddr::V6(_) => None,
        };
        match self.inner.peers.open(destination, source).await {
            Ok(stream) => splice(local, stream, self.inner.stop.clone()).await,
            Err(err) => tracing::info!(%destination, %err, "cannot reach a remote pod"),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
