//! NodePort and LoadBalancer Services on the node (kube-proxy's and k3s ServiceLB's role):
//! real sockets on the node's own addresses that forward each TCP connection, and each
//! UDP flow ([`datagrams`]), to a ready endpoint of the Service.
//!
//! From the table of Services ([`ServiceDirectory`]) [`listeners`] works out, purely,
//! every address to listen on: `<node IP>:<nodePort>` and `127.0.0.1:<nodePort>` for
//! each node port of a NodePort or LoadBalancer Service, and the same for the Service's
//! own `port` when it is a LoadBalancer and this node serves load balancers, over the
//! port's protocol (a TCP and a UDP listener of one address are apart). The
//! [`NodePorts`] task opens and closes listeners as the table changes and closes them
//! all, with their connections, on shutdown. An address it cannot bind (the port is taken
//! on the host, or below 1024 without `CAP_NET_BIND_SERVICE`; or two LoadBalancers want
//! one port, and the first by namespace and name has it) is never fatal: it is logged
//! once, reported to the server as a `FailedToListen` Warning Event on the Node (sent
//! again on the next try until the link takes it) and tried again every [`RETRY`] and
//! whenever the table changes.
//!
//! Each accepted connection picks an endpoint like a pod's connect to the ClusterIP does
//! ([`super::services::choose`]: in turn, or by the client's IP with
//! `sessionAffinity: ClientIP`) among the endpoints on this node, and is spliced to its
//! pod alias and target port, on this node or (through [`super::remote`]) on another one;
//! with `externalTrafficPolicy: Local` only endpoints on this node are chosen. A Service
//! with no endpoint to choose has the connection closed at once, and the reason is logged
//! once (until a connection succeeds again).

pub mod datagrams;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wasmfleet_protocol::Message;
use wasmfleet_protocol::network::{Protocol, loopback_alias};
use wasmfleet_protocol::pod::probe::{NodeEvent, NodeEventKind, PodEvents};
use wasmfleet_protocol::service::{ExposedService, ServiceTable};
use wasmfleet_protocol::topic::Up;

use super::services::{Scope, ServiceDirectory, choose_for};
use crate::link::Uplink;

/// How often listeners that could not bind are tried again.
pub const RETRY: Duration = Duration::from_secs(5);
/// How long a connect to an endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The most connections forwarded at once, over all listeners.
const MAX_CONNECTIONS: usize = 1024;

/// One address the node listens on, over one protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Listener {
    /// The host address and port.
    pub addr: SocketAddr,
    /// `true` for UDP, `false` for TCP.
    pub udp: bool,
}

impl std::fmt::Display for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.udp {
            true => write!(f, "{} (UDP)", self.addr),
            false => write!(f, "{}", self.addr),
        }
    }
}

/// Where a listener's connections go: one port of one Service.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
    /// The Service port (as in its ClusterIP entry).
    pub port: u16,
    /// The Service port's protocol.
    pub protocol: Protocol,
    /// `externalTrafficPolicy: Local`.
    pub local_only: bool,
}

