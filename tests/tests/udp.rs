//! UDP on the pod network (issue 10 §1 and §2) with the real kubectl against a real server
//! and agent: a pod sends a datagram to a ClusterIP Service of UDP echo pods and gets the
//! echo back from the ClusterIP; a second UDP bind of a port in one pod is `address in
//! use` while TCP on that port is free; a datagram to a denied address fails at once; and
//! a datagram from the host to a UDP LoadBalancer's node port and port comes back echoed; a datagram to an outside
//! address the pod's egress rule allows comes back from that address (`cross_node` sends
//! UDP across nodes).

use std::net::UdpSocket;
use std::time::Duration;

use serde_json::Value;
use wasmfleet_tests::wait::wait_for;
use wasmfleet_tests::{Cluster, ClusterOptions, manifests};

const START: Duration = Duration::from_secs(60);

const BACKENDS: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: udp-echo
spec:
  replicas: 2
  selector:
    matchLabels: {app: udp-echo}
  template:
    metadata:
      labels: {app: udp-echo}
    spec:
      containers:
      - name: server
        image: tcp-echo:v1
        args: [\"--udp\", \"--port\", \"5353\"]
        ports: [{name: dns, containerPort: 5353, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata:
  name: udp-echo
spec:
  selector: {app: udp-echo}
  ports:
  - port: 53
    protocol: UDP
    targetPort: dns
";

#[test]
fn a_pod_gets_the_echo_of_a_udp_service_and_udp_ports_are_the_pods_own() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.push("tcp-echo", "tcp-echo:v1");
    cluster.kubectl_apply(BACKENDS);
    let service: Value =
        serde_json::from_str(&cluster.kubectl_ok(&["get", "service", "udp-echo", "-o", "json"]))
            .expect("kubectl prints JSON");
    let cluster_ip = service["spec"]["clusterIP"]
        .as_str()
        .expect("a ClusterIP")
        .to_owned();
    assert_eq!(service["spec"]["ports"][0]["protocol"], "UDP");

    // A pod sends to the Service by name; the echo comes back from the ClusterIP.
    cluster.kubectl_apply(&manifests::pod_of(
        "client",
        "  - name: main
    image: tcp-echo:v1
    args: [\"--udp\", \"--connect\", \"udp-echo:53\", \"--send\", \"hello over udp\"]
",
    ));
    let echoed = cluster.wait_log_line("client", "main", "udp echo from");
    assert_eq!(
        echoed,
        format!("udp echo from {cluster_ip}:53: hello over udp")
    );
    // The endpoint saw the client's pod IP.
    let client = cluster.wait_pod("client", "a pod IP", |p| p["status"]["podIP"].is_string());
    let client_ip = client["status"]["podIP"]
        .as_str()
        .expect("pod IP")
        .to_owned();
    wait_for("an endpoint to log the client", START, || {
        let out = cluster.kubectl(&["logs", "-l", "app=udp-echo"]);
        out.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{client_ip}:")))
            .filter(|l| l.ends_with("sent 14 bytes"))
            .map(str::to_owned)
            .ok_or(out.stdout)
    });

    // Two UDP binds of one port in a pod: the second is `address in use`; TCP on the same
    // port is a separate space and free.
    cluster.kubectl_apply(&manifests::pod_of(
        "clash",
        "  - name: first
    image: tcp-echo:v1
    args: [\"--udp\", \"--port\", \"9000\"]
  - name: second
    image: tcp-echo:v1
    args: [\"--udp\", \"--port\", \"9000\"]
  - name: tcp
    image: tcp-echo:v1
    args: [\"--port\", \"9000\"]
",
    ));
    let loser = cluster.wait_failed_container("clash", &["first", "second"]);
    let why = cluster.wait_log_line("clash", loser, "tcp-echo:");
    assert!(
        why.starts_with("tcp-echo: cannot bind udp 0.0.0.0:9000: Address in use"),
        "{why}"
    );
    let tcp = cluster.wait_log_line("clash", "tcp", "listening on");
    assert_eq!(tcp, "listening on 0.0.0.0:9000");

    // A datagram outside the cluster without an egress rule: a clear error, at once.
    cluster.kubectl_apply(&manifests::pod_of(
        "outbound",
        "  - name: main
    image: tcp-echo:v1
    args: [\"--udp\", \"--connect\", \"192.0.2.1:53\"]
",
    ));
    let denied = cluster.wait_log_line("outbound", "main", "tcp-echo:");
    assert!(
        denied.starts_with("tcp-echo: cannot send to 192.0.2.1:53: Permission denied"),
        "{denied}"
    );

    // A UDP LoadBalancer (so also a NodePort): a datagram from the host comes back from
    // the node port, and from the Service's port on the node; the endpoint saw the node's
    // own address of its pod range as the client.
    let service = "apiVersion: v1
kind: Service
metadata:
  name: udp-lb
spec:
  type: LoadBalancer
  selector: {app: udp-echo}
  ports:
  - port: 15353
    protocol: UDP
    targetPort: dns
";
    cluster.kubectl_apply(service);
    let service: Value =
        serde_json::from_str(&cluster.kubectl_ok(&["get", "service", "udp-lb", "-o", "json"]))
            .expect("kubectl prints JSON");
    let node_port = service["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .expect("a nodePort");
    for port in [node_port, 15353] {
        let address = format!("127.0.0.1:{port}");
        assert_eq!(
            udp_echo(&address, b"hello node port"),
            (
                address.parse().expect("address"),
                b"hello node port".to_vec()
            )
        );
    }
    let node: Value = serde_json::from_str(&cluster.kubectl_ok(&["get", "nodes", "-o", "json"]))
        .expect("kubectl prints JSON");
    let pod_cidr = node["items"][0]["spec"]["podCIDR"]
        .as_str()
        .expect("a podCIDR")
        .to_owned();
    let node_address = pod_cidr.replace(".0/24", ".1");
    // UDP to an outside address (a host process on the node's address) that the pod's
    // egress rule allows: the answer comes back from that address.
    let node_ip = node["items"][0]["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["type"] == "InternalIP")
        .and_then(|a| a["address"].as_str())
        .and_then(|a| a.parse::<std::net::Ipv4Addr>().ok())
        .filter(|ip| !ip.is_loopback())
        .expect("a non-loopback InternalIP");
    let outside = UdpSocket::bind((node_ip, 0)).expect("a UDP socket on the node's address");
    let outside_addr = outside.local_addr().expect("its address");
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((len, from)) = outside.recv_from(&mut buf) {
            let _ = outside.send_to(&buf[..len], from);
        }
    });
    cluster.kubectl_apply(&format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: egress
  annotations: {{wasmfleet.io/egress: \"{outside_addr}\"}}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: tcp-echo:v1
    args: [\"--udp\", \"--connect\", \"{outside_addr}\", \"--send\", \"out and back\"]
"
    ));
    let echoed = cluster.wait_log_line("egress", "main", "udp echo from");
    assert_eq!(
        echoed,
        format!("udp echo from {outside_addr}: out and back")
    );

    wait_for("an endpoint to log the node port's client", START, || {
        let out = cluster.kubectl(&["logs", "-l", "app=udp-echo"]);
        out.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{node_address}:")) && l.ends_with("sent 15 bytes"))
            .map(str::to_owned)
            .ok_or(out.stdout)
    });
}

/// Sends `payload` to `address` from the host until an answer comes (the listener may not
/// be open yet); the answer's source and bytes.
fn udp_echo(address: &str, payload: &[u8]) -> (std::net::SocketAddr, Vec<u8>) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("a UDP socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(250)))
        .expect("a read timeout");
    let mut buf = [0u8; 2048];
    wait_for(&format!("an answer from {address}"), START, || {
        socket
            .send_to(payload, address)
            .map_err(|e| e.to_string())?;
        let (len, from) = socket.recv_from(&mut buf).map_err(|e| e.to_string())?;
        Ok((from, buf[..len].to_vec()))
    })
}
