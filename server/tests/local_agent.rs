//! The one-command cluster: `wasmfleet-server` with its in-process agent, which joins over
//! the embedded broker's TLS listener exactly as a remote agent would.

#![allow(clippy::unwrap_used)]

mod api_support;

use std::time::Duration;

use api_support::{Server, data_dir};
use serde_json::Value;

fn ready(node: &Value) -> Option<&str> {
    node["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")?["status"]
        .as_str()
}

#[tokio::test]
async fn the_in_process_agent_joins_over_tls_and_its_node_becomes_ready() {
    let (_tmp, dir) = data_dir();
    let server = Server::start_with(&dir, |config| {
        config.no_local_agent = false;
        config.node_name = Some("local-node".into());
        config.ingress_port = 0;
        config.ingress_https_port = 0;
        config.tunnel_port = 0;
    })
    .await;

    let endpoints: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("endpoints.json")).unwrap())
            .unwrap();
    let mqtt = endpoints["mqtt"].as_str().unwrap();
    assert!(mqtt.starts_with("mqtts://127.0.0.1:"), "{mqtt}");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, node) = server.get("/api/v1/nodes/local-node").await;
        if status.is_success() && ready(&node) == Some("True") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the local node is not Ready: {status} {node}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await;
}
