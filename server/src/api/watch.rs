//! `?watch=true`: a chunked stream of newline-delimited JSON events, flushed per event.
//!
//! Without a `resourceVersion` (or with `"0"`) the stream starts with the current objects as
//! `ADDED`, then follows changes; with one, it replays the retained changes after it. A
//! revision that was compacted away gets an `ERROR` event carrying a 410 `Expired` Status,
//! then the end of the stream, as upstream does. Selectors are applied to each event's
//! object (an object that stops matching is simply no longer reported).
//!
//! The stream ends on `timeoutSeconds` (default: 30 minutes, long enough for `get -w`), when
//! the client goes away, or when the server shuts down.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::kinds::{Kind, stamp_type};
use super::status::ApiError;
use super::{ApiContext, blocking};
use crate::k8s::selectors::Selector;
use crate::metrics::WatchGuard;
use crate::store::{EventType, Scope, StoreError, Watcher};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// One chunk of a watch stream.
pub type Chunk = Result<Bytes, Infallible>;

/// Starts a watch and returns the streaming response.
pub async fn serve(
    ctx: &ApiContext,
    kind: &'static Kind,
    scope: Scope,
    selector: Selector,
    query: &HashMap<String, String>,
    as_table: bool,
) -> Result<Response, ApiError> {
    let timeout = timeout(query);
    let from = match query.get("resourceVersion").map(String::as_str) {
        None | Some("" | "0") => None,
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
        ),
    };
    let store = ctx.store.clone();
    let (initial, start) = blocking(move || {
        let (initial, after) = match from {
            Some(after) => (Vec::new(), after),
            None => {
                let listing = store.list(&scope)?;
                (listing.items, listing.revision)
            }
        };
        let watcher = store.watch(scope, after);
        Ok((initial, watcher))
    })
    .await?;

    let (tx, rx) = mpsc::channel::<Chunk>(64);
    let stream = Stream {
        kind,
        selector,
        as_table,
        tx,
        shutdown: ctx.shutdown.clone(),
        _counted: ctx.metrics.watch(),
    };
    ctx.tracker.spawn(stream.run(initial, start, timeout));
    response(rx)
}

/// How long a watch runs: `timeoutSeconds`, else 30 minutes.
pub fn timeout(query: &HashMap<String, String>) -> Duration {
    query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs)
}

/// The streaming response whose chunks (one event line each) come from `rx`.
pub fn response(rx: mpsc::Receiver<Chunk>) -> Result<Response, ApiError> {
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .map_err(|err| ApiError::internal(&err))
}

/// One event as a chunk of the stream: its JSON and a newline.
pub fn line(event: &Value) -> Chunk {
    let mut line = event.to_string().into_bytes();
    line.push(b'\n');
    Ok(Bytes::from(line))
}

/// One watch connection's sending side.
struct Stream {
    kind: &'static Kind,
    selector: Selector,
    /// Send each object as a one-row Table (`kubectl get -w`).
    as_table: bool,
    tx: mpsc::Sender<Chunk>,
    shutdown: CancellationToken,
    /// Counts this watch as open while the stream lives.
    _counted: WatchGuard,
}

impl Stream {
    async fn run(self, initial: Vec<Value>, start: Result<Watcher, StoreError>, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        for obj in initial {
            if !self.send_object("ADDED", obj).await {
                return;
            }
        }
        let mut watcher = match start {
            Ok(watcher) => watcher,
            Err(err) => return self.send_error(err).await,
        };
        loop {
            let batch = tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = self.tx.closed() => return,
                () = tokio::time::sleep_until(deadline) => return,
                batch = watcher.next() => batch,
            };
            let events = match batch {
                Ok(events) => events,
                Err(err) => return self.send_error(err).await,
            };
            for event in events {
                let kind = match event.kind {
                    EventType::Added => "ADDED",
                    EventType::Modified => "MODIFIED",
                    EventType::Deleted => "DELETED",
                };
                if !self.send_object(kind, event.object).await {
                    return;
                }
            }
        }
    }

    /// Sends one event if the object matches; `false` once the client is gone.
    async fn send_object(&self, kind: &str, mut obj: Value) -> bool {
        if !self.selector.matches(&obj) {
            return true;
        }
        stamp_type(&mut obj, self.kind);
        if self.as_table {
            let revision = crate::store::resource_version(&obj).map(str::to_owned);
            obj = super::table::render(
                self.kind,
                &[obj],
                revision.as_deref(),
                jiff::Timestamp::now(),
            );
        }
        self.send(json!({"type": kind, "object": obj})).await
    }

    async fn send_error(&self, err: StoreError) {
        if !matches!(err, StoreError::Gone { .. }) {
            tracing::warn!(%err, "watch failed");
        }
        let status = ApiError::from(err).to_status();
        self.send(json!({"type": "ERROR", "object": status})).await;
    }

    async fn send(&self, event: Value) -> bool {
        self.tx.send(line(&event)).await.is_ok()
    }
}
