//! Topology spread constraints (`spec.topologySpreadConstraints`), as kube-scheduler's
//! `PodTopologySpread` plugin does them (pure).
//!
//! A constraint counts the pods its `labelSelector` selects (in the pod's namespace, not
//! being deleted; `matchLabelKeys` adds the pod's own values of those labels to the
//! selector) per domain of `topologyKey`. Only nodes that have the keys of all the pod's
//! constraints of the same kind count, and, by the default policies, only nodes its node
//! selector and required node affinity match (`nodeAffinityPolicy: Honor`), whatever
//! their taints (`nodeTaintsPolicy: Ignore`). With `whenUnsatisfiable: DoNotSchedule` a
//! node is filtered out when it lacks the key, or when placing the pod there would make
//! its domain's count exceed the smallest domain's by more than `maxSkew` (the smallest
//! counts as 0 while there are fewer than `minDomains` domains). With `ScheduleAnyway`
//! the node with the fewest selected pods in its domains wins (each constraint weighted by
//! the log of its number of domains, as Kubernetes does), and a node without a key loses.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::TopologySpreadConstraint;
use serde_json::{Value, json};

use super::view::{NodeView, PodDemand};
use crate::k8s::selectors::Selector;

/// One topology spread constraint of a pod, with its selector resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    /// `maxSkew`.
    max_skew: u32,
    /// The node label whose value names the domain.
    topology_key: String,
    /// `whenUnsatisfiable: DoNotSchedule` (else `ScheduleAnyway`).
    hard: bool,
    /// `labelSelector` plus `matchLabelKeys`; `None` selects no pod, as in Kubernetes.
    selector: Option<Selector>,
    /// `minDomains` (1 when unset).
    min_domains: usize,
    /// `nodeAffinityPolicy: Honor` (the default): nodes the pod's node selector and
    /// required node affinity reject do not count.
    pub honor_node_affinity: bool,
    /// `nodeTaintsPolicy: Honor` (not the default): nodes with taints the pod does not
    /// tolerate do not count.
    pub honor_taints: bool,
}

impl Constraint {
    /// A constraint of a pod with `labels`.
    pub fn of(constraint: &TopologySpreadConstraint, labels: &BTreeMap<String, String>) -> Self {
        Self {
            max_skew: u32::try_from(constraint.max_skew).unwrap_or(1).max(1),
            topology_key: constraint.topology_key.clone(),
            hard: constraint.when_unsatisfiable == "DoNotSchedule",
            selector: selector(constraint, labels),
            min_domains: constraint
                .min_domains
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(1),
            honor_node_affinity: constraint.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_taints: constraint.node_taints_policy.as_deref() == Some("Honor"),
        }
    }

    fn selects(&self, namespace: &str, pod_namespace: &str, labels: &Value) -> bool {
        namespace == pod_namespace
            && self
                .selector
                .as_ref()
                .is_some_and(|s| s.matches_labels(Some(labels)))
    }
}

/// The label selector plus a requirement `key In (pod's value)` per `matchLabelKeys` key
/// the pod has.
fn selector(
    constraint: &TopologySpreadConstraint,
    labels: &BTreeMap<String, String>,
) -> Option<Selector> {
    let mut json = serde_json::to_value(constraint.label_selector.as_ref()?).ok()?;
    let extra: Vec<Value> = constraint
        .match_label_keys
        .iter()
        .flatten()
        .filter_map(|key| {
            let value = labels.get(key)?;
            Some(json!({"key": key, "operator": "In", "values": [value]}))
        })
        .collect();
    if !extra.is_empty() {
        let expressions = json
            .as_object_mut()?
            .entry("matchExpressions")
            .or_insert_with(|| json!([]));
        expressions.as_array_mut()?.extend(extra);
    }
    Selector::from_label_selector(&json).ok()
}

/// Why spreading keeps a pod off a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// The node lacks a `DoNotSchedule` constraint's topology key.
    MissingLabel,
    /// Placing the pod there would exceed a constraint's `maxSkew`.
    Skew,
}

/// One constraint's counts over the nodes.
#[derive(Debug)]
struct Counted<'a> {
    constraint: &'a Constraint,
    /// Selected pods per domain (value of the key), every counted domain present.
    counts: HashMap<&'a str, u32>,
    /// The smallest count (0 while there are fewer domains than `minDomains`).
    min: u32,
    /// 1 when the constraint selects the pod itself.
    self_match: u32,
    /// `ln(domains + 2)`: how much a constraint over more domains weighs in the score.
    weight: f64,
}

/// The counts of every constraint of one pod (kube-scheduler's `PreFilter` and
/// `PreScore` state for `PodTopologySpread`).
#[derive(Debug, Default)]
pub struct Domains<'a> {
    hard: Vec<Counted<'a>>,
    soft: Vec<Counted<'a>>,
}

