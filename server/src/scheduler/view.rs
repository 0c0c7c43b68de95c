//! What the scheduler knows about a node and about the pod it places, read once from the
//! API objects per pass (pure): a node's allocatable, taints, labels and the pods placed
//! on it ([`NodeView`]); a pod's requests, selectors and parsed affinity and spreading
//! rules ([`PodDemand`]), so a pick over every node re-reads no JSON.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::Value;

use wasmfleet_protocol::quantity;

use super::affinity::NodeAffinity;
use super::pod_affinity::{NamespaceLabels, Neighbour, PodAffinity};
use super::spread::Constraint;

/// What the scheduler needs to know about one node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    /// The node's name.
    pub name: String,
    /// Its labels (including `kubernetes.io/arch` and the topology keys).
    pub labels: BTreeMap<String, String>,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    /// `spec.taints`.
    pub taints: Vec<Taint>,
    /// `status.allocatable.memory` in bytes (0 when absent).
    pub allocatable_memory: u64,
    /// `status.allocatable.cpu` in millicores (0 when absent).
    pub allocatable_cpu: u64,
    /// `status.allocatable.pods`, when set.
    pub allocatable_pods: Option<u64>,
    /// Memory requested by the pods already placed on the node.
    pub requested_memory: u64,
    /// CPU (millicores) requested by the pods already placed on the node.
    pub requested_cpu: u64,
    /// How many pods are already placed on the node.
    pub pod_count: u64,
    /// How many of them each controller (by owner uid) has there.
    pub owners: BTreeMap<String, u64>,
    /// Their namespaces and labels (for pod affinity and topology spreading).
    pub neighbours: Vec<Neighbour>,
    /// How many of them have pod (anti-)affinity terms of their own (when none does, a
    /// pod without terms skips the node's pods entirely).
    pub affine: u32,
}

/// What the scheduler needs to know about the pod being placed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodDemand {
    /// Sum of the containers' memory requests (limits when no request), bytes.
    pub memory: u64,
    /// Sum of the containers' CPU requests (limits when no request), millicores.
    pub cpu: u64,
    /// `spec.nodeSelector`.
    pub node_selector: BTreeMap<String, String>,
    /// `spec.tolerations`.
    pub tolerations: Vec<Toleration>,
    /// The uid of the pod's controller (a ReplicaSet, a Job...), whose pods are spread.
    pub owner: Option<String>,
    /// `spec.affinity.nodeAffinity`.
    pub node_affinity: NodeAffinity,
    /// `spec.affinity.podAffinity` and `podAntiAffinity`.
    pub pod_affinity: PodAffinity,
    /// `spec.topologySpreadConstraints`.
    pub spread: Vec<Constraint>,
    /// The pod's namespace (affinity terms default to it; spreading counts in it).
    pub namespace: String,
    /// Its `metadata.labels` (`null` when none).
    pub labels: Value,
}

/// The memory a pod asks for, in bytes: see [`pod_request`].
pub fn pod_memory(pod: &Pod) -> u64 {
    pod_request(pod, "memory", quantity::memory_bytes)
}

/// The CPU a pod asks for, in millicores: see [`pod_request`].
pub fn pod_cpu(pod: &Pod) -> u64 {
    pod_request(pod, "cpu", quantity::cpu_millis)
}

/// What a pod asks for of one resource: the sum over containers of the request, or the
/// limit when no request is set (Kubernetes defaults requests to limits). Unparsable values
/// count 0 (the API rejects them at admission).
fn pod_request(pod: &Pod, resource: &str, parse: quantity::Parser) -> u64 {
    let Some(spec) = &pod.spec else { return 0 };
    spec.containers
        .iter()
        .map(|container| {
            let resources = container.resources.as_ref();
            let from = |map: Option<&BTreeMap<String, Quantity>>| {
                map.and_then(|m| m.get(resource))
                    .and_then(|q| parse(&q.0).ok())
            };
            from(resources.and_then(|r| r.requests.as_ref()))
                .or_else(|| from(resources.and_then(|r| r.limits.as_ref())))
                .unwrap_or(0)
        })
        .fold(0u64, u64::saturating_add)
}

