//! The CronJob controller's plan, without I/O.

use super::*;

fn cron_job(spec: Value) -> Value {
    let mut cj = json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "backup", "namespace": "default", "uid": "cj-1",
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {
            "schedule": "*/5 * * * *", "timeZone": "UTC", "concurrencyPolicy": "Allow",
            "suspend": false, "successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 1,
            "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "b", "image": "app:v1"}]}}}},
        },
        "status": {},
    });
    json_patch::merge(&mut cj["spec"], &spec);
    cj
}

fn job(name: &str, finished: Option<&str>, started: &str) -> Arc<Value> {
    let mut job = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "status": {"startTime": started}});
    if let Some(kind) = finished {
        job["status"]["conditions"] = json!([{"type": kind, "status": "True"}]);
        job["status"]["completionTime"] = json!(started);
    }
    Arc::new(job)
}

fn state(cj: Value, jobs: Vec<Arc<Value>>, now: &str) -> State {
    State {
        cron_job: Some(Arc::new(cj)),
        jobs,
        now: now.parse().expect("time"),
    }
}

fn created(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Create(job) => job["metadata"]["name"].as_str().map(str::to_owned),
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
fn a_due_run_creates_one_job_named_by_its_minute_with_its_own_selector() {
    let actions = plan(&state(cron_job(json!({})), vec![], "2026-01-01T00:07:00Z"));
    // Due at 00:05, named by its minute since the epoch.
    let minute = "2026-01-01T00:05:00Z"
        .parse::<jiff::Timestamp>()
        .expect("time")
        .as_second()
        / 60;
    let name = format!("backup-{minute}");
    assert_eq!(created(&actions), std::slice::from_ref(&name));
    let Some(Action::Create(job)) = actions.first() else {
        panic!("{actions:?}");
    };
    assert_eq!(
        job["spec"]["selector"]["matchLabels"][jobs::JOB_NAME_LABEL],
        name.as_str()
    );
    assert_eq!(owners::controller_uid(job), Some("cj-1"));
    let Some(Action::Status(_, status)) = actions.last() else {
        panic!("{actions:?}");
    };
    assert_eq!(status["lastScheduleTime"], "2026-01-01T00:05:00Z");
    assert_eq!(status["active"][0]["name"], name.as_str());
    // Once recorded, the same run is not due again.
    let mut ran = cron_job(json!({}));
    ran["status"]["lastScheduleTime"] = json!("2026-01-01T00:05:00Z");
    assert!(created(&plan(&state(ran, vec![], "2026-01-01T00:07:00Z"))).is_empty());
}

#[test]
fn forbid_waits_replace_deletes_and_suspend_skips() {
    let active = vec![job("backup-1", None, "2026-01-01T00:00:00Z")];
    let forbid = cron_job(json!({"concurrencyPolicy": "Forbid"}));
    assert!(
        created(&plan(&state(
            forbid,
            active.clone(),
            "2026-01-01T00:07:00Z"
        )))
        .is_empty()
    );
    let replace = cron_job(json!({"concurrencyPolicy": "Replace"}));
    let actions = plan(&state(replace, active.clone(), "2026-01-01T00:07:00Z"));
    assert_eq!(deleted(&actions), ["backup-1"]);
    assert_eq!(created(&actions).len(), 1);
    let suspended = cron_job(json!({"suspend": true}));
    assert!(created(&plan(&state(suspended, vec![], "2026-01-01T00:07:00Z"))).is_empty());
}

#[test]
fn a_run_later_than_its_deadline_is_skipped_with_a_warning() {
    let late = cron_job(json!({"startingDeadlineSeconds": 60}));
    let actions = plan(&state(late, vec![], "2026-01-01T00:07:00Z"));
    assert!(created(&actions).is_empty());
    assert!(actions.iter().any(|a| matches!(a, Action::Missed(..))));
}

#[test]
fn finished_jobs_beyond_the_history_limits_go_oldest_first() {
    let jobs = vec![
        job("s1", Some("Complete"), "2026-01-01T00:00:00Z"),
        job("s2", Some("Complete"), "2026-01-01T00:01:00Z"),
        job("f1", Some("Failed"), "2026-01-01T00:00:30Z"),
        job("f2", Some("Failed"), "2026-01-01T00:01:30Z"),
    ];
    let mut cj = cron_job(json!({}));
    cj["status"]["lastScheduleTime"] = json!("2026-01-01T00:05:00Z");
    let actions = plan(&state(cj, jobs, "2026-01-01T00:06:00Z"));
    assert_eq!(deleted(&actions), ["s1", "f1"]);
}
