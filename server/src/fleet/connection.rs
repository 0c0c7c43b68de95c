//! The one task that drives the rumqttc event loop.
//!
//! It never awaits anything but the event loop, the back-off timer and the shutdown token,
//! so it can never deadlock against a publisher waiting for room in the request queue.
//! Incoming publishes and (re)connects are forwarded to the dispatcher, which subscribes,
//! announces the server and re-publishes desired state on every `Connected`.
//!
//! What waits for the dispatcher is bounded twice: at most [`INBOUND_QUEUE`] messages and
//! [`INBOUND_BYTES`] of payload (an [`InboundBudget`] permit travels with each publish and
//! is released when the dispatcher is done with it). When either is exhausted, QoS 0
//! publishes (heartbeats: the next one supersedes them) are dropped and counted in a
//! rate-limited warning, while QoS 1 publishes (status reports, node state, log chunks,
//! agents re-send reports until acked) wait for room, which holds the event loop
//! back and leaves further messages queued, bounded, in the broker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, Outgoing, Packet, Publish, QoS,
    SubscribeReasonCode,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use wasmfleet_protocol::backoff::{Backoff, BackoffPolicy};
use wasmfleet_protocol::topic;

use super::inbound::Complaints;

/// How many messages may wait for the dispatcher.
pub(super) const INBOUND_QUEUE: usize = 1024;

/// How many payload bytes may wait for (or be in) the dispatcher: room for a full-size
/// module upload and plenty of protocol messages.
pub(super) const INBOUND_BYTES: usize = 64 * 1024 * 1024;

/// The least a queued publish is charged, for its topic and bookkeeping.
const MIN_CHARGE: usize = 256;

/// The byte budget of messages between the event loop and the dispatcher.
#[derive(Debug, Clone)]
pub(super) struct InboundBudget {
    bytes: Arc<Semaphore>,
}

impl InboundBudget {
    pub(super) fn new(bytes: usize) -> Self {
        Self {
            bytes: Arc::new(Semaphore::new(bytes)),
        }
    }

    fn charge(payload: &Bytes) -> u32 {
        u32::try_from(payload.len().max(MIN_CHARGE)).unwrap_or(u32::MAX)
    }

    /// A permit for `payload` if there is room now.
    fn try_reserve(&self, payload: &Bytes) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.bytes)
            .try_acquire_many_owned(Self::charge(payload))
            .ok()
    }

    /// A permit for `payload`, waiting for room (`None` only if the budget could never
    /// hold it).
    async fn reserve(&self, payload: &Bytes) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.bytes)
            .acquire_many_owned(Self::charge(payload))
            .await
            .ok()
    }
}

/// The sending side: the queue, its byte budget and the drop warnings.
pub(super) struct InboundSender {
    queue: mpsc::Sender<Inbound>,
    budget: InboundBudget,
    complaints: Complaints,
}

impl InboundSender {
    pub(super) fn new(queue: mpsc::Sender<Inbound>, budget: InboundBudget) -> Self {
        Self {
            queue,
            budget,
            complaints: Complaints::default(),
        }
    }

    /// Queues `message`; false when the dispatcher is gone.
    async fn send(&mut self, message: Inbound) -> bool {
        self.queue.send(message).await.is_ok()
    }

