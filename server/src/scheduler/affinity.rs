//! Node affinity, parsed once per pod (pure; `fit` calls it for every node):
//!
//! - `requiredDuringSchedulingIgnoredDuringExecution`: the node must match one of the
//!   terms (every `matchExpressions` requirement on its labels: `In`, `NotIn`, `Exists`,
//!   `DoesNotExist`, `Gt`, `Lt`; `matchFields` on `metadata.name`);
//! - `preferredDuringSchedulingIgnoredDuringExecution`: the weights of the matching
//!   preferences add up.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm};

/// A pod's node affinity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeAffinity {
    /// The required terms (one must match); `None` when there is no requirement.
    required: Option<Vec<Term>>,
    /// The preferred terms and their weights.
    preferred: Vec<(i64, Term)>,
}

/// One `NodeSelectorTerm`: every requirement must hold; an empty term matches nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    expressions: Vec<Requirement>,
    fields: Vec<Requirement>,
}

/// One `NodeSelectorRequirement`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
    /// An operator admission refuses; it matches nothing.
    Unknown,
}

impl NodeAffinity {
    /// The node affinity of a pod spec (`spec.affinity.nodeAffinity`).
    pub fn of(affinity: Option<&k8s_openapi::api::core::v1::NodeAffinity>) -> Self {
        let Some(affinity) = affinity else {
            return Self::default();
        };
        Self {
            required: affinity
                .required_during_scheduling_ignored_during_execution
                .as_ref()
                .map(|r| r.node_selector_terms.iter().map(Term::of).collect()),
            preferred: affinity
                .preferred_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
                .map(|p| (i64::from(p.weight), Term::of(&p.preference)))
                .collect(),
        }
    }

    /// Whether the node matches the required terms (true when there are none).
    pub fn requires(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.required
            .as_ref()
            .is_none_or(|terms| terms.iter().any(|t| t.matches(name, labels)))
    }

    /// The summed weight of the preferred terms the node matches.
    pub fn preference(&self, name: &str, labels: &BTreeMap<String, String>) -> i64 {
        self.preferred
            .iter()
            .filter(|(_, term)| term.matches(name, labels))
            .map(|(weight, _)| weight)
            .sum()
    }
}

impl Term {
    fn of(term: &NodeSelectorTerm) -> Self {
        let list = |r: &Option<Vec<NodeSelectorRequirement>>| {
            r.iter().flatten().map(Requirement::of).collect()
        };
        Self {
            expressions: list(&term.match_expressions),
            fields: list(&term.match_fields),
        }
    }

    fn matches(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        if self.expressions.is_empty() && self.fields.is_empty() {
            return false; // an empty term matches nothing, as in Kubernetes
        }
        self.expressions
            .iter()
            .all(|r| r.holds(labels.get(&r.key).map(String::as_str)))
            && self
                .fields
                .iter()
                .all(|r| r.holds((r.key == "metadata.name").then_some(name)))
    }
}

impl Requirement {
    fn of(requirement: &NodeSelectorRequirement) -> Self {
        let operator = match requirement.operator.as_str() {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            "Gt" => Operator::Gt,
            "Lt" => Operator::Lt,
            _ => Operator::Unknown,
        };
        Self {
            key: requirement.key.clone(),
            operator,
            values: requirement.values.clone().unwrap_or_default(),
        }
    }

    /// Against a value (`None`: the label is absent).
    fn holds(&self, value: Option<&str>) -> bool {
        let listed = || value.is_some_and(|v| self.values.iter().any(|x| x == v));
        let compare = |wanted: std::cmp::Ordering| {
            let number = |text: &str| text.parse::<i64>().ok();
            match (
                value.and_then(number),
                self.values.first().and_then(|v| number(v)),
            ) {
                (Some(actual), Some(bound)) => actual.cmp(&bound) == wanted,
                _ => false,
            }
        };
        match self.operator {
            Operator::In => listed(),
            Operator::NotIn => !listed(),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::Gt => compare(std::cmp::Ordering::Greater),
            Operator::Lt => compare(std::cmp::Ordering::Less),
            Operator::Unknown => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn parse(affinity: serde_json::Value) -> NodeAffinity {
        let typed: k8s_openapi::api::core::v1::NodeAffinity =
            serde_json::from_value(affinity).expect("valid node affinity");
        NodeAffinity::of(Some(&typed))
    }

    #[test]
    fn required_and_preferred_node_affinity() {
        let affinity = parse(json!({
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "arch", "operator": "In", "values": ["arm64"]},
                                      {"key": "ram", "operator": "Gt", "values": ["1"]}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["special"]}]},
            ]},
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "preference": {"matchExpressions": [{"key": "site", "operator": "Exists"}]}},
            ],
        }));
        assert!(affinity.requires("pi", &labels(&[("arch", "arm64"), ("ram", "4")])));
        assert!(!affinity.requires("pi", &labels(&[("arch", "arm64"), ("ram", "1")])));
        assert!(!affinity.requires("pi", &labels(&[("arch", "amd64"), ("ram", "8")])));
        assert!(affinity.requires("special", &labels(&[])));
        assert_eq!(affinity.preference("pi", &labels(&[("site", "barn")])), 10);
        assert_eq!(affinity.preference("pi", &labels(&[])), 0);
        assert!(NodeAffinity::of(None).requires("pi", &labels(&[])));
    }

    #[test]
    fn not_in_and_does_not_exist_hold_for_a_node_without_the_label() {
        let affinity = parse(json!({
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]},
                                      {"key": "gpu", "operator": "DoesNotExist"},
                                      {"key": "ram", "operator": "Lt", "values": ["8"]}]},
            ]},
        }));
        assert!(affinity.requires("pi", &labels(&[("ram", "4")])));
        assert!(!affinity.requires("pi", &labels(&[("ram", "4"), ("zone", "a")])));
        assert!(!affinity.requires("pi", &labels(&[("ram", "4"), ("gpu", "1")])));
        assert!(!affinity.requires("pi", &labels(&[])), "Lt needs the label");
    }
}
