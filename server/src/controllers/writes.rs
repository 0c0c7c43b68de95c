//! The store writes controllers' executors share. Each tolerates the object being gone (a
//! later reconcile sees that) and re-checks nothing itself: the callers' closures do.

use serde_json::Value;

use crate::k8s::names;
use crate::store::{ObjectKey, Store, StoreError};

/// Creates `obj` (a namespaced object of `resource`) under its `metadata.generateName` plus
/// a random suffix, trying another suffix if the name is taken.
pub fn create_named(store: &Store, resource: &str, obj: &Value) -> Result<(), StoreError> {
    let prefix = obj["metadata"]["generateName"].as_str().unwrap_or("x-");
    let namespace = obj["metadata"]["namespace"].as_str().unwrap_or("default");
    let mut attempts = 0;
    loop {
        let name = names::generate(prefix);
        let mut named = obj.clone();
        named["metadata"]["name"] = name.clone().into();
        match store.create(&ObjectKey::namespaced(resource, namespace, &name), named) {
            Err(StoreError::AlreadyExists(_)) if attempts < 5 => attempts += 1,
            other => return other.map(drop),
        }
    }
}

/// A read-modify-write of `key` with `change`.
pub fn edit(
    store: &Store,
    key: &ObjectKey,
    change: impl FnOnce(&mut Value),
) -> Result<(), StoreError> {
    let result = store.update_with(key, |obj: &mut Value| {
        change(obj);
        Ok::<_, StoreError>(())
    });
    gone_is_fine(result.map(drop))
}

/// Deletes `key`.
pub fn delete(store: &Store, key: &ObjectKey) -> Result<(), StoreError> {
    gone_is_fine(store.delete(key, None).map(drop))
}

fn gone_is_fine(result: Result<(), StoreError>) -> Result<(), StoreError> {
    match result {
        Err(StoreError::NotFound(_)) => Ok(()),
        other => other,
    }
}
