//! Pod traffic between nodes (issue 10 §5), with three agents in network namespaces of
//! their own, so each has its own loopback and reaches the others only over the bridge:
//! node-a and node-b accept tunnels; node-c sits behind a NAT-like firewall that lets it
//! dial out but lets nothing in, although it advertises a tunnel port like the others.
//!
//! A pod on node-a reaches pods on node-b directly and pods on node-c through the
//! server's relay (its direct dial times out; the relay listens on another address than the
//! broker, which the server names with `--relay-address`), by pod IP and through a ClusterIP
//! Service whose endpoints run on both; a pod on node-c reaches node-b; curl from the host
//! to node-a's NodePort lands on pods of the other nodes; Events on node-a say which path
//! each peer takes; a deleted endpoint receives no new requests. UDP crosses the same
//! way: a pod on node-a gets the echo of a UDP Service whose one endpoint runs on node-b
//! (direct) or node-c (relayed), and of the node-c pod by its IP, each from the address
//! it sent to; a datagram from the host to a UDP NodePort on node-a and node-b comes back
//! from the endpoint on node-b, and with `externalTrafficPolicy: Local` only node-b
//! answers.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::time::Duration;

use serde_json::Value;
use wasmfleet_tests::cluster::{AgentLaunch, Broker};
use wasmfleet_tests::netns::Network;
use wasmfleet_tests::wait::wait_for;
use wasmfleet_tests::{Cluster, ClusterOptions};

const START: Duration = Duration::from_secs(60);

/// The tunnel port every namespaced agent listens on (each namespace has its own ports).
const TUNNEL_PORT: &str = "10260";

/// An HTTP server pod on `node` answering `from-{node}`.
fn backend(name: &str, node: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: echo}}
spec:
  nodeName: {node}
  containers:
  - name: server
    image: tcp-echo:v1
    args: [\"--port\", \"7007\", \"--http\"]
    env: [{{name: MESSAGE, value: from-{node}}}]
    ports: [{{name: http, containerPort: 7007}}]
    readinessProbe:
      tcpSocket: {{port: 7007}}
      periodSeconds: 1
"
    )
}

const SERVICE: &str = "apiVersion: v1
kind: Service
metadata:
  name: echo
spec:
  type: NodePort
  selector: {app: echo}
  ports:
  - port: 80
    targetPort: http
";

/// A pod on `node` that fetches `url` `count` times.
fn fetcher(name: &str, node: &str, url: &str, count: u32) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  nodeName: {node}
  restartPolicy: Never
  containers:
  - name: main
    image: fetch:v1
    args: [\"{url}\", \"{count}\"]
"
    )
}

/// Runs a fetcher to its end; returns the bodies it got (`STATUS BODY` lines).
fn fetch(cluster: &Cluster, name: &str, node: &str, url: &str, count: u32) -> Vec<String> {
    cluster.kubectl_apply(&fetcher(name, node, url, count));
    let pod = cluster.wait_pod_within(name, "to finish", START, |p| {
        matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
    });
    let log = cluster.kubectl_ok(&["logs", name]);
    assert_eq!(
        pod["status"]["phase"], "Succeeded",
        "{name} on {node}: {log}"
    );
    log.lines().map(str::to_owned).collect()
}

