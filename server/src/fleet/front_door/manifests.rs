//! Manifests published to the front door: one payload of YAML or JSON documents (separated
//! by `---`, `kind: List` expanded like kubectl does) turned into the objects to apply.
//! Pure; the worker applies what [`resolve_all`] returns.
//!
//! A payload is all or nothing up to here: if any document cannot be read or mapped to a
//! served kind, nothing is applied (kubectl also reads every document before it applies
//! the first). Applying itself is per object, in order, like `kubectl apply`.

use serde::Deserialize;
use serde_json::Value;
use wasmfleet_protocol::limits::MAX_OBJECT_BODY;
use wasmfleet_protocol::names;

use crate::api::kinds::{self, Kind, name_of};
use crate::api::nesting;
use crate::store::ObjectKey;

/// The largest manifest payload, in bytes.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// The most objects one payload may hold.
pub const MAX_DOCUMENTS: usize = 256;

/// Where kubectl would say the manifest came from.
const SOURCE: &str = "wf/v1/apply";

/// One object to apply.
#[derive(Clone)]
pub struct Resolved {
    /// Its kind.
    pub kind: &'static Kind,
    /// Where it lives.
    pub key: ObjectKey,
    /// The applied configuration (namespace filled in for namespaced kinds).
    pub applied: Value,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("kind", &self.kind.kind)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Resolved {
    /// How kubectl names it: `deployment.apps/web`, `pod/hello`.
    pub fn reference(&self) -> String {
        reference(self.kind, &self.key.name)
    }
}

/// `kind[.group]/name`, lowercase, as kubectl prints it.
pub fn reference(kind: &Kind, name: &str) -> String {
    match kind.group {
        "" => format!("{}/{name}", kind.singular),
        group => format!("{}.{group}/{name}", kind.singular),
    }
}

/// Reads every document of `bytes` and maps each to a served kind and key. The error is
/// the line kubectl would print (`error: ...`).
pub fn resolve_all(bytes: &[u8]) -> Result<Vec<Resolved>, String> {
    documents(bytes)?
        .into_iter()
        .enumerate()
        .map(|(index, doc)| resolve(doc, index))
        .collect()
}

/// The objects in `bytes`: empty documents skipped, `List`s expanded, limits checked.
pub fn documents(bytes: &[u8]) -> Result<Vec<Value>, String> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(format!(
            "error: the manifests are {} bytes, more than the limit of {MAX_MANIFEST_BYTES} bytes",
            bytes.len()
        ));
    }
    nesting::check_yaml(bytes).map_err(|err| format!("error: {err}"))?;
    let mut out = Vec::new();
    for (index, document) in serde_yaml_ng::Deserializer::from_slice(bytes).enumerate() {
        let value = Value::deserialize(document).map_err(|err| {
            format!(
                "error: error parsing {SOURCE} (document {}): {err}",
                index + 1
            )
        })?;
        match value {
            Value::Null => {}
            Value::Object(_) if value["kind"] == "List" && value["items"].is_array() => {
                out.extend(value["items"].as_array().into_iter().flatten().cloned());
            }
            Value::Object(_) => out.push(value),
            _ => {
                return Err(format!(
                    "error: error parsing {SOURCE} (document {}): not an object",
                    index + 1
                ));
            }
        }
        if out.len() > MAX_DOCUMENTS {
            return Err(format!(
                "error: more than {MAX_DOCUMENTS} objects in one publish; split them"
            ));
        }
    }
    if out.is_empty() {
        return Err("error: no objects passed to apply".to_owned());
    }
    Ok(out)
}

/// Maps one document (the `index`th object) to its kind and key.
fn resolve(mut doc: Value, index: usize) -> Result<Resolved, String> {
    let number = index + 1;
    let api_version = doc["apiVersion"].as_str().unwrap_or_default().to_owned();
    let kind_name = doc["kind"].as_str().unwrap_or_default().to_owned();
    let missing: Vec<&str> = [("apiVersion", &api_version), ("kind", &kind_name)]
        .into_iter()
        .filter(|(_, value)| value.is_empty())
        .map(|(field, _)| field)
        .collect();
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|f| format!("{f} not set")).collect();
        return Err(format!(
            "error: error validating data (object {number}): [{}]",
            list.join(", ")
        ));
    }
    let name = name_of(&doc).to_owned();
    let Some(kind) = kinds::ALL
        .iter()
        .copied()
        .find(|kind| kind.api_version == api_version && kind.kind == kind_name)
    else {
        return Err(format!(
            "error: resource mapping not found for name: {name:?} namespace: {:?} from {SOURCE:?}: \
             no matches for kind {kind_name:?} in version {api_version:?}",
            doc.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default()
        ));
    };
    if name.is_empty() {
        return Err(format!(
            "error: {kind_name} (object {number}): resource name may not be empty"
        ));
    }
    names::validate_dns_subdomain("name", &name).map_err(|err| format!("error: {err}"))?;
    let size = serde_json::to_vec(&doc).map_or(usize::MAX, |json| json.len());
    if size > MAX_OBJECT_BODY {
        return Err(format!(
            "error: {} is {size} bytes, more than the limit of {MAX_OBJECT_BODY} bytes per object",
            reference(kind, &name)
        ));
    }
    let key = key_of(kind, &mut doc, &name)?;
    Ok(Resolved {
        kind,
        key,
        applied: doc,
    })
}

