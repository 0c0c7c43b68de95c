//! Keeps the node's pods in step with the server, over the [`link`](crate::link).
//!
//! The link delivers what the server sends (the [`Inbox`](crate::link::Inbox)) and carries
//! what the node says (the [`Uplink`](crate::link::Uplink)); this module decides what to do
//! with it, for any [`PodBackend`]:
//!
//! - [`PodSync`]: applies desired snapshots (committed to local state first), reports
//!   statuses at least once, re-reports after every new session and server restart;
//! - [`backend`]: the [`PodBackend`] seam: the agent's [`PodManager`](crate::pods::PodManager),
//!   or the fleet simulator's hollow pods;
//! - [`outbox`]: the latest status report and its acknowledgement (pure);
//! - `logs`: answers log requests, one task per request;
//! - `events`: forwards probe events in batches.

pub mod backend;
mod debounce;
mod events;
mod logs;
pub mod outbox;
mod pod_sync;

pub use backend::PodBackend;
pub use pod_sync::{PodSync, RESEND_INTERVAL, pod_changes};
