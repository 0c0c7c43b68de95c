//! The scheduler: binds pending pods to nodes.
//!
//! The pure half: [`view`] (what a node and a pod look like to the scheduler, read once
//! per pass), [`fit`] (filters, scores, the pick and its explanation), [`affinity`] (node
//! affinity), [`pod_affinity`] (pod affinity and anti-affinity by topology domain) and
//! [`spread`] (topology spread constraints). This module is the level-triggered loop
//! around it. It reads the [`Cache`] (never the store) and recomputes only when a change
//! can matter: a pod that needs scheduling appeared, or a pod or node changed while some
//! pod waits (a node's `Lease` renewal, or a status report while nothing waits, costs
//! nothing). A pass builds each node's view from the pods bound to it (the cache's node
//! index) and, for each unbound pending pod, either binds it (`spec.nodeName` plus
//! `PodScheduled=True`) or records why it cannot (`PodScheduled=False`, reason
//! `Unschedulable`, Kubernetes' `0/N nodes are available: ...` message). The decisions of
//! up to [`BATCH`] pods are written in one store commit (one fsync, not one per pod), each
//! re-checked inside it, and their events in one more; the next pass waits until the cache
//! holds the pass's own writes, so a pod is never counted on a node twice or forgotten.

pub mod affinity;
pub mod fit;
pub mod pod_affinity;
pub mod spread;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::events::{self, Involved, Occurrence, Type};
use crate::informer::{Cache, Changes};
use crate::k8s::conditions::{Condition, set_condition};
use crate::k8s::pods::bound_node_of;
use crate::k8s::time::now_rfc3339;
use crate::metrics::Metrics;

/// The `source.component` of its events.
const COMPONENT: &str = "default-scheduler";
use crate::store::{ObjectKey, Store, StoreError};

use fit::{NodeView, pick_index};
use pod_affinity::NamespaceLabels;
use view::{demand, node_view, occupies_node};

/// How often the scheduler re-plans even without changes.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(30);

/// The most pods placed per store commit (the write lock is held while they are written).
const BATCH: usize = 500;

/// How soon a failed pass is tried again without a change.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// Runs the scheduler until `shutdown` is cancelled.
pub async fn run(store: Store, cache: Cache, metrics: Metrics, shutdown: CancellationToken) {
    let mut changes = cache.subscribe();
    let mut due = true;
    let mut wait = RESYNC_INTERVAL;
    tracing::info!("scheduler started");
    loop {
        if due {
            wait = tokio::select! {
                () = shutdown.cancelled() => break,
                wait = pass(&store, &cache, &metrics) => wait,
            };
        }
        due = tokio::select! {
            () = shutdown.cancelled() => break,
            batch = changes.recv() => match batch {
                Ok(batch) => concerns_scheduling(&batch, &cache),
                Err(RecvError::Lagged(_)) => true,
                Err(RecvError::Closed) => break,
            },
            () = tokio::time::sleep(wait) => true,
        };
    }
    tracing::info!("scheduler stopped");
}

/// One pass, then waits until the cache holds its writes (the next pass must see its
/// binds). Returns how long to wait for the next pass without a change: the resync, or a
/// short retry after a failure.
async fn pass(store: &Store, cache: &Cache, metrics: &Metrics) -> Duration {
    let started = std::time::Instant::now();
    let scheduled = schedule_pending(store, cache);
    metrics.scheduling_pass(started.elapsed());
    let wait = match scheduled {
        Ok(bound) => {
            if bound > 0 {
                tracing::debug!(bound, "scheduler pass bound pods");
            }
            RESYNC_INTERVAL
        }
        Err(err) => {
            tracing::warn!(%err, "scheduler pass failed; retrying");
            RETRY_INTERVAL
        }
    };
    cache.wait_for(store.revision()).await;
    wait
}

/// Whether a batch of changes can change what the scheduler would do.
pub fn concerns_scheduling(batch: &Changes, cache: &Cache) -> bool {
    let arrived = batch
        .of("pods")
        .filter_map(|change| change.new.as_deref())
        .any(obj_needs_scheduling);
    let touched = batch.of("pods").next().is_some() || batch.of("nodes").next().is_some();
    arrived || (touched && cache.unbound_pods().iter().any(|p| obj_needs_scheduling(p)))
}

