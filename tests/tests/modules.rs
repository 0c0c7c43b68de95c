//! Getting modules into the cluster: pushed over HTTPS or published over MQTT, named by
//! `NAME:TAG` or by digest, core modules and components alike.

use wasmfleet_protocol::topic;
use wasmfleet_tests::cluster::{CONVERGE, container_status, phase};
use wasmfleet_tests::manifests::pod;
use wasmfleet_tests::mqtt::publish_all;
use wasmfleet_tests::{Cluster, ClusterOptions, guest, wait_for};

#[test]
fn a_module_published_over_mqtt_by_the_admin_runs_by_tag_and_by_digest() {
    let cluster = Cluster::start(ClusterOptions::default());
    let bytes = std::fs::read(guest("hello")).expect("hello.wasm");
    publish_all(
        cluster.mqtt(),
        "admin",
        "admin",
        &cluster.admin_token,
        &topic::module_upload("hello", "mqtt"),
        &[bytes],
    )
    .expect("the admin may publish modules");

    cluster.apply(&pod("by-tag", "hello:mqtt", &["via", "mqtt"], "Never"));
    cluster.wait_pod("by-tag", "to succeed", |p| phase(p) == "Succeeded");
    assert_eq!(cluster.logs("by-tag"), "hello from wasmfleet\nvia\nmqtt\n");

    let listing = cluster.cli(&["get", "modules", "-o", "json"]);
    assert!(listing.success, "{}", listing.stderr);
    let modules: serde_json::Value = serde_json::from_str(&listing.stdout).expect("module list");
    let digest = modules["items"]
        .as_array()
        .and_then(|items| items.iter().find(|m| m["tag"] == "mqtt"))
        .and_then(|m| m["digest"].as_str())
        .expect("the published module is listed")
        .to_owned();
    assert!(digest.starts_with("sha256:"), "{digest}");
    cluster.apply(&pod("by-digest", &digest, &[], "Never"));
    cluster.wait_pod("by-digest", "to succeed", |p| phase(p) == "Succeeded");
}

#[test]
fn a_module_published_with_mosquitto_pub_by_ip_address_is_stored_and_logs_no_tls_warning() {
    let cluster = Cluster::start(ClusterOptions::default());
    if cluster.uses_mosquitto() {
        // The SNI warning is the embedded broker's (rustls); the test Mosquitto's own
        // certificate is not made for mosquitto_pub's host name check.
        return;
    }
    let mqtt = cluster.mqtt();
    // mosquitto_pub sends the IP address as TLS SNI, which rustls refuses to read as a
    // host name; that is harmless and must not fill the server's log with warnings.
    let out = std::process::Command::new("mosquitto_pub")
        .args([
            "-h",
            &mqtt.addr.ip().to_string(),
            "-p",
            &mqtt.addr.port().to_string(),
        ])
        .args(["--cafile", &mqtt.ca_file.display().to_string()])
        .args(["-u", "admin", "-P", &cluster.admin_token, "-q", "1"])
        .args(["-t", &topic::module_upload("hello", "pub")])
        .args(["-f", &guest("hello").display().to_string()])
        .output()
        .expect("mosquitto_pub runs (Debian package mosquitto-clients)");
    assert!(
        out.status.success(),
        "mosquitto_pub: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the published module to be listed", CONVERGE, || {
        let listing = cluster.cli(&["get", "modules"]);
        if listing.stdout.contains("pub") {
            Ok(())
        } else {
            Err(listing.stdout)
        }
    });
    let log = cluster.server_output();
    assert!(!log.contains("Illegal SNI"), "{log}");
}

#[test]
fn a_node_cannot_publish_modules() {
    let cluster = Cluster::start(ClusterOptions::default());
    let sneaky_password = cluster.allow_node_login("sneaky");
    let bytes = std::fs::read(guest("hello")).expect("hello.wasm");
    // The broker drops (or refuses) the node's publish.
    let _ = publish_all(
        cluster.mqtt(),
        "sneaky",
        "sneaky",
        &sneaky_password,
        &topic::module_upload("hello", "sneaky"),
        std::slice::from_ref(&bytes),
    );
    // An admin upload sent afterwards arrives; the node's never does.
    publish_all(
        cluster.mqtt(),
        "admin",
        "admin",
        &cluster.admin_token,
        &topic::module_upload("hello", "after"),
        &[bytes],
    )
    .expect("the admin may publish modules");
    let tags = wait_for("the admin's module to be stored", CONVERGE, || {
        let tags = module_tags(&cluster);
        if tags.iter().any(|t| t == "after") {
            Ok(tags)
        } else {
            Err(format!("{tags:?}"))
        }
    });
    assert!(
        !tags.iter().any(|t| t == "sneaky"),
        "a node stored a module: {tags:?}"
    );
    cluster.apply(&pod("sneaky", "hello:sneaky", &[], "Never"));
    cluster.wait_pod("sneaky", "to wait for a module that never came", |p| {
        container_status(p, "main")["state"]["waiting"]["reason"] == "ErrModuleNotFound"
    });
}

fn module_tags(cluster: &Cluster) -> Vec<String> {
    let listing = cluster.cli(&["get", "modules", "-o", "json"]);
    let modules: serde_json::Value = serde_json::from_str(&listing.stdout).unwrap_or_default();
    modules["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|m| m["tag"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_wasip2_command_component_runs_and_streams_its_logs() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.push("exerciser-p2", "exerciser-p2:v1");
    cluster.apply(&pod("p2", "exerciser-p2:v1", &["print", "5"], "Never"));

    // `logs -f` prints what is there, follows new lines as they are printed, and ends
    // when the container does.
    cluster.wait_pod("p2", "to start", |p| phase(p) != "Pending");
    let out = cluster.cli(&["logs", "-f", "p2"]);
    assert!(out.success, "{}", out.stderr);
    let expected: String = (1..=5).map(|i| format!("line {i}\n")).collect();
    assert_eq!(out.stdout, expected);
    cluster.wait_pod("p2", "to succeed", |p| phase(p) == "Succeeded");
    assert_eq!(cluster.logs("p2"), expected);
}
