//! What agents and the server say about themselves: presence, identity and liveness.
//!
//! Presence is a retained message that is also the sender's last will, stamped with an
//! `epoch` the sender increments on every connect, so a late will from an old session can
//! never mark a newer session offline.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::tunnel::TunnelInfo;

/// The server's presence on [`crate::topic::SERVER_STATE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerState {
    /// Whether the server is connected.
    pub online: bool,
    /// Incremented on every server start; a new epoch tells agents to re-report.
    pub epoch: u64,
}

/// A node's presence on its `up/state` topic: a birth (`online` with `info`) or a will.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    /// The agent's session epoch, incremented on every connect and persisted.
    pub epoch: u64,
    /// Whether the agent is connected.
    pub online: bool,
    /// Who the node is; present in a birth, absent in a will.
    pub info: Option<NodeInfo>,
}

/// A node's identity and capacity, reported at birth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The agent's version (its crate version).
    pub agent_version: String,
    /// The Kubernetes architecture name: `amd64`, `arm64` or `arm`.
    pub architecture: String,
    /// The operating system, as Kubernetes names it (`linux`).
    pub operating_system: String,
    /// The kernel release (`uname -r`).
    pub kernel_version: String,
    /// A human name for the OS image (`PRETTY_NAME` of /etc/os-release).
    pub os_image: String,
    /// The machine's host name.
    pub hostname: String,
    /// Total resources of the machine.
    pub capacity: Resources,
    /// What pods may use.
    pub allocatable: Resources,
    /// Labels the node asks for (from `--labels`), beside the standard ones.
    pub labels: BTreeMap<String, String>,
    /// The wasm engine the agent runs.
    pub engine: EngineInfo,
    /// The node's addresses (`InternalIP`), as the kubelet reports them. Appended after the
    /// first releases ([`crate::tail`]): a birth from an older agent has none, and an
    /// older server ignores them.
    #[serde(default, deserialize_with = "crate::tail::or_default")]
    pub addresses: Vec<NodeAddress>,
    /// The node's tunnel key and port, for its certificate and for other nodes to reach it.
    /// Appended after `addresses` ([`crate::tail`]): a birth from an older agent has none
    /// (it gets no certificate), and an older server ignores it. Keep it the last field.
    #[serde(default, deserialize_with = "crate::tail::or_default")]
    pub tunnel: Option<TunnelInfo>,
}

/// One address of a node (`status.addresses[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddress {
    /// Its Kubernetes type: [`NodeAddress::INTERNAL_IP`] or `ExternalIP`.
    pub kind: String,
    /// The address.
    pub address: String,
}

impl NodeAddress {
    /// The address type other nodes and clients inside the site reach the node at.
    pub const INTERNAL_IP: &str = "InternalIP";

    /// An `InternalIP` address.
    pub fn internal(ip: std::net::IpAddr) -> Self {
        Self {
            kind: Self::INTERNAL_IP.to_owned(),
            address: ip.to_string(),
        }
    }
}

/// Amounts of the resources the scheduler counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// CPU in millicores.
    pub cpu_millis: u64,
    /// The number of pods.
    pub pods: u32,
}

/// The agent's wasm engine, so the server can precompile modules for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineInfo {
    /// The wasmtime version.
    pub wasmtime_version: String,
    /// The compilation target (`x86_64-unknown-linux-gnu`, `pulley32`, ...).
    pub target: String,
    /// The engine's precompiled-artifact compatibility key, hex.
    pub compatibility_key: String,
    /// Whether the agent can compile modules itself.
    pub can_compile: bool,
}

