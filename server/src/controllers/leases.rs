//! Node leases: which agent session is current, when it was last heard of, and the
//! Kubernetes `Lease` objects (`coordination.k8s.io/v1`, namespace `kube-node-lease`) that
//! keep that knowledge in the store.
//!
//! Epochs on the wire are not trusted to order sessions: a message could carry any number
//! (a forged heartbeat with epoch 2^62 once wedged a node until the server restarted).
//! Instead MQTT's own ordering decides: a new connection under a node's client id takes
//! over the old one, each connection starts with a birth, and the broker keeps every
//! client's order. So **the current session is the one of the latest birth that arrived**,
//! whatever its epoch. Heartbeats, wills and status reports count only when their epoch is
//! the current session's; anything else is ignored for liveness. No message but a birth
//! can change the session, and a birth always can, so a stray message never locks out the
//! next real birth.
//!
//! The fleet link is the writer ([`Leases::presence`], [`Leases::heartbeat`]). A node's
//! `Lease` object falls due at most once per [`persist_interval`], so liveness survives a
//! server restart at a bounded write rate, and one task ([`write_due`]) writes every lease
//! that fell due in one store commit: 10,000 nodes renewing every 10 s are a few commits a
//! second, not a thousand fsyncs. The node lifecycle controller reads both.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use wasmfleet_protocol::pod::StatusReport;

use crate::k8s::time::now_micro;
use crate::store::{ObjectKey, Scope, Store, StoreError};

/// The namespace of node leases, as in Kubernetes.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// The store resource of leases.
pub const LEASE_RESOURCE: &str = "leases";

/// What is known about one agent's current session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The epoch of the latest birth (or, before any birth, of a will).
    pub epoch: u64,
    /// False once the will of this session arrived.
    pub online: bool,
    /// When the last birth or heartbeat of this session arrived.
    pub renewed: Instant,
    /// When the store's `Lease` object was last written for this node.
    pub persisted: Option<Instant>,
    /// The last status report of this session that was applied (to restore the pods'
    /// readiness when the node comes back without a new session).
    pub last_report: Option<Arc<StatusReport>>,
}

/// What happened when a message arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseUpdate {
    /// The message belongs to the current session and was applied; `persist` says the
    /// store's `Lease` object is due for a write.
    Applied {
        /// Write the `Lease` object now.
        persist: bool,
    },
    /// The message is not of the current session (or came after its will): ignored.
    Ignored,
}

impl LeaseUpdate {
    /// Whether the message was applied.
    pub fn applied(self) -> bool {
        matches!(self, LeaseUpdate::Applied { .. })
    }
}

/// How often a node's `Lease` object may be written: a quarter of the grace period, at
/// least every second and at most every 10 s (Kubernetes' kubelet renews every 10 s).
pub fn persist_interval(grace: Duration) -> Duration {
    (grace / 4).clamp(Duration::from_secs(1), Duration::from_secs(10))
}

fn due(persisted: Option<Instant>, now: Instant, interval: Duration) -> bool {
    persisted.is_none_or(|at| now.saturating_duration_since(at) >= interval)
}

/// A birth: it always starts (or, with the same epoch, confirms) the current session.
pub fn on_birth(
    current: Option<&Lease>,
    epoch: u64,
    now: Instant,
    interval: Duration,
) -> (Lease, LeaseUpdate) {
    let same = current.filter(|lease| lease.epoch == epoch && lease.online);
    let persisted = same.and_then(|lease| lease.persisted);
    // A new session has nothing persisted yet, so it is always written at once.
    let persist = due(persisted, now, interval);
    let lease = Lease {
        epoch,
        online: true,
        renewed: now,
        persisted: if persist { Some(now) } else { persisted },
        last_report: same.and_then(|lease| lease.last_report.clone()),
    };
    (lease, LeaseUpdate::Applied { persist })
}

/// A will: it ends the current session when its epoch is the session's (or records the
/// node as offline when no session is known, as after a server start).
pub fn on_will(current: Option<&Lease>, epoch: u64, now: Instant) -> Option<Lease> {
    match current {
        Some(lease) if lease.epoch != epoch || !lease.online => None,
        Some(lease) => Some(Lease {
            online: false,
            last_report: None,
            ..lease.clone()
        }),
        None => Some(Lease {
            epoch,
            online: false,
            renewed: now,
            persisted: None,
            last_report: None,
        }),
    }
}

/// Whether a heartbeat, status report or other message of `epoch` belongs to the live
/// current session.
pub fn is_current(current: Option<&Lease>, epoch: u64) -> bool {
    current.is_some_and(|lease| lease.online && lease.epoch == epoch)
}

