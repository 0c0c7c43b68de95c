//! The pure half of the scheduler: which nodes can take a pod, and which of those is best.
//!
//! Filters run in the order Kubernetes reports them (readiness, cordon, untolerated
//! `NoSchedule`/`NoExecute` taints, node selector, pod count, CPU, memory); each rejected
//! node counts once, under its first failing filter. Requests are what count (every pod has
//! them: admission defaults them, see `api::validation`), against the node's allocatable
//! (capacity minus what the agent reserves). Among the nodes that fit, the least-allocated
//! wins (average of CPU, memory and pod-slot use after placing the pod), ties broken by name
//! so the choice is deterministic.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use wasmfleet_protocol::quantity;

use super::affinity::{self, Neighbour};

/// What the scheduler needs to know about one node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    /// The node's name.
    pub name: String,
    /// Its labels (including `kubernetes.io/arch`).
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
    /// Their namespaces and labels (for pod anti-affinity).
    pub neighbours: Vec<Neighbour>,
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
    /// `spec.affinity` as JSON (`null` when none).
    pub affinity: serde_json::Value,
    /// The pod's namespace (anti-affinity terms default to it).
    pub namespace: String,
}

/// Why a node cannot take the pod, as Kubernetes words it in a histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rejection {
    /// The node is not Ready.
    NotReady,
    /// The node is cordoned.
    Unschedulable,
    /// The node has a `NoSchedule` or `NoExecute` taint the pod does not tolerate.
    UntoleratedTaint,
    /// A `nodeSelector` label or the required node affinity does not match.
    SelectorMismatch,
    /// A pod the required anti-affinity keeps away from runs there.
    AntiAffinity,
    /// The node holds its maximum number of pods.
    TooManyPods,
    /// The pod's CPU does not fit.
    InsufficientCpu,
    /// The pod's memory does not fit.
    InsufficientMemory,
}

impl Rejection {
    fn reason(self) -> &'static str {
        match self {
            Rejection::NotReady => "node(s) were not ready",
            Rejection::Unschedulable => "node(s) were unschedulable",
            Rejection::UntoleratedTaint => "node(s) had untolerated taint(s)",
            Rejection::SelectorMismatch => "node(s) didn't match Pod's node affinity/selector",
            Rejection::AntiAffinity => "node(s) didn't match pod anti-affinity rules",
            Rejection::TooManyPods => "Too many pods",
            Rejection::InsufficientCpu => "Insufficient cpu",
            Rejection::InsufficientMemory => "Insufficient memory",
        }
    }
}

/// No node fits; the message explains why, in Kubernetes' words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct NoFit {
    /// `0/N nodes are available: ...`.
    pub message: String,
}

/// Checks one node against the pod; `Ok` when it fits.
pub fn filter(pod: &PodDemand, node: &NodeView) -> Result<(), Rejection> {
    if !node.ready {
        return Err(Rejection::NotReady);
    }
    if node.unschedulable {
        return Err(Rejection::Unschedulable);
    }
    if node
        .taints
        .iter()
        .any(|taint| keeps_off(taint, &pod.tolerations))
    {
        return Err(Rejection::UntoleratedTaint);
    }
    let selector_matches = pod
        .node_selector
        .iter()
        .all(|(key, value)| node.labels.get(key) == Some(value));
    if !selector_matches || !affinity::required_nodes(&pod.affinity, &node.name, &node.labels) {
        return Err(Rejection::SelectorMismatch);
    }
    if !affinity::anti_affinity_allows(&pod.affinity, &pod.namespace, &node.neighbours) {
        return Err(Rejection::AntiAffinity);
    }
    if node
        .allocatable_pods
        .is_some_and(|max| node.pod_count >= max)
    {
        return Err(Rejection::TooManyPods);
    }
    if node.requested_cpu.saturating_add(pod.cpu) > node.allocatable_cpu {
        return Err(Rejection::InsufficientCpu);
    }
    if node.requested_memory.saturating_add(pod.memory) > node.allocatable_memory {
        return Err(Rejection::InsufficientMemory);
    }
    Ok(())
}