/// One pass over the cache: tries to place every pending unbound pod. Returns how many
/// were bound.
pub fn schedule_pending(store: &Store, cache: &Cache) -> Result<usize, StoreError> {
    let mut pending: Vec<Pod> = typed(&cache.unbound_pods())
        .into_iter()
        .filter(needs_scheduling)
        .collect();
    if pending.is_empty() {
        return Ok(0);
    }
    tracing::trace!("scheduler pass");
    let namespaces = namespace_labels(cache);
    let mut views: Vec<NodeView> = typed::<Node>(&cache.list("nodes"))
        .iter()
        .map(|node| {
            let mut view = node_view(node);
            for pod in typed::<Pod>(&cache.pods_on_node(&view.name)) {
                view.place(&pod, &namespaces);
            }
            view
        })
        .collect();
    // Oldest first, as a queue would; names break ties so passes are deterministic.
    pending.sort_by(|a, b| {
        let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        created(a)
            .cmp(&created(b))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    let mut bound = 0;
    for batch in pending.chunks(BATCH) {
        bound += place_batch(store, batch, &mut views, &namespaces)?;
    }
    Ok(bound)
}

/// Places a batch of pods: picks a node for each (each pick sees the requests of the pods
/// placed before it), then writes every bind and `Unschedulable` mark in one store commit,
/// each re-checked inside it, then records the events in one more. A pod bound or deleted
/// meanwhile keeps its place in this pass's views only; the next pass builds them afresh.
/// Returns how many were bound.
fn place_batch(
    store: &Store,
    pods: &[Pod],
    views: &mut [NodeView],
    namespaces: &NamespaceLabels,
) -> Result<usize, StoreError> {
    let mut keys = Vec::with_capacity(pods.len());
    let mut placed: Vec<(&Pod, Result<String, String>)> = Vec::with_capacity(pods.len());
    for pod in pods {
        let Some(key) = pod_key(pod) else { continue };
        let want = demand(pod, namespaces);
        let decision = match pick_index(&want, views) {
            Ok(index) => {
                // Counted in its view, so later picks of the pass see it.
                views[index].place_demand(&want);
                Ok(views[index].name.clone())
            }
            Err(no_fit) => Err(no_fit.message),
        };
        keys.push(key);
        placed.push((pod, decision));
    }
    let now = now_rfc3339();
    let written = store.upsert_many(&keys, |index, current| {
        let Some(mut obj) = current.filter(|obj| obj_needs_scheduling(obj)).cloned() else {
            return Ok::<_, StoreError>(None);
        };
        match &placed[index].1 {
            Ok(node) => set_bound(&mut obj, node, &now),
            Err(message) => set_unschedulable(&mut obj, message, &now),
        }
        Ok(Some(obj))
    })?;
    let occurrences: Vec<Occurrence> = placed
        .iter()
        .zip(&keys)
        .zip(&written)
        .filter(|(_, stored)| stored.is_some())
        .map(|(((pod, decision), key), _)| occurrence(pod, key, decision))
        .collect();
    events::record_many(store, &occurrences, COMPONENT);
    Ok(occurrences
        .iter()
        .filter(|o| o.reason == "Scheduled")
        .count())
}

/// The event of a written decision: `Scheduled` or `FailedScheduling`.
fn occurrence(
    pod: &Pod,
    key: &ObjectKey,
    decision: &Result<String, String>,
) -> Occurrence<'static> {
    match decision {
        Ok(node) => {
            tracing::info!(pod = %key, node = %node, "pod scheduled");
            let namespace = key.namespace.as_deref().unwrap_or("");
            Occurrence {
                involved: involved(pod),
                kind: Type::Normal,
                reason: "Scheduled",
                message: format!("Successfully assigned {namespace}/{} to {node}", key.name),
            }
        }
        Err(message) => Occurrence {
            involved: involved(pod),
            kind: Type::Warning,
            reason: "FailedScheduling",
            message: message.clone(),
        },
    }
}

/// The namespaces' labels, for `namespaceSelector`s.
fn namespace_labels(cache: &Cache) -> NamespaceLabels {
    cache
        .list("namespaces")
        .iter()
        .filter_map(|ns| {
            let name = ns.pointer("/metadata/name")?.as_str()?.to_owned();
            let labels = ns.pointer("/metadata/labels").cloned().unwrap_or_default();
            Some((name, labels))
        })
        .collect()
}

/// Binds a pod that still needs scheduling: `spec.nodeName` and `PodScheduled=True`.
fn set_bound(obj: &mut Value, node: &str, now: &str) {
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("nodeName".into(), node.into());
    }
    set_phase_if_missing(obj);
    set_condition(
        obj,
        &Condition {
            type_: "PodScheduled",
            status: "True",
            reason: "",
            message: "",
        },
        now,
    );
}

