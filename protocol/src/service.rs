//! Services as the agents see them (kube-proxy's input): the cluster's service CIDR, and
//! the table of every Service with its virtual IP, ports and serving endpoints.
//!
//! The server keeps one retained [`ServiceTable`] on [`crate::topic::SERVICES`], rebuilt
//! from Services and EndpointSlices whenever either changes; every agent reads it and
//! routes pods' connects to a ClusterIP onto one of its endpoints, and answers pods' name
//! lookups of Services ([`ServiceTable::resolve`]). Only endpoints that may receive
//! traffic are listed (ready, or published unready by `publishNotReadyAddresses`).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::network::Protocol;

/// The default service CIDR (k3s's).
pub const DEFAULT_SERVICE_CIDR: &str = "10.43.0.0/16";

/// [`DEFAULT_SERVICE_CIDR`] as a network.
pub const DEFAULT_SERVICE_NET: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(10, 43, 0, 0), 16);

/// The cluster's DNS domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// Every Service the agents route, at the server's revision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceTable {
    /// The store revision the table was built at (newer tables replace older ones).
    pub revision: u64,
    /// The service CIDR: connects into it are routed through the table.
    pub service_cidr: Option<Ipv4Net>,
    /// Every Service, sorted by namespace and name.
    pub services: Vec<ServiceEntry>,
    /// What agents serve on their own addresses (NodePort and LoadBalancer). Appended
    /// after the first Services release ([`crate::tail`]): an older server's table has
    /// none, an older agent ignores it. Keep it the last field.
    #[serde(default, deserialize_with = "crate::tail::or_default")]
    pub exposed: Exposed,
}

/// The Services reachable from outside the cluster through the nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exposed {
    /// Every NodePort and LoadBalancer Service with a node port or a load balancer,
    /// sorted by namespace and name.
    pub services: Vec<ExposedService>,
    /// The nodes that serve LoadBalancer Services on the Services' own ports (k3s
    /// ServiceLB's eligible nodes), sorted.
    pub load_balancer_nodes: Vec<String>,
}

/// How one Service is reached through the nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExposedService {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Per port of its [`ServiceEntry`] (same order), the node port every node listens on.
    pub node_ports: Vec<Option<u16>>,
    /// `type: LoadBalancer`: the load-balancer nodes also listen on the ports themselves.
    pub load_balancer: bool,
    /// `externalTrafficPolicy: Local`: only endpoints on the receiving node take traffic.
    pub local_only: bool,
}

/// One Service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEntry {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// How it is reached.
    pub address: ServiceAddress,
    /// Its ports.
    pub ports: Vec<ServicePort>,
    /// `sessionAffinity: ClientIP`: a client keeps its endpoint while the endpoints do not
    /// change.
    pub client_ip_affinity: bool,
    /// The endpoints that may receive traffic.
    pub endpoints: Vec<Endpoint>,
}

/// How a Service is reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceAddress {
    /// A virtual IP (`type: ClusterIP`).
    ClusterIp(Ipv4Addr),
    /// No virtual IP (`clusterIP: None`): its name resolves to its endpoints' IPs.
    Headless,
    /// `type: ExternalName`: its name is an alias of this DNS name.
    ExternalName(String),
}

/// One port of a Service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePort {
    /// The port's name (`""` when the Service has one unnamed port).
    pub name: String,
    /// The port clients connect to on the ClusterIP.
    pub port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
}

/// One endpoint (a pod) of a Service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The pod IP.
    pub ip: Ipv4Addr,
    /// The node that runs it (`""` when unknown).
    pub node: String,
    /// Per Service port, in the order of [`ServiceEntry::ports`], the pod's port (`None`:
    /// the pod does not serve that port, e.g. a named `targetPort` it does not declare).
    pub target_ports: Vec<Option<u16>>,
}

/// What a pod's lookup of a Service name gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// These addresses (a ClusterIP, or a headless Service's endpoints; empty when it has
    /// none).
    Addresses(Vec<Ipv4Addr>),
    /// An alias of this external name (ExternalName).
    Alias(String),
}

impl ServiceTable {
    /// The Service with ClusterIP `ip`, if any.
    pub fn by_cluster_ip(&self, ip: Ipv4Addr) -> Option<&ServiceEntry> {
        self.services
            .iter()
            .find(|service| service.address == ServiceAddress::ClusterIp(ip))
    }

    /// The Service entry an exposed Service belongs to.
    pub fn entry_of(&self, exposed: &ExposedService) -> Option<&ServiceEntry> {
        self.services
            .iter()
            .find(|entry| entry.namespace == exposed.namespace && entry.name == exposed.name)
    }

    /// Whether `node` serves LoadBalancer Services on their ports.
    pub fn serves_load_balancers(&self, node: &str) -> bool {
        self.exposed.load_balancer_nodes.iter().any(|n| n == node)
    }

    /// Whether `ip` is in the service CIDR.
    pub fn is_service_ip(&self, ip: Ipv4Addr) -> bool {
        self.service_cidr.is_some_and(|cidr| cidr.contains(&ip))
    }

