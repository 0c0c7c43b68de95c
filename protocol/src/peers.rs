//! The table of peers: every node that carries pod traffic for the others, where its pods
//! live (its pod CIDR), where its tunnel listens, and the key its certificate must carry.
//!
//! The server publishes it retained on [`crate::topic::PEERS`]; each agent reads it to
//! reach pods on other nodes. A connection to a peer is mutually authenticated TLS with
//! the node certificates the cluster CA issues; a peer is accepted only when its
//! certificate's key is the one this table lists for its name ([`Peer::key_sha256`]), so a
//! deleted node (gone from the table) or a certificate for a replaced key is refused at
//! once, without waiting for expiry.
//!
//! A peer without an [`Peer::address`] accepts no connections (it can only dial out,
//! behind NAT): the others reach it through the server's relay ([`PeerTable::relay_port`]),
//! asked for over MQTT ([`RelayDial`]). The relay forwards the peers' TLS ciphertext.

use std::net::{Ipv4Addr, SocketAddr};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Every peer of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerTable {
    /// Increases with every change the server publishes.
    pub revision: u64,
    /// The port of the server's relay (0: no relay).
    pub relay_port: u16,
    /// The peers, sorted by name.
    pub peers: Vec<Peer>,
    /// The relay's host when the server names one (`--relay-address`: the relay is not
    /// where the agents reach the broker, as with an external broker); empty: the broker's
    /// host. Appended after the first release of the table.
    #[serde(default, deserialize_with = "crate::tail::or_default")]
    pub relay_host: String,
}

/// One node that carries pod traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// The node's name (its certificate's name).
    pub node: String,
    /// The node's pod CIDR: every pod IP in it runs there.
    pub pod_cidr: Ipv4Net,
    /// Where the node's tunnel listens (its InternalIP and tunnel port); `None`: it
    /// accepts no connections and is reached through the relay.
    pub address: Option<SocketAddr>,
    /// SHA-256 of the SubjectPublicKeyInfo of the node's tunnel key.
    pub key_sha256: [u8; 32],
}

impl PeerTable {
    /// The peer whose pod CIDR holds `pod_ip`.
    pub fn owner_of(&self, pod_ip: Ipv4Addr) -> Option<&Peer> {
        self.peers.iter().find(|p| p.pod_cidr.contains(&pod_ip))
    }

    /// The peer named `node`.
    pub fn get(&self, node: &str) -> Option<&Peer> {
        self.peers.iter().find(|p| p.node == node)
    }

    /// Where the relay is, for an agent that reaches the broker at `broker_host`; `None`
    /// when the server runs no relay.
    pub fn relay<'a>(&'a self, broker_host: &'a str) -> Option<(&'a str, u16)> {
        let host = match self.relay_host.as_str() {
            "" => broker_host,
            named => named,
        };
        (self.relay_port != 0).then_some((host, self.relay_port))
    }
}

/// SHA-256 of a certificate's SubjectPublicKeyInfo: what [`Peer::key_sha256`] pins.
#[cfg(feature = "client")]
pub fn key_sha256(cert: &rustls::pki_types::CertificateDer<'_>) -> Option<[u8; 32]> {
    use sha2::{Digest, Sha256};
    let cert = webpki::EndEntityCert::try_from(cert).ok()?;
    Some(Sha256::digest(cert.subject_public_key_info().as_ref()).into())
}

/// The peer of `table` that `cert` (already verified against the cluster CA) belongs to:
/// the one whose pinned key it carries, if it also names that peer.
#[cfg(feature = "client")]
pub fn certified_peer<'t>(
    table: &'t PeerTable,
    cert: &rustls::pki_types::CertificateDer<'_>,
) -> Option<&'t Peer> {
    let hash = key_sha256(cert)?;
    let peer = table.peers.iter().find(|p| p.key_sha256 == hash)?;
    names_node(cert, &peer.node).then_some(peer)
}

/// Whether `cert` names the node `node` (its DNS subject alternative name).
#[cfg(feature = "client")]
pub fn names_node(cert: &rustls::pki_types::CertificateDer<'_>, node: &str) -> bool {
    let Ok(name) = rustls::pki_types::ServerName::try_from(node) else {
        return false;
    };
    webpki::EndEntityCert::try_from(cert)
        .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&name).is_ok())
}

