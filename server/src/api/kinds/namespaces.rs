//! Namespace admission, the built-in namespaces, and the deletion rule.
//!
//! Deleting a namespace that still holds pods is refused with 409 (there is no namespace
//! garbage collector yet); the built-in namespaces cannot be deleted at all.

use serde_json::{Value, json};

use super::{Column, Kind, keep_status, name_of};
use crate::api::status::ApiError;
use crate::api::table::{age, text};
use crate::api::validation;
use crate::store::{ObjectKey, Scope, Store, StoreError};

/// Namespaces (cluster-scoped).
pub const KIND: Kind = Kind {
    group: "",
    version: "v1",
    api_version: "v1",
    plural: "namespaces",
    singular: "namespace",
    kind: "Namespace",
    list_kind: "NamespaceList",
    short_names: &["ns"],
    categories: &[],
    namespaced: false,
    verbs: &[
        "create", "delete", "get", "list", "patch", "update", "watch",
    ],
    subresources: &[],
    columns: &[
        Column::new("Name"),
        Column::new("Status"),
        Column::new("Age"),
    ],
    cells,
    admit_create,
    admit_update,
    before_delete,
};

fn cells(ns: &Value, now: jiff::Timestamp) -> Vec<Value> {
    vec![
        text(ns, "/metadata/name"),
        text(ns, "/status/phase"),
        age(ns, now),
    ]
}

fn before_delete(store: &Store, key: &ObjectKey) -> Result<(), ApiError> {
    check_deletable(store, &key.name)
}

/// Namespaces the server creates on start and never deletes.
pub const BUILT_IN: [&str; 3] = ["default", "kube-system", "kube-node-lease"];

/// A new namespace: a DNS label name, `Active`.
pub fn admit_create(ns: &mut Value) -> Result<(), ApiError> {
    let causes = validation::validate_object_name(ns, true);
    if !causes.is_empty() {
        return Err(ApiError::invalid("Namespace", name_of(ns), &causes));
    }
    if let Some(map) = ns.as_object_mut() {
        map.insert("status".into(), json!({"phase": "Active"}));
    }
    Ok(())
}

/// A changed namespace keeps its status.
pub fn admit_update(old: &Value, ns: &mut Value) -> Result<(), ApiError> {
    keep_status(old, ns);
    Ok(())
}

/// Creates the built-in namespaces that do not exist yet.
pub fn ensure_built_in(store: &Store) -> Result<(), StoreError> {
    for name in BUILT_IN {
        let key = ObjectKey::cluster("namespaces", name);
        if store.get(&key)?.is_none() {
            let ns = json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name}, "status": {"phase": "Active"},
            });
            match store.create(&key, ns) {
                Ok(_) | Err(StoreError::AlreadyExists(_)) => {}
                Err(err) => return Err(err),
            }
        }
    }
    Ok(())
}

/// Refuses to delete a built-in namespace or one that still has pods.
pub fn check_deletable(store: &Store, name: &str) -> Result<(), ApiError> {
    if BUILT_IN.contains(&name) {
        return Err(ApiError::conflict(
            "namespaces",
            name,
            format!("namespace \"{name}\" is built in and cannot be deleted"),
        ));
    }
    let pods = store.list(&Scope::namespace("pods", name))?;
    if pods.items.is_empty() {
        Ok(())
    } else {
        Err(ApiError::conflict(
            "namespaces",
            name,
            format!(
                "namespace \"{name}\" still has {} pod(s); delete them first \
                 (wasmfleet does not cascade namespace deletion yet)",
                pods.items.len()
            ),
        ))
    }
}

/// 404 unless the namespace exists (objects cannot be created in a missing namespace).
pub fn require(store: &Store, name: &str) -> Result<(), ApiError> {
    match store.get(&ObjectKey::cluster("namespaces", name))? {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found("namespaces", name)),
    }
}
