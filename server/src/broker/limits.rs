//! Per-identity publish limits of the embedded broker: how large a publish each identity
//! may send, and how fast a node may send.
//!
//! mqtt5 has one read-time packet limit for every client ([`super::MAX_PACKET_SIZE`], which
//! admin module uploads need), and its `authorize_publish` hook does not see the payload.
//! So the per-identity checks run in mqtt5's publish event hook ([`PublishLimits`]), after
//! the packet was read and authorized but before it is routed: a refused publish is
//! acknowledged to its sender and dropped, it never reaches a subscriber's queue. What
//! remains buffered for an oversize packet is that one packet in its connection's read
//! buffer (at most `MAX_PACKET_SIZE` per connection, freed once it is dropped).
//!
//! [`limit_for`] and [`TokenBucket`] are the pure rules; [`PublishLimits`] holds one bucket
//! per connected node and warns (at most once per [`WARN_EVERY`] per client) with the count
//! of publishes dropped since the last warning.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mqtt5::broker::events::{
    BrokerEventHandler, ClientDisconnectEvent, ClientPublishEvent, PublishAction,
};
use wasmfleet_protocol::MAX_MESSAGE_SIZE;

use super::MAX_PACKET_SIZE;
use super::auth::Identity;

/// A node's sustained publish budget in bytes per second.
pub const NODE_BYTES_PER_SEC: u64 = 512 * 1024;
/// A node's burst: four maximum-size messages at once.
pub const NODE_BURST_BYTES: u64 = 4 * MAX_MESSAGE_SIZE as u64;
/// The least a publish costs against the budget, so floods of tiny messages are bounded
/// too (at most `NODE_BYTES_PER_SEC / MIN_PUBLISH_COST` = 1024 messages per second).
pub const MIN_PUBLISH_COST: u64 = 512;
/// How often a client's dropped publishes are reported at most.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// What one identity may publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishLimit {
    /// The largest payload, in bytes.
    pub max_payload: usize,
    /// Sustained bytes per second and burst, or `None` for no rate limit.
    pub rate: Option<(u64, u64)>,
}

/// The limit of `identity`: nodes send protocol envelopes only (at most
/// [`MAX_MESSAGE_SIZE`]) and are rate-limited; the server publishes envelopes too; the
/// admin uploads whole modules (up to the broker's packet limit).
pub fn limit_for(identity: &Identity) -> PublishLimit {
    match identity {
        Identity::Node(_) => PublishLimit {
            max_payload: MAX_MESSAGE_SIZE,
            rate: Some((NODE_BYTES_PER_SEC, NODE_BURST_BYTES)),
        },
        Identity::Server => PublishLimit {
            max_payload: MAX_MESSAGE_SIZE,
            rate: None,
        },
        Identity::Admin => PublishLimit {
            max_payload: MAX_PACKET_SIZE,
            rate: None,
        },
    }
}

/// A token bucket: `capacity` tokens, refilled at `per_sec` tokens per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    tokens: f64,
    capacity: f64,
    per_sec: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(per_sec: u64, capacity: u64, now: Instant) -> Self {
        Self {
            tokens: capacity as f64,
            capacity: capacity as f64,
            per_sec: per_sec as f64,
            last: now,
        }
    }

    /// Takes `cost` tokens if there are enough at `now`; false (and nothing taken) if not.
    pub fn try_take(&mut self, cost: u64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
        self.last = now;
        let cost = cost as f64;
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }
}

/// Why a publish was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Larger than the identity's payload limit.
    TooLarge,
    /// Over the identity's rate.
    RateExceeded,
}

/// Per-client state: the rate bucket and the drops not yet reported.
#[derive(Debug)]
struct ClientState {
    bucket: Option<TokenBucket>,
    dropped: u64,
    dropped_bytes: u64,
    last_warning: Option<Instant>,
}

impl ClientState {
    fn new(limit: PublishLimit, now: Instant) -> Self {
        Self {
            bucket: limit
                .rate
                .map(|(per_sec, burst)| TokenBucket::new(per_sec, burst, now)),
            dropped: 0,
            dropped_bytes: 0,
            last_warning: None,
        }
    }

    /// Decides one publish of `payload_len` bytes under `limit`.
    fn check(
        &mut self,
        limit: PublishLimit,
        payload_len: usize,
        now: Instant,
    ) -> Result<(), Refusal> {
        if payload_len > limit.max_payload {
            return Err(Refusal::TooLarge);
        }
        let cost = (payload_len as u64).max(MIN_PUBLISH_COST);
        let within_rate = self
            .bucket
            .as_mut()
            .is_none_or(|bucket| bucket.try_take(cost, now));
        if within_rate {
            Ok(())
        } else {
            Err(Refusal::RateExceeded)
        }
    }

    /// Counts a drop; returns the totals to report when a warning is due.
    fn record_drop(&mut self, bytes: usize, now: Instant) -> Option<(u64, u64)> {
        self.dropped += 1;
        self.dropped_bytes += bytes as u64;
        let due = self
            .last_warning
            .is_none_or(|last| now.saturating_duration_since(last) >= WARN_EVERY);
        if !due {
            return None;
        }
        self.last_warning = Some(now);
        let totals = (self.dropped, self.dropped_bytes);
        self.dropped = 0;
        self.dropped_bytes = 0;
        Some(totals)
    }
}