impl Target {
    /// `namespace/name`.
    pub fn service(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The endpoints its connections may go to.
    pub fn scope(&self) -> Scope {
        match self.local_only {
            true => Scope::Local,
            false => Scope::Cluster,
        }
    }

    /// What its traffic asks the Service for.
    pub fn service_target(&self) -> super::services::Target {
        super::services::Target {
            port: self.port,
            protocol: self.protocol,
            scope: self.scope(),
        }
    }
}

/// Pure: every address this node listens on and where each goes. Two Services wanting
/// one address (two LoadBalancers on one port): the first by namespace and name gets it,
/// the other is in the second map, to be reported.
pub fn listeners(
    table: &ServiceTable,
    node: &str,
    node_ip: IpAddr,
) -> (BTreeMap<Listener, Target>, Vec<(Listener, Target)>) {
    let serves_lb = table.serves_load_balancers(node);
    let mut wanted = BTreeMap::new();
    let mut conflicts = Vec::new();
    for exposed in &table.exposed.services {
        for (addr, target) in service_listeners(table, exposed, serves_lb, node_ip) {
            match wanted.get(&addr) {
                Some(have) if have != &target => conflicts.push((addr, target)),
                Some(_) => {}
                None => {
                    wanted.insert(addr, target);
                }
            }
        }
    }
    (wanted, conflicts)
}

/// The addresses one exposed Service wants on this node: its node ports, and its ports
/// when it is a LoadBalancer and this node serves them, on each host address.
fn service_listeners(
    table: &ServiceTable,
    exposed: &ExposedService,
    serves_lb: bool,
    node_ip: IpAddr,
) -> Vec<(Listener, Target)> {
    let Some(entry) = table.entry_of(exposed) else {
        return Vec::new();
    };
    let mut wanted = Vec::new();
    for (i, port) in entry.ports.iter().enumerate() {
        let target = Target {
            namespace: entry.namespace.clone(),
            name: entry.name.clone(),
            port: port.port,
            protocol: port.protocol,
            local_only: exposed.local_only,
        };
        let udp = port.protocol == Protocol::Udp;
        let node_port = exposed.node_ports.get(i).copied().flatten();
        let lb_port = (exposed.load_balancer && serves_lb).then_some(port.port);
        for listen_port in node_port.into_iter().chain(lb_port) {
            for ip in host_addresses(node_ip) {
                let addr = SocketAddr::new(ip, listen_port);
                wanted.push((Listener { addr, udp }, target.clone()));
            }
        }
    }
    wanted
}

/// The addresses to listen on: the node's and loopback (once when they are one, and
/// only the wildcard when the node address is one).
fn host_addresses(node_ip: IpAddr) -> Vec<IpAddr> {
    match node_ip.is_loopback() || node_ip.is_unspecified() {
        true => vec![node_ip],
        false => vec![node_ip, IpAddr::V4(Ipv4Addr::LOCALHOST)],
    }
}

/// What the listeners and their connections share.
struct Shared {
    directory: ServiceDirectory,
    targets: Mutex<BTreeMap<Listener, Target>>,
    turn: AtomicUsize,
    connections: Arc<Semaphore>,
    /// Services whose refusal was logged (so it is logged once).
    refused: Mutex<HashSet<Target>>,
}

/// The node's NodePort and LoadBalancer listeners; see the module documentation.
pub struct NodePorts {
    shared: Arc<Shared>,
    node_ip: IpAddr,
    uplink: Uplink,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// Open listeners, each with the token that closes it.
    open: HashMap<Listener, CancellationToken>,
    /// Addresses a Service could not have (taken on the host, or by another Service):
    /// why, and whether the server was told.
    failed: HashMap<(Listener, Target), Failure>,
}

/// Why an address could not be bound.
#[derive(Debug, PartialEq, Eq)]
struct Failure {
    why: String,
    reported: bool,
}

impl NodePorts {
    /// Starts following `directory` on `tracker` until `shutdown`.
    pub fn start(
        directory: ServiceDirectory,
        node_ip: IpAddr,
        uplink: Uplink,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) {
        let ports = NodePorts {
            shared: Arc::new(Shared {
                directory,
                targets: Mutex::default(),
                turn: AtomicUsize::new(0),
                connections: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
                refused: Mutex::default(),
            }),
            node_ip,
            uplink,
            shutdown,
            tracker: tracker.clone(),
            open: HashMap::new(),
            failed: HashMap::new(),
        };
        tracker.spawn(ports.run());
    }

    async fn run(mut self) {
        let mut changes = self.shared.directory.subscribe();
        loop {
            self.reconcile().await;
            let retry = async {
                match self.failed.is_empty() {
                    true => std::future::pending().await,
                    false => tokio::time::sleep(RETRY).await,
                }
            };
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                changed = changes.changed() => if changed.is_err() { break },
                () = retry => {}
            }
        }
        for token in self.open.values() {
            token.cancel();
        }
    }

    /// Opens and closes listeners to match the current table.
    async fn reconcile(&mut self) {
        let table = self.shared.directory.table();
        let (wanted, conflicts) = listeners(&table, self.shared.directory.node(), self.node_ip);
        let before = std::mem::take(&mut self.failed);
        for (listener, target) in conflicts {
            let winner = wanted
                .get(&listener)
                .map(Target::service)
                .unwrap_or_default();
            let why = format!("Service {winner} already listens on it");
            self.failure(&before, listener, &target, why);
        }
        self.open.retain(|listener, token| {
            let keep = wanted.contains_key(listener);
            if !keep {
                tracing::info!(%listener, "closing a NodePort/LoadBalancer listener");
                token.cancel();
            }
            keep
        });
        *lock(&self.shared.targets) = wanted.clone();
        for (listener, target) in wanted {
            if self.open.contains_key(&listener) {
                continue;
            }
            let token = self.shutdown.child_token();
            let shared = Arc::clone(&self.shared);
            let tracker = self.tracker.clone();
            let addr = listener.addr;
            let bound = match listener.udp {
                false => TcpListener::bind(addr).await.map(|socket| {
                    self.tracker.spawn(accept_loop(
                        socket,
                        listener,
                        shared,
                        token.clone(),
                        tracker,
                    ));
                }),
                true => UdpSocket::bind(addr).await.map(|socket| {
                    let serve = datagrams::serve(socket, listener, shared, token.clone(), tracker);
                    self.tracker.spawn(serve);
                }),
            };
            match bound {
                Ok(()) => {
                    tracing::info!(%listener, service = %target.service(), port = target.port,
                        "listening for a NodePort/LoadBalancer Service");
                    self.open.insert(listener, token);
                }
                Err(err) => self.failure(&before, listener, &target, err.to_string()),
            }
        }
    }

