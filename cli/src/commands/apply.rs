//! `wasmfleet apply -f FILE`: create each object, or update it when it already exists.
//!
//! Each manifest's `apiVersion` + `kind` is mapped onto its resource path through the
//! server's discovery (`apps/v1` `Deployment` → `/apis/apps/v1/namespaces/{ns}/deployments`).
//! Per object: POST to the collection; on 409 `AlreadyExists`, GET the live object. When
//! every field of the manifest already has that value live, it is `unchanged` and nothing is
//! sent. Otherwise the manifest is merged onto the live object (maps recursively, lists of
//! named items by `name`, other lists replaced; nothing the manifest omits is deleted, like
//! kubectl's strategic merge without last-applied pruning) and PUT with the live
//! `resourceVersion`, retrying a few times on a 409 `Conflict` race.

use std::io::Write;
use std::path::PathBuf;

use futures::{StreamExt, stream};
use serde_json::{Map, Value};

use super::{Reported, Session};
use crate::client::ClientError;
use crate::discovery::{Discovery, Resource, Scope};
use crate::manifest::{self, Object};

/// PUT attempts before giving up on an object that keeps changing under us.
const UPDATE_ATTEMPTS: usize = 3;

/// What happened to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It did not exist and was created.
    Created,
    /// It existed and was updated.
    Configured,
    /// It existed with every field of the manifest already set.
    Unchanged,
}

impl Outcome {
    /// The word kubectl prints.
    pub fn verb(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Configured => "configured",
            Self::Unchanged => "unchanged",
        }
    }
}

/// Why one object could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The server serves no such `apiVersion` + `kind`.
    #[error("error: unable to recognize {source_name:?}: {reason}")]
    UnknownKind {
        /// The manifest source.
        source_name: String,
        /// Which kind in which version.
        reason: crate::discovery::NoKindMatch,
    },
    /// `-n` disagrees with the manifest's namespace.
    #[error(
        "error: the namespace from the provided object {object:?} does not match the namespace {flag:?}. \
         You must pass '--namespace={object}' to perform this operation."
    )]
    NamespaceMismatch {
        /// The manifest's namespace.
        object: String,
        /// The `-n` namespace.
        flag: String,
    },
    /// The server refused a create or update.
    #[error("Error from server ({reason}): error when {action} {source_name:?}: {message}")]
    Server {
        /// Status reason.
        reason: String,
        /// `creating` or `replacing`.
        action: &'static str,
        /// The manifest source.
        source_name: String,
        /// Status message.
        message: String,
    },
    /// The object is larger than the server accepts; it was not sent.
    #[error("error: {source_name}: {what}: {reason}")]
    TooLarge {
        /// The manifest source.
        source_name: String,
        /// `pod/NAME`.
        what: String,
        /// The size and the limit.
        reason: ClientError,
    },
    /// A transport-level failure (unreachable, unauthorized, bad response).
    #[error("error: {0}")]
    Client(ClientError),
}

impl ApplyError {
    /// Whether later objects would fail the same way (so apply stops).
    fn is_fatal(&self) -> bool {
        matches!(self, Self::Client(_))
    }
}

/// Requests in flight at once within a run of objects of one kind.
const CONCURRENCY: usize = 16;

/// Applies every object in `files`, printing one line per object to `out` and each failure
/// to stderr. Fails with [`Reported`] when any object failed.
///
/// Objects go in manifest order, kind by kind as kubectl does (a Namespace before what is
/// in it); a run of consecutive objects of one kind (a hundred Pods) is applied
/// [`CONCURRENCY`] at a time, which the server's group commit turns into shared fsyncs.
/// Lines are still printed in manifest order.
pub async fn run(session: &Session, files: &[PathBuf], out: &mut dyn Write) -> anyhow::Result<()> {
    let objects = manifest::read_sources(files)?;
    let discovery = session.discovery().await?;
    let mut failures = 0;
    for run in objects.chunk_by(|a, b| (a.api_version(), a.kind()) == (b.api_version(), b.kind())) {
        let mut results = stream::iter(run)
            .map(|object| async move { (object, apply_one(session, discovery, object).await) })
            .buffered(CONCURRENCY);
        while let Some((object, result)) = results.next().await {
            match result {
                Ok((resource, outcome)) => {
                    writeln!(
                        out,
                        "{}/{} {}",
                        resource.qualified_kind(),
                        object.name(),
                        outcome.verb()
                    )?;
                }
                Err(err) => {
                    failures += 1;
                    eprintln!("{err}");
                    if err.is_fatal() {
                        return Ok(Reported::check(failures)?);
                    }
                }
            }
        }
    }
    Ok(Reported::check(failures)?)
}

