//! The desired-state publisher: the task that runs [`super::desired`]'s plans and publishes
//! the result.
//!
//! [`DesiredPublisher`] reads the informer's [`Cache`] and re-plans only the nodes a change
//! touches ([`affected_nodes`]: a pod added, deleted or changed outside its status, on its
//! old and new node; a node that appeared; [`config_users`]: a ConfigMap or Secret changed,
//! on the nodes of the pods that refer to it (`k8s::references`), so a mounted ConfigMap's
//! new content reaches the pod's files), every node on a module change, a resync, a
//! re-list or a missed change, and publishes only what changed (pods, then the index, then
//! the clears), and everything again after every (re)connect. A status report or a `Lease`
//! renewal re-plans nothing. Pods' ServiceAccount tokens ([`PodTokens`]) are reused
//! between passes; the publisher wakes up when one is due for refresh and re-plans its
//! node. The index `revision` is the cache's store revision plus the
//! module store's generation: both persist and only grow, and a module arriving changes a
//! pod without a store write, so the plain store revision could repeat (agents ignore an
//! index whose revision is not newer than the last one they applied).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use wasmfleet_protocol::network::ClusterCidr;

use k8s_openapi::api::core::v1::Pod;
use rumqttc::{AsyncClient, QoS};
use serde::Deserialize as _;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wasmfleet_protocol::debounce::Debounce;
use wasmfleet_protocol::topic::{self, Down};
use wasmfleet_protocol::{Message, encode};

use super::config;
use super::desired::{
    Delivery, Sent, UNDELIVERABLE, Unresolved, awaits_confirmation, desired_for_node, index_of,
    mark_undeliverable, mark_unresolved, namespace_and_name, plan_delivery,
};
use crate::identity::pod_tokens::{PodTokens, TokenProjection};
use crate::informer::{Cache, Changes};
use crate::k8s::pods::running_node;
use crate::k8s::references;
use crate::modules::ModuleStore;
use crate::store::{ObjectKey, Store, StoreError};

/// Publishes desired snapshots; see the module documentation.
pub struct DesiredPublisher {
    client: AsyncClient,
    store: Store,
    cache: Cache,
    modules: ModuleStore,
    cluster: ClusterCidr,
    republish: Arc<Notify>,
    /// What each node was last sent.
    published: HashMap<String, Sent>,
    /// Missing images already written to the store, per node, so they are written once.
    marked: HashMap<String, BTreeSet<(String, String, String)>>,
    /// Issues (and keeps) pods' projected ServiceAccount tokens; `None`: none are issued.
    tokens: Option<Arc<PodTokens>>,
}

/// How long changes must pause before a pass: a lone change (a pod just scheduled) is
/// published within milliseconds.
const PASS_QUIET: Duration = Duration::from_millis(2);

/// Passes are at least this far apart, so a burst of changes (a large apply) costs one pass
/// per this time however long it lasts.
const PASS_SPACING: Duration = Duration::from_millis(20);

/// When the next pass of a publisher of desired or retained state is due
/// ([`Debounce`]'s rule).
pub(super) fn passes() -> Debounce<Instant> {
    Debounce::new(PASS_QUIET, PASS_SPACING)
}

/// Which nodes a pass re-plans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// Every node (start, resync, module change, reconnect, or a missed change).
    All,
    /// Only these.
    Nodes(BTreeSet<String>),
}

impl Targets {
    /// Adds the nodes a batch affects; a fresh list (the cache fell behind) affects all.
    fn add_batch(&mut self, batch: &Changes, cache: &Cache) {
        if batch.relisted {
            *self = Targets::All;
        } else if let Targets::Nodes(nodes) = self {
            nodes.extend(affected_nodes(batch));
            nodes.extend(config_users(batch, &|ns| cache.in_namespace("pods", ns)));
        }
    }

    /// Adds `nodes` (whose pods' tokens are due), keeping what a failed pass left.
    fn add_nodes(&mut self, more: BTreeSet<String>) {
        if let Targets::Nodes(nodes) = self {
            nodes.extend(more);
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, Targets::Nodes(nodes) if nodes.is_empty())
    }
}