/// Every agent's liveness, shared between the fleet link (writer) and the node lifecycle
/// controller.
#[derive(Debug, Clone)]
pub struct Leases {
    inner: Arc<Mutex<HashMap<String, Lease>>>,
    /// Woken on every applied birth, will or heartbeat.
    changed: Arc<Notify>,
    /// Nodes whose `Lease` object is due to be written ([`write_due`]).
    due: Arc<Due>,
    grace: Duration,
}

/// The nodes whose lease objects wait for the writer, and its wake-up.
#[derive(Debug, Default)]
struct Due {
    nodes: Mutex<BTreeSet<String>>,
    wake: Notify,
}

impl Due {
    fn add(&self, node: &str) {
        let mut nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        nodes.insert(node.to_owned());
        self.wake.notify_one();
    }

    /// Up to `max` due nodes, taken off the set.
    fn take(&self, max: usize) -> Vec<String> {
        let mut nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        let batch: Vec<String> = nodes.iter().take(max).cloned().collect();
        for node in &batch {
            nodes.remove(node);
        }
        batch
    }
}

impl Default for Leases {
    fn default() -> Self {
        Leases::new(super::node_lifecycle::DEFAULT_GRACE)
    }
}

impl Leases {
    /// Leases whose store objects say `grace` and are written at most every
    /// [`persist_interval`]`(grace)`.
    pub fn new(grace: Duration) -> Self {
        Leases {
            inner: Arc::default(),
            changed: Arc::default(),
            due: Arc::default(),
            grace,
        }
    }

    /// The grace period the leases are written with.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, Lease>) -> R) -> R {
        // Every change is a single insert, so a poisoned lock is still consistent.
        let mut map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut map)
    }

    /// A birth (online) or will (offline) of session `epoch`.
    pub fn presence(&self, node: &str, epoch: u64, online: bool, now: Instant) -> LeaseUpdate {
        let interval = persist_interval(self.grace);
        let update = self.with(|map| {
            let current = map.get(node);
            if online {
                let (lease, update) = on_birth(current, epoch, now, interval);
                map.insert(node.to_owned(), lease);
                return update;
            }
            match on_will(current, epoch, now) {
                Some(lease) => {
                    map.insert(node.to_owned(), lease);
                    LeaseUpdate::Applied { persist: false }
                }
                None => LeaseUpdate::Ignored,
            }
        });
        self.applied(node, update);
        update
    }

    /// Wakes the waiters of an applied update and queues the node's lease object when it
    /// fell due.
    fn applied(&self, node: &str, update: LeaseUpdate) {
        if let LeaseUpdate::Applied { persist } = update {
            if persist {
                self.due.add(node);
            }
            self.changed.notify_waiters();
        }
    }

    /// A heartbeat of `epoch`: renews the lease when it is the live current session's.
    pub fn heartbeat(&self, node: &str, epoch: u64, now: Instant) -> LeaseUpdate {
        let interval = persist_interval(self.grace);
        let update = self.with(|map| match map.get_mut(node) {
            Some(lease) if is_current(Some(lease), epoch) => {
                lease.renewed = now;
                let persist = due(lease.persisted, now, interval);
                if persist {
                    lease.persisted = Some(now);
                }
                LeaseUpdate::Applied { persist }
            }
            _ => LeaseUpdate::Ignored,
        });
        self.applied(node, update);
        update
    }

    /// Whether a status report of `epoch` belongs to the node's live current session.
    pub fn is_current(&self, node: &str, epoch: u64) -> bool {
        self.with(|map| is_current(map.get(node), epoch))
    }

    /// Remembers the last applied report of the current session.
    pub fn remember_report(&self, node: &str, report: &StatusReport) {
        self.with(|map| {
            if let Some(lease) = map.get_mut(node)
                && is_current(Some(lease), report.epoch)
            {
                lease.last_report = Some(Arc::new(report.clone()));
            }
        });
    }

    /// A copy of one node's lease.
    pub fn get(&self, node: &str) -> Option<Lease> {
        self.with(|map| map.get(node).cloned())
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

    /// Every lease (for the controller).
    pub fn snapshot(&self) -> HashMap<String, Lease> {
        self.with(|map| map.clone())
    }
}

/// The store key of a node's lease.
pub fn lease_key(node: &str) -> ObjectKey {
    ObjectKey::namespaced(LEASE_RESOURCE, LEASE_NAMESPACE, node)
}

/// The node's `Lease` object, renewed at `renew_time`, merged over the stored one.
pub fn lease_object(
    node: &str,
    grace: Duration,
    renew_time: &str,
    existing: Option<&Value>,
) -> Value {
    let mut lease = existing
        .cloned()
        .unwrap_or_else(|| json!({"metadata": {"name": node, "namespace": LEASE_NAMESPACE}}));
    if let Some(map) = lease.as_object_mut() {
        map.insert("apiVersion".into(), "coordination.k8s.io/v1".into());
        map.insert("kind".into(), "Lease".into());
        map.insert(
            "spec".into(),
            json!({
                "holderIdentity": node,
                "leaseDurationSeconds": grace.as_secs().max(1),
                "renewTime": renew_time,
            }),
        );
    }
    lease
}

