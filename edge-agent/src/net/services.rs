//! The node's table of Services (kube-proxy's view of the cluster), shared by every pod's
//! network: a connect to a ClusterIP goes to one of the Service's endpoints, a lookup of a
//! Service name answers its ClusterIP (or, headless, an endpoint's pod IP).
//!
//! The link replaces the table whenever the server publishes one ([`ServiceDirectory::
//! replace`]); the agent persists it, so pods reach Services while no server is reachable.
//! Every connect picks an endpoint anew: in turn (like IPVS's round robin), or by the
//! client's IP with `sessionAffinity: ClientIP` (a client keeps its endpoint while the
//! endpoints do not change), among the ready endpoints on every node (pods on other nodes
//! are reached through [`super::remote`]), or only this node's with
//! `externalTrafficPolicy: Local` ([`Scope::Local`]). A Service with no endpoints refuses
//! the connect as a closed port would. UDP ports are routed the same way, per flow
//! (`super::udp_flows`).
//!
//! The directory also holds the table of HTTP routes the ingress serves by
//! ([`super::ingress`]), replaced and persisted the same way, and the certificates it
//! serves HTTPS with ([`super::ingress_tls`], replaced the same way, never persisted).

use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use wasmfleet_protocol::network::Protocol;
use wasmfleet_protocol::routes::RouteTable;
use wasmfleet_protocol::service::{Resolved, ServiceEntry, ServiceTable};

use wasmfleet_protocol::ingress_tls::IngressCertificates;

use super::Refusal;
use super::ingress_tls::IngressTls;
use super::remote::Remote;
use super::udp_egress::UdpEgress;

/// The table of Services, shared by the link (which replaces it) and every pod, and the
/// table of HTTP routes the ingress serves by.
#[derive(Debug, Clone)]
pub struct ServiceDirectory {
    node: Arc<str>,
    table: Arc<RwLock<Arc<ServiceTable>>>,
    routes: Arc<RwLock<Arc<RouteTable>>>,
    /// Counts connects, for round robin over endpoints.
    turn: Arc<AtomicUsize>,
    /// Counts lookups of headless names, for round robin over their addresses (apart from
    /// `turn`: a lookup followed by a connect must not step the connects' turn twice, which
    /// sent every connect of a client that resolves each time to one of two endpoints).
    lookups: Arc<AtomicUsize>,
    /// Counts replacements, so the node's listeners (`net::node_ports`) follow the table.
    changes: Arc<tokio::sync::watch::Sender<u64>>,
    /// Pods on other nodes, once the agent has started reaching them.
    remote: Arc<OnceLock<Remote>>,
    /// The proxies of pods' UDP to allowed outside addresses, once the agent runs them.
    udp_egress: Arc<OnceLock<UdpEgress>>,
    /// The certificates the ingress serves HTTPS with (memory only, never persisted).
    tls: IngressTls,
}

/// Two handles are equal when they share one table.
impl PartialEq for ServiceDirectory {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.table, &other.table)
    }
}

impl Eq for ServiceDirectory {}

impl ServiceDirectory {
    /// The directory of node `node`, starting from `table` (the persisted one, if any).
    pub fn new(node: &str, table: Option<ServiceTable>) -> Self {
        Self {
            node: node.into(),
            table: Arc::new(RwLock::new(Arc::new(table.unwrap_or_default()))),
            routes: Arc::default(),
            turn: Arc::default(),
            lookups: Arc::default(),
            changes: Arc::new(tokio::sync::watch::Sender::new(0)),
            remote: Arc::default(),
            udp_egress: Arc::default(),
            tls: IngressTls::default(),
        }
    }

    /// From now on, pods on other nodes are reached through `remote` (the agent does this
    /// once at start).
    pub fn attach_remote(&self, remote: Remote) {
        if self.remote.set(remote).is_err() {
            tracing::warn!("the remote pods were attached twice; keeping the first");
        }
    }

    /// From now on, pods' UDP to allowed outside addresses goes through `egress` (the agent
    /// does this once at start).
    pub fn attach_udp_egress(&self, egress: UdpEgress) {
        if self.udp_egress.set(egress).is_err() {
            tracing::warn!("the UDP egress proxies were attached twice; keeping the first");
        }
    }

