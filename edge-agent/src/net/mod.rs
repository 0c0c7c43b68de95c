//! The pod network on the node (CNI's role): each pod's virtual IP, mapped onto its own
//! host loopback alias, and what its sockets may reach.
//!
//! A pod's containers are wasip2 components whose `wasi:sockets` calls go through
//! [`sockets`], which asks the pod's [`PodNet`] where each address really is:
//! - a bind on `0.0.0.0:P`, `127.0.0.1:P` or the pod IP binds the pod's alias `127.b.c.d`
//!   on the same port, so the containers of a pod share one port space (a second bind of
//!   a port is `address-in-use`) and pods are apart without any port translation;
//! - a connect to `127.0.0.1` or the pod's own IP reaches the pod's alias, a connect to
//!   another pod's IP reaches that pod's alias; addresses seen by the guest are mapped
//!   back (a peer pod shows its pod IP, a peer in the same pod `127.0.0.1`);
//! - a connect to a Service's ClusterIP reaches one of its endpoints, and a lookup of a
//!   Service name (`svc`, `svc.ns`, `svc.ns.svc.cluster.local`) answers its ClusterIP
//!   ([`services`]);
//! - anything outside the cluster is reachable only when the pod's egress rules allow it
//!   (`wasmfleet.io/egress`): every other connect and name lookup is refused at once
//!   with `access-denied`, never left to hang.
//!
//! The decisions are pure ([`PodNet`]); [`sockets`] applies them to wasmtime's traits,
//! [`http_egress`] to a component's outgoing `wasi:http` requests. [`http_listener`] serves
//! HTTP on a pod's own address, for containers that are `wasi:http` proxies.
//!
//! Pods on other nodes are reached at their aliases too: [`remote`] opens a forwarder there
//! whose connections travel as streams of a [`tunnel`] to the pod's node, which
//! [`peers`] dials directly or through the server's relay, authenticated both ways with
//! the nodes' certificates.
//!
//! [`ingress`] is the node's HTTP reverse proxy for Ingresses and Gateways: it takes
//! requests on the node's ingress port and Gateway listener ports and forwards each to an
//! endpoint of the Service its route picks, terminating TLS on its HTTPS ports with the
//! certificates of [`ingress_tls`] and matching canaries' header patterns with
//! [`header_patterns`]. [`node_ports`] serves NodePort and
//! LoadBalancer Services on the node's own addresses.
//!
//! UDP follows the same rules on the same aliases (a pod's UDP and TCP ports are separate
//! spaces): [`sockets`] maps each datagram's destination with
//! [`PodNet::datagram_address`], and [`udp_flows`] keeps, per socket, which endpoint each
//! ClusterIP flow goes to (until it has been idle for 30 s, like conntrack's UDP timeout),
//! so that replies show the ClusterIP as their source. A pod or Service endpoint on
//! another node is reached through a UDP forwarder at its alias ([`remote_datagrams`]),
//! whose flows travel as streams of the tunnel ([`datagrams`]); an address outside the
//! cluster that the egress rules allow through a proxy per flow ([`udp_egress`]); any
//! other address is refused at once.

pub mod datagrams;
pub mod header_patterns;
pub mod http_egress;
pub mod http_listener;
pub mod ingress;
pub mod ingress_tls;
pub mod node_ports;
pub mod peers;
pub mod remote;
pub mod remote_datagrams;
pub mod services;
pub mod sockets;
pub mod tunnel;
pub mod udp_egress;
pub mod udp_flows;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Mutex;

use wasmfleet_protocol::network::{ClusterCidr, EgressRule, PodNetwork, loopback_alias};
use wasmfleet_protocol::service::{CLUSTER_DOMAIN, Resolved};

pub use services::ServiceDirectory;

/// How many addresses learned from allowed name lookups a pod keeps.
const MAX_LEARNED: usize = 1024;

