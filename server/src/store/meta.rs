//! The `metadata` fields the store owns: `uid`, `creationTimestamp`, `generation` and
//! `resourceVersion`. Pure functions over JSON objects, so they are tested without redb.

use serde_json::{Map, Value};

use super::{ObjectKey, StoreError};
use crate::k8s::time::now_rfc3339;

/// The object's `metadata` map, or an error when the object has none.
pub(crate) fn metadata_mut(obj: &mut Value) -> Result<&mut Map<String, Value>, StoreError> {
    let map = obj
        .as_object_mut()
        .ok_or_else(|| StoreError::InvalidObject("not a JSON object".into()))?;
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    meta.as_object_mut()
        .ok_or_else(|| StoreError::InvalidObject("metadata is not an object".into()))
}

/// The object's `metadata.resourceVersion`, if it has a non-empty one.
pub fn resource_version(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|rv| !rv.is_empty())
}

/// What a delete requires of the stored object (`DeleteOptions.preconditions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preconditions {
    /// `metadata.uid` must be this (the object was not deleted and re-created meanwhile).
    pub uid: Option<String>,
    /// `metadata.resourceVersion` must be this (the object did not change meanwhile).
    pub resource_version: Option<String>,
}

impl Preconditions {
    /// Only the resourceVersion `expected`, when given.
    pub fn resource_version(expected: Option<&str>) -> Self {
        Preconditions {
            uid: None,
            resource_version: expected.filter(|rv| !rv.is_empty()).map(str::to_owned),
        }
    }

