//! The ReplicaSet controller: keeps `spec.replicas` active pods of a ReplicaSet's template
//! (kube-controller-manager's `replicaset` controller), on the shared [`runner`].
//!
//! One reconcile of a ReplicaSet, from the cache:
//! - pods it controls whose labels no longer match its selector are released (its owner
//!   reference removed); orphans in its namespace that match are adopted;
//! - active pods (not `Succeeded`/`Failed`, not being deleted) are counted against
//!   `spec.replicas`: missing ones are created from the template (at most [`BURST`] per
//!   reconcile), surplus ones deleted, least valuable first (unbound before bound, pending
//!   before running, not ready before ready, newest first), as Kubernetes ranks them;
//! - the status (`replicas`, `fullyLabeledReplicas`, `readyReplicas`, `availableReplicas`
//!   after `minReadySeconds`, `observedGeneration`) is written when it changed; a ReplicaSet
//!   with ready pods not yet available is re-planned when the first becomes so ([`due_in`]).
//!
//! A ReplicaSet being deleted is left alone (its pods are the garbage collector's).
//!
//! [`runner`]: super::runner

use std::cmp::Reverse;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::runner::Controller;
use super::writes;
use crate::informer::{Cache, Change, key_of};
use crate::k8s::selectors::Selector;
use crate::k8s::{owners, pods};
use crate::store::{ObjectKey, Store, StoreError};

/// The `source.component` of its events.
const COMPONENT: &str = "replicaset-controller";

/// The most pods created or deleted in one reconcile.
pub const BURST: usize = 500;

/// The ReplicaSet controller.
#[derive(Debug, Default)]
pub struct ReplicaSets;

/// One ReplicaSet and the pods that concern it.
#[derive(Debug, Clone)]
pub struct State {
    /// The ReplicaSet (`None`: deleted).
    pub replica_set: Option<Arc<Value>>,
    /// Pods it controls.
    pub owned: Vec<Arc<Value>>,
    /// Pods in its namespace without a controller.
    pub orphans: Vec<Arc<Value>>,
    /// The time availability is judged at.
    pub now: jiff::Timestamp,
}

/// What a reconcile does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create this pod (named from its `generateName`).
    Create(Value),
    /// Delete this pod.
    Delete(ObjectKey),
    /// Add this controller reference to a pod that still has no controller.
    Adopt(ObjectKey, Value),
    /// Remove the owner reference with this uid from a pod.
    Release(ObjectKey, String),
    /// Write this status on the ReplicaSet.
    Status(ObjectKey, Value),
}

/// Pure: what to do about one ReplicaSet (see the module docs).
pub fn plan(state: &State) -> Vec<Action> {
    let Some(rs) = state.replica_set.as_deref() else {
        return Vec::new();
    };
    if rs.pointer("/metadata/deletionTimestamp").is_some() {
        return Vec::new();
    }
    let (Some(key), Ok(selector)) = (key_of("replicasets", rs), selector_of(rs)) else {
        return Vec::new();
    };
    let uid = rs["metadata"]["uid"].as_str().unwrap_or_default();
    let matches = |pod: &Value| selector.matches_labels(pod.pointer("/metadata/labels"));
    let mut actions = Vec::new();
    let mut mine: Vec<&Value> = Vec::new();
    for pod in state.owned.iter().map(Arc::as_ref) {
        match (matches(pod), key_of("pods", pod)) {
            (true, _) => mine.push(pod),
            (false, Some(pod_key)) => actions.push(Action::Release(pod_key, uid.to_owned())),
            (false, None) => {}
        }
    }
    if let Some(reference) = owners::controller_reference(rs) {
        for pod in state.orphans.iter().map(Arc::as_ref).filter(|p| matches(p)) {
            if let Some(pod_key) = key_of("pods", pod) {
                actions.push(Action::Adopt(pod_key, reference.clone()));
                mine.push(pod);
            }
        }
    }
    let mut active: Vec<&Value> = mine.into_iter().filter(|p| is_active(p)).collect();
    let wanted = usize::try_from(rs["spec"]["replicas"].as_i64().unwrap_or(1)).unwrap_or(0);
    if active.len() < wanted {
        let missing = (wanted - active.len()).min(BURST);
        if let Some(pod) = pod_from_template(rs) {
            actions.extend(std::iter::repeat_n(Action::Create(pod), missing));
        }
    } else if active.len() > wanted {
        active.sort_by_key(|pod| deletion_rank(pod));
        let surplus = (active.len() - wanted).min(BURST);
        actions.extend(
            active
                .drain(..surplus)
                .filter_map(|pod| key_of("pods", pod))
                .map(Action::Delete),
        );
    }
    let status = status_of(rs, &active, state.now);
    if rs.get("status") != Some(&status) {
        actions.push(Action::Status(key, status));
    }
    actions
}

