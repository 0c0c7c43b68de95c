//! Desired state: each node's retained index and one retained message per pod bound to it.
//!
//! [`desired_for_node`] is the pure planner: the pods with `spec.nodeName` = node and no
//! `deletionTimestamp`, with images resolved to module digests. A pod whose images do not
//! all resolve is left out (it cannot run yet) and reported in [`Plan::unresolved`], so its
//! containers get `waiting.reason = ErrModuleNotFound` in the store. Its environment and
//! volumes are resolved by [`super::config`]; a pod whose ConfigMaps, Secrets or keys are
//! missing is left out the same way, its containers waiting with
//! `CreateContainerConfigError`.
//!
//! [`plan_delivery`] (pure) turns that set and what the node was sent before into messages:
//! new or changed pods on `n/{node}/down/pod/{uid}` (retained), the index on
//! `n/{node}/down/desired` (retained) listing each pod's uid and the revision its content was
//! published at, and empty retained payloads clearing pods that left. A pod that cannot be
//! delivered ([`super::delivery`]) is left out of the index and marked on the object
//! (`status.reason = Undeliverable` with a message); every other pod of the node is still
//! delivered.
//!
//! [`super::publisher`] runs these plans and publishes the result.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{Value, json};
use wasmfleet_protocol::pod::{
    ContainerSpec, DesiredIndex, DesiredPods, IndexEntry, MAX_INDEXED_PODS, ModuleRef,
    PodAssignment, PodConfig, RestartPolicy,
};

use super::config;
use super::delivery::{self, Undeliverable};
use crate::k8s::pods::running_node_of;
use wasmfleet_protocol::network::{
    ClusterCidr, EGRESS_ANNOTATION, PodNetwork, PodPort, Protocol, parse_egress,
};
use wasmfleet_protocol::quantity;

/// The waiting reason of a container whose image is not in the module store.
pub const MODULE_NOT_FOUND: &str = "ErrModuleNotFound";

/// A container that cannot start: its image does not resolve, or its configuration is
/// missing.
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
    /// The waiting reason ([`MODULE_NOT_FOUND`], [`super::config::CONFIG_ERROR`]).
    pub reason: &'static str,
    /// What is missing.
    pub message: String,
}

/// A node's desired snapshot and the containers that kept pods out of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The snapshot to publish.
    pub desired: DesiredPods,
    /// Containers whose images are unknown.
    pub unresolved: Vec<Unresolved>,
}

