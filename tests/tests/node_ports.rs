//! NodePort and LoadBalancer Services (issue 10 §2) with real server and agent processes,
//! the real kubectl and curl: the node reports its InternalIP; a NodePort Service in front
//! of `tcp-echo --http` pods answers curl on `127.0.0.1:<nodePort>` and on the node's
//! InternalIP; a requested node port that is taken is a 422 naming the field; a
//! LoadBalancer answers on its own port, with the node's address as its EXTERNAL-IP; a
//! deleted Service's ports stop answering; a port taken on the host is reported, and the
//! agent keeps serving the rest.
//!
//! Node ports are fixed per test (and LoadBalancer ports high), so that the tests of this
//! file, running at once on one host, never want the same host port.

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use wasmfleet_tests::wait::wait_for;
use wasmfleet_tests::{Cluster, ClusterOptions};

const CONVERGE: Duration = Duration::from_secs(30);

/// A Deployment `name` of one `tcp-echo --http` pod on port 8080.
fn backend(name: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: web
        image: tcp-echo:v1
        args: [\"--port\", \"8080\", \"--http\"]
        ports: [{{name: http, containerPort: 8080}}]
"
    )
}

/// A Service `name` of `type` selecting the `app` pods, with `port` (YAML flow map).
fn service(name: &str, kind: &str, app: &str, port: &str) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  type: {kind}
  selector: {{app: {app}}}
  ports: [{port}]
"
    )
}

fn apply(cluster: &Cluster, manifest: &str) -> Result<(), String> {
    let out = cluster.kubectl_with_stdin(&["apply", "-f", "-"], Some(manifest));
    match out.success {
        true => Ok(()),
        false => Err(format!("{}{}", out.stdout, out.stderr)),
    }
}

fn get_json(cluster: &Cluster, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&cluster.kubectl_ok(&all)).expect("kubectl prints JSON")
}

/// `curl http://{host}:{port}/`: the body, or why there is none.
fn curl(host: &str, port: u16) -> Result<String, String> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "3", &format!("http://{host}:{port}/")])
        .output()
        .map_err(|e| format!("curl: {e}"))?;
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

/// Waits until `host:port` answers like `tcp-echo --http` does.
fn wait_answers(host: &str, port: u16) {
    wait_for(&format!("{host}:{port} to answer"), CONVERGE, || {
        curl(host, port).and_then(|body| match body == "ok\n" {
            true => Ok(()),
            false => Err(format!("unexpected body {body:?}")),
        })
    });
}

/// Waits until nothing listens on `host:port` any more.
fn wait_refused(host: &str, port: u16) {
    wait_for(
        &format!("{host}:{port} to stop answering"),
        CONVERGE,
        || match curl(host, port) {
            Ok(body) => Err(format!("still answers {body:?}")),
            Err(why) if why.contains("refused") || why.contains("Couldn't connect") => Ok(()),
            Err(why) => Err(why),
        },
    );
}

