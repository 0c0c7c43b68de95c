//! The Deployment controller's pure plan: which ReplicaSets to create, scale, re-number or
//! delete, and the status to show, following kube-controller-manager's `deployment`
//! controller.
//!
//! - The *new* ReplicaSet is the one whose template equals the Deployment's (ignoring the
//!   `pod-template-hash` label); the others are *old*. A template with no ReplicaSet gets
//!   one named `{deployment}-{hash}`, with the hash as a label on it, its selector and its
//!   template, and the next revision (`deployment.kubernetes.io/revision`); a rollback
//!   re-activates an old one and gives it the next revision.
//! - `RollingUpdate`: first scale the new ReplicaSet up while all pods stay within
//!   `replicas + maxSurge`; if nothing could grow, scale old ones down (unhealthy pods
//!   first, then oldest ReplicaSets first) while at least `replicas - maxUnavailable` stay
//!   available. `Recreate`: old ones to zero, and the new one up once their pods are gone.
//! - `paused`: nothing is rolled; the status says so.
//! - Old ReplicaSets at zero beyond `revisionHistoryLimit` are deleted, oldest first.
//! - Status: replica counts summed over the ReplicaSets, and the conditions `kubectl rollout
//!   status` reads: `Available` and `Progressing` (with `ProgressDeadlineExceeded` after
//!   `progressDeadlineSeconds` without progress).

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::informer::key_of;
use crate::k8s::intstr::IntOrPercent;
use crate::k8s::selectors::Selector;
use crate::k8s::{conditions, names, owners};
use crate::store::ObjectKey;

/// The label that tells the ReplicaSets (and pods) of one template apart.
pub const HASH_LABEL: &str = "pod-template-hash";
/// The revision annotation, on ReplicaSets and on the Deployment.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// The annotation `kubectl rollout history` shows as CHANGE-CAUSE.
const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

/// One Deployment and its ReplicaSets.
#[derive(Debug, Clone)]
pub struct State {
    /// The Deployment (`None`: deleted).
    pub deployment: Option<Arc<Value>>,
    /// ReplicaSets it controls.
    pub owned: Vec<Arc<Value>>,
    /// ReplicaSets in its namespace without a controller.
    pub orphans: Vec<Arc<Value>>,
    /// The time conditions are stamped with.
    pub now: jiff::Timestamp,
}

/// What a reconcile does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create this ReplicaSet.
    Create(Value),
    /// Set a ReplicaSet's `spec.replicas`.
    Scale(ObjectKey, i64),
    /// Give a ReplicaSet a revision (a rollback re-activating it).
    Renumber(ObjectKey, u64),
    /// Add this controller reference to a ReplicaSet that still has no controller.
    Adopt(ObjectKey, Value),
    /// Delete an old ReplicaSet (history beyond the limit).
    Delete(ObjectKey),
    /// Write the Deployment's revision annotation and status.
    Status(ObjectKey, Option<u64>, Value),
}

/// A ReplicaSet as the plan sees it.
struct Set<'a> {
    obj: &'a Value,
    key: ObjectKey,
    replicas: i64,
    revision: u64,
}

impl<'a> Set<'a> {
    fn of(obj: &'a Value) -> Option<Self> {
        Some(Self {
            key: key_of("replicasets", obj)?,
            replicas: obj["spec"]["replicas"].as_i64().unwrap_or(0),
            revision: revision_of(obj),
            obj,
        })
    }

    fn status(&self, field: &str) -> i64 {
        self.obj["status"][field].as_i64().unwrap_or(0)
    }
}

