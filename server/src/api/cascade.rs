//! What a DELETE does to the objects the deleted one owns: `propagationPolicy` of the
//! `DeleteOptions` (`kubectl delete --cascade=background|foreground|orphan`).
//!
//! - `Background` (the default): the object goes at once; the garbage collector
//!   ([`crate::controllers::garbage`]) deletes its dependents afterwards.
//! - `Foreground`: the object is first marked deleted (`metadata.deletionTimestamp`, so its
//!   controller stops acting on it), then its dependents are deleted, depth first (a
//!   Deployment's ReplicaSets, their pods), then the object; the call returns when all are
//!   gone, which is when `kubectl delete --cascade=foreground` returns.
//! - `Orphan`: the object is marked deleted, its dependents lose their reference to it,
//!   then it goes; they keep running, and a controller whose selector matches them may
//!   adopt them later.
//!
//! Dependents are the namespaced objects of the served kinds whose `ownerReferences` name
//! the object's uid. Runs inside the DELETE's blocking call.

use serde_json::Value;

use super::kinds;
use super::objects::DeleteOptions;
use super::status::ApiError;
use crate::k8s::owners;
use crate::store::{ObjectKey, Preconditions, Scope, Store, StoreError};

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

/// Deletes `key` with the options' propagation policy (see the module docs); returns its
/// last state. A dry run checks and answers as the delete would, and writes nothing.
pub fn delete(store: &Store, key: &ObjectKey, options: &DeleteOptions) -> Result<Value, ApiError> {
    let expected = &options.preconditions;
    match options.dry_run {
        true => Ok(would_delete(store, key, expected)?),
        false => Ok(delete_tree_root(store, key, expected, options.propagation)?),
    }
}

/// What a delete of `key` would answer (the stored object, preconditions checked),
/// without writing.
pub fn would_delete(
    store: &Store,
    key: &ObjectKey,
    expected: &Preconditions,
) -> Result<Value, StoreError> {
    let current = store
        .get(key)?
        .ok_or_else(|| StoreError::NotFound(key.clone()))?;
    expected.check(key, &current)?;
    Ok(current)
}

fn delete_tree_root(
    store: &Store,
    key: &ObjectKey,
    expected: &Preconditions,
    policy: Propagation,
) -> Result<Value, StoreError> {
    let Some(current) = store.get(key)? else {
        return Err(StoreError::NotFound(key.clone()));
    };
    if policy == Propagation::Background {
        return store.delete_if(key, expected);
    }
    // The precondition is on the object as the client saw it, before it is marked.
    expected.check(key, &current)?;
    let uid = current["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    match policy {
        Propagation::Background => {}
        Propagation::Orphan => {
            // Marked first, so its controller does not adopt the released dependents back.
            mark_deleted(store, key)?;
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
    store.delete(key, None)
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn with(expected: Option<&str>, propagation: Propagation) -> DeleteOptions {
        DeleteOptions {
            preconditions: Preconditions::resource_version(expected),
            propagation,
            ..DeleteOptions::default()
        }
    }

    /// A Deployment owning a ReplicaSet owning two pods, in a fresh store.
    fn tree(dir: &tempfile::TempDir) -> (Store, [ObjectKey; 4]) {
        let store = Store::open(dir.path().join("state.redb")).expect("store");
        let put = |resource: &str, kind: &str, name: &str, owner: Option<&Value>| {
            let key = ObjectKey::namespaced(resource, "default", name);
            let mut obj = json!({"apiVersion": "v1", "kind": kind,
                                 "metadata": {"name": name, "namespace": "default"}});
            if let Some(owner) = owner {
                obj["metadata"]["ownerReferences"] =
                    json!([owners::controller_reference(owner).expect("owner")]);
            }
            (key.clone(), store.create(&key, obj).expect("create"))
        };
        let (d, deployment) = put("deployments", "Deployment", "web", None);
        let (rs, replica_set) = put("replicasets", "ReplicaSet", "web-1", Some(&deployment));
        let (p1, _) = put("pods", "Pod", "web-1-a", Some(&replica_set));
        let (p2, _) = put("pods", "Pod", "web-1-b", Some(&replica_set));
        (store, [d, rs, p1, p2])
    }

    #[test]
    fn foreground_deletes_the_whole_tree_and_orphan_keeps_the_dependents() {
        let dir = tempfile::tempdir().expect("dir");
        let (store, [d, rs, p1, p2]) = tree(&dir);
        delete(&store, &d, &with(None, Propagation::Foreground)).expect("delete");
        for key in [&d, &rs, &p1, &p2] {
            assert!(store.get(key).expect("get").is_none(), "{key} left");
        }

        let dir = tempfile::tempdir().expect("dir");
        let (store, [d, rs, p1, _]) = tree(&dir);
        delete(&store, &d, &with(None, Propagation::Orphan)).expect("delete");
        assert!(store.get(&d).expect("get").is_none());
        let orphan = store.get(&rs).expect("get").expect("the ReplicaSet stays");
        assert!(owners::controller_of(&orphan).is_none());
        let pod = store.get(&p1).expect("get").expect("its pods stay");
        assert!(
            owners::controller_of(&pod).is_some(),
            "pods keep their ReplicaSet"
        );
    }

    #[test]
    fn a_stale_precondition_changes_nothing_and_bad_policies_are_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let (store, [d, rs, ..]) = tree(&dir);
        let refused = delete(&store, &d, &with(Some("999"), Propagation::Foreground));
        assert_eq!(
            refused.err().map(|e| e.code),
            Some(axum::http::StatusCode::CONFLICT)
        );
        assert!(store.get(&rs).expect("get").is_some());
        let current = store.get(&d).expect("get").expect("still there");
        assert!(current["metadata"]["deletionTimestamp"].is_null());
        assert!(Propagation::parse(Some("Sideways")).is_err());
    }

    #[test]
    fn a_uid_precondition_deletes_only_that_incarnation() {
        let dir = tempfile::tempdir().expect("dir");
        let (store, [d, ..]) = tree(&dir);
        let uid = store.get(&d).expect("get").expect("there")["metadata"]["uid"].clone();
        let mut options = with(None, Propagation::Background);
        options.preconditions.uid = Some("someone-else".into());
        let refused = delete(&store, &d, &options).expect_err("another uid");
        assert_eq!(refused.code, axum::http::StatusCode::CONFLICT);
        assert_eq!(
            refused.message,
            format!(
                "Operation cannot be fulfilled on deployments \"{}\": Precondition failed: UID in precondition: someone-else, UID in object meta: {}",
                d.name,
                uid.as_str().expect("a uid")
            )
        );
        assert!(store.get(&d).expect("get").is_some(), "nothing deleted");
        options.preconditions.uid = uid.as_str().map(str::to_owned);
        assert!(delete(&store, &d, &options).is_ok());
        assert!(store.get(&d).expect("get").is_none());
    }
}
