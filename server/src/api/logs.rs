//! `GET /api/v1/namespaces/{ns}/pods/{name}/log`: container logs, fetched from the node that
//! runs the pod through a [`LogSource`] (the fleet link, wired in by `run`).
//!
//! Query: `container` (optional when the pod has one container, or names its default in the
//! `kubectl.kubernetes.io/default-container` annotation), `tailLines`, `follow`,
//! `limitBytes` (the answer ends after that many bytes). The answer is `text/plain`,
//! streamed and flushed per chunk with `follow=true`.
//!
//! Agents keep one log per container, lines without times, across the container's restarts
//! (`edge-agent/src/runtime/logbuf.rs`), so `timestamps`, `sinceSeconds`, `sinceTime` and
//! `previous` cannot be honoured: each is refused with a 400 naming it (never silently
//! ignored). A container that has not run yet answers as the kubelet does (400, `container
//! "c" in pod "p" is waiting to start: ContainerCreating`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::Response;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use wasmfleet_protocol::logs::LogChunk;

use super::status::ApiError;
use super::{ApiContext, blocking};
use crate::store::{ObjectKey, StoreError};

/// Which logs to fetch, and from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogQuery {
    /// The node running the pod.
    pub node: String,
    /// The pod's uid.
    pub pod_uid: String,
    /// The container.
    pub container: String,
    /// Only the last N lines.
    pub tail_lines: Option<u32>,
    /// Keep streaming new lines.
    pub follow: bool,
    /// End the answer after this many bytes (`limitBytes`).
    pub limit_bytes: Option<u64>,
}

/// What [`LogSource::logs`] returns: chunks until one has `done` (or `error`) set; dropping
/// the receiver cancels a follow.
pub type LogFuture = Pin<Box<dyn Future<Output = Result<mpsc::Receiver<LogChunk>, String>> + Send>>;

/// Where logs come from: the seam between the API and the fleet link.
pub trait LogSource: Send + Sync {
    /// Starts fetching logs.
    fn logs(&self, query: LogQuery) -> LogFuture;
}

/// The handler.
pub async fn pod_logs(
    State(ctx): State<ApiContext>,
    Path((ns, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let key = ObjectKey::namespaced("pods", &ns, &name);
    let store = ctx.store.clone();
    let pod = blocking(move || Ok(store.get(&key)?.ok_or(StoreError::NotFound(key))?)).await?;
    let request = log_query(&pod, &name, &query)?;
    let limit = request.limit_bytes;
    let source = ctx.logs.clone().ok_or_else(|| {
        ApiError::unavailable("logs are not available: the fleet link is not running")
    })?;
    let mut chunks = source.logs(request).await.map_err(ApiError::unavailable)?;
    let first = chunks.recv().await;
    if let Some(LogChunk {
        error: Some(error),
        lines,
        ..
    }) = &first
        && lines.is_empty()
    {
        return Err(ApiError::unavailable(error.clone()));
    }
    let (tx, rx) = mpsc::channel(16);
    ctx.tracker
        .spawn(forward(first, chunks, tx, limit, ctx.shutdown.clone()));
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .map_err(|err| ApiError::internal(&err))
}

/// Builds the request from the pod and the query; 400 when the pod cannot have logs yet or
/// the container is ambiguous or unknown.
fn log_query(
    pod: &Value,
    name: &str,
    query: &HashMap<String, String>,
) -> Result<LogQuery, ApiError> {
    let containers: Vec<&str> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    let default = pod
        .pointer("/metadata/annotations/kubectl.kubernetes.io~1default-container")
        .and_then(Value::as_str);
    let container = match (
        query.get("container").map(String::as_str),
        containers.as_slice(),
    ) {
        (Some(c), _) if !c.is_empty() => c,
        (_, [only]) => only,
        _ => default.ok_or_else(|| {
            ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            ))
        })?,
    };
    if !containers.contains(&container) {
        return Err(ApiError::bad_request(format!(
            "container {container} is not valid for pod {name}"
        )));
    }
    refuse_unkept(query)?;
    let tail_lines = number(query, "tailLines")?;
    let limit_bytes = number(query, "limitBytes")?.filter(|n| *n > 0);
    check_started(pod, name, container, flag(query, "previous"))?;
    let node = crate::k8s::pods::bound_node(pod).ok_or_else(|| {
        ApiError::bad_request(format!("pod \"{name}\" is not scheduled to a node yet"))
    })?;
    Ok(LogQuery {
        node: node.to_owned(),
        pod_uid: pod
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        container: container.to_owned(),
        tail_lines,
        follow: flag(query, "follow"),
        limit_bytes,
    })
}

