//! The node lifecycle controller: node readiness from agent liveness.
//!
//! The fleet link records every agent's liveness in [`Leases`] (in memory: heartbeats are
//! never written to the store). This controller compares the leases with the `Ready`
//! condition of every Node object and flips it: `Unknown` (reason `NodeStatusUnknown`) when
//! no heartbeat arrived within the grace period or the agent's will said it disconnected,
//! `True` (reason `AgentReady`) when heartbeats resume. Right after a server start no lease
//! exists yet; nodes then get one grace period, counted from the controller's start, to
//! show up before they are marked unknown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::conditions::{Condition, condition_status, set_condition};
use crate::store::{ObjectKey, Scope, Store, StoreError, now_rfc3339};

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

/// What is known about one agent's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The agent's session epoch.
    pub epoch: u64,
    /// False once the will of this epoch arrived.
    pub online: bool,
    /// When the last birth or heartbeat of this epoch arrived.
    pub renewed: Instant,
}

/// What happened to a lease when a message arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseUpdate {
    /// The message was from the current (or a newer) session and was applied.
    Applied,
    /// The message was from an older session and was ignored.
    Stale,
}

/// Every agent's liveness, shared between the fleet link (writer) and this controller.
#[derive(Debug, Clone, Default)]
pub struct Leases {
    inner: Arc<Mutex<HashMap<String, Lease>>>,
    /// Woken on every applied birth, will or heartbeat.
    changed: Arc<Notify>,
}

impl Leases {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, Lease>) -> R) -> R {
        // A panic while holding this lock cannot leave the map half-updated (single
        // inserts), so a poisoned lock is still safe to use.
        let mut map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut map)
    }

    /// A birth (online) or will (offline) for `epoch`. Messages of older epochs are stale.
    pub fn presence(&self, node: &str, epoch: u64, online: bool, now: Instant) -> LeaseUpdate {
        let update = self.with(|map| match map.get(node) {
            Some(lease) if epoch < lease.epoch => LeaseUpdate::Stale,
            // A birth of the same epoch after its will cannot happen; a late duplicate
            // birth must not revive a session whose will already arrived.
            Some(lease) if epoch == lease.epoch && online && !lease.online => LeaseUpdate::Stale,
            _ => {
                map.insert(
                    node.to_owned(),
                    Lease {
                        epoch,
                        online,
                        renewed: now,
                    },
                );
                LeaseUpdate::Applied
            }
        });
        self.changed.notify_waiters();
        update
    }

    /// A heartbeat of `epoch`.
    pub fn heartbeat(&self, node: &str, epoch: u64, now: Instant) -> LeaseUpdate {
        let update = self.with(|map| match map.get_mut(node) {
            Some(lease) if epoch < lease.epoch || (epoch == lease.epoch && !lease.online) => {
                LeaseUpdate::Stale
            }
            Some(lease) => {
                // A newer epoch means the agent reconnected and we missed its birth.
                lease.epoch = epoch;
                lease.online = true;
                lease.renewed = now;
                LeaseUpdate::Applied
            }
            None => {
                map.insert(
                    node.to_owned(),
                    Lease {
                        epoch,
                        online: true,
                        renewed: now,
                    },
                );
                LeaseUpdate::Applied
            }
        });
        self.changed.notify_waiters();
        update
    }

    /// A copy of one node's lease.
    pub fn get(&self, node: &str) -> Option<Lease> {
        self.with(|map| map.get(node).copied())
    }

    /// Whether the node's agent is connected (as of its last message).
    pub fn is_online(&self, node: &str) -> bool {
        self.get(node).is_some_and(|lease| lease.online)
    }

    /// Waits up to `timeout` for the node's agent to be connected. Right after a server
    /// start, agents are still reconnecting to the (restarted) broker; requests for them
    /// wait here instead of being published to nobody.
    pub async fn wait_online(&self, node: &str, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the check, so a change between the check and the wait
            // is not missed.
            changed.as_mut().enable();
            if self.is_online(node) {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return false;
            }
        }
    }

    fn snapshot(&self) -> HashMap<String, Lease> {
        self.with(|map| map.clone())
    }
}

