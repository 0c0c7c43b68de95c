//! The Job controller: runs a Job's pods to completion (kube-controller-manager's `job`
//! controller), on the shared [`runner`].
//!
//! One reconcile of a Job, from the cache:
//! - pods are *active* (neither `Succeeded` nor `Failed`, not being deleted), *succeeded*
//!   or *failed*; failures are the failed pods plus, with `restartPolicy: OnFailure`, the
//!   restarts of active ones;
//! - the Job fails (`Failed` condition, its active pods deleted) when failures exceed
//!   `backoffLimit` (`BackoffLimitExceeded`) or it ran longer than `activeDeadlineSeconds`
//!   (`DeadlineExceeded`); it completes (`Complete`, `completionTime`) when `completions`
//!   pods succeeded (with `Indexed`, one per index 0..completions; with no `completions`, one
//!   success and none active);
//! - otherwise it keeps `min(parallelism, remaining)` pods active (none while `suspend`),
//!   creating pods of the template (with `Indexed`, for the lowest missing indexes, each
//!   with `JOB_COMPLETION_INDEX` in its containers' environment);
//! - a finished Job with `ttlSecondsAfterFinished` is deleted that long after it finished
//!   (its pods then go with the garbage collector).
//!
//! [`runner`]: super::runner

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Value, json};

use super::runner::Controller;
use super::writes;
use crate::events::{self, Involved, Type};
use crate::informer::{Cache, Change, key_of};
use crate::k8s::{conditions, owners, pods, time};
use crate::store::{ObjectKey, Store, StoreError};

/// The `source.component` of its events.
const COMPONENT: &str = "job-controller";

/// The annotation (and label) holding an Indexed Job pod's index.
pub const INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";

/// The Job controller.
#[derive(Debug, Default)]
pub struct Jobs;

/// One Job and its pods.
#[derive(Debug, Clone)]
pub struct State {
    /// The Job (`None`: deleted).
    pub job: Option<Arc<Value>>,
    /// The pods it controls.
    pub pods: Vec<Arc<Value>>,
    /// The time deadlines and TTLs are judged at.
    pub now: jiff::Timestamp,
}

/// What a reconcile does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create this pod (named from its `generateName`).
    Create(Value),
    /// Delete this pod.
    Delete(ObjectKey),
    /// Write this status on the Job.
    Status(ObjectKey, Value),
    /// Delete the finished Job (its TTL ran out).
    Expire(ObjectKey),
}

/// A Job's spec as the plan reads it.
struct Spec {
    parallelism: usize,
    completions: Option<usize>,
    backoff_limit: usize,
    deadline: Option<i64>,
    ttl: Option<i64>,
    indexed: bool,
    suspended: bool,
    on_failure: bool,
}

impl Spec {
    fn of(job: &Value) -> Self {
        let spec = &job["spec"];
        let count = |field: &str| spec[field].as_u64().and_then(|n| usize::try_from(n).ok());
        Self {
            parallelism: count("parallelism").unwrap_or(1),
            completions: count("completions"),
            backoff_limit: count("backoffLimit").unwrap_or(6),
            deadline: spec["activeDeadlineSeconds"].as_i64(),
            ttl: spec["ttlSecondsAfterFinished"].as_i64(),
            indexed: spec["completionMode"] == "Indexed",
            suspended: spec["suspend"] == true,
            on_failure: spec["template"]["spec"]["restartPolicy"] == "OnFailure",
        }
    }
}

/// The Job's pods, sorted by what they became.
struct Pods<'a> {
    active: Vec<&'a Value>,
    succeeded: Vec<&'a Value>,
    failed: usize,
}

impl<'a> Pods<'a> {
    fn of(pods: &'a [Arc<Value>]) -> Self {
        let mut sorted = Self {
            active: Vec::new(),
            succeeded: Vec::new(),
            failed: 0,
        };
        for pod in pods.iter().map(Arc::as_ref) {
            match pod["status"]["phase"].as_str() {
                Some("Succeeded") => sorted.succeeded.push(pod),
                Some("Failed") => sorted.failed += 1,
                _ if pod["metadata"]["deletionTimestamp"].is_null() => sorted.active.push(pod),
                _ => {}
            }
        }
        sorted
    }

    fn restarts(&self) -> usize {
        self.active
            .iter()
            .flat_map(|pod| {
                pod["status"]["containerStatuses"]
                    .as_array()
                    .into_iter()
                    .flatten()
            })
            .filter_map(|c| c["restartCount"].as_u64())
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            .sum()
    }

    fn succeeded_indexes(&self) -> BTreeSet<usize> {
        self.succeeded.iter().filter_map(|p| index_of(p)).collect()
    }
}

fn index_of(pod: &Value) -> Option<usize> {
    pod.pointer("/metadata/annotations")?
        .get(INDEX_ANNOTATION)?
        .as_str()?
        .parse()
        .ok()
}

