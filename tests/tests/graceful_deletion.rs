//! Graceful deletion of pods and image changes, with the real kubectl: a deleted pod is
//! `Terminating` until its node has stopped it, `kubectl delete` waits for that, `--force
//! --grace-period=0` does not, a pod whose agent is down stays `Terminating` until the agent
//! comes back, a Deployment replaces a terminating pod at once, and a new image restarts the
//! container on the new module.

use std::time::Duration;

use serde_json::Value;
use wasmfleet_tests::cluster::{CONVERGE, container_status, phase};
use wasmfleet_tests::manifests::pod;
use wasmfleet_tests::{Cluster, ClusterOptions, wait_for};

/// `kubectl delete --raw` of pod `name`: the object the server answered with.
fn delete_raw(cluster: &Cluster, name: &str, options: &str) -> Value {
    let path = format!("/api/v1/namespaces/default/pods/{name}{options}");
    let out = cluster.kubectl_ok(&["delete", "--raw", &path]);
    serde_json::from_str(&out).unwrap_or_else(|err| panic!("{err}: {out}"))
}

fn wait_gone(cluster: &Cluster, name: &str) {
    wait_for(
        &format!("pod {name} to be removed"),
        CONVERGE,
        || match cluster.pod(name) {
            None => Ok(()),
            Some(pod) => Err(format!("still there: {}", pod["metadata"])),
        },
    );
}

fn running(cluster: &Cluster, name: &str, image: &str, args: &[&str]) -> Value {
    cluster.apply(&pod(name, image, args, "Never"));
    cluster.wait_pod(name, "to run", |p| phase(p) == "Running")
}

/// kubectl's STATUS column for pod `name`.
fn status_column(cluster: &Cluster, name: &str) -> String {
    let out = cluster.kubectl_ok(&["get", "pod", name, "--no-headers"]);
    out.split_whitespace().nth(2).unwrap_or_default().to_owned()
}

