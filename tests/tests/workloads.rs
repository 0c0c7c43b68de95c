//! Workloads (issue 9): a Deployment driven by the real kubectl against a real server and
//! agent: rollout, image update, history, undo, scale, and deletion with each cascade.

use std::time::Duration;

use serde_json::Value;
use wasmfleet_tests::wait::wait_for;
use wasmfleet_tests::{Cluster, ClusterOptions};

const ROLLOUT: Duration = Duration::from_secs(60);

fn deployment(replicas: u32, image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  strategy:
    rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: web
        image: {image}
        args: [\"sleep\", \"600000\"]
"
    )
}

fn kubectl(cluster: &Cluster, args: &[&str]) -> String {
    cluster.kubectl_ok(args)
}

fn list(cluster: &Cluster, what: &str, selector: &str) -> Vec<Value> {
    let out = kubectl(cluster, &["get", what, "-l", selector, "-o", "json"]);
    let list: Value = serde_json::from_str(&out).expect("a JSON list");
    list["items"].as_array().cloned().unwrap_or_default()
}

/// The images of the running, non-terminating pods of `web`.
fn running_images(cluster: &Cluster) -> Vec<String> {
    let mut images: Vec<String> = list(cluster, "pods", "app=web")
        .iter()
        .filter(|p| p["status"]["phase"] == "Running")
        .map(|p| {
            p["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    images.sort();
    images
}

fn wait_images(cluster: &Cluster, expected: &[&str]) {
    wait_for(&format!("pods running {expected:?}"), ROLLOUT, || {
        let pods = list(cluster, "pods", "app=web");
        let images = running_images(cluster);
        (images == expected && pods.len() == expected.len())
            .then_some(())
            .ok_or(format!("{images:?} of {} pods", pods.len()))
    });
}

fn rollout_status(cluster: &Cluster) -> String {
    kubectl(
        cluster,
        &["rollout", "status", "deploy/web", "--timeout=60s"],
    )
}

#[test]
fn a_deployment_rolls_out_updates_rolls_back_scales_and_is_collected() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.push("exerciser", "app:v1");
    cluster.push("exerciser", "app:v2");

    let out = cluster.kubectl_with_stdin(&["apply", "-f", "-"], Some(&deployment(3, "app:v1")));
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    let done = rollout_status(&cluster);
    assert!(done.contains("successfully rolled out"), "{done}");
    wait_images(&cluster, &["app:v1"; 3]);
    let pods = list(&cluster, "pods", "app=web");
    let hash = pods[0]["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap_or("");
    assert!(
        !hash.is_empty(),
        "pods carry the template hash: {}",
        pods[0]
    );
    assert_eq!(
        pods[0]["metadata"]["ownerReferences"][0]["kind"],
        "ReplicaSet"
    );
    let described = kubectl(&cluster, &["describe", "deployment", "web"]);
    assert!(
        described.contains("ScalingReplicaSet") && described.contains("Scaled up replica set web-"),
        "describe shows the controller's events:\n{described}"
    );
    let events = kubectl(&cluster, &["get", "events"]);
    for reason in [
        "Scheduled",
        "SuccessfulCreate",
        "ScalingReplicaSet",
        "Pulled",
        "Started",
    ] {
        assert!(events.contains(reason), "{reason} missing from:\n{events}");
    }
    let table = kubectl(&cluster, &["get", "deploy", "web", "--no-headers"]);
    let cells: Vec<&str> = table.split_whitespace().collect();
    assert_eq!(cells[..4], ["web", "3/3", "3", "3"], "{table}");

    kubectl(&cluster, &["set", "image", "deploy/web", "web=app:v2"]);
    let done = rollout_status(&cluster);
    assert!(done.contains("successfully rolled out"), "{done}");
    wait_images(&cluster, &["app:v2"; 3]);
    assert_eq!(list(&cluster, "replicasets", "app=web").len(), 2);
    let history = kubectl(&cluster, &["rollout", "history", "deploy/web"]);
    assert!(
        history.contains("1 ") && history.contains("2 "),
        "{history}"
    );

    kubectl(&cluster, &["rollout", "undo", "deploy/web"]);
    rollout_status(&cluster);
    wait_images(&cluster, &["app:v1"; 3]);
    let revision = kubectl(
        &cluster,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
        ],
    );
    assert_eq!(revision, "3", "the rollback is the next revision");

    // pause: a template change waits; resume rolls it out; restart rolls the same template.
    kubectl(&cluster, &["rollout", "pause", "deploy/web"]);
    kubectl(&cluster, &["set", "image", "deploy/web", "web=app:v2"]);
    let progressing = kubectl(
        &cluster,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}",
        ],
    );
    wait_for("the pause to show", ROLLOUT, || {
        let reason = kubectl(
            &cluster,
            &[
                "get",
                "deploy",
                "web",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}",
            ],
        );
        (reason == "DeploymentPaused")
            .then_some(())
            .ok_or(format!("{reason} (was {progressing})"))
    });
    assert_eq!(
        running_images(&cluster),
        ["app:v1"; 3],
        "a paused Deployment does not roll"
    );
    kubectl(&cluster, &["rollout", "resume", "deploy/web"]);
    rollout_status(&cluster);
    wait_images(&cluster, &["app:v2"; 3]);
    let before: Vec<Value> = list(&cluster, "pods", "app=web");
    kubectl(&cluster, &["rollout", "restart", "deploy/web"]);
    rollout_status(&cluster);
    wait_for("every pod to be replaced", ROLLOUT, || {
        let now = list(&cluster, "pods", "app=web");
        let replaced = now.len() == 3
            && now.iter().all(|p| {
                !before
                    .iter()
                    .any(|b| b["metadata"]["name"] == p["metadata"]["name"])
            });
        replaced.then_some(()).ok_or(format!("{} pods", now.len()))
    });

    kubectl(&cluster, &["scale", "deploy/web", "--replicas=1"]);
    wait_images(&cluster, &["app:v2"]);

    kubectl(&cluster, &["delete", "deploy", "web"]);
    wait_for(
        "the garbage collector to take the ReplicaSets and pods",
        ROLLOUT,
        || {
            let left = list(&cluster, "replicasets", "app=web").len()
                + list(&cluster, "pods", "app=web").len();
            (left == 0)
                .then_some(())
                .ok_or(format!("{left} objects left"))
        },
    );
}

