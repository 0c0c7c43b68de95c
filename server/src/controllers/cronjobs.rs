//! The CronJob controller: creates a CronJob's Jobs on its schedule (kube-controller-
//! manager's `cronjob` controller), on the shared [`runner`] with a short resync, so a run
//! starts within a few seconds of its time.
//!
//! One reconcile: the latest scheduled time after `status.lastScheduleTime` (or creation) is
//! due unless `suspend`; one more than `startingDeadlineSeconds` late is skipped (with a
//! warning event). With `concurrencyPolicy: Forbid` a due run waits while a Job is active;
//! `Replace` deletes the active ones first; `Allow` runs them side by side. A Job is named
//! `{cronjob}-{scheduled minute since the epoch}`, so a run is never created twice. Finished
//! Jobs beyond `successfulJobsHistoryLimit` / `failedJobsHistoryLimit` are deleted, oldest
//! first. Missed runs are not made up one by one: only the latest is started, as Kubernetes
//! does.
//!
//! [`runner`]: super::runner

use std::sync::Arc;

use serde_json::{Value, json};

use super::runner::Controller;
use super::writes;
use crate::events::{self, Involved, Type};
use crate::informer::{Cache, Change, key_of};
use crate::k8s::schedule::Schedule;
use crate::k8s::{conditions, jobs, owners, time};
use crate::store::{ObjectKey, Store, StoreError};

/// The `source.component` of its events.
const COMPONENT: &str = "cronjob-controller";

/// The annotation with a Job's scheduled time.
pub const SCHEDULED_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// The CronJob controller.
#[derive(Debug, Default)]
pub struct CronJobs;

/// One CronJob and its Jobs.
#[derive(Debug, Clone)]
pub struct State {
    /// The CronJob (`None`: deleted).
    pub cron_job: Option<Arc<Value>>,
    /// The Jobs it controls.
    pub jobs: Vec<Arc<Value>>,
    /// Now.
    pub now: jiff::Timestamp,
}

/// What a reconcile does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create this Job.
    Create(Value),
    /// Delete this Job (replaced, or beyond the history limits).
    Delete(ObjectKey),
    /// Write this status.
    Status(ObjectKey, Value),
    /// A run was skipped: this warning on the CronJob.
    Missed(ObjectKey, String),
}

fn finished(job: &Value) -> Option<&'static str> {
    ["Complete", "Failed"]
        .into_iter()
        .find(|kind| conditions::condition_status(job, kind) == Some("True"))
}

fn timestamp(value: &Value) -> Option<jiff::Timestamp> {
    value.as_str()?.parse().ok()
}

/// Pure: what to do about one CronJob (see the module docs).
pub fn plan(state: &State) -> Vec<Action> {
    let Some(cj) = state.cron_job.as_deref() else {
        return Vec::new();
    };
    let (Some(key), true) = (
        key_of("cronjobs", cj),
        cj["metadata"]["deletionTimestamp"].is_null(),
    ) else {
        return Vec::new();
    };
    let spec = &cj["spec"];
    let Ok(schedule) = Schedule::parse(
        spec["schedule"].as_str().unwrap_or(""),
        spec["timeZone"].as_str(),
    ) else {
        return Vec::new();
    };
    let active: Vec<&Value> = state
        .jobs
        .iter()
        .map(Arc::as_ref)
        .filter(|j| finished(j).is_none())
        .collect();
    let mut status = json!({});
    for field in ["lastScheduleTime", "lastSuccessfulTime"] {
        if !cj["status"][field].is_null() {
            status[field] = cj["status"][field].clone();
        }
    }
    let after = timestamp(&cj["status"]["lastScheduleTime"])
        .or_else(|| timestamp(&cj["metadata"]["creationTimestamp"]))
        .unwrap_or(state.now);
    let mut actions = Vec::new();
    let mut running: Vec<Value> = active.iter().map(|j| reference(j)).collect();
    if let Some(due) = schedule
        .due(after, state.now)
        .filter(|_| spec["suspend"] != true)
    {
        let late = state.now.as_second() - due.as_second();
        let policy = spec["concurrencyPolicy"].as_str().unwrap_or("Allow");
        if spec["startingDeadlineSeconds"]
            .as_i64()
            .is_some_and(|d| late > d)
        {
            actions.push(Action::Missed(
                key.clone(),
                format!(
                    "Missed scheduled time to start a job: {}",
                    time::rfc3339(due)
                ),
            ));
            status["lastScheduleTime"] = time::rfc3339(due).into();
        } else if policy == "Forbid" && !active.is_empty() {
            // Waits for the active Job; the run stays due until its deadline.
        } else {
            if policy == "Replace" {
                actions.extend(
                    active
                        .iter()
                        .filter_map(|j| key_of("jobs", j))
                        .map(Action::Delete),
                );
                running.clear();
            }
            if let Some(job) = job_for(cj, due) {
                running.push(reference(&job));
                actions.push(Action::Create(job));
            }
            status["lastScheduleTime"] = time::rfc3339(due).into();
        }
    }
    actions.extend(history(cj, &state.jobs));
    status["active"] = running.into();
    if let Some(success) = state
        .jobs
        .iter()
        .filter(|j| finished(j) == Some("Complete"))
        .filter_map(|j| timestamp(&j["status"]["completionTime"]))
        .max()
    {
        status["lastSuccessfulTime"] = time::rfc3339(success).into();
    }
    if cj.get("status") != Some(&status) {
        actions.push(Action::Status(key, status));
    }
    actions
}