/// The nodes whose snapshots a batch of changes can alter: the old and new node of a pod
/// whose delivered form may have changed (added, deleted, a change outside `status`, or
/// its pod IP), and nodes that appeared. Other status changes and other resources (leases)
/// alter no snapshot.
pub fn affected_nodes(batch: &Changes) -> BTreeSet<String> {
    let mut nodes = BTreeSet::new();
    for change in batch.of("pods") {
        let (old, new) = (change.old.as_deref(), change.new.as_deref());
        let ip = |pod: Option<&Value>| pod.and_then(|p| p.pointer("/status/podIP")).cloned();
        if old.is_some() && new.is_some() && !outside_status_differs(old, new) && ip(old) == ip(new)
        {
            continue;
        }
        nodes.extend(old.and_then(running_node).map(str::to_owned));
        nodes.extend(new.and_then(running_node).map(str::to_owned));
    }
    for change in batch.of("nodes") {
        if change.old.is_none() {
            nodes.insert(change.key.name.clone());
        }
    }
    nodes
}

/// The nodes of the pods that refer to a ConfigMap or Secret the batch changed: their
/// delivered form holds its values. `pods_in` lists a namespace's pods.
pub fn config_users(
    batch: &Changes,
    pods_in: &dyn Fn(&str) -> Vec<Arc<Value>>,
) -> BTreeSet<String> {
    let mut nodes = BTreeSet::new();
    for resource in ["configmaps", "secrets"] {
        for change in batch.of(resource) {
            let namespace = change.key.namespace.as_deref().unwrap_or("default");
            for pod in pods_in(namespace) {
                let Some(node) = running_node(&pod) else {
                    continue;
                };
                let Ok(typed) = Pod::deserialize(pod.as_ref()) else {
                    continue;
                };
                let refs = references::of(&typed);
                let uses = match resource {
                    "configmaps" => refs.uses_config_map(&change.key.name),
                    _ => refs.uses_secret(&change.key.name),
                };
                if uses {
                    nodes.insert(node.to_owned());
                }
            }
        }
    }
    nodes
}

/// Whether two versions of an object differ anywhere but `status` and `resourceVersion`.
fn outside_status_differs(old: Option<&Value>, new: Option<&Value>) -> bool {
    let strip = |obj: Option<&Value>| {
        let mut obj = obj.cloned().unwrap_or_default();
        if let Some(map) = obj.as_object_mut() {
            map.remove("status");
        }
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        obj
    };
    strip(old) != strip(new)
}

impl DesiredPublisher {
    /// A publisher that has published nothing yet.
    pub fn new(
        client: AsyncClient,
        store: Store,
        cache: Cache,
        modules: ModuleStore,
        cluster: ClusterCidr,
    ) -> Self {
        Self {
            client,
            store,
            cache,
            modules,
            cluster,
            republish: Arc::new(Notify::new()),
            published: HashMap::new(),
            marked: HashMap::new(),
            tokens: None,
        }
    }

    /// Issues pods' projected ServiceAccount tokens with `tokens`.
    pub fn with_tokens(mut self, tokens: Option<Arc<PodTokens>>) -> Self {
        self.tokens = tokens;
        self
    }

    /// Notifying this makes the next pass publish every snapshot (after a reconnect).
    pub fn republish_trigger(&self) -> Arc<Notify> {
        Arc::clone(&self.republish)
    }