/// Whether a taint keeps new pods off (`PreferNoSchedule` is only a preference).
fn repels(taint: &Taint) -> bool {
    matches!(taint.effect.as_str(), "NoSchedule" | "NoExecute")
}

/// Kubernetes' `ToleratesTaint`: the effect matches (or is empty), and the key matches
/// with operator `Exists` (an empty key with `Exists` tolerates every taint) or `Equal`
/// (the default) with the same value.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" => {
            !key.is_empty()
                && toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// Whether `taint` keeps a new pod with `tolerations` off its node.
pub fn keeps_off(taint: &Taint, tolerations: &[Toleration]) -> bool {
    repels(taint) && !tolerations.iter().any(|t| tolerates(t, taint))
}

/// Chooses the node for the pod, or explains why none fits.
pub fn pick<'a>(pod: &PodDemand, nodes: &'a [NodeView]) -> Result<&'a NodeView, NoFit> {
    let mut rejections: BTreeMap<Rejection, usize> = BTreeMap::new();
    let mut best: Option<((i64, u64, f64), &NodeView)> = None;
    for node in nodes {
        match filter(pod, node) {
            Err(rejection) => *rejections.entry(rejection).or_default() += 1,
            Ok(()) => {
                let score = (
                    -affinity::preferred_weight(&pod.affinity, &node.name, &node.labels),
                    siblings(pod, node)
                        + affinity::anti_affinity_penalty(
                            &pod.affinity,
                            &pod.namespace,
                            &node.neighbours,
                        ),
                    allocation_after(pod, node),
                );
                let better = match best {
                    None => true,
                    Some((best_score, best_node)) => {
                        let order = score.0.cmp(&best_score.0).then(score.1.cmp(&best_score.1));
                        match order.then(score.2.total_cmp(&best_score.2)) {
                            std::cmp::Ordering::Less => true,
                            std::cmp::Ordering::Equal => node.name < best_node.name,
                            std::cmp::Ordering::Greater => false,
                        }
                    }
                };
                if better {
                    best = Some((score, node));
                }
            }
        }
    }
    best.map(|(_, node)| node).ok_or_else(|| NoFit {
        message: explain(nodes.len(), &rejections),
    })
}

/// Pods of the same controller already on the node, and untolerated `PreferNoSchedule`
/// taints: fewer is better, before allocation (replicas of one owner spread over the nodes
/// that fit, as Kubernetes' default topology spreading by hostname does).
fn siblings(pod: &PodDemand, node: &NodeView) -> u64 {
    let same_owner = pod
        .owner
        .as_ref()
        .and_then(|uid| node.owners.get(uid))
        .copied()
        .unwrap_or(0);
    let avoided = node
        .taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule")
        .filter(|t| !pod.tolerations.iter().any(|tol| tolerates(tol, t)))
        .count() as u64;
    same_owner + avoided
}

/// The share of the node that would be in use after placing the pod (0 = empty, 1 = full).
#[allow(clippy::cast_precision_loss)] // a ratio for ranking; precision loss is harmless
fn allocation_after(pod: &PodDemand, node: &NodeView) -> f64 {
    let ratio = |used: u64, total: u64| {
        if total == 0 {
            1.0
        } else {
            used as f64 / total as f64
        }
    };
    let memory = ratio(
        node.requested_memory.saturating_add(pod.memory),
        node.allocatable_memory,
    );
    let cpu = ratio(
        node.requested_cpu.saturating_add(pod.cpu),
        node.allocatable_cpu,
    );
    let pods = node
        .allocatable_pods
        .map_or(0.0, |max| ratio(node.pod_count + 1, max));
    (cpu + memory + pods) / 3.0
}