/// Writes the node's `Lease` object, renewed now.
pub fn write_lease(store: &Store, node: &str, grace: Duration) -> Result<(), StoreError> {
    write_leases(store, &[node.to_owned()], grace)
}

/// Writes the nodes' `Lease` objects, renewed now, in one commit.
pub fn write_leases(store: &Store, nodes: &[String], grace: Duration) -> Result<(), StoreError> {
    tracing::trace!(count = nodes.len(), "leases written");
    let renew_time = now_micro();
    let keys: Vec<ObjectKey> = nodes.iter().map(|node| lease_key(node)).collect();
    store.upsert_many(&keys, |index, existing| {
        Ok::<_, StoreError>(Some(lease_object(
            &nodes[index],
            grace,
            &renew_time,
            existing,
        )))
    })?;
    Ok(())
}

/// Leases written per commit, so one commit never holds the write lock for long.
const WRITE_BATCH: usize = 512;

/// The lease writer: writes the `Lease` objects of [`Leases`] as they fall due, every one
/// that fell due during a commit in the next commit, until `shutdown`, then writes what is
/// left. A failed write is logged; those nodes are written again when next due.
pub async fn write_due(store: Store, leases: Leases, shutdown: CancellationToken) {
    loop {
        let batch = leases.due.take(WRITE_BATCH);
        if batch.is_empty() {
            tokio::select! {
                () = leases.due.wake.notified() => continue,
                () = shutdown.cancelled() => return,
            }
        }
        let (store, grace) = (store.clone(), leases.grace);
        let written =
            tokio::task::spawn_blocking(move || write_leases(&store, &batch, grace)).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(%err, "cannot write node leases"),
            Err(err) => tracing::warn!(%err, "the lease write task failed"),
        }
    }
}

