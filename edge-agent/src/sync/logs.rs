//! Answers log requests: one task per request streams `LogChunk`s up.
//!
//! The retained tail goes out first (split so no chunk nears the message size limit);
//! with `follow`, new lines go out once they pause for 10 ms, at most ~100 ms after the
//! first of a batch and at most one chunk per ~100 ms ([`super::debounce`]), until the
//! container ends, the server
//! cancels (`CancelLogs`) or the agent stops. The last chunk has `done` set; an unknown pod
//! or container gets a single `done` chunk carrying the error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wasmfleet_protocol::logs::{LogChunk, LogOptions, LogRequest, LogSince, NodeCommand};
use wasmfleet_protocol::topic::Up;
use wasmfleet_protocol::{MAX_MESSAGE_SIZE, Message};

use super::PodBackend;
use super::debounce::{Debounce, sleep_until};
use crate::link::Uplink;
use crate::pods::LogStream;
use crate::runtime::{LogLine, LogSelection};

/// New lines of a follow go out once they pause for this long...
const BATCH_QUIET: Duration = Duration::from_millis(10);

/// ...and at most this long after the first line a batch holds.
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
        tracing::debug!(request_id = id, pod_uid = %request.pod_uid, "log request received");
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
            ref pod_uid,
            ref container,
            ref options,
            ..
        } = self.request;
        let selection = selection(options, SystemTime::now());
        let mut stream = match self.pods.logs(pod_uid, container, &selection) {
            Ok(stream) => stream,
            Err(err) => {
                let mut refusal = self.chunk(Vec::new());
                (refusal.done, refusal.error) = (true, Some(err.to_string()));
                self.send(refusal).await;
                return;
            }
        };
        for lines in split_by_size(std::mem::take(&mut stream.lines), CHUNK_BYTES) {
            self.send(self.chunk(lines)).await;
        }
        if stream.is_following() {
            self.follow(stream).await;
        }
        let mut last = self.chunk(Vec::new());
        last.done = true;
        self.send(last).await;
    }

    /// Sends new lines in batches ([`Debounce`]: a lone line within [`BATCH_QUIET`], a
    /// stream of them every [`BATCH_INTERVAL`]) until the log finishes or the stream is
    /// cancelled.
    async fn follow(&self, mut stream: LogStream) {
        let mut batch = Vec::new();
        let mut bytes = 0;
        let mut pending = Debounce::new(BATCH_QUIET, BATCH_INTERVAL);
        loop {
            tokio::select! {
                () = self.token.cancelled() => break,
                () = sleep_until(pending.due()) => {
                    pending.sent(Instant::now());
                    self.flush(&mut batch, &mut bytes).await;
                }
                line = stream.next_line() => match line {
                    Some(line) => {
                        bytes += line.text.len();
                        batch.push(line);
                        pending.change(Instant::now());
                        if bytes >= CHUNK_BYTES {
                            pending.sent(Instant::now());
                            self.flush(&mut batch, &mut bytes).await;
                        }
                    }
                    None => break,
                },
            }
        }
        self.flush(&mut batch, &mut bytes).await;
    }

    async fn flush(&self, batch: &mut Vec<LogLine>, bytes: &mut usize) {
        if batch.is_empty() {
            return;
        }
        *bytes = 0;
        let lines = std::mem::take(batch);
        self.send(self.chunk(lines)).await;
    }

    /// A chunk of `lines` (with their times when the request asked for them).
    fn chunk(&self, lines: Vec<LogLine>) -> LogChunk {
        let times = match self.request.options.timestamps {
            true => lines.iter().map(|l| l.at_unix_nanos).collect(),
            false => Vec::new(),
        };
        LogChunk {
            request_id: self.request.request_id,
            lines: lines.into_iter().map(|l| l.text.to_string()).collect(),
            done: false,
            error: None,
            times,
        }
    }

    async fn send(&self, chunk: LogChunk) {
        let (request_id, lines) = (chunk.request_id, chunk.lines.len());
        if lines > 0 {
            tracing::debug!(request_id, lines, "log lines sent");
        }
        if let Err(err) = self.uplink.send(Up::Logs, &Message::LogChunk(chunk)).await {
            tracing::debug!(%err, "log chunk not sent");
        }
    }
}

/// The lines a request's options select, `now` being the agent's clock (the clock its
/// lines' times come from).
fn selection(options: &LogOptions, now: SystemTime) -> LogSelection {
    let nanos = |at: SystemTime| {
        let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        i64::try_from(since_epoch.as_nanos()).unwrap_or(i64::MAX)
    };
    let since = options.since.map(|since| match since {
        LogSince::UnixNanos(at) => at,
        LogSince::SecondsAgo(seconds) => nanos(
            now.checked_sub(Duration::from_secs(seconds))
                .unwrap_or(UNIX_EPOCH),
        ),
    });
    LogSelection {
        tail: options.tail_lines.map(|n| n as usize),
        follow: options.follow,
        previous: options.previous,
        since_unix_nanos: since,
    }
}

/// Splits lines into groups of at most `limit` bytes of text (a longer single line goes
/// alone).
pub fn split_by_size(lines: Vec<LogLine>, limit: usize) -> Vec<Vec<LogLine>> {
    let mut groups = Vec::new();
    let mut current = Vec::new();
    let mut size = 0;
    for line in lines {
        if !current.is_empty() && size + line.text.len() > limit {
            groups.push(std::mem::take(&mut current));
            size = 0;
        }
        size += line.text.len();
        current.push(line);
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn line(text: &str) -> LogLine {
        LogLine {
            at_unix_nanos: 0,
            run: 1,
            text: Arc::from(text),
        }
    }

    #[test]
    fn lines_are_split_into_groups_below_the_limit() {
        let lines = ["aaaa", "bbbb", "cc", "dddddddddd", "e"].map(line).to_vec();
        let groups: Vec<Vec<String>> = split_by_size(lines, 8)
            .into_iter()
            .map(|g| g.iter().map(|l| l.text.to_string()).collect())
            .collect();
        assert_eq!(
            groups,
            [
                vec!["aaaa", "bbbb"],
                vec!["cc"],
                vec!["dddddddddd"],
                vec!["e"]
            ]
        );
    }

    #[test]
    fn no_lines_make_no_groups() {
        assert!(split_by_size(Vec::new(), 8).is_empty());
    }

    #[test]
    fn since_is_read_against_the_agents_clock() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let options = |since| LogOptions {
            tail_lines: Some(5),
            previous: true,
            since: Some(since),
            ..LogOptions::default()
        };
        let ago = selection(&options(LogSince::SecondsAgo(60)), now);
        assert_eq!(ago.since_unix_nanos, Some(940_000_000_000));
        assert_eq!((ago.tail, ago.previous, ago.follow), (Some(5), true, false));
        let at = selection(&options(LogSince::UnixNanos(7)), now);
        assert_eq!(at.since_unix_nanos, Some(7));
        let before_the_epoch = selection(&options(LogSince::SecondsAgo(5_000)), now);
        assert_eq!(before_the_epoch.since_unix_nanos, Some(0));
    }
}
