//! The IPAM controller, keyed by node: gives every node a `/24` of the cluster CIDR
//! (`spec.podCIDR`, `spec.podCIDRs`, like kube-controller-manager's `nodeipam`) and every
//! pod bound to it an IP of that range (`status.podIP`, `status.podIPs`, CNI IPAM's role),
//! on the shared [`runner`]. Pods get their IP however they were bound (scheduler,
//! DaemonSet, `spec.nodeName` in the manifest); the desired-state publisher delivers a
//! pod only once it has one.
//!
//! A range stays with its node until the Node is deleted; an IP stays with its pod until
//! the Pod is deleted ([`crate::network::ipam`]). The runner has one worker and re-plans a
//! key only once the cache holds its previous writes, and each write leaves an object that
//! already has an address alone, so no range or IP is ever handed out twice.
//!
//! [`runner`]: super::runner

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use serde_json::{Value, json};

use super::runner::Controller;
use super::writes;
use crate::events::{self, Involved, Type};
use crate::informer::{Cache, Change, key_of};
use crate::k8s::pods::bound_node;
use crate::network::ipam::{NodeRanges, free_pod_ip, node_cidr_of, pod_ip_of};
use crate::store::{ObjectKey, Store, StoreError};

/// The `source.component` of its events.
const COMPONENT: &str = "ipam-controller";

/// The IPAM controller for one cluster CIDR.
pub struct Ipam {
    ranges: NodeRanges,
}

impl Ipam {
    /// Hands out `ranges` (a cluster CIDR alone: its `/24`s) to nodes and their addresses
    /// to pods.
    pub fn new(ranges: impl Into<NodeRanges>) -> Self {
        Self {
            ranges: ranges.into(),
        }
    }
}

/// One node, the pods bound to it, and the ranges every node holds.
#[derive(Debug, Clone)]
pub struct State {
    /// The node (`None`: deleted or not registered yet).
    pub node: Option<Arc<Value>>,
    /// The pods bound to it.
    pub pods: Vec<Arc<Value>>,
    /// The ranges all nodes hold (read only when the node has none).
    pub taken: BTreeSet<Ipv4Net>,
}

/// One address to hand out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Give the node this range.
    NodeRange(ObjectKey, Ipv4Net),
    /// Give these pods these IPs (one store commit for all).
    PodIps(Vec<(ObjectKey, Ipv4Addr)>),
    /// No address left: the node or pod waits, and a Warning event on it says why.
    Exhausted {
        /// The node or pod left without an address.
        involved: Involved,
        /// `CIDRNotAvailable` (a node) or `FailedCreatePodSandBox` (a pod), as Kubernetes.
        reason: &'static str,
        /// What is full.
        message: String,
    },
}

/// Pure: the node's range if it has none, then an IP for each pod that needs one.
pub fn plan(ranges: impl Into<NodeRanges>, state: &State) -> Vec<Action> {
    let ranges: NodeRanges = ranges.into();
    let Some(node) = state.node.as_deref() else {
        return Vec::new();
    };
    let Some(node_key) = key_of("nodes", node) else {
        return Vec::new();
    };
    let mut actions = Vec::new();
    let range = match node_cidr_of(node) {
        Some(range) => range,
        None => match ranges.free(&state.taken) {
            Some(range) => {
                actions.push(Action::NodeRange(node_key.clone(), range));
                range
            }
            None => {
                return vec![Action::Exhausted {
                    involved: Involved::of(node),
                    reason: "CIDRNotAvailable",
                    message: format!(
                        "Node {} has no pod range: every /{} of the cluster CIDR {} is taken",
                        node_key.name,
                        ranges.prefix(),
                        ranges.cluster()
                    ),
                }];
            }
        },
    };
    let mut used: BTreeSet<Ipv4Addr> = state.pods.iter().filter_map(|p| pod_ip_of(p)).collect();
    let (mut assigned, mut full) = (Vec::new(), Vec::new());
    for pod in state.pods.iter().filter(|p| needs_ip(p)) {
        let Some(key) = key_of("pods", pod) else {
            continue;
        };
        match free_pod_ip(range, &used) {
            Some(ip) => {
                used.insert(ip);
                assigned.push((key, ip));
            }
            None => full.push(Action::Exhausted {
                involved: Involved::of(pod),
                reason: "FailedCreatePodSandBox",
                message: format!(
                    "failed to allocate a pod IP: every address of node {}'s range {range} is taken",
                    node_key.name
                ),
            }),
        }
    }
    if !assigned.is_empty() {
        actions.push(Action::PodIps(assigned));
    }
    actions.append(&mut full);
    actions
}