    /// Notes that `target` cannot have `addr`: logged when new (`before` holds the
    /// failures of the previous pass), reported to the server until the link takes it.
    fn failure(
        &mut self,
        before: &HashMap<(Listener, Target), Failure>,
        listener: Listener,
        target: &Target,
        why: String,
    ) {
        let key = (listener, target.clone());
        let known = before.get(&key).filter(|f| f.why == why);
        if known.is_none() {
            tracing::warn!(%listener, service = %target.service(), error = %why, retry = ?RETRY,
                "cannot listen for a NodePort/LoadBalancer Service");
        }
        let mut reported = known.is_some_and(|f| f.reported);
        if !reported {
            let detail = format!(
                "cannot listen on {listener} for Service {} port {}: {why}",
                target.service(),
                target.port
            );
            let message = Message::PodEvents(PodEvents {
                events: Vec::new(),
                node_events: vec![NodeEvent {
                    kind: NodeEventKind::FailedToListen,
                    detail,
                }],
            });
            reported = self.uplink.try_send(Up::Events, &message).is_ok();
        }
        self.failed.insert(key, Failure { why, reported });
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn accept_loop(
    socket: TcpListener,
    listener: Listener,
    shared: Arc<Shared>,
    token: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            () = token.cancelled() => break,
            accepted = socket.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok((stream, peer)) => {
                stream.set_nodelay(true).ok();
                (stream, peer)
            }
            Err(err) => {
                tracing::warn!(%listener, %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&shared.connections).try_acquire_owned() else {
            tracing::warn!(%listener, limit = MAX_CONNECTIONS, "too many forwarded connections; closing a new one");
            continue;
        };
        let shared = Arc::clone(&shared);
        let token = token.clone();
        tracker.spawn(async move {
            tokio::select! {
                () = token.cancelled() => {}
                () = forward(stream, peer, listener, &shared) => {}
            }
            drop(permit);
        });
    }
}

impl Shared {
    /// The endpoint (its alias and target port) a new connection or flow of `client` to
    /// `listener` goes to, with the listener's target; `None` when it has none (logged
    /// once per Service).
    fn pick(&self, listener: Listener, client: SocketAddr) -> Option<(SocketAddr, Target)> {
        let target = lock(&self.targets).get(&listener).cloned()?;
        let table = self.directory.table();
        let entry = table
            .services
            .iter()
            .find(|e| e.namespace == target.namespace && e.name == target.name);
        let client_ip = match client.ip() {
            IpAddr::V4(ip) => ip,
            IpAddr::V6(ip) => ip.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
        };
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let node = self.directory.node();
        let chosen = entry
            .ok_or(super::Refusal::NoEndpoints)
            .and_then(|entry| choose_for(entry, target.service_target(), node, client_ip, turn));
        match chosen {
            Ok((pod_ip, pod_port)) => {
                let endpoint = SocketAddr::new(IpAddr::V4(loopback_alias(pod_ip)), pod_port);
                Some((endpoint, target))
            }
            Err(why) => {
                refuse(self, &target, why);
                None
            }
        }
    }
}

/// Splices one connection to an endpoint on this node, or closes it.
async fn forward(mut client: TcpStream, peer: SocketAddr, listener: Listener, shared: &Shared) {
    let Some((endpoint, target)) = shared.pick(listener, peer) else {
        return;
    };
    let pod_ip = endpoint.ip();
    if !shared.directory.reach(endpoint) {
        return;
    }
    let mut upstream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(endpoint))
        .await
    {
        Ok(Ok(upstream)) => upstream,
        Ok(Err(err)) => {
            tracing::debug!(%endpoint, %pod_ip, %err, "the endpoint refused a forwarded connection");
            return;
        }
        Err(_) => {
            tracing::debug!(%endpoint, %pod_ip, "the endpoint did not answer in time");
            return;
        }
    };
    upstream.set_nodelay(true).ok();
    lock(&shared.refused).remove(&target);
    if let Err(err) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(%peer, %endpoint, %err, "forwarded connection ended");
    }
}