/// Why the pod network refused a socket operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The pod may bind only its own addresses (and IPv4 only).
    NotBindable,
    /// The destination is outside the cluster and not in the egress rules.
    Denied,
    /// IPv6 is not part of the pod network.
    Ipv6,
    /// The Service (or ClusterIP) has no endpoint that takes traffic on that port.
    NoEndpoints,
    /// The Service's traffic must stay on this node, and none of its endpoints runs here.
    Elsewhere,
    /// A cluster name that names no Service.
    NoSuchName,
    /// UDP to an allowed address outside the cluster where no egress proxies run (see
    /// [`PodNet::is_udp_egress`]; the agent always runs them).
    UdpEgress,
    /// The node of the destination pod cannot be reached (its datagrams are refused for a
    /// while after a flow failed to open), or too many forwarders are open.
    Unreachable,
    /// The node has no room for another socket (UDP egress proxies).
    SocketLimit,
}

/// One pod's network: its addresses and egress rules, shared by its containers.
#[derive(Debug)]
pub struct PodNet {
    ip: Ipv4Addr,
    alias: Ipv4Addr,
    cluster: ClusterCidr,
    egress: Vec<EgressRule>,
    namespace: String,
    services: ServiceDirectory,
    /// Addresses that allowed names resolved to, with the port their rule allows.
    learned: Mutex<HashMap<Ipv4Addr, Option<u16>>>,
}

impl PartialEq for PodNet {
    fn eq(&self, other: &Self) -> bool {
        (self.ip, self.cluster, &self.egress) == (other.ip, other.cluster, &other.egress)
    }
}

impl Eq for PodNet {}

/// What a name lookup inside the pod becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Answered by the pod network itself with this address.
    Local(Ipv4Addr),
    /// Passed to the host resolver under `name`; addresses it returns become reachable
    /// on the port the rule allows (`port`, or any).
    Host {
        /// The name to resolve (an ExternalName Service's external name, or the name asked).
        name: String,
        /// The only port the rule allows, if it names one.
        port: Option<u16>,
    },
}

impl PodNet {
    /// The network of a pod in `namespace`, routing Services by `services`, or why its
    /// delivered network is unusable.
    pub fn new(
        network: &PodNetwork,
        namespace: &str,
        services: ServiceDirectory,
    ) -> Result<Self, String> {
        let cluster = ClusterCidr::try_from(network.cluster_cidr)?;
        if !cluster.net().contains(&network.ip) {
            return Err(format!(
                "pod IP {} is outside the cluster CIDR {cluster}",
                network.ip
            ));
        }
        Ok(Self {
            ip: network.ip,
            alias: loopback_alias(network.ip),
            cluster,
            egress: network.egress.clone(),
            namespace: namespace.to_owned(),
            services,
            learned: Mutex::default(),
        })
    }

    /// The pod's IP.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// The host loopback alias the pod's sockets use.
    pub fn alias(&self) -> Ipv4Addr {
        self.alias
    }

    /// The node's Services (and its way to pods on other nodes).
    pub fn services(&self) -> &ServiceDirectory {
        &self.services
    }

    /// Where a guest's bind of `guest` really binds.
    pub fn bind_address(&self, guest: SocketAddr) -> Result<SocketAddr, Refusal> {
        let ip = v4(guest.ip())?;
        if ip.is_unspecified() || ip.is_loopback() || ip == self.ip {
            Ok(host_addr(self.alias, guest.port()))
        } else {
            Err(Refusal::NotBindable)
        }
    }

    /// Where a guest's connect to `guest` really goes, if the pod may go there.
    pub fn connect_address(&self, guest: SocketAddr) -> Result<SocketAddr, Refusal> {
        let ip = v4(guest.ip())?;
        let port = guest.port();
        if ip.is_loopback() || ip == self.ip {
            return Ok(host_addr(self.alias, port));
        }
        if self.cluster.net().contains(&ip) {
            return Ok(host_addr(loopback_alias(ip), port));
        }
        if let Some(routed) = self.services.route(self.ip, ip, port) {
            let (endpoint, target) = routed?;
            return Ok(host_addr(loopback_alias(endpoint), target));
        }
        if self.egress_allows(ip, port) {
            return Ok(guest);
        }
        Err(Refusal::Denied)
    }