/// The scheduler's demand for a pod; `namespaces` resolves `namespaceSelector`s.
pub fn demand(pod: &Pod, namespaces: &NamespaceLabels) -> PodDemand {
    let spec = pod.spec.as_ref();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let affinity = spec.and_then(|s| s.affinity.as_ref());
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    PodDemand {
        memory: pod_memory(pod),
        cpu: pod_cpu(pod),
        node_selector: spec
            .and_then(|s| s.node_selector.clone())
            .unwrap_or_default(),
        tolerations: spec.and_then(|s| s.tolerations.clone()).unwrap_or_default(),
        owner: controller_uid(pod),
        node_affinity: NodeAffinity::of(affinity.and_then(|a| a.node_affinity.as_ref())),
        pod_affinity: PodAffinity::of(affinity, &namespace, namespaces),
        spread: spec
            .and_then(|s| s.topology_spread_constraints.as_ref())
            .into_iter()
            .flatten()
            .map(|c| Constraint::of(c, &labels))
            .collect(),
        labels: label_json(&labels),
        namespace,
    }
}

fn label_json(labels: &BTreeMap<String, String>) -> Value {
    if labels.is_empty() {
        return Value::Null;
    }
    Value::Object(
        labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// A placed pod as pod affinity and spreading see it.
pub fn neighbour(pod: &Pod, namespaces: &NamespaceLabels) -> Neighbour {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
    let terms = PodAffinity::of(affinity, &namespace, namespaces);
    Neighbour {
        labels: label_json(pod.metadata.labels.as_ref().unwrap_or(&BTreeMap::new())),
        terminating: pod.metadata.deletion_timestamp.is_some(),
        affinity: (!terms.is_empty()).then(|| Box::new(terms)),
        namespace,
    }
}

/// The pod's controller (by uid).
pub fn controller_uid(pod: &Pod) -> Option<String> {
    pod.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.clone())
}

/// Whether a pod still occupies its node (not Succeeded or Failed).
pub fn occupies_node(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded" | "Failed"))
}

/// Builds the view of a node without its pods; [`NodeView::place`] adds them.
pub fn node_view(node: &Node) -> NodeView {
    let status = node.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let allocatable = status.and_then(|s| s.allocatable.as_ref());
    let read = |name: &str, parse: quantity::Parser| {
        allocatable
            .and_then(|a| a.get(name))
            .and_then(|q| parse(&q.0).ok())
    };
    let spec = node.spec.as_ref();
    NodeView {
        name: node.metadata.name.clone().unwrap_or_default(),
        labels: node.metadata.labels.clone().unwrap_or_default(),
        ready,
        unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
        taints: spec.and_then(|s| s.taints.clone()).unwrap_or_default(),
        allocatable_memory: read("memory", quantity::memory_bytes).unwrap_or(0),
        allocatable_cpu: read("cpu", quantity::cpu_millis).unwrap_or(0),
        allocatable_pods: allocatable
            .and_then(|a| a.get("pods"))
            .and_then(|q| q.0.trim().parse::<u64>().ok()),
        requested_memory: 0,
        requested_cpu: 0,
        pod_count: 0,
        owners: BTreeMap::new(),
        neighbours: Vec::new(),
        affine: 0,
    }
}

impl NodeView {
    /// Counts a pod placed on the node (its requests, its controller, and itself as a
    /// neighbour), unless it no longer occupies the node.
    pub fn place(&mut self, pod: &Pod, namespaces: &NamespaceLabels) {
        if !occupies_node(pod) {
            return;
        }
        self.add(
            pod_memory(pod),
            pod_cpu(pod),
            controller_uid(pod),
            neighbour(pod, namespaces),
        );
    }

    /// Counts a pod the scheduler just placed, from its demand.
    pub fn place_demand(&mut self, pod: &PodDemand) {
        let terms = &pod.pod_affinity;
        let neighbour = Neighbour {
            namespace: pod.namespace.clone(),
            labels: pod.labels.clone(),
            terminating: false,
            affinity: (!terms.is_empty()).then(|| Box::new(terms.clone())),
        };
        self.add(pod.memory, pod.cpu, pod.owner.clone(), neighbour);
    }

    fn add(&mut self, memory: u64, cpu: u64, owner: Option<String>, neighbour: Neighbour) {
        self.requested_memory = self.requested_memory.saturating_add(memory);
        self.requested_cpu = self.requested_cpu.saturating_add(cpu);
        self.pod_count += 1;
        if let Some(owner) = owner {
            *self.owners.entry(owner).or_insert(0) += 1;
        }
        self.affine += u32::from(neighbour.affinity.is_some());
        self.neighbours.push(neighbour);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const GI: u64 = 1 << 30;

    /// An empty, Ready arm64 node with 4 CPUs, 4 GiB and 110 pod slots.
    pub fn node(name: &str) -> NodeView {
        NodeView {
            name: name.into(),
            labels: BTreeMap::from([("kubernetes.io/arch".into(), "arm64".into())]),
            ready: true,
            unschedulable: false,
            taints: Vec::new(),
            allocatable_memory: 4 * GI,
            allocatable_cpu: 4000,
            allocatable_pods: Some(110),
            requested_memory: 0,
            requested_cpu: 0,
            pod_count: 0,
            owners: BTreeMap::new(),
            neighbours: Vec::new(),
            affine: 0,
        }
    }

    pub const ZONE: &str = "topology.kubernetes.io/zone";
    pub const HOST: &str = "kubernetes.io/hostname";

    /// [`node`] with its hostname label, in `zone` (no zone label when empty).
    pub fn zoned(name: &str, zone: &str) -> NodeView {
        let mut n = node(name);
        n.labels.insert(HOST.into(), name.into());
        if !zone.is_empty() {
            n.labels.insert(ZONE.into(), zone.into());
        }
        n
    }

    /// A pod in `default` asking for `memory` bytes and 100m CPU.
    pub fn pod(memory: u64) -> PodDemand {
        PodDemand {
            memory,
            cpu: 100,
            namespace: "default".into(),
            ..PodDemand::default()
        }
    }

    #[test]
    fn a_pods_cpu_is_the_sum_of_requests_falling_back_to_limits() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [
                {"name": "a", "image": "x", "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "1"}}},
                {"name": "b", "image": "x", "resources": {"limits": {"cpu": "0.5"}}},
                {"name": "c", "image": "x"}
            ]}
        }))
        .expect("valid pod");
        assert_eq!(pod_cpu(&pod), 600);
    }

    #[test]
    fn a_pods_memory_is_the_sum_of_requests_falling_back_to_limits() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [
                {"name": "a", "image": "x", "resources": {"requests": {"memory": "64Mi"}, "limits": {"memory": "128Mi"}}},
                {"name": "b", "image": "x", "resources": {"limits": {"memory": "32Mi"}}},
                {"name": "c", "image": "x"}
            ]}
        }))
        .expect("valid pod");
        assert_eq!(pod_memory(&pod), 96 << 20);
    }

    #[test]
    fn a_node_view_reads_readiness_allocatable_and_placed_pods() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "pi-1", "labels": {"kubernetes.io/arch": "arm64"}},
            "spec": {"unschedulable": true},
            "status": {
                "allocatable": {"memory": "4194304Ki", "pods": "110", "cpu": "4"},
                "conditions": [{"type": "Ready", "status": "True"}]
            }
        }))
        .expect("valid node");
        let running: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "default", "labels": {"app": "db"}},
            "spec": {"containers": [{"name": "a", "resources": {"requests": {"memory": "1Gi"}}}],
                     "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                         {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}}}
        }))
        .expect("valid pod");
        let done: Pod = serde_json::from_value(serde_json::json!({
            "spec": {"containers": [{"name": "a", "resources": {"requests": {"memory": "1Gi"}}}]},
            "status": {"phase": "Succeeded"}
        }))
        .expect("valid pod");
        let mut view = node_view(&node);
        for pod in [&running, &done] {
            view.place(pod, &NamespaceLabels::new());
        }
        assert!(view.ready);
        assert!(view.unschedulable);
        assert_eq!(view.allocatable_memory, 4 * GI);
        assert_eq!(view.allocatable_cpu, 4000);
        assert_eq!(view.allocatable_pods, Some(110));
        assert_eq!(view.requested_memory, GI);
        assert_eq!(view.requested_cpu, 0);
        assert_eq!(view.pod_count, 1);
        assert_eq!(view.affine, 1);
        assert_eq!(view.neighbours[0].labels, serde_json::json!({"app": "db"}));
    }
}
