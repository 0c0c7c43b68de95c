//! Desired state: each node's retained snapshot of the pods bound to it.
//!
//! [`desired_for_node`] is the pure planner: the pods with `spec.nodeName` = node and no
//! `deletionTimestamp`, with images resolved to module digests. A pod whose images do not
//! all resolve is left out (it cannot run yet) and reported in [`Plan::unresolved`], so its
//! containers get `waiting.reason = ErrModuleNotFound` in the store.
//!
//! [`DesiredPublisher`] re-plans on every store change, module change and resync, publishes
//! (retained, QoS 1) only the snapshots whose pods changed, and publishes all of them after
//! every (re)connect. A snapshot's `revision` is the store revision plus the module store's
//! generation: both persist and only grow, and a module arriving changes a snapshot without
//! a store write, so the plain store revision could repeat (agents ignore a snapshot whose
//! revision is not newer than the last one they applied).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use rumqttc::{AsyncClient, QoS};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use wasmfleet_protocol::pod::{
    ContainerSpec, DesiredPods, ModuleRef, PodAssignment, RestartPolicy,
};
use wasmfleet_protocol::topic::{self, Down};
use wasmfleet_protocol::{Message, encode};

use crate::modules::ModuleStore;
use crate::scheduler::quantity;
use crate::store::{ObjectKey, Scope, Store, StoreError};

/// The waiting reason of a container whose image is not in the module store.
pub const MODULE_NOT_FOUND: &str = "ErrModuleNotFound";

/// A container whose image does not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The container's name.
    pub container: String,
    /// The image as written.
    pub image: String,
}

/// A node's desired snapshot and the containers that kept pods out of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The snapshot to publish.
    pub desired: DesiredPods,
    /// Containers whose images are unknown.
    pub unresolved: Vec<Unresolved>,
}

/// Plans the snapshot for `node` from every pod in the cluster.
pub fn desired_for_node(
    node: &str,
    pods: &[Pod],
    resolve: &dyn Fn(&str) -> Option<ModuleRef>,
    revision: u64,
) -> Plan {
    let mut assignments = Vec::new();
    let mut unresolved = Vec::new();
    for pod in pods.iter().filter(|p| runs_on(p, node)) {
        match assignment(pod, resolve) {
            Ok(assignment) => assignments.push(assignment),
            Err(mut missing) => unresolved.append(&mut missing),
        }
    }
    assignments.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Plan {
        desired: DesiredPods {
            revision,
            pods: assignments,
        },
        unresolved,
    }
}

/// The node a pod is bound to, if it is bound and not being deleted.
pub fn bound_node(pod: &Pod) -> Option<&str> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn runs_on(pod: &Pod, node: &str) -> bool {
    bound_node(pod) == Some(node) && pod.metadata.uid.is_some()
}

fn assignment(
    pod: &Pod,
    resolve: &dyn Fn(&str) -> Option<ModuleRef>,
) -> Result<PodAssignment, Vec<Unresolved>> {
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let containers = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
    let mut specs = Vec::new();
    let mut missing = Vec::new();
    for container in containers {
        let image = container.image.clone().unwrap_or_default();
        match resolve(&image) {
            Some(module) => specs.push(container_spec(container, image, module)),
            None => missing.push(Unresolved {
                namespace: namespace.clone(),
                pod: name.clone(),
                container: container.name.clone(),
                image,
            }),
        }
    }
    if !missing.is_empty() {
        return Err(missing);
    }
    Ok(PodAssignment {
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        namespace,
        name,
        restart_policy: restart_policy(spec.and_then(|s| s.restart_policy.as_deref())),
        containers: specs,
    })
}

fn restart_policy(policy: Option<&str>) -> RestartPolicy {
    match policy {
        Some("Never") => RestartPolicy::Never,
        Some("OnFailure") => RestartPolicy::OnFailure,
        _ => RestartPolicy::Always,
    }
}