/// A ReplicaSet's revision (0 when it has none).
pub fn revision_of(obj: &Value) -> u64 {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(REVISION))
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// Pure: what to do about one Deployment (see the module docs).
pub fn plan(state: &State) -> Vec<Action> {
    let Some(deployment) = state.deployment.as_deref() else {
        return Vec::new();
    };
    if deployment.pointer("/metadata/deletionTimestamp").is_some() {
        return Vec::new();
    }
    let (Some(key), Ok(selector)) = (
        key_of("deployments", deployment),
        Selector::from_label_selector(&deployment["spec"]["selector"]),
    ) else {
        return Vec::new();
    };
    let mut actions = Vec::new();
    let mut sets: Vec<Set> = Vec::new();
    for rs in state.owned.iter().map(Arc::as_ref) {
        sets.extend(Set::of(rs));
    }
    if let Some(reference) = owners::controller_reference(deployment) {
        let matching = state.orphans.iter().map(Arc::as_ref).filter(|rs| {
            selector.matches_labels(rs.pointer("/metadata/labels")) && !selector.is_empty()
        });
        for rs in matching.filter_map(Set::of) {
            actions.push(Action::Adopt(rs.key.clone(), reference.clone()));
            sets.push(rs);
        }
    }
    let template = &deployment["spec"]["template"];
    let (new, mut old): (Vec<Set>, Vec<Set>) = sets
        .into_iter()
        .partition(|rs| template_without_hash(&rs.obj["spec"]["template"]) == *template);
    old.sort_by_key(|rs| (rs.revision, rs.key.name.clone()));
    let max_old = old.iter().map(|rs| rs.revision).max().unwrap_or(0);
    let new = new.into_iter().next();
    let rollout = Rollout::of(deployment);
    let paused = deployment["spec"]["paused"].as_bool() == Some(true);
    let revision = match &new {
        Some(rs) if rs.revision > max_old => rs.revision,
        Some(rs) => {
            actions.push(Action::Renumber(rs.key.clone(), max_old + 1));
            max_old + 1
        }
        None => max_old + 1,
    };
    let progressed = match (&new, paused) {
        (_, true) => false,
        (None, false) => {
            let replicas = rollout.first_replicas(&old);
            actions.extend(new_replica_set(deployment, revision, replicas).map(Action::Create));
            true
        }
        (Some(new), false) => {
            let before = actions.len();
            actions.extend(rollout.scale(new, &old));
            actions.len() > before
        }
    };
    actions.extend(history_cleanup(deployment, &old));
    let status = status(
        deployment,
        new.as_ref(),
        &old,
        progressed,
        paused,
        state.now,
    );
    let annotated = deployment
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(REVISION))
        .and_then(Value::as_str)
        == Some(revision.to_string().as_str());
    if !annotated || deployment.get("status") != Some(&status) {
        actions.push(Action::Status(
            key,
            (!annotated).then_some(revision),
            status,
        ));
    }
    actions
}

/// A template with the `pod-template-hash` label removed (and an emptied label map kept).
fn template_without_hash(template: &Value) -> Value {
    let mut template = template.clone();
    if let Some(labels) = template
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(HASH_LABEL);
    }
    template
}

/// The ReplicaSet of the Deployment's current template.
fn new_replica_set(deployment: &Value, revision: u64, replicas: i64) -> Option<Value> {
    let template = &deployment["spec"]["template"];
    let hash = names::template_hash(template);
    let mut template = template.clone();
    add_label(&mut template, &hash);
    let mut selector = deployment["spec"]["selector"].clone();
    selector["matchLabels"][HASH_LABEL] = hash.clone().into();
    let name = format!("{}-{hash}", deployment.pointer("/metadata/name")?.as_str()?);
    let mut annotations = Map::new();
    annotations.insert(REVISION.into(), revision.to_string().into());
    if let Some(cause) = deployment
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(CHANGE_CAUSE))
    {
        annotations.insert(CHANGE_CAUSE.into(), cause.clone());
    }
    Some(json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            "namespace": deployment["metadata"]["namespace"],
            "labels": template["metadata"]["labels"],
            "annotations": annotations,
            "ownerReferences": [owners::controller_reference(deployment)?],
        },
        "spec": {
            "replicas": replicas,
            "minReadySeconds": deployment["spec"]["minReadySeconds"].as_i64().unwrap_or(0),
            "selector": selector,
            "template": template,
        },
        "status": {"replicas": 0},
    }))
}

fn add_label(template: &mut Value, hash: &str) {
    if !template["metadata"].is_object() {
        template["metadata"] = json!({});
    }
    if !template["metadata"]["labels"].is_object() {
        template["metadata"]["labels"] = json!({});
    }
    template["metadata"]["labels"][HASH_LABEL] = hash.into();
}

/// The strategy with its amounts resolved against `spec.replicas`.
struct Rollout {
    replicas: i64,
    recreate: bool,
    surge: i64,
    unavailable: i64,
}

