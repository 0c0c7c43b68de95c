//! Forwards the probers' events to the server (`n/{node}/up/events`), a batch at a time:
//! after the first event of a batch it waits [`BATCH_WINDOW`] for more (at most
//! [`MAX_EVENTS_PER_MESSAGE`]), so a node whose probes fail every second sends a message a
//! second, not one per event. Best effort, as Kubernetes Events are: a batch the uplink
//! cannot queue is dropped.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wasmfleet_protocol::Message;
use wasmfleet_protocol::pod::probe::{MAX_EVENTS_PER_MESSAGE, PodEvent, PodEvents};
use wasmfleet_protocol::topic::Up;

use crate::link::Uplink;

/// How long a batch collects events after its first one.
const BATCH_WINDOW: Duration = Duration::from_millis(200);

/// Runs until `stop` is cancelled or the pod manager is gone.
pub async fn forward(
    mut events: mpsc::Receiver<PodEvent>,
    uplink: Uplink,
    stop: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            () = stop.cancelled() => return,
            first = events.recv() => first,
        };
        let Some(first) = first else { return };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
        while batch.len() < MAX_EVENTS_PER_MESSAGE {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(event)) => batch.push(event),
                Ok(None) | Err(_) => break,
            }
        }
        let message = Message::PodEvents(PodEvents {
            events: batch,
            node_events: Vec::new(),
        });
        if let Err(err) = uplink.try_send(Up::Events, &message) {
            tracing::debug!(%err, "dropping a batch of probe events");
        }
    }
}
