//! The Deployment controller: rolls a Deployment's pod template out through ReplicaSets
//! (kube-controller-manager's `deployment` controller), on the shared [`runner`]. The plan
//! is pure ([`rollout`]); this file reads its state from the cache and applies its actions.
//!
//! [`runner`]: super::runner

pub mod rollout;

use serde_json::Value;

use super::runner::Controller;
use super::writes;
use crate::events::{self, Type};
use crate::informer::{Cache, Change, key_of};
use crate::k8s::owners;
use crate::store::{ObjectKey, Store, StoreError};
pub use rollout::{Action, State};

/// The `source.component` of its events.
const COMPONENT: &str = "deployment-controller";

/// The Deployment controller.
#[derive(Debug, Default)]
pub struct Deployments;

impl Controller for Deployments {
    type State = State;
    type Action = Action;

    fn name(&self) -> &'static str {
        "deployment"
    }

    fn keys_for(&self, change: &Change) -> Vec<ObjectKey> {
        match change.key.resource.as_str() {
            "deployments" => vec![change.key.clone()],
            "replicasets" => [change.old.as_deref(), change.new.as_deref()]
                .into_iter()
                .flatten()
                .filter_map(|rs| owners::controller_key(rs, "Deployment", "deployments"))
                .collect(),
            _ => Vec::new(),
        }
    }

    fn all_keys(&self, cache: &Cache) -> Vec<ObjectKey> {
        cache.keys("deployments")
    }

    fn observe(&self, key: &ObjectKey, cache: &Cache) -> State {
        let deployment = cache.get(key);
        let namespace = key.namespace.as_deref().unwrap_or_default();
        State {
            owned: cache.owned(deployment.as_deref(), "ReplicaSet"),
            orphans: cache
                .in_namespace("replicasets", namespace)
                .into_iter()
                .filter(|rs| owners::controller_uid(rs).is_none())
                .collect(),
            deployment,
            now: jiff::Timestamp::now(),
        }
    }

    fn plan(&self, state: &State) -> Vec<Action> {
        rollout::plan(state)
    }

    fn execute(&self, action: &Action, store: &Store) -> Result<(), StoreError> {
        match action {
            Action::Create(rs) => create(store, rs),
            Action::Scale(key, replicas) => scale(store, key, *replicas),
            Action::Renumber(key, revision) => writes::edit(store, key, |rs| {
                set_revision(rs, *revision);
            }),
            Action::Adopt(key, reference) => writes::edit(store, key, |rs| {
                owners::adopt(rs, reference);
            }),
            Action::Delete(key) => writes::delete(store, key),
            Action::Status(key, revision, status) => writes::edit(store, key, |deployment| {
                if let Some(revision) = revision {
                    set_revision(deployment, *revision);
                }
                deployment["status"] = status.clone();
            }),
        }
    }
}

/// Sets a ReplicaSet's replicas and records `ScalingReplicaSet` on its Deployment.
fn scale(store: &Store, key: &ObjectKey, replicas: i64) -> Result<(), StoreError> {
    let mut before = None;
    let mut rs = None;
    writes::edit(store, key, |obj| {
        before = obj["spec"]["replicas"].as_i64();
        obj["spec"]["replicas"] = replicas.into();
        rs = Some(obj.clone());
    })?;
    if let (Some(before), Some(rs)) = (before.filter(|b| *b != replicas), rs) {
        let direction = if replicas > before { "up" } else { "down" };
        let message = format!(
            "Scaled {direction} replica set {} from {before} to {replicas}",
            key.name
        );
        events::record_on_controller(
            store,
            &rs,
            Type::Normal,
            "ScalingReplicaSet",
            &message,
            COMPONENT,
        );
    }
    Ok(())
}

/// Creates a ReplicaSet; one of the same name already there is fine if it is ours.
fn create(store: &Store, rs: &Value) -> Result<(), StoreError> {
    let Some(key) = key_of("replicasets", rs) else {
        return Ok(());
    };
    match store.create(&key, rs.clone()) {
        Ok(_) => {
            let replicas = rs["spec"]["replicas"].as_i64().unwrap_or(0);
            let message = format!("Scaled up replica set {} from 0 to {replicas}", key.name);
            events::record_on_controller(
                store,
                rs,
                Type::Normal,
                "ScalingReplicaSet",
                &message,
                COMPONENT,
            );
            Ok(())
        }
        Err(StoreError::AlreadyExists(key)) => {
            let existing = store.get(&key)?;
            let ours =
                existing.as_ref().and_then(owners::controller_uid) == owners::controller_uid(rs);
            match ours {
                true => Ok(()),
                false => Err(StoreError::AlreadyExists(key)),
            }
        }
        Err(err) => Err(err),
    }
}

fn set_revision(obj: &mut Value, revision: u64) {
    if !obj["metadata"]["annotations"].is_object() {
        obj["metadata"]["annotations"] = serde_json::json!({});
    }
    obj["metadata"]["annotations"][rollout::REVISION] = revision.to_string().into();
}
