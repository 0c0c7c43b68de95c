//! Owner references (`metadata.ownerReferences[]`): which object controls another (a
//! ReplicaSet its pods, a Deployment its ReplicaSets), for the controllers and the garbage
//! collector.

use serde_json::{Value, json};

/// The object's owner references (none when absent or malformed).
pub fn owner_references(obj: &Value) -> impl Iterator<Item = &Value> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// The owner reference with `controller: true` (Kubernetes allows at most one).
pub fn controller_of(obj: &Value) -> Option<&Value> {
    owner_references(obj).find(|owner| owner.get("controller") == Some(&Value::Bool(true)))
}

/// The uid of the object's controller owner.
pub fn controller_uid(obj: &Value) -> Option<&str> {
    controller_of(obj)?.get("uid")?.as_str()
}

/// Whether any owner reference of `obj` names `uid`.
pub fn is_owned_by(obj: &Value, uid: &str) -> bool {
    owner_references(obj).any(|owner| owner.get("uid").and_then(Value::as_str) == Some(uid))
}

/// The owner reference a controller puts on what it creates for `owner`: `apiVersion`,
/// `kind`, `name` and `uid` of the owner, `controller: true` and `blockOwnerDeletion: true`
/// (foreground deletion of the owner waits for it). `None` when the owner lacks one of them.
pub fn controller_reference(owner: &Value) -> Option<Value> {
    let field = |pointer: &str| owner.pointer(pointer).and_then(Value::as_str);
    Some(json!({
        "apiVersion": field("/apiVersion")?,
        "kind": field("/kind")?,
        "name": field("/metadata/name")?,
        "uid": field("/metadata/uid")?,
        "controller": true,
        "blockOwnerDeletion": true,
    }))
}

/// The key of `obj`'s controller when it is of `kind` (stored as `resource`, in the same
/// namespace): which ReplicaSet, Deployment or Job a change of `obj` concerns.
pub fn controller_key(obj: &Value, kind: &str, resource: &str) -> Option<crate::store::ObjectKey> {
    let owner = controller_of(obj)?;
    (owner.get("kind").and_then(Value::as_str) == Some(kind)).then_some(())?;
    Some(crate::store::ObjectKey::namespaced(
        resource,
        obj.pointer("/metadata/namespace")?.as_str()?,
        owner.get("name")?.as_str()?,
    ))
}

/// Adds `reference` to an object that has no controller yet (adoption); `false` when it has
/// one already (it stays with that controller).
pub fn adopt(obj: &mut Value, reference: &Value) -> bool {
    if controller_of(obj).is_some() {
        return false;
    }
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return false;
    };
    let refs = meta.entry("ownerReferences").or_insert_with(|| json!([]));
    match refs.as_array_mut() {
        Some(refs) => {
            refs.push(reference.clone());
            true
        }
        None => false,
    }
}

/// Removes the owner references naming `uid` (release, orphaning); an emptied list goes.
pub fn release(obj: &mut Value, uid: &str) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(refs) = meta
        .get_mut("ownerReferences")
        .and_then(Value::as_array_mut)
    {
        refs.retain(|owner| owner.get("uid").and_then(Value::as_str) != Some(uid));
        if refs.is_empty() {
            meta.remove("ownerReferences");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica_set() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-5d8f", "namespace": "default", "uid": "rs-1"}
        })
    }

    #[test]
    fn a_controller_reference_names_its_owner_and_blocks_its_deletion() {
        let reference = controller_reference(&replica_set()).expect("a complete owner");
        assert_eq!(
            reference,
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8f",
                   "uid": "rs-1", "controller": true, "blockOwnerDeletion": true})
        );
        let typed: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference =
            serde_json::from_value(reference).expect("a valid ownerReference");
        assert_eq!(typed.controller, Some(true));
        assert!(controller_reference(&json!({"kind": "ReplicaSet"})).is_none());
    }

    #[test]
    fn the_controller_is_the_owner_marked_controller() {
        let pod = json!({"metadata": {"ownerReferences": [
            {"kind": "Node", "name": "pi", "uid": "n-1"},
            controller_reference(&replica_set()).expect("owner"),
        ]}});
        assert_eq!(controller_uid(&pod), Some("rs-1"));
        assert!(is_owned_by(&pod, "n-1") && is_owned_by(&pod, "rs-1"));
        assert!(!is_owned_by(&pod, "other"));
        let orphan = json!({"metadata": {"ownerReferences": [{"uid": "n-1"}]}});
        assert_eq!(controller_uid(&orphan), None);
        assert_eq!(
            controller_uid(&json!({"metadata": {"ownerReferences": 3}})),
            None
        );
    }

    #[test]
    fn adoption_needs_no_controller_and_release_drops_the_reference() {
        let reference = controller_reference(&replica_set()).expect("owner");
        let mut pod = json!({"metadata": {"name": "p"}});
        assert!(adopt(&mut pod, &reference));
        assert_eq!(controller_uid(&pod), Some("rs-1"));
        let mut other = reference.clone();
        other["uid"] = "rs-2".into();
        assert!(!adopt(&mut pod, &other), "a pod keeps its controller");
        release(&mut pod, "rs-1");
        assert!(pod["metadata"].get("ownerReferences").is_none());
    }
}