/// The InternalIP the node reports, also shown by `kubectl get nodes -o wide`.
fn internal_ip(cluster: &Cluster, node: &str) -> String {
    let node_json = get_json(cluster, &["node", node]);
    let ip = node_json["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["type"] == "InternalIP")
        .and_then(|a| a["address"].as_str())
        .expect("an InternalIP")
        .to_owned();
    let wide = cluster.kubectl_ok(&["get", "nodes", "-o", "wide"]);
    let row = wide
        .lines()
        .find(|l| l.starts_with(node))
        .expect("a row for the node");
    assert!(row.contains(&ip), "INTERNAL-IP {ip}: {wide}");
    ip
}

#[test]
fn node_ports_and_load_balancers_answer_curl_on_the_node() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.push("tcp-echo", "tcp-echo:v1");
    let node_ip = internal_ip(&cluster, "node-a");
    apply(&cluster, &backend("web")).expect("the backend");

    // NodePort: reachable on loopback and on the node's address.
    apply(
        &cluster,
        &service(
            "web-np",
            "NodePort",
            "web",
            "{port: 80, targetPort: http, nodePort: 30101}",
        ),
    )
    .expect("a NodePort Service");
    let table = cluster.kubectl_ok(&["get", "svc", "web-np"]);
    assert!(table.contains("80:30101/TCP"), "{table}");
    wait_answers("127.0.0.1", 30101);
    wait_answers(&node_ip, 30101);

    // `kubectl expose --type NodePort` gets a node port from the range.
    cluster.kubectl_ok(&[
        "expose",
        "deployment",
        "web",
        "--type",
        "NodePort",
        "--port",
        "81",
        "--target-port",
        "8080",
        "--name",
        "web-exposed",
    ]);
    let exposed = get_json(&cluster, &["svc", "web-exposed"]);
    let node_port = exposed["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .expect("a node port");
    assert!((30000..=32767).contains(&node_port), "{node_port}");
    wait_answers(&node_ip, node_port);

    // A second Service cannot have that node port, and the answer names the field.
    let err = apply(
        &cluster,
        &service("twin", "NodePort", "web", "{port: 80, nodePort: 30101}"),
    )
    .expect_err("the node port is taken");
    assert!(
        err.contains("spec.ports[0].nodePort")
            && err.contains("provided port is already allocated"),
        "{err}"
    );
    let err = apply(
        &cluster,
        &service("low", "NodePort", "web", "{port: 80, nodePort: 8080}"),
    )
    .expect_err("out of range");
    assert!(err.contains("30000-32767"), "{err}");

    // LoadBalancer: the node serves the Service's own port and is its EXTERNAL-IP.
    apply(
        &cluster,
        &service(
            "web-lb",
            "LoadBalancer",
            "web",
            "{port: 18101, targetPort: 8080, nodePort: 30102}",
        ),
    )
    .expect("a LoadBalancer Service");
    wait_for("the load balancer's EXTERNAL-IP", CONVERGE, || {
        let table = cluster.kubectl_ok(&["get", "svc", "web-lb"]);
        table
            .lines()
            .any(|l| {
                l.starts_with("web-lb") && l.contains(&node_ip) && l.contains("18101:30102/TCP")
            })
            .then_some(())
            .ok_or(table)
    });
    let svc = get_json(&cluster, &["svc", "web-lb"]);
    assert_eq!(
        svc["status"]["loadBalancer"]["ingress"][0]["ip"],
        node_ip.as_str()
    );
    wait_answers(&node_ip, 18101);
    wait_answers("127.0.0.1", 18101);
    wait_answers("127.0.0.1", 30102);

    // Deleted Services stop answering; the node port is free again.
    cluster.kubectl_ok(&["delete", "svc", "web-lb", "web-np"]);
    wait_refused(&node_ip, 18101);
    wait_refused("127.0.0.1", 30101);
    apply(
        &cluster,
        &service("twin", "NodePort", "web", "{port: 80, nodePort: 30101}"),
    )
    .expect("the freed node port");
}

#[test]
fn a_port_taken_on_the_host_is_reported_and_the_rest_is_served() {
    // Something else on the host holds the LoadBalancer's port on loopback.
    let squatter = TcpListener::bind("127.0.0.1:18102").expect("a free port for the test");
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.push("tcp-echo", "tcp-echo:v1");
    let node_ip = internal_ip(&cluster, "node-a");
    apply(&cluster, &backend("shop")).expect("the backend");
    apply(
        &cluster,
        &service(
            "shop",
            "LoadBalancer",
            "shop",
            "{port: 18102, targetPort: 8080, nodePort: 30103}",
        ),
    )
    .expect("a LoadBalancer Service");

    // The agent reports the port it cannot have and keeps serving the rest.
    wait_for("a FailedToListen event", CONVERGE, || {
        let events = cluster.kubectl_ok(&[
            "get",
            "events",
            "-A",
            "--field-selector",
            "reason=FailedToListen",
        ]);
        events
            .lines()
            .any(|l| l.contains("127.0.0.1:18102") && l.contains("default/shop"))
            .then_some(())
            .ok_or(events)
    });
    wait_answers("127.0.0.1", 30103);
    if node_ip != "127.0.0.1" {
        wait_answers(&node_ip, 18102);
    }
    drop(squatter);
    // Once the port is free the agent takes it.
    wait_answers("127.0.0.1", 18102);
}
