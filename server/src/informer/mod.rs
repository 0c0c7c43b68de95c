//! The informer: an in-memory, indexed, read-only view of the store, fed by its event log
//! (Kubernetes' reflector/informer pattern, kube-runtime's `reflector::Store`).
//!
//! One reflector task ([`reflector`]) lists the followed resources once, then applies the
//! store's events strictly in revision order; if it ever falls behind the event log's
//! retention (the store answers `Gone`), it lists again and reports the difference. It is
//! the only writer of the [`Cache`]; everyone else holds a cheap clone and reads:
//!
//! - [`Cache::get`], [`Cache::list`]: objects as `Arc`s (cloning a snapshot copies
//!   pointers, never objects);
//! - [`Cache::pods_on_node`], [`Cache::unbound_pods`], [`Cache::owned_by`] (controller
//!   owner uid), [`Cache::in_namespace`]: the indexes ([`index`]);
//! - [`Cache::subscribe`]: every applied batch as [`Changes`] (which keys changed, with
//!   their old and new state), so a consumer recomputes only what a change touches and
//!   ignores resources it does not read (a node's `Lease` renewal wakes no scheduler). A
//!   consumer that lags behind the channel gets `Lagged` and must recompute everything;
//! - [`Cache::wait_for`]: waits until the cache has applied a revision (a writer that
//!   wants to read its own write).
//!
//! The store stays the one owner of the data: the cache is eventually consistent, so
//! writers still write through the store with read-modify-write and preconditions, and
//! re-check inside the write what they decided from the cache.

pub mod index;
mod reflector;

use std::sync::{Arc, PoisonError, RwLock};

use serde_json::Value;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::{ObjectKey, Store, StoreError};

pub use index::{Change, Index};

/// The resources the server's cache follows.
pub const RESOURCES: [&str; 26] = [
    "pods",
    "configmaps",
    "secrets",
    "services",
    "endpointslices",
    "endpoints",
    "ingresses",
    "ingressclasses",
    "gatewayclasses",
    "gateways",
    "httproutes",
    "nodes",
    "namespaces",
    "leases",
    "replicasets",
    "deployments",
    "jobs",
    "daemonsets",
    "cronjobs",
    "poddisruptionbudgets",
    "roles",
    "clusterroles",
    "rolebindings",
    "clusterrolebindings",
    "serviceaccounts",
    "usercertificates",
];

/// How many change batches a subscriber may fall behind before it gets `Lagged`.
const CHANGES_BACKLOG: usize = 256;

/// One batch of applied changes, at the revision the cache reached with it.
#[derive(Debug, Clone)]
pub struct Changes {
    /// The store revision the cache has applied everything up to.
    pub revision: u64,
    /// What changed, in revision order.
    pub changes: Vec<Change>,
    /// Whether this batch comes from a fresh list (the cache fell behind the event log).
    pub relisted: bool,
}

impl Changes {
    /// The changes of one resource.
    pub fn of<'a>(&'a self, resource: &'a str) -> impl Iterator<Item = &'a Change> + 'a {
        self.changes
            .iter()
            .filter(move |change| change.key.resource == resource)
    }
}

/// A cheap handle to the cache; see the module documentation.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Shared>,
}

struct Shared {
    resources: Vec<&'static str>,
    index: RwLock<Index>,
    revision: watch::Sender<u64>,
    changes: broadcast::Sender<Arc<Changes>>,
}

