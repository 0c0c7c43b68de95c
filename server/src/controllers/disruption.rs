//! The disruption controller: keeps each PodDisruptionBudget's status (`currentHealthy`,
//! `desiredHealthy`, `expectedPods`, `disruptionsAllowed`) true as its pods come, go and
//! become Ready, on the shared [`runner`]. The rule itself is [`crate::k8s::disruption`],
//! which evictions also apply.
//!
//! [`runner`]: super::runner

use std::sync::Arc;

use serde_json::Value;

use super::runner::Controller;
use super::writes;
use crate::informer::{Cache, Change, key_of};
use crate::k8s::disruption::Budget;
use crate::store::{ObjectKey, Store, StoreError};

/// The disruption controller. It holds the cache to find the budgets of a pod's namespace.
pub struct Disruption {
    cache: Cache,
}

impl Disruption {
    /// A controller reading `cache`.
    pub fn new(cache: Cache) -> Self {
        Self { cache }
    }
}

/// One budget and the pods of its namespace.
#[derive(Debug, Clone)]
pub struct State {
    /// The budget (`None`: deleted).
    pub budget: Option<Arc<Value>>,
    /// The pods of its namespace.
    pub pods: Vec<Arc<Value>>,
}

/// Pure: the status to write, if it changed.
pub fn plan(state: &State) -> Vec<(ObjectKey, Value)> {
    let Some(pdb) = state.budget.as_deref() else {
        return Vec::new();
    };
    let (Some(key), Some(budget)) = (
        key_of("poddisruptionbudgets", pdb),
        Budget::of(pdb, state.pods.iter().map(Arc::as_ref)),
    ) else {
        return Vec::new();
    };
    let status = budget.status(pdb.pointer("/metadata/generation"));
    match pdb.get("status") == Some(&status) {
        true => Vec::new(),
        false => vec![(key, status)],
    }
}

impl Controller for Disruption {
    type State = State;
    type Action = (ObjectKey, Value);

    fn name(&self) -> &'static str {
        "disruption"
    }

    fn keys_for(&self, change: &Change) -> Vec<ObjectKey> {
        match change.key.resource.as_str() {
            "poddisruptionbudgets" => vec![change.key.clone()],
            "pods" => change
                .key
                .namespace
                .as_deref()
                .map(|ns| {
                    self.cache
                        .in_namespace("poddisruptionbudgets", ns)
                        .iter()
                        .filter_map(|pdb| key_of("poddisruptionbudgets", pdb))
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    fn all_keys(&self, cache: &Cache) -> Vec<ObjectKey> {
        cache.keys("poddisruptionbudgets")
    }

    fn observe(&self, key: &ObjectKey, cache: &Cache) -> State {
        State {
            budget: cache.get(key),
            pods: cache.in_namespace("pods", key.namespace.as_deref().unwrap_or_default()),
        }
    }

    fn plan(&self, state: &State) -> Vec<(ObjectKey, Value)> {
        plan(state)
    }

    fn execute(&self, (key, status): &(ObjectKey, Value), store: &Store) -> Result<(), StoreError> {
        writes::edit(store, key, |pdb| pdb["status"] = status.clone())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_status_follows_the_ready_pods_and_is_written_once() {
        let pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "web", "namespace": "default", "generation": 1},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "minAvailable": 1}});
        let ready = Arc::new(json!({"metadata": {"labels": {"app": "web"}},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}));
        let state = State {
            budget: Some(Arc::new(pdb.clone())),
            pods: vec![ready.clone(), ready],
        };
        let actions = plan(&state);
        assert_eq!(actions.len(), 1);
        assert_eq!(actions[0].1["disruptionsAllowed"], 1);
        let mut settled = pdb;
        settled["status"] = actions[0].1.clone();
        let state = State {
            budget: Some(Arc::new(settled)),
            ..state
        };
        assert!(plan(&state).is_empty());
    }
}
