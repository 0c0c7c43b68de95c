//! Request bodies: size limits, content types, and the patch formats.
//!
//! Objects are JSON (or YAML, which is a superset). Patches:
//! - `application/merge-patch+json`: RFC 7386;
//! - `application/strategic-merge-patch+json`: what `kubectl apply` sends. Implemented as a
//!   merge patch that merges the lists Kubernetes merges by key (`containers`, `env`, ... by
//!   `name`), honours `$patch: delete`/`replace` and drops the other `$` directives (which only
//!   reorder or prune lists wasmfleet objects do not need pruned);
//! - `application/json-patch+json`: RFC 6902;
//! - `application/apply-patch+yaml`: server-side apply, the configuration (YAML or JSON) a
//!   manager applies; merged by [`super::apply`], not by [`Patch::apply`].
//!
//! Protobuf bodies are understood for the kinds `protobuf` decodes; other protobuf bodies
//! get a 415.
//!
//! Decoding runs off the async workers ([`decode_object`], [`decode_patch`]): JSON and YAML
//! bodies are first checked for nesting depth by a linear pre-scan ([`super::nesting`]), then
//! parsed on a blocking thread, at most [`MAX_CONCURRENT_DECODES`] at once (a flood of big
//! bodies waits its turn instead of taking every blocking thread), and a request whose
//! decoding takes longer than [`DECODE_TIMEOUT`] gets a 503.

use std::time::Duration;

use axum::body::{Body, BodyDataStream, Bytes};
use axum::http::{HeaderMap, header};
use bytes::BytesMut;
use serde_json::{Map, Value};
use tokio::sync::Semaphore;

use super::nesting;
use super::status::ApiError;

/// How many request bodies are decoded at once; the rest wait for a permit.
pub const MAX_CONCURRENT_DECODES: usize = 4;

/// How long a request waits for a permit and then for its decoding, each.
pub const DECODE_TIMEOUT: Duration = Duration::from_secs(10);

/// The decoding permits, shared by every request.
static DECODE_PERMITS: Semaphore = Semaphore::const_new(MAX_CONCURRENT_DECODES);

/// Runs `decode` on a blocking thread once a permit is free. The permit stays with the
/// thread until it finishes, even when the request has given up waiting for it.
async fn off_workers<T, F>(decode: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
{
    let busy = || ApiError::unavailable("the server is busy decoding other request bodies");
    let permit = tokio::time::timeout(DECODE_TIMEOUT, DECODE_PERMITS.acquire())
        .await
        .map_err(|_| busy())?
        .map_err(|err| ApiError::internal(&err))?;
    let task = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        decode()
    });
    match tokio::time::timeout(DECODE_TIMEOUT, task).await {
        Ok(joined) => joined.map_err(|err| ApiError::internal(&err))?,
        Err(_) => Err(ApiError::unavailable(format!(
            "decoding the request body took longer than {} s",
            DECODE_TIMEOUT.as_secs()
        ))),
    }
}

/// Parses an object body (POST, PUT) off the async workers (see the module docs).
pub async fn decode_object(headers: &HeaderMap, bytes: Bytes) -> Result<Value, ApiError> {
    let media = content_type(headers);
    off_workers(move || parse_object(&media, &bytes)).await
}

/// Parses a PATCH body off the async workers (see the module docs), so that applying it
/// inside the store's write transaction costs only the merge.
pub async fn decode_patch(headers: &HeaderMap, bytes: Bytes) -> Result<Patch, ApiError> {
    let media = content_type(headers);
    off_workers(move || parse_patch(&media, &bytes)).await
}

fn check_depth(
    check: fn(&[u8]) -> Result<(), nesting::TooDeep>,
    bytes: &[u8],
) -> Result<(), ApiError> {
    check(bytes).map_err(|err| ApiError::bad_request(err.to_string()))
}

pub use wasmfleet_protocol::limits::MAX_OBJECT_BODY;