impl Cache {
    /// Lists `resources` from the store (so the cache is complete when this returns) and
    /// starts the reflector on `tracker`; it stops when `shutdown` is cancelled.
    pub fn start(
        store: &Store,
        resources: &[&'static str],
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Cache, StoreError> {
        let cache = Cache::empty(resources);
        let follow = reflector::Reflector::list(store, &cache)?;
        tracker.spawn(follow.run(store.clone(), shutdown));
        Ok(cache)
    }

    fn empty(resources: &[&'static str]) -> Cache {
        Cache {
            inner: Arc::new(Shared {
                resources: resources.to_vec(),
                index: RwLock::default(),
                revision: watch::channel(0).0,
                changes: broadcast::channel(CHANGES_BACKLOG).0,
            }),
        }
    }

    fn read<R>(&self, f: impl FnOnce(&Index) -> R) -> R {
        // Writes are single applies: a poisoned lock still holds a consistent index.
        f(&self
            .inner
            .index
            .read()
            .unwrap_or_else(PoisonError::into_inner))
    }

    /// Applies a batch (the reflector's one write path) and tells subscribers.
    fn publish(
        &self,
        revision: u64,
        relisted: bool,
        apply: impl FnOnce(&mut Index) -> Vec<Change>,
    ) {
        let changes = {
            let mut index = self
                .inner
                .index
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            apply(&mut index)
        };
        if !changes.is_empty() {
            // No subscriber is not an error: nobody needs to hear of it.
            let _ = self.inner.changes.send(Arc::new(Changes {
                revision,
                changes,
                relisted,
            }));
        }
        self.inner.revision.send_if_modified(|current| {
            let newer = revision > *current;
            if newer {
                *current = revision;
            }
            newer
        });
    }

    /// The resources this cache follows.
    pub fn resources(&self) -> &[&'static str] {
        &self.inner.resources
    }

    /// The store revision the cache has applied everything up to.
    pub fn revision(&self) -> u64 {
        *self.inner.revision.borrow()
    }

    /// Waits until the cache has applied `revision`; false if the reflector stopped first.
    pub async fn wait_for(&self, revision: u64) -> bool {
        let mut applied = self.inner.revision.subscribe();
        applied.wait_for(|at| *at >= revision).await.is_ok()
    }

    /// Every batch applied from now on. Subscribe *before* reading a snapshot, so no
    /// change between the two is missed.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Changes>> {
        self.inner.changes.subscribe()
    }

    /// The object under `key`.
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<Value>> {
        self.read(|index| index.get(key))
    }

    /// Every object of `resource`, ordered by namespace and name.
    pub fn list(&self, resource: &str) -> Vec<Arc<Value>> {
        self.read(|index| index.list(resource))
    }

    /// The pods bound to `node` (including those being deleted).
    pub fn pods_on_node(&self, node: &str) -> Vec<Arc<Value>> {
        self.read(|index| index.pods_on_node(node))
    }

    /// The names of the nodes at least one pod is bound to (Node object or not).
    pub fn nodes_with_pods(&self) -> Vec<String> {
        self.read(Index::nodes_with_pods)
    }

    /// The pods bound to no node.
    pub fn unbound_pods(&self) -> Vec<Arc<Value>> {
        self.read(Index::unbound_pods)
    }

    /// The objects whose controller owner (`ownerReferences[].controller`) has `uid`.
    pub fn owned_by(&self, uid: &str) -> Vec<Arc<Value>> {
        self.read(|index| index.owned_by(uid))
    }

    /// The keys of every object of `resource`.
    pub fn keys(&self, resource: &str) -> Vec<ObjectKey> {
        self.list(resource)
            .iter()
            .filter_map(|obj| key_of(resource, obj))
            .collect()
    }

    /// The objects of `kind` that `owner` controls (none when there is no owner): what a
    /// workload controller observes of its own.
    pub fn owned(&self, owner: Option<&Value>, kind: &str) -> Vec<Arc<Value>> {
        let Some(uid) = owner.and_then(|o| o.pointer("/metadata/uid")?.as_str()) else {
            return Vec::new();
        };
        let mut owned = self.owned_by(uid);
        owned.retain(|obj| obj["kind"] == kind);
        owned
    }

    /// The objects of `resource` in `namespace`.
    pub fn in_namespace(&self, resource: &str, namespace: &str) -> Vec<Arc<Value>> {
        self.read(|index| index.in_namespace(resource, namespace))
    }

    /// The pods in `namespace` without a controller owner (what a workload controller may
    /// adopt).
    pub fn uncontrolled_pods(&self, namespace: &str) -> Vec<Arc<Value>> {
        self.read(|index| index.uncontrolled_pods(namespace))
    }
}

/// The store key of an object of `resource` read from the cache (its namespace and name).
pub fn key_of(resource: &str, obj: &Value) -> Option<ObjectKey> {
    let name = obj.pointer("/metadata/name")?.as_str()?;
    Some(
        match obj.pointer("/metadata/namespace").and_then(Value::as_str) {
            Some(namespace) => ObjectKey::namespaced(resource, namespace, name),
            None => ObjectKey::cluster(resource, name),
        },
    )
}

#[cfg(test)]
mod tests;