fn owner_kinds(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .map(|o| {
            o["metadata"]["ownerReferences"][0]["kind"]
                .as_str()
                .unwrap_or("-")
                .to_owned()
        })
        .collect()
}

#[test]
fn orphaned_replica_sets_are_adopted_again_and_foreground_deletion_takes_the_pods_first() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.push("exerciser", "app:v1");
    let manifest = deployment(2, "app:v1");
    let out = cluster.kubectl_with_stdin(&["apply", "-f", "-"], Some(&manifest));
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    rollout_status(&cluster);
    wait_images(&cluster, &["app:v1"; 2]);
    let pods_before: Vec<String> = list(&cluster, "pods", "app=web")
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap_or("").to_owned())
        .collect();

    // --cascade=orphan: the ReplicaSet and its pods stay, without their owner.
    kubectl(&cluster, &["delete", "deploy", "web", "--cascade=orphan"]);
    let sets = list(&cluster, "replicasets", "app=web");
    assert_eq!(owner_kinds(&sets), ["-"], "the ReplicaSet is an orphan now");
    assert_eq!(
        owner_kinds(&list(&cluster, "pods", "app=web")),
        ["ReplicaSet"; 2]
    );

    // The same Deployment again adopts it: no new ReplicaSet, the same pods.
    let out = cluster.kubectl_with_stdin(&["apply", "-f", "-"], Some(&manifest));
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    wait_for("the ReplicaSet to be adopted", ROLLOUT, || {
        let kinds = owner_kinds(&list(&cluster, "replicasets", "app=web"));
        (kinds == ["Deployment"])
            .then_some(())
            .ok_or(format!("{kinds:?}"))
    });
    let mut pods_after: Vec<String> = list(&cluster, "pods", "app=web")
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap_or("").to_owned())
        .collect();
    pods_after.sort();
    let mut expected = pods_before.clone();
    expected.sort();
    assert_eq!(pods_after, expected, "adoption keeps the running pods");

    // --cascade=foreground: when kubectl returns, the dependents are gone too.
    kubectl(
        &cluster,
        &["delete", "deploy", "web", "--cascade=foreground"],
    );
    assert!(list(&cluster, "replicasets", "app=web").is_empty());
    assert!(list(&cluster, "pods", "app=web").is_empty());
}

