//! What a DELETE does to the objects the deleted one owns: `propagationPolicy` of the
//! `DeleteOptions` (`kubectl delete --cascade=background|foreground|orphan`).
//!
//! - `Background` (the default): the object goes at once; the garbage collector
//!   ([`crate::controllers::garbage`]) deletes its dependents afterwards.
//! - `Foreground`: the object is first marked deleted (`metadata.deletionTimestamp`, so its
//!   controller stops acting on it), then its dependents are deleted, depth first (a
//!   Deployment's ReplicaSets, their pods), then the object; the call returns when all are
//!   gone, which is when `kubectl delete --cascade=foreground` returns.
//! - `Orphan`: the dependents lose their reference to the object, then it goes; they keep
//!   running, and a controller whose selector matches them may adopt them later.
//!
//! Dependents are the namespaced objects of the served kinds whose `ownerReferences` name
//! the object's uid. Runs inside the DELETE's blocking call.

use serde_json::Value;

use super::kinds;
use super::status::ApiError;
use crate::k8s::owners;
use crate::store::{ObjectKey, Scope, Store, StoreError};

/// `DeleteOptions.propagationPolicy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Propagation {
    /// Delete now; the garbage collector takes the dependents.
    #[default]
    Background,
    /// Dependents first, then the object.
    Foreground,
    /// Keep the dependents, without the reference.
    Orphan,
}

/// How deep foreground deletion follows owners (Deployment → ReplicaSet → Pod is 2).
const MAX_DEPTH: usize = 8;

impl Propagation {
    /// Parses the policy; anything else is a 400 naming the allowed values.
    pub fn parse(value: Option<&str>) -> Result<Self, ApiError> {
        match value {
            None | Some("" | "Background") => Ok(Self::Background),
            Some("Foreground") => Ok(Self::Foreground),
            Some("Orphan") => Ok(Self::Orphan),
            Some(other) => Err(ApiError::bad_request(format!(
                "propagationPolicy: unsupported value {other:?}: supported values: \"Background\", \"Foreground\", \"Orphan\""
            ))),
        }
    }
}

/// Deletes `key` with `policy` (see the module docs); returns its last state.
pub fn delete(
    store: &Store,
    key: &ObjectKey,
    expected: Option<&str>,
    policy: Propagation,
) -> Result<Value, StoreError> {
    let Some(current) = store.get(key)? else {
        return Err(StoreError::NotFound(key.clone()));
    };
    let uid = current["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    match policy {
        Propagation::Background => {}
        Propagation::Orphan => {
            for dependent in dependents(store, key, &uid)? {
                release(store, &dependent, &uid)?;
            }
        }
        Propagation::Foreground => {
            mark_deleted(store, key)?;
            for dependent in dependents(store, key, &uid)? {
                delete_tree(store, &dependent, 1)?;
            }
        }
    }
    store.delete(key, expected)
}

/// Deletes an object after everything it owns (depth first).
fn delete_tree(store: &Store, key: &ObjectKey, depth: usize) -> Result<(), StoreError> {
    let Some(current) = store.get(key)? else {
        return Ok(());
    };
    if depth < MAX_DEPTH {
        let uid = current["metadata"]["uid"].as_str().unwrap_or_default();
        mark_deleted(store, key)?;
        for dependent in dependents(store, key, uid)? {
            delete_tree(store, &dependent, depth + 1)?;
        }
    }
    match store.delete(key, None) {
        Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
        Err(err) => Err(err),
    }
}

/// The keys of the objects in `owner`'s namespace that name `uid` as an owner.
fn dependents(store: &Store, owner: &ObjectKey, uid: &str) -> Result<Vec<ObjectKey>, StoreError> {
    let Some(namespace) = owner.namespace.as_deref().filter(|_| !uid.is_empty()) else {
        return Ok(Vec::new());
    };
    let mut keys = Vec::new();
    for kind in kinds::ALL.iter().filter(|k| k.namespaced) {
        let listing = store.list(&Scope::namespace(kind.plural, namespace))?;
        keys.extend(
            listing
                .items
                .iter()
                .filter(|obj| owners::is_owned_by(obj, uid))
                .filter_map(|obj| obj["metadata"]["name"].as_str())
                .map(|name| ObjectKey::namespaced(kind.plural, namespace, name)),
        );
    }
    Ok(keys)
}

/// Sets `metadata.deletionTimestamp` (controllers leave such an object alone).
fn mark_deleted(store: &Store, key: &ObjectKey) -> Result<(), StoreError> {
    let now = crate::k8s::time::now_rfc3339();
    let result = store.update_with(key, |obj: &mut Value| {
        if obj["metadata"]["deletionTimestamp"].is_null() {
            obj["metadata"]["deletionTimestamp"] = now.clone().into();
        }
        Ok::<_, StoreError>(())
    });
    match result {
        Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
        Err(err) => Err(err),
    }
}

fn release(store: &Store, key: &ObjectKey, uid: &str) -> Result<(), StoreError> {
    let result = store.update_with(key, |obj: &mut Value| {
        owners::release(obj, uid);
        Ok::<_, StoreError>(())
    });
    match result {
        Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
        Err(err) => Err(err),
    }
}
