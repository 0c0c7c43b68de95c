//! The task that samples the node every interval and sends what it used.

use std::time::{Duration, Instant};

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use wasmfleet_protocol::Message;
use wasmfleet_protocol::topic::Up;

use super::rates::{Rates, Sample};
use super::{Schedule, host};
use crate::link::Uplink;
use crate::pods::PodManager;

/// Samples `pods` and the host every `interval` and sends a report on the uplink: after
/// every interval while pods run, every [`super::IDLE_EVERY`] intervals while none do (the
/// window then spans them all). Runs until `stop` is cancelled.
pub async fn report(pods: PodManager, uplink: Uplink, interval: Duration, stop: CancellationToken) {
    let mut rates = Rates::default();
    rates.start(sample(&pods));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut schedule = Schedule::default();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let sample = sample(&pods);
        if schedule.tick(!sample.pods.is_empty()).is_none() {
            continue;
        }
        let Some(report) = rates.report(sample) else {
            continue;
        };
        if let Err(err) = uplink.try_send(Up::Usage, &Message::Usage(report)) {
            tracing::debug!(%err, "dropping a usage report");
        }
    }
}

fn sample(pods: &PodManager) -> Sample {
    Sample {
        at: Instant::now(),
        host: host::sample(),
        pods: pods.usage(),
    }
}