/// Closes a connection that has nowhere to go, saying why once per Service.
fn refuse(shared: &Shared, target: &Target, why: super::Refusal) {
    if !lock(&shared.refused).insert(target.clone()) {
        return;
    }
    let reason = match why {
        super::Refusal::Elsewhere => {
            "its externalTrafficPolicy is Local and none of its ready endpoints runs on this node"
        }
        _ => "it has no ready endpoint for this port",
    };
    tracing::warn!(service = %target.service(), port = target.port,
        reason, "closing connections to a NodePort/LoadBalancer Service");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use wasmfleet_protocol::service::{Exposed, ServiceAddress, ServiceEntry, ServicePort};

    fn entry(name: &str, port: u16) -> ServiceEntry {
        ServiceEntry {
            namespace: "default".into(),
            name: name.into(),
            address: ServiceAddress::ClusterIp("10.43.0.2".parse().unwrap()),
            ports: vec![ServicePort {
                name: String::new(),
                port,
                protocol: Protocol::Tcp,
            }],
            client_ip_affinity: false,
            endpoints: vec![],
        }
    }

    fn exposed(name: &str, node_port: Option<u16>, load_balancer: bool) -> ExposedService {
        ExposedService {
            namespace: "default".into(),
            name: name.into(),
            node_ports: vec![node_port],
            load_balancer,
            local_only: false,
        }
    }

    fn table(lb_nodes: &[&str]) -> ServiceTable {
        ServiceTable {
            revision: 1,
            service_cidr: Some("10.43.0.0/16".parse().unwrap()),
            services: vec![entry("np", 80), entry("lb", 18080), entry("lb2", 18080)],
            exposed: Exposed {
                services: vec![
                    exposed("lb", Some(30081), true),
                    exposed("lb2", None, true),
                    exposed("np", Some(30080), false),
                ],
                load_balancer_nodes: lb_nodes.iter().map(|n| (*n).to_owned()).collect(),
            },
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn tcp(s: &str) -> Listener {
        Listener {
            addr: addr(s),
            udp: false,
        }
    }

    #[test]
    fn every_node_listens_on_node_ports_and_eligible_ones_on_load_balancer_ports() {
        let ip: IpAddr = "192.0.2.2".parse().unwrap();
        let (wanted, conflicts) = listeners(&table(&["pi-1"]), "pi-1", ip);
        let addrs: Vec<SocketAddr> = wanted.keys().map(|l| l.addr).collect();
        assert_eq!(
            addrs,
            [
                addr("127.0.0.1:18080"),
                addr("127.0.0.1:30080"),
                addr("127.0.0.1:30081"),
                addr("192.0.2.2:18080"),
                addr("192.0.2.2:30080"),
                addr("192.0.2.2:30081"),
            ]
        );
        assert_eq!(wanted[&tcp("192.0.2.2:30081")].name, "lb");
        assert_eq!(wanted[&tcp("192.0.2.2:30081")].port, 18080);
        assert_eq!(wanted[&tcp("192.0.2.2:30080")].port, 80);
        assert_eq!(wanted[&tcp("192.0.2.2:18080")].name, "lb", "first one wins");
        assert_eq!(conflicts.len(), 2, "lb2 wants 18080 on both addresses");

        let (other, _) = listeners(&table(&["pi-1"]), "pi-2", ip);
        assert_eq!(other.len(), 4, "not a load-balancer node: node ports only");
    }

    #[test]
    fn a_loopback_node_address_is_listened_on_once() {
        let (wanted, _) = listeners(&table(&[]), "pi-1", "127.0.0.1".parse().unwrap());
        assert!(wanted.keys().all(|l| !l.udp));
        let addrs: Vec<SocketAddr> = wanted.keys().map(|l| l.addr).collect();
        assert_eq!(addrs, [addr("127.0.0.1:30080"), addr("127.0.0.1:30081")]);
    }

    #[test]
    fn udp_ports_get_udp_listeners_beside_tcp_ones_of_the_same_number() {
        let mut table = table(&["pi-1"]);
        table.services[0].ports.push(ServicePort {
            name: "dns".into(),
            port: 80,
            protocol: Protocol::Udp,
        });
        table.exposed.services[2].node_ports.push(Some(30080));
        let (wanted, conflicts) = listeners(&table, "pi-2", "192.0.2.2".parse().unwrap());
        assert!(conflicts.is_empty());
        let udp = Listener {
            addr: addr("192.0.2.2:30080"),
            udp: true,
        };
        assert_eq!(wanted[&udp].protocol, Protocol::Udp);
        assert_eq!(wanted[&tcp("192.0.2.2:30080")].protocol, Protocol::Tcp);
        assert_eq!(wanted[&udp].service_target().protocol, Protocol::Udp);
        assert_eq!(wanted.len(), 6);
    }
}