/// Plans the snapshot for `node` from every pod in the cluster; `sources` give the
/// ConfigMaps, Secrets and ServiceAccount tokens pods use.
pub fn desired_for_node(
    node: &str,
    pods: &[Pod],
    resolve: &dyn Fn(&str) -> Option<ModuleRef>,
    sources: config::Sources<'_>,
    cluster: ClusterCidr,
    revision: u64,
) -> Plan {
    let mut assignments = Vec::new();
    let mut unresolved = Vec::new();
    for pod in pods.iter().filter(|p| runs_on(p, node)) {
        let configured = assignment(pod, resolve, cluster).and_then(|a| configure(pod, a, sources));
        match configured {
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

/// `assignment` with its environment and volumes resolved ([`super::config`]).
fn configure(
    pod: &Pod,
    mut assignment: PodAssignment,
    sources: config::Sources<'_>,
) -> Result<PodAssignment, Vec<Unresolved>> {
    let in_namespace =
        |resource: &str, name: &str| (sources.objects)(resource, &assignment.namespace, name);
    match config::resolve(pod, &in_namespace, sources.tokens) {
        Ok(mut resolved) => {
            for container in &mut assignment.containers {
                if let Some(env) = resolved.env.remove(&container.name) {
                    container.env = env;
                }
            }
            assignment.config = resolved.config;
            Ok(assignment)
        }
        Err(missing) => Err(missing
            .into_iter()
            .map(|m| Unresolved {
                namespace: assignment.namespace.clone(),
                pod: assignment.name.clone(),
                image: image_of(&assignment, &m.container),
                container: m.container,
                reason: config::CONFIG_ERROR,
                message: m.message,
            })
            .collect()),
    }
}

fn image_of(assignment: &PodAssignment, container: &str) -> String {
    let found = assignment.containers.iter().find(|c| c.name == container);
    found.map(|c| c.image.clone()).unwrap_or_default()
}

/// Bound to `node`, not being deleted, and given its pod IP (the IPAM controller gives
/// one right after binding; a pod never starts without its network).
fn runs_on(pod: &Pod, node: &str) -> bool {
    let has_ip = pod.status.as_ref().is_some_and(|s| s.pod_ip.is_some());
    running_node_of(pod) == Some(node) && pod.metadata.uid.is_some() && has_ip
}

/// The delivery form of `pod`, or the containers whose images do not resolve.
/// A pod's namespace (`default` when unset) and name.
pub(crate) fn namespace_and_name(pod: &Pod) -> (String, String) {
    let namespace = pod.metadata.namespace.clone();
    (
        namespace.unwrap_or_else(|| "default".into()),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

pub(crate) fn assignment(
    pod: &Pod,
    resolve: &dyn Fn(&str) -> Option<ModuleRef>,
    cluster: ClusterCidr,
) -> Result<PodAssignment, Vec<Unresolved>> {
    let (namespace, name) = namespace_and_name(pod);
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
                reason: MODULE_NOT_FOUND,
                message: not_found_message(&image),
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
        network: network(pod, cluster),
        config: PodConfig::default(),
    })
}

/// The pod's network, once it has an IP: its declared ports and egress rules (admission
/// refused unparsable rules, so what does not parse here is left out).
fn network(pod: &Pod, cluster: ClusterCidr) -> Option<PodNetwork> {
    let ip = pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()?;
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice());
    let ports = containers
        .unwrap_or_default()
        .iter()
        .flat_map(|c| c.ports.iter().flatten().map(move |p| (c, p)))
        .filter_map(|(container, port)| {
            Some(PodPort {
                container: container.name.clone(),
                name: port.name.clone(),
                port: u16::try_from(port.container_port).ok()?,
                protocol: Protocol::parse(port.protocol.as_deref().unwrap_or("TCP"))?,
            })
        })
        .collect();
    let egress = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(EGRESS_ANNOTATION))
        .and_then(|rules| parse_egress(rules).ok())
        .unwrap_or_default();
    Some(PodNetwork {
        ip,
        cluster_cidr: cluster.net(),
        ports,
        egress,
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
        probes: super::probes::of(container),
    }
}

/// What a node was sent, by pod uid: the revision each pod's content was published at.
pub type Sent = BTreeMap<String, (u64, PodAssignment)>;

/// A pod left out of its node's index, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// Why it cannot be delivered.
    pub why: Undeliverable,
}

/// The messages that bring a node from what it was sent to `pods`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// New or changed pods: uid and retained payload, to publish before the index.
    pub publish: Vec<(String, Vec<u8>)>,
    /// The index, when the listed pods or their revisions changed.
    pub index: Option<DesiredIndex>,
    /// Uids that left the node: their retained messages are cleared after the index.
    pub clear: Vec<String>,
    /// Pods that cannot be delivered.
    pub refused: Vec<Refused>,
    /// What the node has been sent once all of the above is published.
    pub sent: Sent,
}

/// Plans the delivery of `pods` at `revision` to a node that was `sent` the given pods
/// (`None`: nothing is known to be retained for it, so the index goes out in any case).
pub fn plan_delivery(sent: Option<&Sent>, pods: Vec<PodAssignment>, revision: u64) -> Delivery {
    let known = sent;
    let empty = Sent::new();
    let sent = sent.unwrap_or(&empty);
    let mut delivery = Delivery {
        publish: Vec::new(),
        index: None,
        clear: Vec::new(),
        refused: Vec::new(),
        sent: Sent::new(),
    };
    for pod in pods {
        let outcome = if delivery.sent.len() >= MAX_INDEXED_PODS {
            Err(Undeliverable::NodeFull)
        } else {
            match sent.get(&pod.uid) {
                Some((published, old)) if old == &pod => Ok(*published),
                _ => delivery::encode_pod(revision, &pod).map(|payload| {
                    delivery.publish.push((pod.uid.clone(), payload));
                    revision
                }),
            }
        };
        match outcome {
            Ok(at) => {
                delivery.sent.insert(pod.uid.clone(), (at, pod));
            }
            Err(why) => delivery.refused.push(Refused {
                namespace: pod.namespace,
                pod: pod.name,
                why,
            }),
        }
    }
    delivery.clear = sent
        .keys()
        .filter(|uid| !delivery.sent.contains_key(*uid))
        .cloned()
        .collect();
    let revisions = |s: &Sent| -> Vec<(String, u64)> {
        s.iter().map(|(uid, (at, _))| (uid.clone(), *at)).collect()
    };
    if known.is_none() || revisions(sent) != revisions(&delivery.sent) {
        delivery.index = Some(index_of(&delivery.sent, revision));
    }
    delivery
}

