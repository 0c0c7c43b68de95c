//! Per-node identity (issue 8, item 2): the join token only bootstraps. A node's name is
//! bound to the node's own password at its first login; a client with the join token alone
//! can neither log in under an existing node's name (and receive its pods) nor kick its
//! agent off. A re-flashed device is refused until an admin deletes the Node.
//!
//! Node certificates (issue 10, section 5): every agent gets a certificate from the cluster
//! CA for its own tunnel key and name, the ground of agent-to-agent mutual TLS.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, DnsName, PrivateKeyDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use wasmfleet_protocol::topic::{self, Up};
use wasmfleet_tests::cluster::{AgentLaunch, CONVERGE, free_port, node_ready, phase};
use wasmfleet_tests::manifests::pod;
use wasmfleet_tests::mqtt::publish_all;
use wasmfleet_tests::{Cluster, ClusterOptions, wait_for};

/// Logs in as `node` with `password` (client id = node name, like an agent) and publishes
/// one heartbeat-topic message; `Err` when the broker refuses the login.
fn log_in_as(cluster: &Cluster, node: &str, password: &str) -> Result<(), String> {
    publish_all(
        cluster.mqtt(),
        node,
        node,
        password,
        &topic::up(node, Up::Heartbeat),
        &[b"x".to_vec()],
    )
}

#[test]
fn the_join_token_cannot_impersonate_a_joined_node_and_a_reflashed_device_needs_the_admin() {
    let mut cluster = Cluster::start(ClusterOptions::default());
    let first_uid = cluster.node("node-a").expect("node-a")["metadata"]["uid"].clone();

    // An intruder holding the join token, with a password of its own, under node-a's name.
    let intruder = format!("{}:intruder-password-0123456789", cluster.node_token());
    let refused = log_in_as(&cluster, "node-a", &intruder);
    assert!(refused.is_err(), "the broker must refuse the login");
    let bare_token = log_in_as(&cluster, "node-a", cluster.node_token());
    assert!(
        bare_token.is_err(),
        "the bare join token is no node password"
    );

    // The real agent was not kicked off: it never saw its connection drop, and it still
    // runs what the server sends it.
    std::thread::sleep(Duration::from_secs(1));
    let agent_log = cluster.agent_output("node-a");
    assert!(
        !agent_log.contains("connection to the broker lost"),
        "the real agent lost its session:\n{agent_log}"
    );
    cluster.push("hello", "hello:v1");
    cluster.apply(&pod("after-intrusion", "hello:v1", &[], "Never"));
    cluster.wait_pod("after-intrusion", "to succeed on node-a", |p| {
        phase(p) == "Succeeded" && p["spec"]["nodeName"] == "node-a"
    });

    if cluster.uses_mosquitto() {
        // Mosquitto keeps node identities in its own password file; the rest is the
        // embedded broker's join flow.
        return;
    }
    // A re-flashed device: same name, its node password is gone. It joins with the token
    // and a fresh password, and is refused: the name belongs to the old password.
    cluster.kill_agent("node-a");
    std::fs::remove_file(cluster.agent_dir("node-a").join("node-password"))
        .expect("remove the node password");
    cluster.restart_agent("node-a");
    wait_for("the re-flashed agent to be refused", CONVERGE, || {
        let log = cluster.agent_output("node-a");
        if log.contains("refused this node's login") {
            Ok(())
        } else {
            Err(log)
        }
    });
    assert_ne!(node_ready(&cluster.node("node-a").expect("node-a")), "True");

    // The admin deletes the Node with the real kubectl: the name is free to join again.
    let deleted = cluster.kubectl(&["delete", "node", "node-a"]);
    assert!(deleted.success, "{}{}", deleted.stdout, deleted.stderr);
    cluster.wait_node_ready("node-a");
    let node = cluster.node("node-a").expect("node-a joined again");
    assert_ne!(node["metadata"]["uid"], first_uid, "a new Node object");

    // Rotating the join token: the joined node reconnects with its own password; the old
    // token no longer admits a new node, the new one does.
    let old_token = cluster.node_token().to_owned();
    cluster.restart_server_with(&["--rotate-join-token"]);
    assert_ne!(cluster.node_token(), old_token);
    cluster.wait_node_ready("node-a");
    let newcomer = "newcomer-password-0123456789";
    assert!(log_in_as(&cluster, "node-new", &format!("{old_token}:{newcomer}")).is_err());
    let with_new_token = format!("{}:{newcomer}", cluster.node_token());
    assert_eq!(log_in_as(&cluster, "node-new", &with_new_token), Ok(()));
}

