//! Container probes (Kubernetes' `startupProbe`, `livenessProbe`, `readinessProbe`) as the
//! agent runs them, and the probe events an agent reports.
//!
//! The server resolves named ports and fills Kubernetes' defaults before a probe goes down,
//! so what arrives is complete: the action with a port number, and every timing.
//! A Wasm pod has no `exec`, and admission refuses `grpc`; only TCP connects and HTTP/1.1
//! GETs remain, both against the pod's own address.

use serde::{Deserialize, Serialize};

/// `periodSeconds` when the manifest leaves it out.
pub const DEFAULT_PERIOD_SECONDS: u32 = 10;
/// `timeoutSeconds` when the manifest leaves it out.
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 1;
/// `successThreshold` when the manifest leaves it out (and the only value liveness and
/// startup probes may have).
pub const DEFAULT_SUCCESS_THRESHOLD: u32 = 1;
/// `failureThreshold` when the manifest leaves it out.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 3;

/// The probes of one container; all optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probes {
    /// Holds back the other two until it has succeeded once; failing, it restarts the
    /// container like a liveness probe.
    pub startup: Option<Probe>,
    /// Restarts the container after `failure_threshold` failures in a row.
    pub liveness: Option<Probe>,
    /// Gates the container's `ready`; a container with one starts not ready.
    pub readiness: Option<Probe>,
}

impl Probes {
    /// Whether the container has no probe at all.
    pub fn is_empty(&self) -> bool {
        self.startup.is_none() && self.liveness.is_none() && self.readiness.is_none()
    }
}

/// One probe, with Kubernetes' defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// What is tried.
    pub action: ProbeAction,
    /// Seconds after the container started before the first try.
    pub initial_delay_seconds: u32,
    /// Seconds between tries (at least 1).
    pub period_seconds: u32,
    /// Seconds a try may take (at least 1).
    pub timeout_seconds: u32,
    /// Successes in a row that make a failing probe pass (1 for liveness and startup).
    pub success_threshold: u32,
    /// Failures in a row that make a passing probe fail.
    pub failure_threshold: u32,
}

/// What a probe tries, against the pod's own IP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProbeAction {
    /// A TCP connect that must be accepted.
    TcpSocket {
        /// The port (named ports are resolved by the server).
        port: u16,
    },
    /// An HTTP/1.1 `GET` whose status must be 200..=399.
    HttpGet {
        /// The port (named ports are resolved by the server).
        port: u16,
        /// The request path, starting with `/`.
        path: String,
        /// Extra request headers, in order.
        headers: Vec<(String, String)>,
    },
}

impl ProbeAction {
    /// The port the probe connects to.
    pub fn port(&self) -> u16 {
        match self {
            Self::TcpSocket { port } | Self::HttpGet { port, .. } => *port,
        }
    }
}

/// Which of a container's probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProbeKind {
    /// `startupProbe`.
    Startup,
    /// `livenessProbe`.
    Liveness,
    /// `readinessProbe`.
    Readiness,
}

impl ProbeKind {
    /// How Kubernetes names it in event messages (`Liveness probe failed: ...`).
    pub fn title(self) -> &'static str {
        match self {
            Self::Startup => "Startup",
            Self::Liveness => "Liveness",
            Self::Readiness => "Readiness",
        }
    }
}

/// At most this many events travel in one [`PodEvents`] message.
pub const MAX_EVENTS_PER_MESSAGE: usize = 64;

/// At most this many bytes of an event's detail travel (longer ones are cut).
pub const MAX_EVENT_DETAIL: usize = 512;

/// Events an agent saw about its pods that no status field carries (the kubelet records
/// them as Kubernetes Events), sent on `n/{node}/up/events`. Best effort: not acked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodEvents {
    /// The events, oldest first, at most [`MAX_EVENTS_PER_MESSAGE`].
    pub events: Vec<PodEvent>,
    /// Events about the node itself, at most [`MAX_EVENTS_PER_MESSAGE`]. Appended after
    /// the probes' release ([`crate::tail`]): older agents send none, older servers ignore
    /// them. Keep it the last field.
    #[serde(default, deserialize_with = "crate::tail::or_default")]
    pub node_events: Vec<NodeEvent>,
}

/// One event about the reporting node (the server records it on the Node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEvent {
    /// What happened.
    pub kind: NodeEventKind,
    /// Why, in words.
    pub detail: String,
}

/// What happened on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeEventKind {
    /// The node cannot listen on an address for a NodePort or LoadBalancer Service (the
    /// port is taken on the host, or privileged) (`FailedToListen` Warning).
    FailedToListen,
    /// The node reaches a peer's pods over a direct tunnel (`PeerReachedDirectly`).
    PeerReachedDirectly,
    /// The node reaches a peer's pods through the server's relay
    /// (`PeerReachedThroughRelay`).
    PeerReachedThroughRelay,
}

/// One event about a container of a pod on the reporting node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodEvent {
    /// The pod's uid.
    pub uid: String,
    /// The container's name.
    pub container: String,
    /// What happened.
    pub kind: PodEventKind,
    /// Why, in words (`connection refused`, `HTTP probe failed with statuscode: 500`).
    pub detail: String,
}

/// What happened to a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodEventKind {
    /// A probe failed once (Kubernetes' `Unhealthy` Warning).
    ProbeFailed(ProbeKind),
    /// The container is being restarted because this probe failed `failureThreshold`
    /// times in a row (Kubernetes' `Killing`).
    Restarting(ProbeKind),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Message, decode, encode};

    #[test]
    fn events_from_before_node_events_still_decode() {
        let events = PodEvents {
            events: vec![PodEvent {
                uid: "u-1".into(),
                container: "main".into(),
                kind: PodEventKind::ProbeFailed(ProbeKind::Readiness),
                detail: "connection refused".into(),
            }],
            node_events: Vec::new(),
        };
        let mut bytes = encode(&Message::PodEvents(events.clone()));
        // An older agent's message ends before the (empty) tail.
        assert_eq!(bytes.pop(), Some(0));
        assert_eq!(decode(&bytes), Ok(Message::PodEvents(events.clone())));
        let with_node = PodEvents {
            node_events: vec![NodeEvent {
                kind: NodeEventKind::FailedToListen,
                detail: "cannot listen on 127.0.0.1:80".into(),
            }],
            ..events
        };
        let message = Message::PodEvents(with_node);
        assert_eq!(decode(&encode(&message)), Ok(message));
    }
}
