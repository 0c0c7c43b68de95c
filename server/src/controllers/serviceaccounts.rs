//! The serviceaccount controller: every namespace has a `default` ServiceAccount
//! (kube-controller-manager's `serviceaccount` controller), on the shared [`runner`].
//!
//! One key per namespace; a namespace that is not being deleted and has no `default`
//! account gets one. A deleted `default` comes back.
//!
//! [`runner`]: super::runner

use std::sync::Arc;

use serde_json::Value;

use super::runner::Controller;
use crate::api::kinds::serviceaccounts::ensure_default;
use crate::informer::{Cache, Change, key_of};
use crate::k8s::references::DEFAULT_SERVICE_ACCOUNT;
use crate::store::{ObjectKey, Store, StoreError};

/// The serviceaccount controller.
pub struct ServiceAccounts;

/// What one namespace looks like: the namespace, and its `default` account.
pub type State = (Option<Arc<Value>>, Option<Arc<Value>>);

/// Pure: the namespaces whose `default` account is to be created.
pub fn plan((namespace, account): &State) -> Vec<String> {
    let Some(namespace) = namespace else {
        return Vec::new();
    };
    let active = namespace["metadata"]["deletionTimestamp"].is_null();
    match (active, account, namespace["metadata"]["name"].as_str()) {
        (true, None, Some(name)) => vec![name.to_owned()],
        _ => Vec::new(),
    }
}

impl Controller for ServiceAccounts {
    type State = State;
    type Action = String;

    fn name(&self) -> &'static str {
        "serviceaccount"
    }

    /// A namespace changed, or a `default` account changed or went.
    fn keys_for(&self, change: &Change) -> Vec<ObjectKey> {
        let key = &change.key;
        match (key.resource.as_str(), &key.namespace) {
            ("namespaces", _) => vec![key.clone()],
            ("serviceaccounts", Some(ns)) if key.name == DEFAULT_SERVICE_ACCOUNT => {
                vec![ObjectKey::cluster("namespaces", ns)]
            }
            _ => Vec::new(),
        }
    }

    fn all_keys(&self, cache: &Cache) -> Vec<ObjectKey> {
        cache
            .list("namespaces")
            .iter()
            .filter_map(|ns| key_of("namespaces", ns))
            .collect()
    }

    fn observe(&self, key: &ObjectKey, cache: &Cache) -> State {
        let account = ObjectKey::namespaced("serviceaccounts", &key.name, DEFAULT_SERVICE_ACCOUNT);
        (cache.get(key), cache.get(&account))
    }

    fn plan(&self, state: &State) -> Vec<String> {
        plan(state)
    }

    fn execute(&self, namespace: &String, store: &Store) -> Result<(), StoreError> {
        ensure_default(store, namespace)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_active_namespace_without_default_gets_one() {
        let ns = Some(Arc::new(json!({"metadata": {"name": "team"}})));
        assert_eq!(plan(&(ns.clone(), None)), ["team"]);
        let account = Some(Arc::new(json!({"metadata": {"name": "default"}})));
        assert!(plan(&(ns, account)).is_empty());
        let going =
            json!({"metadata": {"name": "team", "deletionTimestamp": "2026-01-01T00:00:00Z"}});
        assert!(plan(&(Some(Arc::new(going)), None)).is_empty());
        assert!(plan(&(None, None)).is_empty());
    }
}