#[test]
fn the_node_credential_cannot_be_set_or_changed_through_the_api() {
    let cluster = Cluster::start(ClusterOptions::default());
    let annotate = cluster.kubectl(&[
        "annotate",
        "--overwrite",
        "node",
        "node-a",
        "wasmfleet.io/node-password-hash=sha256:00",
    ]);
    assert!(!annotate.success, "{}", annotate.stdout);
    assert!(
        annotate.stderr.contains("wasmfleet.io/node-password-hash"),
        "{}",
        annotate.stderr
    );
    // Other annotations are the user's.
    let mine = cluster.kubectl(&["annotate", "node", "node-a", "team=green"]);
    assert!(mine.success, "{}{}", mine.stdout, mine.stderr);
}

#[test]
fn with_approval_required_a_new_node_gets_no_pods_until_an_admin_removes_its_taint() {
    // With the embedded broker the join taints the node; with Mosquitto (which admits
    // nodes by its own password file) the node's first birth does.
    let mut cluster = Cluster::start(ClusterOptions::default());
    cluster.restart_server_with(&["--node-approval"]);
    cluster.push("hello", "hello:v1");
    cluster.start_agent("node-b", "");
    cluster.wait_node_ready("node-b");
    let tainted = |name: &str| {
        cluster.node(name).expect("node")["spec"]["taints"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["key"] == "node.wasmfleet.io/unapproved"))
    };
    assert!(
        tainted("node-b"),
        "a node that joins now waits for approval"
    );
    assert!(
        !tainted("node-a"),
        "nodes that joined before are not affected"
    );

    // A pod that can only go to node-b is not scheduled while it is unapproved.
    let manifest = format!(
        "{}  nodeSelector:\n    kubernetes.io/hostname: node-b\n",
        pod("for-b", "hello:v1", &[], "Never")
    );
    cluster.apply(&manifest);
    let pending = cluster.wait_pod("for-b", "to be found unschedulable", |p| {
        p["status"]["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["reason"] == "Unschedulable"))
    });
    assert!(pending["spec"]["nodeName"].is_null(), "{}", pending["spec"]);

    // The admin approves it with the real kubectl.
    let approve = cluster.kubectl(&[
        "taint",
        "node",
        "node-b",
        "node.wasmfleet.io/unapproved:NoSchedule-",
    ]);
    assert!(approve.success, "{}{}", approve.stdout, approve.stderr);
    assert!(!tainted("node-b"));
    cluster.wait_pod("for-b", "to run on node-b", |p| {
        phase(p) == "Succeeded" && p["spec"]["nodeName"] == "node-b"
    });
}

#[test]
fn a_created_join_token_admits_as_many_nodes_as_it_may_and_a_deleted_node_is_cut_off() {
    let mut cluster = Cluster::start(ClusterOptions { agents: Vec::new() });
    if cluster.uses_mosquitto() {
        // Mosquitto keeps node identities itself: join tokens are the embedded broker's.
        return;
    }
    let created = cluster.cli(&[
        "token",
        "create",
        "--uses",
        "1",
        "--ttl",
        "10m",
        "--description",
        "barn pi",
    ]);
    assert!(created.success, "{}", created.stderr);
    let token = created.stdout.trim().to_owned();
    let (id, _) = token.split_once('.').expect("id.secret");
    let listed = cluster.cli(&["token", "list"]);
    assert!(
        listed.stdout.contains(id) && listed.stdout.contains("0/1"),
        "{}",
        listed.stdout
    );
    assert!(
        !listed.stdout.contains(&token),
        "the secret is shown only once: {}",
        listed.stdout
    );

    // One node joins with the single-use token...
    let mut launch = AgentLaunch::host("");
    launch.join_token = Some(token.clone());
    cluster.launch_agent("pi-1", launch);
    cluster.wait_node_ready("pi-1");
    let listed = cluster.cli(&["token", "list"]);
    assert!(listed.stdout.contains("1/1"), "{}", listed.stdout);
    // ...and no other can.
    let second = log_in_as(
        &cluster,
        "pi-2",
        &format!("{token}:pi-2-own-password-0123456789"),
    );
    assert!(second.is_err(), "a used-up token admitted a second node");
    assert!(cluster.node("pi-2").is_none());

    // Deleting the node closes its live session at once, and the used-up token cannot
    // bring it back.
    let out = cluster.kubectl(&["delete", "node", "pi-1"]);
    assert!(out.success, "{}", out.stderr);
    wait_for(
        "pi-1's session to be closed and its login refused",
        CONVERGE,
        || {
            let log = cluster.agent_output("pi-1");
            let cut = log.contains("connection to the broker lost")
                && log.contains("the broker refused this node's login");
            if cut {
                Ok(())
            } else {
                Err(format!(
                    "agent:\n{log}\nserver:\n{}",
                    cluster.server_output()
                ))
            }
        },
    );
    assert!(cluster.node("pi-1").is_none(), "the revoked node came back");

    // A token that is deleted admits nobody, however many uses it had left.
    let created = cluster.cli(&["token", "create"]);
    assert!(created.success, "{}", created.stderr);
    let unlimited = created.stdout.trim().to_owned();
    let (unlimited_id, _) = unlimited.split_once('.').expect("id.secret");
    let deleted = cluster.cli(&["token", "delete", unlimited_id]);
    assert!(deleted.success, "{}", deleted.stderr);
    let refused = log_in_as(
        &cluster,
        "pi-3",
        &format!("{unlimited}:pi-3-own-password-0123456789"),
    );
    assert!(refused.is_err(), "a deleted token admitted a node");
}

