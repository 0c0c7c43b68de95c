//! What a pod spec may say about where it runs, at admission: `affinity` (node affinity,
//! pod affinity and anti-affinity) and `topologySpreadConstraints` ([`AFFINITY`],
//! [`SPREAD_CONSTRAINT`], checked by [`check`]). Pure functions over JSON.
//!
//! The scheduler honours all of it (see `scheduler::{affinity, pod_affinity, spread}`),
//! so the checks are Kubernetes' own: a term needs a `topologyKey` and valid selectors, a
//! preference weight is 1-100, a constraint needs a positive `maxSkew`, a `topologyKey`
//! and a `whenUnsatisfiable`, `minDomains` only with `DoNotSchedule`, and one constraint
//! per key and `whenUnsatisfiable`. What wasmfleet does not do (`matchLabelKeys` and
//! `mismatchLabelKeys` in affinity terms) is outside the shapes, so refused by name.

use serde_json::Value;

use super::status::Cause;
use super::validation::{LABEL_SELECTOR, Shape, required};
use crate::k8s::selectors::Selector;

const NODE_REQUIREMENT: Shape = Shape::Object(&[
    ("key", Shape::Str),
    ("operator", Shape::Str),
    ("values", Shape::List(&Shape::Str)),
]);
const NODE_TERM: Shape = Shape::Object(&[
    ("matchExpressions", Shape::List(&NODE_REQUIREMENT)),
    ("matchFields", Shape::List(&NODE_REQUIREMENT)),
]);
const NODE_AFFINITY: Shape = Shape::Object(&[
    (
        "requiredDuringSchedulingIgnoredDuringExecution",
        Shape::Object(&[("nodeSelectorTerms", Shape::List(&NODE_TERM))]),
    ),
    (
        "preferredDuringSchedulingIgnoredDuringExecution",
        Shape::List(&Shape::Object(&[
            ("weight", Shape::Int),
            ("preference", NODE_TERM),
        ])),
    ),
]);
const POD_TERM: Shape = Shape::Object(&[
    ("labelSelector", LABEL_SELECTOR),
    ("topologyKey", Shape::Str),
    ("namespaces", Shape::List(&Shape::Str)),
    ("namespaceSelector", LABEL_SELECTOR),
]);
/// `podAffinity` and `podAntiAffinity` have the same shape.
const POD_AFFINITY: Shape = Shape::Object(&[
    (
        "requiredDuringSchedulingIgnoredDuringExecution",
        Shape::List(&POD_TERM),
    ),
    (
        "preferredDuringSchedulingIgnoredDuringExecution",
        Shape::List(&Shape::Object(&[
            ("weight", Shape::Int),
            ("podAffinityTerm", POD_TERM),
        ])),
    ),
]);
/// What `spec.affinity` may hold.
pub const AFFINITY: Shape = Shape::Object(&[
    ("nodeAffinity", NODE_AFFINITY),
    ("podAffinity", POD_AFFINITY),
    ("podAntiAffinity", POD_AFFINITY),
]);
/// One of `spec.topologySpreadConstraints`.
pub const SPREAD_CONSTRAINT: Shape = Shape::Object(&[
    ("maxSkew", Shape::Int),
    ("topologyKey", Shape::Str),
    (
        "whenUnsatisfiable",
        Shape::OneOf(&["DoNotSchedule", "ScheduleAnyway"]),
    ),
    ("labelSelector", LABEL_SELECTOR),
    ("minDomains", Shape::Int),
    ("matchLabelKeys", Shape::List(&Shape::Str)),
    ("nodeAffinityPolicy", Shape::OneOf(&["Honor", "Ignore"])),
    ("nodeTaintsPolicy", Shape::OneOf(&["Honor", "Ignore"])),
]);

