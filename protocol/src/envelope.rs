//! The versioned envelope around every MQTT payload.
//!
//! postcard is not self-describing, so the first byte of every payload is the envelope
//! version (the varint index of the [`Envelope`] variant). A reader that meets a version it
//! does not know answers [`DecodeError::UnsupportedVersion`] instead of misreading bytes.
//! Variants are append-only and each version's message type is frozen once released.

use serde::{Deserialize, Serialize};

use crate::MAX_MESSAGE_SIZE;
use crate::artifact::{ArtifactOffer, ArtifactRequest};
use crate::blob::{BlobReply, BlobRequest};
use crate::ingress_tls::IngressCertificates;
use crate::logs::{LogChunk, NodeCommand};
use crate::node::{Heartbeat, NodeState, ServerState};
use crate::peers::PeerTable;
use crate::pod::probe::PodEvents;
use crate::pod::{DesiredIndex, DesiredPod, StatusAck, StatusReport, v1, v2};
use crate::routes::RouteTable;
use crate::service::ServiceTable;
use crate::usage::UsageReport;

/// Every payload on the wire, by protocol version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Envelope {
    /// Version 1 of the protocol.
    V1(Message),
}

/// The messages of protocol version 1. Append new variants at the end only.
// A birth carries the whole NodeInfo inline; messages are decoded one at a time and never
// stored in bulk, so the size difference between variants costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// The server's retained presence (and its last will).
    ServerState(ServerState),
    /// An agent's retained presence: its birth, or its last will.
    NodeState(NodeState),
    /// An agent's periodic lease renewal.
    Heartbeat(Heartbeat),
    /// The full set of pods a node should run: what an agent persists. Older servers sent
    /// it as one retained snapshot; see [`Message::DesiredIndex`].
    Desired(v1::DesiredPods),
    /// A node's report of all its pods' status.
    Status(StatusReport),
    /// The server's acknowledgement of a persisted status report.
    StatusAck(StatusAck),
    /// An agent asks for chunks of a module.
    BlobRequest(BlobRequest),
    /// One chunk of a module, or the news that it does not exist.
    BlobReply(BlobReply),
    /// A command from the server to one node (log requests and their cancellation).
    Command(NodeCommand),
    /// Log lines answering a [`crate::logs::LogRequest`].
    LogChunk(LogChunk),
    /// An agent asks for a module precompiled for its engine (on its blob request topic).
    ArtifactRequest(ArtifactRequest),
    /// The server's answer: a signed artifact to pull, or why there is none (on the node's
    /// blob topic).
    ArtifactOffer(ArtifactOffer),
    /// The retained index of a node's desired pods (replaces [`Message::Desired`] on the
    /// wire: no size cliff).
    DesiredIndex(DesiredIndex),
    /// One retained pod of a node's desired set, as the first release shaped it.
    DesiredPod(v1::DesiredPod),
    /// One retained pod of a node's desired set, with its network, as the pod network's
    /// release shaped it (replaced [`Message::DesiredPod`]).
    DesiredPodV2(v2::DesiredPod),
    /// One retained pod of a node's desired set, with its network and its containers'
    /// probes (replaces [`Message::DesiredPodV2`] on the wire and in agents' state).
    DesiredPodV3(DesiredPod),
    /// Probe failures and the restarts they cause, which the server records as Events
    /// (on `n/{node}/up/events`; best effort, not acked).
    PodEvents(PodEvents),
    /// The retained table of every Service and its endpoints (on [`crate::topic::SERVICES`]).
    Services(ServiceTable),
    /// The retained table of HTTP routes the agents serve (on [`crate::topic::ROUTES`]).
    Routes(RouteTable),
    /// The retained table of peers: where each node's pods live and how to reach them (on
    /// [`crate::topic::PEERS`]).
    Peers(PeerTable),
    /// What a node's pods use, CPU and memory (on `n/{node}/up/usage`; best effort, not
    /// acked, not retained).
    Usage(UsageReport),
    /// The certificates and keys a node that serves ingress traffic terminates TLS with
    /// (retained on its own `down/tls`; never on a topic every node reads).
    IngressCertificates(IngressCertificates),
}

