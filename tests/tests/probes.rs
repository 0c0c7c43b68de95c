//! Readiness, liveness and startup probes with the real kubectl against a real server and
//! agent: a Deployment whose readiness probe reaches the port its pod listens on becomes
//! Ready and its rollout completes; one probing a closed port stays 0/1 READY, its rollout
//! never completes and `describe` shows the `Unhealthy` events; a liveness probe on a
//! closed port restarts the container (`Killing`); a container runs but has not
//! `started` while its startup probe has not succeeded; probes Wasm pods cannot have are
//! refused naming the field.

use std::time::Duration;

use serde_json::Value;
use wasmfleet_tests::cluster::container_status;
use wasmfleet_tests::wait::wait_for;
use wasmfleet_tests::{Cluster, ClusterOptions};

const CONVERGE: Duration = Duration::from_secs(20);

/// A one-replica Deployment of `tcp-echo ARGS` whose container has `probes` (YAML lines
/// indented for the container).
fn deployment(name: &str, args: &str, probes: &str) -> String {
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
        args: [{args}]
        ports: [{{name: http, containerPort: 8080}}]
{probes}
"
    )
}

fn pod_of(cluster: &Cluster, app: &str) -> Value {
    wait_for(&format!("a pod of {app}"), CONVERGE, || {
        let out = cluster.kubectl(&["get", "pods", "-l", &format!("app={app}"), "-o", "json"]);
        let list: Value =
            serde_json::from_str(&out.stdout).map_err(|e| format!("{e}: {}", out.stderr))?;
        list["items"]
            .as_array()
            .and_then(|items| items.first())
            .cloned()
            .ok_or_else(|| "no pod yet".to_owned())
    })
}

/// `kubectl describe` of the pod of `app`, once it shows `needle`.
fn describe_showing(cluster: &Cluster, app: &str, needle: &str) -> String {
    wait_for(
        &format!("describe of {app} to show {needle:?}"),
        CONVERGE,
        || {
            let out = cluster.kubectl(&["describe", "pods", "-l", &format!("app={app}")]);
            if out.stdout.contains(needle) {
                Ok(out.stdout)
            } else {
                Err(format!("{}{}", out.stdout, out.stderr))
            }
        },
    )
}

#[test]
fn probes_gate_readiness_and_restart_unhealthy_containers() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.push("tcp-echo", "tcp-echo:v1");
    let manifests = [
        deployment(
            "ready",
            "\"--port\", \"8080\", \"--http\"",
            "        readinessProbe: {httpGet: {port: http, path: /healthz}, periodSeconds: 1}
        startupProbe: {tcpSocket: {port: http}, periodSeconds: 1}",
        ),
        deployment(
            "never-ready",
            "\"--port\", \"8080\"",
            "        readinessProbe: {tcpSocket: {port: 9}, periodSeconds: 1, failureThreshold: 1}",
        ),
        deployment(
            "sick",
            "\"--port\", \"8080\"",
            "        livenessProbe: {tcpSocket: {port: 9}, periodSeconds: 1, failureThreshold: 1}",
        ),
        deployment(
            "starting",
            "\"--port\", \"8080\"",
            "        startupProbe: {tcpSocket: {port: 9}, periodSeconds: 1, failureThreshold: 600}",
        ),
    ]
    .join("---\n");
    let applied = cluster.kubectl_with_stdin(&["apply", "-f", "-"], Some(&manifests));
    assert!(applied.success, "{}{}", applied.stdout, applied.stderr);

    // The probed port answers: Ready, and the rollout completes.
    let rollout = cluster.kubectl(&["rollout", "status", "deployment/ready", "--timeout=20s"]);
    assert!(rollout.success, "{}{}", rollout.stdout, rollout.stderr);
    let ready = pod_of(&cluster, "ready");
    assert_eq!(container_status(&ready, "web")["ready"], true);
    assert_eq!(container_status(&ready, "web")["started"], true);

    // The probed port is closed: the container runs but is never ready.
    let never = wait_for("never-ready to run", CONVERGE, || {
        let pod = pod_of(&cluster, "never-ready");
        let running = container_status(&pod, "web")["state"]["running"].is_object();
        running
            .then_some(pod)
            .ok_or_else(|| "not running yet".to_owned())
    });
    assert_eq!(container_status(&never, "web")["ready"], false);
    assert_eq!(
        container_status(&never, "web")["started"],
        true,
        "no startup probe: a running container has started"
    );
    let described = describe_showing(&cluster, "never-ready", "Readiness probe failed:");
    assert!(described.contains("Unhealthy"), "{described}");
    assert!(described.contains("dial tcp"), "{described}");
    let stuck = cluster.kubectl(&[
        "rollout",
        "status",
        "deployment/never-ready",
        "--timeout=2s",
    ]);
    assert!(
        !stuck.success,
        "the rollout of an unready pod must not complete: {}",
        stuck.stdout
    );
    let table = cluster.kubectl_ok(&["get", "deployment", "never-ready", "--no-headers"]);
    assert!(table.split_whitespace().nth(1) == Some("0/1"), "{table}");
    assert_eq!(
        container_status(&pod_of(&cluster, "never-ready"), "web")["restartCount"],
        0
    );

    // The startup probe never succeeds: running, but neither started nor ready.
    let starting = wait_for("starting to run", CONVERGE, || {
        let pod = pod_of(&cluster, "starting");
        let running = container_status(&pod, "web")["state"]["running"].is_object();
        running
            .then_some(pod)
            .ok_or_else(|| "not running yet".to_owned())
    });
    assert_eq!(container_status(&starting, "web")["started"], false);
    assert_eq!(container_status(&starting, "web")["ready"], false);

    // The liveness probe fails: the container is killed and restarted, and says why.
    wait_for("sick to be restarted", CONVERGE, || {
        let pod = pod_of(&cluster, "sick");
        let restarts = container_status(&pod, "web")["restartCount"]
            .as_i64()
            .unwrap_or(0);
        (restarts >= 1)
            .then_some(())
            .ok_or(format!("{restarts} restarts"))
    });
    let described = describe_showing(&cluster, "sick", "failed liveness probe, will be restarted");
    assert!(described.contains("Liveness probe failed:"), "{described}");
    assert!(described.contains("Killing"), "{described}");
}

#[test]
fn probes_a_wasm_pod_cannot_have_are_refused_by_name() {
    let cluster = Cluster::start(ClusterOptions::default());
    for (probe, field) in [
        (
            "        livenessProbe: {exec: {command: [\"true\"]}}",
            "spec.template.spec.containers[0].livenessProbe.exec",
        ),
        (
            "        readinessProbe: {httpGet: {port: 8080, scheme: HTTPS}}",
            "spec.template.spec.containers[0].readinessProbe.httpGet.scheme",
        ),
        (
            "        startupProbe: {tcpSocket: {port: metrics}}",
            "spec.template.spec.containers[0].startupProbe.tcpSocket.port",
        ),
    ] {
        let out = cluster.kubectl_with_stdin(
            &["apply", "-f", "-"],
            Some(&deployment("bad", "\"--port\", \"8080\"", probe)),
        );
        assert!(!out.success, "{probe} was accepted");
        assert!(out.stderr.contains(field), "{probe}: {}", out.stderr);
    }
    let out = cluster.kubectl(&["get", "deployment", "bad"]);
    assert!(!out.success, "nothing was created");
}
