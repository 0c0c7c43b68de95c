//! The pod network (issue 10 §1) with the real kubectl against a real server and agent:
//! node ranges and pod IPs, two containers of a pod over localhost, a pod reaching
//! another by its pod IP, a port conflict inside a pod, denied egress, and the refusals
//! (hostPort, ports on a wasip1 module).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use wasmfleet_tests::cluster::container_status;
use wasmfleet_tests::{Cluster, ClusterOptions, manifests};

fn pod_ip(cluster: &Cluster, name: &str) -> Ipv4Addr {
    let pod = cluster.wait_pod(name, "a pod IP", |p| p["status"]["podIP"].is_string());
    pod["status"]["podIP"]
        .as_str()
        .and_then(|ip| ip.parse().ok())
        .expect("an IPv4 pod IP")
}

#[test]
fn pods_get_addresses_and_talk_over_localhost_and_pod_ips() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.push("tcp-echo", "tcp-echo:v1");

    cluster.kubectl_apply(&manifests::pod_of(
        "echo",
        "  - name: server
    image: tcp-echo:v1
    args: [\"--port\", \"7\"]
    ports: [{name: echo, containerPort: 7}]
  - name: caller
    image: tcp-echo:v1
    args: [\"--connect\", \"127.0.0.1:7\", \"--send\", \"hello\"]
",
    ));
    // Two containers of one pod: the caller reaches the server over 127.0.0.1.
    let echoed = cluster.wait_log_line("echo", "caller", "echo from");
    assert_eq!(echoed, "echo from 127.0.0.1:7: hello");

    // The node got a range of the cluster CIDR and the pod an address in it.
    let node = cluster.node("node-a").expect("node-a");
    let range: Ipv4Net = node["spec"]["podCIDR"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .expect("a pod CIDR on the node");
    assert_eq!(node["spec"]["podCIDRs"][0], node["spec"]["podCIDR"]);
    assert!(cluster.cluster_cidr.contains(&range), "{range}");
    let echo_ip = pod_ip(&cluster, "echo");
    assert!(range.contains(&echo_ip), "{echo_ip} not in {range}");
    let wide = cluster.kubectl(&["get", "pod", "echo", "-o", "wide"]);
    assert!(
        wide.stdout.contains(&echo_ip.to_string()),
        "{}",
        wide.stdout
    );

    // Another pod reaches it by its pod IP, and the server sees the caller's pod IP.
    cluster.kubectl_apply(&manifests::pod_of(
        "client",
        &format!(
            "  - name: main
    image: tcp-echo:v1
    args: [\"--connect\", \"{echo_ip}:7\", \"--send\", \"over the pod network\"]
"
        ),
    ));
    let echoed = cluster.wait_log_line("client", "main", "echo from");
    assert_eq!(
        echoed,
        format!("echo from {echo_ip}:7: over the pod network")
    );
    let client_ip = pod_ip(&cluster, "client");
    assert_ne!(client_ip, echo_ip);
    let closed = cluster.wait_log_line("echo", "server", &format!("{client_ip}:"));
    assert!(closed.ends_with("closed after 21 bytes"), "{closed}");

    // Outside the cluster nothing is reachable without an egress rule: a clear error, fast.
    cluster.kubectl_apply(&manifests::pod_of(
        "outbound",
        "  - name: main
    image: tcp-echo:v1
    args: [\"--connect\", \"192.0.2.1:80\"]
",
    ));
    let denied = cluster.wait_log_line("outbound", "main", "tcp-echo:");
    assert_eq!(
        denied,
        "tcp-echo: cannot connect to 192.0.2.1:80: Permission denied (os error 2)"
    );
    let failed = cluster.wait_pod("outbound", "Failed", |p| p["status"]["phase"] == "Failed");
    assert_eq!(
        container_status(&failed, "main")["state"]["terminated"]["exitCode"],
        1
    );
}

#[test]
fn a_port_conflict_in_a_pod_and_unusable_ports_are_clear_errors() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.push("tcp-echo", "tcp-echo:v1");
    cluster.push("hello", "hello:v1");

    // Two containers of one pod listening on one port: the second one says why it failed.
    cluster.kubectl_apply(&manifests::pod_of(
        "clash",
        "  - name: first
    image: tcp-echo:v1
    args: [\"--port\", \"8000\"]
  - name: second
    image: tcp-echo:v1
    args: [\"--port\", \"8000\"]
",
    ));
    let loser = cluster.wait_failed_container("clash", &["first", "second"]);
    let why = cluster.wait_log_line("clash", loser, "tcp-echo:");
    assert!(
        why.starts_with("tcp-echo: cannot listen on 0.0.0.0:8000: Address in use"),
        "{why}"
    );

    // hostPort is refused, naming the field.
    let out = cluster.kubectl_with_stdin(
        &["apply", "-f", "-"],
        Some(&manifests::pod_of(
            "hostport",
            "  - name: main
    image: tcp-echo:v1
    ports: [{containerPort: 80, hostPort: 80}]
",
        )),
    );
    assert!(!out.success);
    assert!(
        out.stderr.contains("spec.containers[0].ports[0].hostPort"),
        "{}",
        out.stderr
    );

    // A wasip1 module has no sockets: declaring ports for it says to build for wasip2.
    cluster.kubectl_apply(&manifests::pod_of(
        "p1ports",
        "  - name: main
    image: hello:v1
    ports: [{containerPort: 8080}]
",
    ));
    let waiting = cluster.wait_pod("p1ports", "CreateContainerError", |p| {
        container_status(p, "main")["state"]["waiting"]["reason"] == "CreateContainerError"
    });
    let message = container_status(&waiting, "main")["state"]["waiting"]["message"].clone();
    assert!(
        message
            .as_str()
            .is_some_and(|m| m.contains("build it for wasm32-wasip2")),
        "{message}"
    );
}
