//! Classifying what arrives on the agent's subscriptions.
//!
//! Pure: a topic and a payload in, an [`Inbound`] (or the reason to drop it) out. Every
//! payload goes through `wasmfleet_protocol::decode`, so oversize, garbage and
//! future-version payloads are refused here with a reason the caller logs.

use wasmfleet_protocol::artifact::ArtifactOffer;
use wasmfleet_protocol::blob::BlobReply;
use wasmfleet_protocol::ingress_tls::IngressCertificates;
use wasmfleet_protocol::logs::NodeCommand;
use wasmfleet_protocol::node::ServerState;
use wasmfleet_protocol::peers::PeerTable;
use wasmfleet_protocol::pod::{DesiredIndex, DesiredPod, DesiredPods, StatusAck};
use wasmfleet_protocol::routes::RouteTable;
use wasmfleet_protocol::service::ServiceTable;
use wasmfleet_protocol::topic::{self, Down};
use wasmfleet_protocol::tunnel::NodeCertificate;
use wasmfleet_protocol::{Message, decode};

/// A message the agent acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// The node's desired pods in one snapshot (as older servers send them).
    Desired(DesiredPods),
    /// The index of the node's desired pods.
    DesiredIndex(DesiredIndex),
    /// One desired pod, or `None` when its retained message was cleared.
    DesiredPod {
        /// The uid named by the topic.
        uid: String,
        /// The pod.
        pod: Option<DesiredPod>,
    },
    /// The server persisted a status report.
    StatusAck(StatusAck),
    /// A module chunk.
    BlobReply(BlobReply),
    /// The server's answer to an artifact request.
    ArtifactOffer(ArtifactOffer),
    /// A command (log requests).
    Command(NodeCommand),
    /// The node's certificate (a [`NodeCommand::Certificate`], handled by the link itself).
    Certificate(NodeCertificate),
    /// The server's presence.
    ServerState(ServerState),
    /// The table of Services.
    Services(ServiceTable),
    /// The table of HTTP routes.
    Routes(RouteTable),
    /// The table of peers.
    Peers(PeerTable),
    /// The ingress's certificates, or `None` when the server cleared them.
    IngressCertificates(Option<IngressCertificates>),
}

/// Classifies a publish received by `node`; `Err` says why it is dropped.
pub fn classify(node: &str, topic: &str, payload: &[u8]) -> Result<Inbound, String> {
    if topic == topic::SERVER_STATE {
        return match decode(payload) {
            Ok(Message::ServerState(state)) => Ok(Inbound::ServerState(state)),
            Ok(other) => Err(unexpected(topic, &other)),
            Err(err) => Err(format!("undecodable payload on {topic}: {err}")),
        };
    }
    if topic == topic::SERVICES {
        return match decode(payload) {
            Ok(Message::Services(table)) => Ok(Inbound::Services(table)),
            Ok(other) => Err(unexpected(topic, &other)),
            Err(err) => Err(format!("undecodable payload on {topic}: {err}")),
        };
    }
    if topic == topic::ROUTES {
        return match decode(payload) {
            Ok(Message::Routes(table)) => Ok(Inbound::Routes(table)),
            Ok(other) => Err(unexpected(topic, &other)),
            Err(err) => Err(format!("undecodable payload on {topic}: {err}")),
        };
    }
    if topic == topic::PEERS {
        return match decode(payload) {
            Ok(Message::Peers(table)) => Ok(Inbound::Peers(table)),
            Ok(other) => Err(unexpected(topic, &other)),
            Err(err) => Err(format!("undecodable payload on {topic}: {err}")),
        };
    }
    if let Some(uid) = topic::parse_node_pod(node, topic) {
        return desired_pod(uid, topic, payload);
    }
    let Some(kind) = topic::parse_node_inbound(node, topic) else {
        return Err(format!("unexpected topic {topic}"));
    };
    if kind == Down::Tls && payload.is_empty() {
        return Ok(Inbound::IngressCertificates(None));
    }
    let message =
        decode(payload).map_err(|err| format!("undecodable payload on {topic}: {err}"))?;
    match (kind, message) {
        (Down::Desired, Message::Desired(desired)) => Ok(Inbound::Desired(desired.into())),
        (Down::Desired, Message::DesiredIndex(index)) => Ok(Inbound::DesiredIndex(index)),
        (Down::Ack, Message::StatusAck(ack)) => Ok(Inbound::StatusAck(ack)),
        (Down::Blob, Message::BlobReply(reply)) => Ok(Inbound::BlobReply(reply)),
        (Down::Blob, Message::ArtifactOffer(offer)) => Ok(Inbound::ArtifactOffer(offer)),
        (Down::Cmd, Message::Command(NodeCommand::Certificate(cert))) => {
            Ok(Inbound::Certificate(cert))
        }
        (Down::Cmd, Message::Command(command)) => Ok(Inbound::Command(command)),
        (Down::Tls, Message::IngressCertificates(certs)) => {
            Ok(Inbound::IngressCertificates(Some(certs)))
        }
        (_, other) => Err(unexpected(topic, &other)),
    }
}

