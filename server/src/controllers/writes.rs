//! The store writes controllers' executors share. Each tolerates the object being gone (a
//! later reconcile sees that) and re-checks nothing itself: the callers' closures do.

use serde_json::Value;

use crate::api::kinds::serviceaccounts;
use crate::events::{self, Type};
use crate::k8s::names;
use crate::store::{ObjectKey, Store, StoreError};

/// Creates `obj` (a namespaced object of `resource`) under its `metadata.generateName` plus
/// a random suffix, trying another suffix if the name is taken; returns the name.
pub fn create_named(store: &Store, resource: &str, obj: &Value) -> Result<String, StoreError> {
    let prefix = obj["metadata"]["generateName"].as_str().unwrap_or("x-");
    let namespace = obj["metadata"]["namespace"].as_str().unwrap_or("default");
    let mut attempts = 0;
    loop {
        let name = names::generate(prefix);
        let mut named = obj.clone();
        named["metadata"]["name"] = name.clone().into();
        match store.create(&ObjectKey::namespaced(resource, namespace, &name), named) {
            Err(StoreError::AlreadyExists(_)) if attempts < 5 => attempts += 1,
            other => return other.map(|_| name),
        }
    }
}

/// Creates a controller's pod, admitted like the API's pods (its ServiceAccount,
/// [`serviceaccounts::admit_pod`]), and records `SuccessfulCreate` on the controller; a
/// refused pod is the controller's `FailedCreate` event, and an error (the runner retries).
pub fn create_pod(store: &Store, pod: &Value, component: &str) -> Result<(), StoreError> {
    let mut admitted = pod.clone();
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    if let Err(err) = serviceaccounts::admit_pod(store, namespace, &mut admitted) {
        if matches!(err, StoreError::Refused { .. }) {
            let message = format!("Error creating: {err}");
            let failed = "FailedCreate";
            events::record_on_controller(store, pod, Type::Warning, failed, &message, component);
        }
        return Err(err);
    }
    let name = create_named(store, "pods", &admitted)?;
    let message = format!("Created pod: {name}");
    events::record_on_controller(
        store,
        pod,
        Type::Normal,
        "SuccessfulCreate",
        &message,
        component,
    );
    Ok(())
}

/// Deletes a controller's pod and records `SuccessfulDelete` on its controller.
pub fn delete_pod(store: &Store, key: &ObjectKey, component: &str) -> Result<(), StoreError> {
    if let Some(pod) = gone_is_fine(store.delete(key, None))? {
        let message = format!("Deleted pod: {}", key.name);
        events::record_on_controller(
            store,
            &pod,
            Type::Normal,
            "SuccessfulDelete",
            &message,
            component,
        );
    }
    Ok(())
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
    gone_is_fine(result).map(drop)
}

/// Deletes `key`.
pub fn delete(store: &Store, key: &ObjectKey) -> Result<(), StoreError> {
    gone_is_fine(store.delete(key, None)).map(drop)
}

/// The object, or `None` when it was gone (not an error for a controller).
fn gone_is_fine(result: Result<Value, StoreError>) -> Result<Option<Value>, StoreError> {
    match result {
        Ok(obj) => Ok(Some(obj)),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::Scope;

    #[test]
    fn a_pod_without_its_account_is_the_controllers_failed_create() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s.redb")).unwrap();
        let pod = json!({"metadata": {"generateName": "web-1a2b-", "namespace": "default",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "web-1a2b", "uid": "rs-1", "controller": true}]},
            "spec": {"serviceAccountName": "missing", "containers": []}});
        let refused = create_pod(&store, &pod, "replicaset-controller");
        assert!(
            matches!(refused, Err(StoreError::Refused { .. })),
            "{refused:?}"
        );
        let listed = store.list(&Scope::all("pods")).unwrap();
        assert!(listed.items.is_empty(), "no pod was created");
        let events = store.list(&Scope::all("events")).unwrap().items;
        let [event] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(event["reason"], "FailedCreate");
        assert_eq!(event["type"], "Warning");
        assert_eq!(event["involvedObject"]["name"], "web-1a2b");
        assert_eq!(
            event["message"],
            "Error creating: pods \"web-1a2b-\" is forbidden: error looking up service account \
             default/missing: serviceaccount \"missing\" not found"
        );
        // Once the account exists, the pod is created, running as it.
        let account = json!({"metadata": {"name": "missing", "namespace": "default"}});
        let key = ObjectKey::namespaced("serviceaccounts", "default", "missing");
        store.create(&key, account).unwrap();
        create_pod(&store, &pod, "replicaset-controller").unwrap();
        let pods = store.list(&Scope::all("pods")).unwrap().items;
        assert_eq!(pods[0]["spec"]["serviceAccountName"], "missing");
    }
}
