//! `GET /api/v1/namespaces/{ns}/pods/{name}/log`: container logs, fetched from the node that
//! runs the pod through a [`LogSource`] (the fleet link, wired in by `run`).
//!
//! Query: `container` (optional when the pod has one container, or names its default in the
//! `kubectl.kubernetes.io/default-container` annotation), `tailLines`, `follow`,
//! `limitBytes` (the answer ends after that many bytes), `previous` (the run before the
//! current one), `sinceSeconds` / `sinceTime` (lines from then on, by the agent's clock) and
//! `timestamps` (each line starts with its RFC 3339 time, as the kubelet writes it). The
//! answer is `text/plain`, streamed and flushed per chunk with `follow=true`.
//!
//! Agents keep each container's lines with their times and the run that wrote them
//! (`edge-agent/src/runtime/logbuf.rs`). A container that has not run yet answers as the
//! kubelet does (400, `container "c" in pod "p" is waiting to start: ContainerCreating`), and
//! so does `previous` for one that never ran before (`previous terminated container "c" in
//! pod "p" not found`).

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
use wasmfleet_protocol::logs::{LogChunk, LogOptions, LogSince};

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
    /// Which lines, and how.
    pub options: LogOptions,
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
    let options = LogOptions {
        tail_lines: number(query, "tailLines")?,
        follow: flag(query, "follow"),
        timestamps: flag(query, "timestamps"),
        previous: flag(query, "previous"),
        since: since(query)?,
    };
    let limit_bytes = number(query, "limitBytes")?.filter(|n| *n > 0);
    check_started(pod, name, container, options.previous)?;
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
        options,
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

/// `sinceSeconds` (a positive number of seconds) or `sinceTime` (RFC 3339), not both.
fn since(query: &HashMap<String, String>) -> Result<Option<LogSince>, ApiError> {
    let seconds = number::<u64>(query, "sinceSeconds")?;
    let time = query.get("sinceTime");
    match (seconds, time) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "at most one of `sinceTime` or `sinceSeconds` may be specified",
        )),
        (Some(0), None) => Err(ApiError::bad_request(
            "sinceSeconds: Invalid value: 0: must be greater than 0",
        )),
        (Some(seconds), None) => Ok(Some(LogSince::SecondsAgo(seconds))),
        (None, Some(text)) => {
            let at: jiff::Timestamp = text.parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "sinceTime: Invalid value: {text:?}: must be an RFC 3339 time (2006-01-02T15:04:05Z)"
                ))
            })?;
            let nanos = i64::try_from(at.as_nanosecond()).unwrap_or(i64::MAX);
            Ok(Some(LogSince::UnixNanos(nanos)))
        }
        (None, None) => Ok(None),
    }
}

/// 400 as the kubelet words it when `container` has no log to show: it has not run yet, or
/// (`previous`) it never ended before.
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
    if previous && !ran_before {
        return Err(ApiError::bad_request(format!(
            "previous terminated container \"{container}\" in pod \"{name}\" not found"
        )));
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
        let mut text = text_of(&chunk);
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

/// A chunk's lines as the answer's text: one per line, each after its time when the chunk
/// carries times (RFC 3339 with nanoseconds and no trailing zeros, as the kubelet writes
/// them).
fn text_of(chunk: &LogChunk) -> Vec<u8> {
    let mut text = Vec::new();
    let timed = chunk.times.len() == chunk.lines.len();
    for (i, line) in chunk.lines.iter().enumerate() {
        if timed {
            let at = jiff::Timestamp::from_nanosecond(i128::from(chunk.times[i]))
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
            text.extend_from_slice(format!("{at} ").as_bytes());
        }
        text.extend_from_slice(line.as_bytes());
        text.push(b'\n');
    }
    text
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
        assert_eq!((q.options.tail_lines, q.options.follow), (Some(5), true));
        let q = log_query(
            &pod(),
            "p",
            &query(&[("container", "a"), ("limitBytes", "10")]),
        );
        assert_eq!(q.unwrap().limit_bytes, Some(10));
    }

    #[test]
    fn bad_options_are_refused_by_name() {
        for (option, value) in [
            ("sinceSeconds", "0"),
            ("sinceSeconds", "soon"),
            ("sinceTime", "yesterday"),
            ("tailLines", "many"),
            ("limitBytes", "-1"),
        ] {
            let refused = message(log_query(
                &pod(),
                "p",
                &query(&[("container", "a"), (option, value)]),
            ));
            assert!(refused.starts_with(option), "{option}: {refused}");
        }
        let both = [
            ("container", "a"),
            ("sinceSeconds", "5"),
            ("sinceTime", "2026-12-07T00:00:00Z"),
        ];
        assert!(message(log_query(&pod(), "p", &query(&both))).starts_with("at most one of"));
    }

    #[test]
    fn times_previous_and_since_reach_the_agent() {
        let mut restarted = pod();
        restarted["status"]["containerStatuses"][0]["restartCount"] = json!(2);
        let q = log_query(
            &restarted,
            "p",
            &query(&[
                ("container", "a"),
                ("previous", "true"),
                ("timestamps", "true"),
                ("sinceTime", "2026-12-07T00:00:01.5Z"),
            ]),
        )
        .unwrap();
        assert!(q.options.previous && q.options.timestamps);
        assert_eq!(
            q.options.since,
            Some(LogSince::UnixNanos(1_796_601_601_500_000_000))
        );
        let q = log_query(
            &pod(),
            "p",
            &query(&[("container", "a"), ("sinceSeconds", "90")]),
        );
        assert_eq!(q.unwrap().options.since, Some(LogSince::SecondsAgo(90)));
    }

    #[test]
    fn previous_of_a_container_that_never_ended_is_not_found() {
        assert_eq!(
            message(log_query(
                &pod(),
                "p",
                &query(&[("container", "a"), ("previous", "true")])
            )),
            "previous terminated container \"a\" in pod \"p\" not found"
        );
    }

    #[test]
    fn timed_lines_start_with_their_time_as_the_kubelet_writes_it() {
        let chunk = LogChunk {
            request_id: 1,
            lines: vec!["hello".into(), "world".into()],
            done: false,
            error: None,
            times: vec![1_796_601_601_500_000_000, 1_796_601_602_000_000_123],
        };
        assert_eq!(
            String::from_utf8(text_of(&chunk)).unwrap(),
            "2026-12-07T00:00:01.5Z hello\n2026-12-07T00:00:02.000000123Z world\n"
        );
        let untimed = LogChunk {
            times: Vec::new(),
            ..chunk
        };
        assert_eq!(text_of(&untimed), b"hello\nworld\n");
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
