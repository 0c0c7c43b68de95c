//! The tunnel between two agents, over real sockets and real TLS: a connection to a pod on
//! the other node is a stream of the one link between the nodes, reaches the pod from the
//! caller's pod IP, and only pods of the serving node can be reached; a node whose key is
//! not the one the table pins is refused. (The relay path runs in the e2e suite:
//! `tests/tests/cross_node.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    PublicKeyData,
};
use rustls::pki_types::{CertificateDer, UnixTime};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wasmfleet_agent::identity::certificate::{TunnelIdentity, TunnelKey, check};
use wasmfleet_agent::net::peers::{PeerError, Peers};
use wasmfleet_agent::net::tunnel::StreamError;
use wasmfleet_protocol::peers::{Peer, PeerTable};
use wasmfleet_protocol::tunnel::NodeCertificate;

struct Ca {
    cert: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    dir: tempfile::TempDir,
}

/// A tunnel key's public half, for rcgen to certify (ECDSA P-256: the SPKI ends with the
/// uncompressed point).
struct Spki(Vec<u8>);

impl PublicKeyData for Spki {
    fn der_bytes(&self) -> &[u8] {
        &self.0[self.0.len() - 65..]
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap().der().clone();
        Ca {
            cert,
            issuer: Issuer::new(params, key),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A node's identity (a fresh tunnel key, certified for `node`) and its key's pin.
    fn node(&self, node: &str) -> (Arc<TunnelIdentity>, [u8; 32]) {
        let path = self.dir.path().join(format!("{}.key", rand_name()));
        let key = TunnelKey::load_or_create(&path).unwrap();
        let mut params = CertificateParams::new(vec![node.to_owned()]).unwrap();
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let spki = Spki(key.public_key().to_vec());
        let cert = params.signed_by(&spki, &self.issuer).unwrap();
        let offered = NodeCertificate {
            cert_der: cert.der().to_vec(),
            ca_der: self.cert.to_vec(),
        };
        let identity = check(node, &key, &offered, &[], UnixTime::now()).unwrap();
        let pin: [u8; 32] = Sha256::digest(key.public_key()).into();
        (Arc::new(identity), pin)
    }
}

fn rand_name() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("key-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn peer(node: &str, cidr: &str, port: Option<u16>, pin: [u8; 32]) -> Peer {
    Peer {
        node: node.into(),
        pod_cidr: cidr.parse().unwrap(),
        address: port.map(|p| SocketAddr::from(([127, 0, 0, 1], p))),
        key_sha256: pin,
    }
}

fn peers(node: &str, credentials: Arc<TunnelIdentity>, table: &PeerTable) -> Peers {
    let (tx, rx) = watch::channel(Some(credentials));
    // The receiver keeps the last value once the sender is gone.
    drop(tx);
    let peers = Peers::new(
        node,
        rx,
        "127.0.0.1",
        None,
        TaskTracker::new(),
        CancellationToken::new(),
    );
    peers.replace(table.clone());
    peers
}

/// node-a (dials out only) and node-b (listening), peers with pod ranges `10.{net}.0.0/24`
/// and `10.{net}.1.0/24`, with certificates of one CA: the table and both ends.
async fn two_peers(net: u8) -> (PeerTable, Peers, Peers) {
    let ca = Ca::new();
    let (a_creds, a_pin) = ca.node("node-a");
    let (b_creds, b_pin) = ca.node("node-b");
    let b_port = free_port();
    let table = PeerTable {
        revision: 1,
        relay_port: 0,
        peers: vec![
            peer("node-a", &format!("10.{net}.0.0/24"), None, a_pin),
            peer("node-b", &format!("10.{net}.1.0/24"), Some(b_port), b_pin),
        ],
        relay_host: String::new(),
    };
    let a = peers("node-a", a_creds, &table);
    let b = peers("node-b", b_creds, &table);
    tokio::spawn(b.clone().listen(b_port));
    (table, a, b)
}

/// An echo "pod" at `alias:port` that prefixes what it echoes with the caller's address.
async fn pod(alias: Ipv4Addr, port: u16) {
    let listener = TcpListener::bind((alias, port)).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, from)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0; 64];
                let n = conn.read(&mut buf).await.unwrap_or(0);
                let answer = format!("{} {}", from.ip(), String::from_utf8_lossy(&buf[..n]));
                let _ = conn.write_all(answer.as_bytes()).await;
            });
        }
    });
}

