//! Address allocation, pure: a free range of the cluster CIDR for a node (a `/24` unless
//! `--node-cidr-mask-size` says otherwise, as kube-controller-manager's flag), a free
//! address of a node's range for a pod.
//!
//! In a node's `/24`, `.0` and `.255` are the network and broadcast addresses and `.1` is
//! kept for the node itself (k3s gives it to the `cni0` bridge), so pods get `.2` to
//! `.254`: 253 addresses, more than a node's default 110 pods (a `/22` holds 1,021). An address stays taken
//! while a pod that holds it exists (terminating pods included), so it is never reused
//! under a running pod.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde_json::Value;
use wasmfleet_protocol::network::{ClusterCidr, NODE_PREFIX};

/// How the cluster CIDR is cut into nodes' ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeRanges {
    cluster: ClusterCidr,
    prefix: u8,
}

impl NodeRanges {
    /// `/prefix` ranges of `cluster`: the prefix must lie between the cluster's own and 30.
    pub fn new(cluster: ClusterCidr, prefix: u8) -> Result<Self, String> {
        let widest = cluster.net().prefix_len();
        if !(widest..=30).contains(&prefix) {
            return Err(format!(
                "--node-cidr-mask-size {prefix} does not fit the cluster CIDR {cluster}: \
                 it must be from {widest} to 30"
            ));
        }
        Ok(Self { cluster, prefix })
    }

    /// The first free range, in address order.
    pub fn free(&self, taken: &BTreeSet<Ipv4Net>) -> Option<Ipv4Net> {
        self.cluster
            .net()
            .subnets(self.prefix)
            .ok()?
            .find(|subnet| !taken.contains(subnet))
    }

    /// The cluster CIDR.
    pub fn cluster(&self) -> ClusterCidr {
        self.cluster
    }

    /// The ranges' prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

impl From<ClusterCidr> for NodeRanges {
    /// `/24` ranges, as k3s.
    fn from(cluster: ClusterCidr) -> Self {
        Self {
            cluster,
            prefix: NODE_PREFIX,
        }
    }
}

/// The first free `/24` of `cluster`, in address order.
pub fn free_node_cidr(cluster: ClusterCidr, taken: &BTreeSet<Ipv4Net>) -> Option<Ipv4Net> {
    NodeRanges::from(cluster).free(taken)
}

/// The lowest free pod address of `node_cidr`.
pub fn free_pod_ip(node_cidr: Ipv4Net, taken: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    node_cidr.hosts().skip(1).find(|ip| !taken.contains(ip))
}

/// A node's `spec.podCIDR`, if it has a valid one.
pub fn node_cidr_of(node: &Value) -> Option<Ipv4Net> {
    node.pointer("/spec/podCIDR")?.as_str()?.parse().ok()
}

/// A pod's `status.podIP`, if it has one.
pub fn pod_ip_of(pod: &Value) -> Option<Ipv4Addr> {
    pod.pointer("/status/podIP")?.as_str()?.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nodes_get_the_first_free_slash_24_in_order() {
        let cluster = ClusterCidr::default();
        let mut taken = BTreeSet::new();
        let first = free_node_cidr(cluster, &taken).unwrap();
        assert_eq!(first.to_string(), "10.42.0.0/24");
        taken.insert(first);
        taken.insert("10.42.2.0/24".parse().unwrap());
        assert_eq!(
            free_node_cidr(cluster, &taken).unwrap().to_string(),
            "10.42.1.0/24"
        );
    }

    #[test]
    fn a_full_cluster_has_no_range_left() {
        let cluster: ClusterCidr = "10.42.0.0/23".parse().unwrap();
        let taken: BTreeSet<Ipv4Net> = ["10.42.0.0/24", "10.42.1.0/24"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(free_node_cidr(cluster, &taken), None);
    }

    #[test]
    fn pods_get_dot_2_to_dot_254_never_a_taken_one() {
        let range: Ipv4Net = "10.42.3.0/24".parse().unwrap();
        let mut taken = BTreeSet::new();
        assert_eq!(
            free_pod_ip(range, &taken),
            Some("10.42.3.2".parse().unwrap())
        );
        taken.insert("10.42.3.2".parse().unwrap());
        assert_eq!(
            free_pod_ip(range, &taken),
            Some("10.42.3.3".parse().unwrap())
        );
        let all: BTreeSet<Ipv4Addr> = range.hosts().collect();
        assert_eq!(free_pod_ip(range, &all), None);
        let every_pod_ip: Vec<Ipv4Addr> = range.hosts().skip(1).collect();
        assert_eq!(every_pod_ip.len(), 253);
        assert_eq!(every_pod_ip.last().unwrap().to_string(), "10.42.3.254");
    }

    #[test]
    fn addresses_are_read_from_objects() {
        let node = json!({"spec": {"podCIDR": "10.42.7.0/24"}});
        assert_eq!(node_cidr_of(&node).unwrap().to_string(), "10.42.7.0/24");
        assert_eq!(node_cidr_of(&json!({"spec": {}})), None);
        let pod = json!({"status": {"podIP": "10.42.7.9"}});
        assert_eq!(pod_ip_of(&pod), Some("10.42.7.9".parse().unwrap()));
        assert_eq!(pod_ip_of(&json!({"status": {"podIP": "x"}})), None);
    }
}
