//! The table of peers on [`topic::PEERS`] (the pod network's routes between nodes, for
//! every agent), kept retained by a [`super::retained::RetainedPublisher`].
//!
//! [`table`] builds it, purely, from the cached Nodes: each node that has a pod CIDR
//! (`spec.podCIDR`) and a tunnel key (the annotation [`TUNNEL_KEY_ANNOTATION`], set from
//! its birth), with its tunnel address (its `InternalIP` and the port in
//! `status.daemonEndpoints.kubeletEndpoint.Port`) when it accepts connections. A node
//! without a port is reached through the relay, whose port (and host, when the server is
//! told one) the table carries.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use serde_json::Value;
use wasmfleet_protocol::peers::{Peer, PeerTable};
use wasmfleet_protocol::{Message, topic};

use super::retained::RetainedTable;
use crate::controllers::service_lb::internal_ip;
use crate::identity::certificates::TUNNEL_KEY_ANNOTATION;
use crate::informer::Cache;
use crate::network::ipam::node_cidr_of;

/// The table of peers, built from the cached Nodes.
pub struct Peers {
    /// Where agents reach the relay.
    pub relay: Relay,
}

/// Where agents reach the server's relay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Relay {
    /// Its port (0: no relay).
    pub port: u16,
    /// Its host; empty: the host each agent reaches the broker at.
    pub host: String,
}

impl RetainedTable for Peers {
    type Content = Vec<Peer>;
    const TOPIC: &'static str = topic::PEERS;
    const WHAT: &'static str = "table of peers";
    const SOURCES: &'static [&'static str] = &["nodes"];

    fn build(&self, cache: &Cache) -> (Self::Content, Message) {
        let table = table(&cache.list("nodes"), &self.relay, cache.revision());
        (table.peers.clone(), Message::Peers(table))
    }
}

/// Pure: the peers among `nodes`, sorted by name.
pub fn table(nodes: &[Arc<Value>], relay: &Relay, revision: u64) -> PeerTable {
    let mut peers: Vec<Peer> = nodes.iter().filter_map(|node| peer(node)).collect();
    peers.sort_by(|a, b| a.node.cmp(&b.node));
    PeerTable {
        revision,
        relay_port: relay.port,
        peers,
        relay_host: relay.host.clone(),
    }
}

fn peer(node: &Value) -> Option<Peer> {
    let key = node["metadata"]["annotations"][TUNNEL_KEY_ANNOTATION].as_str()?;
    let mut key_sha256 = [0; 32];
    hex::decode_to_slice(key, &mut key_sha256).ok()?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|port| u16::try_from(port).ok())
        .filter(|port| *port > 0);
    let ip = internal_ip(node).and_then(|ip| ip.parse::<IpAddr>().ok());
    Some(Peer {
        node: node["metadata"]["name"].as_str()?.to_owned(),
        pod_cidr: node_cidr_of(node)?,
        address: ip.zip(port).map(|(ip, port)| SocketAddr::new(ip, port)),
        key_sha256,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(name: &str, cidr: &str, ip: Option<&str>, port: Option<u64>) -> Arc<Value> {
        let mut node = json!({
            "metadata": {"name": name, "annotations": {TUNNEL_KEY_ANNOTATION: "ab".repeat(32)}},
            "spec": {"podCIDR": cidr},
            "status": {},
        });
        if let Some(ip) = ip {
            node["status"]["addresses"] = json!([{"type": "InternalIP", "address": ip}]);
        }
        if let Some(port) = port {
            node["status"]["daemonEndpoints"] = json!({"kubeletEndpoint": {"Port": port}});
        }
        Arc::new(node)
    }

    #[test]
    fn nodes_with_a_key_and_a_range_are_peers_reached_directly_when_they_listen() {
        let keyless =
            Arc::new(json!({"metadata": {"name": "old"}, "spec": {"podCIDR": "10.42.9.0/24"}}));
        let nodes = [
            node("pi-2", "10.42.1.0/24", Some("192.168.1.21"), None),
            node("pi-1", "10.42.0.0/24", Some("192.168.1.20"), Some(10260)),
            node("pi-3", "10.42.2.0/24", None, Some(10260)),
            keyless,
        ];
        let relay = Relay {
            port: 10261,
            host: "relay.example.com".into(),
        };
        let table = table(&nodes, &relay, 7);
        assert_eq!(
            table.relay("broker.lan"),
            Some(("relay.example.com", 10261))
        );
        let names: Vec<&str> = table.peers.iter().map(|p| p.node.as_str()).collect();
        assert_eq!(names, ["pi-1", "pi-2", "pi-3"]);
        assert_eq!(
            table.peers[0].address,
            Some("192.168.1.20:10260".parse().unwrap())
        );
        assert_eq!(table.peers[1].address, None, "no port: behind NAT");
        assert_eq!(table.peers[2].address, None, "no address: relayed");
        assert_eq!(table.peers[0].key_sha256, [0xab; 32]);
        assert_eq!(table.peers[1].pod_cidr.to_string(), "10.42.1.0/24");
    }
}