/// Reads at most `limit` bytes; 413 beyond. A body of unknown length (chunked, or HTTP/2
/// DATA frames without a Content-Length) is counted as it arrives.
pub async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    use futures::StreamExt as _;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut stream = body.into_data_stream();
    if declared.is_some_and(|len| len > limit) {
        drain(stream).await;
        return Err(ApiError::too_large(limit));
    }
    let mut read = BytesMut::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|err| {
            tracing::debug!(%err, "request body could not be read");
            ApiError::bad_request("the request body could not be read")
        })?;
        if read.len() + chunk.len() > limit {
            drain(stream).await;
            return Err(ApiError::too_large(limit));
        }
        read.extend_from_slice(&chunk);
    }
    Ok(read.freeze())
}

/// At most this much of a refused body is read and discarded (see [`drain`]).
const DRAIN_LIMIT: usize = 8 << 20;

/// At most this long is spent discarding a refused body.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// Reads and discards (the rest of) a refused body, bounded by [`DRAIN_LIMIT`] and
/// [`DRAIN_TIME`], before the 413 is sent: over HTTP/2 an answer that comes while the body
/// is still unread resets the stream, and clients (curl, hyper) then report a stream error
/// instead of the 413.
async fn drain(mut stream: BodyDataStream) {
    use futures::StreamExt as _;
    let discard = async {
        let mut seen = 0;
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len();
            if seen > DRAIN_LIMIT {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, discard).await;
}

/// The media type of the request (without parameters), lowercased.
pub fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Parses an object body (POST, PUT) of media type `media`. Synchronous and CPU-bound: async
/// callers use [`decode_object`].
pub fn parse_object(media: &str, bytes: &[u8]) -> Result<Value, ApiError> {
    let value: Value = match media {
        "application/json" | "" => {
            check_depth(nesting::check_json, bytes)?;
            serde_json::from_slice(bytes)
                .map_err(|err| ApiError::bad_request(format!("invalid JSON body: {err}")))?
        }
        "application/yaml" | "application/x-yaml" => {
            check_depth(nesting::check_yaml, bytes)?;
            serde_yaml_ng::from_slice(bytes)
                .map_err(|err| ApiError::bad_request(format!("invalid YAML body: {err}")))?
        }
        "application/vnd.kubernetes.protobuf" => super::protobuf::decode(bytes)?,
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    if value.is_object() {
        Ok(value)
    } else {
        Err(ApiError::bad_request("the body must be a JSON object"))
    }
}

/// A parsed PATCH body.
#[derive(Debug, Clone)]
pub enum Patch {
    /// `application/merge-patch+json`.
    Merge(Value),
    /// `application/strategic-merge-patch+json`.
    Strategic(Value),
    /// `application/json-patch+json`.
    Json(json_patch::Patch),
    /// `application/apply-patch+yaml`: the applied configuration (an object).
    Apply(Value),
}

/// Parses a PATCH body of media type `media`. Synchronous and CPU-bound: async callers use
/// [`decode_patch`].
pub fn parse_patch(media: &str, bytes: &[u8]) -> Result<Patch, ApiError> {
    let parse = || -> Result<Value, ApiError> {
        check_depth(nesting::check_json, bytes)?;
        serde_json::from_slice(bytes)
            .map_err(|err| ApiError::bad_request(format!("invalid patch: {err}")))
    };
    match media {
        "application/merge-patch+json" => Ok(Patch::Merge(parse()?)),
        "application/strategic-merge-patch+json" => Ok(Patch::Strategic(parse()?)),
        "application/json-patch+json" => {
            check_depth(nesting::check_json, bytes)?;
            let ops: json_patch::Patch = serde_json::from_slice(bytes)
                .map_err(|err| ApiError::bad_request(format!("invalid JSON patch: {err}")))?;
            check_removals(&ops)?;
            Ok(Patch::Json(ops))
        }
        "application/apply-patch+yaml" => {
            check_depth(nesting::check_yaml, bytes)?;
            let applied: Value = serde_yaml_ng::from_slice(bytes).map_err(|err| {
                ApiError::bad_request(format!("invalid apply configuration (YAML): {err}"))
            })?;
            match applied.is_object() {
                true => Ok(Patch::Apply(applied)),
                false => Err(ApiError::bad_request(
                    "the apply configuration must be an object",
                )),
            }
        }
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

impl Patch {
    /// Applies the patch to `target`, which must stay an object.
    pub fn apply(&self, target: &mut Value) -> Result<(), ApiError> {
        match self {
            Patch::Merge(patch) => json_patch::merge(target, patch),
            Patch::Strategic(patch) => strategic_merge(target, patch),
            // On a copy, without json-patch's own undo: undoing a failed `move` can panic
            // (json-patch 5.0.0, found by the `api_body` fuzz target).
            Patch::Json(ops) => {
                let mut patched = target.clone();
                json_patch::patch_unsafe(&mut patched, ops).map_err(|err| {
                    ApiError::bad_request(format!("the JSON patch failed: {err}"))
                })?;
                *target = patched;
            }
            Patch::Apply(_) => {
                return Err(ApiError::unsupported_media_type(
                    "application/apply-patch+yaml (server-side apply is served on objects, not on this subresource)",
                ));
            }
        }
        if target.is_object() {
            Ok(())
        } else {
            Err(ApiError::bad_request("the patch must leave an object"))
        }
    }
}

/// Refuses `remove`, and `move` from, the pointer `.../-`: it names no element (RFC 6902),
/// and json-patch 5.0.0 panics on it when the array is empty (found by the `api_body` fuzz
/// target).
fn check_removals(ops: &json_patch::Patch) -> Result<(), ApiError> {
    for (index, op) in ops.0.iter().enumerate() {
        let (name, pointer) = match op {
            json_patch::PatchOperation::Remove(op) => ("path", &op.path),
            json_patch::PatchOperation::Move(op) => ("from", &op.from),
            _ => continue,
        };
        if pointer.as_str().ends_with("/-") {
            return Err(ApiError::bad_request(format!(
                "invalid JSON patch: operation {index}: `{name}` may not end in \"/-\", which names no element"
            )));
        }
    }
    Ok(())
}

/// Lists whose items are merged by this key in a strategic merge patch (and are keyed lists
/// for server-side apply).
pub(super) fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "containers" | "initContainers" | "env" | "volumes" | "imagePullSecrets" => Some("name"),
        "conditions" | "addresses" => Some("type"),
        "taints" => Some("key"),
        _ => None,
    }
}

/// A strategic merge patch (see the module docs for the subset).
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let Some(patch) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if patch.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replacement = patch.clone();
        replacement.remove("$patch");
        *target = Value::Object(replacement);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Some(map) = target.as_object_mut() else {
        return;
    };
    for (key, value) in patch {
        if key.starts_with('$') {
            continue;
        }
        match (value, merge_key(key)) {
            (Value::Null, _) => {
                map.remove(key);
            }
            (Value::Array(items), Some(merge_key)) => {
                let current = map.entry(key.clone()).or_insert(Value::Array(Vec::new()));
                merge_keyed_list(current, items, merge_key);
            }
            (Value::Object(_), _) => {
                strategic_merge(map.entry(key.clone()).or_insert(Value::Null), value);
            }
            _ => {
                map.insert(key.clone(), value.clone());
            }
        }
    }
}

fn merge_keyed_list(current: &mut Value, patch: &[Value], key: &str) {
    if !current.is_array() {
        *current = Value::Array(Vec::new());
    }
    let Some(list) = current.as_array_mut() else {
        return;
    };
    for item in patch {
        let id = item.get(key).cloned();
        let position = id.as_ref().and_then(|id| {
            list.iter()
                .position(|existing| existing.get(key) == Some(id))
        });
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (position, delete) {
            (Some(i), true) => {
                list.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => strategic_merge(&mut list[i], item),
            (None, false) => {
                let mut fresh = Value::Object(Map::new());
                strategic_merge(&mut fresh, item);
                list.push(fresh);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merge_updates_a_container_by_name() {
        let mut pod = json!({"spec": {"containers": [
            {"name": "a", "image": "x:1", "args": ["1"]},
            {"name": "b", "image": "y:1"},
        ]}});
        let patch = json!({"metadata": {"labels": {"l": "v"}}, "spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [{"name": "a", "image": "x:2"}, {"name": "b", "$patch": "delete"}],
        }});
        strategic_merge(&mut pod, &patch);
        assert_eq!(
            pod,
            json!({"metadata": {"labels": {"l": "v"}}, "spec": {"containers": [
                {"name": "a", "image": "x:2", "args": ["1"]},
            ]}})
        );
    }

    #[test]
    fn strategic_merge_replaces_plain_lists_and_deletes_nulls() {
        let mut obj = json!({"spec": {"args": ["a", "b"], "nodeSelector": {"k": "v"}}});
        strategic_merge(
            &mut obj,
            &json!({"spec": {"args": ["c"], "nodeSelector": null}}),
        );
        assert_eq!(obj, json!({"spec": {"args": ["c"]}}));
    }

    #[test]
    fn unknown_patch_types_are_refused() {
        let err = parse_patch("application/x-unknown-patch", b"{}").unwrap_err();
        assert_eq!(err.code.as_u16(), 415);
    }

    #[test]
    fn apply_patches_are_yaml_objects() {
        let parsed = parse_patch("application/apply-patch+yaml", b"kind: Pod\nspec: {}\n");
        assert!(matches!(parsed, Ok(Patch::Apply(obj)) if obj["kind"] == "Pod"));
        for bad in [&b"- a list"[..], b"key: [unclosed", b"just text"] {
            let err = parse_patch("application/apply-patch+yaml", bad).unwrap_err();
            assert_eq!(err.code.as_u16(), 400, "{bad:?}");
        }
    }

    #[test]
    fn json_patches_apply() {
        let mut obj = json!({"a": 1});
        parse_patch(
            "application/json-patch+json",
            br#"[{"op":"replace","path":"/a","value":2}]"#,
        )
        .unwrap()
        .apply(&mut obj)
        .unwrap();
        assert_eq!(obj, json!({"a": 2}));
    }

    /// Found by the `api_body` fuzz target: json-patch's undo of a `move` whose target
    /// cannot be added panicked ("unable to undo applied patches").
    #[test]
    fn a_json_patch_that_fails_halfway_is_refused_and_changes_nothing() {
        let mut obj = json!({"metadata": {"name": "p", "labels": {}}});
        let before = obj.clone();
        let err = parse_patch(
            "application/json-patch+json",
            br#"[{"op":"copy","from":"/metadata/name","path":"/metadata/labels/n"},
                 {"op":"move","from":"/metadata/labels/n","path":"/nowhere/x"}]"#,
        )
        .unwrap()
        .apply(&mut obj)
        .unwrap_err();
        assert_eq!(err.code.as_u16(), 400);
        assert_eq!(obj, before);
    }

    /// Found by the `api_body` fuzz target: removing `/-` from an empty array panicked.
    #[test]
    fn a_json_patch_removing_the_end_of_a_list_is_refused_naming_the_operation() {
        for ops in [
            r#"[{"op":"remove","path":"/spec/args/-"}]"#,
            r#"[{"op":"test","path":"/spec","value":{}},{"op":"move","from":"/spec/args/-","path":"/a"}]"#,
        ] {
            let err = parse_patch("application/json-patch+json", ops.as_bytes()).unwrap_err();
            assert_eq!(err.code.as_u16(), 400, "{ops}");
            assert!(err.message.contains("may not end in"), "{}", err.message);
        }
    }

    #[test]
    fn deeply_nested_bodies_are_refused_naming_the_limit() {
        let deep_json = format!("{{\"a\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        let deep_yaml = format!("a: {}", "[".repeat(100_000));
        for (media, body) in [
            ("application/json", deep_json.as_str()),
            ("application/yaml", deep_yaml.as_str()),
        ] {
            let err = parse_object(media, body.as_bytes()).unwrap_err();
            assert_eq!(err.code.as_u16(), 400, "{media}");
            assert!(
                err.message.contains("limit of 64 levels"),
                "{}",
                err.message
            );
        }
        let err = parse_patch("application/merge-patch+json", deep_json.as_bytes()).unwrap_err();
        assert!(
            err.message.contains("limit of 64 levels"),
            "{}",
            err.message
        );
    }
}