    /// Queues a publish under the budget (see the module doc for which may be dropped).
    /// False when the dispatcher is gone.
    async fn publish(&mut self, publish: Publish) -> bool {
        let qos0 = publish.qos == QoS::AtMostOnce;
        let permit = if qos0 {
            self.budget.try_reserve(&publish.payload)
        } else {
            self.budget.reserve(&publish.payload).await
        };
        let Some(permit) = permit else {
            self.dropped(&publish.topic);
            return true;
        };
        let message = Inbound::Publish {
            topic: publish.topic,
            payload: publish.payload,
            _budget: permit,
        };
        if !qos0 {
            return self.send(message).await;
        }
        match self.queue.try_send(message) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(Inbound::Publish { topic, .. })) => {
                self.dropped(&topic);
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    fn dropped(&mut self, topic_name: &str) {
        let source = topic::parse_server_inbound(topic_name)
            .map_or("?", |topic::ServerInbound::FromNode { node, .. }| node)
            .to_owned();
        self.complaints.warn(
            &source,
            topic_name,
            "the server's inbound queue is full (QoS 0 message dropped)",
        );
    }
}
/// What the event loop hands to the dispatcher.
#[derive(Debug)]
pub(super) enum Inbound {
    /// A CONNACK arrived: the session is new (clean), so subscriptions must be redone.
    Connected,
    /// A publish arrived.
    Publish {
        /// Its topic.
        topic: String,
        /// Its payload.
        payload: Bytes,
        /// Its share of the [`InboundBudget`], released when the message is dropped.
        _budget: OwnedSemaphorePermit,
    },
}

/// Reconnect back-off: doubles from 200 ms to 30 s (no jitter: the server is one client),
/// reset by a successful CONNACK.
const RECONNECT: BackoffPolicy = BackoffPolicy {
    base: Duration::from_millis(200),
    max: Duration::from_secs(30),
};

/// Drives the connection until `shutdown`, then leaves an offline presence and disconnects.
pub(super) async fn run(
    mut eventloop: EventLoop,
    client: AsyncClient,
    mut inbound: InboundSender,
    offline_state: Vec<u8>,
    (link_up, metrics): (Arc<AtomicBool>, crate::metrics::Metrics),
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(RECONNECT);
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => break,
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(packet)) => {
                if matches!(packet, Packet::Publish(_)) {
                    metrics.mqtt_received();
                }
                if matches!(&packet, Packet::ConnAck(ack) if ack.code == ConnectReturnCode::Success)
                {
                    link_up.store(true, Ordering::Relaxed);
                }
                let forwarded = tokio::select! {
                    () = shutdown.cancelled() => break,
                    forwarded = handle_packet(packet, &mut inbound, &mut backoff) => forwarded,
                };
                if !forwarded {
                    break;
                }
            }
            Ok(Event::Outgoing(Outgoing::Publish(_))) => metrics.mqtt_sent(),
            Ok(Event::Outgoing(_)) => {}
            Err(err) => {
                link_up.store(false, Ordering::Relaxed);
                let delay = backoff.next_delay(1.0);
                tracing::warn!(%err, retry_in = ?delay, "fleet MQTT connection lost");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    link_up.store(false, Ordering::Relaxed);
    say_goodbye(&mut eventloop, &client, offline_state).await;
}

/// Forwards one incoming packet. Returns false when the dispatcher is gone.
async fn handle_packet(packet: Packet, inbound: &mut InboundSender, backoff: &mut Backoff) -> bool {
    let message = match packet {
        Packet::ConnAck(ack) if ack.code == ConnectReturnCode::Success => {
            tracing::info!("fleet MQTT connected");
            backoff.reset();
            Inbound::Connected
        }
        Packet::ConnAck(ack) => {
            tracing::error!(code = ?ack.code, "fleet MQTT connection refused");
            return true;
        }
        Packet::Publish(publish) => return inbound.publish(publish).await,
        Packet::SubAck(ack) => {
            if ack.return_codes.contains(&SubscribeReasonCode::Failure) {
                tracing::error!(?ack, "the broker refused a fleet subscription");
            }
            return true;
        }
        _ => return true,
    };
    inbound.send(message).await
}

/// Publishes the offline presence and disconnects, polling the event loop (bounded) so
/// both actually reach the broker.
async fn say_goodbye(eventloop: &mut EventLoop, client: &AsyncClient, offline_state: Vec<u8>) {
    let queued = client
        .try_publish(topic::SERVER_STATE, QoS::AtLeastOnce, true, offline_state)
        .and_then(|()| client.try_disconnect());
    if queued.is_err() {
        return;
    }
    let drain = async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    tracing::info!("fleet MQTT disconnected");
}