#[test]
fn jobs_complete_or_fail_and_kubectl_waits_for_them() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.push("exerciser", "app:v1");

    // `kubectl create job`: the command replaces argv[0], as for any container.
    kubectl(
        &cluster,
        &[
            "create",
            "job",
            "calc",
            "--image=app:v1",
            "--",
            "exerciser",
            "sleep",
            "200",
        ],
    );
    let waited = kubectl(
        &cluster,
        &[
            "wait",
            "--for=condition=complete",
            "job/calc",
            "--timeout=60s",
        ],
    );
    assert!(waited.contains("condition met"), "{waited}");
    let row = kubectl(&cluster, &["get", "job", "calc", "--no-headers"]);
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[..3], ["calc", "Complete", "1/1"], "{row}");

    // A Job whose pods keep failing fails after backoffLimit, and says why.
    let failing = "apiVersion: batch/v1
kind: Job
metadata:
  name: broken
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: app:v1
        args: [\"exit\", \"1\"]
";
    let out = cluster.kubectl_with_stdin(&["apply", "-f", "-"], Some(failing));
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    let waited = kubectl(
        &cluster,
        &[
            "wait",
            "--for=condition=failed",
            "job/broken",
            "--timeout=60s",
        ],
    );
    assert!(waited.contains("condition met"), "{waited}");
    let reason = kubectl(
        &cluster,
        &[
            "get",
            "job",
            "broken",
            "-o",
            "jsonpath={.status.conditions[0].reason}",
        ],
    );
    assert_eq!(reason, "BackoffLimitExceeded");
    let described = kubectl(&cluster, &["describe", "job", "broken"]);
    assert!(described.contains("BackoffLimitExceeded"), "{described}");
    let failed = kubectl(
        &cluster,
        &["get", "job", "broken", "-o", "jsonpath={.status.failed}"],
    );
    assert_eq!(failed, "2", "backoffLimit 1 allows one retry");

    // A restartPolicy of Always is refused, naming the field.
    let always = failing
        .replace("name: broken", "name: forever")
        .replace("restartPolicy: Never", "restartPolicy: Always");
    let out = cluster.kubectl_with_stdin(&["apply", "-f", "-"], Some(&always));
    assert!(!out.success);
    assert!(
        out.stderr.contains("spec.template.spec.restartPolicy"),
        "{}",
        out.stderr
    );
}

/// The pods of `ds=sensor`, as (node, image) pairs, sorted.
fn sensor_pods(cluster: &Cluster) -> Vec<(String, String)> {
    let mut pods: Vec<(String, String)> = list(cluster, "pods", "app=sensor")
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            let field = |ptr: &str| {
                p.pointer(ptr)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            };
            (field("/spec/nodeName"), field("/spec/containers/0/image"))
        })
        .collect();
    pods.sort();
    pods
}

fn wait_sensors(cluster: &Cluster, expected: &[(&str, &str)]) {
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(n, i)| ((*n).to_owned(), (*i).to_owned()))
        .collect();
    wait_for(&format!("daemon pods {expected:?}"), ROLLOUT, || {
        let pods = sensor_pods(cluster);
        (pods == expected).then_some(()).ok_or(format!("{pods:?}"))
    });
}