fn container_spec(container: &Container, image: String, module: ModuleRef) -> ContainerSpec {
    let limit = |name: &str| {
        container
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get(name))
            .map(|q| q.0.clone())
    };
    ContainerSpec {
        name: container.name.clone(),
        image,
        module,
        command: container.command.clone().unwrap_or_default(),
        args: container.args.clone().unwrap_or_default(),
        env: container
            .env
            .iter()
            .flatten()
            .map(|var| (var.name.clone(), var.value.clone().unwrap_or_default()))
            .collect(),
        memory_limit_bytes: limit("memory").and_then(|q| quantity::memory_bytes(&q).ok()),
        cpu_limit_millis: limit("cpu").and_then(|q| quantity::cpu_millis(&q).ok()),
    }
}

/// The message telling users which image is missing.
pub fn not_found_message(image: &str) -> String {
    format!("module {image:?} not found in the module store; push it with `wasmfleet push`")
}

/// Marks the containers of a pod whose images are missing (`ErrModuleNotFound`) and the
/// others as `ContainerCreating`. Returns whether the pod changed; an already-marked pod is
/// left alone, so this runs once per missing image, not on every pass.
pub fn mark_unresolved(pod: &mut Value, missing: &[&Unresolved]) -> bool {
    let containers: Vec<(String, String)> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    let field = |f: &str| c.get(f).and_then(Value::as_str).unwrap_or("").to_owned();
                    (field("name"), field("image"))
                })
                .collect()
        })
        .unwrap_or_default();
    let statuses: Vec<Value> = containers
        .iter()
        .map(|(name, image)| {
            let waiting = match missing.iter().find(|m| &m.container == name) {
                Some(m) => {
                    json!({"reason": MODULE_NOT_FOUND, "message": not_found_message(&m.image)})
                }
                None => json!({"reason": "ContainerCreating"}),
            };
            json!({
                "name": name,
                "image": image,
                "imageID": "",
                "ready": false,
                "started": false,
                "restartCount": 0,
                "state": {"waiting": waiting},
            })
        })
        .collect();
    let Some(map) = pod.as_object_mut() else {
        return false;
    };
    let status = map
        .entry("status")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    let Some(status) = status.as_object_mut() else {
        return false;
    };
    let new = Value::Array(statuses);
    if status.get("containerStatuses") == Some(&new) {
        return false;
    }
    status.insert("containerStatuses".into(), new);
    status
        .entry("phase")
        .or_insert_with(|| Value::String("Pending".into()));
    true
}

/// Publishes desired snapshots; see the module documentation.
pub struct DesiredPublisher {
    client: AsyncClient,
    store: Store,
    modules: ModuleStore,
    republish: Arc<Notify>,
    /// What each node was last sent (pods only; revisions always move).
    published: HashMap<String, Vec<PodAssignment>>,
    /// Missing images already written to the store, so they are written once.
    marked: BTreeSet<(String, String, String)>,
}

/// How long to wait after a change for more changes, so bursts cost one pass.
const SETTLE: Duration = Duration::from_millis(20);

impl DesiredPublisher {
    /// A publisher that has published nothing yet.
    pub fn new(client: AsyncClient, store: Store, modules: ModuleStore) -> Self {
        Self {
            client,
            store,
            modules,
            republish: Arc::new(Notify::new()),
            published: HashMap::new(),
            marked: BTreeSet::new(),
        }
    }

    /// Notifying this makes the next pass publish every snapshot (after a reconnect).
    pub fn republish_trigger(&self) -> Arc<Notify> {
        Arc::clone(&self.republish)
    }

