//! A raw MQTT client for tests that play an intruder or a broken peer.

use std::net::SocketAddr;
use std::time::Duration;

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

/// Connects as `username` and disconnects; `Ok` when the broker accepted the login.
pub fn try_login(addr: SocketAddr, username: &str, password: &str) -> Result<(), String> {
    let (client, mut connection) = connect(addr, &format!("{username}-probe"), username, password);
    let outcome = first_connack(&mut connection);
    let _ = client.disconnect();
    outcome
}

/// Publishes `payloads` to `topic` as `username` (QoS 1) and waits for the broker's acks.
pub fn publish_all(
    addr: SocketAddr,
    client_id: &str,
    username: &str,
    password: &str,
    topic: &str,
    payloads: &[Vec<u8>],
) -> Result<(), String> {
    let (client, mut connection) = connect(addr, client_id, username, password);
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

fn connect(
    addr: SocketAddr,
    client_id: &str,
    username: &str,
    password: &str,
) -> (Client, rumqttc::Connection) {
    let mut options = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    options
        .set_credentials(username, password)
        .set_keep_alive(Duration::from_secs(5))
        .set_max_packet_size(20 << 20, 20 << 20);
    Client::new(options, 16)
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
