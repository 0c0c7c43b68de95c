//! The garbage collector: deletes what its owners left behind (kube-controller-manager's
//! `garbagecollector`), on the shared [`runner`].
//!
//! An object whose `metadata.ownerReferences` all name owners that no longer exist (no
//! object of that kind and name, or one with another uid) is deleted: this is the
//! *background* cascade `kubectl delete` asks for by default. References to missing owners
//! are dropped from an object that still has a live owner. The *orphan* cascade is the
//! API's (it removes the references before deleting the owner).
//!
//! [`runner`]: super::runner

use std::sync::Arc;

use serde_json::Value;

use super::runner::Controller;
use super::writes;
use crate::informer::{Cache, Change, key_of};
use crate::k8s::owners;
use crate::store::{ObjectKey, Store, StoreError};

/// The resources whose objects may have owners, and the kind each owner reference names.
const DEPENDENTS: [&str; 4] = ["pods", "replicasets", "jobs", "endpointslices"];

/// The resource of an owner `kind` (the owners wasmfleet's controllers create).
fn resource_of(kind: &str) -> Option<&'static str> {
    match kind {
        "ReplicaSet" => Some("replicasets"),
        "Deployment" => Some("deployments"),
        "Job" => Some("jobs"),
        "DaemonSet" => Some("daemonsets"),
        "CronJob" => Some("cronjobs"),
        "Pod" => Some("pods"),
        "Service" => Some("services"),
        "Node" => Some("nodes"),
        "Namespace" => Some("namespaces"),
        _ => None,
    }
}

/// The garbage collector. It holds the cache to find what a deleted object owned.
pub struct Garbage {
    cache: Cache,
}

impl Garbage {
    /// A collector reading `cache`.
    pub fn new(cache: Cache) -> Self {
        Self { cache }
    }
}

/// One object and whether each of its owners is alive.
#[derive(Debug, Clone)]
pub struct State {
    /// The object (`None`: gone already).
    pub object: Option<Arc<Value>>,
    /// Per owner reference: its uid and whether that owner exists (unknown kinds count as
    /// alive: never delete on a reference the collector cannot check).
    pub owners: Vec<(String, bool)>,
}

/// What the collector does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Delete the object, if it still has this uid.
    Delete(ObjectKey, String),
    /// Drop the references to these owner uids.
    DropReferences(ObjectKey, Vec<String>),
}

/// Pure: what to do about one object.
pub fn plan(state: &State, key: &ObjectKey) -> Vec<Action> {
    let Some(object) = state.object.as_deref() else {
        return Vec::new();
    };
    if state.owners.is_empty() {
        return Vec::new();
    }
    let dead: Vec<String> = state
        .owners
        .iter()
        .filter(|(_, alive)| !alive)
        .map(|(uid, _)| uid.clone())
        .collect();
    let uid = object["metadata"]["uid"].as_str().unwrap_or_default();
    match (dead.len(), state.owners.len()) {
        (0, _) => Vec::new(),
        (d, n) if d == n => vec![Action::Delete(key.clone(), uid.to_owned())],
        _ => vec![Action::DropReferences(key.clone(), dead)],
    }
}

impl Controller for Garbage {
    type State = (ObjectKey, State);
    type Action = Action;

