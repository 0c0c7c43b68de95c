//! The DaemonSet controller's plan, without I/O.

use super::*;

fn daemon_set(image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "sensor", "namespace": "default", "uid": "ds-1", "generation": 1},
        "spec": {
            "selector": {"matchLabels": {"app": "sensor"}},
            "template": {
                "metadata": {"labels": {"app": "sensor"}},
                "spec": {"nodeSelector": {"sensor": "yes"},
                         "containers": [{"name": "read", "image": image}]},
            },
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
        },
        "status": {},
    })
}

fn node(name: &str, sensor: bool, taints: Value) -> Arc<Value> {
    let labels = if sensor {
        json!({"sensor": "yes"})
    } else {
        json!({})
    };
    Arc::new(json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}}))
}

fn pod_on(ds: &Value, node: &str, ready: bool) -> Arc<Value> {
    let mut pod = pod_for(ds, node, &names::template_hash(&ds["spec"]["template"])).unwrap();
    pod["metadata"]["name"] = format!("sensor-{node}").into();
    pod["status"] = json!({"phase": "Running", "conditions": [
        {"type": "Ready", "status": if ready {"True"} else {"False"}}]});
    Arc::new(pod)
}

fn state(ds: &Value, nodes: Vec<Arc<Value>>, pods: Vec<Arc<Value>>) -> State {
    State {
        daemon_set: Some(Arc::new(ds.clone())),
        nodes,
        pods,
        now: "2026-01-01T00:00:00Z".parse().unwrap(),
    }
}

fn created_on(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Create(pod) => pod["spec"]["nodeName"].as_str().map(str::to_owned),
            _ => None,
        })
        .collect()
}

fn deleted(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Delete(key) => Some(key.name.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn every_matching_node_gets_one_pod_and_others_none() {
    let ds = daemon_set("sensor:v1");
    let nodes = vec![
        node("pi-1", true, json!([])),
        node("pi-2", false, json!([])),
        node(
            "pi-3",
            true,
            json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
        ),
        node(
            "pi-4",
            true,
            json!([{"key": "node.wasmfleet.io/unapproved", "effect": "NoSchedule"}]),
        ),
    ];
    let actions = plan(&state(&ds, nodes, vec![]));
    assert_eq!(
        created_on(&actions),
        ["pi-1", "pi-3"],
        "cordoned nodes keep daemons; unapproved ones get none"
    );
    let Some(Action::Status(_, status)) = actions.last() else {
        panic!("{actions:?}");
    };
    assert_eq!(status["desiredNumberScheduled"], 2);
    assert_eq!(status["numberUnavailable"], 2);
}

#[test]
fn pods_on_nodes_that_stop_matching_or_vanish_go() {
    let ds = daemon_set("sensor:v1");
    let pods = vec![
        pod_on(&ds, "pi-1", true),
        pod_on(&ds, "pi-2", true),
        pod_on(&ds, "gone", true),
    ];
    let nodes = vec![
        node("pi-1", true, json!([])),
        node("pi-2", false, json!([])),
    ];
    let actions = plan(&state(&ds, nodes, pods));
    assert_eq!(deleted(&actions), ["sensor-gone", "sensor-pi-2"]);
    assert!(created_on(&actions).is_empty());
}

#[test]
fn a_rolling_update_replaces_one_node_at_a_time() {
    let v1 = daemon_set("sensor:v1");
    let v2 = daemon_set("sensor:v2");
    let nodes = vec![
        node("a", true, json!([])),
        node("b", true, json!([])),
        node("c", true, json!([])),
    ];
    let old = vec![
        pod_on(&v1, "a", true),
        pod_on(&v1, "b", true),
        pod_on(&v1, "c", true),
    ];
    let actions = plan(&state(&v2, nodes.clone(), old.clone()));
    assert_eq!(deleted(&actions), ["sensor-a"], "maxUnavailable 1");
    // a has no pod now: it gets a v2 one, and nothing else goes meanwhile.
    let actions = plan(&state(&v2, nodes.clone(), old[1..].to_vec()));
    assert_eq!(created_on(&actions), ["a"]);
    assert!(deleted(&actions).is_empty());
    // An unready old pod goes at once, whatever the budget.
    let mixed = vec![
        pod_on(&v2, "a", false),
        pod_on(&v1, "b", false),
        pod_on(&v1, "c", true),
    ];
    assert_eq!(deleted(&plan(&state(&v2, nodes, mixed))), ["sensor-b"]);
}

#[test]
fn on_delete_leaves_old_pods_alone_and_failed_pods_are_replaced() {
    let v1 = daemon_set("sensor:v1");
    let mut v2 = daemon_set("sensor:v2");
    v2["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
    let nodes = vec![node("a", true, json!([]))];
    assert!(
        deleted(&plan(&state(
            &v2,
            nodes.clone(),
            vec![pod_on(&v1, "a", true)]
        )))
        .is_empty()
    );
    let mut failed = (*pod_on(&v2, "a", false)).clone();
    failed["status"]["phase"] = json!("Failed");
    let actions = plan(&state(&v2, nodes, vec![Arc::new(failed)]));
    assert_eq!(deleted(&actions), ["sensor-a"]);
    assert_eq!(created_on(&actions), ["a"]);
}

#[test]
fn a_settled_daemon_set_writes_nothing() {
    let ds = daemon_set("sensor:v1");
    let nodes = vec![node("a", true, json!([]))];
    let pods = vec![pod_on(&ds, "a", true)];
    let Some(Action::Status(_, status)) = plan(&state(&ds, nodes.clone(), pods.clone())).pop()
    else {
        panic!("a status");
    };
    let mut settled = ds;
    settled["status"] = status;
    assert_eq!(plan(&state(&settled, nodes, pods)), []);
}

#[test]
fn a_daemon_set_is_due_again_when_a_ready_pod_becomes_available() {
    let mut ds = daemon_set("sensor:v1");
    ds["spec"]["minReadySeconds"] = 30.into();
    let ready_since = |node: &str, since: &str| {
        let mut pod = (*pod_on(&ds, node, true)).clone();
        pod["status"]["conditions"][0]["lastTransitionTime"] = since.into();
        Arc::new(pod)
    };
    let pods = vec![
        ready_since("a", "2025-12-31T23:59:50Z"),
        ready_since("b", "2025-12-31T23:59:40Z"),
        pod_on(&ds, "c", false),
    ];
    let nodes = vec![node("a", true, json!([])), node("b", true, json!([]))];
    assert_eq!(
        due_in(&state(&ds, nodes.clone(), pods.clone())),
        Some(Duration::from_secs(10)),
        "b is available 10 s from now"
    );
    ds["spec"]["minReadySeconds"] = 0.into();
    assert_eq!(due_in(&state(&ds, nodes, pods)), None);
}
