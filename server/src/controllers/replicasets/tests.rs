//! The ReplicaSet controller's plan, without I/O.

use super::*;

fn replica_set(replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-abc", "namespace": "default", "uid": "rs-1", "generation": 2},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "hello:v1"}]},
            },
        },
        "status": {"replicas": 0},
    })
}

fn pod(name: &str, phase: &str, node: Option<&str>, ready: bool, created: &str) -> Arc<Value> {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": "default", "labels": {"app": "web"},
            "creationTimestamp": created,
            "ownerReferences": [owners::controller_reference(&replica_set(1)).unwrap()],
        },
        "spec": {"containers": []},
        "status": {"phase": phase, "conditions": [
            {"type": "Ready", "status": if ready {"True"} else {"False"},
             "lastTransitionTime": "2026-01-01T00:00:00Z"}
        ]},
    });
    if let Some(node) = node {
        pod["spec"]["nodeName"] = node.into();
    }
    Arc::new(pod)
}

fn state(rs: Value, owned: Vec<Arc<Value>>, orphans: Vec<Arc<Value>>) -> State {
    State {
        replica_set: Some(Arc::new(rs)),
        owned,
        orphans,
        now: "2026-01-01T00:10:00Z".parse().unwrap(),
    }
}

fn creates(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Create(_)))
        .count()
}

fn deleted(actions: &[Action]) -> Vec<&str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Delete(key) => Some(key.name.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn missing_pods_are_created_from_the_template_with_the_replica_set_as_controller() {
    let actions = plan(&state(replica_set(3), vec![], vec![]));
    assert_eq!(creates(&actions), 3);
    let Some(Action::Create(pod)) = actions.first() else {
        panic!("{actions:?}");
    };
    assert_eq!(pod["metadata"]["generateName"], "web-abc-");
    assert_eq!(pod["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(owners::controller_uid(pod), Some("rs-1"));
    assert_eq!(pod["spec"]["containers"][0]["image"], "hello:v1");
    assert_eq!(pod["status"]["phase"], "Pending");
}

#[test]
fn surplus_pods_go_unbound_first_then_pending_then_not_ready_then_newest() {
    let owned = vec![
        pod(
            "running-old",
            "Running",
            Some("pi"),
            true,
            "2026-01-01T00:00:00Z",
        ),
        pod(
            "running-new",
            "Running",
            Some("pi"),
            true,
            "2026-01-01T00:05:00Z",
        ),
        pod(
            "not-ready",
            "Running",
            Some("pi"),
            false,
            "2026-01-01T00:00:00Z",
        ),
        pod(
            "pending",
            "Pending",
            Some("pi"),
            false,
            "2026-01-01T00:00:00Z",
        ),
        pod("unbound", "Pending", None, false, "2026-01-01T00:00:00Z"),
    ];
    let actions = plan(&state(replica_set(1), owned.clone(), vec![]));
    assert_eq!(
        deleted(&actions),
        ["unbound", "pending", "not-ready", "running-new"]
    );
    assert_eq!(creates(&actions), 0);
}

#[test]
fn finished_and_terminating_pods_do_not_count() {
    let mut terminating = (*pod("going", "Running", Some("pi"), true, "x")).clone();
    terminating["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
    let owned = vec![
        pod("done", "Succeeded", Some("pi"), false, "x"),
        pod("failed", "Failed", Some("pi"), false, "x"),
        Arc::new(terminating),
    ];
    let actions = plan(&state(replica_set(2), owned, vec![]));
    assert_eq!(creates(&actions), 2);
    assert!(deleted(&actions).is_empty());
}

#[test]
fn matching_orphans_are_adopted_and_counted_and_strays_are_released() {
    let mut orphan = (*pod("orphan", "Running", Some("pi"), true, "x")).clone();
    orphan["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("ownerReferences");
    let mut other = orphan.clone();
    other["metadata"]["name"] = "other".into();
    other["metadata"]["labels"] = json!({"app": "api"});
    let mut stray = (*pod("stray", "Running", Some("pi"), true, "x")).clone();
    stray["metadata"]["labels"] = json!({"app": "moved"});
    let actions = plan(&state(
        replica_set(1),
        vec![Arc::new(stray)],
        vec![Arc::new(orphan), Arc::new(other)],
    ));
    assert!(actions.contains(&Action::Release(
        ObjectKey::namespaced("pods", "default", "stray"),
        "rs-1".into()
    )));
    assert!(actions.iter().any(|a| matches!(a,
        Action::Adopt(key, reference) if key.name == "orphan" && reference["uid"] == "rs-1")));
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::Adopt(key, _) if key.name == "other"))
    );
    assert_eq!(
        creates(&actions),
        0,
        "the adopted orphan is the one replica"
    );
}

#[test]
fn status_counts_ready_and_available_pods_and_is_written_only_when_it_changes() {
    let mut rs = replica_set(3);
    rs["spec"]["minReadySeconds"] = json!(3600);
    let owned = vec![
        pod("a", "Running", Some("pi"), true, "x"),
        pod("b", "Running", Some("pi"), false, "x"),
        pod("c", "Pending", None, false, "x"),
    ];
    let actions = plan(&state(rs.clone(), owned.clone(), vec![]));
    let status = json!({"replicas": 3, "fullyLabeledReplicas": 3, "readyReplicas": 1,
                        "availableReplicas": 0, "observedGeneration": 2});
    assert_eq!(
        actions,
        [Action::Status(
            ObjectKey::namespaced("replicasets", "default", "web-abc"),
            status.clone()
        )]
    );
    rs["status"] = status;
    assert!(plan(&state(rs.clone(), owned.clone(), vec![])).is_empty());
    rs["spec"]["minReadySeconds"] = json!(60);
    let Some(Action::Status(_, status)) = plan(&state(rs, owned, vec![])).pop() else {
        panic!("a status update");
    };
    assert_eq!(status["availableReplicas"], 1);
}

#[test]
fn a_deleted_or_terminating_replica_set_is_left_to_the_garbage_collector() {
    let gone = State {
        replica_set: None,
        ..state(replica_set(1), vec![], vec![])
    };
    assert!(plan(&gone).is_empty());
    let mut rs = replica_set(3);
    rs["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
    assert!(plan(&state(rs, vec![], vec![])).is_empty());
}

#[test]
fn creation_is_bounded_per_reconcile() {
    let actions = plan(&state(replica_set(10_000), vec![], vec![]));
    assert_eq!(creates(&actions), BURST);
}

#[test]
fn a_replica_set_is_due_again_when_its_first_ready_pod_becomes_available() {
    let mut rs = replica_set(3);
    rs["spec"]["minReadySeconds"] = 700.into();
    // Ready since 00:00:00; "now" is 00:10:00: 100 s left for both ready pods.
    let owned = vec![
        pod("a", "Running", Some("n"), true, "2026-01-01T00:00:00Z"),
        pod("b", "Running", Some("n"), false, "2026-01-01T00:00:00Z"),
        pod("c", "Running", Some("n"), true, "2026-01-01T00:00:00Z"),
    ];
    let waiting = state(rs.clone(), owned.clone(), vec![]);
    assert_eq!(due_in(&waiting), Some(Duration::from_secs(100)));

    rs["spec"]["minReadySeconds"] = 600.into();
    let available = state(rs.clone(), owned, vec![]);
    assert_eq!(due_in(&available), None, "available already");
    let unready = vec![pod(
        "b",
        "Running",
        Some("n"),
        false,
        "2026-01-01T00:00:00Z",
    )];
    assert_eq!(due_in(&state(rs, unready, vec![])), None, "nothing ready");
}
