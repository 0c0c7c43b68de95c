//! The embedded broker with real rumqttc (MQTT 3.1.1) clients: who may connect, and which
//! topics each identity may use.

use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS, SubscribeReasonCode,
};
use wasmfleet_server::broker::auth::{ADMIN_USERNAME, SERVER_USERNAME};
use wasmfleet_server::broker::{BrokerCredentials, EmbeddedBroker};
use wasmfleet_server::store::Store;

mod broker_support;

use broker_support::NODE_LOGIN;

const WAIT: Duration = Duration::from_secs(5);

fn credentials() -> BrokerCredentials {
    BrokerCredentials {
        admin_token: "admin-token".into(),
        server_mqtt_password: "server-password".into(),
    }
}

/// The broker (its TLS material is read at start, so the directory may go) and its CA.
async fn broker() -> (EmbeddedBroker, Vec<u8>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let addr = "127.0.0.1:0".parse().expect("addr");
    let store = Store::open(dir.path().join("state.redb")).expect("store");
    broker_support::start_broker(dir.path(), addr, credentials(), store).await
}

fn options(
    broker: &EmbeddedBroker,
    ca_pem: &[u8],
    client_id: &str,
    login: Option<(&str, &str)>,
) -> MqttOptions {
    let mut options = broker_support::tls_options(client_id, broker.local_addr().port(), ca_pem);
    options.set_keep_alive(Duration::from_secs(5));
    if let Some((user, pass)) = login {
        options.set_credentials(user, pass);
    }
    options
}

/// Connects and waits for the CONNACK; the error when the broker refuses.
async fn connect(options: MqttOptions) -> Result<(AsyncClient, EventLoop), ConnectionError> {
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    let connack = tokio::time::timeout(WAIT, async {
        loop {
            match eventloop.poll().await? {
                Event::Incoming(Packet::ConnAck(_)) => return Ok(()),
                _ => continue,
            }
        }
    })
    .await
    .expect("the broker answers the CONNECT in time");
    connack.map(|()| (client, eventloop))
}

/// Polls until a packet matching `pick` arrives.
async fn next<T>(eventloop: &mut EventLoop, mut pick: impl FnMut(Packet) -> Option<T>) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Event::Incoming(packet) = eventloop.poll().await.expect("connection stays up")
                && let Some(found) = pick(packet)
            {
                return found;
            }
        }
    })
    .await
    .expect("the expected packet arrives in time")
}

async fn suback(eventloop: &mut EventLoop) -> Vec<SubscribeReasonCode> {
    next(eventloop, |p| match p {
        Packet::SubAck(ack) => Some(ack.return_codes),
        _ => None,
    })
    .await
}

/// Drives a client's event loop in the background (so its publishes go out).
fn drive(mut eventloop: EventLoop) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} })
}

#[tokio::test]
async fn the_broker_reports_the_real_port_and_shuts_down() {
    let (broker, _ca) = broker().await;
    assert_ne!(broker.local_addr().port(), 0);
    let port = broker.local_addr().port();
    tokio::time::timeout(WAIT, broker.shutdown())
        .await
        .expect("shutdown completes");
    let refused = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
    assert!(refused.is_err(), "the listener is closed after shutdown");
}