/// A boolean query parameter (`true` or `1`).
fn flag(query: &HashMap<String, String>, name: &str) -> bool {
    matches!(query.get(name).map(String::as_str), Some("true" | "1"))
}

/// A non-negative integer query parameter; 400 naming it when it is not one.
fn number<T: std::str::FromStr>(
    query: &HashMap<String, String>,
    name: &str,
) -> Result<Option<T>, ApiError> {
    query
        .get(name)
        .map(|text| {
            text.parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "{name}: invalid value {text:?}: must be a non-negative integer"
                ))
            })
        })
        .transpose()
}

/// What the agents do not keep (times of lines): refused by name rather than ignored.
fn refuse_unkept(query: &HashMap<String, String>) -> Result<(), ApiError> {
    const NO_TIMES: &str = "wasmfleet agents do not record when a container wrote a line";
    if flag(query, "timestamps") {
        return Err(ApiError::bad_request(format!(
            "timestamps: not supported: {NO_TIMES}; leave out --timestamps"
        )));
    }
    for option in ["sinceSeconds", "sinceTime"] {
        if query.contains_key(option) {
            return Err(ApiError::bad_request(format!(
                "{option}: not supported: {NO_TIMES}; use --tail to limit the lines instead"
            )));
        }
    }
    Ok(())
}

/// 400 as the kubelet words it when `container` has no log to show: it has not run yet, or
/// (`previous`) it never ended before. With `previous` and earlier runs, 400 too: the agent
/// keeps one log for every run of a container.
fn check_started(pod: &Value, name: &str, container: &str, previous: bool) -> Result<(), ApiError> {
    let status = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|s| s["name"] == container);
    let restarts = status.and_then(|s| s["restartCount"].as_u64()).unwrap_or(0);
    let ran_before =
        restarts > 0 || status.is_some_and(|s| s.pointer("/lastState/terminated").is_some());
    if previous {
        return Err(ApiError::bad_request(if ran_before {
            format!(
                "previous: not supported: wasmfleet keeps one log for every run of container \"{container}\" in pod \"{name}\" (the lines of earlier runs come first); leave out --previous to see them"
            )
        } else {
            format!("previous terminated container \"{container}\" in pod \"{name}\" not found")
        }));
    }
    let state = status.map(|s| &s["state"]);
    let has_run = ran_before
        || state.is_some_and(|s| s.get("running").is_some() || s.get("terminated").is_some());
    if has_run {
        return Ok(());
    }
    let reason = state
        .and_then(|s| s.pointer("/waiting/reason"))
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
        .unwrap_or("ContainerCreating");
    let why = match crate::k8s::pods::bound_node(pod) {
        Some(_) => "",
        None => " (the pod is not scheduled to a node yet)",
    };
    Err(ApiError::bad_request(format!(
        "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}{why}"
    )))
}

