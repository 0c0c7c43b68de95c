//! Shared by the `broker` and `fleet` tests: the embedded broker with real TLS material
//! from a data directory, and rumqttc client options that trust its CA.

#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;

use rumqttc::MqttOptions;
use wasmfleet_protocol::broker_url::BrokerUrl;
use wasmfleet_protocol::transport::transport;
use wasmfleet_server::bootstrap;
use wasmfleet_server::broker::{BrokerCredentials, EmbeddedBroker};
use wasmfleet_server::identity::NodeIdentities;
use wasmfleet_server::store::Store;

/// The MQTT password of a test node: the test join token `node-token` and its node password.
pub const NODE_LOGIN: &str = "node-token:0123456789abcdef0123";

/// Starts the broker on `addr` with the TLS material of `data_dir` (created on first use,
/// reused afterwards, so a restarted broker has the same CA). Node identities live in
/// `store`. Returns the CA PEM.
pub async fn start_broker(
    data_dir: &Path,
    addr: SocketAddr,
    credentials: BrokerCredentials,
    store: Store,
) -> (EmbeddedBroker, Vec<u8>) {
    let boot = bootstrap::load_or_create(data_dir, &[]).expect("TLS material");
    let nodes = NodeIdentities::new(store, "node-token");
    let broker = EmbeddedBroker::start(addr, credentials, &boot.tls, nodes)
        .await
        .expect("broker starts");
    (broker, boot.tls.ca_cert_pem.into_bytes())
}

/// The broker's URL on loopback.
pub fn url(port: u16) -> BrokerUrl {
    BrokerUrl {
        tls: true,
        host: "127.0.0.1".into(),
        port,
    }
}

/// Client options for `127.0.0.1:port` over TLS, trusting `ca_pem`.
pub fn tls_options(client_id: &str, port: u16, ca_pem: &[u8]) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_transport(transport(&url(port), Some(ca_pem)).expect("TLS client config"));
    options
}
