//! IngressClasses (networking.k8s.io/v1, cluster-scoped): which controller serves the
//! Ingresses that name a class. The server creates the class `wasmfleet` (controller
//! `wasmfleet.io/ingress`, the default class) at start; an Ingress is served by the agents
//! when it names no class or a class of that controller (`network::routes`).

use serde_json::{Value, json};

use super::{Column, Kind, READ_WRITE, name_of};
use crate::api::cascade;
use crate::api::status::{ApiError, Cause};
use crate::api::table::{age, text};
use crate::api::validation::{self, METADATA, Shape};
use crate::network::routes::{CLASS, CONTROLLER};
use crate::store::{ObjectKey, Store, StoreError};

/// IngressClasses (cluster-scoped).
pub const KIND: Kind = Kind {
    group: "networking.k8s.io",
    version: "v1",
    api_version: "networking.k8s.io/v1",
    plural: "ingressclasses",
    singular: "ingressclass",
    kind: "IngressClass",
    list_kind: "IngressClassList",
    short_names: &[],
    categories: &[],
    namespaced: false,
    verbs: READ_WRITE,
    subresources: &[],
    columns: &[
        Column::new("Name"),
        Column::new("Controller"),
        Column::new("Parameters"),
        Column::new("Age"),
    ],
    cells,
    admit_create,
    admit_update,
    allocate: None,
    delete: cascade::delete,
};

/// The annotation that makes a class the default one.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

const SPEC: Shape = Shape::Object(&[("controller", Shape::Str), ("parameters", Shape::Ignored)]);

const INGRESS_CLASS: Shape = Shape::Object(&[
    ("apiVersion", Shape::Str),
    ("kind", Shape::Str),
    ("metadata", METADATA),
    ("spec", SPEC),
]);

fn admit_create(class: &mut Value) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    validation::check_shape(class, &INGRESS_CLASS, "", &mut causes);
    validation::check_type_meta(class, KIND.api_version, KIND.kind, &mut causes);
    validation::check_metadata(class, &mut causes);
    causes.extend(validation::validate_object_name(class, false));
    match class["spec"]["controller"].as_str() {
        Some(controller) if !controller.is_empty() && controller.len() <= 250 => {}
        _ => causes.push(validation::required("spec.controller")),
    }
    match causes.is_empty() {
        true => Ok(()),
        false => Err(ApiError::invalid(KIND.kind, name_of(class), &causes)),
    }
}

/// `spec.controller` is immutable, as in Kubernetes.
fn admit_update(old: &Value, class: &mut Value) -> Result<(), ApiError> {
    admit_create(class)?;
    if old["spec"]["controller"] != class["spec"]["controller"] {
        let cause = Cause::new(
            "FieldValueInvalid",
            "spec.controller",
            "Invalid value: field is immutable",
        );
        return Err(ApiError::invalid(KIND.kind, name_of(class), &[cause]));
    }
    Ok(())
}

/// Creates the `wasmfleet` class (the default one) when it does not exist.
pub fn ensure_built_in(store: &Store) -> Result<(), StoreError> {
    let key = ObjectKey::cluster(KIND.plural, CLASS);
    if store.get(&key)?.is_some() {
        return Ok(());
    }
    let class = json!({
        "apiVersion": KIND.api_version, "kind": KIND.kind,
        "metadata": {"name": CLASS, "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
        "spec": {"controller": CONTROLLER},
    });
    match store.create(&key, class) {
        Ok(_) | Err(StoreError::AlreadyExists(_)) => Ok(()),
        Err(err) => Err(err),
    }
}

fn cells(class: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let parameters = &class["spec"]["parameters"];
    let parameters = match parameters["kind"].as_str() {
        Some(kind) => format!("{kind}/{}", parameters["name"].as_str().unwrap_or_default()),
        None => "<none>".to_owned(),
    };
    vec![
        text(class, "/metadata/name"),
        text(class, "/spec/controller"),
        parameters.into(),
        age(class, now),
    ]
}