/// Why a payload could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The payload is larger than [`MAX_MESSAGE_SIZE`].
    #[error("payload of {0} bytes is larger than the {MAX_MESSAGE_SIZE} byte limit")]
    TooLarge(usize),
    /// The payload is empty.
    #[error("empty payload")]
    Empty,
    /// The payload was written by a protocol version this build does not know.
    #[error("unsupported protocol envelope version {0}")]
    UnsupportedVersion(u64),
    /// The payload is not a valid message of a known version.
    #[error("malformed payload: {0}")]
    Malformed(String),
}

/// The number of envelope versions this build understands.
const KNOWN_VERSIONS: u64 = 1;

/// Encodes a message in the current envelope version.
pub fn encode(message: &Message) -> Vec<u8> {
    // Serialising plain data into a Vec cannot fail: there are no maps with non-string
    // keys, no sequences of unknown length and no custom Serialize impls in this crate.
    postcard::to_stdvec(&Envelope::V1(message.clone())).unwrap_or_default()
}

/// Decodes a payload, refusing oversize input and unknown versions with a clear error.
pub fn decode(payload: &[u8]) -> Result<Message, DecodeError> {
    if payload.len() > MAX_MESSAGE_SIZE {
        return Err(DecodeError::TooLarge(payload.len()));
    }
    let (version, _) = leading_varint(payload)?;
    if version >= KNOWN_VERSIONS {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    match postcard::from_bytes::<Envelope>(payload) {
        Ok(Envelope::V1(message)) => Ok(message),
        Err(err) => Err(DecodeError::Malformed(err.to_string())),
    }
}

/// Reads the postcard varint that opens every envelope: the version index.
fn leading_varint(payload: &[u8]) -> Result<(u64, usize), DecodeError> {
    let mut value: u64 = 0;
    for (i, byte) in payload.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    if payload.is_empty() {
        Err(DecodeError::Empty)
    } else {
        Err(DecodeError::Malformed(
            "envelope version is not a valid varint".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::Heartbeat;

    fn heartbeat() -> Message {
        Message::Heartbeat(Heartbeat {
            epoch: 7,
            unix_ms: 1_700_000_000_000,
        })
    }

    #[test]
    fn an_encoded_message_starts_with_envelope_version_zero() {
        assert_eq!(encode(&heartbeat())[0], 0);
    }

    #[test]
    fn a_message_survives_a_round_trip() {
        assert_eq!(decode(&encode(&heartbeat())), Ok(heartbeat()));
    }

    #[test]
    fn a_payload_from_a_future_version_is_refused_as_unsupported() {
        let mut bytes = encode(&heartbeat());
        bytes[0] = 1;
        assert_eq!(decode(&bytes), Err(DecodeError::UnsupportedVersion(1)));
        // A multi-byte varint version is read whole, not mistaken for version 0.
        assert_eq!(
            decode(&[0x80, 0x01, 0, 0]),
            Err(DecodeError::UnsupportedVersion(128))
        );
    }

    #[test]
    fn garbage_is_refused_as_malformed() {
        assert!(matches!(
            decode(&[0, 250, 250, 250]),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode(&[0xff; 12]),
            Err(DecodeError::Malformed(_))
        ));
        assert_eq!(decode(&[]), Err(DecodeError::Empty));
    }

    #[test]
    fn an_oversize_payload_is_refused_before_decoding() {
        let big = vec![0u8; MAX_MESSAGE_SIZE + 1];
        assert_eq!(
            decode(&big),
            Err(DecodeError::TooLarge(MAX_MESSAGE_SIZE + 1))
        );
    }

    #[test]
    fn message_variant_indices_are_frozen() {
        // Reordering variants would silently change the wire format: pin a few indices.
        assert_eq!(encode(&heartbeat())[1], 2);
        let ack = Message::StatusAck(crate::pod::StatusAck { epoch: 1, seq: 2 });
        assert_eq!(encode(&ack)[1], 5);
        let events = Message::PodEvents(crate::pod::probe::PodEvents {
            events: vec![],
            node_events: vec![],
        });
        assert_eq!(encode(&events)[1], 16);
        let usage = Message::Usage(crate::usage::UsageReport::default());
        assert_eq!(encode(&usage)[1], 20);
        let tls = Message::IngressCertificates(IngressCertificates::default());
        assert_eq!(encode(&tls)[1], 21);
    }
}
