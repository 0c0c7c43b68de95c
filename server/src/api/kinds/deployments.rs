//! Deployments (apps/v1): declarative rollouts of a pod template through ReplicaSets.
//!
//! Admission checks and defaults what the Deployment controller relies on: the strategy
//! (`RollingUpdate` with `maxSurge` / `maxUnavailable` as counts or percentages, not both
//! zero; or `Recreate`), `revisionHistoryLimit` (10), `progressDeadlineSeconds` (600, more
//! than `minReadySeconds`), and the immutable selector.

use serde_json::{Value, json};

use super::workload::{self, LABEL_SELECTOR};
use super::{Column, Kind, READ_WRITE, keep_status, name_of};
use crate::api::cascade;
use crate::api::scale;
use crate::api::status::{ApiError, Cause};
use crate::api::table::{age, count, text};
use crate::api::validation::{METADATA, POD_TEMPLATE, Shape};
use crate::k8s::intstr::IntOrPercent;

/// Deployments (namespaced).
pub const KIND: Kind = Kind {
    group: "apps",
    version: "v1",
    api_version: "apps/v1",
    plural: "deployments",
    singular: "deployment",
    kind: "Deployment",
    list_kind: "DeploymentList",
    short_names: &["deploy"],
    categories: &["all"],
    namespaced: true,
    verbs: READ_WRITE,
    subresources: &[scale::SUBRESOURCE],
    columns: &[
        Column::new("Name"),
        Column::new("Ready"),
        Column::new("Up-to-date"),
        Column::new("Available"),
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
    ("maxSurge", Shape::IntOrString),
    ("maxUnavailable", Shape::IntOrString),
]);

const STRATEGY: Shape = Shape::Object(&[("type", Shape::Str), ("rollingUpdate", ROLLING_UPDATE)]);

const SPEC: Shape = Shape::Object(&[
    ("replicas", Shape::Int),
    ("selector", LABEL_SELECTOR),
    ("template", POD_TEMPLATE),
    ("strategy", STRATEGY),
    ("minReadySeconds", Shape::Int),
    ("revisionHistoryLimit", Shape::Int),
    ("progressDeadlineSeconds", Shape::Int),
    ("paused", Shape::Bool),
]);

const DEPLOYMENT: Shape = Shape::Object(&[
    ("apiVersion", Shape::Str),
    ("kind", Shape::Str),
    ("metadata", METADATA),
    ("spec", SPEC),
    ("status", Shape::Ignored),
]);

/// Checks, then defaults; the error lists every problem.
fn admit(deployment: &mut Value) -> Result<(), ApiError> {
    let mut causes = workload::validate(
        deployment,
        &DEPLOYMENT,
        "apps/v1",
        "Deployment",
        &["Always"],
    );
    if causes.is_empty() {
        apply_defaults(deployment);
        check_strategy(deployment, &mut causes);
        check_durations(deployment, &mut causes);
    }
    match causes.is_empty() {
        true => Ok(()),
        false => Err(ApiError::invalid(
            "Deployment",
            name_of(deployment),
            &causes,
        )),
    }
}

/// A new Deployment: valid, defaulted, with an empty status.
pub fn admit_create(deployment: &mut Value) -> Result<(), ApiError> {
    admit(deployment)?;
    if let Some(map) = deployment.as_object_mut() {
        map.insert("status".into(), json!({}));
    }
    Ok(())
}

/// A changed Deployment keeps its selector and its status.
pub fn admit_update(old: &Value, deployment: &mut Value) -> Result<(), ApiError> {
    admit(deployment)?;
    if let Some(cause) = workload::check_selector_unchanged(old, deployment) {
        return Err(ApiError::invalid(
            "Deployment",
            name_of(deployment),
            &[cause],
        ));
    }
    keep_status(old, deployment);
    Ok(())
}

fn apply_defaults(deployment: &mut Value) {
    workload::apply_defaults(deployment, true);
    let Some(spec) = deployment.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    spec.entry("revisionHistoryLimit")
        .or_insert_with(|| json!(10));
    spec.entry("progressDeadlineSeconds")
        .or_insert_with(|| json!(600));
    let strategy = spec
        .entry("strategy")
        .or_insert_with(|| json!({"type": "RollingUpdate"}));
    if let Some(strategy) = strategy.as_object_mut() {
        strategy
            .entry("type")
            .or_insert_with(|| json!("RollingUpdate"));
        if strategy["type"] == "RollingUpdate" {
            let rolling = strategy.entry("rollingUpdate").or_insert_with(|| json!({}));
            if let Some(rolling) = rolling.as_object_mut() {
                rolling.entry("maxSurge").or_insert_with(|| json!("25%"));
                rolling
                    .entry("maxUnavailable")
                    .or_insert_with(|| json!("25%"));
            }
        }
    }
}

fn check_strategy(deployment: &Value, causes: &mut Vec<Cause>) {
    let strategy = &deployment["spec"]["strategy"];
    match strategy["type"].as_str().unwrap_or_default() {
        "RollingUpdate" => check_rolling_update(&strategy["rollingUpdate"], causes),
        "Recreate" if !strategy["rollingUpdate"].is_null() => causes.push(Cause::new(
            "FieldValueForbidden",
            "spec.strategy.rollingUpdate",
            "Forbidden: may not be specified when strategy `type` is 'Recreate'",
        )),
        "Recreate" => {}
        other => causes.push(Cause::new(
            "FieldValueNotSupported",
            "spec.strategy.type",
            format!(
                "Unsupported value: {other:?}: supported values: \"Recreate\", \"RollingUpdate\""
            ),
        )),
    }
}