async fn apply_one<'d>(
    session: &Session,
    discovery: &'d Discovery,
    object: &Object,
) -> Result<(&'d Resource, Outcome), ApplyError> {
    let kind = discovery
        .for_manifest(object.api_version(), object.kind())
        .map_err(|reason| ApplyError::UnknownKind {
            source_name: object.source.clone(),
            reason,
        })?;
    let namespace = target_namespace(session, kind, object)?;
    let desired = with_namespace(&object.value, kind, &namespace);
    let scope = Scope::Namespace(namespace.clone());
    let qualified = kind.qualified_kind();
    let qualified = qualified.as_str();
    let failed =
        |action| move |err| server_error(err, action, &object.source, qualified, object.name());
    match session
        .client
        .post(&kind.collection_path(&scope), &desired)
        .await
    {
        Ok(_) => return Ok((kind, Outcome::Created)),
        Err(err) if err.reason() == Some("AlreadyExists") => {}
        Err(err) => return Err(failed("creating")(err)),
    }
    let path = kind.item_path(&namespace, object.name());
    for _ in 0..UPDATE_ATTEMPTS {
        let live = session
            .client
            .get(&path)
            .await
            .map_err(failed("replacing"))?;
        let Some(body) = update_body(&live, &desired) else {
            return Ok((kind, Outcome::Unchanged));
        };
        match session.client.put(&path, &body).await {
            Ok(_) => return Ok((kind, Outcome::Configured)),
            Err(err) if err.reason() == Some("Conflict") => continue,
            Err(err) => return Err(failed("replacing")(err)),
        }
    }
    Err(ApplyError::Server {
        reason: "Conflict".to_owned(),
        action: "replacing",
        source_name: object.source.clone(),
        message: format!("{} {:?} kept changing; try again", kind.name, object.name()),
    })
}

fn server_error(
    err: ClientError,
    action: &'static str,
    source: &str,
    kind: &str,
    name: &str,
) -> ApplyError {
    match err {
        ClientError::TooLarge { .. } => ApplyError::TooLarge {
            source_name: source.to_owned(),
            what: format!("{kind}/{name}"),
            reason: err,
        },
        ClientError::Status(status) => ApplyError::Server {
            reason: status.reason,
            action,
            source_name: source.to_owned(),
            message: status.message,
        },
        other => ApplyError::Client(other),
    }
}

/// The namespace an object goes to: its own, else the session's (`-n` must agree).
fn target_namespace(
    session: &Session,
    kind: &Resource,
    object: &Object,
) -> Result<String, ApplyError> {
    match object.namespace() {
        Some(ns) if kind.namespaced && session.namespace_from_flag && ns != session.namespace => {
            Err(ApplyError::NamespaceMismatch {
                object: ns.to_owned(),
                flag: session.namespace.clone(),
            })
        }
        Some(ns) => Ok(ns.to_owned()),
        None => Ok(session.namespace.clone()),
    }
}

/// The object with `metadata.namespace` filled in for namespaced kinds.
fn with_namespace(value: &Value, kind: &Resource, namespace: &str) -> Value {
    let mut value = value.clone();
    if kind.namespaced
        && let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut)
    {
        metadata.insert("namespace".to_owned(), Value::from(namespace));
    }
    value
}

/// The PUT body that brings `live` to `desired`, or `None` when nothing would change.
pub fn update_body(live: &Value, desired: &Value) -> Option<Value> {
    if contains(live, desired) {
        return None;
    }
    let mut body = merge(live, desired);
    if let Some(metadata) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.insert(
            "resourceVersion".to_owned(),
            live["metadata"]["resourceVersion"].clone(),
        );
    }
    Some(body)
}

/// Whether every field set in `desired` has the same value in `live` (fields the server
/// added, like status and defaults, do not count as changes).
pub fn contains(live: &Value, desired: &Value) -> bool {
    match (live, desired) {
        (Value::Object(live), Value::Object(desired)) => desired.iter().all(|(key, want)| {
            live.get(key)
                .map_or(want.is_null(), |have| contains(have, want))
        }),
        (Value::Array(live), Value::Array(desired)) => {
            live.len() == desired.len()
                && live
                    .iter()
                    .zip(desired)
                    .all(|(have, want)| contains(have, want))
        }
        (Value::Number(have), Value::Number(want)) => have.as_f64() == want.as_f64(),
        (have, want) => have == want,
    }
}