/// The SubjectPublicKeyInfo of the agent's `node-tunnel.key` (PKCS#8 PEM).
fn tunnel_key(agent_dir: &Path) -> Result<Vec<u8>, String> {
    let key = PrivateKeyDer::from_pem_file(agent_dir.join("node-tunnel.key"))
        .map_err(|e| format!("node-tunnel.key: {e}"))?;
    let signing = rustls::crypto::ring::sign::any_ecdsa_type(&key)
        .map_err(|e| format!("node-tunnel.key is no ECDSA key: {e}"))?;
    let spki = signing.public_key().ok_or("no public key")?;
    Ok(spki.as_ref().to_vec())
}

/// Checks the agent's `node-tunnel.crt` against the cluster CA (the server's `tls/ca.crt`),
/// for `node`'s name and its current key, as another agent would; returns the key.
fn certified_key(cluster: &Cluster, node: &str) -> Result<Vec<u8>, String> {
    let agent_dir = cluster.agent_dir(node);
    let ca = CertificateDer::from_pem_file(cluster.dir().join("server/tls/ca.crt"))
        .map_err(|e| format!("ca.crt: {e}"))?;
    let cert = CertificateDer::from_pem_file(agent_dir.join("node-tunnel.crt"))
        .map_err(|e| format!("node-tunnel.crt: {e}"))?;
    let anchor = webpki::anchor_from_trusted_cert(&ca).map_err(|e| e.to_string())?;
    let parsed = webpki::EndEntityCert::try_from(&cert).map_err(|e| e.to_string())?;
    for usage in [
        webpki::KeyUsage::server_auth(),
        webpki::KeyUsage::client_auth(),
    ] {
        parsed
            .verify_for_usage(
                &[webpki::ring::ECDSA_P256_SHA256],
                std::slice::from_ref(&anchor),
                &[],
                UnixTime::now(),
                usage,
                None,
                None,
            )
            .map_err(|e| format!("does not verify against the cluster CA: {e}"))?;
    }
    let name = DnsName::try_from(node.to_owned()).map_err(|e| e.to_string())?;
    parsed
        .verify_is_valid_for_subject_name(&ServerName::DnsName(name))
        .map_err(|e| format!("not for {node}: {e}"))?;
    let key = tunnel_key(&agent_dir)?;
    if parsed.subject_public_key_info().as_ref() != key.as_slice() {
        return Err("the certificate is for another key than node-tunnel.key".into());
    }
    Ok(key)
}

/// Waits until the agent holds a certificate for a key other than `old` and the Node
/// records that key and `port`; returns the key.
fn wait_for_certified_key(cluster: &Cluster, node: &str, port: u16, old: Option<&[u8]>) -> Vec<u8> {
    wait_for("the node certificate", CONVERGE, || {
        let key = certified_key(cluster, node)?;
        if old == Some(key.as_slice()) {
            return Err("still the old key".into());
        }
        let hash: String = Sha256::digest(&key)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let object = cluster.node(node).ok_or("no Node")?;
        let annotation = &object["metadata"]["annotations"]["wasmfleet.io/tunnel-key-sha256"];
        let endpoint = &object["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"];
        if annotation != hash.as_str() || endpoint != port {
            return Err(format!("the Node has {annotation} and port {endpoint}"));
        }
        Ok(key)
    })
}

#[test]
fn every_node_gets_a_certificate_for_its_own_key_from_the_cluster_ca() {
    let mut cluster = Cluster::start(ClusterOptions { agents: Vec::new() });
    let port = free_port(IpAddr::V4(Ipv4Addr::LOCALHOST)).port();
    let mut launch = AgentLaunch::host("");
    launch.extra_args = vec!["--tunnel-port".into(), port.to_string()];
    cluster.launch_agent("node-t", launch);
    cluster.wait_node_ready("node-t");
    let key = wait_for_certified_key(&cluster, "node-t", port, None);

    // A restart keeps the key; the stored certificate still checks out.
    cluster.restart_agent("node-t");
    cluster.wait_node_ready("node-t");
    assert_eq!(certified_key(&cluster, "node-t"), Ok(key.clone()));

    // A lost key: the node makes a new one and gets a new certificate for it.
    cluster.kill_agent("node-t");
    std::fs::remove_file(cluster.agent_dir("node-t").join("node-tunnel.key")).expect("remove key");
    cluster.restart_agent("node-t");
    let renewed = wait_for_certified_key(&cluster, "node-t", port, Some(&key));
    assert_ne!(renewed, key);
}
