//! What a Kubernetes user types, with the real kubectl 1.32, and what they see: `kubectl
//! run` (its defaulted fields accepted) then `logs` (with `--timestamps`, `--since`,
//! `--since-time` and `--previous`), `auth can-i` / `whoami`, the clear refusals of `exec`, `cp`,
//! `attach`, `port-forward` and `debug`, `describe node` with its Lease, `get --raw /readyz` and
//! `/metrics`, paged lists (`--chunk-size`), and `explain` of the metrics kinds `top` reads.

use wasmfleet_tests::cluster::phase;
use wasmfleet_tests::{Cluster, ClusterOptions};

/// Runs kubectl, asserting that it fails; returns what it printed on stderr.
fn kubectl_fails(cluster: &Cluster, args: &[&str]) -> String {
    let out = cluster.kubectl(args);
    assert!(!out.success, "kubectl {args:?} succeeded: {}", out.stdout);
    out.stderr
}

#[test]
fn kubectl_run_logs_auth_and_the_refusals_users_see() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.push("hello", "hello:v1");
    cluster.push("exerciser", "exerciser:v1");

    // `kubectl run` sends `dnsPolicy: ClusterFirst` (refused before the defaults).
    let out = cluster.kubectl_ok(&["run", "h", "--image=hello:v1", "--restart=Never"]);
    assert_eq!(out, "pod/h created\n");
    cluster.kubectl_ok(&[
        "run",
        "s",
        "--image=exerciser:v1",
        "--restart=Never",
        "--",
        "sleep",
        "600000",
    ]);
    // A module nobody pushed: the container never starts.
    cluster.kubectl_ok(&["run", "w", "--image=nothere:v1", "--restart=Never"]);
    let refused = kubectl_fails(
        &cluster,
        &[
            "run",
            "other",
            "--image=hello:v1",
            r#"--overrides={"spec":{"schedulerName":"mine"}}"#,
        ],
    );
    assert!(
        refused.contains(r#"spec.schedulerName: Unsupported value: "mine": supported values: "default-scheduler""#),
        "{refused}"
    );

    cluster.wait_pod("h", "to complete", |p| phase(p) == "Succeeded");
    assert_eq!(cluster.kubectl_ok(&["logs", "h"]), "hello from wasmfleet\n");
    assert_eq!(
        cluster.kubectl_ok(&["logs", "h", "--limit-bytes=5"]),
        "hello"
    );
    let dns = cluster.kubectl_ok(&["get", "pod", "h", "-o", "jsonpath={.spec.dnsPolicy}"]);
    assert_eq!(dns, "ClusterFirst");
    let timed = cluster.kubectl_ok(&["logs", "h", "--timestamps"]);
    let (at, line) = timed.split_once(' ').expect("a time, then the line");
    assert_eq!(line, "hello from wasmfleet\n");
    let age = jiff::Timestamp::now().duration_since(at.parse::<jiff::Timestamp>().expect(at));
    assert!(
        age.as_secs() >= 0 && age.as_secs() < 600,
        "{at} is not recent"
    );
    assert_eq!(
        cluster.kubectl_ok(&["logs", "h", "--since=1h"]),
        "hello from wasmfleet\n"
    );
    let tomorrow = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
    let since_tomorrow = format!("--since-time={}", tomorrow.strftime("%Y-%m-%dT%H:%M:%SZ"));
    assert_eq!(cluster.kubectl_ok(&["logs", "h", &since_tomorrow]), "");
    let refused = kubectl_fails(&cluster, &["logs", "h", "--previous"]);
    assert!(
        refused.starts_with(
            r#"Error from server (BadRequest): previous terminated container "h" in pod "h" not found"#
        ),
        "{refused}"
    );
    let waiting = kubectl_fails(&cluster, &["logs", "w"]);
    assert!(
        waiting.contains(r#"container "w" in pod "w" is waiting to start: "#),
        "{waiting}"
    );

    assert_eq!(
        cluster.kubectl_ok(&["auth", "can-i", "delete", "pods"]),
        "yes\n"
    );
    let whoami = cluster.kubectl_ok(&["auth", "whoami"]);
    assert!(whoami.contains("Username    admin"), "{whoami}");
    assert!(whoami.contains("system:masters"), "{whoami}");

    cluster.wait_pod("s", "to run", |p| phase(p) == "Running");
    for (args, says) in [
        (&["exec", "s", "--", "ls"][..], "wasm pods have no exec"),
        (
            &["cp", "s:/etc/hosts", "/tmp/wasmfleet-cp-test"][..],
            "`kubectl cp` needs",
        ),
        (&["attach", "s"][..], "wasm pods have no attach"),
        (
            &["port-forward", "s", "18080:80"][..],
            "port-forward is not supported by wasmfleet yet",
        ),
        (
            &["debug", "s", "--image=hello:v1"][..],
            "wasm pods have no ephemeral containers",
        ),
    ] {
        let refused = kubectl_fails(&cluster, args);
        assert!(refused.contains(says), "kubectl {args:?}: {refused}");
        assert!(!refused.contains("panic"), "kubectl {args:?}: {refused}");
    }

    // The node's heartbeat is a Lease in kube-node-lease, where `describe node` reads it.
    let described = cluster.kubectl_ok(&["describe", "node", "node-a"]);
    let lease = described
        .split("Lease:")
        .nth(1)
        .unwrap_or_else(|| panic!("no Lease section:\n{described}"));
    assert!(lease.contains("HolderIdentity:  node-a"), "{described}");
    assert!(!lease.contains("RenewTime:       <unset>"), "{described}");
    let leases = cluster.kubectl_ok(&["get", "leases", "-n", "kube-node-lease", "-o", "name"]);
    assert_eq!(leases, "lease.coordination.k8s.io/node-a\n");

    assert_eq!(cluster.kubectl_ok(&["get", "--raw", "/readyz"]), "ok");
    // Prometheus metrics, behind the API's authentication.
    let metrics = cluster.kubectl_ok(&["get", "--raw", "/metrics"]);
    for line in [
        "wasmfleet_nodes{ready=\"true\"} 1",
        "wasmfleet_pods{phase=\"Running\"} 1",
        "# TYPE wasmfleet_apiserver_requests_total counter",
        "# TYPE wasmfleet_scheduler_pass_duration_seconds histogram",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    let received = metrics
        .lines()
        .find_map(|l| l.strip_prefix("wasmfleet_mqtt_messages_total{direction=\"received\"} "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(received.is_some_and(|n| n > 0), "{metrics}");

    // One request per pod, each page continuing the last.
    let paged = cluster.kubectl(&["get", "pods", "--chunk-size=1", "-o", "name", "-v=6"]);
    assert!(paged.success, "{}", paged.stderr);
    assert_eq!(paged.stdout, "pod/h\npod/s\npod/w\n");
    let continued = paged.stderr.matches("continue=").count();
    assert_eq!(continued, 2, "{}", paged.stderr);
}

#[test]
fn kubectl_explain_describes_the_metrics_kinds() {
    let cluster = Cluster::start(ClusterOptions::default());

    let pods = cluster.kubectl_ok(&["explain", "podmetrics"]);
    assert!(
        pods.starts_with(
            "GROUP:      metrics.k8s.io\nKIND:       PodMetrics\nVERSION:    v1beta1\n"
        ),
        "{pods}"
    );
    assert!(
        pods.contains("PodMetrics sets resource usage metrics of a pod"),
        "{pods}"
    );
    assert!(pods.contains("containers\t<[]ContainerMetrics>"), "{pods}");
    let usage = cluster.kubectl_ok(&["explain", "podmetrics.containers.usage"]);
    assert!(
        usage.contains("FIELD: usage <map[string]Quantity>"),
        "{usage}"
    );
    assert!(usage.contains("linear memory"), "{usage}");

    let nodes = cluster.kubectl_ok(&["explain", "nodemetrics"]);
    assert!(nodes.contains("KIND:       NodeMetrics\n"), "{nodes}");
    assert!(nodes.contains("window\t<string>"), "{nodes}");
    let refused = kubectl_fails(&cluster, &["explain", "podmetrics.nothere"]);
    assert!(refused.contains("nothere"), "{refused}");
}
