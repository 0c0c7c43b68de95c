//! The Job controller's plan, without I/O.

use super::*;

const NOW: &str = "2026-01-01T00:10:00Z";

fn job(spec: Value) -> Value {
    let mut job = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "pi", "namespace": "default", "uid": "job-1"},
        "spec": {
            "completions": 1, "parallelism": 1, "backoffLimit": 6,
            "completionMode": "NonIndexed", "suspend": false,
            "template": {
                "metadata": {"labels": {"job-name": "pi"}},
                "spec": {"restartPolicy": "Never",
                         "containers": [{"name": "pi", "image": "app:v1"}]},
            },
        },
        "status": {},
    });
    json_patch::merge(&mut job["spec"], &spec);
    job
}

fn pod(name: &str, phase: &str, index: Option<usize>) -> Arc<Value> {
    let mut pod = pods::from_template(&job(json!({})), &json!({"spec": {"containers": []}}), "pi-")
        .expect("a pod");
    pod["metadata"]["name"] = name.into();
    pod["status"]["phase"] = phase.into();
    if let Some(i) = index {
        pod["metadata"]["annotations"][INDEX_ANNOTATION] = i.to_string().into();
    }
    Arc::new(pod)
}

fn state(job: Value, pods: Vec<Arc<Value>>) -> State {
    State {
        job: Some(Arc::new(job)),
        pods,
        now: NOW.parse().expect("time"),
    }
}

fn creates(actions: &[Action]) -> Vec<Value> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Create(pod) => Some(pod.clone()),
            _ => None,
        })
        .collect()
}

fn status(actions: &[Action]) -> Value {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Status(_, status) => Some(status.clone()),
            _ => None,
        })
        .expect("a status update")
}

fn condition(actions: &[Action]) -> (String, String) {
    let status = status(actions);
    let c = &status["conditions"][0];
    (
        c["type"].as_str().unwrap_or("").to_owned(),
        c["reason"].as_str().unwrap_or("").to_owned(),
    )
}

#[test]
fn a_new_job_starts_parallelism_pods_of_its_template() {
    let actions = plan(&state(
        job(json!({"completions": 5, "parallelism": 2})),
        vec![],
    ));
    let pods = creates(&actions);
    assert_eq!(pods.len(), 2);
    assert_eq!(pods[0]["metadata"]["generateName"], "pi-");
    assert_eq!(owners::controller_uid(&pods[0]), Some("job-1"));
    assert_eq!(pods[0]["metadata"]["labels"]["controller-uid"], "job-1");
    let status = status(&actions);
    assert_eq!(status["startTime"], NOW);
    assert_eq!(status["active"], 0);
}

#[test]
fn it_completes_when_enough_pods_succeeded() {
    let done = vec![pod("a", "Succeeded", None), pod("b", "Succeeded", None)];
    let actions = plan(&state(job(json!({"completions": 2})), done));
    assert_eq!(condition(&actions), ("Complete".into(), String::new()));
    assert_eq!(status(&actions)["completionTime"], NOW);
    assert_eq!(status(&actions)["succeeded"], 2);
    let running = vec![pod("a", "Succeeded", None), pod("b", "Running", None)];
    let actions = plan(&state(
        job(json!({"completions": 3, "parallelism": 3})),
        running,
    ));
    assert_eq!(
        creates(&actions).len(),
        1,
        "two remain: one runs, one is created"
    );
}

#[test]
fn failures_beyond_the_backoff_limit_fail_it_and_stop_the_rest() {
    let pods = vec![
        pod("a", "Failed", None),
        pod("b", "Failed", None),
        pod("c", "Running", None),
    ];
    let actions = plan(&state(job(json!({"backoffLimit": 1})), pods));
    assert_eq!(
        condition(&actions),
        ("Failed".into(), "BackoffLimitExceeded".into())
    );
    assert!(actions.contains(&Action::Delete(ObjectKey::namespaced(
        "pods", "default", "c"
    ))));
    assert!(creates(&actions).is_empty());
}

#[test]
fn restarts_count_as_failures_with_on_failure() {
    let mut restarting = (*pod("a", "Running", None)).clone();
    restarting["status"]["containerStatuses"] = json!([{"restartCount": 3}]);
    let spec = json!({"backoffLimit": 2, "template": {"spec": {"restartPolicy": "OnFailure"}}});
    let actions = plan(&state(job(spec), vec![Arc::new(restarting)]));
    assert_eq!(condition(&actions).1, "BackoffLimitExceeded");
}

#[test]
fn the_active_deadline_fails_it() {
    let mut j = job(json!({"activeDeadlineSeconds": 60}));
    j["status"]["startTime"] = json!("2026-01-01T00:00:00Z");
    let actions = plan(&state(j, vec![pod("a", "Running", None)]));
    assert_eq!(
        condition(&actions),
        ("Failed".into(), "DeadlineExceeded".into())
    );
}

#[test]
fn indexed_jobs_run_each_missing_index_once_with_its_index_in_the_environment() {
    let spec = json!({"completions": 4, "parallelism": 2, "completionMode": "Indexed"});
    let pods = vec![
        pod("p0", "Succeeded", Some(0)),
        pod("p2", "Running", Some(2)),
    ];
    let actions = plan(&state(job(spec), pods));
    let created = creates(&actions);
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["metadata"]["annotations"][INDEX_ANNOTATION], "1");
    assert_eq!(created[0]["metadata"]["generateName"], "pi-1-");
    assert_eq!(
        created[0]["spec"]["containers"][0]["env"],
        json!([{"name": "JOB_COMPLETION_INDEX", "value": "1"}])
    );
    assert_eq!(status(&actions)["completedIndexes"], "0");
}

#[test]
fn completed_indexes_print_as_ranges() {
    let set: BTreeSet<usize> = [0, 1, 2, 4, 6, 7].into_iter().collect();
    assert_eq!(ranges(&set), "0-2,4,6-7");
}

#[test]
fn a_suspended_job_stops_its_pods_and_a_finished_one_expires_after_its_ttl() {
    let actions = plan(&state(
        job(json!({"suspend": true})),
        vec![pod("a", "Running", None)],
    ));
    assert!(actions.contains(&Action::Delete(ObjectKey::namespaced(
        "pods", "default", "a"
    ))));
    assert!(creates(&actions).is_empty());

    let mut finished = job(json!({"ttlSecondsAfterFinished": 300}));
    finished["status"]["conditions"] = json!([{"type": "Complete", "status": "True",
        "lastTransitionTime": "2026-01-01T00:00:00Z"}]);
    let actions = plan(&state(finished.clone(), vec![]));
    assert_eq!(
        actions,
        [Action::Expire(ObjectKey::namespaced(
            "jobs", "default", "pi"
        ))]
    );
    finished["spec"]["ttlSecondsAfterFinished"] = json!(3600);
    assert!(plan(&state(finished, vec![])).is_empty());
}

#[test]
fn a_settled_job_writes_nothing() {
    let j = job(json!({"completions": 2}));
    let pods = vec![pod("a", "Succeeded", None), pod("b", "Running", None)];
    let first = plan(&state(j.clone(), pods.clone()));
    let mut settled = j;
    settled["status"] = status(&first);
    assert_eq!(plan(&state(settled, pods)), []);
}
