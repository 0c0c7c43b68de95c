//! Controllers: level-triggered loops that move the cluster toward its desired state.
//!
//! Each is a pure `plan` function (unit-tested) and a thin executor that applies the plan
//! to the store idempotently, run by the one [`runner`] (work queue of keys fed by the
//! informer's cache, periodic resync, per-key back-off, drain on shutdown).
//!
//! - [`runner`]: the loop and the [`runner::Controller`] trait a controller implements;
//! - [`queue`]: the runner's deduplicating work queue;
//! - [`node_lifecycle`]: marks nodes `Ready=Unknown` and tainted (and their pods not
//!   ready) when their agent stops heartbeating, and `Ready=True` again when it resumes;
//! - [`leases`]: which agent session is current, and the nodes' `Lease` objects.

pub mod leases;
pub mod node_lifecycle;
pub mod queue;
pub mod runner;