    /// Where a guest's UDP datagram to `guest` really goes, if the pod may send it there:
    /// like [`Self::connect_address`] (a pod or Service endpoint on another node is its
    /// alias, which [`ServiceDirectory::reach_datagrams`] prepares), but never outside the
    /// cluster (a pod's UDP socket is bound on its loopback alias, which cannot reach
    /// other hosts: an address the egress rules allow is [`Refusal::UdpEgress`], and goes
    /// through a proxy instead, see [`udp_egress`]).
    pub fn datagram_address(&self, guest: SocketAddr) -> Result<SocketAddr, Refusal> {
        let ip = v4(guest.ip())?;
        let port = guest.port();
        if ip.is_loopback() || ip == self.ip {
            return Ok(host_addr(self.alias, port));
        }
        if self.cluster.net().contains(&ip) {
            return Ok(host_addr(loopback_alias(ip), port));
        }
        if let Some(routed) = self.services.route_datagrams(self.ip, ip, port) {
            let (endpoint, target) = routed?;
            return Ok(host_addr(loopback_alias(endpoint), target));
        }
        match self.egress_allows(ip, port) {
            true => Err(Refusal::UdpEgress),
            false => Err(Refusal::Denied),
        }
    }

    /// Whether a datagram to `guest` leaves the cluster through a UDP egress proxy: an
    /// address outside the cluster and the service CIDR that the egress rules allow.
    pub fn is_udp_egress(&self, guest: SocketAddr) -> bool {
        match guest.ip() {
            IpAddr::V4(ip) => {
                !self.cluster.net().contains(&ip)
                    && !self.services.table().is_service_ip(ip)
                    && self.egress_allows(ip, guest.port())
            }
            IpAddr::V6(_) => false,
        }
    }

    /// Whether `guest` is a Service's address (in the service CIDR): a socket connected to
    /// it shows it as its peer, not the endpoint it reached.
    pub fn is_service_address(&self, guest: SocketAddr) -> bool {
        matches!(guest.ip(), IpAddr::V4(ip) if self.services.table().is_service_ip(ip))
    }

    /// Whether the pod's sockets connect to `ip` from its own alias (cluster traffic) or
    /// from the host's addresses (egress).
    pub fn is_cluster_destination(&self, host: SocketAddr) -> bool {
        matches!(host.ip(), IpAddr::V4(ip) if ip.is_loopback())
    }

    /// The peer address the guest sees for the host address `host`: the pod's own alias
    /// shows as `127.0.0.1` (a peer in the same pod is on localhost), another pod's alias
    /// as that pod's IP.
    pub fn guest_peer(&self, host: SocketAddr) -> SocketAddr {
        match host.ip() {
            IpAddr::V4(ip) if ip == self.alias => host_addr(Ipv4Addr::LOCALHOST, host.port()),
            _ => self.guest_address(host),
        }
    }

    /// The address the guest sees for the host address `host`: a pod's alias shows as its
    /// pod IP.
    pub fn guest_address(&self, host: SocketAddr) -> SocketAddr {
        match host.ip() {
            IpAddr::V4(ip) => match self.cluster.pod_ip_of_alias(ip) {
                Some(pod_ip) => SocketAddr::new(pod_ip.into(), host.port()),
                None => host,
            },
            IpAddr::V6(_) => host,
        }
    }