/// A per-pod topic: an empty payload is the clearing of its retained message.
fn desired_pod(uid: &str, topic: &str, payload: &[u8]) -> Result<Inbound, String> {
    let pod = if payload.is_empty() {
        None
    } else {
        match decode(payload) {
            Ok(Message::DesiredPodV3(pod)) => Some(pod),
            Ok(Message::DesiredPodV2(pod)) => Some(pod.into()),
            Ok(Message::DesiredPod(pod)) => Some(pod.into()),
            Ok(other) => return Err(unexpected(topic, &other)),
            Err(err) => return Err(format!("undecodable payload on {topic}: {err}")),
        }
    };
    Ok(Inbound::DesiredPod {
        uid: uid.to_owned(),
        pod,
    })
}

fn unexpected(topic: &str, message: &Message) -> String {
    let name = format!("{message:?}");
    let name = name.split('(').next().unwrap_or("?");
    format!("unexpected message {name} on {topic}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmfleet_protocol::encode;
    use wasmfleet_protocol::node::Heartbeat;

    #[test]
    fn a_desired_snapshot_on_the_desired_topic_is_accepted() {
        let desired = DesiredPods {
            revision: 3,
            pods: vec![],
        };
        let payload = encode(&Message::Desired(desired.clone().into()));
        let topic = topic::down("pi-1", Down::Desired);
        assert_eq!(
            classify("pi-1", &topic, &payload),
            Ok(Inbound::Desired(desired))
        );
    }

    #[test]
    fn an_index_and_pods_and_their_clearing_are_accepted_on_their_topics() {
        let index = DesiredIndex {
            revision: 3,
            pods: vec![],
        };
        let payload = encode(&Message::DesiredIndex(index.clone()));
        let topic = topic::down("pi-1", Down::Desired);
        assert_eq!(
            classify("pi-1", &topic, &payload),
            Ok(Inbound::DesiredIndex(index.clone()))
        );
        let pod_topic = topic::down_pod("pi-1", "u-1");
        assert_eq!(
            classify("pi-1", &pod_topic, &[]),
            Ok(Inbound::DesiredPod {
                uid: "u-1".into(),
                pod: None
            })
        );
        // An index is not a pod, and another node's pod is not ours.
        assert!(classify("pi-1", &pod_topic, &payload).is_err());
        assert!(classify("pi-2", &pod_topic, &[]).is_err());
    }

    #[test]
    fn a_pod_from_a_server_before_probes_is_accepted_without_probes() {
        use wasmfleet_protocol::pod::{PodAssignment, RestartPolicy, v2};
        let pod = PodAssignment {
            config: Default::default(),
            uid: "u-1".into(),
            namespace: "default".into(),
            name: "web".into(),
            restart_policy: RestartPolicy::Always,
            containers: vec![],
            network: None,
        };
        let payload = encode(&Message::DesiredPodV2(v2::DesiredPod {
            revision: 4,
            pod: pod.clone().into(),
        }));
        assert_eq!(
            classify("pi-1", &topic::down_pod("pi-1", "u-1"), &payload),
            Ok(Inbound::DesiredPod {
                uid: "u-1".into(),
                pod: Some(DesiredPod { revision: 4, pod })
            })
        );
    }

    #[test]
    fn server_state_is_accepted_on_its_shared_topic() {
        let state = ServerState {
            online: true,
            epoch: 4,
        };
        let payload = encode(&Message::ServerState(state.clone()));
        assert_eq!(
            classify("pi-1", topic::SERVER_STATE, &payload),
            Ok(Inbound::ServerState(state))
        );
    }

    #[test]
    fn a_message_on_the_wrong_topic_is_dropped() {
        let payload = encode(&Message::StatusAck(StatusAck { epoch: 1, seq: 1 }));
        let topic = topic::down("pi-1", Down::Desired);
        let err = classify("pi-1", &topic, &payload).err().unwrap_or_default();
        assert!(err.contains("StatusAck"), "{err}");
        let heartbeat = encode(&Message::Heartbeat(Heartbeat {
            epoch: 1,
            unix_ms: 1,
        }));
        assert!(classify("pi-1", topic::SERVER_STATE, &heartbeat).is_err());
    }

    #[test]
    fn garbage_empty_and_future_payloads_are_dropped_with_a_reason() {
        let topic = topic::down("pi-1", Down::Cmd);
        for payload in [&b"garbage"[..], &[], &[7, 0, 0]] {
            let err = classify("pi-1", &topic, payload).err().unwrap_or_default();
            assert!(err.contains("undecodable"), "{err}");
        }
    }

    #[test]
    fn a_certificate_on_the_command_topic_is_accepted() {
        let cert = NodeCertificate {
            cert_der: vec![1],
            ca_der: vec![2],
        };
        let payload = encode(&Message::Command(NodeCommand::Certificate(cert.clone())));
        let topic = topic::down("pi-1", Down::Cmd);
        assert_eq!(
            classify("pi-1", &topic, &payload),
            Ok(Inbound::Certificate(cert))
        );
        assert!(classify("pi-1", &topic::down("pi-1", Down::Ack), &payload).is_err());
    }

    #[test]
    fn another_nodes_topic_is_dropped() {
        let payload = encode(&Message::StatusAck(StatusAck { epoch: 1, seq: 1 }));
        let topic = topic::down("pi-2", Down::Ack);
        assert!(classify("pi-1", &topic, &payload).is_err());
    }
}
