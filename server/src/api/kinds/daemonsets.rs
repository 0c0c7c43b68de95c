//! DaemonSets (apps/v1): one pod of a template on every node that matches its node
//! selector, including nodes that join later.
//!
//! Admission checks the selector against the template, the update strategy
//! (`RollingUpdate` with `maxUnavailable` at least 1 or a percentage, or `OnDelete`), and
//! keeps the selector immutable; it defaults `RollingUpdate` with `maxUnavailable: 1` and
//! `revisionHistoryLimit: 10`.

use serde_json::{Value, json};

use super::workload::{self, LABEL_SELECTOR};
use super::{Column, Kind, READ_WRITE, keep_status, name_of};
use crate::api::cascade;
use crate::api::status::{ApiError, Cause};
use crate::api::table::{age, count, text};
use crate::api::validation::{METADATA, POD_TEMPLATE, Shape};
use crate::k8s::intstr::IntOrPercent;

/// DaemonSets (namespaced).
pub const KIND: Kind = Kind {
    group: "apps",
    version: "v1",
    api_version: "apps/v1",
    plural: "daemonsets",
    singular: "daemonset",
    kind: "DaemonSet",
    list_kind: "DaemonSetList",
    short_names: &["ds"],
    categories: &["all"],
    namespaced: true,
    verbs: READ_WRITE,
    subresources: &[],
    columns: &[
        Column::new("Name"),
        Column::new("Desired"),
        Column::new("Current"),
        Column::new("Ready"),
        Column::new("Up-to-date"),
        Column::new("Available"),
        Column::new("Node Selector"),
        Column::new("Age"),
        Column::wide("Containers"),
        Column::wide("Images"),
        Column::wide("Selector"),
    ],
    cells,
    admit_create,
    admit_update,
    allocate: None,
    delete: cascade::delete,
};

const ROLLING_UPDATE: Shape = Shape::Object(&[
    ("maxUnavailable", Shape::IntOrString),
    ("maxSurge", Shape::IntOrString),
]);

const UPDATE_STRATEGY: Shape =
    Shape::Object(&[("type", Shape::Str), ("rollingUpdate", ROLLING_UPDATE)]);

const SPEC: Shape = Shape::Object(&[
    ("selector", LABEL_SELECTOR),
    ("template", POD_TEMPLATE),
    ("updateStrategy", UPDATE_STRATEGY),
    ("minReadySeconds", Shape::Int),
    ("revisionHistoryLimit", Shape::Int),
]);

const DAEMON_SET: Shape = Shape::Object(&[
    ("apiVersion", Shape::Str),
    ("kind", Shape::Str),
    ("metadata", METADATA),
    ("spec", SPEC),
    ("status", Shape::Ignored),
]);

fn admit(ds: &mut Value) -> Result<(), ApiError> {
    let mut causes = workload::validate(ds, &DAEMON_SET, "apps/v1", "DaemonSet", &["Always"]);
    if causes.is_empty() {
        apply_defaults(ds);
        check_strategy(ds, &mut causes);
    }
    match causes.is_empty() {
        true => Ok(()),
        false => Err(ApiError::invalid("DaemonSet", name_of(ds), &causes)),
    }
}

/// A new DaemonSet: valid, defaulted, with an empty status.
pub fn admit_create(ds: &mut Value) -> Result<(), ApiError> {
    admit(ds)?;
    if let Some(map) = ds.as_object_mut() {
        map.insert("status".into(), json!({}));
    }
    Ok(())
}

/// A changed DaemonSet keeps its selector and status.
pub fn admit_update(old: &Value, ds: &mut Value) -> Result<(), ApiError> {
    admit(ds)?;
    if let Some(cause) = workload::check_selector_unchanged(old, ds) {
        return Err(ApiError::invalid("DaemonSet", name_of(ds), &[cause]));
    }
    keep_status(old, ds);
    Ok(())
}

