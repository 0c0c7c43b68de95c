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