/// A lease renewal from a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The agent's session epoch.
    pub epoch: u64,
    /// The agent's wall clock, in milliseconds since the Unix epoch.
    pub unix_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Message, decode, encode};

    fn birth() -> Message {
        Message::NodeState(NodeState {
            epoch: 3,
            online: true,
            info: Some(NodeInfo {
                agent_version: "0.1.0".into(),
                architecture: "arm64".into(),
                operating_system: "linux".into(),
                kernel_version: "6.6.31".into(),
                os_image: "Debian GNU/Linux 12 (bookworm)".into(),
                hostname: "pi-1".into(),
                capacity: Resources {
                    memory_bytes: 4 << 30,
                    cpu_millis: 4000,
                    pods: 110,
                },
                allocatable: Resources {
                    memory_bytes: 3 << 30,
                    cpu_millis: 4000,
                    pods: 110,
                },
                labels: BTreeMap::from([("site".into(), "barn".into())]),
                engine: EngineInfo {
                    wasmtime_version: "48.0.8".into(),
                    target: "aarch64-unknown-linux-gnu".into(),
                    compatibility_key: "00ff".into(),
                    can_compile: true,
                },
                addresses: vec![NodeAddress::internal([192, 168, 1, 20].into())],
                tunnel: Some(TunnelInfo {
                    public_key: vec![0x30, 0x59, 7, 7],
                    port: 10260,
                }),
            }),
        })
    }

    #[test]
    fn a_birth_with_full_node_info_survives_a_round_trip() {
        assert_eq!(decode(&encode(&birth())), Ok(birth()));
    }

    #[test]
    fn a_birth_from_before_node_addresses_still_decodes() {
        let Message::NodeState(mut state) = birth() else {
            unreachable!()
        };
        if let Some(info) = state.info.as_mut() {
            info.addresses.clear();
            info.tunnel = None;
        }
        let mut bytes = encode(&Message::NodeState(state.clone()));
        // An empty Vec and a None are one byte each; an older agent's birth ends before them.
        assert_eq!(bytes.pop(), Some(0));
        assert_eq!(bytes.pop(), Some(0));
        assert_eq!(decode(&bytes), Ok(Message::NodeState(state)));
    }

    #[test]
    fn a_birth_from_before_tunnels_still_decodes() {
        let Message::NodeState(mut state) = birth() else {
            unreachable!()
        };
        if let Some(info) = state.info.as_mut() {
            info.tunnel = None;
        }
        let mut bytes = encode(&Message::NodeState(state.clone()));
        // A None is one byte; an agent from before tunnels ends its birth before it.
        assert_eq!(bytes.pop(), Some(0));
        assert_eq!(decode(&bytes), Ok(Message::NodeState(state)));
    }

    #[test]
    fn an_older_server_reads_a_birth_with_a_tunnel_up_to_its_addresses() {
        #[derive(Debug, PartialEq, Deserialize)]
        struct OlderInfo {
            agent_version: String,
            architecture: String,
            operating_system: String,
            kernel_version: String,
            os_image: String,
            hostname: String,
            capacity: Resources,
            allocatable: Resources,
            labels: BTreeMap<String, String>,
            engine: EngineInfo,
            #[serde(default, deserialize_with = "crate::tail::or_default")]
            addresses: Vec<NodeAddress>,
        }
        #[derive(Debug, PartialEq, Deserialize)]
        struct OlderState {
            epoch: u64,
            online: bool,
            info: Option<OlderInfo>,
        }
        let Message::NodeState(state) = birth() else {
            unreachable!()
        };
        let bytes = postcard::to_stdvec(&state).unwrap_or_default();
        let older: OlderState = postcard::from_bytes(&bytes).expect("an older server decodes it");
        let info = older.info.expect("info");
        assert_eq!(info.hostname, "pi-1");
        assert_eq!(
            info.addresses,
            vec![NodeAddress::internal([192, 168, 1, 20].into())]
        );
    }

    #[test]
    fn a_will_carries_no_info() {
        let will = Message::NodeState(NodeState {
            epoch: 9,
            online: false,
            info: None,
        });
        assert_eq!(decode(&encode(&will)), Ok(will));
    }
}