/// An object reference to a Job, as `status.active` lists them.
fn reference(job: &Value) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "name": job["metadata"]["name"], "namespace": job["metadata"]["namespace"],
        "uid": job["metadata"]["uid"],
    })
}

/// The Job of the run scheduled at `due`.
fn job_for(cj: &Value, due: jiff::Timestamp) -> Option<Value> {
    let name = format!(
        "{}-{}",
        cj["metadata"]["name"].as_str()?,
        due.as_second() / 60
    );
    let template = &cj["spec"]["jobTemplate"];
    let mut annotations = template["metadata"]["annotations"].clone();
    if !annotations.is_object() {
        annotations = json!({});
    }
    annotations[SCHEDULED_ANNOTATION] = time::rfc3339(due).into();
    let mut job = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": cj["metadata"]["namespace"],
            "labels": template["metadata"]["labels"].as_object().cloned().unwrap_or_default(),
            "annotations": annotations,
            "ownerReferences": [owners::controller_reference(cj)?],
        },
        "spec": template["spec"].clone(),
        "status": {},
    });
    jobs::generate_selector(&mut job);
    Some(job)
}

/// Finished Jobs beyond the history limits, oldest first.
fn history(cj: &Value, all: &[Arc<Value>]) -> Vec<Action> {
    let mut actions = Vec::new();
    for (kind, field, default) in [
        ("Complete", "successfulJobsHistoryLimit", 3),
        ("Failed", "failedJobsHistoryLimit", 1),
    ] {
        let limit = usize::try_from(cj["spec"][field].as_i64().unwrap_or(default)).unwrap_or(0);
        let mut done: Vec<&Value> = all
            .iter()
            .map(Arc::as_ref)
            .filter(|j| finished(j) == Some(kind))
            .collect();
        done.sort_by_key(|j| j["status"]["startTime"].as_str().unwrap_or("").to_owned());
        let excess = done.len().saturating_sub(limit);
        actions.extend(
            done.into_iter()
                .take(excess)
                .filter_map(|j| key_of("jobs", j))
                .map(Action::Delete),
        );
    }
    actions
}

impl Controller for CronJobs {
    type State = State;
    type Action = Action;

    fn name(&self) -> &'static str {
        "cronjob"
    }

    fn keys_for(&self, change: &Change) -> Vec<ObjectKey> {
        match change.key.resource.as_str() {
            "cronjobs" => vec![change.key.clone()],
            "jobs" => [change.old.as_deref(), change.new.as_deref()]
                .into_iter()
                .flatten()
                .filter_map(|job| owners::controller_key(job, "CronJob", "cronjobs"))
                .collect(),
            _ => Vec::new(),
        }
    }

    fn all_keys(&self, cache: &Cache) -> Vec<ObjectKey> {
        cache.keys("cronjobs")
    }

    fn observe(&self, key: &ObjectKey, cache: &Cache) -> State {
        let cron_job = cache.get(key);
        State {
            jobs: cache.owned(cron_job.as_deref(), "Job"),
            cron_job,
            now: jiff::Timestamp::now(),
        }
    }

    fn plan(&self, state: &State) -> Vec<Action> {
        plan(state)
    }

    fn execute(&self, action: &Action, store: &Store) -> Result<(), StoreError> {
        match action {
            Action::Create(job) => create(store, job),
            Action::Delete(key) => writes::delete(store, key),
            Action::Status(key, status) => {
                writes::edit(store, key, |cj| cj["status"] = status.clone())
            }
            Action::Missed(key, message) => {
                if let Some(cj) = store.get(key)? {
                    events::record(
                        store,
                        &Involved::of(&cj),
                        Type::Warning,
                        "MissSchedule",
                        message,
                        COMPONENT,
                    );
                }
                Ok(())
            }
        }
    }
}

/// Creates the run's Job (one already there is this run's) and records it.
fn create(store: &Store, job: &Value) -> Result<(), StoreError> {
    let Some(key) = key_of("jobs", job) else {
        return Ok(());
    };
    match store.create(&key, job.clone()) {
        Ok(_) => {
            let message = format!("Created job {}", key.name);
            events::record_on_controller(
                store,
                job,
                Type::Normal,
                "SuccessfulCreate",
                &message,
                COMPONENT,
            );
            Ok(())
        }
        Err(StoreError::AlreadyExists(_)) => Ok(()),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests;