/// Pure: how soon one of its ready pods becomes available (`minReadySeconds`), which
/// changes the status with no event to wake the controller.
pub fn due_in(state: &State) -> Option<Duration> {
    let rs = state.replica_set.as_deref()?;
    let min_ready = rs["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
    state
        .owned
        .iter()
        .filter(|pod| is_active(pod))
        .filter_map(|pod| pods::available_in(pod, min_ready, state.now))
        .min()
}

fn selector_of(rs: &Value) -> Result<Selector, (String, String)> {
    let selector = Selector::from_label_selector(&rs["spec"]["selector"])?;
    match selector.is_empty() {
        true => Err(("selector".into(), "empty".into())),
        false => Ok(selector),
    }
}

/// Not finished and not being deleted: it counts towards the replicas.
fn is_active(pod: &Value) -> bool {
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    !matches!(phase, Some("Succeeded" | "Failed"))
        && pod.pointer("/metadata/deletionTimestamp").is_none()
}

/// Lower goes first when scaling down: unbound, then pending, then not ready, then the
/// most recently created.
fn deletion_rank(pod: &Value) -> (bool, u8, bool, Reverse<String>) {
    let phase = match pod.pointer("/status/phase").and_then(Value::as_str) {
        Some("Pending") => 0,
        Some("Running") => 2,
        _ => 1,
    };
    let created = pod["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (
        pods::bound_node(pod).is_some(),
        phase,
        pods::is_ready(pod),
        Reverse(created),
    )
}

/// A new pod of the template: `{rs}-` plus a random suffix.
fn pod_from_template(rs: &Value) -> Option<Value> {
    let prefix = format!("{}-", rs.pointer("/metadata/name")?.as_str()?);
    pods::from_template(rs, rs.pointer("/spec/template")?, &prefix)
}

/// The status the ReplicaSet should show for its active pods.
fn status_of(rs: &Value, active: &[&Value], now: jiff::Timestamp) -> Value {
    let template_labels = rs.pointer("/spec/template/metadata/labels");
    let fully_labeled = active
        .iter()
        .filter(|pod| labels_include(pod.pointer("/metadata/labels"), template_labels))
        .count();
    let ready: Vec<&&Value> = active.iter().filter(|p| pods::is_ready(p)).collect();
    let min_ready = rs["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
    let available = ready
        .iter()
        .filter(|pod| pods::ready_for(pod, min_ready, now))
        .count();
    let mut status = json!({
        "replicas": active.len(),
        "fullyLabeledReplicas": fully_labeled,
        "readyReplicas": ready.len(),
        "availableReplicas": available,
    });
    if let Some(generation) = rs.pointer("/metadata/generation") {
        status["observedGeneration"] = generation.clone();
    }
    status
}

fn labels_include(labels: Option<&Value>, wanted: Option<&Value>) -> bool {
    wanted
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

impl Controller for ReplicaSets {
    type State = State;
    type Action = Action;

    fn name(&self) -> &'static str {
        "replicaset"
    }

    fn keys_for(&self, change: &Change) -> Vec<ObjectKey> {
        match change.key.resource.as_str() {
            "replicasets" => vec![change.key.clone()],
            "pods" => [change.old.as_deref(), change.new.as_deref()]
                .into_iter()
                .flatten()
                .filter_map(|pod| owners::controller_key(pod, "ReplicaSet", "replicasets"))
                .collect(),
            _ => Vec::new(),
        }
    }

    fn all_keys(&self, cache: &Cache) -> Vec<ObjectKey> {
        cache.keys("replicasets")
    }

    fn observe(&self, key: &ObjectKey, cache: &Cache) -> State {
        let replica_set = cache.get(key);
        let namespace = key.namespace.as_deref().unwrap_or_default();
        State {
            owned: cache.owned(replica_set.as_deref(), "Pod"),
            orphans: cache.uncontrolled_pods(namespace),
            replica_set,
            now: jiff::Timestamp::now(),
        }
    }

    fn plan(&self, state: &State) -> Vec<Action> {
        plan(state)
    }

    fn due_in(&self, state: &State) -> Option<Duration> {
        due_in(state)
    }

    fn execute(&self, action: &Action, store: &Store) -> Result<(), StoreError> {
        execute(action, store)
    }
}

/// Applies one action; each re-checks inside its write what the plan assumed.
fn execute(action: &Action, store: &Store) -> Result<(), StoreError> {
    match action {
        Action::Create(pod) => writes::create_pod(store, pod, COMPONENT),
        Action::Delete(key) => writes::delete_pod(store, key, COMPONENT),
        Action::Adopt(key, reference) => writes::edit(store, key, |pod| {
            owners::adopt(pod, reference);
        }),
        Action::Release(key, uid) => writes::edit(store, key, |pod| owners::release(pod, uid)),
        Action::Status(key, status) => writes::edit(store, key, |rs| {
            rs["status"] = status.clone();
        }),
    }
}

#[cfg(test)]
mod tests;