impl Rollout {
    fn of(deployment: &Value) -> Self {
        let replicas = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
        let strategy = &deployment["spec"]["strategy"];
        let total = u32::try_from(replicas).unwrap_or(0);
        let amount = |name: &str, round_up: bool| {
            IntOrPercent::parse(&strategy["rollingUpdate"][name])
                .map_or(0, |a| i64::from(a.scaled(total, round_up)))
        };
        let surge = amount("maxSurge", true);
        let mut unavailable = amount("maxUnavailable", false).min(replicas);
        if surge == 0 && unavailable == 0 {
            unavailable = 1;
        }
        Self {
            replicas,
            recreate: strategy["type"] == "Recreate",
            surge,
            unavailable,
        }
    }

    /// The replicas a brand-new ReplicaSet starts with.
    fn first_replicas(&self, old: &[Set]) -> i64 {
        let current: i64 = old.iter().map(|rs| rs.replicas).sum();
        if self.recreate {
            let old_pods: i64 = old.iter().map(|rs| rs.status("replicas")).sum();
            return if current == 0 && old_pods == 0 {
                self.replicas
            } else {
                0
            };
        }
        (self.replicas + self.surge - current).clamp(0, self.replicas)
    }

    /// One step of the rollout from where the ReplicaSets stand.
    fn scale(&self, new: &Set, old: &[Set]) -> Vec<Action> {
        if self.recreate {
            return self.recreate_step(new, old);
        }
        if new.replicas > self.replicas {
            return vec![Action::Scale(new.key.clone(), self.replicas)];
        }
        let all: i64 = old.iter().map(|rs| rs.replicas).sum::<i64>() + new.replicas;
        if new.replicas < self.replicas && all < self.replicas + self.surge {
            let grown = (new.replicas + self.replicas + self.surge - all).min(self.replicas);
            return vec![Action::Scale(new.key.clone(), grown)];
        }
        self.scale_down_old(new, old, all)
    }

    fn recreate_step(&self, new: &Set, old: &[Set]) -> Vec<Action> {
        let shrink: Vec<Action> = old
            .iter()
            .filter(|rs| rs.replicas > 0)
            .map(|rs| Action::Scale(rs.key.clone(), 0))
            .collect();
        let old_pods: i64 = old.iter().map(|rs| rs.status("replicas")).sum();
        match (
            shrink.is_empty(),
            old_pods == 0 && new.replicas != self.replicas,
        ) {
            (false, _) => shrink,
            (true, true) => vec![Action::Scale(new.key.clone(), self.replicas)],
            (true, false) => Vec::new(),
        }
    }

    /// Old ReplicaSets shrink while `replicas - maxUnavailable` stay available: unhealthy
    /// pods first, then the oldest ReplicaSets.
    fn scale_down_old(&self, new: &Set, old: &[Set], all: i64) -> Vec<Action> {
        let min_available = self.replicas - self.unavailable;
        let new_unavailable = new.replicas - new.status("availableReplicas");
        let mut budget = all - min_available - new_unavailable;
        let mut targets: Vec<i64> = old.iter().map(|rs| rs.replicas).collect();
        for (rs, target) in old.iter().zip(targets.iter_mut()) {
            let unhealthy = (rs.replicas - rs.status("availableReplicas")).max(0);
            let cut = budget.min(unhealthy).min(*target).max(0);
            *target -= cut;
            budget -= cut;
        }
        let available: i64 = old
            .iter()
            .map(|rs| rs.status("availableReplicas"))
            .sum::<i64>()
            + new.status("availableReplicas");
        let mut spare = available - min_available;
        for (rs, target) in old.iter().zip(targets.iter_mut()) {
            let cut = spare
                .min(*target)
                .min(rs.status("availableReplicas"))
                .max(0);
            *target -= cut;
            spare -= cut;
        }
        old.iter()
            .zip(targets)
            .filter(|(rs, target)| *target != rs.replicas)
            .map(|(rs, target)| Action::Scale(rs.key.clone(), target))
            .collect()
    }
}

/// Old ReplicaSets at zero beyond `revisionHistoryLimit`, oldest first.
fn history_cleanup(deployment: &Value, old: &[Set]) -> Vec<Action> {
    let limit = usize::try_from(
        deployment["spec"]["revisionHistoryLimit"]
            .as_i64()
            .unwrap_or(10),
    )
    .unwrap_or(0);
    let idle: Vec<&Set> = old
        .iter()
        .filter(|rs| rs.replicas == 0 && rs.status("replicas") == 0)
        .collect();
    let excess = idle.len().saturating_sub(limit);
    idle.into_iter()
        .take(excess)
        .map(|rs| Action::Delete(rs.key.clone()))
        .collect()
}