    /// Runs until `shutdown`.
    pub async fn run(mut self, resync: Duration, shutdown: CancellationToken) {
        let mut changes = self.cache.subscribe();
        let mut module_changes = self.modules.subscribe();
        let republish = Arc::clone(&self.republish);
        let mut force = false;
        let mut targets = Targets::All;
        let mut pending = passes();
        pending.change(Instant::now());
        loop {
            let due = pending.due();
            let mut changed = true;
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                    pending.sent(Instant::now());
                    changed = false;
                    drain(&mut changes, &mut targets, &self.cache);
                    module_changes.borrow_and_update();
                    if force {
                        self.published.clear();
                    }
                    // A publish can wait forever once the event loop has stopped: bail out
                    // at shutdown.
                    let outcome = tokio::select! {
                        () = shutdown.cancelled() => break,
                        outcome = self.pass(&targets) => outcome,
                    };
                    match outcome {
                        Ok(()) => {
                            force = false;
                            targets = Targets::Nodes(BTreeSet::new());
                        }
                        Err(err) => tracing::warn!(%err, "desired-state pass failed; retrying on the next change"),
                    }
                }
                () = republish.notified() => {
                    force = true;
                    targets = Targets::All;
                }
                batch = changes.recv() => match batch {
                    Ok(batch) => targets.add_batch(&batch, &self.cache),
                    Err(RecvError::Lagged(_)) => targets = Targets::All,
                    Err(RecvError::Closed) => break,
                },
                module_changed = module_changes.changed() => {
                    if module_changed.is_err() { break }
                    targets = Targets::All;
                }
                () = tokio::time::sleep(resync) => targets = Targets::All,
                due = token_refresh(self.tokens.clone()) => targets.add_nodes(due),
            }
            if changed && !targets.is_empty() {
                pending.change(Instant::now());
            }
        }
    }

    /// The nodes a pass over `targets` plans: Node objects and nodes with pods, limited to
    /// valid node names.
    fn nodes(&self, targets: &Targets) -> BTreeSet<String> {
        let mut nodes: BTreeSet<String> = match targets {
            Targets::Nodes(nodes) => nodes.clone(),
            Targets::All => self
                .cache
                .list("nodes")
                .iter()
                .filter_map(|n| n.pointer("/metadata/name")?.as_str().map(str::to_owned))
                .chain(self.cache.nodes_with_pods())
                .collect(),
        };
        // A name that is not a valid node name could carry MQTT wildcards or levels into the
        // topic (and get the fleet disconnected): such pods simply never reach a node.
        nodes.retain(|node| wasmfleet_protocol::names::validate_node_name(node).is_ok());
        nodes
    }

    /// Plans the target nodes and publishes what changed.
    async fn pass(&mut self, targets: &Targets) -> Result<(), PassError> {
        tracing::trace!(all = matches!(targets, Targets::All), "desired pass");
        // Module arrivals change snapshots without a store write: adding the module store's
        // generation keeps the revision growing with every change to what a node runs.
        let revision = self.cache.revision() + self.modules.generation()?;
        let modules = self.modules.clone();
        let resolve = move |image: &str| modules.resolve(image).ok().flatten();
        let cache = self.cache.clone();
        let lookup = move |resource: &str, namespace: &str, name: &str| {
            let object = cache.get(&ObjectKey::namespaced(resource, namespace, name))?;
            Some(config::data_of(resource, &object))
        };
        let issue = self.token_source(revision);
        for node in self.nodes(targets) {
            let pods: Vec<Pod> = self
                .cache
                .pods_on_node(&node)
                .iter()
                .filter_map(|pod| Pod::deserialize(pod.as_ref()).ok())
                .collect();
            // Built per node: a `Sources` (plain `dyn Fn`s) may not be held across an await.
            let sources = config::Sources {
                objects: &lookup,
                tokens: &issue,
            };
            let plan = desired_for_node(&node, &pods, &resolve, sources, self.cluster, revision);
            if let Some(tokens) = &self.tokens {
                let uids = pods.iter().filter_map(|p| p.metadata.uid.as_deref());
                tokens.keep_only(&node, &uids.collect());
            }
            let sent = self.published.get(&node);
            let mut delivery = plan_delivery(sent, plan.desired.pods, revision);
            if delivery.index.is_none() && awaits_confirmation(&pods, sent) {
                delivery.index = Some(index_of(&delivery.sent, revision));
            }
            let refused: BTreeMap<(String, String), String> = delivery
                .refused
                .iter()
                .map(|r| ((r.namespace.clone(), r.pod.clone()), r.why.to_string()))
                .collect();
            self.deliver(&node, revision, delivery).await?;
            self.mark_all(&node, &plan.unresolved)?;
            self.mark_refused(&pods, &refused)?;
        }
        Ok(())
    }

    /// Issues the tokens of a pass at `revision`: the account is read from the cache.
    fn token_source(
        &self,
        revision: u64,
    ) -> impl Fn(&TokenProjection) -> Result<String, String> + use<> {
        let (tokens, cache) = (self.tokens.clone(), self.cache.clone());
        let now = jiff::Timestamp::now().as_second();
        move |projection: &TokenProjection| {
            let Some(tokens) = &tokens else {
                return Err("this server issues no ServiceAccount tokens".into());
            };
            let key = ObjectKey::namespaced(
                "serviceaccounts",
                &projection.namespace,
                &projection.account,
            );
            let account = cache.get(&key);
            tokens
                .token(projection, account.as_deref(), (now, revision))
                .map_err(|err| err.to_string())
        }
    }

    /// Publishes a node's changed pods, then its index, then clears the pods that left.
    async fn deliver(
        &mut self,
        node: &str,
        revision: u64,
        delivery: Delivery,
    ) -> Result<(), PassError> {
        for (uid, payload) in delivery.publish {
            self.retain(topic::down_pod(node, &uid), payload).await?;
        }
        if let Some(index) = delivery.index {
            let pods = index.pods.len();
            self.retain(
                topic::down(node, Down::Desired),
                encode(&Message::DesiredIndex(index)),
            )
            .await?;
            tracing::debug!(%node, revision, pods, "desired index published");
        }
        for uid in delivery.clear {
            self.retain(topic::down_pod(node, &uid), Vec::new()).await?;
        }
        self.published.insert(node.to_owned(), delivery.sent);
        Ok(())
    }

    async fn retain(&self, topic: String, payload: Vec<u8>) -> Result<(), PassError> {
        self.client
            .publish(topic, QoS::AtLeastOnce, true, payload)
            .await?;
        Ok(())
    }

    /// Marks pods that cannot be delivered and unmarks those that now can.
    fn mark_refused(
        &self,
        pods: &[Pod],
        refused: &BTreeMap<(String, String), String>,
    ) -> Result<(), StoreError> {
        for pod in pods {
            let (namespace, name) = namespace_and_name(pod);
            let why = refused.get(&(namespace.clone(), name.clone()));
            let status = pod.status.as_ref();
            let marked = status.and_then(|s| s.reason.as_deref()) == Some(UNDELIVERABLE);
            let current = status.and_then(|s| s.message.as_ref()).filter(|_| marked);
            if why == current {
                continue;
            }
            let key = ObjectKey::namespaced("pods", &namespace, &name);
            let result = self.store.update_with(&key, |obj: &mut Value| {
                mark_undeliverable(obj, why.map(String::as_str));
                Ok::<(), StoreError>(())
            });
            match result {
                Ok(_) | Err(StoreError::NotFound(_)) => {}
                Err(err) => return Err(err),
            }
            match why {
                Some(why) => {
                    tracing::warn!(%namespace, pod = %name, "pod cannot be delivered to its node: {why}")
                }
                None => tracing::info!(%namespace, pod = %name, "pod can be delivered again"),
            }
        }
        Ok(())
    }

    /// Writes `ErrModuleNotFound` or `CreateContainerConfigError` for newly unresolved
    /// containers.
    fn mark_all(&mut self, node: &str, unresolved: &[Unresolved]) -> Result<(), StoreError> {
        let marked = self.marked.remove(node).unwrap_or_default();
        let mut by_pod: BTreeMap<(String, String), Vec<&Unresolved>> = BTreeMap::new();
        for u in unresolved {
            by_pod
                .entry((u.namespace.clone(), u.pod.clone()))
                .or_default()
                .push(u);
        }
        let current: BTreeSet<(String, String, String)> = unresolved
            .iter()
            .map(|u| (u.namespace.clone(), u.pod.clone(), u.message.clone()))
            .collect();
        for ((namespace, pod), missing) in by_pod {
            let fresh = missing
                .iter()
                .any(|m| !marked.contains(&(namespace.clone(), pod.clone(), m.message.clone())));
            if !fresh {
                continue;
            }
            let key = ObjectKey::namespaced("pods", &namespace, &pod);
            let result = self.store.update_with(&key, |obj: &mut Value| {
                mark_unresolved(obj, &missing);
                Ok::<(), StoreError>(())
            });
            match result {
                Ok(_) | Err(StoreError::NotFound(_)) => {}
                Err(err) => return Err(err),
            }
            tracing::warn!(%namespace, %pod, reason = missing[0].reason, message = %missing[0].message, "pod waits: a container cannot start");
        }
        if !current.is_empty() {
            self.marked.insert(node.to_owned(), current);
        }
        Ok(())
    }
}