    /// Runs until `shutdown`.
    pub async fn run(mut self, resync: Duration, shutdown: CancellationToken) {
        let mut store_changes = self.store.subscribe();
        let mut module_changes = self.modules.subscribe();
        let republish = Arc::clone(&self.republish);
        let mut force = false;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = republish.notified() => force = true,
                changed = store_changes.changed() => if changed.is_err() { break },
                changed = module_changes.changed() => if changed.is_err() { break },
                () = tokio::time::sleep(resync) => {}
            }
            tokio::time::sleep(SETTLE).await;
            store_changes.borrow_and_update();
            module_changes.borrow_and_update();
            if force {
                self.published.clear();
            }
            // A publish can wait forever once the event loop has stopped: bail out at shutdown.
            let outcome = tokio::select! {
                () = shutdown.cancelled() => break,
                outcome = self.pass() => outcome,
            };
            match outcome {
                Ok(()) => force = false,
                Err(err) => {
                    tracing::warn!(%err, "desired-state pass failed; retrying on the next change")
                }
            }
        }
    }

    /// Plans every node and publishes what changed.
    async fn pass(&mut self) -> Result<(), PassError> {
        let listing = self.store.list(&Scope::all("pods"))?;
        // Module arrivals change snapshots without a store write: adding the module store's
        // generation keeps the revision growing with every change to what a node runs.
        let revision = listing.revision + self.modules.generation()?;
        let pods: Vec<Pod> = listing
            .items
            .into_iter()
            .filter_map(|item| serde_json::from_value(item).ok())
            .collect();
        let mut nodes: BTreeSet<String> = self
            .store
            .list(&Scope::all("nodes"))?
            .items
            .iter()
            .filter_map(|n| n.pointer("/metadata/name")?.as_str().map(str::to_owned))
            .collect();
        nodes.extend(pods.iter().filter_map(bound_node).map(str::to_owned));
        // A name that is not a valid node name could carry MQTT wildcards or levels into the
        // topic (and get the fleet disconnected): such pods simply never reach a node.
        nodes.retain(|node| wasmfleet_protocol::names::validate_node_name(node).is_ok());
        let modules = self.modules.clone();
        let resolve = move |image: &str| modules.resolve(image).ok().flatten();
        let mut all_unresolved = Vec::new();
        for node in &nodes {
            let plan = desired_for_node(node, &pods, &resolve, revision);
            all_unresolved.extend(plan.unresolved);
            if self.published.get(node) != Some(&plan.desired.pods) {
                self.publish(node, plan.desired).await?;
            }
        }
        self.mark_all(&all_unresolved)?;
        Ok(())
    }

    async fn publish(&mut self, node: &str, desired: DesiredPods) -> Result<(), PassError> {
        let payload = encode(&Message::Desired(desired.clone()));
        if payload.len() > wasmfleet_protocol::MAX_MESSAGE_SIZE {
            tracing::error!(%node, size = payload.len(), "desired snapshot too large to send; node keeps its previous one");
            return Ok(());
        }
        self.client
            .publish(
                topic::down(node, Down::Desired),
                QoS::AtLeastOnce,
                true,
                payload,
            )
            .await?;
        tracing::debug!(%node, revision = desired.revision, pods = desired.pods.len(), "desired snapshot published");
        self.published.insert(node.to_owned(), desired.pods);
        Ok(())
    }

    /// Writes `ErrModuleNotFound` for newly unresolved containers.
    fn mark_all(&mut self, unresolved: &[Unresolved]) -> Result<(), StoreError> {
        let mut by_pod: BTreeMap<(String, String), Vec<&Unresolved>> = BTreeMap::new();
        for u in unresolved {
            by_pod
                .entry((u.namespace.clone(), u.pod.clone()))
                .or_default()
                .push(u);
        }
        let current: BTreeSet<(String, String, String)> = unresolved
            .iter()
            .map(|u| (u.namespace.clone(), u.pod.clone(), u.image.clone()))
            .collect();
        for ((namespace, pod), missing) in by_pod {
            let fresh = missing.iter().any(|m| {
                !self
                    .marked
                    .contains(&(namespace.clone(), pod.clone(), m.image.clone()))
            });
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
            tracing::warn!(%namespace, %pod, image = %missing[0].image, "pod waits for a module that is not in the store");
        }
        self.marked = current;
        Ok(())
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
    use super::*;

    fn pod(value: Value) -> Pod {
        serde_json::from_value(value).expect("valid pod")
    }

    fn digest() -> ModuleRef {
        ModuleRef {
            digest: "ab".repeat(32),
            size: 42,
        }
    }

    fn resolve(image: &str) -> Option<ModuleRef> {
        (image == "hello:v1").then(digest)
    }

    fn web(node: &str, image: &str) -> Pod {
        pod(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u-1"},
            "spec": {
                "nodeName": node,
                "restartPolicy": "OnFailure",
                "containers": [{
                    "name": "main", "image": image,
                    "command": ["hello"], "args": ["a"],
                    "env": [{"name": "GREETING", "value": "hi"}],
                    "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}}
                }]
            }
        }))
    }

    #[test]
    fn a_bound_pod_is_resolved_into_the_snapshot_of_its_node() {
        let plan = desired_for_node("pi-1", &[web("pi-1", "hello:v1")], &resolve, 7);
        assert_eq!(plan.desired.revision, 7);
        assert!(plan.unresolved.is_empty());
        let [pod] = plan.desired.pods.as_slice() else {
            panic!("expected one pod, got {:?}", plan.desired.pods)
        };
        assert_eq!(pod.uid, "u-1");
        assert_eq!(pod.restart_policy, RestartPolicy::OnFailure);
        let c = &pod.containers[0];
        assert_eq!(c.module, digest());
        assert_eq!(c.image, "hello:v1");
        assert_eq!(c.command, vec!["hello".to_owned()]);
        assert_eq!(c.args, vec!["a".to_owned()]);
        assert_eq!(c.env, vec![("GREETING".to_owned(), "hi".to_owned())]);
        assert_eq!(c.memory_limit_bytes, Some(64 << 20));
        assert_eq!(c.cpu_limit_millis, Some(500));
    }

    #[test]
    fn pods_of_other_nodes_unbound_or_deleting_are_left_out() {
        let mut deleting = web("pi-1", "hello:v1");
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2024-01-01T00:00:00Z".parse().expect("timestamp"),
            ));
        let unbound =
            pod(json!({"metadata": {"name": "x", "uid": "u-2"}, "spec": {"containers": []}}));
        let plan = desired_for_node(
            "pi-1",
            &[web("pi-2", "hello:v1"), deleting, unbound],
            &resolve,
            1,
        );
        assert!(plan.desired.pods.is_empty());
    }

    #[test]
    fn a_pod_with_an_unknown_image_is_left_out_and_reported() {
        let plan = desired_for_node("pi-1", &[web("pi-1", "nope:v9")], &resolve, 1);
        assert!(plan.desired.pods.is_empty());
        assert_eq!(
            plan.unresolved,
            vec![Unresolved {
                namespace: "default".into(),
                pod: "web".into(),
                container: "main".into(),
                image: "nope:v9".into(),
            }]
        );
    }

    #[test]
    fn the_restart_policy_defaults_to_always() {
        let p = pod(json!({
            "metadata": {"name": "p", "uid": "u"},
            "spec": {"nodeName": "n", "containers": [{"name": "c", "image": "hello:v1"}]}
        }));
        let plan = desired_for_node("n", &[p], &resolve, 1);
        assert_eq!(plan.desired.pods[0].restart_policy, RestartPolicy::Always);
        assert_eq!(plan.desired.pods[0].containers[0].memory_limit_bytes, None);
    }

    #[test]
    fn marking_a_missing_module_names_the_image_and_happens_once() {
        let mut obj = serde_json::to_value(web("pi-1", "nope:v9")).expect("json");
        let missing = Unresolved {
            namespace: "default".into(),
            pod: "web".into(),
            container: "main".into(),
            image: "nope:v9".into(),
        };
        assert!(mark_unresolved(&mut obj, &[&missing]));
        let waiting = &obj["status"]["containerStatuses"][0]["state"]["waiting"];
        assert_eq!(waiting["reason"], MODULE_NOT_FOUND);
        assert!(
            waiting["message"]
                .as_str()
                .is_some_and(|m| m.contains("nope:v9"))
        );
        assert!(!mark_unresolved(&mut obj, &[&missing]));
    }
}