/// The status a Deployment shows for its ReplicaSets.
fn status(
    deployment: &Value,
    new: Option<&Set>,
    old: &[Set],
    progressed: bool,
    paused: bool,
    now: jiff::Timestamp,
) -> Value {
    let sum = |field: &str| -> i64 {
        old.iter().map(|rs| rs.status(field)).sum::<i64>() + new.map_or(0, |rs| rs.status(field))
    };
    let rollout = Rollout::of(deployment);
    let (replicas, available) = (sum("replicas"), sum("availableReplicas"));
    let updated = new.map_or(0, |rs| rs.status("replicas"));
    let previous = &deployment["status"];
    let mut status = json!({
        "replicas": replicas,
        "updatedReplicas": updated,
        "readyReplicas": sum("readyReplicas"),
        "availableReplicas": available,
        "unavailableReplicas": (rollout.replicas - available).max(0),
    });
    if let Some(generation) = deployment.pointer("/metadata/generation") {
        status["observedGeneration"] = generation.clone();
    }
    let grew = ["updatedReplicas", "readyReplicas", "availableReplicas"]
        .iter()
        .any(|f| status[f].as_i64() > previous[f].as_i64());
    let complete = updated == rollout.replicas
        && replicas == rollout.replicas
        && available == rollout.replicas;
    let name = new.map_or_else(String::new, |rs| rs.key.name.clone());
    let available_condition = if available >= rollout.replicas - rollout.unavailable {
        (
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".to_owned(),
        )
    } else {
        (
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".to_owned(),
        )
    };
    let progress = progressed || grew;
    let progressing = progressing(deployment, &name, paused, complete, progress, now);
    let conditions = vec![
        condition(previous, "Available", available_condition, false, now),
        condition(previous, "Progressing", progressing, progress, now),
    ];
    status["conditions"] = conditions.into();
    status
}

/// The `Progressing` condition's status, reason and message.
fn progressing(
    deployment: &Value,
    name: &str,
    paused: bool,
    complete: bool,
    progressed: bool,
    now: jiff::Timestamp,
) -> (&'static str, &'static str, String) {
    if paused {
        return ("Unknown", "DeploymentPaused", "Deployment is paused".into());
    }
    if complete {
        return (
            "True",
            "NewReplicaSetAvailable",
            format!("ReplicaSet {name:?} has successfully progressed."),
        );
    }
    let previous = conditions::in_status(&deployment["status"], "Progressing");
    let last_update = previous
        .and_then(|c| c["lastUpdateTime"].as_str())
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    let deadline = deployment["spec"]["progressDeadlineSeconds"]
        .as_i64()
        .unwrap_or(600);
    let timed_out = previous.is_some_and(|c| c["reason"] == "ProgressDeadlineExceeded")
        || last_update.is_some_and(|t| now.as_second() - t.as_second() > deadline);
    if !progressed && timed_out {
        return (
            "False",
            "ProgressDeadlineExceeded",
            format!("ReplicaSet {name:?} has timed out progressing."),
        );
    }
    (
        "True",
        "ReplicaSetUpdated",
        format!("ReplicaSet {name:?} is progressing."),
    )
}

/// A condition, keeping its previous times unless it changed (transition) or `refresh`
/// (progress was made: a new update time).
fn condition(
    previous: &Value,
    kind: &str,
    (status, reason, message): (&str, &str, String),
    refresh: bool,
    now: jiff::Timestamp,
) -> Value {
    let now = crate::k8s::time::rfc3339(now);
    let before = conditions::in_status(previous, kind)
        .filter(|c| c["status"] == status && c["reason"] == reason);
    let kept = |field: &str, keep: bool| match before {
        Some(c) if keep => c[field].clone(),
        _ => Value::from(now.clone()),
    };
    json!({
        "type": kind, "status": status, "reason": reason, "message": message,
        "lastUpdateTime": kept("lastUpdateTime", !refresh),
        "lastTransitionTime": kept("lastTransitionTime", true),
    })
}

#[cfg(test)]
mod tests;
