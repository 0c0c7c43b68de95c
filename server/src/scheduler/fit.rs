//! The pure half of the scheduler: which nodes can take a pod, and which of those is best.
//!
//! For each pod, [`pick`] first counts what the placed pods mean for it per topology
//! domain (pod affinity, topology spreading: [`pod_affinity::Domains`],
//! [`spread::Domains`]), then filters every node in the order Kubernetes reports them
//! (readiness, cordon, untolerated `NoSchedule`/`NoExecute` taints, node selector and
//! required node affinity, pod count, CPU, memory, topology spread constraints, pod
//! affinity, pod anti-affinity, the placed pods' anti-affinity); each rejected node counts
//! once, under its first failing filter. Requests are what count (every pod has them:
//! admission defaults them, see `api::validation`), against the node's allocatable
//! (capacity minus what the agent reserves). Among the nodes that fit, the best is, in
//! order: the highest preference (preferred node affinity weights plus preferred pod
//! (anti-)affinity weights), the fewest pods its `ScheduleAnyway` spread constraints
//! select in its domains, the fewest pods of the same controller plus untolerated
//! `PreferNoSchedule` taints, the least allocated (average of CPU, memory and pod-slot use
//! after placing the pod); ties are broken by name so the choice is deterministic.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Taint, Toleration};

use super::pod_affinity;
use super::spread;
pub use super::view::{NodeView, PodDemand};

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
    /// The node holds its maximum number of pods.
    TooManyPods,
    /// The pod's CPU does not fit.
    InsufficientCpu,
    /// The pod's memory does not fit.
    InsufficientMemory,
    /// The node lacks the topology key of a `DoNotSchedule` spread constraint.
    SpreadMissingLabel,
    /// Placing the pod there would exceed a spread constraint's `maxSkew`.
    SpreadSkew,
    /// The required pod affinity is not satisfied there.
    Affinity,
    /// A pod the required anti-affinity keeps away from is in the node's domain.
    AntiAffinity,
    /// A placed pod's required anti-affinity keeps this pod out of the node's domain.
    ExistingAntiAffinity,
}

