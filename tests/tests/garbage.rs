//! Hostile and broken MQTT peers: garbage on the server's and on an agent's topics is
//! refused and logged, and the cluster keeps working.

use wasmfleet_protocol::topic::{self, Down, Up};
use wasmfleet_tests::cluster::phase;
use wasmfleet_tests::manifests::pod;
use wasmfleet_tests::mqtt::publish_all;
use wasmfleet_tests::{Cluster, ClusterOptions};

fn garbage() -> Vec<Vec<u8>> {
    vec![
        b"not postcard at all".to_vec(),
        Vec::new(),
        vec![0x05, 0x00, 0x01], // an envelope version from the future
        vec![0x00, 0xff, 0xff, 0xff, 0xff, 0x0f], // version 1, nonsense message index
        vec![0x00; 600 * 1024], // larger than any message may be
        wasmfleet_protocol::encode(&wasmfleet_protocol::Message::Heartbeat(
            wasmfleet_protocol::node::Heartbeat {
                epoch: 1,
                unix_ms: 1,
            },
        )), // valid, but not what a desired-state topic carries
    ]
}

#[test]
fn garbage_on_server_and_agent_topics_is_refused_and_nothing_crashes() {
    let mut cluster = Cluster::start(ClusterOptions::default());
    cluster.push("hello", "hello:v1");
    let broker = cluster.mqtt().clone();

    // A node with a valid token sends garbage on every topic the server listens to.
    let intruder_password = cluster.allow_node_login("intruder");
    for kind in [
        Up::State,
        Up::Heartbeat,
        Up::Status,
        Up::BlobRequest,
        Up::Logs,
    ] {
        publish_all(
            &broker,
            "intruder",
            "intruder",
            &intruder_password,
            &topic::up("intruder", kind),
            &garbage(),
        )
        .expect("a node may publish on its own up topics");
    }
    // The server's identity sends garbage down to node-a.
    let server_password = cluster.server_mqtt_password();
    for kind in [Down::Desired, Down::Ack, Down::Blob, Down::Cmd, Down::Tls] {
        publish_all(
            &broker,
            "e2e-garbage",
            "wasmfleet-server",
            &server_password,
            &topic::down("node-a", kind),
            &garbage(),
        )
        .expect("the server identity may publish down");
    }

    assert!(
        cluster.server_is_running(),
        "server died:\n{}",
        cluster.server_output()
    );
    assert!(
        cluster.agent_is_running("node-a"),
        "agent died:\n{}",
        cluster.agent_output("node-a")
    );
    // Both sides said what they refused.
    assert!(
        cluster
            .server_output()
            .contains("wf/v1/n/intruder/up/status"),
        "server did not log the garbage"
    );
    assert!(
        cluster
            .agent_output("node-a")
            .contains("wf/v1/n/node-a/down/desired"),
        "agent did not log the garbage"
    );

    // And the cluster still works.
    cluster.apply(&pod("after-garbage", "hello:v1", &[], "Never"));
    cluster.wait_pod("after-garbage", "to succeed", |p| phase(p) == "Succeeded");
}
