//! The node lifecycle controller: node readiness, taints and pod readiness from agent
//! liveness.
//!
//! The fleet link records every agent's session in [`Leases`] (see [`super::leases`]; the
//! store keeps a `Lease` object per node too). This controller compares them with the Node
//! and Pod objects and plans:
//!
//! - `Ready=Unknown` (reason `NodeStatusUnknown`) when no heartbeat of the current session
//!   arrived within the grace period or its will said the agent disconnected, plus the
//!   `node.kubernetes.io/unreachable` taints (`NoSchedule` and `NoExecute`, with
//!   `timeAdded`), and `Ready=False` / `ContainersReady=False` (reason `NodeNotReady`) with
//!   every container not ready on each pod bound to the node, like Kubernetes'
//!   `MarkPodsNotReady`;
//! - `Ready=True` (reason `AgentReady`) and no unreachable taints when heartbeats resume,
//!   and the pods' status from the agent's last report of the session again (a new session
//!   reports afresh by itself).
//!
//! It runs on the [`super::runner`] with one key per Node, reading the informer's cache;
//! every node is re-planned every quarter grace period.
//!
//! Right after a server start no session is known yet; nodes then get one grace period,
//! counted from the controller's start, to show up before they are marked unknown (the
//! message then says when the stored lease was last renewed).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::leases::{self, Lease, Leases};
use super::runner::{self, Controller, RunnerConfig};
use crate::fleet::status;
use crate::informer::{Cache, Change, key_of};
use crate::k8s::conditions::{Condition, condition_status, set_condition};
use crate::k8s::pods::looks_ready;
use crate::k8s::time::now_rfc3339;
use crate::modules::ModuleStore;
use crate::store::{ObjectKey, Store, StoreError};

/// How long a node may go without a heartbeat before it is `Ready=Unknown` (Kubernetes'
/// default node monitor grace period).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(40);

/// The reason of a healthy node's `Ready` condition.
pub const READY_REASON: &str = "AgentReady";
/// The message of a healthy node's `Ready` condition.
pub const READY_MESSAGE: &str = "wasmfleet agent is posting ready status";
/// The reason of an unreachable node's `Ready` condition.
pub const UNKNOWN_REASON: &str = "NodeStatusUnknown";
/// The message when the agent's last will arrived.
pub const DISCONNECTED_MESSAGE: &str = "wasmfleet agent disconnected";
/// The taint of an unreachable node (Kubernetes' `TaintNodeUnreachable`).
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
/// The effects the unreachable taint is applied with.
pub const UNREACHABLE_EFFECTS: [&str; 2] = ["NoSchedule", "NoExecute"];
/// The reason of a pod's `Ready=False` while its node is unreachable.
pub const POD_NODE_NOT_READY: &str = "NodeNotReady";

/// A node as the controller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedNode {
    /// The node's name.
    pub name: String,
    /// The `status` of its `Ready` condition, if any.
    pub ready: Option<String>,
    /// Whether it carries every unreachable taint.
    pub tainted: bool,
    /// Whether it carries any unreachable taint.
    pub any_taint: bool,
    /// `spec.renewTime` of its stored lease (from before a server restart, say).
    pub stored_renew: Option<String>,
}

/// A pod bound to a node, as the controller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedPod {
    /// Its store key.
    pub key: ObjectKey,
    /// `spec.nodeName`.
    pub node: String,
    /// Whether anything still says ready (the `Ready` condition or a container).
    pub looks_ready: bool,
}

/// A change the controller makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Set `Ready=True`.
    MarkReady(String),
    /// Set `Ready=Unknown` with this message.
    MarkUnknown {
        /// The node.
        node: String,
        /// Why.
        message: String,
    },
    /// Add the unreachable taints.
    Taint(String),
    /// Remove the unreachable taints.
    Untaint(String),
    /// Mark a pod of an unreachable node not ready.
    MarkPodNotReady {
        /// The pod.
        pod: ObjectKey,
        /// Its node.
        node: String,
    },
    /// Write the node's last report of the current session again (its pods were marked
    /// not ready while heartbeats were missing).
    RestorePods(String),
}