/// Formats `0/3 nodes are available: 1 node(s) ..., 2 Insufficient memory.` with the
/// reasons sorted as Kubernetes sorts them (as strings).
fn explain(total: usize, rejections: &BTreeMap<Rejection, usize>) -> String {
    if total == 0 {
        return "0/0 nodes are available: no nodes are registered.".to_owned();
    }
    let mut reasons: Vec<String> = rejections
        .iter()
        .map(|(rejection, count)| format!("{count} {}", rejection.reason()))
        .collect();
    reasons.sort();
    format!("0/{total} nodes are available: {}.", reasons.join(", "))
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

/// The scheduler's demand for a pod.
pub fn demand(pod: &Pod) -> PodDemand {
    PodDemand {
        memory: pod_memory(pod),
        cpu: pod_cpu(pod),
        node_selector: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_selector.clone())
            .unwrap_or_default(),
        tolerations: pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .unwrap_or_default(),
        owner: controller_uid(pod),
        affinity: pod
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| serde_json::to_value(a).ok())
            .unwrap_or_default(),
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
    }
}

/// A placed pod as anti-affinity sees it.
pub fn neighbour(pod: &Pod) -> Neighbour {
    Neighbour {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        labels: serde_json::to_value(&pod.metadata.labels).unwrap_or_default(),
    }
}

