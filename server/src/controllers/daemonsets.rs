//! The DaemonSet controller: one pod of a DaemonSet's template on every node that should
//! run it (kube-controller-manager's `daemonset` controller), on the shared [`runner`].
//!
//! A node should run the pod when its labels match the template's `nodeSelector` and none
//! of its `NoSchedule`/`NoExecute` taints keeps the pod off, counting the tolerations every
//! daemon pod gets (not-ready, unreachable, unschedulable: a cordoned node keeps its
//! daemons). Pods are bound to their node directly. One reconcile:
//! - a node that should run the pod and has none gets one; extra or failed pods go; pods on
//!   nodes that should not run it (or are gone) go;
//! - `RollingUpdate`: pods of an old template (`controller-revision-hash`) are deleted while
//!   no more than `maxUnavailable` nodes lack an available current pod (unavailable old
//!   pods first, at once); their nodes get a new pod on the next pass. `OnDelete`: only a
//!   deleted pod is replaced by the new template;
//! - the status counts what `kubectl get ds` and `kubectl rollout status ds` read; with
//!   ready pods not yet available (`minReadySeconds`) it is planned again when the first
//!   becomes so ([`due_in`]).
//!
//! [`runner`]: super::runner

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Taint, Toleration};
use serde_json::{Value, json};

use super::runner::Controller;
use super::writes;
use crate::informer::{Cache, Change, key_of};
use crate::k8s::intstr::IntOrPercent;
use crate::k8s::{names, owners, pods};
use crate::scheduler::fit;
use crate::store::{ObjectKey, Store, StoreError};

/// The `source.component` of its events.
const COMPONENT: &str = "daemonset-controller";

/// The label telling a DaemonSet's pods of one template apart.
pub const HASH_LABEL: &str = "controller-revision-hash";

/// The DaemonSet controller. It holds the cache to queue every DaemonSet when a node
/// changes.
pub struct DaemonSets {
    cache: Cache,
}

impl DaemonSets {
    /// A controller reading `cache`.
    pub fn new(cache: Cache) -> Self {
        Self { cache }
    }
}

/// One DaemonSet, the nodes and its pods.
#[derive(Debug, Clone)]
pub struct State {
    /// The DaemonSet (`None`: deleted).
    pub daemon_set: Option<Arc<Value>>,
    /// Every node.
    pub nodes: Vec<Arc<Value>>,
    /// The pods it controls.
    pub pods: Vec<Arc<Value>>,
    /// The time availability is judged at.
    pub now: jiff::Timestamp,
}

/// What a reconcile does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create this pod (bound to its node, named from its `generateName`).
    Create(Value),
    /// Delete this pod.
    Delete(ObjectKey),
    /// Write this status on the DaemonSet.
    Status(ObjectKey, Value),
}

/// The tolerations every daemon pod has, as Kubernetes adds them.
fn daemon_tolerations() -> Vec<Toleration> {
    [
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ]
    .into_iter()
    .map(|(key, effect)| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Toleration::default()
    })
    .collect()
}

/// Whether `node` should run the template's pod (see the module docs).
pub fn should_run(template: &Value, node: &Value) -> bool {
    let labels = &node["metadata"]["labels"];
    let selected = template["spec"]["nodeSelector"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value));
    let taints: Vec<Taint> =
        serde_json::from_value(node["spec"]["taints"].clone()).unwrap_or_default();
    let tolerations = daemon_tolerations();
    selected
        && !taints
            .iter()
            .any(|taint| fit::keeps_off(taint, &tolerations))
}

/// Pure: how soon one of its ready pods becomes available (`minReadySeconds`), which
/// changes the status with no event to wake the controller.
pub fn due_in(state: &State) -> Option<Duration> {
    let min_ready = state.daemon_set.as_deref()?["spec"]["minReadySeconds"]
        .as_i64()
        .unwrap_or(0);
    state
        .pods
        .iter()
        .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|pod| pods::available_in(pod, min_ready, state.now))
        .min()
}

