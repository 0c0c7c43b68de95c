//! The table of Services on [`topic::SERVICES`] (kube-proxy's input, for every agent),
//! kept retained by a [`super::retained::RetainedPublisher`].
//!
//! [`table`] builds it, purely, from the cached Services and EndpointSlices: each Service
//! with its ClusterIP (or headless, or its external name), its TCP ports, and the
//! endpoints that may take traffic (a slice endpoint whose `ready` is not false), with
//! their port per Service port, matched by port name as kube-proxy does; and what the
//! nodes serve on their own addresses: each NodePort and LoadBalancer Service's node ports
//! and traffic policy, and the nodes that serve LoadBalancers
//! (`controllers::service_lb::eligible_nodes`).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use serde_json::Value;
use wasmfleet_protocol::network::Protocol;
use wasmfleet_protocol::service::{
    Endpoint, Exposed, ExposedService, ServiceAddress, ServiceEntry, ServicePort, ServiceTable,
};
use wasmfleet_protocol::{Message, topic};

use super::retained::RetainedTable;
use crate::controllers::endpoints::{SERVICE_NAME_LABEL, takes_traffic};
use crate::controllers::service_lb;
use crate::informer::Cache;

/// The table of Services, built from the cached Services, EndpointSlices and Nodes.
pub struct Services {
    /// The service CIDR the table carries.
    pub service_cidr: Ipv4Net,
}

impl RetainedTable for Services {
    type Content = (Vec<ServiceEntry>, Exposed);
    const TOPIC: &'static str = topic::SERVICES;
    const WHAT: &'static str = "table of Services";
    const SOURCES: &'static [&'static str] = &["services", "endpointslices", "nodes"];

    fn build(&self, cache: &Cache) -> (Self::Content, Message) {
        let table = table(
            &cache.list("services"),
            &cache.list("endpointslices"),
            &cache.list("nodes"),
            self.service_cidr,
            cache.revision(),
        );
        let content = (table.services.clone(), table.exposed.clone());
        (content, Message::Services(table))
    }
}

/// Pure: the table of every routable Service, sorted by namespace and name.
pub fn table(
    services: &[Arc<Value>],
    slices: &[Arc<Value>],
    nodes: &[Arc<Value>],
    service_cidr: Ipv4Net,
    revision: u64,
) -> ServiceTable {
    let mut by_service: BTreeMap<(&str, &str), Vec<&Value>> = BTreeMap::new();
    for slice in slices {
        let namespace = slice["metadata"]["namespace"].as_str().unwrap_or_default();
        let label = slice["metadata"]["labels"][SERVICE_NAME_LABEL].as_str();
        if let Some(name) = label {
            by_service.entry((namespace, name)).or_default().push(slice);
        }
    }
    let mut entries: Vec<ServiceEntry> = services
        .iter()
        .filter_map(|svc| {
            let namespace = svc["metadata"]["namespace"].as_str()?;
            let name = svc["metadata"]["name"].as_str()?;
            let slices = by_service
                .get(&(namespace, name))
                .map_or(&[][..], Vec::as_slice);
            entry(svc, slices)
        })
        .collect();
    entries.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let mut exposed: Vec<ExposedService> =
        services.iter().filter_map(|svc| exposure(svc)).collect();
    exposed.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let load_balancer_nodes = match exposed.iter().any(|e| e.load_balancer) {
        true => service_lb::eligible_nodes(nodes)
            .into_iter()
            .map(|node| node.name)
            .collect(),
        false => Vec::new(),
    };
    ServiceTable {
        revision,
        service_cidr: Some(service_cidr),
        services: entries,
        exposed: Exposed {
            services: exposed,
            load_balancer_nodes,
        },
    }
}

/// How a NodePort or LoadBalancer Service is reached through the nodes (`None`: it is
/// not, or has no ClusterIP yet, so it has no entry either).
fn exposure(svc: &Value) -> Option<ExposedService> {
    let spec = &svc["spec"];
    let load_balancer = match spec["type"].as_str()? {
        "NodePort" => false,
        "LoadBalancer" => true,
        _ => return None,
    };
    spec["clusterIP"].as_str()?.parse::<Ipv4Addr>().ok()?;
    let node_ports = spec["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|port| {
            port["port"]
                .as_u64()
                .is_some_and(|p| u16::try_from(p).is_ok())
        })
        .filter(|port| Protocol::parse(port["protocol"].as_str().unwrap_or("TCP")).is_some())
        .map(|port| {
            port["nodePort"]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
        })
        .collect();
    Some(ExposedService {
        namespace: svc["metadata"]["namespace"].as_str()?.to_owned(),
        name: svc["metadata"]["name"].as_str()?.to_owned(),
        node_ports,
        load_balancer,
        local_only: spec["externalTrafficPolicy"] == "Local",
    })
}

/// One Service's entry, if it can be routed to (it has its address).
fn entry(svc: &Value, slices: &[&Value]) -> Option<ServiceEntry> {
    let spec = &svc["spec"];
    let address = match (spec["type"].as_str(), spec["clusterIP"].as_str()) {
        (Some("ExternalName"), _) => {
            ServiceAddress::ExternalName(spec["externalName"].as_str()?.to_owned())
        }
        (_, Some("None")) => ServiceAddress::Headless,
        (_, Some(ip)) => ServiceAddress::ClusterIp(ip.parse::<Ipv4Addr>().ok()?),
        _ => return None,
    };
    let ports: Vec<ServicePort> = spec["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|port| {
            Some(ServicePort {
                name: port["name"].as_str().unwrap_or_default().to_owned(),
                port: u16::try_from(port["port"].as_u64()?).ok()?,
                protocol: Protocol::parse(port["protocol"].as_str().unwrap_or("TCP"))?,
            })
        })
        .collect();
    let endpoints = endpoints(slices, &ports);
    Some(ServiceEntry {
        namespace: svc["metadata"]["namespace"].as_str()?.to_owned(),
        name: svc["metadata"]["name"].as_str()?.to_owned(),
        address,
        client_ip_affinity: spec["sessionAffinity"] == "ClientIP",
        ports,
        endpoints,
    })
}