/// Copies chunks to the response body until the last one, the client leaves, or shutdown.
/// With a `limit`, stops once that many bytes were sent (the last chunk cut to fit).
async fn forward(
    first: Option<LogChunk>,
    mut chunks: mpsc::Receiver<LogChunk>,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
    limit: Option<u64>,
    shutdown: CancellationToken,
) {
    let mut next = first;
    let mut left = limit.unwrap_or(u64::MAX);
    while let Some(chunk) = next {
        let mut text = Vec::new();
        for line in &chunk.lines {
            text.extend_from_slice(line.as_bytes());
            text.push(b'\n');
        }
        if let Some(error) = &chunk.error {
            tracing::debug!(%error, "log stream ended with an error");
        }
        let keep = usize::try_from(left).unwrap_or(usize::MAX).min(text.len());
        text.truncate(keep);
        left -= keep as u64;
        if !text.is_empty() && tx.send(Ok(Bytes::from(text))).await.is_err() {
            return;
        }
        if chunk.done || left == 0 {
            return;
        }
        next = tokio::select! {
            () = shutdown.cancelled() => return,
            () = tx.closed() => return,
            chunk = chunks.recv() => chunk,
        };
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({"metadata": {"uid": "u1"}, "spec": {"nodeName": "pi", "containers": [{"name": "a"}, {"name": "b"}]},
               "status": {"containerStatuses": [
                   {"name": "a", "restartCount": 0, "state": {"running": {}}},
                   {"name": "b", "restartCount": 0, "state": {"running": {}}}]}})
    }

    fn message(result: Result<LogQuery, ApiError>) -> String {
        result.unwrap_err().message
    }

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_query_names_node_uid_and_container() {
        let q = log_query(
            &pod(),
            "p",
            &query(&[("container", "b"), ("tailLines", "5"), ("follow", "true")]),
        )
        .unwrap();
        assert_eq!(
            (q.node.as_str(), q.pod_uid.as_str(), q.container.as_str()),
            ("pi", "u1", "b")
        );
        assert_eq!((q.tail_lines, q.follow), (Some(5), true));
        let q = log_query(
            &pod(),
            "p",
            &query(&[("container", "a"), ("limitBytes", "10")]),
        );
        assert_eq!(q.unwrap().limit_bytes, Some(10));
    }

    #[test]
    fn options_the_agent_cannot_honour_are_refused_by_name() {
        for (option, value) in [
            ("timestamps", "true"),
            ("sinceSeconds", "60"),
            ("sinceTime", "2026-12-07T00:00:00Z"),
            ("previous", "true"),
            ("tailLines", "many"),
            ("limitBytes", "-1"),
        ] {
            let refused = message(log_query(
                &pod(),
                "p",
                &query(&[("container", "a"), (option, value)]),
            ));
            assert!(
                refused.starts_with(option) || refused.contains("previous terminated"),
                "{option}: {refused}"
            );
        }
        assert_eq!(
            message(log_query(
                &pod(),
                "p",
                &query(&[("container", "a"), ("previous", "true")])
            )),
            "previous terminated container \"a\" in pod \"p\" not found"
        );
        let mut restarted = pod();
        restarted["status"]["containerStatuses"][0]["restartCount"] = json!(2);
        let refused = message(log_query(
            &restarted,
            "p",
            &query(&[("container", "a"), ("previous", "true")]),
        ));
        assert!(refused.contains("one log for every run"), "{refused}");
    }

    #[test]
    fn a_container_that_has_not_run_is_waiting_to_start() {
        let mut p = pod();
        p["status"] = json!({"phase": "Pending"});
        assert_eq!(
            message(log_query(&p, "p", &query(&[("container", "a")]))),
            "container \"a\" in pod \"p\" is waiting to start: ContainerCreating"
        );
        p["status"]["containerStatuses"] = json!([{"name": "a", "restartCount": 0, "state": {"waiting": {"reason": "ErrImagePull"}}}]);
        assert!(
            message(log_query(&p, "p", &query(&[("container", "a")])))
                .ends_with("waiting to start: ErrImagePull")
        );
        p["status"]["containerStatuses"][0]["restartCount"] = json!(1);
        assert!(
            log_query(&p, "p", &query(&[("container", "a")])).is_ok(),
            "a crash-looping container has logs"
        );
    }

    #[test]
    fn an_ambiguous_or_unknown_container_is_refused() {
        assert!(log_query(&pod(), "p", &query(&[])).is_err());
        assert!(log_query(&pod(), "p", &query(&[("container", "c")])).is_err());
    }

    #[test]
    fn an_unscheduled_pod_has_no_logs() {
        let pod = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(
            message(log_query(&pod, "p", &query(&[]))),
            "container \"a\" in pod \"p\" is waiting to start: ContainerCreating (the pod is not scheduled to a node yet)"
        );
    }
}