#[test]
fn a_daemon_set_follows_node_labels_and_rolls_node_by_node() {
    let cluster = Cluster::start(ClusterOptions {
        agents: vec![
            ("pi-1".into(), "sensor=bme280".into()),
            ("pi-2".into(), String::new()),
        ],
    });
    cluster.push("exerciser", "app:v1");
    cluster.push("exerciser", "app:v2");
    let manifest = "apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: sensor
spec:
  selector:
    matchLabels: {app: sensor}
  template:
    metadata:
      labels: {app: sensor}
    spec:
      nodeSelector: {sensor: bme280}
      containers:
      - name: read
        image: app:v1
        args: [\"sleep\", \"600000\"]
";
    let out = cluster.kubectl_with_stdin(&["apply", "-f", "-"], Some(manifest));
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    wait_sensors(&cluster, &[("pi-1", "app:v1")]);

    // A node that gains the label gets its pod; one that loses it, loses it.
    kubectl(&cluster, &["label", "node", "pi-2", "sensor=bme280"]);
    wait_sensors(&cluster, &[("pi-1", "app:v1"), ("pi-2", "app:v1")]);
    let done = kubectl(
        &cluster,
        &["rollout", "status", "ds/sensor", "--timeout=60s"],
    );
    assert!(done.contains("successfully rolled out"), "{done}");
    let row = kubectl(&cluster, &["get", "ds", "sensor", "--no-headers"]);
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells[..7],
        ["sensor", "2", "2", "2", "2", "2", "sensor=bme280"],
        "{row}"
    );

    kubectl(&cluster, &["set", "image", "ds/sensor", "read=app:v2"]);
    let done = kubectl(
        &cluster,
        &["rollout", "status", "ds/sensor", "--timeout=60s"],
    );
    assert!(done.contains("successfully rolled out"), "{done}");
    wait_sensors(&cluster, &[("pi-1", "app:v2"), ("pi-2", "app:v2")]);

    kubectl(&cluster, &["label", "node", "pi-1", "sensor-"]);
    wait_sensors(&cluster, &[("pi-2", "app:v2")]);
}

#[test]
fn a_cron_job_runs_on_its_schedule_and_kubectl_can_start_one_by_hand() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.push("exerciser", "app:v1");
    // `kubectl create cronjob` sends protobuf.
    kubectl(
        &cluster,
        &[
            "create",
            "cronjob",
            "tick",
            "--image=app:v1",
            "--schedule=* * * * *",
            "--",
            "exerciser",
            "sleep",
            "100",
        ],
    );
    let row = kubectl(&cluster, &["get", "cj", "tick", "--no-headers"]);
    assert!(
        row.starts_with("tick") && row.contains("* * * * *"),
        "{row}"
    );
    // A run by hand from its template.
    kubectl(
        &cluster,
        &["create", "job", "tick-now", "--from=cronjob/tick"],
    );
    let waited = kubectl(
        &cluster,
        &[
            "wait",
            "--for=condition=complete",
            "job/tick-now",
            "--timeout=60s",
        ],
    );
    assert!(waited.contains("condition met"), "{waited}");
    // The schedule's own run, within a minute (and a little).
    wait_for("the scheduled run", Duration::from_secs(75), || {
        let status = kubectl(
            &cluster,
            &[
                "get",
                "cj",
                "tick",
                "-o",
                "jsonpath={.status.lastScheduleTime}",
            ],
        );
        (!status.is_empty())
            .then_some(())
            .ok_or("not scheduled yet".to_owned())
    });
    let jobs = kubectl(&cluster, &["get", "jobs", "-o", "name"]);
    assert_eq!(
        jobs.lines().count(),
        2,
        "the hand-made and the scheduled run: {jobs}"
    );
    let bad = cluster.kubectl(&[
        "create",
        "cronjob",
        "bad",
        "--image=app:v1",
        "--schedule=61 * * * *",
    ]);
    assert!(
        !bad.success && bad.stderr.contains("spec.schedule"),
        "{}",
        bad.stderr
    );
}

/// The nodes the `app=web` pods run on, sorted.
fn web_nodes(cluster: &Cluster) -> Vec<String> {
    let mut nodes: Vec<String> = list(cluster, "pods", "app=web")
        .iter()
        .filter(|p| {
            p["metadata"]["deletionTimestamp"].is_null() && p["status"]["phase"] == "Running"
        })
        .map(|p| p["spec"]["nodeName"].as_str().unwrap_or("").to_owned())
        .collect();
    nodes.sort();
    nodes
}