/// The index listing what `sent` holds, at `revision`.
pub fn index_of(sent: &Sent, revision: u64) -> DesiredIndex {
    DesiredIndex {
        revision,
        pods: sent
            .iter()
            .map(|(uid, (at, _))| IndexEntry {
                uid: uid.clone(),
                revision: *at,
            })
            .collect(),
    }
}

/// Whether the node must get its index again although it did not change: a pod bound to
/// it is being deleted and was not in what it was last sent (never sent: images missing,
/// no IP yet, undeliverable; or sent by an earlier pass). Its removal waits for the node's
/// next report ([`crate::k8s::termination::confirmed_gone`]), and an agent reports after
/// every index it applies, so a newer index gets that report.
pub fn awaits_confirmation(pods: &[Pod], sent: Option<&Sent>) -> bool {
    pods.iter().any(|pod| {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        pod.metadata.deletion_timestamp.is_some() && !sent.is_some_and(|s| s.contains_key(uid))
    })
}

/// The pod status reason of a pod its node cannot be sent.
pub const UNDELIVERABLE: &str = "Undeliverable";

/// Sets (`Some(message)`) or removes (`None`) the `Undeliverable` mark on a pod; returns
/// whether the pod changed. A marked pod is not on its node, so its container statuses go.
pub fn mark_undeliverable(pod: &mut Value, why: Option<&str>) -> bool {
    let Some(status) = pod
        .as_object_mut()
        .map(|map| {
            map.entry("status")
                .or_insert_with(|| Value::Object(serde_json::Map::new()))
        })
        .and_then(Value::as_object_mut)
    else {
        return false;
    };
    let marked = status.get("reason").and_then(Value::as_str) == Some(UNDELIVERABLE);
    match why {
        Some(message) => {
            if marked && status.get("message").and_then(Value::as_str) == Some(message) {
                return false;
            }
            status.insert("reason".into(), UNDELIVERABLE.into());
            status.insert("message".into(), message.into());
            status.insert("phase".into(), "Pending".into());
            status.remove("containerStatuses");
            true
        }
        None if marked => {
            status.remove("reason");
            status.remove("message");
            true
        }
        None => false,
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
                Some(m) => json!({"reason": m.reason, "message": m.message}),
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

    fn no_objects(_: &str, _: &str, _: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        None
    }

    fn no_tokens(_: &crate::identity::pod_tokens::TokenProjection) -> Result<String, String> {
        Err("no tokens".into())
    }

    const NOTHING: config::Sources<'static> = config::Sources {
        objects: &no_objects,
        tokens: &no_tokens,
    };

    fn web(node: &str, image: &str) -> Pod {
        pod(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u-1",
                "annotations": {"wasmfleet.io/egress": "1.1.1.1:53"}},
            "spec": {
                "nodeName": node,
                "restartPolicy": "OnFailure",
                "containers": [{
                    "name": "main", "image": image,
                    "command": ["hello"], "args": ["a"],
                    "env": [{"name": "GREETING", "value": "hi"}],
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}}
                }]
            },
            "status": {"podIP": "10.42.0.9"}
        }))
    }

    #[test]
    fn a_bound_pod_is_resolved_into_the_snapshot_of_its_node() {
        let plan = desired_for_node(
            "pi-1",
            &[web("pi-1", "hello:v1")],
            &resolve,
            NOTHING,
            ClusterCidr::default(),
            7,
        );
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
        let network = pod.network.as_ref().expect("a network");
        assert_eq!(network.ip.to_string(), "10.42.0.9");
        assert_eq!(network.cluster_cidr, ClusterCidr::default().net());
        assert_eq!(
            network.ports,
            [PodPort {
                container: "main".into(),
                name: Some("http".into()),
                port: 8080,
                protocol: Protocol::Tcp
            }]
        );
        assert_eq!(network.egress, parse_egress("1.1.1.1:53").expect("rules"));
    }

    #[test]
    fn a_bound_pod_waits_for_its_ip() {
        let mut waiting = web("pi-1", "hello:v1");
        waiting.status = None;
        let plan = desired_for_node(
            "pi-1",
            &[waiting],
            &resolve,
            NOTHING,
            ClusterCidr::default(),
            7,
        );
        assert!(plan.desired.pods.is_empty());
        assert!(plan.unresolved.is_empty());
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
            NOTHING,
            ClusterCidr::default(),
            1,
        );
        assert!(plan.desired.pods.is_empty());
    }

    #[test]
    fn a_pod_with_an_unknown_image_is_left_out_and_reported() {
        let plan = desired_for_node(
            "pi-1",
            &[web("pi-1", "nope:v9")],
            &resolve,
            NOTHING,
            ClusterCidr::default(),
            1,
        );
        assert!(plan.desired.pods.is_empty());
        assert_eq!(
            plan.unresolved,
            vec![Unresolved {
                namespace: "default".into(),
                pod: "web".into(),
                container: "main".into(),
                image: "nope:v9".into(),
                reason: MODULE_NOT_FOUND,
                message: not_found_message("nope:v9"),
            }]
        );
    }

    #[test]
    fn the_restart_policy_defaults_to_always() {
        let p = pod(json!({
            "metadata": {"name": "p", "uid": "u"},
            "spec": {"nodeName": "n", "containers": [{"name": "c", "image": "hello:v1"}]},
            "status": {"podIP": "10.42.0.2"}
        }));
        let plan = desired_for_node("n", &[p], &resolve, NOTHING, ClusterCidr::default(), 1);
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
            reason: MODULE_NOT_FOUND,
            message: not_found_message("nope:v9"),
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

    fn small(uid: &str, name: &str) -> PodAssignment {
        PodAssignment {
            network: None,
            config: PodConfig::default(),
            uid: uid.into(),
            namespace: "default".into(),
            name: name.into(),
            restart_policy: RestartPolicy::Always,
            containers: vec![],
        }
    }

    fn huge(uid: &str, name: &str) -> PodAssignment {
        let mut pod = small(uid, name);
        pod.containers.push(ContainerSpec {
            name: "main".into(),
            image: "hello:v1".into(),
            module: digest(),
            command: vec![],
            args: vec![],
            env: vec![(
                "BIG".into(),
                "x".repeat(wasmfleet_protocol::MAX_MESSAGE_SIZE),
            )],
            memory_limit_bytes: None,
            cpu_limit_millis: None,
            probes: Default::default(),
        });
        pod
    }

    fn listed(delivery: &Delivery) -> Vec<(String, u64)> {
        delivery
            .index
            .iter()
            .flat_map(|i| &i.pods)
            .map(|e| (e.uid.clone(), e.revision))
            .collect()
    }

    fn published(delivery: &Delivery) -> Vec<&str> {
        delivery
            .publish
            .iter()
            .map(|(uid, _)| uid.as_str())
            .collect()
    }

    #[test]
    fn a_first_delivery_publishes_every_pod_then_an_index_of_them() {
        let d = plan_delivery(None, vec![small("a", "x"), small("b", "y")], 7);
        assert_eq!(published(&d), ["a", "b"]);
        assert_eq!(listed(&d), [("a".into(), 7), ("b".into(), 7)]);
        assert!(d.clear.is_empty() && d.refused.is_empty());
        // Nothing known for an empty node still sends its (empty) index once.
        let empty = plan_delivery(None, vec![], 3);
        assert_eq!(empty.index.map(|i| i.pods.len()), Some(0));
        assert_eq!(plan_delivery(Some(&empty.sent), vec![], 4).index, None);
    }

    #[test]
    fn a_terminating_pod_the_node_was_not_sent_asks_for_a_new_index() {
        let pod = |uid: &str, deleting: bool| -> Pod {
            let mut json = json!({"metadata": {"name": uid, "uid": uid}});
            if deleting {
                json["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
            }
            serde_json::from_value(json).expect("pod")
        };
        let sent = plan_delivery(None, vec![small("a", "x")], 7).sent;
        assert!(!awaits_confirmation(&[pod("a", false)], Some(&sent)));
        // Still in what was sent: leaving it out changes the index anyway.
        assert!(!awaits_confirmation(&[pod("a", true)], Some(&sent)));
        assert!(awaits_confirmation(&[pod("b", true)], Some(&sent)));
        assert!(awaits_confirmation(&[pod("a", true)], None));
        assert_eq!(index_of(&sent, 9).revision, 9);
    }

    #[test]
    fn only_changes_are_published_and_pods_that_left_are_cleared() {
        let first = plan_delivery(None, vec![small("a", "x"), small("b", "y")], 7);
        let same = plan_delivery(Some(&first.sent), vec![small("a", "x"), small("b", "y")], 8);
        assert!(same.publish.is_empty() && same.index.is_none() && same.clear.is_empty());

        let mut changed = small("a", "x");
        changed.restart_policy = RestartPolicy::Never;
        let next = plan_delivery(Some(&first.sent), vec![changed, small("c", "z")], 9);
        assert_eq!(published(&next), ["a", "c"]);
        assert_eq!(listed(&next), [("a".into(), 9), ("c".into(), 9)]);
        assert_eq!(next.clear, ["b".to_owned()]);
        // An unchanged pod keeps the revision it was published at.
        let later = plan_delivery(Some(&next.sent), vec![small("c", "z")], 12);
        assert_eq!(listed(&later), [("c".into(), 9)]);
        assert_eq!(later.clear, ["a".to_owned()]);
    }

    #[test]
    fn an_undeliverable_pod_is_refused_while_the_others_are_delivered() {
        let pods = vec![small("a", "x"), huge("big", "big"), small("b", "y")];
        let d = plan_delivery(None, pods, 5);
        assert_eq!(published(&d), ["a", "b"]);
        assert_eq!(listed(&d), [("a".into(), 5), ("b".into(), 5)]);
        let [refused] = d.refused.as_slice() else {
            panic!("expected one refusal: {:?}", d.refused)
        };
        assert_eq!(refused.pod, "big");
        assert!(matches!(refused.why, Undeliverable::TooLarge { .. }));
        assert!(
            d.publish
                .iter()
                .all(|(_, p)| p.len() <= wasmfleet_protocol::MAX_MESSAGE_SIZE)
        );
    }

    #[test]
    fn pods_past_the_index_capacity_are_refused() {
        let pods = (0..=MAX_INDEXED_PODS)
            .map(|i| small(&format!("u{i:05}"), &format!("p{i:05}")))
            .collect();
        let d = plan_delivery(None, pods, 1);
        assert_eq!(listed(&d).len(), MAX_INDEXED_PODS);
        assert_eq!(d.refused.len(), 1);
        assert_eq!(d.refused[0].why, Undeliverable::NodeFull);
    }

    #[test]
    fn marking_an_undeliverable_pod_sets_reason_and_message_once_and_unmarking_clears_them() {
        let mut obj = json!({"metadata": {"name": "big"}, "status": {
            "phase": "Pending",
            "containerStatuses": [{"name": "main", "state": {"waiting": {"reason": "ContainerCreating"}}}]
        }});
        assert!(mark_undeliverable(&mut obj, Some("too big")));
        assert_eq!(obj["status"]["reason"], UNDELIVERABLE);
        assert_eq!(obj["status"]["message"], "too big");
        assert!(obj["status"].get("containerStatuses").is_none());
        assert!(!mark_undeliverable(&mut obj, Some("too big")));
        assert!(mark_undeliverable(&mut obj, None));
        assert!(obj["status"].get("reason").is_none());
        assert!(!mark_undeliverable(&mut obj, None));
    }
}
