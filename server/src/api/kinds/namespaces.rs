//! Namespace admission, the built-in namespaces, and the deletion rule.
//!
//! Deleting a namespace marks it `Terminating`; the namespace controller
//! (`controllers::namespaces`) deletes everything in it, then it. Nothing new may be created
//! in it meanwhile (403). The built-in namespaces cannot be deleted at all (409).

use serde_json::{Value, json};

use super::{Column, Kind, keep_status, name_of};
use crate::api::objects::DeleteOptions;
use crate::api::status::ApiError;
use crate::api::table::{age, text};
use crate::api::validation;
use crate::store::{ObjectKey, Store, StoreError};

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
    allocate: None,
    delete: mark_terminating,
};

fn cells(ns: &Value, now: jiff::Timestamp) -> Vec<Value> {
    vec![
        text(ns, "/metadata/name"),
        text(ns, "/status/phase"),
        age(ns, now),
    ]
}

/// Deleting a namespace marks it `Terminating` (with `deletionTimestamp`); the namespace
/// controller deletes everything in it, then the namespace itself.
fn mark_terminating(
    store: &Store,
    key: &ObjectKey,
    options: &DeleteOptions,
) -> Result<Value, ApiError> {
    let expected = &options.preconditions;
    if BUILT_IN.contains(&key.name.as_str()) {
        return Err(ApiError::conflict(
            "namespaces",
            &key.name,
            format!(
                "namespace \"{}\" is built in and cannot be deleted",
                key.name
            ),
        ));
    }
    if options.dry_run {
        return Ok(crate::api::cascade::would_delete(store, key, expected)?);
    }
    let now = crate::k8s::time::now_rfc3339();
    let marked = store.update_with(key, |ns: &mut Value| {
        expected.check(key, ns)?;
        if ns["metadata"]["deletionTimestamp"].is_null() {
            ns["metadata"]["deletionTimestamp"] = now.clone().into();
        }
        ns["status"]["phase"] = "Terminating".into();
        Ok::<_, StoreError>(())
    })?;
    Ok(marked)
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

/// 404 unless the namespace exists, 403 while it is being deleted (objects cannot be
/// created in a missing or terminating namespace).
pub fn require(store: &Store, name: &str) -> Result<(), ApiError> {
    match store.get(&ObjectKey::cluster("namespaces", name))? {
        Some(ns) if !ns["metadata"]["deletionTimestamp"].is_null() => {
            Err(ApiError::forbidden(format!(
                "unable to create new content in namespace {name} because it is being terminated"
            )))
        }
        Some(_) => Ok(()),
        None => Err(ApiError::not_found("namespaces", name)),
    }
}
