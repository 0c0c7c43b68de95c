//! The fleet simulator: thousands of hollow agents in one process, each with its own MQTT
//! connection, speaking the real protocol to a real server through a real broker.
//!
//! A hollow agent is the agent's own [`link`](wasmfleet_agent::link) and
//! [`pod sync`](wasmfleet_agent::sync) over a fake pod backend ([`hollow::HollowPods`]):
//! it logs in, births its Node, heartbeats, receives its desired pods (index and per-pod
//! retained messages), reports them Running, reports what they use (made-up figures, for
//! `kubectl top`) and answers log requests with one line. It
//! builds no wasm engine and starts no epoch thread, and keeps its local state in memory.
//!
//! # Layout
//!
//! - [`config`]: the command line and what it resolves to;
//! - [`hollow`]: one hollow agent and its fake pods;
//! - [`fleet`]: starts the agents at a paced, jittered rate and stops them;
//! - [`usage`]: the usage reports of hollow nodes;
//! - [`tally`]: the fleet's counters, the live summary line and the final report;
//! - [`limits`]: the open-files limit (one socket per agent).

pub mod config;
pub mod fleet;
pub mod hollow;
pub mod limits;
pub mod tally;
pub mod usage;