/// A node as the controller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedNode {
    /// The node's name.
    pub name: String,
    /// The `status` of its `Ready` condition, if any.
    pub ready: Option<String>,
}

/// A change to a node's `Ready` condition.
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
}

/// Decides which nodes change readiness. `started` is when the controller started: a node
/// without a lease is given the grace period from then.
pub fn plan(
    nodes: &[ObservedNode],
    leases: &HashMap<String, Lease>,
    now: Instant,
    started: Instant,
    grace: Duration,
) -> Vec<Action> {
    let mut actions = Vec::new();
    for node in nodes {
        let lease = leases.get(&node.name);
        let desired = match lease {
            Some(lease) if !lease.online => Err(DISCONNECTED_MESSAGE.to_owned()),
            Some(lease) if now.saturating_duration_since(lease.renewed) > grace => Err(format!(
                "wasmfleet agent stopped posting node status (no heartbeat for more than {}s)",
                grace.as_secs()
            )),
            Some(_) => Ok(()),
            None if now.saturating_duration_since(started) > grace => Err(format!(
                "wasmfleet agent has not connected since the server started ({}s ago)",
                grace.as_secs()
            )),
            // No news yet, still within the grace period: leave the node as it is.
            None => continue,
        };
        let current = node.ready.as_deref();
        match desired {
            Ok(()) if current != Some("True") => actions.push(Action::MarkReady(node.name.clone())),
            Err(message) if current != Some("Unknown") => actions.push(Action::MarkUnknown {
                node: node.name.clone(),
                message,
            }),
            _ => {}
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
    let key = ObjectKey::cluster("nodes", node);
    let result = store.update_with(&key, |obj: &mut Value| {
        set_condition(obj, condition, &now_rfc3339());
        Ok::<(), StoreError>(())
    });
    match result {
        Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
        Err(err) => Err(err),
    }
}

fn observe(store: &Store) -> Result<Vec<ObservedNode>, StoreError> {
    let nodes = store.list(&Scope::all("nodes"))?.items;
    Ok(nodes
        .iter()
        .filter_map(|node| {
            let name = node.pointer("/metadata/name")?.as_str()?.to_owned();
            let ready = condition_status(node, "Ready").map(str::to_owned);
            Some(ObservedNode { name, ready })
        })
        .collect())
}

fn execute(store: &Store, actions: &[Action]) -> Result<(), StoreError> {
    for action in actions {
        match action {
            Action::MarkReady(node) => {
                tracing::info!(%node, "node is ready again");
                set_node_ready(store, node, &ready_condition())?;
            }
            Action::MarkUnknown { node, message } => {
                tracing::warn!(%node, %message, "node is not reachable");
                set_node_ready(store, node, &unknown_condition(message))?;
            }
        }
    }
    Ok(())
}

/// Runs the controller until `shutdown` is cancelled, checking every quarter grace period
/// (at least every second).
pub async fn run(store: Store, leases: Leases, grace: Duration, shutdown: CancellationToken) {
    let started = Instant::now();
    let period = (grace / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let outcome = observe(&store).and_then(|nodes| {
            let actions = plan(&nodes, &leases.snapshot(), Instant::now(), started, grace);
            execute(&store, &actions)
        });
        if let Err(err) = outcome {
            tracing::warn!(%err, "node lifecycle pass failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(40);

    fn node(name: &str, ready: Option<&str>) -> ObservedNode {
        ObservedNode {
            name: name.into(),
            ready: ready.map(str::to_owned),
        }
    }

    fn lease(online: bool, renewed: Instant) -> Lease {
        Lease {
            epoch: 1,
            online,
            renewed,
        }
    }

    #[test]
    fn a_node_with_a_fresh_heartbeat_stays_ready() {
        let t0 = Instant::now();
        let leases = HashMap::from([("a".into(), lease(true, t0))]);
        let now = t0 + Duration::from_secs(10);
        assert!(plan(&[node("a", Some("True"))], &leases, now, t0, GRACE).is_empty());
    }

    #[test]
    fn a_node_without_heartbeats_past_the_grace_period_becomes_unknown() {
        let t0 = Instant::now();
        let leases = HashMap::from([("a".into(), lease(true, t0))]);
        let now = t0 + GRACE + Duration::from_secs(1);
        let actions = plan(&[node("a", Some("True"))], &leases, now, t0, GRACE);
        assert!(matches!(&actions[..], [Action::MarkUnknown { node, .. }] if node == "a"));
    }

    #[test]
    fn an_unknown_node_is_not_marked_again() {
        let t0 = Instant::now();
        let leases = HashMap::from([("a".into(), lease(true, t0))]);
        let now = t0 + GRACE * 2;
        assert!(plan(&[node("a", Some("Unknown"))], &leases, now, t0, GRACE).is_empty());
    }

    #[test]
    fn a_node_whose_heartbeats_resume_becomes_ready_again() {
        let t0 = Instant::now();
        let now = t0 + GRACE * 3;
        let leases = HashMap::from([("a".into(), lease(true, now))]);
        assert_eq!(
            plan(&[node("a", Some("Unknown"))], &leases, now, t0, GRACE),
            vec![Action::MarkReady("a".into())]
        );
    }

    #[test]
    fn a_disconnected_agent_makes_its_node_unknown_at_once() {
        let t0 = Instant::now();
        let leases = HashMap::from([("a".into(), lease(false, t0))]);
        let actions = plan(&[node("a", Some("True"))], &leases, t0, t0, GRACE);
        assert_eq!(
            actions,
            vec![Action::MarkUnknown {
                node: "a".into(),
                message: DISCONNECTED_MESSAGE.into()
            }]
        );
    }

    #[test]
    fn a_node_never_heard_of_gets_one_grace_period_after_the_server_starts() {
        let t0 = Instant::now();
        let nodes = [node("a", Some("True"))];
        assert!(plan(&nodes, &HashMap::new(), t0 + GRACE / 2, t0, GRACE).is_empty());
        assert_eq!(
            plan(&nodes, &HashMap::new(), t0 + GRACE * 2, t0, GRACE).len(),
            1
        );
    }

    #[test]
    fn a_will_from_an_older_session_is_stale() {
        let leases = Leases::default();
        let t = Instant::now();
        assert_eq!(leases.presence("a", 5, true, t), LeaseUpdate::Applied);
        assert_eq!(leases.presence("a", 4, false, t), LeaseUpdate::Stale);
        assert!(leases.get("a").is_some_and(|l| l.online));
        assert_eq!(leases.presence("a", 5, false, t), LeaseUpdate::Applied);
        assert!(leases.get("a").is_some_and(|l| !l.online));
    }

    #[test]
    fn heartbeats_after_the_will_of_their_session_are_ignored() {
        let leases = Leases::default();
        let t = Instant::now();
        leases.presence("a", 2, true, t);
        leases.presence("a", 2, false, t);
        assert_eq!(leases.heartbeat("a", 2, t), LeaseUpdate::Stale);
        assert_eq!(leases.heartbeat("a", 3, t), LeaseUpdate::Applied);
        assert!(leases.get("a").is_some_and(|l| l.online && l.epoch == 3));
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_a_node_ends_when_its_agent_is_heard_from() {
        let leases = Leases::default();
        let writer = leases.clone();
        let arrive = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            writer.heartbeat("a", 1, Instant::now());
        });
        assert!(leases.wait_online("a", Duration::from_secs(5)).await);
        arrive.await.expect("heartbeat task");
        assert!(!leases.wait_online("b", Duration::from_secs(5)).await);
        leases.presence("a", 1, false, Instant::now());
        assert!(!leases.wait_online("a", Duration::from_millis(10)).await);
    }
}