#[tokio::test]
async fn plain_tcp_clients_get_no_mqtt_session() {
    let (broker, _ca) = broker().await;
    let mut plain = MqttOptions::new("pi-1", "127.0.0.1", broker.local_addr().port());
    plain.set_credentials("pi-1", NODE_LOGIN);
    let result = connect(plain).await;
    assert!(result.is_err(), "a plain-TCP CONNECT must not be answered");
    broker.shutdown().await;
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_cluster_ca_refuses_the_broker() {
    let (broker, _ca) = broker().await;
    let other_dir = tempfile::tempdir().expect("temp dir");
    let other_ca = wasmfleet_server::bootstrap::load_or_create(other_dir.path(), &[])
        .expect("another cluster's CA")
        .tls
        .ca_cert_pem;
    let result = connect(options(
        &broker,
        other_ca.as_bytes(),
        "pi-1",
        Some(("pi-1", NODE_LOGIN)),
    ))
    .await;
    assert!(
        matches!(result, Err(ConnectionError::Tls(_))),
        "{:?}",
        result.err()
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn anonymous_clients_are_refused() {
    let (broker, ca) = broker().await;
    let result = connect(options(&broker, &ca, "pi-1", None)).await;
    assert!(
        matches!(result, Err(ConnectionError::ConnectionRefused(_))),
        "{:?}",
        result.err()
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn a_wrong_token_is_refused() {
    let (broker, ca) = broker().await;
    let result = connect(options(
        &broker,
        &ca,
        "pi-1",
        Some(("pi-1", "not-the-token")),
    ))
    .await;
    assert!(
        matches!(result, Err(ConnectionError::ConnectionRefused(_))),
        "{:?}",
        result.err()
    );
    let admin_as_node = connect(options(&broker, &ca, "pi-1", Some(("pi-1", "admin-token")))).await;
    assert!(admin_as_node.is_err());
    broker.shutdown().await;
}

/// Issue 8 item 2: the join token is not a master key. Once a node joined, a client with
/// the join token but not that node's password can neither log in under its name nor kick
/// its session off; the node's own password still logs in.
#[tokio::test]
async fn the_join_token_cannot_log_in_as_a_node_that_joined_nor_take_over_its_session() {
    let (broker, ca) = broker().await;
    let (node, mut node_loop) = connect(options(&broker, &ca, "pi-1", Some(("pi-1", NODE_LOGIN))))
        .await
        .expect("the node joins with the join token and its own password");
    for intruder in ["node-token:ffffffffffffffffffffffff", "node-token"] {
        let result = connect(options(&broker, &ca, "pi-1", Some(("pi-1", intruder)))).await;
        assert!(
            matches!(result, Err(ConnectionError::ConnectionRefused(_))),
            "{intruder}: {:?}",
            result.err()
        );
    }
    // The real node's session survived: its QoS 1 publish is still acknowledged.
    node.publish(
        "wf/v1/n/pi-1/up/hb",
        QoS::AtLeastOnce,
        false,
        b"hb".to_vec(),
    )
    .await
    .expect("queue");
    next(&mut node_loop, |p| {
        matches!(p, Packet::PubAck(_)).then_some(())
    })
    .await;
    node.disconnect().await.expect("disconnect");
    let again = connect(options(
        &broker,
        &ca,
        "pi-1",
        Some(("pi-1", "0123456789abcdef0123")),
    ))
    .await;
    assert!(
        again.is_ok(),
        "its own password alone logs in: {:?}",
        again.err()
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn a_node_that_never_joined_needs_the_join_token() {
    let (broker, ca) = broker().await;
    let result = connect(options(
        &broker,
        &ca,
        "pi-9",
        Some(("pi-9", "0123456789abcdef0123")),
    ))
    .await;
    assert!(
        matches!(result, Err(ConnectionError::ConnectionRefused(_))),
        "{:?}",
        result.err()
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn a_node_must_connect_with_its_own_name_as_client_id() {
    let (broker, ca) = broker().await;
    let result = connect(options(&broker, &ca, "pi-2", Some(("pi-1", NODE_LOGIN)))).await;
    assert!(
        matches!(result, Err(ConnectionError::ConnectionRefused(_))),
        "{:?}",
        result.err()
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn a_node_cannot_publish_as_another_node_but_the_server_sees_its_own_topics() {
    let (broker, ca) = broker().await;
    let (server, mut server_loop) = connect(options(
        &broker,
        &ca,
        "srv",
        Some((SERVER_USERNAME, "server-password")),
    ))
    .await
    .expect("server connects");
    server
        .subscribe("wf/v1/n/+/up/#", QoS::AtLeastOnce)
        .await
        .expect("queue");
    assert_eq!(
        suback(&mut server_loop).await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );

    let (node, node_loop) = connect(options(&broker, &ca, "pi-1", Some(("pi-1", NODE_LOGIN))))
        .await
        .expect("node connects");
    let node_task = drive(node_loop);
    // The forged publish goes first: if the broker let it through, it would arrive first.
    node.publish(
        "wf/v1/n/pi-2/up/status",
        QoS::AtLeastOnce,
        false,
        b"forged".to_vec(),
    )
    .await
    .expect("queue");
    node.publish(
        "wf/v1/n/pi-1/up/status",
        QoS::AtLeastOnce,
        false,
        b"genuine".to_vec(),
    )
    .await
    .expect("queue");
    let (topic, payload) = next(&mut server_loop, |p| match p {
        Packet::Publish(publish) => Some((publish.topic, publish.payload)),
        _ => None,
    })
    .await;
    assert_eq!(topic, "wf/v1/n/pi-1/up/status");
    assert_eq!(&payload[..], b"genuine");
    node_task.abort();
    broker.shutdown().await;
}

#[tokio::test]
async fn a_node_cannot_subscribe_to_everything_or_to_another_node() {
    let (broker, ca) = broker().await;
    let (node, mut node_loop) = connect(options(&broker, &ca, "pi-1", Some(("pi-1", NODE_LOGIN))))
        .await
        .expect("node connects");
    for filter in ["#", "wf/v1/n/pi-2/down/#", "wf/v1/n/+/up/#"] {
        node.subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("queue");
        assert_eq!(
            suback(&mut node_loop).await,
            vec![SubscribeReasonCode::Failure],
            "{filter}"
        );
    }
    node.subscribe("wf/v1/n/pi-1/down/#", QoS::AtLeastOnce)
        .await
        .expect("queue");
    assert_eq!(
        suback(&mut node_loop).await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn the_server_reaches_a_node_and_retained_messages_wait_for_it() {
    let (broker, ca) = broker().await;
    let mut server_options = options(
        &broker,
        &ca,
        "srv",
        Some((SERVER_USERNAME, "server-password")),
    );
    server_options.set_max_packet_size(1 << 20, 1 << 20);
    let (server, mut server_loop) = connect(server_options).await.expect("server connects");
    server
        .publish(
            "wf/v1/n/pi-1/down/desired",
            QoS::AtLeastOnce,
            true,
            vec![7u8; 300 * 1024],
        )
        .await
        .expect("queue");
    next(&mut server_loop, |p| {
        matches!(p, Packet::PubAck(_)).then_some(())
    })
    .await;
    // The node connects after the retained snapshot was stored and still gets it.
    let mut node_options = options(&broker, &ca, "pi-1", Some(("pi-1", NODE_LOGIN)));
    node_options.set_max_packet_size(1 << 20, 1 << 20);
    let (node, mut node_loop) = connect(node_options).await.expect("node connects");
    node.subscribe("wf/v1/n/pi-1/down/#", QoS::AtLeastOnce)
        .await
        .expect("queue");
    let payload = next(&mut node_loop, |p| match p {
        Packet::Publish(publish) if publish.topic == "wf/v1/n/pi-1/down/desired" => {
            Some(publish.payload)
        }
        _ => None,
    })
    .await;
    assert_eq!(payload.len(), 300 * 1024);
    broker.shutdown().await;
}

#[tokio::test]
async fn the_admin_may_upload_modules_but_not_talk_to_nodes() {
    let (broker, ca) = broker().await;
    let (server, mut server_loop) = connect(options(
        &broker,
        &ca,
        "srv",
        Some((SERVER_USERNAME, "server-password")),
    ))
    .await
    .expect("server connects");
    server
        .subscribe("wf/v1/#", QoS::AtLeastOnce)
        .await
        .expect("queue");
    suback(&mut server_loop).await;
    let (admin, admin_loop) = connect(options(
        &broker,
        &ca,
        "cli",
        Some((ADMIN_USERNAME, "admin-token")),
    ))
    .await
    .expect("admin connects");
    let admin_task = drive(admin_loop);
    admin
        .publish(
            "wf/v1/n/pi-1/down/desired",
            QoS::AtLeastOnce,
            false,
            b"forged".to_vec(),
        )
        .await
        .expect("queue");
    admin
        .publish(
            "wf/v1/modules/hello/v1",
            QoS::AtLeastOnce,
            false,
            b"\0asm\x01\0\0\0".to_vec(),
        )
        .await
        .expect("queue");
    let topic = next(&mut server_loop, |p| match p {
        Packet::Publish(publish) => Some(publish.topic),
        _ => None,
    })
    .await;
    assert_eq!(topic, "wf/v1/modules/hello/v1");
    admin_task.abort();
    broker.shutdown().await;
}