/// The endpoints of `slices` that may take traffic, with their port per Service port.
fn endpoints(slices: &[&Value], ports: &[ServicePort]) -> Vec<Endpoint> {
    let mut endpoints = Vec::new();
    for slice in slices {
        let slice_port = |name: &str| {
            slice["ports"]
                .as_array()?
                .iter()
                .find(|p| p["name"].as_str().unwrap_or_default() == name)
                .and_then(|p| u16::try_from(p["port"].as_u64()?).ok())
        };
        let target_ports: Vec<Option<u16>> = ports.iter().map(|p| slice_port(&p.name)).collect();
        for endpoint in slice["endpoints"].as_array().into_iter().flatten() {
            if !takes_traffic(endpoint) {
                continue;
            }
            let Some(ip) = endpoint
                .pointer("/addresses/0")
                .and_then(Value::as_str)
                .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            endpoints.push(Endpoint {
                ip,
                node: endpoint["nodeName"].as_str().unwrap_or_default().to_owned(),
                target_ports: target_ports.clone(),
            });
        }
    }
    endpoints.sort_by_key(|e| e.ip);
    endpoints.dedup();
    endpoints
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn cidr() -> Ipv4Net {
        "10.43.0.0/16".parse().unwrap()
    }

    #[test]
    fn services_carry_their_ready_endpoints_with_ports_matched_by_name() {
        let svc = Arc::new(json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "ClusterIP", "clusterIP": "10.43.0.2", "sessionAffinity": "ClientIP",
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"},
                          {"name": "admin", "port": 81, "protocol": "TCP"}]}}));
        let slice = Arc::new(json!({"metadata": {"name": "web-x", "namespace": "default",
                "labels": {SERVICE_NAME_LABEL: "web"}},
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [
                {"addresses": ["10.42.0.3"], "nodeName": "pi-1", "conditions": {"ready": true}},
                {"addresses": ["10.42.0.4"], "conditions": {"ready": false}},
                {"addresses": ["10.42.0.5"], "conditions": {}}]}));
        let table = table(&[svc], &[slice], &[], cidr(), 7);
        assert_eq!(table.revision, 7);
        let web = &table.services[0];
        assert_eq!(
            web.address,
            ServiceAddress::ClusterIp("10.43.0.2".parse().unwrap())
        );
        assert!(web.client_ip_affinity);
        let ips: Vec<String> = web.endpoints.iter().map(|e| e.ip.to_string()).collect();
        assert_eq!(
            ips,
            ["10.42.0.3", "10.42.0.5"],
            "unready endpoints take no traffic"
        );
        assert_eq!(web.endpoints[0].target_ports, [Some(8080), None]);
        assert_eq!(web.endpoints[0].node, "pi-1");
    }

    #[test]
    fn headless_external_and_unallocated_services() {
        let svc = |name: &str, spec: Value| {
            Arc::new(json!({"metadata": {"name": name, "namespace": "default"}, "spec": spec}))
        };
        let services = [
            svc("db", json!({"clusterIP": "None", "ports": []})),
            svc(
                "ext",
                json!({"type": "ExternalName", "externalName": "example.com"}),
            ),
            svc("new", json!({"ports": [{"port": 80}]})),
        ];
        let table = table(&services, &[], &[], cidr(), 1);
        let names: Vec<&str> = table.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["db", "ext"],
            "a Service without its ClusterIP is not routed"
        );
        assert_eq!(table.services[0].address, ServiceAddress::Headless);
        assert_eq!(
            table.services[1].address,
            ServiceAddress::ExternalName("example.com".into())
        );
        assert_eq!(table.exposed, Exposed::default());
    }

    #[test]
    fn node_ports_and_load_balancers_are_exposed_with_their_nodes() {
        let svc = |name: &str, spec: Value| {
            Arc::new(json!({"metadata": {"name": name, "namespace": "default"}, "spec": spec}))
        };
        let services = [
            svc(
                "np",
                json!({"type": "NodePort", "clusterIP": "10.43.0.2",
                "externalTrafficPolicy": "Local",
                "ports": [{"name": "a", "port": 80, "nodePort": 30080}, {"name": "b", "port": 81}]}),
            ),
            svc(
                "lb",
                json!({"type": "LoadBalancer", "clusterIP": "10.43.0.3",
                "ports": [{"port": 18080, "nodePort": 30081}]}),
            ),
            svc(
                "plain",
                json!({"type": "ClusterIP", "clusterIP": "10.43.0.4",
                "ports": [{"port": 80}]}),
            ),
        ];
        let nodes = [
            Arc::new(json!({"metadata": {"name": "pi-2"},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]}})),
            Arc::new(json!({"metadata": {"name": "pi-1"},
                "status": {"conditions": [{"type": "Ready", "status": "False"}]}})),
        ];
        let table = table(&services, &[], &nodes, cidr(), 1);
        let exposed = &table.exposed;
        assert_eq!(exposed.load_balancer_nodes, ["pi-2"], "Ready nodes only");
        let names: Vec<&str> = exposed.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["lb", "np"]);
        assert!(exposed.services[0].load_balancer);
        assert_eq!(exposed.services[0].node_ports, [Some(30081)]);
        assert!(exposed.services[1].local_only);
        assert_eq!(exposed.services[1].node_ports, [Some(30080), None]);
    }
}