/// Whether a node is live, unreachable (and why), or not yet decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    /// The current session is heartbeating.
    Live,
    /// Unreachable, with the message for its `Ready` condition.
    Unreachable(String),
    /// No session known yet, within the grace period after the server started.
    Undecided,
}

/// The liveness of one node. `started` is when the controller started: a node without a
/// lease is given the grace period from then.
pub fn liveness(
    node: &ObservedNode,
    lease: Option<&Lease>,
    now: Instant,
    started: Instant,
    grace: Duration,
) -> Liveness {
    match lease {
        Some(lease) if !lease.online => Liveness::Unreachable(DISCONNECTED_MESSAGE.to_owned()),
        Some(lease) if now.saturating_duration_since(lease.renewed) > grace => {
            Liveness::Unreachable(format!(
                "wasmfleet agent stopped posting node status (no heartbeat for more than {}s)",
                grace.as_secs()
            ))
        }
        Some(_) => Liveness::Live,
        None if now.saturating_duration_since(started) > grace => {
            let last = node
                .stored_renew
                .as_deref()
                .map_or_else(String::new, |at| format!("; last heard of at {at}"));
            Liveness::Unreachable(format!(
                "wasmfleet agent has not connected since the server started ({}s ago){last}",
                grace.as_secs()
            ))
        }
        None => Liveness::Undecided,
    }
}

/// Decides what changes. `pods` need only hold the pods of unreachable nodes.
pub fn plan(
    nodes: &[ObservedNode],
    pods: &[ObservedPod],
    leases: &HashMap<String, Lease>,
    now: Instant,
    started: Instant,
    grace: Duration,
) -> Vec<Action> {
    let mut actions = Vec::new();
    let mut unreachable = HashSet::new();
    for node in nodes {
        let name = &node.name;
        let current = node.ready.as_deref();
        match liveness(node, leases.get(name), now, started, grace) {
            Liveness::Live => {
                if current != Some("True") {
                    actions.push(Action::MarkReady(name.clone()));
                    actions.push(Action::RestorePods(name.clone()));
                }
                if node.any_taint {
                    actions.push(Action::Untaint(name.clone()));
                }
            }
            Liveness::Unreachable(message) => {
                unreachable.insert(name.as_str());
                if current != Some("Unknown") {
                    actions.push(Action::MarkUnknown {
                        node: name.clone(),
                        message,
                    });
                }
                if !node.tainted {
                    actions.push(Action::Taint(name.clone()));
                }
            }
            Liveness::Undecided => {}
        }
    }
    for pod in pods {
        if pod.looks_ready && unreachable.contains(pod.node.as_str()) {
            actions.push(Action::MarkPodNotReady {
                pod: pod.key.clone(),
                node: pod.node.clone(),
            });
        }
    }
    actions
}

/// The `Ready=True` condition of a healthy node.
pub fn ready_condition() -> Condition<'static> {
    Condition {
        type_: "Ready",
        status: "True",
        reason: READY_REASON,
        message: READY_MESSAGE,
    }
}

/// The `Ready=Unknown` condition of an unreachable node.
pub fn unknown_condition(message: &str) -> Condition<'_> {
    Condition {
        type_: "Ready",
        status: "Unknown",
        reason: UNKNOWN_REASON,
        message,
    }
}

/// Sets a node's `Ready` condition (no write when unchanged; a missing node is not an
/// error: it was deleted meanwhile).
pub fn set_node_ready(
    store: &Store,
    node: &str,
    condition: &Condition<'_>,
) -> Result<(), StoreError> {
    edit_if_present(store, &ObjectKey::cluster("nodes", node), |obj| {
        set_condition(obj, condition, &now_rfc3339());
    })
}

/// Read-modify-write that treats a deleted object as done.
fn edit_if_present(
    store: &Store,
    key: &ObjectKey,
    edit: impl FnOnce(&mut Value),
) -> Result<(), StoreError> {
    let result = store.update_with(key, |obj: &mut Value| {
        edit(obj);
        Ok::<(), StoreError>(())
    });
    match result {
        Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
        Err(err) => Err(err),
    }
}

