//! Ingress with canary releases (issue 10 §4) with the real kubectl and curl against a
//! real server and an agent serving Ingress traffic on a port of its own: host and path
//! routing, the ingress-nginx canary by header, by header pattern and by weight (20% ± 5%
//! of 1,000 requests),
//! 404 for an unknown host, the refusals, and a deleted canary taking no more traffic.
//! TLS is tested in `ingress_tls.rs`.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::Duration;

use wasmfleet_tests::cluster::{AgentLaunch, free_port};
use wasmfleet_tests::wait::wait_for;
use wasmfleet_tests::{Cluster, ClusterOptions};

const START: Duration = Duration::from_secs(60);

const HOST: &str = "shop.example.com";

/// Two Deployments of one module told apart by `$MESSAGE`, a Service each.
const BACKENDS: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: stable
spec:
  selector:
    matchLabels: {app: stable}
  template:
    metadata:
      labels: {app: stable}
    spec:
      containers:
      - name: web
        image: tcp-echo:v1
        args: [\"--port\", \"8080\", \"--http\"]
        env: [{name: MESSAGE, value: stable}]
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: canary
spec:
  selector:
    matchLabels: {app: canary}
  template:
    metadata:
      labels: {app: canary}
    spec:
      containers:
      - name: web
        image: tcp-echo:v1
        args: [\"--port\", \"8080\", \"--http\"]
        env: [{name: MESSAGE, value: canary}]
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata:
  name: stable
spec:
  selector: {app: stable}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata:
  name: canary
spec:
  selector: {app: canary}
  ports: [{name: http, port: 80, targetPort: http}]
";

/// The main Ingress: `/` to stable (by port name), `/api` to canary (by number).
const MAIN: &str = "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: shop
spec:
  rules:
  - host: shop.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {service: {name: stable, port: {name: http}}}
      - path: /api
        pathType: Prefix
        backend: {service: {name: canary, port: {number: 80}}}
";

/// The canary Ingress of the same host and path, as ingress-nginx users write it.
const CANARY: &str = "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: shop-canary
  annotations:
    nginx.ingress.kubernetes.io/canary: \"true\"
    nginx.ingress.kubernetes.io/canary-weight: \"20\"
    nginx.ingress.kubernetes.io/canary-by-header: x-canary
spec:
  ingressClassName: wasmfleet
  rules:
  - host: shop.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {service: {name: canary, port: {number: 80}}}
";

/// `curl` of `url` with `args`: (status code, body) of each request (the bodies here are
/// one line each).
fn curl_all(url: &str, args: &[&str]) -> Vec<(String, String)> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "60", "-w", "%{http_code}\\n"])
        .args(args)
        .arg(url)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    lines
        .chunks(2)
        .map(|pair| {
            (
                pair.get(1).copied().unwrap_or("").to_owned(),
                pair[0].to_owned(),
            )
        })
        .collect()
}

/// `curl` of `url` with `args`: its status code and body.
fn curl(url: &str, args: &[&str]) -> (String, String) {
    curl_all(url, args).pop().unwrap_or_default()
}

