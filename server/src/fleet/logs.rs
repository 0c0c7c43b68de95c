//! Log requests: asking a node for a container's logs and routing the answers back.
//!
//! Every request gets an id; the node echoes it in each [`LogChunk`]. The router hands
//! chunks to the caller's receiver, ends the stream after the chunk marked `done`, sends
//! `CancelLogs` when the caller drops the receiver early, and answers with an error chunk
//! when the node says nothing within the timeout.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rumqttc::{AsyncClient, QoS};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wasmfleet_protocol::logs::{LogChunk, LogOptions, LogRequest, NodeCommand};
use wasmfleet_protocol::topic::{self, Down};
use wasmfleet_protocol::{Message, encode};

use super::FleetError;

/// What to ask for: a [`LogRequest`] without its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogParams {
    /// The pod's uid.
    pub pod_uid: String,
    /// The container's name.
    pub container: String,
    /// Which lines, and how.
    pub options: LogOptions,
}

/// How many chunks may wait for a slow reader before new ones are dropped.
const BUFFER: usize = 256;

struct Pending {
    node: String,
    tx: mpsc::Sender<LogChunk>,
    first: Option<oneshot::Sender<()>>,
    /// Dropped (or sent) when the request ends, which tells its watchdog to stop.
    _finished: oneshot::Sender<()>,
}

/// Routes log chunks to their requests. Cheap to clone.
#[derive(Clone)]
pub(super) struct LogRouter {
    client: AsyncClient,
    timeout: Duration,
    next_id: Arc<AtomicU64>,
    pending: Arc<Mutex<HashMap<u64, Pending>>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl std::fmt::Debug for LogRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogRouter").finish_non_exhaustive()
    }
}

impl LogRouter {
    pub(super) fn new(
        client: AsyncClient,
        timeout: Duration,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> Self {
        Self {
            client,
            timeout,
            next_id: Arc::new(AtomicU64::new(1)),
            pending: Arc::new(Mutex::new(HashMap::new())),
            shutdown,
            tracker,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<u64, Pending>) -> R) -> R {
        let mut map = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut map)
    }

    /// Sends the request to `node` and returns the stream of answers.
    pub(super) async fn request(
        &self,
        node: &str,
        params: LogParams,
    ) -> Result<mpsc::Receiver<LogChunk>, FleetError> {
        let request_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(BUFFER);
        let (first_tx, first_rx) = oneshot::channel();
        let (finished_tx, finished_rx) = oneshot::channel();
        self.with(|map| {
            map.insert(
                request_id,
                Pending {
                    node: node.to_owned(),
                    tx: tx.clone(),
                    first: Some(first_tx),
                    _finished: finished_tx,
                },
            )
        });
        tracing::debug!(%node, request_id, pod_uid = %params.pod_uid, "sending a log request");
        let command = NodeCommand::Logs(LogRequest {
            request_id,
            pod_uid: params.pod_uid,
            container: params.container,
            options: params.options,
        });
        if let Err(err) = self.command(node, command).await {
            self.with(|map| map.remove(&request_id));
            return Err(err);
        }
        let watchdog = Watchdog {
            router: self.clone(),
            request_id,
            node: node.to_owned(),
            tx,
        };
        let shutdown = self.shutdown.clone();
        self.tracker.spawn(async move {
            // Cancelling publishes, which can wait forever once the event loop has stopped.
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = watchdog.run(first_rx, finished_rx) => {}
            }
        });
        Ok(rx)
    }

    async fn command(&self, node: &str, command: NodeCommand) -> Result<(), FleetError> {
        let payload = encode(&Message::Command(command));
        self.client
            .publish(
                topic::down(node, Down::Cmd),
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await?;
        Ok(())
    }

    /// Hands a chunk from `node` to its request. Chunks for unknown requests (cancelled,
    /// timed out) or claiming another node's request are dropped.
    pub(super) fn route(&self, node: &str, chunk: LogChunk) {
        let request_id = chunk.request_id;
        let done = chunk.done;
        self.with(|map| {
            let Some(pending) = map.get_mut(&request_id) else {
                tracing::debug!(%node, request_id, "log chunk for no waiting request");
                return;
            };
            if pending.node != node {
                tracing::warn!(%node, request_id, owner = %pending.node, "log chunk from the wrong node");
                return;
            }
            if let Some(first) = pending.first.take() {
                tracing::debug!(%node, request_id, "first log chunk received");
                let _ = first.send(());
            }
            if let Err(mpsc::error::TrySendError::Full(_)) = pending.tx.try_send(chunk) {
                tracing::warn!(%node, request_id, "log reader is too slow; dropping a chunk");
            }
            if done {
                map.remove(&request_id);
            }
        });
    }

    fn finish(&self, request_id: u64) -> bool {
        self.with(|map| map.remove(&request_id)).is_some()
    }
}

/// Watches one request: times it out, or cancels it on the node when the reader goes away.
struct Watchdog {
    router: LogRouter,
    request_id: u64,
    node: String,
    tx: mpsc::Sender<LogChunk>,
}

impl Watchdog {
    async fn run(self, first: oneshot::Receiver<()>, mut finished: oneshot::Receiver<()>) {
        let shutdown = self.router.shutdown.clone();
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = first => {}
            _ = &mut finished => return,
            () = self.tx.closed() => return self.cancel().await,
            () = tokio::time::sleep(self.router.timeout) => return self.time_out().await,
        }
        tokio::select! {
            () = shutdown.cancelled() => {}
            _ = finished => {}
            () = self.tx.closed() => self.cancel().await,
        }
    }

    async fn cancel(self) {
        if self.router.finish(self.request_id) {
            tracing::debug!(node = %self.node, request_id = self.request_id, "log reader gone; cancelling");
            let command = NodeCommand::CancelLogs {
                request_id: self.request_id,
            };
            if let Err(err) = self.router.command(&self.node, command).await {
                tracing::debug!(%err, "cannot cancel a log request");
            }
        }
    }

    async fn time_out(self) {
        if self.router.finish(self.request_id) {
            let error = format!(
                "node {} did not answer the log request within {}s",
                self.node,
                self.router.timeout.as_secs_f32()
            );
            let _ = self
                .tx
                .send(LogChunk {
                    request_id: self.request_id,
                    lines: Vec::new(),
                    done: true,
                    error: Some(error),
                    times: Vec::new(),
                })
                .await;
        }
    }
}
