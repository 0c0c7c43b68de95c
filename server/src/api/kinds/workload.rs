//! What the workload kinds (ReplicaSet, Deployment, and those to come) share: a label
//! selector that must select the pod template, a replica count, the template's pod spec
//! (checked and defaulted like a Pod's), and the CONTAINERS / IMAGES / SELECTOR columns.

use serde_json::{Value, json};

use crate::api::status::Cause;
use crate::api::validation::{self, Shape};
use crate::api::{defaults, table};
use crate::k8s::selectors::Selector;

pub use crate::api::validation::LABEL_SELECTOR;

/// Checks a workload object against its shape and type, then its name, replicas, selector
/// and template. `restart_policies` are those its pods may have (`Always` for
/// ReplicaSets and Deployments).
pub fn validate(
    obj: &Value,
    shape: &Shape,
    api_version: &str,
    kind: &str,
    restart_policies: &[&str],
) -> Vec<Cause> {
    let mut causes = Vec::new();
    validation::check_shape(obj, shape, "", &mut causes);
    validation::check_type_meta(obj, api_version, kind, &mut causes);
    validation::check_metadata(obj, &mut causes);
    if !causes.is_empty() {
        return causes;
    }
    if obj
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .is_some_and(|n| n < 0)
    {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "spec.replicas",
            "Invalid value: must be greater than or equal to 0",
        ));
    }
    check_selector(obj, &mut causes);
    validation::check_egress_annotation(
        obj.pointer("/spec/template/metadata"),
        "spec.template.metadata",
        &mut causes,
    );
    let spec = obj.pointer("/spec/template/spec");
    causes.extend(validation::validate_template_spec(
        spec,
        "spec.template.spec",
    ));
    check_restart_policy(spec, restart_policies, &mut causes);
    causes
}

/// The selector must be given, valid, non-empty, and select the template's labels.
fn check_selector(obj: &Value, causes: &mut Vec<Cause>) {
    let Some(selector) = obj.pointer("/spec/selector").filter(|s| s.is_object()) else {
        causes.push(validation::required("spec.selector"));
        return;
    };
    let parsed = match Selector::from_label_selector(selector) {
        Ok(parsed) => parsed,
        Err((field, message)) => {
            causes.push(Cause::new(
                "FieldValueInvalid",
                format!("spec.selector.{field}"),
                message,
            ));
            return;
        }
    };
    if parsed.is_empty() {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "spec.selector",
            "Invalid value: empty selector is invalid for deployment",
        ));
    } else if !parsed.matches_labels(obj.pointer("/spec/template/metadata/labels")) {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "spec.template.metadata.labels",
            format!(
                "Invalid value: {}: `selector` does not match template `labels`",
                obj.pointer("/spec/template/metadata/labels")
                    .unwrap_or(&Value::Null)
            ),
        ));
    }
}

fn check_restart_policy(spec: Option<&Value>, allowed: &[&str], causes: &mut Vec<Cause>) {
    let policy = spec
        .and_then(|s| s.get("restartPolicy"))
        .and_then(Value::as_str)
        .unwrap_or("Always");
    if !allowed.contains(&policy) {
        let supported: Vec<String> = allowed.iter().map(|p| format!("{p:?}")).collect();
        causes.push(Cause::new(
            "FieldValueNotSupported",
            "spec.template.spec.restartPolicy",
            format!(
                "Unsupported value: {policy:?}: supported values: {}",
                supported.join(", ")
            ),
        ));
    }
}

/// The template's pod spec defaulted like a Pod's, and `spec.replicas` 1 when left out if
/// the kind has replicas.
pub fn apply_defaults(obj: &mut Value, has_replicas: bool) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if has_replicas {
        spec.entry("replicas").or_insert_with(|| json!(1));
    }
    if let Some(pod_spec) = spec.get_mut("template").and_then(|t| t.get_mut("spec")) {
        defaults::apply_pod_spec_defaults(pod_spec);
    }
}

/// `spec.selector` cannot change once created.
pub fn check_selector_unchanged(old: &Value, new: &Value) -> Option<Cause> {
    let (before, after) = (old.pointer("/spec/selector"), new.pointer("/spec/selector"));
    (before != after).then(|| {
        Cause::new(
            "FieldValueInvalid",
            "spec.selector",
            format!(
                "Invalid value: {}: field is immutable",
                after.unwrap_or(&Value::Null)
            ),
        )
    })
}

/// The wide columns: container names, images, and the selector as kubectl prints it.
pub fn wide_cells(obj: &Value) -> [Value; 3] {
    let containers: Vec<&Value> = obj
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let join = |field: &str| -> Value {
        let parts: Vec<&str> = containers
            .iter()
            .filter_map(|c| c.get(field).and_then(Value::as_str))
            .collect();
        parts.join(",").into()
    };
    let selector = obj
        .pointer("/spec/selector")
        .and_then(|s| Selector::from_label_selector(s).ok())
        .map_or_else(|| table::text(obj, "/none"), |s| s.label_text().into());
    [join("name"), join("image"), selector]
}
