//! Serving wasi:http components (issue 10 §3) with the real kubectl against a real server
//! and agent: `http-hello` (a `wasi:http/proxy` component) served by a Deployment behind a
//! Service, made Ready by an `httpGet` readiness probe on the served port, and called by the
//! `fetch` guest (`wasi:http/outgoing-handler`) by the Service's name; a fetch outside the
//! cluster denied at once by the egress policy; a proxy without a containerPort refused.

use std::time::Duration;

use serde_json::Value;
use wasmfleet_tests::wait::wait_for;
use wasmfleet_tests::{Cluster, ClusterOptions};

const START: Duration = Duration::from_secs(60);

const WEB: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: hello
        image: http-hello:v1
        env: [{name: MESSAGE, value: stable}]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {port: http, path: /ready}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: http
";

/// A pod whose one container runs `image` with `args`, once.
fn pod(name: &str, image: &str, args: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: {image}
    args: {args}
"
    )
}

fn container(pod: &Value) -> Value {
    pod["status"]["containerStatuses"][0].clone()
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The name of the web Deployment's pod once it is Ready.
fn ready_web_pod(cluster: &Cluster) -> String {
    wait_for("the web pod to be Ready", START, || {
        let out = cluster.kubectl_ok(&["get", "pods", "-l", "app=web", "-o", "json"]);
        let pods: Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
        pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| is_ready(p))
            .and_then(|p| p["metadata"]["name"].as_str().map(str::to_owned))
            .ok_or(out)
    })
}

/// Waits until pod `name` ran to its end; returns it and its log.
fn finished(cluster: &Cluster, name: &str) -> (Value, String) {
    let pod = cluster.wait_pod_within(name, "to finish", START, |p| {
        matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
    });
    (pod, cluster.kubectl_ok(&["logs", name]))
}

#[test]
fn a_served_component_is_reached_through_its_service_and_egress_is_enforced() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.push("http-hello", "http-hello:v1");
    cluster.push("fetch", "fetch:v1");
    cluster.kubectl_apply(WEB);

    // The httpGet readiness probe on the served port makes the pod Ready, and the
    // container is Running while it serves.
    let web = ready_web_pod(&cluster);
    let served = cluster.pod(&web).expect("the web pod");
    assert!(
        container(&served)["state"]["running"].is_object(),
        "{}",
        served["status"]
    );

    // fetch reaches the component by the Service's name: one instance per request, each
    // answering with the container's $MESSAGE.
    cluster.kubectl_apply(&pod("fetcher", "fetch:v1", "[\"http://web/\", \"3\"]"));
    let (fetcher, log) = finished(&cluster, "fetcher");
    assert_eq!(fetcher["status"]["phase"], "Succeeded", "{log}");
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        ["200 hello from wasmfleet stable"; 3],
        "{log}"
    );

    // The instances' stdout is the container's log: the probe's and fetch's requests.
    let served_log = cluster.kubectl_ok(&["logs", &web]);
    assert!(
        served_log.lines().any(|l| l == "GET /ready"),
        "{served_log}"
    );
    assert!(
        served_log.lines().filter(|l| *l == "GET /").count() >= 3,
        "{served_log}"
    );

    // Outside the cluster, without an egress rule: denied at once, and the pod fails.
    cluster.kubectl_apply(&pod("denied", "fetch:v1", "[\"http://192.0.2.1/\", \"1\"]"));
    let (denied, log) = finished(&cluster, "denied");
    assert_eq!(denied["status"]["phase"], "Failed", "{log}");
    assert!(log.starts_with("error: HttpRequestDenied"), "{log}");
    let state = &container(&denied)["state"]["terminated"];
    assert_eq!(state["exitCode"], 1, "{state}");
    let ran = |field: &str| {
        state[field]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .unwrap_or_else(|| panic!("{field} in {state}"))
    };
    let took = ran("finishedAt").duration_since(ran("startedAt"));
    assert!(took < jiff::SignedDuration::from_secs(3), "{took:?}");

    // A proxy component without a containerPort cannot be served: it waits, saying why.
    cluster.kubectl_apply(&pod("portless", "http-hello:v1", "[]"));
    let waiting = cluster.wait_pod_within("portless", "CreateContainerError", START, |p| {
        container(p)["state"]["waiting"]["reason"] == "CreateContainerError"
    });
    let message = container(&waiting)["state"]["waiting"]["message"].clone();
    assert!(
        message
            .as_str()
            .is_some_and(|m| m.contains("containerPort")),
        "{message}"
    );

    // Deleting the Deployment stops the served pod cleanly.
    cluster.kubectl_ok(&["delete", "deployment", "web"]);
    wait_for("the web pod to go", START, || {
        cluster
            .pod(&web)
            .map_or(Ok(()), |p| Err(p["status"].to_string()))
    });
}