fn is_unreachable_taint(taint: &Value) -> bool {
    taint.get("key").and_then(Value::as_str) == Some(UNREACHABLE_TAINT)
}

fn taints(node: &Value) -> &[Value] {
    node.pointer("/spec/taints")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Which unreachable taint effects the node carries.
fn unreachable_effects(node: &Value) -> Vec<&str> {
    taints(node)
        .iter()
        .filter(|t| is_unreachable_taint(t))
        .filter_map(|t| t.get("effect").and_then(Value::as_str))
        .collect()
}

/// Adds the missing unreachable taints (`timeAdded` = `now`), keeping every other taint.
pub fn add_unreachable_taints(node: &mut Value, now: &str) {
    for effect in UNREACHABLE_EFFECTS {
        add_taint(node, UNREACHABLE_TAINT, effect, now);
    }
}

/// Adds the taint `key:effect` (`timeAdded` = `now`) unless the node carries it already.
pub fn add_taint(node: &mut Value, key: &str, effect: &str, now: &str) {
    let present = taints(node).iter().any(|t| {
        t.get("key").and_then(Value::as_str) == Some(key)
            && t.get("effect").and_then(Value::as_str) == Some(effect)
    });
    if present {
        return;
    }
    let Some(map) = node.as_object_mut() else {
        return;
    };
    let spec = map.entry("spec").or_insert_with(|| json!({}));
    let Some(spec) = spec.as_object_mut() else {
        return;
    };
    let list = spec.entry("taints").or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    if let Some(list) = list.as_array_mut() {
        list.push(json!({"key": key, "effect": effect, "timeAdded": now}));
    }
}

/// Removes the unreachable taints, keeping every other taint (and no empty list).
pub fn remove_unreachable_taints(node: &mut Value) {
    let Some(spec) = node.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let Some(list) = spec.get_mut("taints").and_then(Value::as_array_mut) else {
        return;
    };
    list.retain(|t| !is_unreachable_taint(t));
    if list.is_empty() {
        spec.remove("taints");
    }
}

/// Marks a pod not ready because its node is unreachable: `Ready` and `ContainersReady`
/// `False` (reason `NodeNotReady`), every container `ready: false`.
pub fn mark_pod_not_ready(pod: &mut Value, node: &str, now: &str) {
    let message = format!("node {node} is not ready: its agent is not reachable");
    for type_ in ["Ready", "ContainersReady"] {
        set_condition(
            pod,
            &Condition {
                type_,
                status: "False",
                reason: POD_NODE_NOT_READY,
                message: &message,
            },
            now,
        );
    }
    let containers = pod
        .pointer_mut("/status/containerStatuses")
        .and_then(Value::as_array_mut);
    for container in containers.into_iter().flatten() {
        if let Some(container) = container.as_object_mut() {
            container.insert("ready".into(), false.into());
        }
    }
}

/// The node as the controller sees it, from the cache (`None`: no such Node).
fn observe_node(cache: &Cache, name: &str) -> Option<ObservedNode> {
    let node = cache.get(&ObjectKey::cluster("nodes", name))?;
    let stored_renew = cache.get(&leases::lease_key(name)).and_then(|lease| {
        lease
            .pointer("/spec/renewTime")?
            .as_str()
            .map(str::to_owned)
    });
    let effects = unreachable_effects(&node);
    Some(ObservedNode {
        name: name.to_owned(),
        ready: condition_status(&node, "Ready").map(str::to_owned),
        tainted: UNREACHABLE_EFFECTS.iter().all(|e| effects.contains(e)),
        any_taint: !effects.is_empty(),
        stored_renew,
    })
}

/// The pods bound to `node`, from the cache's node index.
fn observe_pods(cache: &Cache, node: &str) -> Vec<ObservedPod> {
    cache
        .pods_on_node(node)
        .iter()
        .filter_map(|pod| {
            Some(ObservedPod {
                key: key_of("pods", pod)?,
                node: node.to_owned(),
                looks_ready: looks_ready(pod),
            })
        })
        .collect()
}

/// One node's inputs to [`plan`].
#[derive(Debug)]
pub struct NodeState {
    nodes: Vec<ObservedNode>,
    pods: Vec<ObservedPod>,
    leases: HashMap<String, Lease>,
    now: Instant,
}

/// The controller, run by [`super::runner`] with one key per Node.
pub struct NodeLifecycle {
    leases: Leases,
    modules: ModuleStore,
    cache: Cache,
    started: Instant,
    grace: Duration,
}

impl NodeLifecycle {
    /// The controller; a node without a session gets `grace` from now to show up.
    pub fn new(leases: Leases, modules: ModuleStore, cache: Cache, grace: Duration) -> Self {
        NodeLifecycle {
            leases,
            modules,
            cache,
            started: Instant::now(),
            grace,
        }
    }

    /// How often every node is re-planned: a quarter grace period, between 100 ms and 1 s.
    pub fn resync(grace: Duration) -> Duration {
        (grace / 4).clamp(Duration::from_millis(100), Duration::from_secs(1))
    }

    /// Whether the node's session is live right now.
    fn is_live(&self, node: &str) -> bool {
        let lease = self.leases.get(node);
        let unknown = ObservedNode {
            name: node.to_owned(),
            ready: None,
            tainted: false,
            any_taint: false,
            stored_renew: None,
        };
        liveness(
            &unknown,
            lease.as_ref(),
            Instant::now(),
            self.started,
            self.grace,
        ) == Liveness::Live
    }

    fn restore_pods(&self, store: &Store, node: &str) -> Result<(), StoreError> {
        let Some(report) = self.leases.get(node).and_then(|lease| lease.last_report) else {
            return Ok(());
        };
        let image_id = status::image_id_resolver(self.modules.clone());
        let changed = status::apply_report(store, &self.cache, node, &report, &image_id)?;
        tracing::debug!(%node, changed, "pod status restored from the last report");
        Ok(())
    }
}

impl Controller for NodeLifecycle {
    type State = NodeState;
    type Action = Action;

    fn name(&self) -> &'static str {
        "node-lifecycle"
    }

    fn keys_for(&self, change: &Change) -> Vec<ObjectKey> {
        (change.key.resource == "nodes")
            .then(|| change.key.clone())
            .into_iter()
            .collect()
    }

    fn all_keys(&self, cache: &Cache) -> Vec<ObjectKey> {
        cache.keys("nodes")
    }

    fn observe(&self, key: &ObjectKey, cache: &Cache) -> NodeState {
        let name = key.name.as_str();
        NodeState {
            nodes: observe_node(cache, name).into_iter().collect(),
            pods: observe_pods(cache, name),
            leases: self
                .leases
                .get(name)
                .map(|lease| (name.to_owned(), lease))
                .into_iter()
                .collect(),
            now: Instant::now(),
        }
    }

    fn plan(&self, state: &NodeState) -> Vec<Action> {
        plan(
            &state.nodes,
            &state.pods,
            &state.leases,
            state.now,
            self.started,
            self.grace,
        )
    }

    fn execute(&self, action: &Action, store: &Store) -> Result<(), StoreError> {
        let now = now_rfc3339();
        match action {
            Action::MarkReady(node) => {
                tracing::info!(%node, "node is ready again");
                set_node_ready(store, node, &ready_condition())
            }
            Action::MarkUnknown { node, message } => {
                tracing::warn!(%node, %message, "node is not reachable");
                set_node_ready(store, node, &unknown_condition(message))
            }
            Action::Taint(node) => {
                edit_if_present(store, &ObjectKey::cluster("nodes", node), |obj| {
                    add_unreachable_taints(obj, &now);
                })
            }
            Action::Untaint(node) => edit_if_present(
                store,
                &ObjectKey::cluster("nodes", node),
                remove_unreachable_taints,
            ),
            Action::MarkPodNotReady { pod, node } => edit_if_present(store, pod, |obj| {
                // Checked under the store's write lock: a report of a session that came
                // back after the plan was made is written either before (then the node is
                // live here) or after this edit, so it is never overwritten.
                if !self.is_live(node) {
                    mark_pod_not_ready(obj, node, &now);
                }
            }),
            Action::RestorePods(node) => self.restore_pods(store, node),
        }
    }
}

