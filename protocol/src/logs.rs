//! Container logs, pulled from the node that holds them.
//!
//! Logs stay on the agent (bounded per container). The server asks for them with a
//! [`LogRequest`] when a user runs `logs`, and the agent answers with [`LogChunk`]s carrying
//! the request id; with `follow` it keeps sending until the container ends or the server
//! sends [`NodeCommand::CancelLogs`].

use serde::{Deserialize, Serialize};

/// A command from the server to one node (append-only: older agents refuse variants they
/// do not know, with a logged warning).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeCommand {
    /// Send a container's logs.
    Logs(LogRequest),
    /// Stop a follow started by the request with this id.
    CancelLogs {
        /// The request to stop.
        request_id: u64,
    },
    /// The node's certificate for its tunnel key, sent after every birth that reports one.
    Certificate(crate::tunnel::NodeCertificate),
    /// Dial the server's relay for a session another node opened to this one.
    RelayDial(crate::peers::RelayDial),
}

/// Which logs to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRequest {
    /// Chosen by the server, echoed in every chunk.
    pub request_id: u64,
    /// The pod's uid.
    pub pod_uid: String,
    /// The container's name.
    pub container: String,
    /// Which lines, and how. (postcard writes a nested struct as its fields in a row, so
    /// this is the wire shape of the first release, which had `tail_lines` and `follow`
    /// here, plus the fields appended since.)
    pub options: LogOptions,
}

/// What `kubectl logs` asks of a container's log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogOptions {
    /// Only the last N lines (of those the other options select); all retained lines when
    /// absent.
    pub tail_lines: Option<u32>,
    /// Keep streaming new lines.
    pub follow: bool,
    /// Send each line's time too ([`LogChunk::times`]).
    #[serde(default, deserialize_with = "crate::tail::or_default")]
    pub timestamps: bool,
    /// The lines of the container's run before the current one (`--previous`) instead of
    /// the current one's.
    #[serde(default, deserialize_with = "crate::tail::or_default")]
    pub previous: bool,
    /// Only lines written since then.
    #[serde(default, deserialize_with = "crate::tail::or_default")]
    pub since: Option<LogSince>,
}

/// The start of the lines wanted (`--since` / `--since-time`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogSince {
    /// This many seconds before now, by the agent's clock (the clock its lines' times are
    /// read from).
    SecondsAgo(u64),
    /// This time: nanoseconds since the Unix epoch.
    UnixNanos(i64),
}

/// Some log lines, answering a [`LogRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogChunk {
    /// The request this answers.
    pub request_id: u64,
    /// Lines without their trailing newline.
    pub lines: Vec<String>,
    /// No more chunks will follow for this request.
    pub done: bool,
    /// Why the logs could not be sent (unknown pod or container).
    pub error: Option<String>,
    /// When each of `lines` was written, nanoseconds since the Unix epoch (0 when not
    /// known): only when the request asked for [`LogOptions::timestamps`], else empty.
    #[serde(default, deserialize_with = "crate::tail::or_default")]
    pub times: Vec<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Message, decode, encode};

    #[test]
    fn log_commands_and_chunks_survive_a_round_trip() {
        for message in [
            Message::Command(NodeCommand::Logs(LogRequest {
                request_id: 9,
                pod_uid: "u".into(),
                container: "main".into(),
                options: LogOptions {
                    tail_lines: Some(10),
                    follow: true,
                    timestamps: true,
                    previous: true,
                    since: Some(LogSince::SecondsAgo(60)),
                },
            })),
            Message::Command(NodeCommand::CancelLogs { request_id: 9 }),
            Message::LogChunk(LogChunk {
                request_id: 9,
                lines: vec!["hello from wasmfleet".into()],
                done: false,
                error: None,
                times: vec![1_700_000_000_000_000_000],
            }),
        ] {
            assert_eq!(decode(&encode(&message)), Ok(message));
        }
    }

    /// The first release's request: no options beyond `tail_lines` and `follow`.
    #[derive(Serialize)]
    enum OldCommand {
        Logs(OldRequest),
    }

    #[derive(Serialize)]
    struct OldRequest {
        request_id: u64,
        pod_uid: String,
        container: String,
        tail_lines: Option<u32>,
        follow: bool,
    }

    #[test]
    fn a_request_of_the_first_release_reads_with_default_options() {
        let old = OldCommand::Logs(OldRequest {
            request_id: 3,
            pod_uid: "u".into(),
            container: "c".into(),
            tail_lines: Some(2),
            follow: true,
        });
        let bytes = postcard::to_allocvec(&old).expect("encodes");
        let read: NodeCommand = postcard::from_bytes(&bytes).expect("decodes");
        let NodeCommand::Logs(request) = read else {
            panic!("not a log request: {read:?}");
        };
        assert_eq!(
            request.options,
            LogOptions {
                tail_lines: Some(2),
                follow: true,
                ..LogOptions::default()
            }
        );
    }
}
