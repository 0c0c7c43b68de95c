//! A node's tunnel identity: the key it reports at birth and the certificate the server
//! signs for it.
//!
//! Every agent holds its own ECDSA P-256 key. It reports the public half in its birth
//! ([`crate::node::NodeInfo::tunnel`]); the server answers every birth that carries one with
//! a [`NodeCertificate`] from the cluster CA, bound to the node's name (subject CN and SAN
//! DNS name), sent as [`crate::logs::NodeCommand::Certificate`] on the node's `down/cmd`
//! topic. Agents present that certificate to each other on their tunnel port (mutual TLS).

use serde::{Deserialize, Serialize};

/// What a node says about its tunnel in its birth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelInfo {
    /// The SubjectPublicKeyInfo (DER) of the node's ECDSA P-256 tunnel key.
    pub public_key: Vec<u8>,
    /// The port of the agent's tunnel listener; 0 when it has none (the node can only dial
    /// out, and is reached through the relay).
    pub port: u16,
}

/// The node's certificate, signed by the cluster CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCertificate {
    /// The node's certificate (DER): subject CN and SAN DNS name = node name, the node's
    /// reported public key, serverAuth and clientAuth.
    pub cert_der: Vec<u8>,
    /// The cluster CA that signed it (DER), the root agents trust each other through.
    pub ca_der: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::NodeCommand;
    use crate::{Message, decode, encode};

    #[test]
    fn a_certificate_command_survives_a_round_trip() {
        let message = Message::Command(NodeCommand::Certificate(NodeCertificate {
            cert_der: vec![0x30, 1, 2, 3],
            ca_der: vec![0x30, 4, 5],
        }));
        assert_eq!(decode(&encode(&message)), Ok(message));
    }

    #[test]
    fn the_certificate_command_is_appended_after_the_log_commands() {
        // Older agents know variants 0 (Logs) and 1 (CancelLogs); the certificate is 2, so
        // their decoding fails cleanly instead of misreading it.
        let bytes = postcard::to_stdvec(&NodeCommand::Certificate(NodeCertificate {
            cert_der: vec![],
            ca_der: vec![],
        }))
        .unwrap_or_default();
        assert_eq!(bytes.first(), Some(&2));
    }
}