fn timestamp(value: &Value) -> Option<jiff::Timestamp> {
    value.as_str()?.parse().ok()
}

/// Pure: what to do about one Job (see the module docs).
pub fn plan(state: &State) -> Vec<Action> {
    let Some(job) = state.job.as_deref() else {
        return Vec::new();
    };
    let Some(key) = key_of("jobs", job) else {
        return Vec::new();
    };
    if !job["metadata"]["deletionTimestamp"].is_null() {
        return Vec::new();
    }
    let spec = Spec::of(job);
    let pods = Pods::of(&state.pods);
    if let Some(finished) = finished_at(job) {
        return finished_actions(&key, &spec, &pods, finished, state.now);
    }
    let started = timestamp(&job["status"]["startTime"]).unwrap_or(state.now);
    let failures = pods.failed + if spec.on_failure { pods.restarts() } else { 0 };
    let mut status = counts(job, &spec, &pods, started);
    let ending = if failures > spec.backoff_limit {
        Some((
            "Failed",
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ))
    } else if spec
        .deadline
        .is_some_and(|d| state.now.as_second() - started.as_second() >= d)
    {
        Some((
            "Failed",
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        ))
    } else if complete(&spec, &pods) {
        Some(("Complete", "", ""))
    } else {
        None
    };
    let mut actions = Vec::new();
    match ending {
        Some((kind, reason, message)) => {
            actions.extend(
                pods.active
                    .iter()
                    .filter_map(|p| key_of("pods", p))
                    .map(Action::Delete),
            );
            status["active"] = json!(0);
            let now = time::rfc3339(state.now);
            if kind == "Complete" {
                status["completionTime"] = now.clone().into();
            }
            status["conditions"] = json!([{
                "type": kind, "status": "True", "reason": reason, "message": message,
                "lastProbeTime": now, "lastTransitionTime": now,
            }]);
        }
        None => actions.extend(keep_active(job, &spec, &pods)),
    }
    if job.get("status") != Some(&status) {
        actions.push(Action::Status(key, status));
    }
    actions
}

/// When the Job finished (its `Complete` or `Failed` condition turned true).
fn finished_at(job: &Value) -> Option<jiff::Timestamp> {
    ["Complete", "Failed"]
        .iter()
        .filter_map(|kind| conditions::condition(job, kind))
        .find(|c| c["status"] == "True")
        .map(|c| timestamp(&c["lastTransitionTime"]).unwrap_or(jiff::Timestamp::UNIX_EPOCH))
}

/// A finished Job: stragglers deleted, and the Job itself once its TTL ran out.
fn finished_actions(
    key: &ObjectKey,
    spec: &Spec,
    pods: &Pods,
    finished: jiff::Timestamp,
    now: jiff::Timestamp,
) -> Vec<Action> {
    let mut actions: Vec<Action> = pods
        .active
        .iter()
        .filter_map(|p| key_of("pods", p))
        .map(Action::Delete)
        .collect();
    if spec
        .ttl
        .is_some_and(|ttl| now.as_second() - finished.as_second() >= ttl)
    {
        actions.push(Action::Expire(key.clone()));
    }
    actions
}

fn complete(spec: &Spec, pods: &Pods) -> bool {
    match (spec.completions, spec.indexed) {
        (Some(n), true) => (0..n).all(|i| pods.succeeded_indexes().contains(&i)),
        (Some(n), false) => pods.succeeded.len() >= n,
        (None, _) => !pods.succeeded.is_empty() && pods.active.is_empty(),
    }
}

/// The status counts (and start time) of a running Job.
fn counts(job: &Value, spec: &Spec, pods: &Pods, started: jiff::Timestamp) -> Value {
    let mut status = json!({
        "startTime": job["status"]["startTime"].as_str().map_or_else(|| time::rfc3339(started), str::to_owned),
        "active": pods.active.len(),
        "ready": pods.active.iter().filter(|p| pods::is_ready(p)).count(),
        "succeeded": pods.succeeded.len(),
        "failed": pods.failed,
    });
    if spec.indexed {
        status["completedIndexes"] = ranges(&pods.succeeded_indexes()).into();
    }
    status
}

/// `0-2,4`: the indexes as Kubernetes prints `completedIndexes`.
fn ranges(indexes: &BTreeSet<usize>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut run: Option<(usize, usize)> = None;
    for &i in indexes {
        run = match run {
            Some((start, end)) if end + 1 == i => Some((start, i)),
            Some(done) => {
                parts.push(range_text(done));
                Some((i, i))
            }
            None => Some((i, i)),
        };
    }
    parts.extend(run.map(range_text));
    parts.join(",")
}

fn range_text((start, end): (usize, usize)) -> String {
    match start == end {
        true => start.to_string(),
        false => format!("{start}-{end}"),
    }
}