    /// What a lookup of `name` becomes, if the pod may look it up at all.
    pub fn lookup(&self, name: &str, pod_name: &str) -> Result<Lookup, Refusal> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if name == "localhost" {
            return Ok(Lookup::Local(Ipv4Addr::LOCALHOST));
        }
        if name == pod_name {
            return Ok(Lookup::Local(self.ip));
        }
        let name = match self.services.resolve(&name, &self.namespace) {
            Some(Ok(Resolved::Addresses(ips))) => {
                return ips
                    .first()
                    .copied()
                    .map(Lookup::Local)
                    .ok_or(Refusal::NoEndpoints);
            }
            Some(Ok(Resolved::Alias(external))) => external,
            Some(Err(refusal)) => return Err(refusal),
            None if is_cluster_name(&name) => return Err(Refusal::NoSuchName),
            None => name,
        };
        self.egress
            .iter()
            .find(|rule| rule.allows_name(&name))
            .map(|rule| Lookup::Host {
                port: rule.port(),
                name: name.clone(),
            })
            .ok_or(Refusal::Denied)
    }

    /// Remembers that an allowed name resolved to `ip` (reachable on `port`, or any).
    pub fn learn(&self, ip: IpAddr, port: Option<u16>) {
        let IpAddr::V4(ip) = ip else { return };
        let mut learned = self.learned();
        if learned.len() < MAX_LEARNED || learned.contains_key(&ip) {
            learned.insert(ip, port);
        }
    }

    /// The final gate on a host address the pod's sockets are about to use (wasmtime's
    /// `socket_addr_check`): binds only on the alias (or the implicit `0.0.0.0:0` of a
    /// client socket), connects only to cluster aliases and allowed egress.
    pub fn allows_host_bind(&self, host: SocketAddr) -> bool {
        match host.ip() {
            IpAddr::V4(ip) => ip == self.alias || (ip.is_unspecified() && host.port() == 0),
            IpAddr::V6(_) => false,
        }
    }

    /// See [`Self::allows_host_bind`].
    pub fn allows_host_connect(&self, host: SocketAddr) -> bool {
        match host.ip() {
            IpAddr::V4(ip) => {
                self.cluster.pod_ip_of_alias(ip).is_some()
                    || ip == self.alias
                    || self.egress_allows(ip, host.port())
            }
            IpAddr::V6(_) => false,
        }
    }

    fn egress_allows(&self, ip: Ipv4Addr, port: u16) -> bool {
        if ip.is_loopback() || ip.is_unspecified() {
            return false;
        }
        self.egress.iter().any(|rule| rule.allows_address(ip, port))
            || self
                .learned()
                .get(&ip)
                .is_some_and(|only| only.is_none_or(|p| p == port))
    }

    fn learned(&self) -> std::sync::MutexGuard<'_, HashMap<Ipv4Addr, Option<u16>>> {
        // A plain map of addresses: a panic elsewhere cannot leave it half-written.
        self.learned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Whether `name` can only be a cluster name: a single label (a Service of the pod's
/// namespace) or a name under the cluster domain.
fn is_cluster_name(name: &str) -> bool {
    !name.contains('.') || name.ends_with(".svc") || name.ends_with(CLUSTER_DOMAIN)
}

fn v4(ip: IpAddr) -> Result<Ipv4Addr, Refusal> {
    match ip {
        IpAddr::V4(ip) => Ok(ip),
        IpAddr::V6(_) => Err(Refusal::Ipv6),
    }
}

fn host_addr(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(ip, port))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use wasmfleet_protocol::network::parse_egress;

    fn pod(egress: &str) -> PodNet {
        pod_with(egress, ServiceDirectory::new("pi-1", None))
    }

    fn pod_with(egress: &str, services: ServiceDirectory) -> PodNet {
        let network = PodNetwork {
            ip: "10.42.1.5".parse().unwrap(),
            cluster_cidr: ClusterCidr::default().net(),
            ports: vec![],
            egress: parse_egress(egress).unwrap(),
        };
        PodNet::new(&network, "default", services).unwrap()
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn binds_of_any_own_address_land_on_the_alias_on_the_same_port() {
        let net = pod("");
        for guest in ["0.0.0.0:8080", "127.0.0.1:8080", "10.42.1.5:8080"] {
            assert_eq!(net.bind_address(addr(guest)), Ok(addr("127.42.1.5:8080")));
        }
        assert_eq!(
            net.bind_address(addr("10.42.1.6:80")),
            Err(Refusal::NotBindable)
        );
        assert_eq!(net.bind_address(addr("[::]:80")), Err(Refusal::Ipv6));
    }

    #[test]
    fn connects_reach_own_and_other_pods_through_their_aliases() {
        let net = pod("");
        assert_eq!(
            net.connect_address(addr("127.0.0.1:7")),
            Ok(addr("127.42.1.5:7"))
        );
        assert_eq!(
            net.connect_address(addr("10.42.1.5:7")),
            Ok(addr("127.42.1.5:7"))
        );
        assert_eq!(
            net.connect_address(addr("10.42.9.9:7")),
            Ok(addr("127.42.9.9:7"))
        );
        assert_eq!(net.guest_address(addr("127.42.9.9:7")), addr("10.42.9.9:7"));
        assert_eq!(net.guest_address(addr("1.2.3.4:7")), addr("1.2.3.4:7"));
        assert_eq!(net.guest_address(addr("127.42.1.5:7")), addr("10.42.1.5:7"));
        assert_eq!(net.guest_peer(addr("127.42.1.5:7")), addr("127.0.0.1:7"));
        assert_eq!(net.guest_peer(addr("127.42.9.9:7")), addr("10.42.9.9:7"));
    }

    #[test]
    fn egress_outside_the_cluster_needs_a_rule() {
        let net = pod("");
        assert_eq!(
            net.connect_address(addr("1.1.1.1:53")),
            Err(Refusal::Denied)
        );
        assert_eq!(
            net.connect_address(addr("192.168.1.1:80")),
            Err(Refusal::Denied)
        );
        let net = pod("1.1.1.1:53, 192.168.0.0/16");
        assert_eq!(
            net.connect_address(addr("1.1.1.1:53")),
            Ok(addr("1.1.1.1:53"))
        );
        assert_eq!(
            net.connect_address(addr("1.1.1.1:54")),
            Err(Refusal::Denied)
        );
        assert!(net.connect_address(addr("192.168.7.7:22")).is_ok());
        assert!(net.allows_host_connect(addr("192.168.7.7:22")));
        assert!(!net.allows_host_connect(addr("8.8.8.8:53")));
    }

    #[test]
    fn names_resolve_only_when_local_or_allowed_and_teach_their_addresses() {
        let net = pod("api.example.com:443");
        assert_eq!(
            net.lookup("localhost", "web"),
            Ok(Lookup::Local(Ipv4Addr::LOCALHOST))
        );
        assert_eq!(
            net.lookup("web", "web"),
            Ok(Lookup::Local("10.42.1.5".parse().unwrap()))
        );
        assert_eq!(net.lookup("evil.com", "web"), Err(Refusal::Denied));
        assert_eq!(
            net.lookup("API.example.com.", "web"),
            Ok(Lookup::Host {
                name: "api.example.com".into(),
                port: Some(443)
            })
        );
        assert_eq!(net.lookup("nosuch", "web"), Err(Refusal::NoSuchName));
        assert_eq!(
            net.lookup("nosuch.default.svc.cluster.local", "web"),
            Err(Refusal::NoSuchName)
        );
        assert_eq!(
            net.connect_address(addr("93.184.216.34:443")),
            Err(Refusal::Denied)
        );
        net.learn("93.184.216.34".parse().unwrap(), Some(443));
        assert!(net.connect_address(addr("93.184.216.34:443")).is_ok());
        assert_eq!(
            net.connect_address(addr("93.184.216.34:80")),
            Err(Refusal::Denied)
        );
    }

    #[test]
    fn the_host_gate_allows_only_the_alias_and_implicit_client_binds() {
        let net = pod("");
        assert!(net.allows_host_bind(addr("127.42.1.5:80")));
        assert!(net.allows_host_bind(addr("0.0.0.0:0")));
        assert!(!net.allows_host_bind(addr("0.0.0.0:80")));
        assert!(!net.allows_host_bind(addr("127.0.0.1:80")));
        assert!(net.allows_host_connect(addr("127.42.3.3:80")));
        assert!(!net.allows_host_connect(addr("127.0.0.1:22")));
    }

    #[test]
    fn services_are_reached_by_cluster_ip_and_by_name() {
        use wasmfleet_protocol::network::Protocol;
        use wasmfleet_protocol::service::{
            Endpoint, ServiceAddress, ServiceEntry, ServicePort, ServiceTable,
        };
        let entry = |name: &str, address| ServiceEntry {
            namespace: "default".into(),
            name: name.into(),
            address,
            ports: vec![ServicePort {
                name: String::new(),
                port: 80,
                protocol: Protocol::Tcp,
            }],
            client_ip_affinity: false,
            endpoints: vec![Endpoint {
                ip: "10.42.1.7".parse().unwrap(),
                node: "pi-1".into(),
                target_ports: vec![Some(8080)],
            }],
        };
        let services = ServiceDirectory::new("pi-1", None);
        let net = pod_with("example.com", services.clone());
        services.replace(ServiceTable {
            revision: 1,
            service_cidr: Some("10.43.0.0/16".parse().unwrap()),
            services: vec![
                entry(
                    "web",
                    ServiceAddress::ClusterIp("10.43.0.2".parse().unwrap()),
                ),
                entry("ext", ServiceAddress::ExternalName("example.com".into())),
                entry("other", ServiceAddress::ExternalName("other.org".into())),
            ],
            ..ServiceTable::default()
        });
        assert_eq!(
            net.connect_address(addr("10.43.0.2:80")),
            Ok(addr("127.42.1.7:8080"))
        );
        assert_eq!(
            net.connect_address(addr("10.43.0.2:81")),
            Err(Refusal::NoEndpoints)
        );
        assert!(net.is_service_address(addr("10.43.0.2:80")));
        assert!(!net.is_service_address(addr("10.42.1.7:8080")));
        assert_eq!(
            net.lookup("web.default.svc.cluster.local", "p"),
            Ok(Lookup::Local("10.43.0.2".parse().unwrap()))
        );
        assert_eq!(
            net.lookup("ext", "p"),
            Ok(Lookup::Host {
                name: "example.com".into(),
                port: None
            })
        );
        assert_eq!(net.lookup("other", "p"), Err(Refusal::Denied));
    }

    #[test]
    fn datagrams_reach_udp_endpoints_and_stay_inside_the_cluster() {
        use wasmfleet_protocol::network::Protocol;
        use wasmfleet_protocol::service::{
            Endpoint, ServiceAddress, ServiceEntry, ServicePort, ServiceTable,
        };
        let entry = |name: &str, vip: &str, node: &str| ServiceEntry {
            namespace: "default".into(),
            name: name.into(),
            address: ServiceAddress::ClusterIp(vip.parse().unwrap()),
            ports: vec![
                ServicePort {
                    name: "web".into(),
                    port: 80,
                    protocol: Protocol::Tcp,
                },
                ServicePort {
                    name: "dns".into(),
                    port: 53,
                    protocol: Protocol::Udp,
                },
            ],
            client_ip_affinity: false,
            endpoints: vec![Endpoint {
                ip: "10.42.1.7".parse().unwrap(),
                node: node.into(),
                target_ports: vec![Some(8080), Some(5353)],
            }],
        };
        let services = ServiceDirectory::new("pi-1", None);
        services.replace(ServiceTable {
            revision: 1,
            service_cidr: Some("10.43.0.0/16".parse().unwrap()),
            services: vec![
                entry("dns", "10.43.0.2", "pi-1"),
                entry("far", "10.43.0.3", "pi-2"),
            ],
            ..ServiceTable::default()
        });
        let net = pod_with("1.1.1.1:53", services);
        assert_eq!(
            net.datagram_address(addr("10.43.0.2:53")),
            Ok(addr("127.42.1.7:5353"))
        );
        // TCP and UDP ports of one number are different Service ports.
        assert_eq!(
            net.datagram_address(addr("10.43.0.2:80")),
            Err(Refusal::NoEndpoints)
        );
        assert_eq!(
            net.connect_address(addr("10.43.0.2:53")),
            Err(Refusal::NoEndpoints)
        );
        // An endpoint on another node is its alias (a forwarder takes it there).
        assert_eq!(
            net.datagram_address(addr("10.43.0.3:53")),
            Ok(addr("127.42.1.7:5353"))
        );
        assert_eq!(
            net.datagram_address(addr("127.0.0.1:53")),
            Ok(addr("127.42.1.5:53"))
        );
        assert_eq!(
            net.datagram_address(addr("10.42.9.9:53")),
            Ok(addr("127.42.9.9:53"))
        );
        assert_eq!(
            net.datagram_address(addr("1.1.1.1:53")),
            Err(Refusal::UdpEgress)
        );
        // An allowed outside address goes through a proxy (when the node runs them).
        assert!(net.is_udp_egress(addr("1.1.1.1:53")));
        assert!(!net.is_udp_egress(addr("8.8.8.8:53")));
        assert!(!net.is_udp_egress(addr("10.43.0.2:53")));
        assert!(!net.is_udp_egress(addr("10.42.9.9:53")));
        assert_eq!(
            net.datagram_address(addr("8.8.8.8:53")),
            Err(Refusal::Denied)
        );
    }

    #[test]
    fn a_pod_ip_outside_the_cluster_is_refused() {
        let network = PodNetwork {
            ip: "192.168.1.5".parse().unwrap(),
            cluster_cidr: ClusterCidr::default().net(),
            ports: vec![],
            egress: vec![],
        };
        let services = ServiceDirectory::new("pi-1", None);
        let err = PodNet::new(&network, "default", services).unwrap_err();
        assert!(err.contains("outside"));
    }
}