#[test]
fn a_deleted_pod_terminates_on_its_node_before_it_goes_and_kubectl_waits_for_it() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.push("exerciser", "exerciser:v1");

    // The DELETE answers with the pod marked, not removed.
    let before = running(&cluster, "counting", "exerciser:v1", &["print", "100000"]);
    let uid = before["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let marked = delete_raw(&cluster, "counting", "");
    assert_eq!(marked["metadata"]["uid"], uid.as_str());
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30);
    assert!(
        marked["metadata"]["deletionTimestamp"].is_string(),
        "{marked}"
    );
    wait_gone(&cluster, "counting");
    // `Killing` said so, as the kubelet does when it starts stopping a container.
    let events: Value =
        serde_json::from_str(&cluster.kubectl_ok(&["get", "events", "-o", "json"])).expect("json");
    let killing = events["items"].as_array().into_iter().flatten().any(|e| {
        e["involvedObject"]["name"] == "counting"
            && e["reason"] == "Killing"
            && e["message"] == "Stopping container main"
    });
    assert!(killing, "{events}");
    // The agent stopped it before the object went.
    let agent = cluster.agent_output("node-a");
    assert!(
        agent
            .lines()
            .any(|l| l.contains("pod stopped") && l.contains(&uid)),
        "{agent}"
    );

    // `kubectl delete` (with its default --wait) returns once the pod is gone.
    running(&cluster, "waited", "exerciser:v1", &["print", "100000"]);
    let out = cluster.kubectl_ok(&["delete", "pod", "waited"]);
    assert_eq!(out, "pod \"waited\" deleted\n");
    assert!(
        cluster.pod("waited").is_none(),
        "kubectl returned too early"
    );

    // So does `wasmfleet delete`.
    running(&cluster, "waited-cli", "exerciser:v1", &["print", "100000"]);
    let out = cluster.cli(&["delete", "pod", "waited-cli"]);
    assert!(out.success, "{}", out.stderr);
    assert_eq!(out.stdout, "pod \"waited-cli\" deleted\n");
    assert!(
        cluster.pod("waited-cli").is_none(),
        "the CLI returned too early"
    );

    // Forced: removed by the DELETE itself.
    running(&cluster, "forced", "exerciser:v1", &["print", "100000"]);
    let out = cluster.kubectl(&["delete", "pod", "forced", "--grace-period=0", "--force"]);
    assert!(out.success, "{}", out.stderr);
    assert!(
        cluster.pod("forced").is_none(),
        "a forced delete removes at once"
    );

    // A pod bound to no node goes at once.
    cluster.apply(
        &pod("nowhere", "exerciser:v1", &["exit", "0"], "Never")
            .replace("spec:\n", "spec:\n  nodeSelector:\n    missing: label\n"),
    );
    let answer = delete_raw(&cluster, "nowhere", "");
    assert!(
        answer["metadata"]["deletionTimestamp"].is_null(),
        "{answer}"
    );
    assert!(cluster.pod("nowhere").is_none());

    // `preconditions.uid` deletes only that incarnation of the name (409 naming both uids).
    let pending = pod("guarded", "exerciser:v1", &["exit", "0"], "Never")
        .replace("spec:\n", "spec:\n  nodeSelector:\n    missing: label\n");
    cluster.apply(&pending);
    let dir = tempfile::tempdir().expect("temp dir");
    let options = dir.path().join("options.json");
    std::fs::write(&options, r#"{"preconditions":{"uid":"not-this-one"}}"#).expect("write");
    let path = "/api/v1/namespaces/default/pods/guarded";
    let options_file = options.to_str().expect("utf-8 path");
    let refused = cluster.kubectl(&["delete", "--raw", path, "-f", options_file]);
    assert!(!refused.success, "{}", refused.stdout);
    assert!(
        refused
            .stderr
            .contains("Precondition failed: UID in precondition: not-this-one"),
        "{}",
        refused.stderr
    );
    let uid = cluster.pod("guarded").expect("still there")["metadata"]["uid"].clone();
    let body = serde_json::json!({"preconditions": {"uid": uid}});
    std::fs::write(&options, body.to_string()).expect("write");
    cluster.kubectl_ok(&["delete", "--raw", path, "-f", options_file]);
    assert!(cluster.pod("guarded").is_none());

    // An eviction honours its deleteOptions: a grace period of 0 removes the pod at once.
    running(&cluster, "evicted", "exerciser:v1", &["print", "100000"]);
    let eviction = dir.path().join("eviction.json");
    let body = serde_json::json!({
        "apiVersion": "policy/v1", "kind": "Eviction",
        "metadata": {"name": "evicted", "namespace": "default"},
        "deleteOptions": {"gracePeriodSeconds": 0}
    });
    std::fs::write(&eviction, body.to_string()).expect("write");
    let path = "/api/v1/namespaces/default/pods/evicted/eviction";
    cluster.kubectl_ok(&[
        "create",
        "--raw",
        path,
        "-f",
        eviction.to_str().expect("utf-8"),
    ]);
    assert!(
        cluster.pod("evicted").is_none(),
        "an eviction with grace 0 removes at once"
    );
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
        - name: main
          image: exerciser:v1
          args: [print, \"100000\"]
";

#[test]
fn a_pod_whose_agent_is_down_stays_terminating_until_the_agent_is_back() {
    let mut cluster = Cluster::start(ClusterOptions::default());
    cluster.push("exerciser", "exerciser:v1");
    cluster.apply(DEPLOYMENT);
    running(&cluster, "alone", "exerciser:v1", &["print", "100000"]);
    let replica = wait_for("the Deployment's pod to run", CONVERGE, || {
        let out = cluster.kubectl_ok(&["get", "pods", "-l", "app=web", "-o", "json"]);
        let list: Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
        let items = list["items"].as_array().cloned().unwrap_or_default();
        match items.as_slice() {
            [only] if phase(only) == "Running" => Ok(only["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()),
            _ => Err(format!("{} pods", items.len())),
        }
    });

    cluster.kill_agent("node-a");
    cluster.kubectl_ok(&["delete", "pod", "alone", "--wait=false"]);
    cluster.kubectl_ok(&["delete", "pod", &replica, "--wait=false"]);
    // The Deployment makes a replacement at once, while the old pod is still terminating.
    wait_for("a replacement pod", CONVERGE, || {
        let out = cluster.kubectl_ok(&["get", "pods", "-l", "app=web", "--no-headers"]);
        match out.lines().count() {
            2 => Ok(()),
            n => Err(format!("{n} pods: {out}")),
        }
    });
    // Nobody confirms, so nothing is removed.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(status_column(&cluster, "alone"), "Terminating");
    assert_eq!(status_column(&cluster, &replica), "Terminating");

    // The agent comes back, stops the pods it still ran, and then they go.
    cluster.restart_agent("node-a");
    wait_gone(&cluster, "alone");
    wait_gone(&cluster, &replica);
}

#[test]
fn a_new_image_restarts_the_container_on_the_new_module() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.push("sensor", "app:v1");
    cluster.push("hello", "app:v2");
    cluster.apply(&pod(
        "app",
        "app:v1",
        &["--interval-ms", "100"],
        "OnFailure",
    ));
    let before = cluster.wait_pod("app", "to run", |p| phase(p) == "Running");
    wait_for("sensor readings", CONVERGE, || {
        let logs = cluster.try_logs("app")?;
        match logs.contains("sensor=") {
            true => Ok(()),
            false => Err(logs),
        }
    });
    let old_id = container_status(&before, "main")["imageID"].clone();

    cluster.kubectl_ok(&["set", "image", "pod/app", "main=app:v2"]);
    let after = cluster.wait_pod("app", "to run app:v2 to completion", |p| {
        let c = container_status(p, "main");
        c["restartCount"] == 1 && c["state"]["terminated"]["reason"] == "Completed"
    });
    let status = container_status(&after, "main");
    assert_eq!(status["image"], "app:v2");
    assert_ne!(status["imageID"], old_id);
    assert_eq!(
        status["lastState"]["terminated"]["exitCode"], 137,
        "{status}"
    );
    // The new module's output (it prints its arguments) is the current run; the sensor's
    // readings are the previous one. The old module no longer runs, so nothing comes after.
    let logs = cluster.logs("app");
    assert_eq!(logs, "hello from wasmfleet\n--interval-ms\n100\n");
    let previous = cluster.kubectl_ok(&["logs", "app", "--previous"]);
    assert!(previous.starts_with("sensor=sensor seq=0 "), "{previous}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(cluster.logs("app"), logs);
}
