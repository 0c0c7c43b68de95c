//! What the node and its pods use, measured and reported for `kubectl top` (the server
//! serves it as `metrics.k8s.io`).
//!
//! Every container counts its own CPU time and linear memory as it runs
//! ([`crate::runtime::UsageMeter`]); nothing here runs per pod. One task ([`reporter`])
//! samples the meters and the host every interval (15 s by default, metrics-server's
//! resolution), turns the cumulative CPU times into rates over the window since the
//! previous sample ([`rates`]), and sends a [`UsageReport`] on `n/{node}/up/usage`: best
//! effort (QoS 0, not acked, not retained). A node without running pods reports only every
//! [`IDLE_EVERY`] intervals, so an idle agent's traffic stays what its heartbeats cost.
//!
//! - [`host`]: the host's CPU time and memory working set, from `/proc`;
//! - [`rates`]: cumulative samples to the rates of a report (pure);
//! - [`reporter`]: the sampling and sending task.
//!
//! [`UsageReport`]: wasmfleet_protocol::usage::UsageReport

pub mod host;
pub mod rates;
pub mod reporter;

use std::time::Duration;

pub use reporter::report;

/// The default time between reports (metrics-server's default resolution).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);

/// A node without running pods reports once every this many intervals.
pub const IDLE_EVERY: u32 = 4;

/// Which interval ticks send a report (the agent's and the simulator's hollow agents'
/// rule): every tick while pods run, every [`IDLE_EVERY`] ticks while none do, the tick
/// after the last pod stopped at once, and the first tick of all (so a new node shows in
/// `kubectl top node` at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Ticks since the last report.
    since_report: u32,
    /// Whether the last report listed pods.
    listed_pods: bool,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            since_report: IDLE_EVERY - 1,
            listed_pods: false,
        }
    }
}

impl Schedule {
    /// A tick with `has_pods` running: `Some(the intervals the report spans)` when one goes
    /// now.
    pub fn tick(&mut self, has_pods: bool) -> Option<u32> {
        self.since_report += 1;
        if !has_pods && !self.listed_pods && self.since_report < IDLE_EVERY {
            return None;
        }
        let span = std::mem::replace(&mut self.since_report, 0);
        self.listed_pods = has_pods;
        Some(span)
    }
}

/// What one container has used so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSample {
    /// Its name.
    pub name: String,
    /// CPU time used since its pod started on this agent (all its runs).
    pub cpu_time: Duration,
    /// Linear memory its instance holds now.
    pub memory_bytes: u64,
}

/// What one pod's containers have used so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSample {
    /// The pod's uid.
    pub uid: String,
    /// Its containers, in spec order.
    pub containers: Vec<ContainerSample>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_go_every_tick_with_pods_and_every_idle_every_ticks_without() {
        let mut schedule = Schedule::default();
        // The first tick reports, even with nothing running.
        assert_eq!(schedule.tick(false), Some(IDLE_EVERY));
        for _ in 1..IDLE_EVERY {
            assert_eq!(schedule.tick(false), None);
        }
        assert_eq!(schedule.tick(false), Some(IDLE_EVERY));
        // A pod starts: a report at once, then every tick.
        assert_eq!(schedule.tick(true), Some(1));
        assert_eq!(schedule.tick(true), Some(1));
        // The tick after the last pod stopped reports at once, then it is idle again.
        assert_eq!(schedule.tick(false), Some(1));
        assert_eq!(schedule.tick(false), None);
    }
}