/// `spec.renewTime` of every stored node lease, by node name.
pub fn stored_renew_times(store: &Store) -> Result<HashMap<String, String>, StoreError> {
    let leases = store
        .list(&Scope::namespace(LEASE_RESOURCE, LEASE_NAMESPACE))?
        .items;
    Ok(leases
        .iter()
        .filter_map(|lease| {
            let name = lease.pointer("/metadata/name")?.as_str()?.to_owned();
            let renewed = lease.pointer("/spec/renewTime")?.as_str()?.to_owned();
            Some((name, renewed))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(40);

    #[test]
    fn a_forged_heartbeat_with_a_huge_epoch_changes_nothing() {
        let leases = Leases::new(GRACE);
        let t = Instant::now();
        assert!(leases.presence("a", 3, true, t).applied());
        assert_eq!(leases.heartbeat("a", 1 << 62, t), LeaseUpdate::Ignored);
        assert!(leases.heartbeat("a", 3, t).applied());
        assert!(leases.get("a").is_some_and(|l| l.online && l.epoch == 3));
    }

    #[test]
    fn the_latest_birth_wins_whatever_its_epoch() {
        let leases = Leases::new(GRACE);
        let t = Instant::now();
        leases.presence("a", 1 << 62, true, t);
        // The real agent reconnects with a small epoch: its birth takes over.
        assert!(leases.presence("a", 4, true, t).applied());
        assert!(leases.heartbeat("a", 4, t).applied());
        assert_eq!(leases.heartbeat("a", 1 << 62, t), LeaseUpdate::Ignored);
        assert!(leases.is_current("a", 4));
        assert!(!leases.is_current("a", 1 << 62));
    }

    #[test]
    fn only_the_will_of_the_current_session_ends_it() {
        let leases = Leases::new(GRACE);
        let t = Instant::now();
        leases.presence("a", 5, true, t);
        assert_eq!(leases.presence("a", 4, false, t), LeaseUpdate::Ignored);
        assert_eq!(
            leases.presence("a", 1 << 62, false, t),
            LeaseUpdate::Ignored
        );
        assert!(leases.is_online("a"));
        assert!(leases.presence("a", 5, false, t).applied());
        assert!(!leases.is_online("a"));
        // Heartbeats after the will of their session do not revive it; the next birth does.
        assert_eq!(leases.heartbeat("a", 5, t), LeaseUpdate::Ignored);
        assert!(leases.presence("a", 6, true, t).applied());
        assert!(leases.is_online("a"));
    }

    #[test]
    fn a_heartbeat_without_a_known_session_is_ignored() {
        let leases = Leases::new(GRACE);
        assert_eq!(
            leases.heartbeat("a", 7, Instant::now()),
            LeaseUpdate::Ignored
        );
        assert!(leases.get("a").is_none());
    }

    #[test]
    fn a_will_before_any_birth_records_the_node_as_offline() {
        let leases = Leases::new(GRACE);
        assert!(leases.presence("a", 2, false, Instant::now()).applied());
        assert!(leases.get("a").is_some_and(|l| !l.online));
    }

    #[test]
    fn the_store_lease_is_written_at_a_bounded_rate() {
        let leases = Leases::new(GRACE);
        let t = Instant::now();
        let interval = persist_interval(GRACE);
        assert_eq!(interval, Duration::from_secs(10));
        assert_eq!(
            leases.presence("a", 1, true, t),
            LeaseUpdate::Applied { persist: true }
        );
        assert_eq!(
            leases.heartbeat("a", 1, t + Duration::from_secs(3)),
            LeaseUpdate::Applied { persist: false }
        );
        assert_eq!(
            leases.presence("a", 1, true, t + Duration::from_secs(4)),
            LeaseUpdate::Applied { persist: false }
        );
        assert_eq!(
            leases.heartbeat("a", 1, t + interval),
            LeaseUpdate::Applied { persist: true }
        );
        // A new session is written at once.
        assert_eq!(
            leases.presence("a", 2, true, t + interval),
            LeaseUpdate::Applied { persist: true }
        );
    }

    #[test]
    fn the_persist_interval_follows_the_grace_period_within_bounds() {
        assert_eq!(
            persist_interval(Duration::from_secs(3)),
            Duration::from_secs(1)
        );
        assert_eq!(
            persist_interval(Duration::from_secs(20)),
            Duration::from_secs(5)
        );
        assert_eq!(
            persist_interval(Duration::from_secs(300)),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn reports_are_remembered_only_for_the_current_session() {
        let leases = Leases::new(GRACE);
        let t = Instant::now();
        leases.presence("a", 2, true, t);
        let report = |epoch| StatusReport {
            epoch,
            seq: 1,
            observed_revision: 0,
            pods: vec![],
            starting: vec![],
            images: Vec::new(),
            reasons: Vec::new(),
        };
        leases.remember_report("a", &report(9));
        assert!(leases.get("a").is_some_and(|l| l.last_report.is_none()));
        leases.remember_report("a", &report(2));
        assert!(leases.get("a").is_some_and(|l| l.last_report.is_some()));
        leases.presence("a", 3, true, t);
        assert!(leases.get("a").is_some_and(|l| l.last_report.is_none()));
    }

    #[test]
    fn a_lease_object_is_kubernetes_shaped() {
        let lease = lease_object("pi-1", GRACE, "2024-01-01T00:00:00.000000Z", None);
        let typed: k8s_openapi::api::coordination::v1::Lease =
            serde_json::from_value(lease.clone()).expect("a valid Lease");
        let spec = typed.spec.expect("spec");
        assert_eq!(spec.holder_identity.as_deref(), Some("pi-1"));
        assert_eq!(spec.lease_duration_seconds, Some(40));
        assert!(spec.renew_time.is_some());
        assert_eq!(lease["apiVersion"], "coordination.k8s.io/v1");
        assert_eq!(lease["metadata"]["namespace"], LEASE_NAMESPACE);
        assert!(now_micro().ends_with('Z') && now_micro().contains('.'));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn due_leases_are_written_many_per_commit_and_the_rest_at_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("state.redb")).unwrap();
        let leases = Leases::new(GRACE);
        let now = Instant::now();
        // A thousand births at once, as after a server restart: every lease is due.
        for i in 0..1000 {
            assert!(leases.presence(&format!("n{i}"), 1, true, now).applied());
        }
        // Renewed before the interval: not due again.
        assert_eq!(
            leases.heartbeat("n0", 1, now),
            LeaseUpdate::Applied { persist: false }
        );
        let before = store.writes();
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        // Cancelled before it starts: the writer still writes what is due, then returns.
        write_due(store.clone(), leases.clone(), shutdown).await;
        let written = stored_renew_times(&store).unwrap();
        assert_eq!(written.len(), 1000);
        let commits = store.writes() - before;
        assert!(commits <= 4, "1,000 leases took {commits} commits");
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_a_node_ends_when_its_agent_is_heard_from() {
        let leases = Leases::new(GRACE);
        let writer = leases.clone();
        let arrive = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            writer.presence("a", 1, true, Instant::now());
        });
        assert!(leases.wait_online("a", Duration::from_secs(5)).await);
        arrive.await.expect("birth task");
        assert!(!leases.wait_online("b", Duration::from_secs(5)).await);
        leases.presence("a", 1, false, Instant::now());
        assert!(!leases.wait_online("a", Duration::from_millis(10)).await);
    }
}
