//! PodDisruptionBudgets (policy/v1): how many of the pods a selector picks must stay Ready
//! through evictions (`kubectl drain`). Exactly one of `minAvailable` and `maxUnavailable`,
//! a count or a percentage. The status is kept by `controllers::disruption`.

use serde_json::{Value, json};

use super::workload::LABEL_SELECTOR;
use super::{Column, Kind, READ_WRITE, keep_status, name_of};
use crate::api::cascade;
use crate::api::status::{ApiError, Cause};
use crate::api::table::{age, count, text};
use crate::api::validation::{self, METADATA, Shape};
use crate::k8s::intstr::IntOrPercent;
use crate::k8s::selectors::Selector;

/// PodDisruptionBudgets (namespaced).
pub const KIND: Kind = Kind {
    group: "policy",
    version: "v1",
    api_version: "policy/v1",
    plural: "poddisruptionbudgets",
    singular: "poddisruptionbudget",
    kind: "PodDisruptionBudget",
    list_kind: "PodDisruptionBudgetList",
    short_names: &["pdb"],
    categories: &[],
    namespaced: true,
    verbs: READ_WRITE,
    subresources: &[],
    columns: &[
        Column::new("Name"),
        Column::new("Min Available"),
        Column::new("Max Unavailable"),
        Column::new("Allowed Disruptions"),
        Column::new("Age"),
    ],
    cells,
    admit_create,
    admit_update,
    allocate: None,
    delete: cascade::delete,
};

const SPEC: Shape = Shape::Object(&[
    ("selector", LABEL_SELECTOR),
    ("minAvailable", Shape::IntOrString),
    ("maxUnavailable", Shape::IntOrString),
    ("unhealthyPodEvictionPolicy", Shape::Str),
]);

const BUDGET: Shape = Shape::Object(&[
    ("apiVersion", Shape::Str),
    ("kind", Shape::Str),
    ("metadata", METADATA),
    ("spec", SPEC),
    ("status", Shape::Ignored),
]);

fn admit(pdb: &Value) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    validation::check_shape(pdb, &BUDGET, "", &mut causes);
    validation::check_type_meta(pdb, "policy/v1", "PodDisruptionBudget", &mut causes);
    validation::check_metadata(pdb, &mut causes);
    let spec = &pdb["spec"];
    match (
        spec["minAvailable"].is_null(),
        spec["maxUnavailable"].is_null(),
    ) {
        (false, false) => causes.push(Cause::new(
            "FieldValueInvalid",
            "spec",
            "Invalid value: minAvailable and maxUnavailable cannot be both set",
        )),
        (true, true) => causes.push(validation::required("spec.minAvailable")),
        _ => {}
    }
    for field in ["minAvailable", "maxUnavailable"] {
        if !spec[field].is_null()
            && let Err(why) = IntOrPercent::parse(&spec[field])
        {
            causes.push(Cause::new(
                "FieldValueInvalid",
                format!("spec.{field}"),
                format!("Invalid value: {why}"),
            ));
        }
    }
    // Unready pods are always evictable (Kubernetes' `AlwaysAllow`); the other policy is not
    // honoured, so it is refused rather than ignored.
    if let Some(policy) = spec["unhealthyPodEvictionPolicy"].as_str()
        && policy != "AlwaysAllow"
    {
        causes.push(Cause::new(
            "FieldValueNotSupported",
            "spec.unhealthyPodEvictionPolicy",
            format!("Unsupported value: {policy:?}: supported values: \"AlwaysAllow\""),
        ));
    }
    if let Err((field, message)) = Selector::from_label_selector(&spec["selector"]) {
        causes.push(Cause::new(
            "FieldValueInvalid",
            format!("spec.selector.{field}"),
            message,
        ));
    }
    match causes.is_empty() {
        true => Ok(()),
        false => Err(ApiError::invalid(
            "PodDisruptionBudget",
            name_of(pdb),
            &causes,
        )),
    }
}

/// A new budget: valid, with an empty status.
pub fn admit_create(pdb: &mut Value) -> Result<(), ApiError> {
    admit(pdb)?;
    if let Some(map) = pdb.as_object_mut() {
        map.insert("status".into(), json!({}));
    }
    Ok(())
}

/// A changed budget keeps its status.
pub fn admit_update(old: &Value, pdb: &mut Value) -> Result<(), ApiError> {
    admit(pdb)?;
    keep_status(old, pdb);
    Ok(())
}

fn cells(pdb: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let amount = |field: &str| match &pdb["spec"][field] {
        Value::Null => "N/A".into(),
        Value::String(s) => s.clone().into(),
        other => other.to_string().into(),
    };
    vec![
        text(pdb, "/metadata/name"),
        amount("minAvailable"),
        amount("maxUnavailable"),
        count(pdb, "/status/disruptionsAllowed"),
        age(pdb, now),
    ]
}
