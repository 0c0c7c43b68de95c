//! The contract between the wasmfleet server and its edge agents.
//!
//! Everything that crosses MQTT is defined here, and nothing here does I/O:
//!
//! - [`topic`]: the topic tree under `wf/v1/` and a parser for incoming topics;
//! - [`envelope`]: the versioned postcard envelope every payload travels in;
//! - [`node`]: what an agent says about itself (birth, will, heartbeat);
//! - [`pod`]: desired pods sent to a node and the status it reports back;
//! - [`network`]: the pod network (cluster CIDR, pod IPs and ports, egress rules, loopback
//!   aliases);
//! - [`blob`]: content-addressed module transfer in chunks;
//! - [`backoff`]: capped exponential back-off with jitter (reconnects, retries);
//! - [`debounce`]: when batched changes are due (status reports, followed logs, the
//!   server's desired-state passes);
//! - [`artifact`]: modules the server precompiled for a node's engine, and their signature;
//! - [`logs`]: container log requests and the chunks that answer them;
//! - [`limits`]: limits of the HTTPS API that the server and its clients share;
//! - [`login`]: how a node's MQTT password carries its own credential and the join token;
//! - [`names`]: validation of names that end up inside topics;
//! - [`quantity`]: Kubernetes resource quantities (`128Mi`, `500m`) and resource lists
//!   (`cpu=100m,memory=256Mi`), shared by the server's admission and the agent's flags;
//! - [`service`] and [`routes`]: the tables of Services and of HTTP routes every agent
//!   serves (kube-proxy's and the ingress controller's input);
//! - [`ingress_tls`]: the certificates and keys the ingress terminates TLS with, sent only
//!   to the nodes that serve ingress traffic, and the choice by SNI;
//! - [`peers`]: the table of nodes that carry pod traffic for each other, and the relay
//!   for the ones behind NAT;
//! - [`tunnel`]: a node's tunnel key (reported at birth) and the certificate the server
//!   signs for it;
//! - [`usage`]: what a node's pods use (CPU, memory), reported periodically for
//!   `kubectl top`;
//! - [`tail`]: fields appended at the end of a message, which old and new peers both read;
//! - [`broker_url`]: `mqtts://` / `mqtt://` broker addresses;
//! - `transport` (feature `client`): how a rumqttc client reaches such a broker, TLS
//!   included, with Nagle's algorithm off.
//!
//! Wire evolution is append-only: new messages are new variants at the end of
//! [`Message`], a changed message is a new envelope version.

#![deny(missing_docs)]

pub mod artifact;
pub mod backoff;
pub mod blob;
pub mod broker_url;
pub mod debounce;
pub mod envelope;
#[doc(hidden)]
pub mod fuzzing;
pub mod ingress_tls;
pub mod limits;
pub mod login;
pub mod logs;
pub mod names;
pub mod network;
pub mod node;
pub mod peers;
pub mod pod;
pub mod quantity;
pub mod routes;
pub mod service;
pub mod tail;
pub mod topic;
#[cfg(feature = "client")]
pub mod transport;
pub mod tunnel;
pub mod usage;

pub use envelope::{DecodeError, Message, decode, encode};

/// Module chunks are at most this large, so that one chunk plus its envelope fits in a
/// packet on every broker we support (EMQX defaults to 1 MiB).
pub const CHUNK_SIZE: usize = 256 * 1024;

/// The largest envelope any side accepts. Anything bigger is refused before decoding.
pub const MAX_MESSAGE_SIZE: usize = 512 * 1024;