fn apply_defaults(ds: &mut Value) {
    workload::apply_defaults(ds, false);
    let Some(spec) = ds.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    spec.entry("revisionHistoryLimit")
        .or_insert_with(|| json!(10));
    let strategy = spec
        .entry("updateStrategy")
        .or_insert_with(|| json!({"type": "RollingUpdate"}));
    if let Some(strategy) = strategy.as_object_mut() {
        strategy
            .entry("type")
            .or_insert_with(|| json!("RollingUpdate"));
        if strategy["type"] == "RollingUpdate" {
            let rolling = strategy.entry("rollingUpdate").or_insert_with(|| json!({}));
            if let Some(rolling) = rolling.as_object_mut() {
                rolling.entry("maxUnavailable").or_insert_with(|| json!(1));
                rolling.entry("maxSurge").or_insert_with(|| json!(0));
            }
        }
    }
}

fn check_strategy(ds: &Value, causes: &mut Vec<Cause>) {
    let strategy = &ds["spec"]["updateStrategy"];
    match strategy["type"].as_str().unwrap_or_default() {
        "OnDelete" => {}
        "RollingUpdate" => {
            let rolling = &strategy["rollingUpdate"];
            let unavailable = IntOrPercent::parse(&rolling["maxUnavailable"]);
            let surge = IntOrPercent::parse(&rolling["maxSurge"]);
            let field = "spec.updateStrategy.rollingUpdate.maxUnavailable";
            match (unavailable, surge) {
                (Err(why), _) => causes.push(Cause::new("FieldValueInvalid", field, format!("Invalid value: {why}"))),
                (_, Err(why)) => causes.push(Cause::new(
                    "FieldValueInvalid",
                    "spec.updateStrategy.rollingUpdate.maxSurge",
                    format!("Invalid value: {why}"),
                )),
                (Ok(u), Ok(s)) if u.is_zero() && s.is_zero() => causes.push(Cause::new(
                    "FieldValueInvalid",
                    field,
                    "Invalid value: 0: may not be 0 when `maxSurge` is 0",
                )),
                (Ok(_), Ok(s)) if !s.is_zero() => causes.push(Cause::new(
                    "FieldValueNotSupported",
                    "spec.updateStrategy.rollingUpdate.maxSurge",
                    "Unsupported value: wasmfleet runs at most one pod of a DaemonSet per node (maxSurge must be 0)",
                )),
                _ => {}
            }
        }
        other => causes.push(Cause::new(
            "FieldValueNotSupported",
            "spec.updateStrategy.type",
            format!(
                "Unsupported value: {other:?}: supported values: \"OnDelete\", \"RollingUpdate\""
            ),
        )),
    }
}

fn cells(ds: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let selector = ds
        .pointer("/spec/template/spec/nodeSelector")
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())
        .map_or_else(
            || "<none>".to_owned(),
            |m| {
                let parts: Vec<String> = m
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect();
                parts.join(",")
            },
        );
    let mut cells = vec![
        text(ds, "/metadata/name"),
        count(ds, "/status/desiredNumberScheduled"),
        count(ds, "/status/currentNumberScheduled"),
        count(ds, "/status/numberReady"),
        count(ds, "/status/updatedNumberScheduled"),
        count(ds, "/status/numberAvailable"),
        selector.into(),
        age(ds, now),
    ];
    cells.extend(workload::wide_cells(ds));
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "sensor", "namespace": "default"},
            "spec": {
                "selector": {"matchLabels": {"app": "sensor"}},
                "template": {
                    "metadata": {"labels": {"app": "sensor"}},
                    "spec": {"nodeSelector": {"sensor": "bme280"},
                             "containers": [{"name": "read", "image": "sensor:v1"}]},
                },
            },
        })
    }

    #[test]
    fn a_daemon_set_gets_a_rolling_update_of_one_and_bad_strategies_are_refused() {
        let mut d = ds();
        assert!(admit_create(&mut d).is_ok());
        assert_eq!(
            d["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"],
            1
        );
        let mut surge = ds();
        surge["spec"]["updateStrategy"] = json!({"rollingUpdate": {"maxSurge": 1}});
        assert!(admit_create(&mut surge).is_err());
        let mut unknown = ds();
        unknown["spec"]["updateStrategy"] = json!({"type": "Sometimes"});
        assert!(admit_create(&mut unknown).is_err());
        let mut replicas = ds();
        replicas["spec"]["replicas"] = json!(3);
        assert!(
            admit_create(&mut replicas).is_err(),
            "a DaemonSet has no replicas"
        );
    }
}