/// Creates or deletes pods so that the wanted number are active.
fn keep_active(job: &Value, spec: &Spec, pods: &Pods) -> Vec<Action> {
    let remaining = match spec.completions {
        Some(n) if spec.indexed => n.saturating_sub(pods.succeeded_indexes().len()),
        Some(n) => n.saturating_sub(pods.succeeded.len()),
        None if pods.succeeded.is_empty() => spec.parallelism,
        None => 0,
    };
    let wanted = if spec.suspended {
        0
    } else {
        spec.parallelism.min(remaining)
    };
    let active = pods.active.len();
    if active > wanted {
        return pods.active[wanted..]
            .iter()
            .filter_map(|p| key_of("pods", p))
            .map(Action::Delete)
            .collect();
    }
    if !spec.indexed {
        return (active..wanted)
            .filter_map(|_| pod_for(job, None))
            .map(Action::Create)
            .collect();
    }
    let taken: BTreeSet<usize> = pods
        .active
        .iter()
        .filter_map(|p| index_of(p))
        .chain(pods.succeeded_indexes())
        .collect();
    (0..spec.completions.unwrap_or(0))
        .filter(|i| !taken.contains(i))
        .take(wanted - active)
        .filter_map(|i| pod_for(job, Some(i)))
        .map(Action::Create)
        .collect()
}

/// A pod of the Job's template, controlled by the Job; with an index, annotated and given
/// `JOB_COMPLETION_INDEX`.
fn pod_for(job: &Value, index: Option<usize>) -> Option<Value> {
    let name = job["metadata"]["name"].as_str()?;
    let prefix = match index {
        Some(i) => format!("{name}-{i}-"),
        None => format!("{name}-"),
    };
    let mut pod = pods::from_template(job, &job["spec"]["template"], &prefix)?;
    let uid = job["metadata"]["uid"].as_str().unwrap_or_default();
    pod["metadata"]["labels"]["batch.kubernetes.io/controller-uid"] = uid.into();
    pod["metadata"]["labels"]["controller-uid"] = uid.into();
    if let Some(i) = index {
        pod["metadata"]["annotations"][INDEX_ANNOTATION] = i.to_string().into();
        pod["metadata"]["labels"][INDEX_ANNOTATION] = i.to_string().into();
        let containers = pod["spec"]["containers"].as_array_mut()?;
        for container in containers {
            if !container["env"].is_array() {
                container["env"] = json!([]);
            }
            if let Some(env) = container["env"].as_array_mut() {
                env.push(json!({"name": "JOB_COMPLETION_INDEX", "value": i.to_string()}));
            }
        }
    }
    Some(pod)
}

impl Controller for Jobs {
    type State = State;
    type Action = Action;

    fn name(&self) -> &'static str {
        "job"
    }

    fn keys_for(&self, change: &Change) -> Vec<ObjectKey> {
        match change.key.resource.as_str() {
            "jobs" => vec![change.key.clone()],
            "pods" => [change.old.as_deref(), change.new.as_deref()]
                .into_iter()
                .flatten()
                .filter_map(|pod| owners::controller_key(pod, "Job", "jobs"))
                .collect(),
            _ => Vec::new(),
        }
    }

    fn all_keys(&self, cache: &Cache) -> Vec<ObjectKey> {
        cache.keys("jobs")
    }

    fn observe(&self, key: &ObjectKey, cache: &Cache) -> State {
        let job = cache.get(key);
        State {
            pods: cache.owned(job.as_deref(), "Pod"),
            job,
            now: jiff::Timestamp::now(),
        }
    }

    fn plan(&self, state: &State) -> Vec<Action> {
        plan(state)
    }

    fn execute(&self, action: &Action, store: &Store) -> Result<(), StoreError> {
        match action {
            Action::Create(pod) => writes::create_pod(store, pod, COMPONENT),
            Action::Delete(key) => writes::delete_pod(store, key, COMPONENT),
            Action::Expire(key) => writes::delete(store, key),
            Action::Status(key, status) => write_status(store, key, status),
        }
    }
}

/// Writes the status; a Job that just finished records why (`Completed`, or its failure
/// reason as a warning).
fn write_status(store: &Store, key: &ObjectKey, status: &Value) -> Result<(), StoreError> {
    let mut finished = None;
    writes::edit(store, key, |job| {
        if finished_at(job).is_none() {
            finished = Some(job.clone());
        }
        job["status"] = status.clone();
    })?;
    let ending = status["conditions"][0].clone();
    if let Some(mut job) = finished.filter(|_| ending["status"] == "True") {
        job["status"] = status.clone();
        let involved = Involved::of(&job);
        match ending["type"].as_str() {
            Some("Complete") => events::record(
                store,
                &involved,
                Type::Normal,
                "Completed",
                "Job completed",
                COMPONENT,
            ),
            _ => {
                let reason = ending["reason"].as_str().unwrap_or("Failed");
                let message = ending["message"].as_str().unwrap_or("");
                events::record(store, &involved, Type::Warning, reason, message, COMPONENT);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