fn pod_ip(cluster: &Cluster, name: &str) -> String {
    let pod = cluster.pod(name).expect("pod");
    pod["status"]["podIP"].as_str().expect("pod IP").to_owned()
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

#[test]
fn pods_reach_pods_and_services_on_other_nodes_directly_and_through_the_relay() {
    let mut network = Network::create().unwrap_or_else(|err| panic!("{err:#}"));
    // The relay is not at the broker's address: agents find it in the table of peers.
    let relay_host = network
        .add_host_addr()
        .unwrap_or_else(|err| panic!("{err:#}"));
    let mut cluster = Cluster::start_with_relay_on(
        ClusterOptions { agents: Vec::new() },
        Broker::from_env(),
        IpAddr::V4(network.host_addr()),
        Some(IpAddr::V4(relay_host)),
    );
    let mut addresses = Vec::new();
    for node in ["node-a", "node-b", "node-c"] {
        let namespace = network
            .add_namespace(node)
            .unwrap_or_else(|err| panic!("{err:#}"));
        if node == "node-c" {
            namespace
                .only_dial_out()
                .unwrap_or_else(|err| panic!("{err:#}"));
        }
        let mut launch = AgentLaunch::host("");
        launch.netns = Some(namespace.name.clone());
        launch.extra_args = vec![
            "--node-ip".into(),
            namespace.addr.to_string(),
            "--tunnel-port".into(),
            TUNNEL_PORT.into(),
        ];
        cluster.launch_agent(node, launch);
        addresses.push(namespace.addr);
    }
    for node in ["node-a", "node-b", "node-c"] {
        cluster.wait_node_ready(node);
    }
    cluster.push("tcp-echo", "tcp-echo:v1");
    cluster.push("fetch", "fetch:v1");
    cluster.kubectl_apply(&backend("echo-b", "node-b"));
    cluster.kubectl_apply(&backend("echo-c", "node-c"));
    cluster.kubectl_apply(SERVICE);
    for name in ["echo-b", "echo-c"] {
        cluster.wait_pod_within(name, "Ready", START, ready);
    }

    // By pod IP: node-b directly, node-c (which lets nothing in) through the relay.
    let b = pod_ip(&cluster, "echo-b");
    let c = pod_ip(&cluster, "echo-c");
    let got = fetch(
        &cluster,
        "a-to-b",
        "node-a",
        &format!("http://{b}:7007/"),
        2,
    );
    assert_eq!(got, ["200 from-node-b"; 2]);
    let got = fetch(
        &cluster,
        "a-to-c",
        "node-a",
        &format!("http://{c}:7007/"),
        2,
    );
    assert_eq!(got, ["200 from-node-c"; 2]);
    // node-c dials out to node-b.
    let got = fetch(
        &cluster,
        "c-to-b",
        "node-c",
        &format!("http://{b}:7007/"),
        2,
    );
    assert_eq!(got, ["200 from-node-b"; 2]);

    // Through the ClusterIP Service, from a node that runs no endpoint: both nodes answer.
    let got = fetch(&cluster, "a-to-svc", "node-a", "http://echo/", 10);
    let answers: BTreeSet<&str> = got.iter().map(String::as_str).collect();
    assert_eq!(
        answers,
        BTreeSet::from(["200 from-node-b", "200 from-node-c"]),
        "{got:?}"
    );

    // The NodePort on node-a, from the host: forwarded to the pods on the other nodes.
    let service = cluster.kubectl_ok(&["get", "svc", "echo", "-o", "json"]);
    let service: Value = serde_json::from_str(&service).expect("service JSON");
    let node_port = service["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .expect("nodePort");
    let url = format!("http://{}:{node_port}/", addresses[0]);
    let mut seen = BTreeSet::new();
    for _ in 0..10 {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "10", &url])
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        seen.insert(String::from_utf8_lossy(&out.stdout).trim().to_owned());
    }
    assert_eq!(
        seen,
        BTreeSet::from(["from-node-b".to_owned(), "from-node-c".to_owned()])
    );

    // node-a's Events say how it reaches each peer.
    let events = cluster.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=node-a",
        "-o",
        "custom-columns=REASON:.reason,MESSAGE:.message",
    ]);
    assert!(
        events.lines().any(|l| l.starts_with("PeerReachedDirectly")
            && l.contains("node-b")
            && l.contains(TUNNEL_PORT)),
        "{events}"
    );
    assert!(
        events
            .lines()
            .any(|l| l.starts_with("PeerReachedThroughRelay")
                && l.contains("node-c")
                && l.contains("did not answer")),
        "{events}"
    );

    // A deleted endpoint leaves the Service: every new request goes to node-b.
    cluster.kubectl_ok(&["delete", "pod", "echo-c"]);
    wait_for("echo-c to leave the endpoints", START, || {
        let slices = cluster.kubectl_ok(&["get", "endpointslices", "-o", "json"]);
        match slices.contains(&c) {
            false => Ok(()),
            true => Err(slices),
        }
    });
    let got = fetch(&cluster, "a-to-svc-after", "node-a", "http://echo/", 6);
    assert_eq!(got, ["200 from-node-b"; 6]);

    udp_crosses_nodes(&cluster, &addresses);
}

/// A UDP echo pod on `node` behind the Service `name` (a NodePort one).
fn udp_backend(name: &str, node: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: {name}}}
spec:
  nodeName: {node}
  containers:
  - name: server
    image: tcp-echo:v1
    args: [\"--udp\", \"--port\", \"5353\"]
    ports: [{{name: dns, containerPort: 5353, protocol: UDP}}]
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  type: NodePort
  selector: {{app: {name}}}
  ports:
  - port: 53
    protocol: UDP
    targetPort: dns
"
    )
}