    /// The UDP egress proxies, once attached.
    pub fn udp_egress(&self) -> Option<&UdpEgress> {
        self.udp_egress.get()
    }

    /// How pods on other nodes are reached, once attached.
    pub fn remote(&self) -> Option<&Remote> {
        self.remote.get()
    }

    /// Makes the host address `host` connectable if it is a pod on another node (see
    /// [`Remote::reach`]); `false` if that failed.
    pub fn reach(&self, host: std::net::SocketAddr) -> bool {
        match self.remote.get() {
            Some(remote) => remote.reach(host),
            None => true,
        }
    }

    /// Makes the host address `host` ready for datagrams if it is a pod on another node
    /// (see [`Remote::reach_datagrams`]).
    pub fn reach_datagrams(&self, host: std::net::SocketAddr) -> Result<(), Refusal> {
        match self.remote.get() {
            Some(remote) => remote.reach_datagrams(host),
            None => Ok(()),
        }
    }

    /// This node's own address in its pod range (`.1`), once the table of peers lists the
    /// range: the source of traffic the node itself sends to pods over UDP.
    pub fn node_pod_address(&self) -> Option<Ipv4Addr> {
        self.remote.get()?.node_pod_address()
    }

    /// Replaces the table of HTTP routes (the server sent a new one).
    pub fn replace_routes(&self, table: RouteTable) {
        *self
            .routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(table);
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Replaces the ingress's certificates (`None`: the server cleared them, this node
    /// serves no HTTPS).
    pub fn replace_certificates(&self, certificates: Option<IngressCertificates>) {
        match certificates {
            Some(certificates) => self.tls.replace(certificates),
            None => self.tls.clear(),
        }
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The ingress's certificates.
    pub fn tls(&self) -> &IngressTls {
        &self.tls
    }

    /// The current table of HTTP routes.
    pub fn routes(&self) -> Arc<RouteTable> {
        Arc::clone(
            &self
                .routes
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Where a request for the Service `namespace/name` on `port` from `client` goes: an
    /// endpoint's pod IP and port on this node.
    pub fn route_to_service(
        &self,
        client: Ipv4Addr,
        namespace: &str,
        name: &str,
        port: u16,
    ) -> Result<(Ipv4Addr, u16), Refusal> {
        let table = self.table();
        let entry = table
            .services
            .iter()
            .find(|s| s.namespace == namespace && s.name == name)
            .ok_or(Refusal::NoEndpoints)?;
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        choose(entry, port, &self.node, client, turn, Scope::Cluster)
    }

    /// The node this directory routes for.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Wakes on every [`Self::replace`].
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Replaces the table (the server sent a new one).
    pub fn replace(&self, table: ServiceTable) {
        *self
            .table
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(table);
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The current table.
    pub fn table(&self) -> Arc<ServiceTable> {
        Arc::clone(
            &self
                .table
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Where a connect from `client` to the ClusterIP `vip` on `port` goes: an endpoint's
    /// pod IP and port. `None`: `vip` is not in the service CIDR.
    pub fn route(
        &self,
        client: Ipv4Addr,
        vip: Ipv4Addr,
        port: u16,
    ) -> Option<Result<(Ipv4Addr, u16), Refusal>> {
        self.route_protocol(client, vip, port, Protocol::Tcp, Scope::Cluster)
    }

    /// Where a new UDP flow from `client` to the ClusterIP `vip` on `port` goes: an
    /// endpoint's pod IP and port, on any node. `None`: `vip` is not in the service CIDR.
    pub fn route_datagrams(
        &self,
        client: Ipv4Addr,
        vip: Ipv4Addr,
        port: u16,
    ) -> Option<Result<(Ipv4Addr, u16), Refusal>> {
        self.route_protocol(client, vip, port, Protocol::Udp, Scope::Cluster)
    }

    fn route_protocol(
        &self,
        client: Ipv4Addr,
        vip: Ipv4Addr,
        port: u16,
        protocol: Protocol,
        scope: Scope,
    ) -> Option<Result<(Ipv4Addr, u16), Refusal>> {
        let table = self.table();
        if !table.is_service_ip(vip) {
            return None;
        }
        let entry = table.by_cluster_ip(vip).ok_or(Refusal::NoEndpoints);
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let to = Target {
            port,
            protocol,
            scope,
        };
        Some(entry.and_then(|entry| choose_for(entry, to, &self.node, client, turn)))
    }

    /// Whether `ip` is the IP of a pod on another node (as far as the peer table knows).
    pub fn is_remote_pod(&self, ip: Ipv4Addr) -> bool {
        self.remote
            .get()
            .is_some_and(|remote| remote.is_remote_pod(ip))
    }

    /// What a lookup of `name` by a pod in `namespace` gives, if it is a Service name.
    pub fn resolve(&self, name: &str, namespace: &str) -> Option<Result<Resolved, Refusal>> {
        let resolved = self.table().resolve(name, namespace)?;
        Some(match resolved {
            Resolved::Addresses(ips) if ips.is_empty() => Err(Refusal::NoEndpoints),
            Resolved::Addresses(ips) => {
                // One address per lookup (wasi's resolver stream cannot be built here),
                // in turn, so clients that resolve per connection spread over them.
                let turn = self.lookups.fetch_add(1, Ordering::Relaxed);
                Ok(Resolved::Addresses(vec![ips[turn % ips.len()]]))
            }
            alias => Ok(alias),
        })
    }
}

/// Which endpoints a connection may go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The ready endpoints on every node.
    Cluster,
    /// Only the ones on this node (`externalTrafficPolicy: Local`).
    Local,
}

/// What a client asks a Service for: a port, its protocol and which endpoints may serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The Service port.
    pub port: u16,
    /// TCP or UDP (the same port number of each is a different Service port).
    pub protocol: Protocol,
    /// Which endpoints may serve it.
    pub scope: Scope,
}

/// Pure: the endpoint of `entry` a TCP connect to `port` from `client` goes to.
pub fn choose(
    entry: &ServiceEntry,
    port: u16,
    node: &str,
    client: Ipv4Addr,
    turn: usize,
    scope: Scope,
) -> Result<(Ipv4Addr, u16), Refusal> {
    let to = Target {
        port,
        protocol: Protocol::Tcp,
        scope,
    };
    choose_for(entry, to, node, client, turn)
}

/// Pure: the endpoint of `entry` that traffic for `to` from `client` goes to.
pub fn choose_for(
    entry: &ServiceEntry,
    to: Target,
    node: &str,
    client: Ipv4Addr,
    turn: usize,
) -> Result<(Ipv4Addr, u16), Refusal> {
    let Target {
        port,
        protocol,
        scope,
    } = to;
    let index = entry
        .port_index(port, protocol)
        .ok_or(Refusal::NoEndpoints)?;
    let serving: Vec<(Ipv4Addr, u16, bool)> = entry
        .serving(index)
        .map(|(endpoint, target)| {
            let here = endpoint.node.is_empty() || endpoint.node == node;
            (endpoint.ip, target, here)
        })
        .collect();
    if serving.is_empty() {
        return Err(Refusal::NoEndpoints);
    }
    let local: Vec<(Ipv4Addr, u16)> = serving
        .iter()
        .filter(|(_, _, here)| *here || scope == Scope::Cluster)
        .map(|(ip, target, _)| (*ip, *target))
        .collect();
    if local.is_empty() {
        return Err(Refusal::Elsewhere);
    }
    let pick = match entry.client_ip_affinity {
        true => {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            client.hash(&mut hasher);
            usize::try_from(hasher.finish() % local.len() as u64).unwrap_or(0)
        }
        false => turn % local.len(),
    };
    Ok(local[pick])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use wasmfleet_protocol::service::{Endpoint, ServiceAddress, ServicePort};

    fn entry(affinity: bool, nodes: &[&str]) -> ServiceEntry {
        ServiceEntry {
            namespace: "default".into(),
            name: "web".into(),
            address: ServiceAddress::ClusterIp("10.43.0.2".parse().unwrap()),
            ports: vec![ServicePort {
                name: String::new(),
                port: 80,
                protocol: Protocol::Tcp,
            }],
            client_ip_affinity: affinity,
            endpoints: nodes
                .iter()
                .enumerate()
                .map(|(i, node)| Endpoint {
                    ip: Ipv4Addr::new(10, 42, 0, 2 + u8::try_from(i).unwrap()),
                    node: (*node).into(),
                    target_ports: vec![Some(8080)],
                })
                .collect(),
        }
    }

    fn client() -> Ipv4Addr {
        "10.42.0.9".parse().unwrap()
    }

    #[test]
    fn connects_take_the_endpoints_of_every_node_in_turn_or_only_local_ones() {
        let web = entry(false, &["pi-1", "pi-2", "pi-1"]);
        let picks = |scope| -> Vec<Ipv4Addr> {
            (0..4)
                .map(|turn| choose(&web, 80, "pi-1", client(), turn, scope).unwrap().0)
                .collect()
        };
        let (a, b, c) = (
            Ipv4Addr::new(10, 42, 0, 2),
            Ipv4Addr::new(10, 42, 0, 3),
            Ipv4Addr::new(10, 42, 0, 4),
        );
        assert_eq!(picks(Scope::Cluster), [a, b, c, a]);
        assert_eq!(picks(Scope::Local), [a, c, a, c]);
        assert_eq!(
            choose(&web, 80, "pi-1", client(), 0, Scope::Local)
                .unwrap()
                .1,
            8080
        );
    }

    #[test]
    fn client_ip_affinity_keeps_a_client_on_one_endpoint() {
        let web = entry(true, &["pi-1", "pi-1", "pi-1"]);
        let pick = |turn| choose(&web, 80, "pi-1", client(), turn, Scope::Cluster).unwrap();
        let first = pick(0);
        assert!((1..10).all(|turn| pick(turn) == first));
    }

    #[test]
    fn no_endpoints_or_no_local_ones_for_local_traffic_are_refused_clearly() {
        assert_eq!(
            choose(&entry(false, &[]), 80, "pi-1", client(), 0, Scope::Cluster),
            Err(Refusal::NoEndpoints)
        );
        assert_eq!(
            choose(
                &entry(false, &["pi-2"]),
                80,
                "pi-1",
                client(),
                0,
                Scope::Local
            ),
            Err(Refusal::Elsewhere)
        );
        assert!(
            choose(
                &entry(false, &["pi-2"]),
                80,
                "pi-1",
                client(),
                0,
                Scope::Cluster
            )
            .is_ok()
        );
        assert_eq!(
            choose(
                &entry(false, &["pi-1"]),
                81,
                "pi-1",
                client(),
                0,
                Scope::Cluster
            ),
            Err(Refusal::NoEndpoints)
        );
    }

    #[test]
    fn a_client_that_resolves_before_each_connect_still_takes_the_endpoints_in_turn() {
        let directory = ServiceDirectory::new(
            "pi-1",
            Some(ServiceTable {
                revision: 1,
                service_cidr: Some("10.43.0.0/16".parse().unwrap()),
                services: vec![entry(false, &["pi-1", "pi-2"])],
                ..ServiceTable::default()
            }),
        );
        let vip = "10.43.0.2".parse().unwrap();
        let picks: std::collections::BTreeSet<Ipv4Addr> = (0..4)
            .map(|_| {
                assert!(directory.resolve("web", "default").is_some());
                directory.route(client(), vip, 80).unwrap().unwrap().0
            })
            .collect();
        assert_eq!(picks.len(), 2, "{picks:?}");
    }

    #[test]
    fn the_directory_routes_only_the_service_cidr() {
        let directory = ServiceDirectory::new(
            "pi-1",
            Some(ServiceTable {
                revision: 1,
                service_cidr: Some("10.43.0.0/16".parse().unwrap()),
                services: vec![entry(false, &["pi-1"])],
                ..ServiceTable::default()
            }),
        );
        let vip = "10.43.0.2".parse().unwrap();
        assert_eq!(
            directory.route(client(), vip, 80),
            Some(Ok((Ipv4Addr::new(10, 42, 0, 2), 8080)))
        );
        let unknown = "10.43.7.7".parse().unwrap();
        assert_eq!(
            directory.route(client(), unknown, 80),
            Some(Err(Refusal::NoEndpoints))
        );
        assert_eq!(
            directory.route(client(), "10.42.0.5".parse().unwrap(), 80),
            None
        );
    }
}