/// Pure: what to do about one DaemonSet (see the module docs).
pub fn plan(state: &State) -> Vec<Action> {
    let Some(ds) = state.daemon_set.as_deref() else {
        return Vec::new();
    };
    let Some(key) = key_of("daemonsets", ds) else {
        return Vec::new();
    };
    if !ds["metadata"]["deletionTimestamp"].is_null() {
        return Vec::new();
    }
    let template = &ds["spec"]["template"];
    let hash = names::template_hash(template);
    let min_ready = ds["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
    let mut by_node: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    let mut actions = Vec::new();
    for pod in state.pods.iter().map(Arc::as_ref) {
        let failed = pod["status"]["phase"] == "Failed";
        match pods::bound_node(pod) {
            Some(node) if !failed && pod["metadata"]["deletionTimestamp"].is_null() => {
                by_node.entry(node).or_default().push(pod);
            }
            Some(_) | None => actions.extend(key_of("pods", pod).map(Action::Delete)),
        }
    }
    let mut counts = Counts::default();
    let mut old: Vec<(&Value, bool)> = Vec::new();
    let wanted: Vec<&str> = state
        .nodes
        .iter()
        .filter(|node| should_run(template, node))
        .filter_map(|node| node["metadata"]["name"].as_str())
        .collect();
    for node in &wanted {
        let mut here = by_node.remove(node).unwrap_or_default();
        // The one to keep: a current one first, then a ready one.
        here.sort_by_key(|pod| (current(pod, &hash), pods::is_ready(pod)));
        let Some(kept) = here.pop() else {
            actions.extend(pod_for(ds, node, &hash).map(Action::Create));
            counts.unavailable += 1;
            continue;
        };
        actions.extend(
            here.iter()
                .filter_map(|p| key_of("pods", p))
                .map(Action::Delete),
        );
        let available = pods::ready_for(kept, min_ready, state.now);
        counts.add(kept, current(kept, &hash), available);
        if !current(kept, &hash) {
            old.push((kept, available));
        }
    }
    counts.misscheduled = by_node.len();
    for pod in by_node.into_values().flatten() {
        actions.extend(key_of("pods", pod).map(Action::Delete));
    }
    actions.extend(roll(ds, &old, counts.unavailable, wanted.len()));
    let status = counts.status(ds, wanted.len());
    if ds.get("status") != Some(&status) {
        actions.push(Action::Status(key, status));
    }
    actions
}

fn current(pod: &Value, hash: &str) -> bool {
    pod["metadata"]["labels"][HASH_LABEL].as_str() == Some(hash)
}

/// Old pods to delete now: unavailable ones at once, available ones within the budget.
fn roll(ds: &Value, old: &[(&Value, bool)], unavailable: usize, desired: usize) -> Vec<Action> {
    let strategy = &ds["spec"]["updateStrategy"];
    if strategy["type"] == "OnDelete" {
        return Vec::new();
    }
    let total = u32::try_from(desired).unwrap_or(u32::MAX);
    let max_unavailable = IntOrPercent::parse(&strategy["rollingUpdate"]["maxUnavailable"])
        .map_or(1, |amount| amount.scaled(total, true).max(1));
    let mut budget = usize::try_from(max_unavailable)
        .unwrap_or(usize::MAX)
        .saturating_sub(unavailable);
    let mut actions = Vec::new();
    for (pod, available) in old
        .iter()
        .filter(|(_, a)| !a)
        .chain(old.iter().filter(|(_, a)| *a))
    {
        if *available {
            if budget == 0 {
                break;
            }
            budget -= 1;
        }
        actions.extend(key_of("pods", pod).map(Action::Delete));
    }
    actions
}

/// The status counts.
#[derive(Default)]
struct Counts {
    scheduled: usize,
    ready: usize,
    updated: usize,
    available: usize,
    unavailable: usize,
    misscheduled: usize,
}

impl Counts {
    fn add(&mut self, pod: &Value, current: bool, available: bool) {
        self.scheduled += 1;
        self.ready += usize::from(pods::is_ready(pod));
        self.updated += usize::from(current);
        self.available += usize::from(available);
        self.unavailable += usize::from(!available);
    }

    fn status(&self, ds: &Value, desired: usize) -> Value {
        let mut status = json!({
            "desiredNumberScheduled": desired,
            "currentNumberScheduled": self.scheduled,
            "numberMisscheduled": self.misscheduled,
            "numberReady": self.ready,
            "updatedNumberScheduled": self.updated,
            "numberAvailable": self.available,
            "numberUnavailable": self.unavailable,
        });
        if let Some(generation) = ds.pointer("/metadata/generation") {
            status["observedGeneration"] = generation.clone();
        }
        status
    }
}

/// The DaemonSet's pod for `node`, bound to it.
fn pod_for(ds: &Value, node: &str, hash: &str) -> Option<Value> {
    let prefix = format!("{}-", ds["metadata"]["name"].as_str()?);
    let mut pod = pods::from_template(ds, &ds["spec"]["template"], &prefix)?;
    pod["metadata"]["labels"][HASH_LABEL] = hash.into();
    pod["spec"]["nodeName"] = node.into();
    // A daemon stays on its node however long it is unreachable (no tolerationSeconds).
    let mut tolerations: Vec<Value> = pod["spec"]["tolerations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["effect"] != "NoExecute" || t["tolerationSeconds"].is_null())
        .cloned()
        .collect();
    for toleration in daemon_tolerations() {
        tolerations.push(serde_json::to_value(toleration).ok()?);
    }
    pod["spec"]["tolerations"] = tolerations.into();
    Some(pod)
}

impl Controller for DaemonSets {
    type State = State;
    type Action = Action;

    fn name(&self) -> &'static str {
        "daemonset"
    }

    /// The DaemonSet itself, the owner of a changed pod; a node change concerns them all
    /// (that is how nodes that join later get their pods).
    fn keys_for(&self, change: &Change) -> Vec<ObjectKey> {
        match change.key.resource.as_str() {
            "daemonsets" => vec![change.key.clone()],
            "pods" => [change.old.as_deref(), change.new.as_deref()]
                .into_iter()
                .flatten()
                .filter_map(|pod| owners::controller_key(pod, "DaemonSet", "daemonsets"))
                .collect(),
            "nodes" if node_placement_changed(change) => self.all_keys(&self.cache),
            _ => Vec::new(),
        }
    }

    fn all_keys(&self, cache: &Cache) -> Vec<ObjectKey> {
        cache.keys("daemonsets")
    }

    fn observe(&self, key: &ObjectKey, cache: &Cache) -> State {
        let daemon_set = cache.get(key);
        State {
            nodes: cache.list("nodes"),
            pods: cache.owned(daemon_set.as_deref(), "Pod"),
            daemon_set,
            now: jiff::Timestamp::now(),
        }
    }

    fn due_in(&self, state: &State) -> Option<Duration> {
        due_in(state)
    }

    fn plan(&self, state: &State) -> Vec<Action> {
        plan(state)
    }

    fn execute(&self, action: &Action, store: &Store) -> Result<(), StoreError> {
        match action {
            Action::Create(pod) => writes::create_pod(store, pod, COMPONENT),
            Action::Delete(key) => writes::delete_pod(store, key, COMPONENT),
            Action::Status(key, status) => writes::edit(store, key, |ds| {
                ds["status"] = status.clone();
            }),
        }
    }
}

/// Whether a node change can change where daemon pods go (its labels or taints, or the
/// node coming or going), not a status heartbeat.
fn node_placement_changed(change: &Change) -> bool {
    let placement = |node: Option<&Value>| {
        node.map(|n| (n["metadata"]["labels"].clone(), n["spec"]["taints"].clone()))
    };
    placement(change.old.as_deref()) != placement(change.new.as_deref())
}

#[cfg(test)]
mod tests;