/// `pod` with its address.
fn with_ip(pod: &Value, ip: Ipv4Addr) -> Value {
    let mut pod = pod.clone();
    let ip = ip.to_string();
    pod["status"]["podIP"] = json!(ip);
    pod["status"]["podIPs"] = json!([{ "ip": ip }]);
    pod
}

/// A bound pod that will run and has no IP yet.
fn needs_ip(pod: &Value) -> bool {
    let finished = matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    let deleting = pod.pointer("/metadata/deletionTimestamp").is_some();
    bound_node(pod).is_some() && pod_ip_of(pod).is_none() && !finished && !deleting
}

impl Controller for Ipam {
    type State = State;
    type Action = Action;

    fn name(&self) -> &'static str {
        "ipam"
    }

    fn keys_for(&self, change: &Change) -> Vec<ObjectKey> {
        match change.key.resource.as_str() {
            "nodes" => vec![change.key.clone()],
            "pods" => change
                .new
                .as_deref()
                .filter(|pod| needs_ip(pod))
                .and_then(bound_node)
                .map(|node| vec![ObjectKey::cluster("nodes", node)])
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    fn all_keys(&self, cache: &Cache) -> Vec<ObjectKey> {
        cache.keys("nodes")
    }

    fn observe(&self, key: &ObjectKey, cache: &Cache) -> State {
        let node = cache.get(key);
        // Every node's range is read only for a node that needs one: a node's every status
        // change reconciles it, and reading all ranges each time made a fleet's heartbeats
        // and births cost the square of its size (the fleet simulator found it at 1,000
        // nodes).
        let taken = match node.as_deref() {
            Some(node) if node_cidr_of(node).is_none() => cache
                .list("nodes")
                .iter()
                .filter_map(|node| node_cidr_of(node))
                .collect(),
            _ => BTreeSet::new(),
        };
        State {
            node,
            pods: cache.pods_on_node(&key.name),
            taken,
        }
    }

    fn plan(&self, state: &State) -> Vec<Action> {
        plan(self.ranges, state)
    }

    fn execute(&self, action: &Action, store: &Store) -> Result<(), StoreError> {
        match action {
            Action::NodeRange(key, range) => writes::edit(store, key, |node| {
                if node_cidr_of(node).is_none() {
                    let range = range.to_string();
                    node["spec"]["podCIDR"] = json!(range);
                    node["spec"]["podCIDRs"] = json!([range]);
                }
            }),
            Action::PodIps(assigned) => {
                let keys: Vec<ObjectKey> = assigned.iter().map(|(key, _)| key.clone()).collect();
                store
                    .upsert_many(&keys, |index, current| {
                        let (Some(pod), Some((_, ip))) = (current, assigned.get(index)) else {
                            return Ok::<_, StoreError>(None);
                        };
                        Ok(needs_ip(pod).then(|| with_ip(pod, *ip)))
                    })
                    .map(drop)
            }
            Action::Exhausted {
                involved,
                reason,
                message,
            } => {
                tracing::warn!(%message, "no address left to hand out");
                events::record(store, involved, Type::Warning, reason, message, COMPONENT);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use wasmfleet_protocol::network::ClusterCidr;

    use super::*;

    fn state(node: Value, pods: Vec<Value>, taken: &[&str]) -> State {
        State {
            node: Some(Arc::new(node)),
            pods: pods.into_iter().map(Arc::new).collect(),
            taken: taken.iter().map(|t| t.parse().unwrap()).collect(),
        }
    }

    fn pod(name: &str, ip: Option<&str>) -> Value {
        let mut pod = json!({"metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": "pi-2", "containers": []}, "status": {"phase": "Pending"}});
        if let Some(ip) = ip {
            pod["status"]["podIP"] = json!(ip);
        }
        pod
    }

    #[test]
    fn a_new_node_gets_the_first_free_range_and_its_pods_addresses_in_it() {
        let node = json!({"metadata": {"name": "pi-2"}, "spec": {}});
        let actions = plan(
            ClusterCidr::default(),
            &state(
                node,
                vec![pod("a", None), pod("b", None)],
                &["10.42.0.0/24"],
            ),
        );
        assert_eq!(
            actions,
            [
                Action::NodeRange(
                    ObjectKey::cluster("nodes", "pi-2"),
                    "10.42.1.0/24".parse().unwrap()
                ),
                Action::PodIps(vec![
                    (
                        ObjectKey::namespaced("pods", "default", "a"),
                        "10.42.1.2".parse().unwrap()
                    ),
                    (
                        ObjectKey::namespaced("pods", "default", "b"),
                        "10.42.1.3".parse().unwrap()
                    ),
                ]),
            ]
        );
    }

    #[test]
    fn held_addresses_are_never_handed_out_again_and_settled_state_plans_nothing() {
        let node = json!({"metadata": {"name": "pi-2"}, "spec": {"podCIDR": "10.42.1.0/24"}});
        let mut finished = pod("done", Some("10.42.1.2"));
        finished["status"]["phase"] = json!("Succeeded");
        let pods = vec![finished, pod("new", None), pod("old", Some("10.42.1.3"))];
        let actions = plan(ClusterCidr::default(), &state(node.clone(), pods, &[]));
        assert_eq!(
            actions,
            [Action::PodIps(vec![(
                ObjectKey::namespaced("pods", "default", "new"),
                "10.42.1.4".parse().unwrap()
            )])]
        );
        let settled = vec![pod("new", Some("10.42.1.4")), pod("old", Some("10.42.1.3"))];
        assert!(plan(ClusterCidr::default(), &state(node, settled, &[])).is_empty());
    }

    #[test]
    fn terminating_and_finished_pods_get_no_address() {
        let node = json!({"metadata": {"name": "pi-2"}, "spec": {"podCIDR": "10.42.1.0/24"}});
        let mut deleting = pod("bye", None);
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        let mut failed = pod("failed", None);
        failed["status"]["phase"] = json!("Failed");
        assert!(
            plan(
                ClusterCidr::default(),
                &state(node, vec![deleting, failed], &[])
            )
            .is_empty()
        );
    }

    #[test]
    fn a_full_cluster_or_range_is_reported_not_overbooked() {
        let node = json!({"metadata": {"name": "pi-3"}, "spec": {}});
        let cluster: ClusterCidr = "10.42.0.0/24".parse().unwrap();
        let actions = plan(cluster, &state(node, vec![], &["10.42.0.0/24"]));
        let [
            Action::Exhausted {
                reason, message, ..
            },
        ] = actions.as_slice()
        else {
            panic!("{actions:?}")
        };
        assert_eq!(*reason, "CIDRNotAvailable");
        assert!(message.contains("pi-3"), "{message}");
        let node = json!({"metadata": {"name": "pi-2"}, "spec": {"podCIDR": "10.42.1.0/30"}});
        let actions = plan(
            ClusterCidr::default(),
            &state(node, vec![pod("a", None), pod("b", None)], &[]),
        );
        let [
            Action::PodIps(..),
            Action::Exhausted {
                involved, reason, ..
            },
        ] = actions.as_slice()
        else {
            panic!("{actions:?}")
        };
        assert_eq!(
            (involved.name.as_str(), *reason),
            ("b", "FailedCreatePodSandBox")
        );
    }

    #[test]
    fn a_wider_node_mask_gives_nodes_larger_ranges() {
        let node = json!({"metadata": {"name": "pi-2"}, "spec": {}});
        let ranges = NodeRanges::new(ClusterCidr::default(), 22).unwrap();
        let actions = plan(ranges, &state(node, vec![], &["10.42.0.0/22"]));
        assert!(actions.contains(&Action::NodeRange(
            ObjectKey::cluster("nodes", "pi-2"),
            "10.42.4.0/22".parse().unwrap()
        )));
        assert!(NodeRanges::new(ClusterCidr::default(), 15).is_err());
        assert!(NodeRanges::new(ClusterCidr::default(), 31).is_err());
    }
}
