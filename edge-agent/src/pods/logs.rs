//! A container's logs as handed to whoever asked (the link answers `LogRequest`s with it).

use tokio::sync::broadcast::{self, error::RecvError};

use crate::runtime::{LogEvent, LogLine};

/// Logs could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// No pod with this uid runs here.
    #[error("pod {0} is not on this node")]
    UnknownPod(String),
    /// The pod has no container with this name.
    #[error("pod {pod} has no container {container:?}")]
    UnknownContainer {
        /// The pod's uid.
        pod: String,
        /// The container asked for.
        container: String,
    },
    /// `previous` for a container that has no previous run.
    #[error("previous terminated container {container:?} in pod {pod} not found")]
    NoPreviousRun {
        /// The pod's uid.
        pod: String,
        /// The container asked for.
        container: String,
    },
}

/// The requested tail of a container's log and, when following, the lines after it.
#[derive(Debug)]
pub struct LogStream {
    /// The retained lines asked for, oldest first.
    pub lines: Vec<LogLine>,
    follow: Option<broadcast::Receiver<LogEvent>>,
}

impl LogStream {
    pub(crate) fn new(lines: Vec<LogLine>, follow: Option<broadcast::Receiver<LogEvent>>) -> Self {
        Self { lines, follow }
    }

    /// Just `lines`, with nothing to follow (what a [`PodBackend`] without real containers
    /// answers, such as the fleet simulator's hollow pods).
    ///
    /// [`PodBackend`]: crate::sync::PodBackend
    pub fn lines_only(lines: Vec<String>) -> Self {
        let lines = lines
            .into_iter()
            .map(|text| LogLine {
                at_unix_nanos: 0,
                run: 1,
                text: text.into(),
            })
            .collect();
        Self::new(lines, None)
    }

    /// Whether [`LogStream::next_line`] can still yield lines.
    pub fn is_following(&self) -> bool {
        self.follow.is_some()
    }

    /// The next new line. `None` when not following, and once the container will not run
    /// again (its last run ended and the pod will not restart it) or the pod was removed.
    /// A follower that falls more than 1,024 lines behind skips the lines it missed.
    pub async fn next_line(&mut self) -> Option<LogLine> {
        loop {
            let follow = self.follow.as_mut()?;
            match follow.recv().await {
                Ok(LogEvent::Line(line)) => return Some(line),
                Ok(LogEvent::Finished) | Err(RecvError::Closed) => {
                    self.follow = None;
                    return None;
                }
                Err(RecvError::Lagged(skipped)) => {
                    tracing::debug!(skipped, "log follower fell behind");
                }
            }
        }
    }
}