impl<'a> Domains<'a> {
    /// Counts for `pod` over `nodes`; `included` applies a constraint's node policies
    /// (whether the node counts at all).
    pub fn count(
        pod: &'a PodDemand,
        nodes: &'a [NodeView],
        included: impl Fn(&Constraint, &NodeView) -> bool,
    ) -> Self {
        let (hard, soft): (Vec<&Constraint>, Vec<&Constraint>) =
            pod.spread.iter().partition(|c| c.hard);
        let group = |group: &[&'a Constraint]| -> Vec<Counted<'a>> {
            group
                .iter()
                .map(|c| count_one(pod, c, group, nodes, &included))
                .collect()
        };
        Self {
            hard: group(&hard),
            soft: group(&soft),
        }
    }

    /// Whether the `DoNotSchedule` constraints let the pod onto `node`.
    pub fn check(&self, node: &NodeView) -> Result<(), Violation> {
        for counted in &self.hard {
            let Some(domain) = node.labels.get(&counted.constraint.topology_key) else {
                return Err(Violation::MissingLabel);
            };
            let here = counted.counts.get(domain.as_str()).copied().unwrap_or(0);
            let skew = (here + counted.self_match).saturating_sub(counted.min);
            if skew > counted.constraint.max_skew {
                return Err(Violation::Skew);
            }
        }
        Ok(())
    }

    /// How crowded the node's domains are by the `ScheduleAnyway` constraints (lower is
    /// better; infinite for a node without one of their keys).
    pub fn penalty(&self, node: &NodeView) -> f64 {
        self.soft
            .iter()
            .map(
                |counted| match node.labels.get(&counted.constraint.topology_key) {
                    None => f64::INFINITY,
                    Some(domain) => {
                        let here = counted.counts.get(domain.as_str()).copied().unwrap_or(0);
                        f64::from(here) * counted.weight
                    }
                },
            )
            .sum()
    }
}

/// Counts one constraint over the nodes that have every key of its group.
#[allow(clippy::cast_precision_loss)] // a number of domains, for a log weight
fn count_one<'a>(
    pod: &PodDemand,
    constraint: &'a Constraint,
    group: &[&Constraint],
    nodes: &'a [NodeView],
    included: &impl Fn(&Constraint, &NodeView) -> bool,
) -> Counted<'a> {
    let mut counts: HashMap<&'a str, u32> = HashMap::new();
    let counted = nodes.iter().filter(|node| {
        group
            .iter()
            .all(|c| node.labels.contains_key(&c.topology_key))
            && included(constraint, node)
    });
    for node in counted {
        let Some(domain) = node.labels.get(&constraint.topology_key) else {
            continue;
        };
        let selected = node
            .neighbours
            .iter()
            .filter(|n| {
                !n.terminating && constraint.selects(&n.namespace, &pod.namespace, &n.labels)
            })
            .count();
        *counts.entry(domain.as_str()).or_default() += u32::try_from(selected).unwrap_or(u32::MAX);
    }
    let min = if counts.len() < constraint.min_domains {
        0
    } else {
        counts.values().copied().min().unwrap_or(0)
    };
    Counted {
        constraint,
        min,
        self_match: u32::from(constraint.selects(&pod.namespace, &pod.namespace, &pod.labels)),
        weight: (counts.len() as f64 + 2.0).ln(),
        counts,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::scheduler::pod_affinity::Neighbour;
    use crate::scheduler::view::tests::{HOST, ZONE, node, pod, zoned};

    fn web(count: usize) -> Vec<Neighbour> {
        (0..count)
            .map(|_| Neighbour {
                namespace: "default".into(),
                labels: json!({"app": "web"}),
                terminating: false,
                affinity: None,
            })
            .collect()
    }

    fn spreading(constraints: Value) -> PodDemand {
        let typed: Vec<TopologySpreadConstraint> =
            serde_json::from_value(constraints).expect("valid constraints");
        let labels = BTreeMap::from([("app".into(), "web".into()), ("v".into(), "2".into())]);
        PodDemand {
            labels: json!(labels),
            spread: typed.iter().map(|c| Constraint::of(c, &labels)).collect(),
            ..pod(0)
        }
    }

    fn constraint(key: &str, skew: u32, when: &str) -> Value {
        json!({"maxSkew": skew, "topologyKey": key, "whenUnsatisfiable": when,
               "labelSelector": {"matchLabels": {"app": "web"}}})
    }

    fn everywhere(_: &Constraint, _: &NodeView) -> bool {
        true
    }

    fn checks(pod: &PodDemand, nodes: &[NodeView]) -> Vec<Result<(), Violation>> {
        let domains = Domains::count(pod, nodes, everywhere);
        nodes.iter().map(|n| domains.check(n)).collect()
    }

    #[test]
    fn do_not_schedule_keeps_the_skew_within_max_skew() {
        let mut a = zoned("a", "z1");
        a.neighbours = web(2);
        let mut b = zoned("b", "z2");
        b.neighbours = web(1);
        let nodes = [a, b, zoned("c", "")];
        let pod = spreading(json!([constraint(ZONE, 1, "DoNotSchedule")]));
        assert_eq!(
            checks(&pod, &nodes),
            [Err(Violation::Skew), Ok(()), Err(Violation::MissingLabel)]
        );
        let lax = spreading(json!([constraint(ZONE, 2, "DoNotSchedule")]));
        assert_eq!(checks(&lax, &nodes)[0], Ok(()));
    }

    #[test]
    fn an_empty_domain_counts_as_the_minimum() {
        let mut a = node("a");
        a.labels.insert(HOST.into(), "a".into());
        a.neighbours = web(1);
        let mut b = node("b");
        b.labels.insert(HOST.into(), "b".into());
        let nodes = [a, b];
        let pod = spreading(json!([constraint(HOST, 1, "DoNotSchedule")]));
        assert_eq!(checks(&pod, &nodes), [Err(Violation::Skew), Ok(())]);
    }

    #[test]
    fn min_domains_holds_the_minimum_at_zero_until_enough_domains_exist() {
        let mut a = zoned("a", "z1");
        a.neighbours = web(1);
        let mut b = zoned("b", "z2");
        b.neighbours = web(1);
        let nodes = [a, b];
        let mut c = constraint(ZONE, 1, "DoNotSchedule");
        assert_eq!(
            checks(&spreading(json!([c.clone()])), &nodes),
            [Ok(()), Ok(())]
        );
        c["minDomains"] = json!(3);
        assert_eq!(
            checks(&spreading(json!([c])), &nodes),
            [Err(Violation::Skew), Err(Violation::Skew)]
        );
    }

    #[test]
    fn only_pods_of_the_namespace_selected_and_not_terminating_count() {
        let mut a = zoned("a", "z1");
        a.neighbours = web(2);
        a.neighbours[0].namespace = "other".into();
        a.neighbours[1].terminating = true;
        a.neighbours.push(Neighbour {
            labels: json!({"app": "db"}),
            ..web(1).remove(0)
        });
        let nodes = [a, zoned("b", "z2")];
        let pod = spreading(json!([constraint(ZONE, 1, "DoNotSchedule")]));
        assert_eq!(checks(&pod, &nodes), [Ok(()), Ok(())]);
    }

    #[test]
    fn match_label_keys_narrow_the_selector_to_the_pods_own_values() {
        let mut a = zoned("a", "z1");
        a.neighbours = web(2); // no `v` label: another revision
        let nodes = [a, zoned("b", "z2")];
        let mut c = constraint(ZONE, 1, "DoNotSchedule");
        c["matchLabelKeys"] = json!(["v"]);
        assert_eq!(checks(&spreading(json!([c])), &nodes), [Ok(()), Ok(())]);
    }

    #[test]
    fn the_node_affinity_policy_decides_which_nodes_count() {
        let mut a = zoned("a", "z1");
        a.neighbours = web(1);
        let nodes = [a, zoned("b", "z2")];
        let pod = spreading(json!([constraint(ZONE, 1, "DoNotSchedule")]));
        // With z2 not counted (say the pod's node selector rejects it), z1 is the minimum.
        let only_z1 = |_: &Constraint, n: &NodeView| n.name == "a";
        let domains = Domains::count(&pod, &nodes, only_z1);
        assert_eq!(domains.check(&nodes[0]), Ok(()));
    }

    #[test]
    fn schedule_anyway_prefers_the_emptiest_domain_and_never_filters() {
        let mut a = zoned("a", "z1");
        a.neighbours = web(3);
        let mut b = zoned("b", "z2");
        b.neighbours = web(1);
        let nodes = [a, b, zoned("c", "")];
        let pod = spreading(json!([constraint(ZONE, 1, "ScheduleAnyway")]));
        let domains = Domains::count(&pod, &nodes, everywhere);
        assert!(nodes.iter().all(|n| domains.check(n).is_ok()));
        let penalties: Vec<f64> = nodes.iter().map(|n| domains.penalty(n)).collect();
        assert!(penalties[1] < penalties[0], "{penalties:?}");
        assert!(penalties[2].is_infinite(), "{penalties:?}");
    }

    #[test]
    fn a_constraint_without_a_label_selector_selects_nothing() {
        let mut a = zoned("a", "z1");
        a.neighbours = web(5);
        let nodes = [a, zoned("b", "z2")];
        let pod = spreading(
            json!([{"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule"}]),
        );
        assert_eq!(checks(&pod, &nodes), [Ok(()), Ok(())]);
    }
}