#[test]
fn an_ingress_routes_by_host_and_path_and_a_canary_takes_its_header_and_weight() {
    let mut cluster = Cluster::start(ClusterOptions { agents: Vec::new() });
    let port = free_port(IpAddr::V4(Ipv4Addr::LOCALHOST)).port();
    let mut launch = AgentLaunch::host("");
    launch.extra_args = vec!["--ingress-port".into(), port.to_string()];
    cluster.launch_agent("node-a", launch);
    cluster.push("tcp-echo", "tcp-echo:v1");
    cluster.kubectl_apply(BACKENDS);
    cluster.kubectl_apply(MAIN);
    let url = format!("http://127.0.0.1:{port}/");
    let host = format!("Host: {HOST}");

    // Once the pods are ready, `/` goes to stable and `/api/...` to canary.
    wait_for("the Ingress to reach stable", START, || {
        let (status, body) = curl(&url, &["-H", &host]);
        (status == "200" && body == "stable")
            .then_some(())
            .ok_or(format!("{status} {body:?}"))
    });
    wait_for("/api to reach canary", START, || {
        let (status, body) = curl(&format!("{url}api/v1"), &["-H", &host]);
        (status == "200" && body == "canary")
            .then_some(())
            .ok_or(format!("{status} {body:?}"))
    });
    let (status, body) = curl(&url, &["-H", "Host: nobody.example.com"]);
    assert_eq!(status, "404", "an unknown host: {body:?}");
    // Its ADDRESS is the node's InternalIP.
    let node_ip = cluster.node_internal_ip("node-a");
    let node_ip = node_ip.as_str();
    assert!(!node_ip.is_empty(), "the node reports an InternalIP");
    wait_for("the Ingress to show the node's address", START, || {
        let table = cluster.kubectl_ok(&["get", "ingress"]);
        let row = table.lines().find(|l| l.starts_with("shop ")).unwrap_or("");
        (row.contains(HOST) && row.contains(node_ip))
            .then_some(())
            .ok_or(table.clone())
    });

    // The canary: by header always and never, then 20% of 1,000 requests by weight.
    cluster.kubectl_apply(CANARY);
    wait_for("the canary header to take effect", START, || {
        let (status, body) = curl(&url, &["-H", &host, "-H", "x-canary: always"]);
        (status == "200" && body == "canary")
            .then_some(())
            .ok_or(format!("{status} {body:?}"))
    });
    for _ in 0..5 {
        let (_, body) = curl(&url, &["-H", &host, "-H", "x-canary: always"]);
        assert_eq!(body, "canary");
        let (_, body) = curl(&url, &["-H", &host, "-H", "x-canary: never"]);
        assert_eq!(body, "stable");
    }
    // One curl, 1,000 requests (URL globbing).
    let answers = curl_all(&format!("{url}?[1-1000]"), &["-H", &host]);
    let count = |want: &str| {
        answers
            .iter()
            .filter(|(s, b)| s == "200" && b == want)
            .count()
    };
    let (canary, stable) = (count("canary"), count("stable"));
    assert_eq!(canary + stable, 1000, "every request answered: {answers:?}");
    assert!(
        (150..=250).contains(&canary),
        "canary-weight 20 should give 20% ± 5% of 1,000 requests, got {canary}"
    );

    // canary-by-header-pattern: a matching value goes to the canary, another falls
    // through (to weight 0 here); a pattern the agents cannot match is refused by field.
    cluster.kubectl_ok(&[
        "annotate",
        "--overwrite",
        "ingress",
        "shop-canary",
        "nginx.ingress.kubernetes.io/canary-by-header-pattern=^(beta|qa)-[0-9]+$",
        "nginx.ingress.kubernetes.io/canary-weight=0",
    ]);
    wait_for("the header pattern to take effect", START, || {
        let (status, body) = curl(&url, &["-H", &host, "-H", "x-canary: qa-7"]);
        (status == "200" && body == "canary")
            .then_some(())
            .ok_or(format!("{status} {body:?}"))
    });
    for _ in 0..5 {
        let (_, body) = curl(&url, &["-H", &host, "-H", "x-canary: beta-12"]);
        assert_eq!(body, "canary");
        let (_, body) = curl(&url, &["-H", &host, "-H", "x-canary: prod-12"]);
        assert_eq!(body, "stable");
    }
    let out = cluster.kubectl(&[
        "annotate",
        "--overwrite",
        "ingress",
        "shop-canary",
        "nginx.ingress.kubernetes.io/canary-by-header-pattern=^(?!prod)",
    ]);
    assert!(
        !out.success
            && out.stderr.contains(
                "metadata.annotations[nginx.ingress.kubernetes.io/canary-by-header-pattern]"
            ),
        "{}{}",
        out.stdout,
        out.stderr
    );

    // A second canary for the same host and path is refused.
    let second = CANARY.replace("name: shop-canary", "name: shop-canary-2");
    let out = cluster.kubectl_with_stdin(&["apply", "-f", "-"], Some(&second));
    assert!(
        !out.success && out.stderr.contains("already has a canary"),
        "{}{}",
        out.stdout,
        out.stderr
    );

    // Without the canary Ingress, even `x-canary: always` goes to stable.
    cluster.kubectl_ok(&["delete", "ingress", "shop-canary"]);
    wait_for("the deleted canary to take no traffic", START, || {
        let (status, body) = curl(&url, &["-H", &host, "-H", "x-canary: always"]);
        (status == "200" && body == "stable")
            .then_some(())
            .ok_or(format!("{status} {body:?}"))
    });
}

/// A Gateway of the built-in class with one HTTP listener on `port`, and an HTTPRoute: a
/// header rule to canary, then stable and canary by weight.
fn gateway_and_route(port: u16, stable: u32, canary: u32) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: web
spec:
  gatewayClassName: wasmfleet
  listeners:
  - name: http
    protocol: HTTP
    port: {port}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: shop