/// Overlays `desired` onto `live`: maps merge key by key, lists of objects that all have a
/// `name` merge item by item (in the desired order), anything else is taken from `desired`.
pub fn merge(live: &Value, desired: &Value) -> Value {
    match (live, desired) {
        (Value::Object(live), Value::Object(desired)) => {
            let mut merged: Map<String, Value> = live.clone();
            for (key, want) in desired {
                let value = match live.get(key) {
                    Some(have) => merge(have, want),
                    None => want.clone(),
                };
                merged.insert(key.clone(), value);
            }
            Value::Object(merged)
        }
        (Value::Array(live), Value::Array(desired)) if named(live) && named(desired) => {
            let merged = desired
                .iter()
                .map(
                    |want| match live.iter().find(|have| have["name"] == want["name"]) {
                        Some(have) => merge(have, want),
                        None => want.clone(),
                    },
                )
                .collect();
            Value::Array(merged)
        }
        (_, want) => want.clone(),
    }
}

fn named(items: &[Value]) -> bool {
    items.iter().all(|item| item["name"].is_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn desired() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "hello", "namespace": "default", "labels": {"app": "hello"}},
            "spec": {"restartPolicy": "Never", "containers": [
                {"name": "hello", "image": "hello:v1", "args": ["a", "b"]}
            ]}
        })
    }

    fn live() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "hello", "namespace": "default", "labels": {"app": "hello"},
                         "uid": "u-1", "resourceVersion": "42", "creationTimestamp": "2026-11-27T12:00:00Z"},
            "spec": {"restartPolicy": "Never", "nodeName": "pi-1", "containers": [
                {"name": "hello", "image": "hello:v1", "args": ["a", "b"], "imagePullPolicy": "IfNotPresent"}
            ]},
            "status": {"phase": "Running"}
        })
    }

    #[test]
    fn a_manifest_already_live_with_server_defaults_is_unchanged() {
        assert_eq!(update_body(&live(), &desired()), None);
    }

    #[test]
    fn a_changed_field_gives_a_put_body_with_the_live_resource_version() {
        let mut want = desired();
        want["spec"]["containers"][0]["image"] = json!("hello:v2");
        let body = update_body(&live(), &want).expect("changed");
        assert_eq!(body["metadata"]["resourceVersion"], "42");
        assert_eq!(body["spec"]["containers"][0]["image"], "hello:v2");
        // What the server set is kept: node binding, container defaults, uid, status.
        assert_eq!(body["spec"]["nodeName"], "pi-1");
        assert_eq!(
            body["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(body["metadata"]["uid"], "u-1");
        assert_eq!(body["status"]["phase"], "Running");
    }

    #[test]
    fn plain_lists_are_replaced_not_merged() {
        let mut want = desired();
        want["spec"]["containers"][0]["args"] = json!(["c"]);
        let body = update_body(&live(), &want).expect("changed");
        assert_eq!(body["spec"]["containers"][0]["args"], json!(["c"]));
    }

    #[test]
    fn a_new_label_is_a_change_and_old_labels_stay() {
        let mut want = desired();
        want["metadata"]["labels"] = json!({"tier": "edge"});
        let body = update_body(&live(), &want).expect("changed");
        assert_eq!(
            body["metadata"]["labels"],
            json!({"app": "hello", "tier": "edge"})
        );
    }

    #[test]
    fn named_lists_follow_the_manifest_order_and_drop_unlisted_items() {
        let live = json!([{"name": "a", "x": 1}, {"name": "b", "x": 2}]);
        let want = json!([{"name": "b", "y": 3}, {"name": "c"}]);
        assert_eq!(
            merge(&live, &want),
            json!([{"name": "b", "x": 2, "y": 3}, {"name": "c"}])
        );
    }

    #[test]
    fn numbers_compare_by_value_and_null_means_absent() {
        assert!(contains(&json!({"a": 1.0}), &json!({"a": 1})));
        assert!(contains(&json!({}), &json!({"a": null})));
        assert!(!contains(&json!({"a": [1, 2]}), &json!({"a": [1]})));
    }

    #[test]
    fn namespaced_objects_get_the_target_namespace() {
        let mut resource = Resource {
            group: String::new(),
            version: "v1".into(),
            name: "pods".into(),
            singular: "pod".into(),
            short_names: Vec::new(),
            kind: "Pod".into(),
            namespaced: true,
        };
        let pod = json!({"metadata": {"name": "p"}});
        assert_eq!(
            with_namespace(&pod, &resource, "edge")["metadata"]["namespace"],
            "edge"
        );
        resource.namespaced = false;
        assert!(with_namespace(&pod, &resource, "edge")["metadata"]["namespace"].is_null());
    }

    #[test]
    fn server_errors_name_the_action_and_the_file() {
        let err = ApplyError::Server {
            reason: "Invalid".to_owned(),
            action: "creating",
            source_name: "pod.yaml".to_owned(),
            message: "Pod \"bad\" is invalid: spec.containers: Required value".to_owned(),
        };
        assert_eq!(
            err.to_string(),
            "Error from server (Invalid): error when creating \"pod.yaml\": Pod \"bad\" is invalid: spec.containers: Required value"
        );
    }
}
