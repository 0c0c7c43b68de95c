//! A raw MQTT client for tests that play an intruder or a broken peer, over TLS like every
//! wasmfleet client.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use wasmfleet_protocol::broker_url::BrokerUrl;
use wasmfleet_protocol::transport::transport;

/// Where a test broker listens (TLS) and the CA its certificate chains to.
#[derive(Debug, Clone)]
pub struct MqttEndpoint {
    /// The TLS listener.
    pub addr: SocketAddr,
    /// The CA certificate (PEM) clients trust.
    pub ca_file: PathBuf,
}

impl MqttEndpoint {
    /// The URL for `--server` / `--mqtt-url`.
    pub fn url(&self) -> String {
        BrokerUrl {
            tls: true,
            host: self.addr.ip().to_string(),
            port: self.addr.port(),
        }
        .to_string()
    }
}

/// Connects as `username` and disconnects; `Ok` when the broker accepted the login.
pub fn try_login(broker: &MqttEndpoint, username: &str, password: &str) -> Result<(), String> {
    let (client, mut connection) =
        connect(broker, &format!("{username}-probe"), username, password)?;
    let outcome = first_connack(&mut connection);
    let _ = client.disconnect();
    outcome
}

/// Publishes `payloads` to `topic` as `username` (QoS 1) and waits for the broker's acks.
pub fn publish_all(
    broker: &MqttEndpoint,
    client_id: &str,
    username: &str,
    password: &str,
    topic: &str,
    payloads: &[Vec<u8>],
) -> Result<(), String> {
    let (client, mut connection) = connect(broker, client_id, username, password)?;
    first_connack(&mut connection)?;
    for payload in payloads {
        client
            .publish(topic, QoS::AtLeastOnce, false, payload.clone())
            .map_err(|err| err.to_string())?;
    }
    let mut acked = 0;
    for event in connection.iter() {
        match event {
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                acked += 1;
                if acked == payloads.len() {
                    break;
                }
            }
            Ok(_) => {}
            Err(err) => return Err(err.to_string()),
        }
    }
    let _ = client.disconnect();
    Ok(())
}

/// A client logged in as `username` (not yet polled: drive the connection to connect).
pub fn connect(
    broker: &MqttEndpoint,
    client_id: &str,
    username: &str,
    password: &str,
) -> Result<(Client, rumqttc::Connection), String> {
    let url: BrokerUrl = broker.url().parse().map_err(|e| format!("{e}"))?;
    let ca_pem =
        std::fs::read(&broker.ca_file).map_err(|e| format!("{}: {e}", broker.ca_file.display()))?;
    let transport = transport(&url, Some(&ca_pem)).map_err(|e| e.to_string())?;
    let mut options = MqttOptions::new(client_id, url.host, url.port);
    options
        .set_transport(transport)
        .set_credentials(username, password)
        .set_keep_alive(Duration::from_secs(5))
        .set_max_packet_size(20 << 20, 20 << 20);
    Ok(Client::new(options, 16))
}

fn first_connack(connection: &mut rumqttc::Connection) -> Result<(), String> {
    for event in connection.iter() {
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                return if ack.code == rumqttc::ConnectReturnCode::Success {
                    Ok(())
                } else {
                    Err(format!("{:?}", ack.code))
                };
            }
            Ok(_) => {}
            Err(err) => return Err(err.to_string()),
        }
    }
    Err("connection closed".into())
}
