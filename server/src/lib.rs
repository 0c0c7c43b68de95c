//! The wasmfleet control plane as a library, so that tests run the real server in-process.
//!
//! # Layout
//! - [`store`]: cluster state in redb (objects, global revision, watch events).
//! - [`k8s`]: Kubernetes object helpers (conditions, bound node, readiness, owner
//!   references, selectors, timestamps) shared by everything below.
//! - [`informer`]: the in-memory, indexed view of the store the loops read (by node, by
//!   owner, by namespace), fed by its event log, with change notifications.
//! - [`config`]: the command line; [`run`]: wiring and shutdown.
//! - [`api`]: the HTTPS API in the Kubernetes REST shape; [`api::kinds`] is the kind registry.
//! - [`bootstrap`]: data-directory setup: CA, serving certificate, tokens, kubeconfig.
//! - [`broker`]: the embedded MQTT broker, its per-identity topic rules and limits, and the
//!   revocation of deleted nodes' sessions.
//! - [`identity`]: node identity: each node name bound to its own node password at join, and
//!   the join tokens that admit new nodes.
//! - [`modules`]: the content-addressed wasm module store (tables in the store's file).
//! - [`artifacts`]: modules precompiled per agent target and signed (server-side AOT).
//! - [`scheduler`]: binds pending pods to nodes (reading the informer cache), giving each
//!   its pod IP.
//! - [`network`]: the pod network's address allocation (node ranges, pod IPs).
//! - [`events`]: recording Events (aggregated by reason and message) and expiring them.
//! - [`metrics`]: the Prometheus metrics served at `/metrics`.
//! - [`controllers`]: level-triggered controllers on one runner (work queue of keys from the
//!   cache, pure plans, resync, back-off); node lifecycle.
//! - [`fleet`]: the server's MQTT side (births, desired state, status, chunks, logs).
//! - [`relay`]: carries the tunnel between two nodes when one cannot dial the other.

pub mod api;
pub mod artifacts;
pub mod bootstrap;
pub mod broker;
pub mod config;
pub mod controllers;
pub mod events;
pub mod fleet;
#[doc(hidden)]
pub mod fuzzing;
pub mod identity;
pub mod informer;
pub mod k8s;
pub mod metrics;
pub mod modules;
pub mod network;
pub mod relay;
pub mod run;
pub mod scheduler;
pub mod store;
