//! The one task that drives the rumqttc event loop.
//!
//! It never awaits anything but the event loop, the back-off timer and the shutdown token,
//! so it can never deadlock against a publisher waiting for room in the request queue.
//! Incoming publishes and (re)connects are forwarded to the dispatcher, which subscribes,
//! announces the server and re-publishes desired state on every `Connected`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rumqttc::{AsyncClient, ConnectReturnCode, Event, EventLoop, Packet, QoS, SubscribeReasonCode};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wasmfleet_protocol::topic;

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
    },
}

/// Reconnect back-off: doubles from `MIN` to `MAX`, reset by a successful CONNACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Backoff {
    next: Duration,
}

impl Backoff {
    const MIN: Duration = Duration::from_millis(200);
    const MAX: Duration = Duration::from_secs(30);

    pub(super) fn new() -> Self {
        Self { next: Self::MIN }
    }

    /// The delay before the next attempt; doubles the one after.
    pub(super) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay
    }

    pub(super) fn reset(&mut self) {
        self.next = Self::MIN;
    }
}

/// Drives the connection until `shutdown`, then leaves an offline presence and disconnects.
pub(super) async fn run(
    mut eventloop: EventLoop,
    client: AsyncClient,
    inbound: mpsc::UnboundedSender<Inbound>,
    offline_state: Vec<u8>,
    link_up: Arc<AtomicBool>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new();
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => break,
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(packet)) => {
                if matches!(&packet, Packet::ConnAck(ack) if ack.code == ConnectReturnCode::Success)
                {
                    link_up.store(true, Ordering::Relaxed);
                }
                if !handle_packet(packet, &inbound, &mut backoff) {
                    break;
                }
            }
            Ok(Event::Outgoing(_)) => {}
            Err(err) => {
                link_up.store(false, Ordering::Relaxed);
                let delay = backoff.next_delay();
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
fn handle_packet(
    packet: Packet,
    inbound: &mpsc::UnboundedSender<Inbound>,
    backoff: &mut Backoff,
) -> bool {
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
        Packet::Publish(publish) => Inbound::Publish {
            topic: publish.topic,
            payload: publish.payload,
        },
        Packet::SubAck(ack) => {
            if ack.return_codes.contains(&SubscribeReasonCode::Failure) {
                tracing::error!(?ack, "the broker refused a fleet subscription");
            }
            return true;
        }
        _ => return true,
    };
    inbound.send(message).is_ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut backoff = Backoff::new();
        assert_eq!(backoff.next_delay(), Duration::from_millis(200));
        assert_eq!(backoff.next_delay(), Duration::from_millis(400));
        for _ in 0..20 {
            backoff.next_delay();
        }
        assert_eq!(backoff.next_delay(), Backoff::MAX);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Backoff::MIN);
    }
}
