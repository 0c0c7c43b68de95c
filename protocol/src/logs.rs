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
    /// Only the last N lines; all retained lines when absent.
    pub tail_lines: Option<u32>,
    /// Keep streaming new lines.
    pub follow: bool,
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
                tail_lines: Some(10),
                follow: true,
            })),
            Message::Command(NodeCommand::CancelLogs { request_id: 9 }),
            Message::LogChunk(LogChunk {
                request_id: 9,
                lines: vec!["hello from wasmfleet".into()],
                done: false,
                error: None,
            }),
        ] {
            assert_eq!(decode(&encode(&message)), Ok(message));
        }
    }
}