impl Rejection {
    fn reason(self) -> &'static str {
        match self {
            Rejection::NotReady => "node(s) were not ready",
            Rejection::Unschedulable => "node(s) were unschedulable",
            Rejection::UntoleratedTaint => "node(s) had untolerated taint(s)",
            Rejection::SelectorMismatch => "node(s) didn't match Pod's node affinity/selector",
            Rejection::TooManyPods => "Too many pods",
            Rejection::InsufficientCpu => "Insufficient cpu",
            Rejection::InsufficientMemory => "Insufficient memory",
            Rejection::SpreadMissingLabel => {
                "node(s) didn't match pod topology spread constraints (missing required label)"
            }
            Rejection::SpreadSkew => "node(s) didn't match pod topology spread constraints",
            Rejection::Affinity => "node(s) didn't match pod affinity rules",
            Rejection::AntiAffinity => "node(s) didn't match pod anti-affinity rules",
            Rejection::ExistingAntiAffinity => {
                "node(s) didn't satisfy existing pods anti-affinity rules"
            }
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

/// What the placed pods mean for one pod, counted once before its nodes are filtered.
#[derive(Debug)]
pub struct Context<'a> {
    affinity: pod_affinity::Domains<'a>,
    spread: spread::Domains<'a>,
}

impl<'a> Context<'a> {
    /// Counts the pods placed on `nodes` for `pod`.
    pub fn new(pod: &'a PodDemand, nodes: &'a [NodeView]) -> Self {
        let included = |constraint: &spread::Constraint, node: &NodeView| {
            (!constraint.honor_node_affinity || selected(pod, node))
                && (!constraint.honor_taints || !untolerated(pod, node))
        };
        Self {
            affinity: pod_affinity::Domains::count(pod, nodes),
            spread: if pod.spread.is_empty() {
                spread::Domains::default()
            } else {
                spread::Domains::count(pod, nodes, included)
            },
        }
    }
}

/// Whether the pod's node selector and required node affinity match the node.
fn selected(pod: &PodDemand, node: &NodeView) -> bool {
    pod.node_selector
        .iter()
        .all(|(key, value)| node.labels.get(key) == Some(value))
        && pod.node_affinity.requires(&node.name, &node.labels)
}

/// Whether the node has a `NoSchedule` or `NoExecute` taint the pod does not tolerate.
fn untolerated(pod: &PodDemand, node: &NodeView) -> bool {
    node.taints
        .iter()
        .any(|taint| keeps_off(taint, &pod.tolerations))
}

/// Checks one node against the pod; `Ok` when it fits.
pub fn filter(pod: &PodDemand, context: &Context, node: &NodeView) -> Result<(), Rejection> {
    if !node.ready {
        return Err(Rejection::NotReady);
    }
    if node.unschedulable {
        return Err(Rejection::Unschedulable);
    }
    if untolerated(pod, node) {
        return Err(Rejection::UntoleratedTaint);
    }
    if !selected(pod, node) {
        return Err(Rejection::SelectorMismatch);
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
    context.spread.check(node).map_err(|v| match v {
        spread::Violation::MissingLabel => Rejection::SpreadMissingLabel,
        spread::Violation::Skew => Rejection::SpreadSkew,
    })?;
    context.affinity.check(pod, node).map_err(|v| match v {
        pod_affinity::Violation::Affinity => Rejection::Affinity,
        pod_affinity::Violation::AntiAffinity => Rejection::AntiAffinity,
        pod_affinity::Violation::ExistingAntiAffinity => Rejection::ExistingAntiAffinity,
    })
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

/// How good a node that fits is: compared in order, lower is better (see the module
/// docs).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Score {
    /// Minus the preference weights.
    unpreferred: i64,
    /// Pods the `ScheduleAnyway` spread constraints select in the node's domains.
    crowding: f64,
    /// Pods of the same controller, plus untolerated `PreferNoSchedule` taints.
    siblings: u64,
    /// Share of the node in use after placing the pod.
    allocation: f64,
}

impl Score {
    fn of(pod: &PodDemand, context: &Context, node: &NodeView) -> Self {
        Self {
            unpreferred: -(pod.node_affinity.preference(&node.name, &node.labels)
                + context.affinity.preference(node)),
            crowding: context.spread.penalty(node),
            siblings: siblings(pod, node),
            allocation: allocation_after(pod, node),
        }
    }

    fn compare(&self, other: &Self) -> std::cmp::Ordering {
        self.unpreferred
            .cmp(&other.unpreferred)
            .then(self.crowding.total_cmp(&other.crowding))
            .then(self.siblings.cmp(&other.siblings))
            .then(self.allocation.total_cmp(&other.allocation))
    }
}

/// Chooses the node for the pod, or explains why none fits.
pub fn pick<'a>(pod: &PodDemand, nodes: &'a [NodeView]) -> Result<&'a NodeView, NoFit> {
    pick_index(pod, nodes).map(|i| &nodes[i])
}

