//! The Deployment controller's plan, step by step through rollouts, without I/O.

use super::*;
use crate::k8s::names;

const NOW: &str = "2026-01-01T00:10:00Z";

fn deployment(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "uid": "d-1", "generation": 1},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image}]},
            },
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
        },
        "status": {},
    })
}

/// The ReplicaSet the controller would create for `d`, at `replicas` with `available` of
/// them available and the given revision.
fn replica_set(d: &Value, replicas: i64, available: i64, revision: u64) -> Arc<Value> {
    let mut rs = new_replica_set(d, revision, replicas).unwrap();
    rs["metadata"]["uid"] = format!("rs-{revision}").into();
    rs["status"] = json!({"replicas": replicas, "readyReplicas": available,
                          "availableReplicas": available});
    Arc::new(rs)
}

fn state(d: &Value, owned: Vec<Arc<Value>>) -> State {
    State {
        deployment: Some(Arc::new(d.clone())),
        owned,
        orphans: Vec::new(),
        now: NOW.parse().unwrap(),
    }
}

/// The scale and create actions, as (ReplicaSet name or "new", replicas).
fn moves(actions: &[Action]) -> Vec<(String, i64)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Scale(key, n) => Some((key.name.clone(), *n)),
            Action::Create(rs) => Some(("new".into(), rs["spec"]["replicas"].as_i64()?)),
            _ => None,
        })
        .collect()
}

fn status_of(actions: &[Action]) -> &Value {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Status(_, _, status) => Some(status),
            _ => None,
        })
        .expect("a status update")
}

fn condition<'a>(status: &'a Value, kind: &str) -> &'a Value {
    conditions::in_status(status, kind).expect("the condition")
}

#[test]
fn a_new_deployment_gets_its_first_replica_set_labelled_with_the_template_hash() {
    let d = deployment(3, "hello:v1");
    let actions = plan(&state(&d, vec![]));
    let Some(Action::Create(rs)) = actions.first() else {
        panic!("{actions:?}");
    };
    let hash = names::template_hash(&d["spec"]["template"]);
    assert_eq!(rs["metadata"]["name"], format!("web-{hash}"));
    assert_eq!(rs["metadata"]["annotations"][REVISION], "1");
    assert_eq!(rs["spec"]["replicas"], 3);
    assert_eq!(
        rs["spec"]["selector"]["matchLabels"][HASH_LABEL],
        hash.as_str()
    );
    assert_eq!(
        rs["spec"]["template"]["metadata"]["labels"][HASH_LABEL],
        hash.as_str()
    );
    assert_eq!(owners::controller_uid(rs), Some("d-1"));
    assert!(matches!(
        actions.last(),
        Some(Action::Status(_, Some(1), _))
    ));
}

