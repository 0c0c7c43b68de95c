//! The outbound half of the link: a cheap handle every part of the agent publishes through.
//!
//! Nobody but the link's publisher task touches the rumqttc client, so no caller can ever
//! block the event loop. Callers queue [`Message`]s on an [`Uplink`]; the publisher drops
//! what is queued while no session is up (everything sent up is either periodic or
//! regenerated when a session starts). The [`Session`] watch tells callers when a session
//! starts or ends, so they can re-send what the new session needs.

use std::sync::Arc;

use bytes::Bytes;
use rumqttc::QoS;
use tokio::sync::{mpsc, watch};
use wasmfleet_protocol::topic::{self, Up};
use wasmfleet_protocol::{Message, encode};

/// How many messages may wait for the publisher task.
const QUEUE_CAPACITY: usize = 256;

/// The agent's current MQTT session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Session {
    /// The epoch of the current session, or of the last one while disconnected (0: never).
    pub epoch: u64,
    /// Whether the broker accepted the session and it is still up.
    pub connected: bool,
}

/// Why a message could not be queued.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UplinkError {
    /// The queue is full (the broker is slow or unreachable).
    #[error("the outbound queue is full")]
    Full,
    /// The link has shut down.
    #[error("the link has shut down")]
    Closed,
}

/// One message on its way up.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) topic: String,
    pub(crate) qos: QoS,
    pub(crate) retain: bool,
    pub(crate) payload: Bytes,
}

/// A cloneable handle for publishing to the server.
#[derive(Debug, Clone)]
pub struct Uplink {
    node: Arc<str>,
    queue: mpsc::Sender<Outgoing>,
    session: watch::Receiver<Session>,
}

/// The receiving ends the link itself consumes (and a handle for its own heartbeats).
#[derive(Debug)]
pub struct UplinkParts {
    pub(crate) uplink: Uplink,
    pub(crate) queue: mpsc::Receiver<Outgoing>,
    pub(crate) session: watch::Sender<Session>,
}

/// Creates the uplink of `node` and the parts [`crate::link::Link::start`] consumes.
pub fn uplink(node: &str) -> (Uplink, UplinkParts) {
    let (queue_tx, queue_rx) = mpsc::channel(QUEUE_CAPACITY);
    let (session_tx, session_rx) = watch::channel(Session::default());
    let uplink = Uplink {
        node: node.into(),
        queue: queue_tx,
        session: session_rx,
    };
    let parts = UplinkParts {
        uplink: uplink.clone(),
        queue: queue_rx,
        session: session_tx,
    };
    (uplink, parts)
}

impl Uplink {
    /// The node this uplink publishes for.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The current session.
    pub fn session(&self) -> Session {
        *self.session.borrow()
    }

    /// A receiver that wakes whenever a session starts or ends (the current one counts
    /// as seen).
    pub fn sessions(&self) -> watch::Receiver<Session> {
        let mut sessions = self.session.clone();
        sessions.borrow_and_update();
        sessions
    }

    /// Queues a message without waiting; fails when the queue is full.
    pub fn try_send(&self, kind: Up, message: &Message) -> Result<(), UplinkError> {
        self.queue
            .try_send(self.outgoing(kind, message))
            .map_err(|err| match err {
                mpsc::error::TrySendError::Full(_) => UplinkError::Full,
                mpsc::error::TrySendError::Closed(_) => UplinkError::Closed,
            })
    }

    /// Queues a message, waiting for room.
    pub async fn send(&self, kind: Up, message: &Message) -> Result<(), UplinkError> {
        self.queue
            .send(self.outgoing(kind, message))
            .await
            .map_err(|_| UplinkError::Closed)
    }

    fn outgoing(&self, kind: Up, message: &Message) -> Outgoing {
        Outgoing {
            topic: topic::up(&self.node, kind),
            qos: qos_of(kind),
            retain: kind == Up::State,
            payload: Bytes::from(encode(message)),
        }
    }
}

/// Heartbeats are leases renewed every interval, usage reports are replaced by the next:
/// losing one is harmless, so QoS 0. Everything else is QoS 1 (and made at-least-once end
/// to end by application acks).
pub(crate) fn qos_of(kind: Up) -> QoS {
    match kind {
        Up::Heartbeat | Up::Usage => QoS::AtMostOnce,
        _ => QoS::AtLeastOnce,
    }
}