/// Waits until a pod's token is due for refresh; returns the nodes to re-plan. Never
/// returns without tokens.
async fn token_refresh(tokens: Option<Arc<PodTokens>>) -> BTreeSet<String> {
    let Some(at) = tokens.as_ref().and_then(|t| t.next_refresh()) else {
        return std::future::pending().await;
    };
    let wait = at.saturating_sub(jiff::Timestamp::now().as_second()).max(0);
    tokio::time::sleep(Duration::from_secs(wait.unsigned_abs())).await;
    match tokens {
        Some(tokens) => tokens.nodes_due(jiff::Timestamp::now().as_second()),
        None => BTreeSet::new(),
    }
}

/// Adds the nodes of every batch already waiting to `targets`.
fn drain(changes: &mut broadcast::Receiver<Arc<Changes>>, targets: &mut Targets, cache: &Cache) {
    loop {
        match changes.try_recv() {
            Ok(batch) => targets.add_batch(&batch, cache),
            Err(broadcast::error::TryRecvError::Lagged(_)) => *targets = Targets::All,
            Err(_) => return,
        }
    }
}

/// Why a desired-state pass failed.
#[derive(Debug, thiserror::Error)]
enum PassError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot publish: {0}")]
    Publish(#[from] rumqttc::ClientError),
    #[error(transparent)]
    Modules(#[from] crate::modules::ModuleError),
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn change(key: ObjectKey, old: Option<Value>, new: Option<Value>) -> crate::informer::Change {
        crate::informer::Change {
            key,
            old: old.map(Arc::new),
            new: new.map(Arc::new),
        }
    }

    fn batch(changes: Vec<crate::informer::Change>) -> Changes {
        Changes {
            revision: 1,
            changes,
            relisted: false,
        }
    }

    #[tokio::test]
    async fn the_publisher_wakes_up_for_the_nodes_whose_tokens_are_due() {
        use crate::identity::service_account_tokens::TokenSigner;
        let signer = TokenSigner::from_pkcs8(&TokenSigner::generate().unwrap()).unwrap();
        let tokens = Arc::new(PodTokens::new(Arc::new(signer)));
        let never = tokio::time::timeout(Duration::from_millis(50), token_refresh(None));
        assert!(never.await.is_err(), "no tokens: no wake-up");
        let empty = token_refresh(Some(Arc::clone(&tokens)));
        let empty = tokio::time::timeout(Duration::from_millis(50), empty);
        assert!(empty.await.is_err(), "no token issued yet: no wake-up");
        let source = k8s_openapi::api::core::v1::ServiceAccountTokenProjection {
            expiration_seconds: Some(600),
            ..Default::default()
        };
        let projection =
            TokenProjection::new(("ns", "p", "uid-1"), ("pi-1", "robot", "tok"), &source);
        let account = json!({"metadata": {"uid": "sa-1"}});
        // Issued 500 s ago: its refresh (after 480 s) is due.
        let issued = jiff::Timestamp::now().as_second() - 500;
        tokens
            .token(&projection, Some(&account), (issued, 1))
            .unwrap();
        let due = tokio::time::timeout(Duration::from_secs(5), token_refresh(Some(tokens)));
        assert_eq!(due.await.unwrap(), BTreeSet::from(["pi-1".to_owned()]));
    }

    #[test]
    fn only_changes_to_what_a_node_is_sent_affect_its_snapshot() {
        let key = ObjectKey::namespaced("pods", "default", "web");
        let bound = json!({"metadata": {"name": "web", "uid": "u"}, "spec": {"nodeName": "pi-1"}});
        let mut reported = bound.clone();
        reported["status"] = json!({"phase": "Running"});
        reported["metadata"]["resourceVersion"] = json!("9");
        let lease = ObjectKey::namespaced("leases", "kube-node-lease", "pi-1");
        let quiet = batch(vec![
            change(key.clone(), Some(bound.clone()), Some(reported)),
            change(
                lease,
                Some(json!({"spec": {"renewTime": "a"}})),
                Some(json!({"spec": {"renewTime": "b"}})),
            ),
        ]);
        assert!(affected_nodes(&quiet).is_empty());

        let mut moved = bound.clone();
        moved["spec"]["nodeName"] = json!("pi-2");
        let node = ObjectKey::cluster("nodes", "pi-3");
        let busy = batch(vec![
            change(key.clone(), Some(bound.clone()), Some(moved)),
            change(node, None, Some(json!({"metadata": {"name": "pi-3"}}))),
        ]);
        let expected: BTreeSet<String> = ["pi-1", "pi-2", "pi-3"].map(str::to_owned).into();
        assert_eq!(affected_nodes(&busy), expected);

        let mut deleting = bound.clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        let gone = batch(vec![change(
            key.clone(),
            Some(bound.clone()),
            Some(deleting),
        )]);
        assert_eq!(affected_nodes(&gone), BTreeSet::from(["pi-1".to_owned()]));

        // The pod's IP is part of what the node is sent.
        let mut addressed = bound.clone();
        addressed["status"] = json!({"podIP": "10.42.0.2"});
        let ip = batch(vec![change(key, Some(bound), Some(addressed))]);
        assert_eq!(affected_nodes(&ip), BTreeSet::from(["pi-1".to_owned()]));
    }
}
