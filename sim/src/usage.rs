//! What hollow nodes report their pods use, so that `kubectl top` works in a simulated
//! fleet and the server carries the usage traffic of a real one.
//!
//! Each hollow agent sends a [`UsageReport`] on `up/usage` as the agent's reporter does
//! ([`wasmfleet_agent::usage`]): every interval while it has pods, every
//! [`wasmfleet_agent::usage::IDLE_EVERY`] intervals while it has none. The figures are made up and fixed (hollow pods
//! run nothing): [`CONTAINER`] per container, the node its pods plus [`NODE_BASE`].

use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use wasmfleet_agent::link::Uplink;
use wasmfleet_agent::usage::Schedule;
use wasmfleet_protocol::Message;
use wasmfleet_protocol::topic::Up;
use wasmfleet_protocol::usage::{ContainerUsage, PodUsage, Usage, UsageReport};

use crate::hollow::HollowPods;

/// What one hollow container uses: 1 millicore and 1 MiB.
pub const CONTAINER: Usage = Usage {
    cpu_nanocores: 1_000_000,
    memory_bytes: 1 << 20,
};

/// What a hollow node uses besides its pods: 20 millicores and 32 MiB.
pub const NODE_BASE: Usage = Usage {
    cpu_nanocores: 20_000_000,
    memory_bytes: 32 << 20,
};

/// The report of a hollow node whose pods are `pods` (uid and container names), over
/// `window` (pure).
pub fn report(pods: Vec<(String, Vec<String>)>, window: Duration) -> UsageReport {
    let pods: Vec<PodUsage> = pods
        .into_iter()
        .map(|(uid, names)| PodUsage {
            uid,
            containers: names
                .into_iter()
                .map(|name| ContainerUsage {
                    name,
                    usage: CONTAINER,
                })
                .collect(),
        })
        .collect();
    let containers = pods.iter().map(|p| p.containers.len() as u64).sum::<u64>();
    UsageReport {
        window_ms: u32::try_from(window.as_millis()).unwrap_or(u32::MAX),
        node: Usage {
            cpu_nanocores: NODE_BASE.cpu_nanocores + containers * CONTAINER.cpu_nanocores,
            memory_bytes: NODE_BASE.memory_bytes + containers * CONTAINER.memory_bytes,
        },
        pods,
    }
}

/// Sends `pods`' usage on `uplink` every `interval` (every [`wasmfleet_agent::usage::IDLE_EVERY`] intervals while
/// there are none, the window then spanning them all) until `stop` is cancelled.
pub async fn send(pods: HollowPods, uplink: Uplink, interval: Duration, stop: CancellationToken) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut schedule = Schedule::default();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let running = pods.containers();
        let Some(span) = schedule.tick(!running.is_empty()) else {
            continue;
        };
        let window = interval * span;
        let usage = report(running, window);
        if let Err(err) = uplink.try_send(Up::Usage, &Message::Usage(usage)) {
            tracing::debug!(%err, "dropping a hollow usage report");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_container_and_the_node_report_fixed_plausible_figures() {
        let pods = vec![
            ("u1".to_owned(), vec!["a".to_owned(), "b".to_owned()]),
            ("u2".to_owned(), vec!["c".to_owned()]),
        ];
        let report = report(pods, Duration::from_secs(15));
        assert_eq!(report.validate(), Ok(()));
        assert_eq!(report.window_ms, 15_000);
        assert_eq!(report.pods[0].containers[1].name, "b");
        assert_eq!(report.pods[1].containers[0].usage, CONTAINER);
        assert_eq!(report.node.cpu_nanocores, 23_000_000);
        assert_eq!(report.node.memory_bytes, 35 << 20);
    }

    #[test]
    fn a_node_without_pods_reports_only_itself() {
        let report = report(Vec::new(), Duration::from_secs(60));
        assert_eq!(report.validate(), Ok(()));
        assert!(report.pods.is_empty());
        assert_eq!(report.node, NODE_BASE);
    }
}
