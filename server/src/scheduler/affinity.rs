//! Node affinity and pod anti-affinity, the parts of `spec.affinity` the scheduler honours
//! (pure; `fit` calls it):
//!
//! - `nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution`: the node must match one
//!   of the terms (every `matchExpressions` requirement on its labels: `In`, `NotIn`,
//!   `Exists`, `DoesNotExist`, `Gt`, `Lt`; `matchFields` on `metadata.name`);
//!   `preferredDuringScheduling...`: the weights of the matching preferences add up;
//! - `podAntiAffinity` by `kubernetes.io/hostname` (the only topology admission accepts):
//!   required terms keep the pod off a node running a pod the term's selector matches (in
//!   the term's namespaces, or the pod's own); preferred terms count against such a node.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::k8s::selectors::Selector;

/// A pod already on a node, as anti-affinity sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    /// Its namespace.
    pub namespace: String,
    /// Its labels.
    pub labels: Value,
}

/// The value at `path` (object fields) under `value`. Unlike `Value::pointer` it allocates
/// nothing: these lookups run for every node of every pick.
fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(value, |value, field| value.get(*field))
}

/// Whether the node matches the required node affinity (true when there is none).
pub fn required_nodes(affinity: &Value, name: &str, labels: &BTreeMap<String, String>) -> bool {
    let terms = at(
        affinity,
        &[
            "nodeAffinity",
            "requiredDuringSchedulingIgnoredDuringExecution",
            "nodeSelectorTerms",
        ],
    )
    .and_then(Value::as_array);
    match terms {
        None => true,
        Some(terms) => terms.iter().any(|term| term_matches(term, name, labels)),
    }
}

/// The summed weight of the preferred node affinity terms the node matches.
pub fn preferred_weight(affinity: &Value, name: &str, labels: &BTreeMap<String, String>) -> i64 {
    at(
        affinity,
        &[
            "nodeAffinity",
            "preferredDuringSchedulingIgnoredDuringExecution",
        ],
    )
    .and_then(Value::as_array)
    .into_iter()
    .flatten()
    .filter(|p| term_matches(&p["preference"], name, labels))
    .filter_map(|p| p["weight"].as_i64())
    .sum()
}

fn term_matches(term: &Value, name: &str, labels: &BTreeMap<String, String>) -> bool {
    let list = |field: &str| term[field].as_array().cloned().unwrap_or_default();
    let (expressions, fields) = (list("matchExpressions"), list("matchFields"));
    if expressions.is_empty() && fields.is_empty() {
        return false; // an empty term matches nothing, as in Kubernetes
    }
    expressions.iter().all(|e| {
        requirement(
            e,
            labels
                .get(e["key"].as_str().unwrap_or(""))
                .map(String::as_str),
        )
    }) && fields.iter().all(|e| {
        let value = (e["key"] == "metadata.name").then_some(name);
        requirement(e, value)
    })
}

/// One `NodeSelectorRequirement` against a value (`None`: the label is absent).
fn requirement(expression: &Value, value: Option<&str>) -> bool {
    let values: Vec<&str> = expression["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let number = |text: &str| text.parse::<i64>().ok();
    match expression["operator"].as_str().unwrap_or("") {
        "In" => value.is_some_and(|v| values.contains(&v)),
        "NotIn" => !value.is_some_and(|v| values.contains(&v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => {
            matches!((value.and_then(number), values.first().and_then(|v| number(v))), (Some(a), Some(b)) if a > b)
        }
        "Lt" => {
            matches!((value.and_then(number), values.first().and_then(|v| number(v))), (Some(a), Some(b)) if a < b)
        }
        _ => false,
    }
}

/// How many of the node's pods a set of anti-affinity terms matches.
fn anti_matches(terms: &[Value], namespace: &str, neighbours: &[Neighbour]) -> usize {
    terms
        .iter()
        .map(|term| {
            let Ok(selector) = Selector::from_label_selector(&term["labelSelector"]) else {
                return 0;
            };
            let namespaces: Vec<&str> = term["namespaces"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            neighbours
                .iter()
                .filter(|n| match namespaces.is_empty() {
                    true => n.namespace == namespace,
                    false => namespaces.contains(&n.namespace.as_str()),
                })
                .filter(|n| selector.matches_labels(Some(&n.labels)))
                .count()
        })
        .sum()
}

/// Whether the required pod anti-affinity lets the pod onto a node with these pods.
pub fn anti_affinity_allows(affinity: &Value, namespace: &str, neighbours: &[Neighbour]) -> bool {
    let required = at(
        affinity,
        &[
            "podAntiAffinity",
            "requiredDuringSchedulingIgnoredDuringExecution",
        ],
    )
    .and_then(Value::as_array)
    .map_or(&[][..], Vec::as_slice);
    anti_matches(required, namespace, neighbours) == 0
}

/// How many pods on the node the preferred anti-affinity terms match (weighted by term).
pub fn anti_affinity_penalty(affinity: &Value, namespace: &str, neighbours: &[Neighbour]) -> u64 {
    at(
        affinity,
        &[
            "podAntiAffinity",
            "preferredDuringSchedulingIgnoredDuringExecution",
        ],
    )
    .and_then(Value::as_array)
    .into_iter()
    .flatten()
    .map(|p| {
        let weight = p["weight"].as_u64().unwrap_or(1);
        let matched = anti_matches(
            std::slice::from_ref(&p["podAffinityTerm"]),
            namespace,
            neighbours,
        );
        weight.saturating_mul(matched as u64)
    })
    .sum()
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

    #[test]
    fn required_and_preferred_node_affinity() {
        let affinity = json!({"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "arch", "operator": "In", "values": ["arm64"]},
                                      {"key": "ram", "operator": "Gt", "values": ["1"]}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["special"]}]},
            ]},
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "preference": {"matchExpressions": [{"key": "site", "operator": "Exists"}]}},
            ],
        }});
        assert!(required_nodes(
            &affinity,
            "pi",
            &labels(&[("arch", "arm64"), ("ram", "4")])
        ));
        assert!(!required_nodes(
            &affinity,
            "pi",
            &labels(&[("arch", "arm64"), ("ram", "1")])
        ));
        assert!(!required_nodes(
            &affinity,
            "pi",
            &labels(&[("arch", "amd64"), ("ram", "8")])
        ));
        assert!(required_nodes(&affinity, "special", &labels(&[])));
        assert_eq!(
            preferred_weight(&affinity, "pi", &labels(&[("site", "barn")])),
            10
        );
        assert!(required_nodes(&json!({}), "pi", &labels(&[])));
    }

    #[test]
    fn anti_affinity_by_hostname_keeps_pods_apart() {
        let affinity = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"},
        ]}});
        let db = Neighbour {
            namespace: "default".into(),
            labels: json!({"app": "db"}),
        };
        let elsewhere = Neighbour {
            namespace: "other".into(),
            labels: json!({"app": "db"}),
        };
        assert!(!anti_affinity_allows(&affinity, "default", &[db]));
        assert!(anti_affinity_allows(&affinity, "default", &[elsewhere]));
        assert!(anti_affinity_allows(&json!({}), "default", &[]));
    }
}