#[test]
fn the_hash_follows_the_template_only() {
    let a = names::template_hash(&deployment(3, "hello:v1")["spec"]["template"]);
    assert_eq!(
        a,
        names::template_hash(&deployment(5, "hello:v1")["spec"]["template"])
    );
    assert_ne!(
        a,
        names::template_hash(&deployment(3, "hello:v2")["spec"]["template"])
    );
    assert!(a.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
}

#[test]
fn a_rolling_update_surges_one_and_never_drops_below_the_replicas() {
    let v1 = deployment(3, "hello:v1");
    let v2 = deployment(3, "hello:v2");
    let old = replica_set(&v1, 3, 3, 1);
    let old_name = old["metadata"]["name"].as_str().unwrap().to_owned();
    // Step 1: the new ReplicaSet starts at 1 (3 + maxSurge 1 - 3 old).
    let step = plan(&state(&v2, vec![old.clone()]));
    assert_eq!(moves(&step), [("new".to_owned(), 1)]);
    // Step 2: the new pod is not available yet: nothing may go.
    let new = replica_set(&v2, 1, 0, 2);
    let new_name = new["metadata"]["name"].as_str().unwrap().to_owned();
    let step = plan(&state(&v2, vec![old.clone(), new]));
    assert_eq!(moves(&step), []);
    // Step 3: it is available: one old pod goes.
    let new = replica_set(&v2, 1, 1, 2);
    let step = plan(&state(&v2, vec![old, new]));
    assert_eq!(moves(&step), [(old_name.clone(), 2)]);
    // Step 4: room again under the surge: the new one grows.
    let old = replica_set(&v1, 2, 2, 1);
    let new = replica_set(&v2, 1, 1, 2);
    let step = plan(&state(&v2, vec![old, new]));
    assert_eq!(moves(&step), [(new_name.clone(), 2)]);
    // Done: the old one at zero, the new one at three, all available.
    let old = replica_set(&v1, 0, 0, 1);
    let new = replica_set(&v2, 3, 3, 2);
    let step = plan(&state(&v2, vec![old, new]));
    assert_eq!(moves(&step), []);
    let status = status_of(&step);
    assert_eq!(status["updatedReplicas"], 3);
    assert_eq!(
        condition(status, "Progressing")["reason"],
        "NewReplicaSetAvailable"
    );
    assert_eq!(condition(status, "Available")["status"], "True");
}

#[test]
fn percentages_round_surge_up_and_unavailable_down() {
    let mut d = deployment(10, "hello:v2");
    d["spec"]["strategy"]["rollingUpdate"] = json!({"maxSurge": "25%", "maxUnavailable": "25%"});
    let old = replica_set(&deployment(10, "hello:v1"), 10, 10, 1);
    // 10 + ceil(2.5) = 13 pods at most: the new ReplicaSet starts at 3.
    assert_eq!(
        moves(&plan(&state(&d, vec![old.clone()]))),
        [("new".to_owned(), 3)]
    );
    // With 3 new pods unavailable, floor(2.5) = 2 old pods may go: 13 - 8 available... 10 available, 8 needed.
    let new = replica_set(&d, 3, 0, 2);
    let old_name = old["metadata"]["name"].as_str().unwrap().to_owned();
    assert_eq!(moves(&plan(&state(&d, vec![old, new]))), [(old_name, 8)]);
}

#[test]
fn recreate_stops_every_old_pod_before_starting_new_ones() {
    let mut v2 = deployment(3, "hello:v2");
    v2["spec"]["strategy"] = json!({"type": "Recreate"});
    let v1 = deployment(3, "hello:v1");
    let old = replica_set(&v1, 3, 3, 1);
    let old_name = old["metadata"]["name"].as_str().unwrap().to_owned();
    assert_eq!(
        moves(&plan(&state(&v2, vec![old]))),
        [("new".to_owned(), 0)]
    );
    let new = replica_set(&v2, 0, 0, 2);
    let old = replica_set(&v1, 3, 3, 1);
    assert_eq!(
        moves(&plan(&state(&v2, vec![old, new.clone()]))),
        [(old_name, 0)]
    );
    let mut draining = (*replica_set(&v1, 0, 0, 1)).clone();
    draining["status"]["replicas"] = json!(2);
    assert_eq!(
        moves(&plan(&state(&v2, vec![Arc::new(draining), new.clone()]))),
        []
    );
    let gone = replica_set(&v1, 0, 0, 1);
    let new_name = new["metadata"]["name"].as_str().unwrap().to_owned();
    assert_eq!(moves(&plan(&state(&v2, vec![gone, new]))), [(new_name, 3)]);
}

#[test]
fn a_rollback_reactivates_the_old_replica_set_under_the_next_revision() {
    let v1 = deployment(3, "hello:v1");
    let v2 = deployment(3, "hello:v2");
    let first = replica_set(&v1, 0, 0, 1);
    let second = replica_set(&v2, 3, 3, 2);
    let actions = plan(&state(&v1, vec![first.clone(), second]));
    let first_key = key_of("replicasets", &first).unwrap();
    assert!(actions.contains(&Action::Renumber(first_key.clone(), 3)));
    assert!(actions.contains(&Action::Scale(first_key, 1)));
    assert!(matches!(
        actions.last(),
        Some(Action::Status(_, Some(3), _))
    ));
}

#[test]
fn scaling_a_finished_deployment_scales_its_replica_set() {
    let mut d = deployment(5, "hello:v1");
    let rs = replica_set(&d, 3, 3, 1);
    let name = rs["metadata"]["name"].as_str().unwrap().to_owned();
    assert_eq!(
        moves(&plan(&state(&d, vec![rs.clone()]))),
        [(name.clone(), 5)]
    );
    d["spec"]["replicas"] = json!(1);
    assert_eq!(moves(&plan(&state(&d, vec![rs]))), [(name, 1)]);
}

#[test]
fn a_paused_deployment_does_not_roll() {
    let mut v2 = deployment(3, "hello:v2");
    v2["spec"]["paused"] = json!(true);
    let old = replica_set(&deployment(3, "hello:v1"), 3, 3, 1);
    let actions = plan(&state(&v2, vec![old]));
    assert_eq!(moves(&actions), []);
    assert_eq!(
        condition(status_of(&actions), "Progressing")["reason"],
        "DeploymentPaused"
    );
}

#[test]
fn old_replica_sets_beyond_the_history_limit_are_deleted_oldest_first() {
    let mut d = deployment(1, "hello:v99");
    d["spec"]["revisionHistoryLimit"] = json!(2);
    let mut owned: Vec<Arc<Value>> = (1..=4)
        .map(|r| replica_set(&deployment(1, &format!("hello:v{r}")), 0, 0, r))
        .collect();
    owned.push(replica_set(&d, 1, 1, 5));
    let deleted: Vec<u64> = plan(&state(&d, owned.clone()))
        .iter()
        .filter_map(|a| match a {
            Action::Delete(key) => owned
                .iter()
                .find(|rs| rs["metadata"]["name"] == key.name.as_str())
                .map(|rs| revision_of(rs)),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, [1, 2]);
}

#[test]
fn a_finished_deployment_plans_nothing_and_a_stuck_one_times_out() {
    let d = deployment(2, "hello:v1");
    let rs = replica_set(&d, 2, 2, 1);
    let actions = plan(&state(&d, vec![rs.clone()]));
    let Some(Action::Status(_, _, status)) = actions.last() else {
        panic!("{actions:?}");
    };
    let mut settled = d.clone();
    settled["status"] = status.clone();
    settled["metadata"]["annotations"] = json!({REVISION: "1"});
    assert_eq!(plan(&state(&settled, vec![rs])), []);

    let mut stuck = d.clone();
    stuck["metadata"]["annotations"] = json!({REVISION: "1"});
    stuck["status"] = json!({"updatedReplicas": 2, "readyReplicas": 0, "availableReplicas": 0,
        "conditions": [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                        "lastUpdateTime": "2026-01-01T00:00:00Z",
                        "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
    stuck["spec"]["progressDeadlineSeconds"] = json!(300);
    let waiting = replica_set(&d, 2, 0, 1);
    let actions = plan(&state(&stuck, vec![waiting]));
    let progressing = condition(status_of(&actions), "Progressing");
    assert_eq!(progressing["status"], "False");
    assert_eq!(progressing["reason"], "ProgressDeadlineExceeded");
}

#[test]
fn matching_orphan_replica_sets_are_adopted() {
    let d = deployment(1, "hello:v1");
    let mut orphan = (*replica_set(&d, 1, 1, 1)).clone();
    orphan["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("ownerReferences");
    let s = State {
        orphans: vec![Arc::new(orphan)],
        ..state(&d, vec![])
    };
    let actions = plan(&s);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Adopt(_, r) if r["uid"] == "d-1"))
    );
    assert!(!actions.iter().any(|a| matches!(a, Action::Create(_))));
}