/// The key of a document: namespaced kinds in their namespace (`default` when the document
/// names none, which is then filled in); a namespace on a cluster-scoped kind is ignored,
/// as kubectl does.
fn key_of(kind: &Kind, doc: &mut Value, name: &str) -> Result<ObjectKey, String> {
    let given = doc
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|ns| !ns.is_empty())
        .map(str::to_owned);
    let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut) else {
        return Err("error: metadata must be an object".to_owned());
    };
    if !kind.namespaced {
        meta.remove("namespace");
        return Ok(ObjectKey::cluster(kind.plural, name));
    }
    let namespace = given.unwrap_or_else(|| "default".to_owned());
    names::validate_dns_subdomain("namespace", &namespace)
        .map_err(|err| format!("error: {err}"))?;
    meta.insert("namespace".into(), namespace.clone().into());
    Ok(ObjectKey::namespaced(kind.plural, &namespace, name))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TWO: &str = "\
apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
# a comment-only document is skipped
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
spec: {}
";

    #[test]
    fn yaml_documents_resolve_to_their_kinds_and_keys() {
        let objects = resolve_all(TWO.as_bytes()).unwrap();
        let refs: Vec<String> = objects.iter().map(Resolved::reference).collect();
        assert_eq!(refs, ["namespace/demo", "deployment.apps/web"]);
        assert_eq!(objects[0].key, ObjectKey::cluster("namespaces", "demo"));
        assert_eq!(
            objects[1].key,
            ObjectKey::namespaced("deployments", "demo", "web")
        );
    }

    #[test]
    fn json_and_lists_are_read_and_the_default_namespace_filled_in() {
        let list = r#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"}},
            {"apiVersion":"v1","kind":"Pod","metadata":{"name":"b","namespace":"x"}}]}"#;
        let objects = resolve_all(list.as_bytes()).unwrap();
        assert_eq!(
            objects[0].key,
            ObjectKey::namespaced("pods", "default", "a")
        );
        assert_eq!(objects[0].applied["metadata"]["namespace"], "default");
        assert_eq!(objects[1].key, ObjectKey::namespaced("pods", "x", "b"));
    }

    #[test]
    fn documents_kubectl_could_not_map_are_refused_with_its_words() {
        let cases = [
            ("metadata: {name: a}", "[apiVersion not set, kind not set]"),
            (
                "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}",
                "no matches for kind \"Widget\" in version \"example.com/v1\"",
            ),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {}",
                "resource name may not be empty",
            ),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {name: A_B}",
                "invalid name",
            ),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: a/b}",
                "invalid namespace",
            ),
            ("- a\n- b", "not an object"),
            ("a: [b", "error parsing wf/v1/apply"),
            ("", "no objects passed to apply"),
        ];
        for (manifest, expected) in cases {
            let err = resolve_all(manifest.as_bytes()).unwrap_err();
            assert!(err.starts_with("error: "), "{err}");
            assert!(err.contains(expected), "{manifest:?}: {err}");
        }
    }

    #[test]
    fn one_bad_document_refuses_the_whole_payload() {
        let manifest = format!("{TWO}---\napiVersion: v1\nkind: Pod\nmetadata: {{}}\n");
        assert!(resolve_all(manifest.as_bytes()).is_err());
    }

    #[test]
    fn limits_on_size_count_and_nesting_are_enforced() {
        let big = vec![b'#'; MAX_MANIFEST_BYTES + 1];
        assert!(documents(&big).unwrap_err().contains("limit"));
        let many =
            "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\n".repeat(MAX_DOCUMENTS + 1);
        assert!(
            documents(many.as_bytes())
                .unwrap_err()
                .contains("more than")
        );
        let deep = format!("a: {}{}", "[".repeat(100), "]".repeat(100));
        assert!(
            documents(deep.as_bytes())
                .unwrap_err()
                .contains("nests deeper")
        );
    }
}