    /// Whether `current`, stored under `key`, meets them; a
    /// [`StoreError::PreconditionFailed`] naming the first that fails otherwise.
    pub fn check(&self, key: &ObjectKey, current: &Value) -> Result<(), StoreError> {
        let uid = current.pointer("/metadata/uid").and_then(Value::as_str);
        let checks = [
            ("UID", &self.uid, uid),
            (
                "ResourceVersion",
                &self.resource_version,
                resource_version(current),
            ),
        ];
        for (field, expected, actual) in checks {
            if let Some(expected) = expected.as_deref().filter(|e| !e.is_empty())
                && Some(expected) != actual
            {
                let actual = actual.unwrap_or_default();
                return Err(StoreError::PreconditionFailed {
                    key: key.clone(),
                    what: format!(
                        "{field} in precondition: {expected}, {field} in object meta: {actual}"
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Makes `metadata.name` and `metadata.namespace` agree with the key the object is stored
/// under, so no reader ever sees an object whose body contradicts its key.
fn stamp_identity(meta: &mut Map<String, Value>, key: &ObjectKey) {
    meta.insert("name".into(), Value::String(key.name.clone()));
    match &key.namespace {
        Some(ns) => meta.insert("namespace".into(), Value::String(ns.clone())),
        None => meta.remove("namespace"),
    };
}

/// Stamps a new object: identity, a fresh `uid`, `creationTimestamp` (now), `generation` 1
/// and the revision of the write.
pub(crate) fn stamp_created(obj: &mut Value, key: &ObjectKey, rev: u64) -> Result<(), StoreError> {
    let meta = metadata_mut(obj)?;
    stamp_identity(meta, key);
    meta.insert("uid".into(), Value::String(new_uid()));
    meta.insert("creationTimestamp".into(), Value::String(now_rfc3339()));
    meta.insert("generation".into(), Value::from(1));
    meta.insert("resourceVersion".into(), Value::String(rev.to_string()));
    Ok(())
}

/// Stamps a replacement of `old`: identity, `uid` and `creationTimestamp` carried over (they
/// are immutable), `generation` bumped when `spec` changed, and the revision of the write.
pub(crate) fn stamp_updated(
    obj: &mut Value,
    old: &Value,
    key: &ObjectKey,
    rev: u64,
) -> Result<(), StoreError> {
    let spec_changed = obj.get("spec") != old.get("spec");
    let old_generation = old
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let meta = metadata_mut(obj)?;
    stamp_identity(meta, key);
    for field in ["uid", "creationTimestamp"] {
        match old.pointer(&format!("/metadata/{field}")) {
            Some(value) => meta.insert(field.into(), value.clone()),
            None => meta.remove(field),
        };
    }
    let generation = old_generation + i64::from(spec_changed);
    meta.insert("generation".into(), Value::from(generation));
    meta.insert("resourceVersion".into(), Value::String(rev.to_string()));
    Ok(())
}

/// Sets only `resourceVersion` (a deleted object carries the revision of its deletion).
pub(crate) fn stamp_revision(obj: &mut Value, rev: u64) -> Result<(), StoreError> {
    metadata_mut(obj)?.insert("resourceVersion".into(), Value::String(rev.to_string()));
    Ok(())
}

/// A random RFC 4122 version-4 UUID.
fn new_uid() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn preconditions_name_the_first_field_that_differs() {
        let key = ObjectKey::namespaced("pods", "default", "p");
        let pod = serde_json::json!({"metadata": {"uid": "u-1", "resourceVersion": "7"}});
        let both = Preconditions {
            uid: Some("u-1".into()),
            resource_version: Some("7".into()),
        };
        assert!(both.check(&key, &pod).is_ok());
        assert!(Preconditions::default().check(&key, &pod).is_ok());
        let other_uid = Preconditions {
            uid: Some("u-2".into()),
            ..both.clone()
        };
        assert_eq!(
            other_uid.check(&key, &pod).unwrap_err().to_string(),
            "Precondition failed: UID in precondition: u-2, UID in object meta: u-1"
        );
        let stale = Preconditions::resource_version(Some("6"));
        assert_eq!(
            stale.check(&key, &pod).unwrap_err().to_string(),
            "Precondition failed: ResourceVersion in precondition: 6, ResourceVersion in object meta: 7"
        );
    }
    use serde_json::json;

    fn key() -> ObjectKey {
        ObjectKey::namespaced("pods", "default", "web")
    }

    #[test]
    fn created_objects_get_identity_uid_timestamp_generation_and_revision() {
        let mut obj = json!({"metadata": {"name": "other", "uid": "mine"}, "spec": {}});
        stamp_created(&mut obj, &key(), 7).unwrap();
        let meta = &obj["metadata"];
        assert_eq!(meta["name"], "web");
        assert_eq!(meta["namespace"], "default");
        assert_ne!(meta["uid"], "mine");
        assert_eq!(meta["uid"].as_str().unwrap().len(), 36);
        assert!(meta["creationTimestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(meta["generation"], 1);
        assert_eq!(meta["resourceVersion"], "7");
    }

    #[test]
    fn updates_keep_uid_and_bump_generation_only_when_spec_changes() {
        let mut old = json!({"metadata": {}, "spec": {"a": 1}});
        stamp_created(&mut old, &key(), 1).unwrap();

        let mut status_only = old.clone();
        status_only["status"] = json!({"phase": "Running"});
        status_only["metadata"]["uid"] = json!("forged");
        stamp_updated(&mut status_only, &old, &key(), 2).unwrap();
        assert_eq!(status_only["metadata"]["uid"], old["metadata"]["uid"]);
        assert_eq!(status_only["metadata"]["generation"], 1);

        let mut spec_change = old.clone();
        spec_change["spec"] = json!({"a": 2});
        stamp_updated(&mut spec_change, &old, &key(), 3).unwrap();
        assert_eq!(spec_change["metadata"]["generation"], 2);
        assert_eq!(spec_change["metadata"]["resourceVersion"], "3");
    }

    #[test]
    fn cluster_scoped_objects_lose_a_namespace() {
        let mut obj = json!({"metadata": {"namespace": "x"}});
        stamp_created(&mut obj, &ObjectKey::cluster("nodes", "pi"), 1).unwrap();
        assert!(obj["metadata"].get("namespace").is_none());
    }

    #[test]
    fn non_objects_are_refused() {
        assert!(stamp_created(&mut json!([1]), &key(), 1).is_err());
        assert!(stamp_created(&mut json!({"metadata": 3}), &key(), 1).is_err());
    }
}
