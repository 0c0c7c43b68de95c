//! Controllers: level-triggered loops that move the cluster toward its desired state.
//!
//! Each is a pure `plan` function (unit-tested) and a thin executor that applies the plan
//! to the store idempotently, re-planning on a periodic resync.
//!
//! - [`node_lifecycle`]: marks nodes `Ready=Unknown` and tainted (and their pods not
//!   ready) when their agent stops heartbeating, and `Ready=True` again when it resumes;
//! - [`leases`]: which agent session is current, and the nodes' `Lease` objects;
//! - [`conditions`]: setting Kubernetes status conditions on JSON objects.

pub mod conditions;
pub mod leases;
pub mod node_lifecycle;