#[test]
fn drain_evicts_within_the_disruption_budget_and_keeps_daemons() {
    let cluster = Cluster::start(ClusterOptions {
        agents: vec![
            ("pi-1".into(), String::new()),
            ("pi-2".into(), String::new()),
        ],
    });
    cluster.push("exerciser", "app:v1");
    let out = cluster.kubectl_with_stdin(&["apply", "-f", "-"], Some(&deployment(2, "app:v1")));
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    rollout_status(&cluster);
    let daemon = "apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agentd}
spec:
  selector: {matchLabels: {app: agentd}}
  template:
    metadata: {labels: {app: agentd}}
    spec:
      containers: [{name: d, image: app:v1, args: [\"sleep\", \"600000\"]}]
";
    let budget = "apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: web}}
";
    for manifest in [daemon, budget] {
        let out = cluster.kubectl_with_stdin(&["apply", "-f", "-"], Some(manifest));
        assert!(out.success, "{}{}", out.stdout, out.stderr);
    }
    wait_for("two web pods and the budget's status", ROLLOUT, || {
        let allowed = kubectl(
            &cluster,
            &[
                "get",
                "pdb",
                "web",
                "-o",
                "jsonpath={.status.currentHealthy}",
            ],
        );
        (allowed == "2").then_some(()).ok_or(allowed)
    });
    assert_eq!(
        web_nodes(&cluster),
        ["pi-1", "pi-2"],
        "replicas of one owner spread over the nodes"
    );
    let node = web_nodes(&cluster).pop().expect("a web pod");

    // minAvailable 2 of 2: the budget refuses, and drain gives up after its timeout.
    let refused = cluster.kubectl(&["drain", &node, "--ignore-daemonsets", "--timeout=3s"]);
    assert!(!refused.success);
    assert!(
        refused.stderr.contains("disruption budget"),
        "{}",
        refused.stderr
    );

    // With room for one disruption, drain evicts the node's web pod; it comes back elsewhere.
    kubectl(
        &cluster,
        &[
            "patch",
            "pdb",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"minAvailable":1}}"#,
        ],
    );
    wait_for("the budget to allow one", ROLLOUT, || {
        let allowed = kubectl(
            &cluster,
            &[
                "get",
                "pdb",
                "web",
                "-o",
                "jsonpath={.status.disruptionsAllowed}",
            ],
        );
        (allowed == "1").then_some(()).ok_or(allowed)
    });
    let drained = kubectl(
        &cluster,
        &["drain", &node, "--ignore-daemonsets", "--timeout=60s"],
    );
    assert!(drained.contains("drained"), "{drained}");
    wait_for("the web pods to run elsewhere", ROLLOUT, || {
        let nodes = web_nodes(&cluster);
        (nodes.len() == 2 && !nodes.contains(&node))
            .then_some(())
            .ok_or(format!("{nodes:?}"))
    });
    let status = kubectl(&cluster, &["get", "node", &node, "--no-headers"]);
    assert!(status.contains("SchedulingDisabled"), "{status}");
    let daemons = list(&cluster, "pods", "app=agentd");
    assert!(
        daemons
            .iter()
            .any(|p| p["spec"]["nodeName"] == node.as_str()),
        "the daemon pod stays on the drained node"
    );
    kubectl(&cluster, &["uncordon", &node]);
    let status = kubectl(&cluster, &["get", "node", &node, "--no-headers"]);
    assert!(!status.contains("SchedulingDisabled"), "{status}");
}

#[test]
fn pods_of_a_node_that_went_away_are_replaced_after_their_toleration() {
    let mut cluster = Cluster::start(ClusterOptions {
        agents: vec![
            ("pi-1".into(), String::new()),
            ("pi-2".into(), String::new()),
        ],
    });
    cluster.push("exerciser", "app:v1");
    // One replica that tolerates an unreachable node for 2 s (the default is 300 s).
    let manifest = deployment(1, "app:v1").replace(
        "      containers:\n",
        "      tolerations:\n      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}\n      containers:\n",
    );
    let out = cluster.kubectl_with_stdin(&["apply", "-f", "-"], Some(&manifest));
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    rollout_status(&cluster);
    let lost = web_nodes(&cluster).pop().expect("the web pod's node");
    let other = if lost == "pi-1" { "pi-2" } else { "pi-1" };
    let tolerations = kubectl(
        &cluster,
        &[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[0].spec.tolerations[*].key}",
        ],
    );
    assert!(
        tolerations.contains("node.kubernetes.io/not-ready"),
        "the default toleration is added: {tolerations}"
    );

    cluster.kill_agent(&lost);
    wait_for("the pod to be replaced on the other node", ROLLOUT, || {
        let nodes = web_nodes(&cluster);
        (nodes == [other]).then_some(()).ok_or(format!("{nodes:?}"))
    });
    let events = kubectl(
        &cluster,
        &[
            "get",
            "events",
            "--field-selector",
            "reason=TaintManagerEviction",
        ],
    );
    assert!(events.contains("Marking for deletion"), "{events}");

    // The node comes back: its stale copy is not in the store, so it does not run twice.
    cluster.restart_agent(&lost);
    cluster.wait_node_ready(&lost);
    assert_eq!(web_nodes(&cluster), [other]);
}

