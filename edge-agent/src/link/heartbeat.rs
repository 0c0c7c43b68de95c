//! The lease: a QoS 0 heartbeat every interval while a session is up.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use wasmfleet_protocol::Message;
use wasmfleet_protocol::node::Heartbeat;
use wasmfleet_protocol::topic::Up;

use super::Uplink;

/// Sends heartbeats until `stop` fires.
pub(super) async fn run(uplink: Uplink, interval: Duration, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let session = uplink.session();
        if !session.connected {
            continue;
        }
        let heartbeat = Message::Heartbeat(Heartbeat {
            epoch: session.epoch,
            unix_ms: unix_ms(),
        });
        if let Err(err) = uplink.try_send(Up::Heartbeat, &heartbeat) {
            tracing::debug!(%err, "heartbeat skipped");
        }
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