spec:
  parentRefs: [{{name: web}}]
  hostnames: [shop.example.com]
  rules:
  - matches: [{{headers: [{{name: x-version, value: canary}}]}}]
    backendRefs: [{{name: canary, port: 80}}]
  - backendRefs:
    - {{name: stable, port: 80, weight: {stable}}}
    - {{name: canary, port: 80, weight: {canary}}}
"
    )
}

#[test]
fn a_gateway_splits_an_http_route_by_weight_and_header_match() {
    let mut cluster = Cluster::start(ClusterOptions { agents: Vec::new() });
    cluster.launch_agent("node-a", AgentLaunch::host(""));
    let port = free_port(IpAddr::V4(Ipv4Addr::LOCALHOST)).port();
    cluster.push("tcp-echo", "tcp-echo:v1");
    cluster.kubectl_apply(BACKENDS);
    // Another process holds the Gateway's port at first: the agent serves it once it is
    // free (it tries again), without a change to the Gateway.
    let holder = std::net::TcpListener::bind(("0.0.0.0", port)).expect("hold the port");
    cluster.kubectl_apply(&gateway_and_route(port, 70, 30));
    std::thread::sleep(Duration::from_secs(1));
    drop(holder);
    let url = format!("http://127.0.0.1:{port}/");
    let host = format!("Host: {HOST}");

    // The header rule always goes to canary.
    wait_for("the header match to reach canary", START, || {
        let (status, body) = curl(&url, &["-H", &host, "-H", "x-version: canary"]);
        (status == "200" && body == "canary")
            .then_some(())
            .ok_or(format!("{status} {body:?}"))
    });
    // Weights 70/30 over 1,000 requests (the pods are ready once canary answered; stable
    // may still be starting, so wait for it first).
    wait_for("stable to answer", START, || {
        let answers = curl_all(&format!("{url}?[1-20]"), &["-H", &host]);
        answers
            .iter()
            .any(|(s, b)| s == "200" && b == "stable")
            .then_some(())
            .ok_or(format!("{answers:?}"))
    });
    let answers = curl_all(&format!("{url}?[1-1000]"), &["-H", &host]);
    let count = |want: &str| {
        answers
            .iter()
            .filter(|(s, b)| s == "200" && b == want)
            .count()
    };
    let (stable, canary) = (count("stable"), count("canary"));
    assert_eq!(stable + canary, 1000, "every request answered: {answers:?}");
    assert!(
        (250..=350).contains(&canary),
        "weights 70/30 should give canary 30% ± 5% of 1,000 requests, got {canary}"
    );
    let (status, _) = curl(&url, &["-H", "Host: other.example.com"]);
    assert_eq!(status, "404", "a host the route does not name");

    // kubectl shows the class accepted, the Gateway programmed on the node's address and
    // the route accepted with its backends resolved.
    let node_ip = cluster.node_internal_ip("node-a");
    wait_for("the Gateway API statuses", START, || {
        let classes = cluster.kubectl_ok(&["get", "gatewayclass", "wasmfleet"]);
        let gateways = cluster.kubectl_ok(&["get", "gateway", "web"]);
        let route = cluster.kubectl_ok(&[
            "get",
            "httproute",
            "shop",
            "-o",
            "jsonpath={.status.parents[0].conditions[*].status}",
        ]);
        let class_ok = classes.contains("wasmfleet.io/gateway-controller   True");
        let gateway_ok = gateways
            .lines()
            .any(|l| l.starts_with("web ") && l.contains(&node_ip) && l.contains("True"));
        (class_ok && gateway_ok && route.trim() == "True True")
            .then_some(())
            .ok_or(format!("{classes}{gateways}{route}"))
    });

    // Shifting the weights to 100/0 takes effect without restarting anything.
    cluster.kubectl_apply(&gateway_and_route(port, 100, 0));
    wait_for("weight 0 to take no traffic", START, || {
        let answers = curl_all(&format!("{url}?[1-50]"), &["-H", &host]);
        let stable = answers
            .iter()
            .filter(|(s, b)| s == "200" && b == "stable")
            .count();
        (stable == 50).then_some(()).ok_or(format!("{answers:?}"))
    });

    // What cannot be served is refused naming the field (HTTPS needs a certificate).
    let https = gateway_and_route(port, 1, 1).replace("protocol: HTTP", "protocol: HTTPS");
    let out = cluster.kubectl_with_stdin(&["apply", "-f", "-"], Some(&https));
    assert!(
        !out.success && out.stderr.contains("spec.listeners[0].tls.certificateRefs"),
        "{}{}",
        out.stdout,
        out.stderr
    );
}