    /// Resolves `name` as a pod in `namespace` would: `svc`, `svc.ns`, `svc.ns.svc` and
    /// `svc.ns.svc.cluster.local` (lower case, without a trailing dot). `None`: not a
    /// Service name.
    pub fn resolve(&self, name: &str, namespace: &str) -> Option<Resolved> {
        let (service, ns) = service_name(name, namespace)?;
        let entry = self
            .services
            .iter()
            .find(|entry| entry.name == service && entry.namespace == ns)?;
        Some(match &entry.address {
            ServiceAddress::ClusterIp(ip) => Resolved::Addresses(vec![*ip]),
            ServiceAddress::Headless => {
                Resolved::Addresses(entry.endpoints.iter().map(|e| e.ip).collect())
            }
            ServiceAddress::ExternalName(name) => Resolved::Alias(name.clone()),
        })
    }
}

impl ServiceEntry {
    /// The index of the port `port` (TCP), if the Service has it.
    pub fn port_index(&self, port: u16, protocol: Protocol) -> Option<usize> {
        self.ports
            .iter()
            .position(|p| p.port == port && p.protocol == protocol)
    }

    /// The endpoints serving port `index`, with their target port.
    pub fn serving(&self, index: usize) -> impl Iterator<Item = (&Endpoint, u16)> {
        self.endpoints.iter().filter_map(move |endpoint| {
            let port = endpoint.target_ports.get(index).copied().flatten()?;
            Some((endpoint, port))
        })
    }
}

/// Splits a Service name into (service, namespace) for a pod in `namespace`.
fn service_name<'a>(name: &'a str, namespace: &'a str) -> Option<(&'a str, &'a str)> {
    let name = name
        .strip_suffix(CLUSTER_DOMAIN)
        .map(|rest| rest.strip_suffix('.').unwrap_or(rest))
        .unwrap_or(name);
    let labels: Vec<&str> = name.split('.').collect();
    let (service, ns) = match labels.as_slice() {
        [service] => (*service, namespace),
        [service, ns] | [service, ns, "svc"] => (*service, *ns),
        _ => return None,
    };
    (!service.is_empty() && !ns.is_empty()).then_some((service, ns))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn table() -> ServiceTable {
        let endpoint = |ip: &str| Endpoint {
            ip: ip.parse().unwrap(),
            node: "pi-1".into(),
            target_ports: vec![Some(8080)],
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
            endpoints: vec![endpoint("10.42.0.2"), endpoint("10.42.0.3")],
        };
        ServiceTable {
            revision: 1,
            service_cidr: Some("10.43.0.0/16".parse().unwrap()),
            services: vec![
                entry(
                    "web",
                    ServiceAddress::ClusterIp("10.43.0.10".parse().unwrap()),
                ),
                entry("db", ServiceAddress::Headless),
                entry("ext", ServiceAddress::ExternalName("example.com".into())),
            ],
            exposed: Exposed {
                services: vec![ExposedService {
                    namespace: "default".into(),
                    name: "web".into(),
                    node_ports: vec![Some(30080)],
                    load_balancer: true,
                    local_only: false,
                }],
                load_balancer_nodes: vec!["pi-1".into()],
            },
        }
    }

    #[test]
    fn a_table_from_before_node_ports_still_decodes() {
        let mut old = table();
        old.exposed = Exposed::default();
        let mut bytes = crate::encode(&crate::Message::Services(old.clone()));
        // Two empty Vecs are two bytes; an older server's table ends before them.
        assert_eq!(bytes.split_off(bytes.len() - 2), [0, 0]);
        assert_eq!(crate::decode(&bytes), Ok(crate::Message::Services(old)));
        let new = crate::Message::Services(table());
        assert_eq!(crate::decode(&crate::encode(&new)), Ok(new));
    }

    #[test]
    fn exposed_services_find_their_entry_and_load_balancer_nodes() {
        let table = table();
        let web = table.entry_of(&table.exposed.services[0]).unwrap();
        assert_eq!(web.name, "web");
        assert!(table.serves_load_balancers("pi-1"));
        assert!(!table.serves_load_balancers("pi-2"));
    }

    #[test]
    fn service_names_resolve_in_every_spelling_kubernetes_allows() {
        let table = table();
        let vip = Resolved::Addresses(vec!["10.43.0.10".parse().unwrap()]);
        for name in [
            "web",
            "web.default",
            "web.default.svc",
            "web.default.svc.cluster.local",
        ] {
            assert_eq!(table.resolve(name, "default"), Some(vip.clone()), "{name}");
        }
        assert_eq!(table.resolve("web", "other"), None);
        assert_eq!(table.resolve("web.default", "other"), Some(vip));
        assert_eq!(table.resolve("web.default.svc.example", "default"), None);
        assert_eq!(table.resolve("nope", "default"), None);
    }

    #[test]
    fn headless_names_give_endpoints_and_external_names_alias() {
        let table = table();
        assert_eq!(
            table.resolve("db", "default"),
            Some(Resolved::Addresses(vec![
                "10.42.0.2".parse().unwrap(),
                "10.42.0.3".parse().unwrap()
            ]))
        );
        assert_eq!(
            table.resolve("ext.default.svc.cluster.local", "default"),
            Some(Resolved::Alias("example.com".into()))
        );
    }

    #[test]
    fn a_cluster_ip_finds_its_service_and_serving_endpoints() {
        let table = table();
        let web = table.by_cluster_ip("10.43.0.10".parse().unwrap()).unwrap();
        let index = web.port_index(80, Protocol::Tcp).unwrap();
        assert_eq!(web.serving(index).count(), 2);
        assert_eq!(web.port_index(81, Protocol::Tcp), None);
        assert!(table.is_service_ip("10.43.9.9".parse().unwrap()));
        assert!(!table.is_service_ip("10.42.0.2".parse().unwrap()));
    }
}