/// mqtt5's publish hook enforcing [`limit_for`] per connected client.
#[derive(Debug, Default)]
pub struct PublishLimits {
    clients: Mutex<HashMap<String, ClientState>>,
}

impl PublishLimits {
    /// Decides a publish by `client_id`, authenticated as `user_id`, of `payload_len`
    /// bytes on `topic`; logs (rate-limited) what it drops.
    pub fn admit(&self, client_id: &str, user_id: Option<&str>, topic: &str, len: usize) -> bool {
        let Some(identity) = user_id.and_then(Identity::from_user_id) else {
            // Unreachable: mqtt5 authorizes every publish before this hook, and our
            // authorizer refuses clients without an identity.
            return false;
        };
        let limit = limit_for(&identity);
        let now = Instant::now();
        let Ok(mut clients) = self.clients.lock() else {
            return false;
        };
        let state = clients
            .entry(client_id.to_owned())
            .or_insert_with(|| ClientState::new(limit, now));
        let Err(refusal) = state.check(limit, len, now) else {
            return true;
        };
        if let Some((dropped, bytes)) = state.record_drop(len, now) {
            tracing::warn!(
                client_id,
                topic,
                payload = len,
                max_payload = limit.max_payload,
                ?refusal,
                dropped,
                dropped_bytes = bytes,
                "mqtt publishes dropped (over this client's size or rate limit)"
            );
        }
        false
    }

    fn forget(&self, client_id: &str) {
        if let Ok(mut clients) = self.clients.lock() {
            clients.remove(client_id);
        }
    }
}

impl BrokerEventHandler for PublishLimits {
    fn on_client_publish<'a>(
        &'a self,
        event: ClientPublishEvent,
    ) -> Pin<Box<dyn Future<Output = PublishAction> + Send + 'a>> {
        let admitted = self.admit(
            &event.client_id,
            event.user_id.as_deref(),
            &event.topic,
            event.payload.len(),
        );
        Box::pin(async move {
            if admitted {
                PublishAction::Continue
            } else {
                PublishAction::Handled
            }
        })
    }

    fn on_client_disconnect<'a>(
        &'a self,
        event: ClientDisconnectEvent,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        self.forget(&event.client_id);
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Identity {
        Identity::Node("pi-1".into())
    }

    #[test]
    fn nodes_may_send_protocol_messages_and_the_admin_whole_modules() {
        assert_eq!(limit_for(&node()).max_payload, MAX_MESSAGE_SIZE);
        assert_eq!(limit_for(&Identity::Server).max_payload, MAX_MESSAGE_SIZE);
        assert_eq!(limit_for(&Identity::Admin).max_payload, MAX_PACKET_SIZE);
        assert!(limit_for(&node()).rate.is_some());
        assert!(limit_for(&Identity::Server).rate.is_none());
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(100, 300, start);
        assert!(bucket.try_take(300, start));
        assert!(!bucket.try_take(1, start));
        assert!(!bucket.try_take(60, start + Duration::from_millis(500)));
        assert!(bucket.try_take(50, start + Duration::from_millis(500)));
        // It never holds more than its capacity, however long it rested.
        let later = start + Duration::from_secs(3600);
        assert!(!bucket.try_take(301, later));
        assert!(bucket.try_take(300, later));
    }

    #[test]
    fn an_oversize_node_publish_is_refused_and_costs_nothing() {
        let now = Instant::now();
        let limit = limit_for(&node());
        let mut state = ClientState::new(limit, now);
        assert_eq!(
            state.check(limit, MAX_MESSAGE_SIZE + 1, now),
            Err(Refusal::TooLarge)
        );
        for _ in 0..4 {
            assert_eq!(state.check(limit, MAX_MESSAGE_SIZE, now), Ok(()));
        }
        assert_eq!(state.check(limit, 10, now), Err(Refusal::RateExceeded));
    }

    #[test]
    fn tiny_publishes_cost_at_least_the_minimum() {
        let now = Instant::now();
        let limit = limit_for(&node());
        let mut state = ClientState::new(limit, now);
        let admitted = (0..100_000)
            .take_while(|_| state.check(limit, 1, now).is_ok())
            .count() as u64;
        assert_eq!(admitted, NODE_BURST_BYTES / MIN_PUBLISH_COST);
    }

    #[test]
    fn drops_are_reported_at_most_once_per_interval_with_their_count() {
        let now = Instant::now();
        let mut state = ClientState::new(limit_for(&node()), now);
        assert_eq!(state.record_drop(10, now), Some((1, 10)));
        assert_eq!(state.record_drop(20, now + Duration::from_secs(1)), None);
        assert_eq!(state.record_drop(30, now + Duration::from_secs(2)), None);
        assert_eq!(state.record_drop(40, now + WARN_EVERY), Some((3, 90)));
    }

    #[test]
    fn publishes_without_a_known_identity_are_refused() {
        let limits = PublishLimits::default();
        assert!(!limits.admit("x", None, "wf/v1/n/x/up/status", 1));
        assert!(!limits.admit("x", Some("who"), "wf/v1/n/x/up/status", 1));
        assert!(limits.admit("pi-1", Some("node:pi-1"), "wf/v1/n/pi-1/up/status", 1));
        assert!(!limits.admit("pi-1", Some("node:pi-1"), "t", MAX_MESSAGE_SIZE + 1));
        assert!(limits.admit("cli", Some("admin"), "t", MAX_MESSAGE_SIZE + 1));
    }
}
