//! ReplicaSets (apps/v1): keep `spec.replicas` pods of a template running. Mostly created by
//! Deployments, but they work on their own too.

use serde_json::{Value, json};

use super::workload::{self, LABEL_SELECTOR};
use super::{Column, Kind, READ_WRITE, keep_status, name_of};
use crate::api::cascade;
use crate::api::scale;
use crate::api::status::ApiError;
use crate::api::table::{age, count, text};
use crate::api::validation::{METADATA, POD_TEMPLATE, Shape};

/// ReplicaSets (namespaced).
pub const KIND: Kind = Kind {
    group: "apps",
    version: "v1",
    api_version: "apps/v1",
    plural: "replicasets",
    singular: "replicaset",
    kind: "ReplicaSet",
    list_kind: "ReplicaSetList",
    short_names: &["rs"],
    categories: &["all"],
    namespaced: true,
    verbs: READ_WRITE,
    subresources: &[scale::SUBRESOURCE],
    columns: &[
        Column::new("Name"),
        Column::new("Desired"),
        Column::new("Current"),
        Column::new("Ready"),
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

const SPEC: Shape = Shape::Object(&[
    ("replicas", Shape::Int),
    ("minReadySeconds", Shape::Int),
    ("selector", LABEL_SELECTOR),
    ("template", POD_TEMPLATE),
]);

const REPLICA_SET: Shape = Shape::Object(&[
    ("apiVersion", Shape::Str),
    ("kind", Shape::Str),
    ("metadata", METADATA),
    ("spec", SPEC),
    ("status", Shape::Ignored),
]);

fn validate(rs: &Value) -> Result<(), ApiError> {
    let causes = workload::validate(rs, &REPLICA_SET, "apps/v1", "ReplicaSet", &["Always"]);
    match causes.is_empty() {
        true => Ok(()),
        false => Err(ApiError::invalid("ReplicaSet", name_of(rs), &causes)),
    }
}

/// A new ReplicaSet: valid, defaulted, with an empty status.
pub fn admit_create(rs: &mut Value) -> Result<(), ApiError> {
    validate(rs)?;
    workload::apply_defaults(rs, true);
    if let Some(map) = rs.as_object_mut() {
        map.insert("status".into(), json!({"replicas": 0}));
    }
    Ok(())
}

/// A changed ReplicaSet keeps its selector and its status.
pub fn admit_update(old: &Value, rs: &mut Value) -> Result<(), ApiError> {
    validate(rs)?;
    workload::apply_defaults(rs, true);
    if let Some(cause) = workload::check_selector_unchanged(old, rs) {
        return Err(ApiError::invalid("ReplicaSet", name_of(rs), &[cause]));
    }
    keep_status(old, rs);
    Ok(())
}

fn cells(rs: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let mut cells = vec![
        text(rs, "/metadata/name"),
        count(rs, "/spec/replicas"),
        count(rs, "/status/replicas"),
        count(rs, "/status/readyReplicas"),
        age(rs, now),
    ];
    cells.extend(workload::wide_cells(rs));
    cells
}