/// Records why the pod cannot be placed (`PodScheduled=False`, `Unschedulable`); the store
/// writes it only when that changed.
fn set_unschedulable(obj: &mut Value, message: &str, now: &str) {
    set_phase_if_missing(obj);
    set_condition(
        obj,
        &Condition {
            type_: "PodScheduled",
            status: "False",
            reason: "Unschedulable",
            message,
        },
        now,
    );
}

/// The scheduler's events are about the pod.
fn involved(pod: &Pod) -> Involved {
    Involved {
        api_version: "v1".into(),
        kind: "Pod".into(),
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
    }
}

fn set_phase_if_missing(obj: &mut Value) {
    if let Some(map) = obj.as_object_mut() {
        let status = map
            .entry("status")
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        if let Some(status) = status.as_object_mut() {
            status
                .entry("phase")
                .or_insert_with(|| Value::String("Pending".into()));
        }
    }
}

fn typed<T: serde::de::DeserializeOwned>(items: &[Arc<Value>]) -> Vec<T> {
    items
        .iter()
        .filter_map(|item| match T::deserialize(item.as_ref()) {
            Ok(typed) => Some(typed),
            Err(err) => {
                tracing::warn!(%err, "skipping an object the scheduler cannot read");
                None
            }
        })
        .collect()
}

/// Unbound, not being deleted, not finished.
fn needs_scheduling(pod: &Pod) -> bool {
    bound_node_of(pod).is_none()
        && pod.metadata.deletion_timestamp.is_none()
        && pod.spec.is_some()
        && occupies_node(pod)
}

/// [`needs_scheduling`] on the raw object, re-checked inside the write transaction.
fn obj_needs_scheduling(obj: &Value) -> bool {
    use serde::Deserialize as _;
    Pod::deserialize(obj).is_ok_and(|pod| needs_scheduling(&pod))
}

