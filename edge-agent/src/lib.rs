//! The wasmfleet edge agent: runs Wasm pods in wasmtime sandboxes, driven over MQTT.
//!
//! # Layout
//!
//! - [`link`]: the MQTT link to the server (one task owns the rumqttc event loop): birth and
//!   will, heartbeats, desired pods in, messages out;
//! - [`sync`]: keeps the pods in step with the server: applies desired sets, reports
//!   statuses (at least once), streams logs; generic over its [`sync::PodBackend`] (the
//!   [`pods::PodManager`], or the fleet simulator's hollow pods);
//! - [`runtime`]: the wasmtime engine and sandboxes;
//! - [`pods`]: pod lifecycle, restart policy and logs ([`pods::PodManager`]);
//! - [`net`]: the pod network (pod IPs on loopback aliases, wrapped `wasi:sockets`, egress);
//! - [`state`]: the agent's local redb (session epoch, desired pods, last pod statuses);
//! - [`modules`]: the module cache and the chunked, resumable fetcher;
//! - [`node_info`]: what the agent reports about its machine;
//! - [`usage`]: what the node and its pods use (CPU, memory), reported for `kubectl top`;
//! - [`identity`]: the node's own password, its credential at the server, and its tunnel
//!   key and certificate (signed by the cluster CA), its identity towards other nodes;
//! - [`metrics`]: the agent's own Prometheus `/metrics` (`--metrics-listen`, off by default);
//! - [`config`]: the agent's configuration and command line;
//! - [`run`]: wires everything together and shuts it down gracefully.

pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod identity;
pub mod link;
pub mod metrics;
pub mod modules;
pub mod net;
pub mod node_info;
pub mod pods;
pub mod run;
pub mod runtime;
pub mod state;
pub mod sync;
pub mod usage;