fn controller_uid(pod: &Pod) -> Option<String> {
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

/// Builds the view of a node, counting the pods already bound to it.
pub fn node_view(node: &Node, bound: &[&Pod]) -> NodeView {
    let status = node.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let allocatable = status.and_then(|s| s.allocatable.as_ref());
    let allocatable_memory = allocatable
        .and_then(|a| a.get("memory"))
        .and_then(|q| quantity::memory_bytes(&q.0).ok())
        .unwrap_or(0);
    let allocatable_cpu = allocatable
        .and_then(|a| a.get("cpu"))
        .and_then(|q| quantity::cpu_millis(&q.0).ok())
        .unwrap_or(0);
    let allocatable_pods = allocatable
        .and_then(|a| a.get("pods"))
        .and_then(|q| q.0.trim().parse::<u64>().ok());
    let occupying: Vec<&&Pod> = bound.iter().filter(|p| occupies_node(p)).collect();
    NodeView {
        name: node.metadata.name.clone().unwrap_or_default(),
        labels: node.metadata.labels.clone().unwrap_or_default(),
        ready,
        unschedulable: node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false),
        taints: node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default(),
        allocatable_memory,
        allocatable_cpu,
        allocatable_pods,
        requested_memory: occupying
            .iter()
            .map(|p| pod_memory(p))
            .fold(0, u64::saturating_add),
        requested_cpu: occupying
            .iter()
            .map(|p| pod_cpu(p))
            .fold(0, u64::saturating_add),
        pod_count: occupying.len() as u64,
        owners: occupying.iter().filter_map(|p| controller_uid(p)).fold(
            BTreeMap::new(),
            |mut owners, uid| {
                *owners.entry(uid).or_insert(0) += 1;
                owners
            },
        ),
        neighbours: occupying.iter().map(|p| neighbour(p)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GI: u64 = 1 << 30;

    fn node(name: &str) -> NodeView {
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
        }
    }

    fn pod(memory: u64) -> PodDemand {
        PodDemand {
            memory,
            cpu: 100,
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            owner: None,
            affinity: serde_json::Value::Null,
            namespace: "default".into(),
        }
    }

    #[test]
    fn replicas_of_one_owner_spread_before_allocation_and_prefer_no_schedule_is_avoided() {
        let mut busy = node("a-busy");
        busy.requested_memory = 2 * GI;
        let mut crowded = node("b-crowded");
        crowded.owners.insert("rs-1".into(), 2);
        let mut replica = pod(GI);
        replica.owner = Some("rs-1".into());
        let nodes = [busy.clone(), crowded.clone()];
        assert_eq!(
            pick(&replica, &nodes).map(|n| n.name.as_str()),
            Ok("a-busy")
        );
        // Another owner's pod only looks at allocation.
        assert_eq!(
            pick(&pod(GI), &nodes).map(|n| n.name.as_str()),
            Ok("b-crowded")
        );
        let mut avoided = node("c-avoided");
        avoided
            .taints
            .push(taint("maintenance", None, "PreferNoSchedule"));
        let nodes = [avoided, busy];
        assert_eq!(
            pick(&pod(GI), &nodes).map(|n| n.name.as_str()),
            Ok("a-busy")
        );
    }

    fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: value.map(str::to_owned),
            effect: effect.into(),
            time_added: None,
        }
    }

    fn toleration(key: &str, operator: &str, value: Option<&str>, effect: &str) -> Toleration {
        Toleration {
            key: (!key.is_empty()).then(|| key.to_owned()),
            operator: Some(operator.to_owned()),
            value: value.map(str::to_owned),
            effect: (!effect.is_empty()).then(|| effect.to_owned()),
            toleration_seconds: None,
        }
    }

    #[test]
    fn a_node_with_an_untolerated_no_schedule_or_no_execute_taint_is_filtered_out() {
        for effect in ["NoSchedule", "NoExecute"] {
            let n = NodeView {
                taints: vec![taint("node.kubernetes.io/unreachable", None, effect)],
                ..node("a")
            };
            assert_eq!(filter(&pod(0), &n), Err(Rejection::UntoleratedTaint));
        }
        let soft = NodeView {
            taints: vec![taint("x", None, "PreferNoSchedule")],
            ..node("a")
        };
        assert_eq!(filter(&pod(0), &soft), Ok(()));
    }

    #[test]
    fn a_matching_toleration_lets_the_pod_on() {
        let n = NodeView {
            taints: vec![
                taint("node.kubernetes.io/unreachable", None, "NoSchedule"),
                taint("dedicated", Some("edge"), "NoSchedule"),
            ],
            ..node("a")
        };
        let mut tolerant = pod(0);
        tolerant.tolerations = vec![
            toleration(
                "node.kubernetes.io/unreachable",
                "Exists",
                None,
                "NoSchedule",
            ),
            toleration("dedicated", "Equal", Some("edge"), ""),
        ];
        assert_eq!(filter(&tolerant, &n), Ok(()));
        // One taint left untolerated is enough to refuse.
        tolerant.tolerations.pop();
        assert_eq!(filter(&tolerant, &n), Err(Rejection::UntoleratedTaint));
    }

    #[test]
    fn toleration_matching_follows_kubernetes() {
        let t = taint("dedicated", Some("edge"), "NoSchedule");
        assert!(tolerates(&toleration("", "Exists", None, ""), &t));
        assert!(tolerates(&toleration("dedicated", "Exists", None, ""), &t));
        assert!(tolerates(
            &toleration("dedicated", "Equal", Some("edge"), "NoSchedule"),
            &t
        ));
        assert!(!tolerates(
            &toleration("dedicated", "Equal", Some("core"), ""),
            &t
        ));
        assert!(!tolerates(
            &toleration("dedicated", "Exists", None, "NoExecute"),
            &t
        ));
        assert!(!tolerates(&toleration("other", "Exists", None, ""), &t));
        assert!(!tolerates(&toleration("", "Equal", None, ""), &t));
        assert!(!tolerates(
            &toleration("dedicated", "Sometimes", None, ""),
            &t
        ));
    }

    #[test]
    fn a_node_that_is_not_ready_is_filtered_out() {
        let n = NodeView {
            ready: false,
            ..node("a")
        };
        assert_eq!(filter(&pod(0), &n), Err(Rejection::NotReady));
    }

    #[test]
    fn a_cordoned_node_is_filtered_out() {
        let n = NodeView {
            unschedulable: true,
            ..node("a")
        };
        assert_eq!(filter(&pod(0), &n), Err(Rejection::Unschedulable));
    }

    #[test]
    fn a_node_selector_must_match_every_label_including_the_architecture() {
        let mut p = pod(0);
        p.node_selector
            .insert("kubernetes.io/arch".into(), "arm64".into());
        assert_eq!(filter(&p, &node("a")), Ok(()));
        p.node_selector
            .insert("kubernetes.io/arch".into(), "amd64".into());
        assert_eq!(filter(&p, &node("a")), Err(Rejection::SelectorMismatch));
        let mut q = pod(0);
        q.node_selector.insert("site".into(), "barn".into());
        assert_eq!(filter(&q, &node("a")), Err(Rejection::SelectorMismatch));
    }

    #[test]
    fn memory_requests_must_fit_in_what_is_left_of_allocatable() {
        let n = NodeView {
            requested_memory: 3 * GI,
            ..node("a")
        };
        assert_eq!(filter(&pod(GI), &n), Ok(()));
        assert_eq!(filter(&pod(GI + 1), &n), Err(Rejection::InsufficientMemory));
    }

    #[test]
    fn cpu_requests_must_fit_in_what_is_left_of_allocatable() {
        let n = NodeView {
            requested_cpu: 3900,
            ..node("a")
        };
        assert_eq!(filter(&pod(GI), &n), Ok(()));
        let greedy = PodDemand {
            cpu: 101,
            ..pod(GI)
        };
        assert_eq!(filter(&greedy, &n), Err(Rejection::InsufficientCpu));
        let message = pick(&greedy, &[n]).expect_err("no fit").message;
        assert_eq!(message, "0/1 nodes are available: 1 Insufficient cpu.");
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
    fn a_full_node_takes_no_more_pods() {
        let n = NodeView {
            allocatable_pods: Some(2),
            pod_count: 2,
            ..node("a")
        };
        assert_eq!(filter(&pod(0), &n), Err(Rejection::TooManyPods));
    }

    #[test]
    fn the_least_allocated_node_wins() {
        let busy = NodeView {
            requested_memory: 2 * GI,
            ..node("a")
        };
        let idle = node("b");
        let nodes = [busy, idle];
        assert_eq!(pick(&pod(GI), &nodes).map(|n| n.name.as_str()), Ok("b"));
    }

    #[test]
    fn ties_are_broken_by_name() {
        let nodes = [node("c"), node("a"), node("b")];
        assert_eq!(pick(&pod(0), &nodes).map(|n| n.name.as_str()), Ok("a"));
    }

    #[test]
    fn pods_without_requests_spread_by_pod_count() {
        let a = NodeView {
            pod_count: 5,
            ..node("a")
        };
        let nodes = [a, node("b")];
        assert_eq!(pick(&pod(0), &nodes).map(|n| n.name.as_str()), Ok("b"));
    }

    #[test]
    fn no_fit_is_explained_like_kubernetes() {
        let mut p = pod(8 * GI);
        p.node_selector.insert("site".into(), "barn".into());
        let mut barn1 = node("b1");
        barn1.labels.insert("site".into(), "barn".into());
        let mut barn2 = node("b2");
        barn2.labels.insert("site".into(), "barn".into());
        let nodes = [node("x"), barn1, barn2];
        assert_eq!(
            pick(&p, &nodes).map(|n| n.name.clone()),
            Err(NoFit {
                message: "0/3 nodes are available: 1 node(s) didn't match Pod's node \
                          affinity/selector, 2 Insufficient memory."
                    .into()
            })
        );
    }

    #[test]
    fn no_nodes_at_all_is_explained() {
        assert!(pick(&pod(0), &[]).is_err_and(|e| e.message.starts_with("0/0 nodes")));
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
    fn a_node_view_reads_readiness_allocatable_and_bound_pods() {
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
            "spec": {"containers": [{"name": "a", "resources": {"requests": {"memory": "1Gi"}}}]}
        }))
        .expect("valid pod");
        let done: Pod = serde_json::from_value(serde_json::json!({
            "spec": {"containers": [{"name": "a", "resources": {"requests": {"memory": "1Gi"}}}]},
            "status": {"phase": "Succeeded"}
        }))
        .expect("valid pod");
        let view = node_view(&node, &[&running, &done]);
        assert!(view.ready);
        assert!(view.unschedulable);
        assert_eq!(view.allocatable_memory, 4 * GI);
        assert_eq!(view.allocatable_cpu, 4000);
        assert_eq!(view.allocatable_pods, Some(110));
        assert_eq!(view.requested_memory, GI);
        assert_eq!(view.requested_cpu, 0);
        assert_eq!(view.pod_count, 1);
    }
}