#[test]
fn deleting_a_namespace_deletes_everything_in_it() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.push("exerciser", "app:v1");
    kubectl(&cluster, &["create", "namespace", "team"]);
    let out = cluster.kubectl_with_stdin(
        &["apply", "-n", "team", "-f", "-"],
        Some(&deployment(2, "app:v1")),
    );
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    let done = kubectl(
        &cluster,
        &[
            "rollout",
            "status",
            "-n",
            "team",
            "deploy/web",
            "--timeout=60s",
        ],
    );
    assert!(done.contains("successfully rolled out"), "{done}");

    // kubectl waits until the namespace is gone.
    kubectl(&cluster, &["delete", "namespace", "team", "--timeout=60s"]);
    let left = kubectl(
        &cluster,
        &["get", "pods,rs,deploy", "-n", "team", "-o", "name"],
    );
    assert_eq!(left.trim(), "", "nothing is left in a deleted namespace");
    let gone = cluster.kubectl(&["get", "namespace", "team"]);
    assert!(
        !gone.success && gone.stderr.contains("NotFound"),
        "{}",
        gone.stderr
    );
    let built_in = cluster.kubectl(&["delete", "namespace", "default"]);
    assert!(
        !built_in.success && built_in.stderr.contains("built in"),
        "{}",
        built_in.stderr
    );
}

#[test]
fn anti_affinity_keeps_replicas_on_separate_nodes_and_node_affinity_picks_nodes() {
    let cluster = Cluster::start(ClusterOptions {
        agents: vec![
            ("pi-1".into(), "site=barn".into()),
            ("pi-2".into(), "site=field".into()),
        ],
    });
    cluster.push("exerciser", "app:v1");
    let apart = deployment(3, "app:v1").replace(
        "      containers:\n",
        "      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - {labelSelector: {matchLabels: {app: web}}, topologyKey: kubernetes.io/hostname}
      containers:\n",
    );
    let out = cluster.kubectl_with_stdin(&["apply", "-f", "-"], Some(&apart));
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    wait_for("two replicas on two nodes and one pending", ROLLOUT, || {
        let pods = list(&cluster, "pods", "app=web");
        let pending: Vec<&Value> = pods
            .iter()
            .filter(|p| p["spec"]["nodeName"].is_null())
            .collect();
        let why = pending
            .first()
            .and_then(|p| p["status"]["conditions"][0]["message"].as_str())
            .unwrap_or("");
        (web_nodes(&cluster) == ["pi-1", "pi-2"] && why.contains("anti-affinity"))
            .then_some(())
            .ok_or(format!("{:?} / {why}", web_nodes(&cluster)))
    });
    kubectl(&cluster, &["delete", "deploy", "web"]);

    let field_only = deployment(2, "app:v1").replace(
        "      containers:\n",
        "      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms:
            - matchExpressions: [{key: site, operator: In, values: [field]}]
      containers:\n",
    );
    let out = cluster.kubectl_with_stdin(&["apply", "-f", "-"], Some(&field_only));
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    wait_for("both replicas on the field node", ROLLOUT, || {
        let nodes = web_nodes(&cluster);
        (nodes == ["pi-2", "pi-2"])
            .then_some(())
            .ok_or(format!("{nodes:?}"))
    });
    let keyless = apart
        .replace("topologyKey: kubernetes.io/hostname", "topologyKey: \"\"")
        .replace("name: web", "name: keyless");
    let out = cluster.kubectl_with_stdin(&["apply", "-f", "-"], Some(&keyless));
    assert!(
        !out.success && out.stderr.contains("topologyKey"),
        "{}",
        out.stderr
    );
}