/// A pod on `node` that sends `text` to `target` over UDP and prints the echo.
fn udp_client(cluster: &Cluster, name: &str, node: &str, target: &str, text: &str) -> String {
    cluster.kubectl_apply(&format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  nodeName: {node}
  restartPolicy: Never
  containers:
  - name: main
    image: tcp-echo:v1
    args: [\"--udp\", \"--connect\", \"{target}\", \"--send\", \"{text}\"]
"
    ));
    cluster.wait_log_line(name, "main", "udp echo from")
}

fn udp_crosses_nodes(cluster: &Cluster, addresses: &[Ipv4Addr]) {
    for (name, node) in [("udp-b", "node-b"), ("udp-c", "node-c")] {
        cluster.kubectl_apply(&udp_backend(name, node));
    }
    for name in ["udp-b", "udp-c"] {
        cluster.wait_pod_within(name, "Ready", START, ready);
    }
    let service = |name: &str| -> Value {
        let json = cluster.kubectl_ok(&["get", "svc", name, "-o", "json"]);
        serde_json::from_str(&json).expect("service JSON")
    };
    // The ClusterIP's only endpoint on node-b (direct) and node-c (relayed).
    for (name, node) in [("udp-b", "node-b"), ("udp-c", "node-c")] {
        let vip = service(name)["spec"]["clusterIP"]
            .as_str()
            .expect("a ClusterIP")
            .to_owned();
        let text = format!("to-{node}");
        let echoed = udp_client(
            cluster,
            &format!("a-{name}"),
            "node-a",
            &format!("{name}:53"),
            &text,
        );
        assert_eq!(echoed, format!("udp echo from {vip}:53: {text}"));
    }
    // By pod IP, through the relay; the endpoint sees the client's pod IP.
    let c = pod_ip(cluster, "udp-c");
    let echoed = udp_client(
        cluster,
        "a-udp-c-ip",
        "node-a",
        &format!("{c}:5353"),
        "by-ip",
    );
    assert_eq!(echoed, format!("udp echo from {c}:5353: by-ip"));
    let client = pod_ip(cluster, "a-udp-c-ip");
    wait_for("udp-c to log the client pod", START, || {
        let log = cluster.kubectl_ok(&["logs", "udp-c"]);
        match log
            .lines()
            .any(|l| l.starts_with(&format!("{client}:")) && l.ends_with("sent 5 bytes"))
        {
            true => Ok(()),
            false => Err(log),
        }
    });

    // The NodePort from the host, on node-a (endpoint on node-b, through the tunnel) and
    // on node-b (its own endpoint): the answer comes from the node port.
    let node_port = service("udp-b")["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .expect("a nodePort");
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("a UDP socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(250)))
        .expect("a read timeout");
    for address in &addresses[..2] {
        let to = std::net::SocketAddr::from((*address, node_port));
        let mut buf = [0u8; 64];
        let (len, from) = wait_for(&format!("an answer from {to}"), START, || {
            socket
                .send_to(b"from-host", to)
                .map_err(|e| e.to_string())?;
            socket.recv_from(&mut buf).map_err(|e| e.to_string())
        });
        assert_eq!((from, &buf[..len]), (to, &b"from-host"[..]));
    }

    // externalTrafficPolicy: Local: node-b still answers with its own endpoint; node-a,
    // which runs none, drops new clients' datagrams (a flow keeps its endpoint, so each
    // try is a new client).
    cluster.kubectl_ok(&[
        "patch",
        "svc",
        "udp-b",
        "-p",
        r#"{"spec":{"externalTrafficPolicy":"Local"}}"#,
    ]);
    let node_a = std::net::SocketAddr::from((addresses[0], node_port));
    wait_for("node-a to stop answering for udp-b", START, || {
        let client = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(|e| e.to_string())?;
        client
            .set_read_timeout(Some(Duration::from_millis(500)))
            .map_err(|e| e.to_string())?;
        client
            .send_to(b"local?", node_a)
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 16];
        match client.recv_from(&mut buf) {
            Ok(_) => Err("node-a answered".to_owned()),
            Err(_) => Ok(()),
        }
    });
    let node_b = std::net::SocketAddr::from((addresses[1], node_port));
    let mut buf = [0u8; 64];
    let (len, from) = wait_for(&format!("an answer from {node_b}"), START, || {
        socket
            .send_to(b"still", node_b)
            .map_err(|e| e.to_string())?;
        socket.recv_from(&mut buf).map_err(|e| e.to_string())
    });
    assert_eq!((from, &buf[..len]), (node_b, &b"still"[..]));
}