/// Checks the values of a pod spec's (at `path`) affinity and spread constraints (their
/// shapes are checked with the spec's).
pub fn check(spec: &Value, path: &str, causes: &mut Vec<Cause>) {
    for kind in ["podAffinity", "podAntiAffinity"] {
        if let Some(rules) = spec.get("affinity").and_then(|a| a.get(kind)) {
            check_pod_affinity(rules, &format!("{path}.affinity.{kind}"), causes);
        }
    }
    let constraints = spec
        .get("topologySpreadConstraints")
        .and_then(Value::as_array);
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for (i, constraint) in constraints.into_iter().flatten().enumerate() {
        let at = format!("{path}.topologySpreadConstraints[{i}]");
        check_constraint(constraint, &at, causes);
        let pair = (
            constraint["topologyKey"].as_str().unwrap_or(""),
            constraint["whenUnsatisfiable"].as_str().unwrap_or(""),
        );
        if seen.contains(&pair) {
            causes.push(Cause::new(
                "FieldValueDuplicate",
                format!("{at}.{{topologyKey, whenUnsatisfiable}}"),
                format!("Duplicate value: \"{}, {}\"", pair.0, pair.1),
            ));
        }
        seen.push(pair);
    }
}

fn check_pod_affinity(rules: &Value, path: &str, causes: &mut Vec<Cause>) {
    let required = rules["requiredDuringSchedulingIgnoredDuringExecution"]
        .as_array()
        .into_iter()
        .flatten();
    for (i, term) in required.enumerate() {
        let at = format!("{path}.requiredDuringSchedulingIgnoredDuringExecution[{i}]");
        check_term(term, &at, causes);
    }
    let preferred = rules["preferredDuringSchedulingIgnoredDuringExecution"]
        .as_array()
        .into_iter()
        .flatten();
    for (i, preference) in preferred.enumerate() {
        let at = format!("{path}.preferredDuringSchedulingIgnoredDuringExecution[{i}]");
        if !preference["weight"]
            .as_i64()
            .is_some_and(|w| (1..=100).contains(&w))
        {
            causes.push(Cause::new(
                "FieldValueInvalid",
                format!("{at}.weight"),
                "Invalid value: must be in the range 1-100",
            ));
        }
        check_term(
            &preference["podAffinityTerm"],
            &format!("{at}.podAffinityTerm"),
            causes,
        );
    }
}

fn check_term(term: &Value, path: &str, causes: &mut Vec<Cause>) {
    check_topology_key(term, path, causes);
    for field in ["labelSelector", "namespaceSelector"] {
        check_selector(&term[field], &format!("{path}.{field}"), causes);
    }
}

fn check_topology_key(obj: &Value, path: &str, causes: &mut Vec<Cause>) {
    if obj["topologyKey"].as_str().unwrap_or("").is_empty() {
        causes.push(Cause::new(
            "FieldValueRequired",
            format!("{path}.topologyKey"),
            "Required value: can not be empty",
        ));
    }
}

fn check_selector(selector: &Value, path: &str, causes: &mut Vec<Cause>) {
    if selector.is_null() {
        return;
    }
    if let Err((field, message)) = Selector::from_label_selector(selector) {
        causes.push(Cause::new(
            "FieldValueInvalid",
            format!("{path}.{field}"),
            message,
        ));
    }
}

fn check_constraint(constraint: &Value, path: &str, causes: &mut Vec<Cause>) {
    if constraint["maxSkew"].as_i64().is_none_or(|s| s <= 0) {
        causes.push(Cause::new(
            "FieldValueInvalid",
            format!("{path}.maxSkew"),
            "Invalid value: must be greater than zero",
        ));
    }
    check_topology_key(constraint, path, causes);
    let when = constraint["whenUnsatisfiable"].as_str();
    if when.is_none() {
        causes.push(required(&format!("{path}.whenUnsatisfiable")));
    }
    if let Some(min) = constraint["minDomains"].as_i64() {
        let problem = if min <= 0 {
            Some("Invalid value: must be greater than zero")
        } else if when != Some("DoNotSchedule") {
            Some("Invalid value: can only use minDomains if whenUnsatisfiable=DoNotSchedule")
        } else {
            None
        };
        if let Some(problem) = problem {
            causes.push(Cause::new(
                "FieldValueInvalid",
                format!("{path}.minDomains"),
                problem,
            ));
        }
    }
    let selector = &constraint["labelSelector"];
    check_selector(selector, &format!("{path}.labelSelector"), causes);
    check_match_label_keys(constraint, selector, path, causes);
}