/// Runs the controller on the runner until `shutdown` is cancelled, re-planning every node
/// every quarter grace period (at most every second).
pub async fn run(
    store: Store,
    cache: Cache,
    leases: Leases,
    modules: ModuleStore,
    grace: Duration,
    shutdown: CancellationToken,
) {
    let controller = NodeLifecycle::new(leases, modules, cache.clone(), grace);
    let config = RunnerConfig {
        resync: NodeLifecycle::resync(grace),
        ..RunnerConfig::default()
    };
    runner::run(controller, store, cache, config, shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(40);

    fn node(name: &str, ready: Option<&str>) -> ObservedNode {
        ObservedNode {
            name: name.into(),
            ready: ready.map(str::to_owned),
            tainted: ready == Some("Unknown"),
            any_taint: ready == Some("Unknown"),
            stored_renew: None,
        }
    }

    fn lease(online: bool, renewed: Instant) -> Lease {
        Lease {
            epoch: 1,
            online,
            renewed,
            persisted: None,
            last_report: None,
        }
    }

    fn pod(name: &str, node: &str, looks_ready: bool) -> ObservedPod {
        ObservedPod {
            key: ObjectKey::namespaced("pods", "default", name),
            node: node.into(),
            looks_ready,
        }
    }

    fn plan_nodes(
        nodes: &[ObservedNode],
        leases: &HashMap<String, Lease>,
        now: Instant,
        started: Instant,
    ) -> Vec<Action> {
        plan(nodes, &[], leases, now, started, GRACE)
    }

    #[test]
    fn a_node_with_a_fresh_heartbeat_stays_ready() {
        let t0 = Instant::now();
        let leases = HashMap::from([("a".into(), lease(true, t0))]);
        let now = t0 + Duration::from_secs(10);
        assert!(plan_nodes(&[node("a", Some("True"))], &leases, now, t0).is_empty());
    }

    #[test]
    fn a_node_without_heartbeats_past_the_grace_period_becomes_unknown_and_tainted() {
        let t0 = Instant::now();
        let leases = HashMap::from([("a".into(), lease(true, t0))]);
        let now = t0 + GRACE + Duration::from_secs(1);
        let actions = plan_nodes(&[node("a", Some("True"))], &leases, now, t0);
        assert!(matches!(&actions[0], Action::MarkUnknown { node, .. } if node == "a"));
        assert_eq!(actions[1], Action::Taint("a".into()));
        assert_eq!(actions.len(), 2);
    }

    #[test]
    fn an_unknown_tainted_node_is_not_marked_again() {
        let t0 = Instant::now();
        let leases = HashMap::from([("a".into(), lease(true, t0))]);
        let now = t0 + GRACE * 2;
        assert!(plan_nodes(&[node("a", Some("Unknown"))], &leases, now, t0).is_empty());
    }

    #[test]
    fn a_node_whose_heartbeats_resume_becomes_ready_untainted_and_its_pods_restored() {
        let t0 = Instant::now();
        let now = t0 + GRACE * 3;
        let leases = HashMap::from([("a".into(), lease(true, now))]);
        assert_eq!(
            plan_nodes(&[node("a", Some("Unknown"))], &leases, now, t0),
            vec![
                Action::MarkReady("a".into()),
                Action::RestorePods("a".into()),
                Action::Untaint("a".into())
            ]
        );
    }

    #[test]
    fn a_ready_node_that_still_carries_a_taint_loses_it() {
        // A birth sets Ready=True directly; the taint goes on the next pass.
        let t0 = Instant::now();
        let leases = HashMap::from([("a".into(), lease(true, t0))]);
        let mut reborn = node("a", Some("True"));
        reborn.any_taint = true;
        assert_eq!(
            plan_nodes(&[reborn], &leases, t0, t0),
            vec![Action::Untaint("a".into())]
        );
    }

    #[test]
    fn a_disconnected_agent_makes_its_node_unknown_at_once() {
        let t0 = Instant::now();
        let leases = HashMap::from([("a".into(), lease(false, t0))]);
        let actions = plan_nodes(&[node("a", Some("True"))], &leases, t0, t0);
        assert_eq!(
            actions,
            vec![
                Action::MarkUnknown {
                    node: "a".into(),
                    message: DISCONNECTED_MESSAGE.into()
                },
                Action::Taint("a".into())
            ]
        );
    }

    #[test]
    fn the_ready_pods_of_an_unreachable_node_are_marked_not_ready() {
        let t0 = Instant::now();
        let leases = HashMap::from([
            ("a".into(), lease(false, t0)),
            ("b".into(), lease(true, t0)),
        ]);
        let nodes = [node("a", Some("Unknown")), node("b", Some("True"))];
        let pods = [
            pod("on-a", "a", true),
            pod("already-marked", "a", false),
            pod("on-b", "b", true),
        ];
        assert_eq!(
            plan(&nodes, &pods, &leases, t0, t0, GRACE),
            vec![Action::MarkPodNotReady {
                pod: ObjectKey::namespaced("pods", "default", "on-a"),
                node: "a".into()
            }]
        );
    }

    #[test]
    fn a_node_never_heard_of_gets_one_grace_period_after_the_server_starts() {
        let t0 = Instant::now();
        let mut known = node("a", Some("True"));
        known.stored_renew = Some("2024-01-01T00:00:00.000000Z".into());
        let nodes = [known];
        assert!(plan_nodes(&nodes, &HashMap::new(), t0 + GRACE / 2, t0).is_empty());
        let actions = plan_nodes(&nodes, &HashMap::new(), t0 + GRACE * 2, t0);
        assert!(
            matches!(&actions[0], Action::MarkUnknown { message, .. } if message.contains("last heard of at 2024-01-01T00:00:00.000000Z")),
            "{actions:?}"
        );
    }

    #[test]
    fn unreachable_taints_are_added_once_and_removed_without_touching_others() {
        let mut n = json!({"spec": {"taints": [{"key": "dedicated", "effect": "NoSchedule"}]}});
        add_unreachable_taints(&mut n, "2024-01-01T00:00:01Z");
        add_unreachable_taints(&mut n, "2024-01-01T00:00:02Z");
        let taints = n["spec"]["taints"].as_array().cloned().unwrap_or_default();
        assert_eq!(taints.len(), 3);
        assert_eq!(taints[1]["key"], UNREACHABLE_TAINT);
        assert_eq!(taints[1]["effect"], "NoSchedule");
        assert_eq!(taints[2]["effect"], "NoExecute");
        assert_eq!(taints[2]["timeAdded"], "2024-01-01T00:00:01Z");
        let typed: k8s_openapi::api::core::v1::Node =
            serde_json::from_value(n.clone()).expect("a valid Node");
        assert_eq!(typed.spec.and_then(|s| s.taints).map(|t| t.len()), Some(3));
        remove_unreachable_taints(&mut n);
        assert_eq!(
            n["spec"]["taints"],
            json!([{"key": "dedicated", "effect": "NoSchedule"}])
        );
        let mut bare = json!({"spec": {}});
        add_unreachable_taints(&mut bare, "t");
        remove_unreachable_taints(&mut bare);
        assert_eq!(bare, json!({"spec": {}}));
    }

    #[test]
    fn a_pod_marked_not_ready_shows_zero_ready_containers() {
        let mut p = json!({
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "c", "ready": true}]
            }
        });
        assert!(looks_ready(&p));
        mark_pod_not_ready(&mut p, "pi-1", "t");
        assert!(!looks_ready(&p));
        assert_eq!(p["status"]["phase"], "Running");
        assert_eq!(p["status"]["containerStatuses"][0]["ready"], false);
        assert_eq!(condition_status(&p, "Ready"), Some("False"));
        assert_eq!(condition_status(&p, "ContainersReady"), Some("False"));
        let ready = &p["status"]["conditions"][0];
        assert_eq!(ready["reason"], POD_NODE_NOT_READY);
        assert!(
            ready["message"]
                .as_str()
                .is_some_and(|m| m.contains("pi-1"))
        );
    }
}
