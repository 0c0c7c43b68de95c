//! Answers log requests: one task per request streams `LogChunk`s up.
//!
//! The retained tail goes out first (split so no chunk nears the message size limit);
//! with `follow`, new lines are batched every ~100 ms until the container ends, the server
//! cancels (`CancelLogs`) or the agent stops. The last chunk has `done` set; an unknown pod
//! or container gets a single `done` chunk carrying the error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wasmfleet_protocol::logs::{LogChunk, LogRequest, NodeCommand};
use wasmfleet_protocol::topic::Up;
use wasmfleet_protocol::{MAX_MESSAGE_SIZE, Message};

use super::PodBackend;
use crate::link::Uplink;
use crate::pods::LogStream;

/// How long new lines of a follow are collected before they go out.
const BATCH_INTERVAL: Duration = Duration::from_millis(100);

/// A chunk's lines stay below this many bytes, well inside one message.
const CHUNK_BYTES: usize = MAX_MESSAGE_SIZE / 2;

type Running = Arc<Mutex<HashMap<u64, CancellationToken>>>;

/// The log requests being answered.
pub(super) struct LogStreams<P> {
    pods: P,
    uplink: Uplink,
    tracker: TaskTracker,
    stop: CancellationToken,
    running: Running,
}

impl<P: PodBackend> LogStreams<P> {
    pub(super) fn new(
        pods: P,
        uplink: Uplink,
        tracker: TaskTracker,
        stop: CancellationToken,
    ) -> Self {
        LogStreams {
            pods,
            uplink,
            tracker,
            stop,
            running: Running::default(),
        }
    }

    /// Handles commands until `stop` fires; the streams end with it.
    pub(super) async fn run(self, mut commands: mpsc::Receiver<NodeCommand>) {
        loop {
            let command = tokio::select! {
                () = self.stop.cancelled() => return,
                command = commands.recv() => command,
            };
            match command {
                Some(NodeCommand::Logs(request)) => self.start(request),
                Some(NodeCommand::CancelLogs { request_id }) => self.cancel(request_id),
                // Handled by the link itself: certificates go to the tunnel credentials,
                // relay sessions to the peers.
                Some(NodeCommand::Certificate(_) | NodeCommand::RelayDial(_)) => {}
                None => return,
            }
        }
    }

    fn start(&self, request: LogRequest) {
        let token = self.stop.child_token();
        let id = request.request_id;
        if let Some(old) = lock(&self.running).insert(id, token.clone()) {
            old.cancel();
        }
        let stream = Stream {
            pods: self.pods.clone(),
            uplink: self.uplink.clone(),
            request,
            token,
        };
        let running = self.running.clone();
        self.tracker.spawn(async move {
            stream.run().await;
            lock(&running).remove(&id);
        });
    }

    fn cancel(&self, request_id: u64) {
        if let Some(token) = lock(&self.running).remove(&request_id) {
            tracing::debug!(request_id, "log stream cancelled");
            token.cancel();
        }
    }
}

fn lock(running: &Running) -> std::sync::MutexGuard<'_, HashMap<u64, CancellationToken>> {
    running.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One request being answered.
struct Stream<P> {
    pods: P,
    uplink: Uplink,
    request: LogRequest,
    token: CancellationToken,
}

impl<P: PodBackend> Stream<P> {
    async fn run(self) {
        let LogRequest {
            request_id,
            ref pod_uid,
            ref container,
            tail_lines,
            follow,
        } = self.request;
        let mut stream = match self.pods.logs(pod_uid, container, tail_lines, follow) {
            Ok(stream) => stream,
            Err(err) => {
                self.send(chunk(request_id, Vec::new(), true, Some(err.to_string())))
                    .await;
                return;
            }
        };
        for lines in split_by_size(std::mem::take(&mut stream.lines), CHUNK_BYTES) {
            self.send(chunk(request_id, lines, false, None)).await;
        }
        if stream.is_following() {
            self.follow(stream).await;
        }
        self.send(chunk(request_id, Vec::new(), true, None)).await;
    }

    /// Sends new lines in batches until the log finishes or the stream is cancelled.
    async fn follow(&self, mut stream: LogStream) {
        let mut batch = Vec::new();
        let mut bytes = 0;
        let mut flush = tokio::time::interval(BATCH_INTERVAL);
        loop {
            tokio::select! {
                () = self.token.cancelled() => break,
                _ = flush.tick() => {
                    self.flush(&mut batch, &mut bytes).await;
                    continue;
                }
                line = stream.next_line() => match line {
                    Some(line) => {
                        bytes += line.len();
                        batch.push(line);
                        if bytes >= CHUNK_BYTES {
                            self.flush(&mut batch, &mut bytes).await;
                        }
                    }
                    None => break,
                },
            }
        }
        self.flush(&mut batch, &mut bytes).await;
    }

    async fn flush(&self, batch: &mut Vec<String>, bytes: &mut usize) {
        if batch.is_empty() {
            return;
        }
        *bytes = 0;
        let lines = std::mem::take(batch);
        self.send(chunk(self.request.request_id, lines, false, None))
            .await;
    }

    async fn send(&self, chunk: LogChunk) {
        if let Err(err) = self.uplink.send(Up::Logs, &Message::LogChunk(chunk)).await {
            tracing::debug!(%err, "log chunk not sent");
        }
    }
}

fn chunk(request_id: u64, lines: Vec<String>, done: bool, error: Option<String>) -> LogChunk {
    LogChunk {
        request_id,
        lines,
        done,
        error,
    }
}

/// Splits lines into groups of at most `limit` bytes (a longer single line goes alone).
pub fn split_by_size(lines: Vec<String>, limit: usize) -> Vec<Vec<String>> {
    let mut groups = Vec::new();
    let mut current = Vec::new();
    let mut size = 0;
    for line in lines {
        if !current.is_empty() && size + line.len() > limit {
            groups.push(std::mem::take(&mut current));
            size = 0;
        }
        size += line.len();
        current.push(line);
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_into_groups_below_the_limit() {
        let lines: Vec<String> = ["aaaa", "bbbb", "cc", "dddddddddd", "e"]
            .into_iter()
            .map(String::from)
            .collect();
        let groups = split_by_size(lines, 8);
        assert_eq!(
            groups,
            vec![
                vec!["aaaa".to_string(), "bbbb".into()],
                vec!["cc".into()],
                vec!["dddddddddd".into()],
                vec!["e".into()],
            ]
        );
    }

    #[test]
    fn no_lines_make_no_groups() {
        assert!(split_by_size(Vec::new(), 8).is_empty());
    }
}
