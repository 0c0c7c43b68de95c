//! `GET /api/v1/namespaces/{ns}/pods/{name}/log`: container logs, fetched from the node that
//! runs the pod through a [`LogSource`] (the fleet link, wired in by `run`).
//!
//! Query: `container` (optional when the pod has one container, or names its default in the
//! `kubectl.kubernetes.io/default-container` annotation), `tailLines`, `follow`. The answer
//! is `text/plain`, streamed and flushed per chunk with `follow=true`.

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
        .spawn(forward(first, chunks, tx, ctx.shutdown.clone()));
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
    let node = crate::k8s::pods::bound_node(pod).ok_or_else(|| {
        ApiError::bad_request(format!("pod \"{name}\" is not scheduled to a node yet"))
    })?;
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
    Ok(LogQuery {
        node: node.to_owned(),
        pod_uid: pod
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        container: container.to_owned(),
        tail_lines: query.get("tailLines").and_then(|t| t.parse().ok()),
        follow: matches!(query.get("follow").map(String::as_str), Some("true" | "1")),
    })
}

/// Copies chunks to the response body until the last one, the client leaves, or shutdown.
async fn forward(
    first: Option<LogChunk>,
    mut chunks: mpsc::Receiver<LogChunk>,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
    shutdown: CancellationToken,
) {
    let mut next = first;
    while let Some(chunk) = next {
        let mut text = String::new();
        for line in &chunk.lines {
            text.push_str(line);
            text.push('\n');
        }
        if let Some(error) = &chunk.error {
            tracing::debug!(%error, "log stream ended with an error");
        }
        if !text.is_empty() && tx.send(Ok(Bytes::from(text))).await.is_err() {
            return;
        }
        if chunk.done {
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
        json!({"metadata": {"uid": "u1"}, "spec": {"nodeName": "pi", "containers": [{"name": "a"}, {"name": "b"}]}})
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
    }

    #[test]
    fn an_ambiguous_or_unknown_container_is_refused() {
        assert!(log_query(&pod(), "p", &query(&[])).is_err());
        assert!(log_query(&pod(), "p", &query(&[("container", "c")])).is_err());
    }

    #[test]
    fn an_unscheduled_pod_has_no_logs() {
        let pod = json!({"spec": {"containers": [{"name": "a"}]}});
        assert!(log_query(&pod, "p", &query(&[])).is_err());
    }
}