fn check_rolling_update(rolling: &Value, causes: &mut Vec<Cause>) {
    let mut amount = |name: &str| {
        let parsed = IntOrPercent::parse(&rolling[name]);
        if let Err(why) = &parsed {
            causes.push(Cause::new(
                "FieldValueInvalid",
                format!("spec.strategy.rollingUpdate.{name}"),
                format!("Invalid value: {why}"),
            ));
        }
        parsed.ok()
    };
    let (surge, unavailable) = (amount("maxSurge"), amount("maxUnavailable"));
    if let Some(IntOrPercent::Percent(p)) = unavailable
        && p > 100
    {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "spec.strategy.rollingUpdate.maxUnavailable",
            format!("Invalid value: \"{p}%\": must not be greater than 100%"),
        ));
    }
    if surge.is_some_and(IntOrPercent::is_zero) && unavailable.is_some_and(IntOrPercent::is_zero) {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "spec.strategy.rollingUpdate.maxUnavailable",
            "Invalid value: 0: may not be 0 when `maxSurge` is 0",
        ));
    }
}

fn check_durations(deployment: &Value, causes: &mut Vec<Cause>) {
    let spec = &deployment["spec"];
    for field in [
        "minReadySeconds",
        "revisionHistoryLimit",
        "progressDeadlineSeconds",
    ] {
        if spec[field].as_i64().is_some_and(|n| n < 0) {
            causes.push(Cause::new(
                "FieldValueInvalid",
                format!("spec.{field}"),
                "Invalid value: must be greater than or equal to 0",
            ));
        }
    }
    let deadline = spec["progressDeadlineSeconds"].as_i64().unwrap_or(600);
    if deadline <= spec["minReadySeconds"].as_i64().unwrap_or(0) {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "spec.progressDeadlineSeconds",
            "Invalid value: must be greater than minReadySeconds",
        ));
    }
}

fn cells(deployment: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let ready = format!(
        "{}/{}",
        count(deployment, "/status/readyReplicas"),
        count(deployment, "/spec/replicas")
    );
    let mut cells = vec![
        text(deployment, "/metadata/name"),
        ready.into(),
        count(deployment, "/status/updatedReplicas"),
        count(deployment, "/status/availableReplicas"),
        age(deployment, now),
    ];
    cells.extend(workload::wide_cells(deployment));
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "hello:v1"}]},
                },
            },
        })
    }

    fn fields(deployment: &mut Value) -> Vec<String> {
        admit_create(deployment)
            .err()
            .map_or_else(Vec::new, |e| e.cause_fields())
    }

    #[test]
    fn a_plain_deployment_gets_the_kubernetes_defaults() {
        let mut d = deployment();
        assert!(fields(&mut d).is_empty());
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        );
        let container = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["resources"]["limits"]["memory"], "128Mi");
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
    }

    #[test]
    fn bad_specs_name_their_fields() {
        let mut d = deployment();
        d["spec"]["replicas"] = json!(-1);
        d["spec"]["template"]["metadata"]["labels"]["app"] = json!("api");
        d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        assert_eq!(
            fields(&mut d),
            [
                "spec.replicas",
                "spec.template.metadata.labels",
                "spec.template.spec.restartPolicy"
            ]
        );
        let mut d = deployment();
        d["spec"]["strategy"] = json!({"type": "Rolling"});
        assert_eq!(fields(&mut d), ["spec.strategy.type"]);
        let mut d = deployment();
        d["spec"]["strategy"] = json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}});
        assert_eq!(
            fields(&mut d),
            ["spec.strategy.rollingUpdate.maxUnavailable"]
        );
        let mut d = deployment();
        d["spec"]["strategy"] = json!({"type": "Recreate", "rollingUpdate": {}});
        assert_eq!(fields(&mut d), ["spec.strategy.rollingUpdate"]);
        let mut d = deployment();
        d["spec"]["hostNetwork"] = json!(true);
        assert_eq!(fields(&mut d), ["spec.hostNetwork"]);
        let mut d = deployment();
        d["spec"]["selector"] = json!({"matchLabels": {}});
        assert_eq!(fields(&mut d), ["spec.selector"]);
    }

    #[test]
    fn the_selector_is_immutable_and_status_is_kept() {
        let mut old = deployment();
        admit_create(&mut old).ok();
        old["status"] = json!({"replicas": 1});
        let mut new = deployment();
        new["spec"]["selector"]["matchLabels"]["tier"] = json!("edge");
        new["spec"]["template"]["metadata"]["labels"]["tier"] = json!("edge");
        assert!(admit_update(&old, &mut new).is_err());
        let mut image = deployment();
        image["spec"]["template"]["spec"]["containers"][0]["image"] = json!("hello:v2");
        assert!(admit_update(&old, &mut image).is_ok());
        assert_eq!(image["status"]["replicas"], 1);
    }
}