/// `matchLabelKeys` need a `labelSelector` and must not repeat one of its keys.
fn check_match_label_keys(
    constraint: &Value,
    selector: &Value,
    path: &str,
    causes: &mut Vec<Cause>,
) {
    let keys = constraint["matchLabelKeys"]
        .as_array()
        .into_iter()
        .flatten();
    for (i, key) in keys.enumerate() {
        let key = key.as_str().unwrap_or("");
        let in_selector = selector["matchLabels"].get(key).is_some()
            || selector["matchExpressions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["key"] == key);
        let problem = if selector.is_null() {
            "Invalid value: matchLabelKeys cannot be set when labelSelector isn't set"
        } else if key.is_empty() {
            "Invalid value: must be a label key"
        } else if in_selector {
            "Invalid value: exists in both matchLabelKeys and labelSelector"
        } else {
            continue;
        };
        causes.push(Cause::new(
            "FieldValueInvalid",
            format!("{path}.matchLabelKeys[{i}]"),
            problem,
        ));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::validation::check_shape;

    /// The fields of the causes for a spec.
    fn refused(spec: Value) -> Vec<String> {
        let mut causes = Vec::new();
        check_shape(&spec["affinity"], &AFFINITY, "spec.affinity", &mut causes);
        let constraints = spec["topologySpreadConstraints"]
            .as_array()
            .into_iter()
            .flatten();
        for (i, c) in constraints.enumerate() {
            let path = format!("spec.topologySpreadConstraints[{i}]");
            check_shape(c, &SPREAD_CONSTRAINT, &path, &mut causes);
        }
        check(&spec, "spec", &mut causes);
        causes.into_iter().map(|c| c.field).collect()
    }

    #[test]
    fn pod_affinity_on_any_topology_key_and_spread_constraints_are_accepted() {
        let spec = json!({
            "affinity": {
                "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "db"}},
                     "topologyKey": "topology.kubernetes.io/zone",
                     "namespaceSelector": {"matchLabels": {"team": "a"}}}]},
                "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchExpressions": [
                        {"key": "app", "operator": "In", "values": ["web"]}]},
                     "topologyKey": "rack", "namespaces": ["prod"]}}]},
            },
            "topologySpreadConstraints": [
                {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                 "whenUnsatisfiable": "DoNotSchedule", "minDomains": 2,
                 "labelSelector": {"matchLabels": {"app": "web"}}, "matchLabelKeys": ["pod-template-hash"],
                 "nodeAffinityPolicy": "Ignore", "nodeTaintsPolicy": "Honor"},
                {"maxSkew": 2, "topologyKey": "topology.kubernetes.io/zone",
                 "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": "web"}}},
            ],
        });
        assert_eq!(refused(spec), Vec::<String>::new());
    }

    #[test]
    fn bad_terms_and_constraints_are_refused_by_field() {
        let spec = json!({
            "affinity": {
                "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchExpressions": [{"key": "app", "operator": "Near"}]},
                     "matchLabelKeys": ["v"]}]},
                "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 0, "podAffinityTerm": {"topologyKey": "rack"}}]},
            },
            "topologySpreadConstraints": [
                {"maxSkew": 0, "topologyKey": "", "minDomains": 2,
                 "matchLabelKeys": ["app"], "labelSelector": {"matchLabels": {"app": "web"}}},
                {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway",
                 "matchLabelKeys": ["v"]},
                {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"},
                {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "Sometimes"},
            ],
        });
        let mut fields = refused(spec);
        fields.sort();
        let a = "spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0]";
        let w = "spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0]";
        let c = |i: usize, field: &str| format!("spec.topologySpreadConstraints[{i}].{field}");
        let mut expected = vec![
            format!("{a}.matchLabelKeys"),
            format!("{a}.topologyKey"),
            format!("{a}.labelSelector.matchExpressions[0].operator"),
            format!("{w}.weight"),
            c(0, "maxSkew"),
            c(0, "topologyKey"),
            c(0, "whenUnsatisfiable"),
            c(0, "minDomains"),
            c(0, "matchLabelKeys[0]"),
            c(1, "matchLabelKeys[0]"),
            c(2, "{topologyKey, whenUnsatisfiable}"),
            c(3, "whenUnsatisfiable"),
        ];
        expected.sort();
        assert_eq!(fields, expected);
    }
}
