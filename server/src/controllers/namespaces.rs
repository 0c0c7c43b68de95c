//! The namespace controller: empties a namespace being deleted, then deletes it
//! (kube-controller-manager's `namespace` controller), on the shared [`runner`].
//!
//! A namespace marked for deletion (`deletionTimestamp`, phase `Terminating`, set by the
//! API) has every object of every namespaced kind in it deleted; once nothing is left, the
//! namespace itself goes, and `kubectl delete namespace` returns.
//!
//! [`runner`]: super::runner

use std::sync::Arc;

use serde_json::Value;

use super::runner::Controller;
use super::writes;
use crate::informer::{Cache, Change, key_of};
use crate::store::{ObjectKey, Scope, Store, StoreError};

/// The namespace controller, with the namespaced resources to empty (from the kind
/// registry, given by `run`).
pub struct Namespaces {
    resources: Vec<&'static str>,
}

impl Namespaces {
    /// A controller emptying these namespaced resources: owners first (so no controller
    /// recreates what was just deleted), then pods, then events.
    pub fn new(mut resources: Vec<&'static str>) -> Self {
        resources.sort_by_key(|r| match *r {
            "pods" => 1,
            "events" => 2,
            _ => 0,
        });
        Self { resources }
    }
}

/// Pure: a namespace marked for deletion is to be emptied (and then deleted).
pub fn plan(namespace: Option<&Value>) -> Vec<String> {
    namespace
        .filter(|ns| !ns["metadata"]["deletionTimestamp"].is_null())
        .and_then(|ns| ns["metadata"]["name"].as_str())
        .map(|name| vec![name.to_owned()])
        .unwrap_or_default()
}

impl Controller for Namespaces {
    type State = Option<Arc<Value>>;
    type Action = String;

    fn name(&self) -> &'static str {
        "namespace"
    }

    /// The namespace itself, and the namespace of anything deleted (the last one gone lets
    /// a terminating namespace go).
    fn keys_for(&self, change: &Change) -> Vec<ObjectKey> {
        match (
            change.key.resource.as_str(),
            &change.key.namespace,
            &change.new,
        ) {
            ("namespaces", _, _) => vec![change.key.clone()],
            (_, Some(namespace), None) => vec![ObjectKey::cluster("namespaces", namespace)],
            _ => Vec::new(),
        }
    }

    fn all_keys(&self, cache: &Cache) -> Vec<ObjectKey> {
        cache
            .list("namespaces")
            .iter()
            .filter(|ns| !ns["metadata"]["deletionTimestamp"].is_null())
            .filter_map(|ns| key_of("namespaces", ns))
            .collect()
    }

    fn observe(&self, key: &ObjectKey, cache: &Cache) -> Option<Arc<Value>> {
        cache.get(key)
    }

    fn plan(&self, state: &Option<Arc<Value>>) -> Vec<String> {
        plan(state.as_deref())
    }

    /// Deletes what is in the namespace; when nothing was left, the namespace.
    fn execute(&self, namespace: &String, store: &Store) -> Result<(), StoreError> {
        let mut left = 0;
        for resource in &self.resources {
            for obj in store.list(&Scope::namespace(resource, namespace))?.items {
                if let Some(name) = obj["metadata"]["name"].as_str() {
                    writes::delete(store, &ObjectKey::namespaced(resource, namespace, name))?;
                    left += 1;
                }
            }
        }
        if left == 0 {
            writes::delete(store, &ObjectKey::cluster("namespaces", namespace))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_a_namespace_marked_for_deletion_is_emptied() {
        let active = json!({"metadata": {"name": "team"}});
        assert!(plan(Some(&active)).is_empty());
        let going =
            json!({"metadata": {"name": "team", "deletionTimestamp": "2026-01-01T00:00:00Z"}});
        assert_eq!(plan(Some(&going)), ["team"]);
        assert!(plan(None).is_empty());
    }
}