/// [`pick`], answering the node's index in `nodes`.
pub fn pick_index(pod: &PodDemand, nodes: &[NodeView]) -> Result<usize, NoFit> {
    let context = Context::new(pod, nodes);
    let mut rejections: BTreeMap<Rejection, usize> = BTreeMap::new();
    let mut best: Option<(Score, usize)> = None;
    for (index, node) in nodes.iter().enumerate() {
        if let Err(rejection) = filter(pod, &context, node) {
            *rejections.entry(rejection).or_default() += 1;
            continue;
        }
        let score = Score::of(pod, &context, node);
        let better = best.as_ref().is_none_or(|(best_score, best)| {
            let tie = || node.name.cmp(&nodes[*best].name);
            score.compare(best_score).then_with(tie) == std::cmp::Ordering::Less
        });
        if better {
            best = Some((score, index));
        }
    }
    best.map(|(_, index)| index).ok_or_else(|| NoFit {
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::scheduler::view::tests::{GI, node, pod};

    /// [`filter`] with the pod's context over this node alone.
    fn check(pod: &PodDemand, node: &NodeView) -> Result<(), Rejection> {
        let nodes = std::slice::from_ref(node);
        filter(pod, &Context::new(pod, nodes), node)
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
            assert_eq!(check(&pod(0), &n), Err(Rejection::UntoleratedTaint));
        }
        let soft = NodeView {
            taints: vec![taint("x", None, "PreferNoSchedule")],
            ..node("a")
        };
        assert_eq!(check(&pod(0), &soft), Ok(()));
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
        assert_eq!(check(&tolerant, &n), Ok(()));
        // One taint left untolerated is enough to refuse.
        tolerant.tolerations.pop();
        assert_eq!(check(&tolerant, &n), Err(Rejection::UntoleratedTaint));
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
        assert_eq!(check(&pod(0), &n), Err(Rejection::NotReady));
    }

    #[test]
    fn a_cordoned_node_is_filtered_out() {
        let n = NodeView {
            unschedulable: true,
            ..node("a")
        };
        assert_eq!(check(&pod(0), &n), Err(Rejection::Unschedulable));
    }

    #[test]
    fn a_node_selector_must_match_every_label_including_the_architecture() {
        let mut p = pod(0);
        p.node_selector
            .insert("kubernetes.io/arch".into(), "arm64".into());
        assert_eq!(check(&p, &node("a")), Ok(()));
        p.node_selector
            .insert("kubernetes.io/arch".into(), "amd64".into());
        assert_eq!(check(&p, &node("a")), Err(Rejection::SelectorMismatch));
        let mut q = pod(0);
        q.node_selector.insert("site".into(), "barn".into());
        assert_eq!(check(&q, &node("a")), Err(Rejection::SelectorMismatch));
    }

    #[test]
    fn memory_requests_must_fit_in_what_is_left_of_allocatable() {
        let n = NodeView {
            requested_memory: 3 * GI,
            ..node("a")
        };
        assert_eq!(check(&pod(GI), &n), Ok(()));
        assert_eq!(check(&pod(GI + 1), &n), Err(Rejection::InsufficientMemory));
    }

    #[test]
    fn cpu_requests_must_fit_in_what_is_left_of_allocatable() {
        let n = NodeView {
            requested_cpu: 3900,
            ..node("a")
        };
        assert_eq!(check(&pod(GI), &n), Ok(()));
        let greedy = PodDemand {
            cpu: 101,
            ..pod(GI)
        };
        assert_eq!(check(&greedy, &n), Err(Rejection::InsufficientCpu));
        let message = pick(&greedy, &[n]).expect_err("no fit").message;
        assert_eq!(message, "0/1 nodes are available: 1 Insufficient cpu.");
    }

    #[test]
    fn a_full_node_takes_no_more_pods() {
        let n = NodeView {
            allocatable_pods: Some(2),
            pod_count: 2,
            ..node("a")
        };
        assert_eq!(check(&pod(0), &n), Err(Rejection::TooManyPods));
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

    /// A pod with these `spec.affinity` and `spec.topologySpreadConstraints` (JSON) and
    /// labels `app: web`.
    fn web(affinity: serde_json::Value, spread: serde_json::Value) -> PodDemand {
        use k8s_openapi::api::core::v1::Pod;
        let typed: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "w", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c"}], "affinity": affinity,
                     "topologySpreadConstraints": spread},
        }))
        .expect("valid pod");
        crate::scheduler::view::demand(&typed, &BTreeMap::new())
    }

    /// A node `name` in `zone` running `apps` (pods labelled `app`).
    fn zoned(name: &str, zone: &str, apps: &[&str]) -> NodeView {
        let mut n = crate::scheduler::view::tests::zoned(name, zone);
        for app in apps {
            n.place_demand(&PodDemand {
                labels: serde_json::json!({ "app": app }),
                ..pod(0)
            });
        }
        n
    }

    #[test]
    fn no_fit_names_the_pod_affinity_rule_that_failed() {
        let nodes = [
            zoned("a", "z1", &[]),
            zoned("b", "z1", &[]),
            zoned("c", "z2", &[]),
        ];
        let needs_db = web(
            serde_json::json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}}),
            serde_json::Value::Null,
        );
        assert_eq!(
            pick(&needs_db, &nodes).map(|n| n.name.clone()),
            Err(NoFit {
                message: "0/3 nodes are available: 3 node(s) didn't match pod affinity rules."
                    .into()
            })
        );
        let nodes = [
            zoned("a", "z1", &["web"]),
            zoned("b", "z1", &[]),
            zoned("c", "z2", &["web"]),
        ];
        let apart = web(
            serde_json::json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "topology.kubernetes.io/zone"}]}}),
            serde_json::Value::Null,
        );
        assert_eq!(
            pick(&apart, &nodes).map(|n| n.name.clone()),
            Err(NoFit {
                message: "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."
                    .into()
            })
        );
    }

    #[test]
    fn a_pod_with_affinity_to_an_app_lands_beside_it() {
        let nodes = [
            zoned("a", "z1", &[]),
            zoned("b", "z1", &["db"]),
            zoned("c", "z2", &[]),
        ];
        let needs_db = web(
            serde_json::json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}}),
            serde_json::Value::Null,
        );
        assert_eq!(pick(&needs_db, &nodes).map(|n| n.name.as_str()), Ok("b"));
        let near_db = web(
            serde_json::json!({"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 50, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "db"}},
                 "topologyKey": "topology.kubernetes.io/zone"}}]}}),
            serde_json::Value::Null,
        );
        let mut crowded = nodes.clone();
        crowded[1].requested_memory = 3 * GI;
        assert_eq!(
            pick(&near_db, &crowded).map(|n| n.name.as_str()),
            Ok("a"),
            "the preferred zone first, then the least allocated in it"
        );
    }

    #[test]
    fn a_hard_spread_constraint_fills_the_emptiest_domain_and_explains_a_skew() {
        let spread = serde_json::json!([{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]);
        let nodes = [
            zoned("a", "z1", &["web"]),
            zoned("b", "z1", &[]),
            zoned("c", "z2", &[]),
        ];
        assert_eq!(
            pick(&web(serde_json::Value::Null, spread.clone()), &nodes).map(|n| n.name.as_str()),
            Ok("c")
        );
        let mut full = nodes.clone();
        full[2].unschedulable = true;
        assert_eq!(
            pick(&web(serde_json::Value::Null, spread), &full).map(|n| n.name.clone()),
            Err(NoFit {
                message: "0/3 nodes are available: 1 node(s) were unschedulable, \
                          2 node(s) didn't match pod topology spread constraints."
                    .into()
            })
        );
    }

    #[test]
    fn nodes_the_pods_node_selector_rejects_do_not_count_for_spreading_by_default() {
        let spread = |policy: &str| {
            serde_json::json!([{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule", "nodeAffinityPolicy": policy,
                "labelSelector": {"matchLabels": {"app": "web"}}}])
        };
        let mut nodes = [zoned("a", "z1", &["web"]), zoned("b", "z2", &[])];
        nodes[0].labels.insert("site".into(), "barn".into());
        let mut honour = web(serde_json::Value::Null, spread("Honor"));
        honour.node_selector.insert("site".into(), "barn".into());
        assert_eq!(pick(&honour, &nodes).map(|n| n.name.as_str()), Ok("a"));
        let mut ignore = web(serde_json::Value::Null, spread("Ignore"));
        ignore.node_selector.insert("site".into(), "barn".into());
        assert!(pick(&ignore, &nodes).is_err_and(|e| e.message.contains("spread")));
    }

    #[test]
    fn a_soft_spread_constraint_prefers_the_emptiest_domain_before_allocation() {
        let spread = serde_json::json!([{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": "web"}}}]);
        let mut nodes = [zoned("a", "z1", &["web"]), zoned("b", "z2", &[])];
        nodes[1].requested_memory = 3 * GI;
        assert_eq!(
            pick(&web(serde_json::Value::Null, spread), &nodes).map(|n| n.name.as_str()),
            Ok("b")
        );
    }
}