async fn ask(
    peers: &Peers,
    destination: &str,
    source: &str,
    text: &str,
) -> Result<String, PeerError> {
    let destination: SocketAddrV4 = destination.parse().unwrap();
    let mut stream = peers
        .open(destination, Some(source.parse().unwrap()))
        .await?;
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer))
        .await
        .expect("an answer in time")
        .unwrap();
    Ok(answer)
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_reach_the_peers_pods_from_the_callers_pod_ip_and_nothing_else() {
    let (table, a, _b) = two_peers(77).await;
    pod(Ipv4Addr::new(127, 77, 1, 5), 7000).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Two connections, one link: each reaches the pod, which sees the caller's pod alias.
    for text in ["hello", "again"] {
        let answer = ask(&a, "10.77.1.5:7000", "10.77.0.9", text).await.unwrap();
        assert_eq!(answer, format!("127.77.0.9 {text}"));
    }

    // A source outside node-a's range is not trusted: the pod sees the node, not it.
    let answer = ask(&a, "10.77.1.5:7000", "10.77.1.99", "spoof")
        .await
        .unwrap();
    assert_eq!(answer, "127.0.0.1 spoof");

    // A closed port on the peer is refused with a reason.
    let err = ask(&a, "10.77.1.5:7001", "10.77.0.9", "x")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PeerError::Stream(StreamError::Refused(why)) if why.contains("refused")),
        "{err}"
    );

    // node-b refuses to connect anything outside its own pod range, even when asked by a
    // peer that believes node-b owns it.
    let mut lying = table.clone();
    lying.peers[1].pod_cidr = "10.77.2.0/23".parse().unwrap();
    a.replace(lying);
    let err = ask(&a, "10.77.2.7:22", "10.77.0.9", "x").await.unwrap_err();
    assert!(
        matches!(&err, PeerError::Stream(StreamError::Refused(why)) if why.contains("not a pod of this node")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_whose_key_is_not_the_pinned_one_is_refused_both_ways() {
    let ca = Ca::new();
    let (a_creds, a_pin) = ca.node("node-a");
    let (b_creds, b_pin) = ca.node("node-b");
    // A second certificate for node-a's name, with another key (a stolen old identity).
    let (impostor, _) = ca.node("node-a");
    let b_port = free_port();
    let table = PeerTable {
        revision: 1,
        relay_port: 0,
        peers: vec![
            peer("node-a", "10.78.0.0/24", None, a_pin),
            peer("node-b", "10.78.1.0/24", Some(b_port), b_pin),
        ],
        relay_host: String::new(),
    };
    let b = peers("node-b", b_creds, &table);
    tokio::spawn(b.clone().listen(b_port));
    pod(Ipv4Addr::new(127, 78, 1, 5), 7000).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let real = peers("node-a", a_creds, &table);
    assert!(
        ask(&real, "10.78.1.5:7000", "10.78.0.9", "hi")
            .await
            .is_ok()
    );
    // node-b is re-keyed: the open link to its old key is dropped with the table that says
    // so, and the next dial refuses the certificate node-b still presents.
    let mut rekeyed = table.clone();
    rekeyed.peers[1].key_sha256 = [2; 32];
    real.replace(rekeyed);
    let err = ask(&real, "10.78.1.5:7000", "10.78.0.9", "hi")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PeerError::Unreachable { why, .. } if why.contains("another key")),
        "{err}"
    );

    let fake = peers("node-a", impostor, &table);
    let err = ask(&fake, "10.78.1.5:7000", "10.78.0.9", "hi")
        .await
        .unwrap_err();
    assert!(
        matches!(err, PeerError::Unreachable { .. } | PeerError::Stream(_)),
        "{err}"
    );

    // And a dialer checks the peer's key: node-b's table entry pinned to another key.
    let mut wrong = table.clone();
    wrong.peers[1].key_sha256 = [1; 32];
    let (a_creds, _) = ca.node("node-a");
    let dialer = peers("node-a", a_creds, &wrong);
    let err = ask(&dialer, "10.78.1.5:7000", "10.78.0.9", "hi")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PeerError::Unreachable { why, .. } if why.contains("another key")),
        "{err}"
    );
}

/// A "pod" at `alias:port` that answers `ok` to the first bytes and then keeps the
/// connection open until the caller closes it.
async fn holding_pod(alias: Ipv4Addr, port: u16) {
    let listener = TcpListener::bind((alias, port)).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0; 64];
                let _ = conn.read(&mut buf).await;
                let _ = conn.write_all(b"ok").await;
                while conn.read(&mut buf).await.is_ok_and(|n| n > 0) {}
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_that_leaves_the_table_loses_the_tunnels_it_was_served() {
    let (table, a, b) = two_peers(79).await;
    holding_pod(Ipv4Addr::new(127, 79, 1, 5), 7000).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut stream = a
        .open(
            "10.79.1.5:7000".parse().unwrap(),
            Some("10.79.0.9".parse().unwrap()),
        )
        .await
        .unwrap();
    stream.write_all(b"hi").await.unwrap();
    let mut answer = [0; 2];
    stream.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"ok");
    let mut more = [0; 1];
    let open = tokio::time::timeout(Duration::from_millis(300), stream.read(&mut more)).await;
    assert!(
        open.is_err(),
        "the stream stays open while node-a is a peer"
    );

    // node-a is deleted: node-b's new table no longer lists it, and its stream ends.
    let mut without_a = table.clone();
    without_a.peers.remove(0);
    b.replace(without_a);
    let ended = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut more))
        .await
        .expect("the tunnel is cut within 5 s");
    assert!(matches!(ended, Ok(0) | Err(_)), "{ended:?}");
}