    fn name(&self) -> &'static str {
        "garbage-collector"
    }

    /// The changed object itself (it may have gained an owner), and when an object goes
    /// away, what it owned.
    fn keys_for(&self, change: &Change) -> Vec<ObjectKey> {
        let mut keys = Vec::new();
        if DEPENDENTS.contains(&change.key.resource.as_str()) && change.new.is_some() {
            keys.push(change.key.clone());
        }
        if change.new.is_none()
            && let Some(uid) = change
                .old
                .as_deref()
                .and_then(|o| o["metadata"]["uid"].as_str())
        {
            keys.extend(self.cache.owned_by(uid).iter().filter_map(|dependent| {
                DEPENDENTS
                    .iter()
                    .find(|r| {
                        resource_of(dependent["kind"].as_str().unwrap_or_default()) == Some(**r)
                    })
                    .and_then(|resource| key_of(resource, dependent))
            }));
        }
        keys
    }

    fn all_keys(&self, cache: &Cache) -> Vec<ObjectKey> {
        DEPENDENTS
            .iter()
            .flat_map(|resource| {
                cache
                    .list(resource)
                    .into_iter()
                    .filter(|o| owners::owner_references(o).next().is_some())
                    .filter_map(move |o| key_of(resource, &o))
            })
            .collect()
    }

    fn observe(&self, key: &ObjectKey, cache: &Cache) -> (ObjectKey, State) {
        let object = cache.get(key);
        let owners = object
            .as_deref()
            .map(|o| owner_states(o, key, cache))
            .unwrap_or_default();
        (key.clone(), State { object, owners })
    }

    fn plan(&self, (key, state): &(ObjectKey, State)) -> Vec<Action> {
        plan(state, key)
    }

    fn execute(&self, action: &Action, store: &Store) -> Result<(), StoreError> {
        execute(action, store)
    }
}

/// Whether each owner of `object` exists in the cache with the referenced uid.
fn owner_states(object: &Value, key: &ObjectKey, cache: &Cache) -> Vec<(String, bool)> {
    owners::owner_references(object)
        .filter_map(|reference| {
            let uid = reference["uid"].as_str()?.to_owned();
            let name = reference["name"].as_str()?;
            let Some(resource) = reference["kind"].as_str().and_then(resource_of) else {
                return Some((uid, true));
            };
            let owner_key = match resource {
                "nodes" | "namespaces" => ObjectKey::cluster(resource, name),
                _ => ObjectKey::namespaced(resource, key.namespace.as_deref()?, name),
            };
            let alive = cache
                .get(&owner_key)
                .is_some_and(|owner| owner["metadata"]["uid"].as_str() == Some(uid.as_str()));
            Some((uid, alive))
        })
        .collect()
}

fn execute(action: &Action, store: &Store) -> Result<(), StoreError> {
    match action {
        Action::Delete(key, uid) => {
            let same = store
                .get(key)?
                .is_some_and(|o| o["metadata"]["uid"].as_str() == Some(uid.as_str()));
            match same {
                true => writes::delete(store, key),
                false => Ok(()),
            }
        }
        Action::DropReferences(key, uids) => writes::edit(store, key, |obj| {
            for uid in uids {
                owners::release(obj, uid);
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod() -> Arc<Value> {
        Arc::new(
            json!({"metadata": {"name": "p", "namespace": "default", "uid": "p-1",
            "ownerReferences": [{"kind": "ReplicaSet", "name": "rs", "uid": "rs-1"}]}}),
        )
    }

    fn key() -> ObjectKey {
        ObjectKey::namespaced("pods", "default", "p")
    }

    #[test]
    fn an_object_whose_owners_are_all_gone_is_deleted() {
        let state = State {
            object: Some(pod()),
            owners: vec![("rs-1".into(), false)],
        };
        assert_eq!(plan(&state, &key()), [Action::Delete(key(), "p-1".into())]);
    }

    #[test]
    fn a_live_owner_keeps_it_and_dangling_references_are_dropped() {
        let alive = State {
            object: Some(pod()),
            owners: vec![("rs-1".into(), true)],
        };
        assert!(plan(&alive, &key()).is_empty());
        let mixed = State {
            object: Some(pod()),
            owners: vec![("rs-1".into(), true), ("old".into(), false)],
        };
        assert_eq!(
            plan(&mixed, &key()),
            [Action::DropReferences(key(), vec!["old".into()])]
        );
    }

    #[test]
    fn objects_without_owners_or_gone_are_left_alone() {
        let none = State {
            object: Some(pod()),
            owners: vec![],
        };
        assert!(plan(&none, &key()).is_empty());
        let gone = State {
            object: None,
            owners: vec![("rs-1".into(), false)],
        };
        assert!(plan(&gone, &key()).is_empty());
    }
}