/// Asks a node to dial the relay for a session another node opened to it (a
/// [`crate::logs::NodeCommand`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayDial {
    /// The session, chosen by the server.
    pub session: u64,
    /// The node that opened it (the peer the inner TLS must authenticate).
    pub from: String,
}

/// The first line a node sends on a relay connection, after the outer TLS handshake.
pub mod relay_line {
    /// The longest first line either side accepts.
    pub const MAX_LEN: usize = 256;

    /// Opens a session to `node`.
    pub fn connect(node: &str) -> String {
        format!("CONNECT {node}\n")
    }

    /// Joins session `session`, opened to this node.
    pub fn accept(session: u64) -> String {
        format!("ACCEPT {session}\n")
    }

    /// What a first line asks for.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Request {
        /// Open a session to this node.
        Connect(String),
        /// Join this session.
        Accept(u64),
    }

    /// Parses a first line (without its newline).
    pub fn parse(line: &str) -> Option<Request> {
        match line.split_once(' ')? {
            ("CONNECT", node) if crate::names::validate_node_name(node).is_ok() => {
                Some(Request::Connect(node.to_owned()))
            }
            ("ACCEPT", session) => session.parse().ok().map(Request::Accept),
            _ => None,
        }
    }

    /// The relay's answer once the session is spliced: from here on, bytes are the peers'.
    pub const READY: &str = "OK\n";
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{Message, decode, encode};

    fn table() -> PeerTable {
        PeerTable {
            revision: 4,
            relay_port: 10261,
            peers: vec![
                Peer {
                    node: "pi-1".into(),
                    pod_cidr: "10.42.0.0/24".parse().unwrap(),
                    address: Some("192.168.1.20:10260".parse().unwrap()),
                    key_sha256: [7; 32],
                },
                Peer {
                    node: "pi-2".into(),
                    pod_cidr: "10.42.1.0/24".parse().unwrap(),
                    address: None,
                    key_sha256: [9; 32],
                },
            ],
            relay_host: String::new(),
        }
    }

    #[test]
    fn the_relay_is_at_the_brokers_host_unless_the_table_names_one() {
        let mut table = table();
        assert_eq!(table.relay("broker.lan"), Some(("broker.lan", 10261)));
        table.relay_host = "relay.example.com".into();
        assert_eq!(
            table.relay("broker.lan"),
            Some(("relay.example.com", 10261))
        );
        let message = Message::Peers(table.clone());
        assert_eq!(decode(&encode(&message)), Ok(message));
        table.relay_port = 0;
        assert_eq!(table.relay("broker.lan"), None);
    }

    #[test]
    fn a_table_of_the_first_release_reads_with_the_brokers_host() {
        #[derive(Serialize)]
        struct OldTable {
            revision: u64,
            relay_port: u16,
            peers: Vec<Peer>,
        }
        let new = table();
        let old = OldTable {
            revision: new.revision,
            relay_port: new.relay_port,
            peers: new.peers.clone(),
        };
        let bytes = postcard::to_allocvec(&old).expect("encodes");
        let read: PeerTable = postcard::from_bytes(&bytes).expect("decodes");
        assert_eq!(read, new);
    }

    #[test]
    fn a_table_survives_the_wire_and_finds_owners() {
        let message = Message::Peers(table());
        assert_eq!(decode(&encode(&message)), Ok(message));
        let table = table();
        assert_eq!(
            table.owner_of("10.42.1.9".parse().unwrap()).unwrap().node,
            "pi-2"
        );
        assert!(table.owner_of("10.42.2.9".parse().unwrap()).is_none());
        assert_eq!(
            table.get("pi-1").unwrap().pod_cidr.to_string(),
            "10.42.0.0/24"
        );
    }

    #[test]
    fn relay_lines_parse_only_what_is_sent() {
        use relay_line::{Request, accept, connect, parse};
        assert_eq!(
            parse(connect("pi-2").trim_end()),
            Some(Request::Connect("pi-2".into()))
        );
        assert_eq!(parse(accept(42).trim_end()), Some(Request::Accept(42)));
        assert_eq!(parse("CONNECT ../etc"), None);
        assert_eq!(parse("ACCEPT x"), None);
        assert_eq!(parse("GET / HTTP/1.1"), None);
        assert_eq!(parse(""), None);
    }
}
