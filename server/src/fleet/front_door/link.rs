//! The front door's own MQTT 5 session (the fleet link speaks 3.1.1, which carries no
//! response topics): one task drives the event loop, decides each publish at once
//! ([`super::request::decide`]) and hands accepted requests to the worker.
//!
//! It never awaits anything but the event loop, the back-off timer and the shutdown token,
//! so a slow request can never hold back keep-alives or wedge the session: requests wait
//! in a bounded queue ([`QUEUE`] requests, [`BUDGET_BYTES`] of payload), and a request that
//! finds no room, or comes from a client over its rate, is answered at once (429).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, Publish, SubscribeReasonCode};
use rumqttc::v5::{AsyncClient, Event, EventLoop};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use wasmfleet_protocol::backoff::{Backoff, BackoffPolicy};
use wasmfleet_protocol::topic;

use super::answer::Answer;
use super::request::{self, Decision, Incoming, RateLimiter, Request};
use super::worker::{self, Queued};
use crate::api::status::ApiError;
use crate::fleet::inbound::Complaints;

/// Requests waiting for the worker: a whole burst of one client
/// ([`RateLimiter::BURST`]) and then some.
pub(super) const QUEUE: usize = 32;

/// Payload bytes waiting for (or in) the worker: two full-size module uploads.
pub(super) const BUDGET_BYTES: usize = 2 * crate::broker::MAX_PACKET_SIZE;

/// Reconnect back-off, like the fleet link's.
const RECONNECT: BackoffPolicy = BackoffPolicy {
    base: Duration::from_millis(200),
    max: Duration::from_secs(30),
};

/// The link task's state.
pub(super) struct Link {
    pub(super) client: AsyncClient,
    pub(super) queue: mpsc::Sender<Queued>,
    pub(super) budget: Arc<Semaphore>,
    pub(super) limiter: RateLimiter,
    pub(super) complaints: Complaints,
    /// Whether the subscriptions of the current session are in place.
    pub(super) subscribed: watch::Sender<bool>,
}

impl Link {
    /// Drives the session until `shutdown`, then disconnects.
    pub(super) async fn run(mut self, mut eventloop: EventLoop, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(RECONNECT);
        loop {
            let event = tokio::select! {
                () = shutdown.cancelled() => break,
                event = eventloop.poll() => event,
            };
            match event {
                Ok(Event::Incoming(packet)) => self.on_packet(packet, &mut backoff),
                Ok(Event::Outgoing(_)) => {}
                Err(err) => {
                    self.subscribed.send_replace(false);
                    let delay = backoff.next_delay(1.0);
                    tracing::warn!(%err, retry_in = ?delay, "MQTT front door connection lost");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        if self.client.try_disconnect().is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
        }
    }

    fn on_packet(&mut self, packet: Packet, backoff: &mut Backoff) {
        match packet {
            Packet::ConnAck(_) => {
                backoff.reset();
                self.subscribe();
            }
            Packet::Publish(publish) => self.on_publish(&publish),
            Packet::SubAck(ack) => {
                let refused = ack
                    .return_codes
                    .iter()
                    .any(|code| !matches!(code, SubscribeReasonCode::Success(_)));
                if refused {
                    tracing::error!(?ack, "the broker refused a front door subscription");
                } else {
                    self.subscribed.send_replace(true);
                }
            }
            _ => {}
        }
    }

    /// Subscribes to the front door topics (clean session: after every connect), keeping
    /// the retain flag as published so retained requests can be refused.
    fn subscribe(&self) {
        let filters = [
            topic::APPLY,
            topic::APPLY_AS_CLIENT,
            topic::ALL_MODULE_UPLOADS,
        ]
        .map(|path| {
            let mut filter = Filter::new(path, QoS::AtLeastOnce);
            filter.preserve_retain = true;
            filter
        });
        match self.client.try_subscribe_many(filters) {
            Ok(()) => tracing::info!("MQTT front door connected"),
            Err(err) => tracing::error!(%err, "cannot subscribe to the front door topics"),
        }
    }

    fn on_publish(&mut self, publish: &Publish) {
        let Ok(topic_name) = std::str::from_utf8(&publish.topic) else {
            return;
        };
        let properties = publish.properties.as_ref();
        let incoming = Incoming {
            topic: topic_name,
            payload: &publish.payload,
            retain: publish.retain,
            response_topic: properties.and_then(|p| p.response_topic.as_deref()),
            correlation: properties.and_then(|p| p.correlation_data.as_ref()),
        };
        if let Some(named) = incoming.response_topic
            && topic::parse_result_topic(named).is_none()
        {
            self.complaints.warn(
                named,
                topic_name,
                "the response topic is not a result topic (wf/v1/apply/result/CLIENT-ID); \
                 it gets no answer",
            );
        }
        match request::decide(&incoming) {
            Decision::Ignore => {}
            Decision::Refuse {
                reply,
                source,
                answer,
                clear_retained,
            } => {
                if let Some(retained) = clear_retained {
                    self.clear(&retained);
                }
                self.refuse(&source, topic_name, reply.as_ref(), &answer);
            }
            Decision::Accept(request) => self.accept(request, topic_name),
        }
    }

    /// Queues `request` for the worker, or answers why not.
    fn accept(&mut self, request: Request, topic_name: &str) {
        if !self.limiter.admit(&request.source, Instant::now()) {
            let reply = request.reply.clone();
            self.refuse(
                &request.source,
                topic_name,
                reply.as_ref(),
                &RateLimiter::refusal(),
            );
            return;
        }
        let size = match &request.work {
            request::Work::Apply(bytes) | request::Work::Module { bytes, .. } => bytes.len(),
        };
        let permit = u32::try_from(size.max(1))
            .ok()
            .and_then(|n| Arc::clone(&self.budget).try_acquire_many_owned(n).ok());
        let Some(permit) = permit else {
            return self.busy(request, topic_name);
        };
        if let Err(err) = self.queue.try_send((request, permit)) {
            let (request, _) = err.into_inner();
            self.busy(request, topic_name);
        }
    }

    fn busy(&mut self, request: Request, topic_name: &str) {
        let answer = Answer::api_error(&ApiError::unavailable(
            "the MQTT front door is busy with other requests; publish it again later",
        ));
        self.refuse(&request.source, topic_name, request.reply.as_ref(), &answer);
    }

    fn refuse(
        &mut self,
        source: &str,
        topic_name: &str,
        reply: Option<&request::Reply>,
        answer: &Answer,
    ) {
        worker::log_outcome(&mut self.complaints, source, topic_name, answer);
        worker::try_send(&self.client, reply, answer);
    }

    /// Clears a retained request (an empty retained publish), so it is not replayed.
    fn clear(&self, topic_name: &str) {
        if let Err(err) = self
            .client
            .try_publish(topic_name, QoS::AtLeastOnce, true, Vec::new())
        {
            tracing::warn!(topic = topic_name, %err, "cannot clear a retained front door request");
        }
    }
}