fn pod_key(pod: &Pod) -> Option<ObjectKey> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref()?;
    Some(ObjectKey::namespaced("pods", namespace, name))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;
    use tokio_util::task::TaskTracker;

    use super::*;
    use crate::informer::RESOURCES;
    use crate::store::Scope;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path().join("state.redb")).expect("store");
        (dir, store)
    }

    /// A cache of `store` (stopped with the test's runtime).
    fn cache(store: &Store) -> Cache {
        Cache::start(
            store,
            &RESOURCES,
            CancellationToken::new(),
            &TaskTracker::new(),
        )
        .expect("cache")
    }

    /// A pass once the cache holds every write so far.
    async fn pass(store: &Store, cache: &Cache) -> usize {
        assert!(cache.wait_for(store.revision()).await);
        schedule_pending(store, cache).expect("pass")
    }

    fn add_node(store: &Store, name: &str, arch: &str, memory: &str) {
        let node = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/arch": arch}},
            "status": {
                "allocatable": {"memory": memory, "pods": "10"},
                "conditions": [{"type": "Ready", "status": "True"}]
            }
        });
        store
            .create(&ObjectKey::cluster("nodes", name), node)
            .expect("node");
    }

    fn add_pod(store: &Store, name: &str, memory: &str, selector: Value) -> ObjectKey {
        let key = ObjectKey::namespaced("pods", "default", name);
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "nodeSelector": selector,
                "containers": [{"name": "c", "image": "x", "resources": {"requests": {"memory": memory}}}]
            }
        });
        store.create(&key, pod).expect("pod");
        key
    }

    fn condition(pod: &Value) -> Value {
        pod["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled"))
            .cloned()
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn a_pass_binds_pods_that_fit_and_explains_those_that_do_not() {
        let (_dir, store) = store();
        let cache = cache(&store);
        add_node(&store, "pi-1", "arm64", "1Gi");
        add_node(&store, "x86-1", "amd64", "4Gi");
        let small = add_pod(
            &store,
            "small",
            "512Mi",
            json!({"kubernetes.io/arch": "arm64"}),
        );
        let huge = add_pod(
            &store,
            "huge",
            "2Gi",
            json!({"kubernetes.io/arch": "arm64"}),
        );
        assert_eq!(pass(&store, &cache).await, 1);

        let small = store.get(&small).expect("read").expect("exists");
        assert_eq!(small["spec"]["nodeName"], "pi-1");
        assert_eq!(condition(&small)["status"], "True");
        let huge = store.get(&huge).expect("read").expect("exists");
        assert_eq!(huge["spec"]["nodeName"], Value::Null);
        assert_eq!(condition(&huge)["status"], "False");
        assert_eq!(condition(&huge)["reason"], "Unschedulable");
        assert_eq!(
            condition(&huge)["message"],
            "0/2 nodes are available: 1 Insufficient memory, \
             1 node(s) didn't match Pod's node affinity/selector."
        );
    }

    #[tokio::test]
    async fn a_pass_over_more_pods_than_a_batch_binds_each_once_within_node_limits() {
        let (_dir, store) = store();
        let cache = cache(&store);
        for i in 0..60 {
            add_node(&store, &format!("n-{i:02}"), "amd64", "1Gi");
        }
        let pods = BATCH + 5;
        for i in 0..pods {
            add_pod(&store, &format!("p-{i:03}"), "1Mi", json!({}));
        }
        assert_eq!(pass(&store, &cache).await, pods);
        let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
        for pod in store.list(&Scope::all("pods")).expect("pods").items {
            assert_eq!(condition(&pod)["status"], "True", "{pod}");
            let node = pod["spec"]["nodeName"].as_str().expect("bound").to_owned();
            *per_node.entry(node).or_default() += 1;
        }
        assert!(per_node.values().all(|n| *n <= 10), "{per_node:?}");
        let scheduled = store
            .list(&Scope::all("events"))
            .expect("events")
            .items
            .iter()
            .filter(|e| e["reason"] == "Scheduled" && e["count"] == 1)
            .count();
        assert_eq!(scheduled, pods, "one Scheduled event per pod");
    }

    #[tokio::test]
    async fn a_pass_with_nothing_new_writes_nothing() {
        let (_dir, store) = store();
        let cache = cache(&store);
        add_node(&store, "pi-1", "arm64", "1Gi");
        add_pod(&store, "huge", "2Gi", json!({}));
        pass(&store, &cache).await;
        let revision = store.revision();
        pass(&store, &cache).await;
        assert_eq!(store.revision(), revision);
    }

    #[tokio::test]
    async fn pods_placed_in_one_pass_count_against_the_node() {
        let (_dir, store) = store();
        let cache = cache(&store);
        add_node(&store, "pi-1", "arm64", "1Gi");
        add_pod(&store, "a", "600Mi", json!({}));
        add_pod(&store, "b", "600Mi", json!({}));
        assert_eq!(pass(&store, &cache).await, 1);
    }

    #[tokio::test]
    async fn pods_bound_in_an_earlier_pass_count_against_the_node() {
        let (_dir, store) = store();
        let cache = cache(&store);
        add_node(&store, "pi-1", "arm64", "1Gi");
        add_pod(&store, "a", "600Mi", json!({}));
        assert_eq!(pass(&store, &cache).await, 1);
        add_pod(&store, "b", "600Mi", json!({}));
        assert_eq!(pass(&store, &cache).await, 0);
    }

    #[tokio::test]
    async fn a_lease_renewal_or_a_bound_pods_status_does_not_concern_the_scheduler() {
        let (_dir, store) = store();
        let cache = cache(&store);
        add_node(&store, "pi-1", "arm64", "1Gi");
        let key = add_pod(&store, "a", "1Mi", json!({}));
        pass(&store, &cache).await;
        let mut changes = cache.subscribe();
        crate::controllers::leases::write_lease(&store, "pi-1", Duration::from_secs(40))
            .expect("lease");
        store
            .update_with(&key, |pod: &mut Value| {
                pod["status"]["phase"] = "Running".into();
                Ok::<(), StoreError>(())
            })
            .expect("status");
        let written = store.revision();
        loop {
            let batch = changes.recv().await.expect("a batch");
            assert!(!concerns_scheduling(&batch, &cache), "{batch:?}");
            if batch.revision >= written {
                break;
            }
        }
        add_pod(&store, "b", "1Mi", json!({}));
        let batch = changes.recv().await.expect("a batch");
        assert!(concerns_scheduling(&batch, &cache));
    }

    #[tokio::test]
    async fn the_loop_binds_a_pod_created_after_it_started() {
        let (_dir, store) = store();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(
            store.clone(),
            cache(&store),
            Metrics::new(),
            shutdown.clone(),
        ));
        add_node(&store, "pi-1", "arm64", "1Gi");
        let key = add_pod(&store, "late", "1Mi", json!({}));
        let bound = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let pod = store.get(&key).expect("read").expect("exists");
                if pod["spec"]["nodeName"] == "pi-1" {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        shutdown.cancel();
        task.await.expect("scheduler task");
        assert!(bound.is_ok(), "the pod was not bound");
    }
}
