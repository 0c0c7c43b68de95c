//! Births and wills: Node objects from what agents say about themselves.
//!
//! [`node_from_birth`] is the pure mapping from a birth's [`NodeInfo`] to the Kubernetes
//! Node object (labels, capacity, nodeInfo, addresses, the tunnel port as
//! `daemonEndpoints.kubeletEndpoint.Port`, the tunnel key's hash as the annotation
//! [`TUNNEL_KEY_ANNOTATION`], `Ready=True`), preserving whatever users set on an existing
//! object (extra labels, annotations, `spec.unschedulable`).

use std::time::Instant;

use serde_json::{Map, Value, json};
use wasmfleet_protocol::node::{NodeAddress, NodeInfo, NodeState, Resources};

use crate::controllers::leases::{LeaseUpdate, Leases};
use crate::controllers::node_lifecycle::add_taint;
use crate::controllers::node_lifecycle::{
    DISCONNECTED_MESSAGE, ready_condition, set_node_ready, unknown_condition,
};
use crate::identity::UNAPPROVED_TAINT;
use crate::identity::certificates::{TUNNEL_KEY_ANNOTATION, TunnelPublicKey, tunnel_key_sha256};
use crate::k8s::conditions::set_condition;
use crate::k8s::time::now_rfc3339;
use crate::store::{ObjectKey, Store, StoreError};
use wasmfleet_protocol::quantity;

/// The Node object for a birth, merged over the stored one (if any).
pub fn node_from_birth(name: &str, info: &NodeInfo, existing: Option<&Value>, now: &str) -> Value {
    let mut node = existing.cloned().unwrap_or_else(|| {
        json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name},
            "spec": {},
        })
    });
    if let Some(map) = node.as_object_mut() {
        map.insert("apiVersion".into(), "v1".into());
        map.insert("kind".into(), "Node".into());
        merge_labels(map, name, info);
        set_tunnel_key(map, info);
        let conditions = map
            .get("status")
            .and_then(|s| s.get("conditions"))
            .cloned()
            .unwrap_or_else(|| json!([]));
        let mut status = status_from_birth(info);
        status.insert("conditions".into(), conditions);
        map.insert("status".into(), Value::Object(status));
    }
    set_condition(&mut node, &ready_condition(), now);
    node
}

/// Standard labels win over the agent's labels, which win over labels already stored
/// (a user's `kubectl label` stays unless the agent sets the same key).
fn merge_labels(map: &mut Map<String, Value>, name: &str, info: &NodeInfo) {
    let metadata = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(metadata) = metadata.as_object_mut() else {
        return;
    };
    let labels = metadata
        .entry("labels")
        .or_insert_with(|| Value::Object(Map::new()));
    if !labels.is_object() {
        *labels = Value::Object(Map::new());
    }
    let Some(labels) = labels.as_object_mut() else {
        return;
    };
    for (key, value) in &info.labels {
        labels.insert(key.clone(), value.clone().into());
    }
    labels.insert(
        "kubernetes.io/arch".into(),
        info.architecture.clone().into(),
    );
    labels.insert(
        "kubernetes.io/os".into(),
        info.operating_system.clone().into(),
    );
    labels.insert("kubernetes.io/hostname".into(), name.into());
}

/// The tunnel key the node reported, if it is one the server certifies; the annotation
/// goes when the node reports none (an older agent) or an invalid one.
fn set_tunnel_key(map: &mut Map<String, Value>, info: &NodeInfo) {
    let key = certified_tunnel_key(info);
    let Some(metadata) = map.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let annotations = metadata
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if !annotations.is_object() {
        *annotations = Value::Object(Map::new());
    }
    let Some(annotations) = annotations.as_object_mut() else {
        return;
    };
    match key {
        Some(spki) => {
            annotations.insert(TUNNEL_KEY_ANNOTATION.into(), tunnel_key_sha256(spki).into());
        }
        None => {
            annotations.remove(TUNNEL_KEY_ANNOTATION);
        }
    }
    if annotations.is_empty() {
        metadata.remove("annotations");
    }
}

/// The reported tunnel key (SubjectPublicKeyInfo), when it is a valid P-256 key.
pub fn certified_tunnel_key(info: &NodeInfo) -> Option<&[u8]> {
    let tunnel = info.tunnel.as_ref()?;
    TunnelPublicKey::from_spki(&tunnel.public_key)
        .ok()
        .map(|_| tunnel.public_key.as_slice())
}

fn resources(r: &Resources) -> Value {
    json!({
        "memory": format!("{}Ki", r.memory_bytes / 1024),
        "cpu": quantity::format_cpu(r.cpu_millis),
        "pods": r.pods.to_string(),
    })
}

fn status_from_birth(info: &NodeInfo) -> Map<String, Value> {
    let mut status = json!({
        "capacity": resources(&info.capacity),
        "allocatable": resources(&info.allocatable),
        "nodeInfo": {
            "architecture": info.architecture,
            "operatingSystem": info.operating_system,
            "kernelVersion": info.kernel_version,
            "osImage": info.os_image,
            "kubeletVersion": info.agent_version,
            "kubeProxyVersion": "",
            "containerRuntimeVersion": format!("wasmtime://{}", info.engine.wasmtime_version),
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
        },
        "addresses": addresses(info),
    });
    // Kubernetes' field for the port of the node's agent; here the tunnel port peers dial.
    if let Some(port) = info.tunnel.as_ref().map(|t| t.port).filter(|p| *p > 0) {
        status["daemonEndpoints"] = json!({"kubeletEndpoint": {"Port": port}});
    }
    match status {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The most addresses of each node the server keeps.
const MAX_ADDRESSES: usize = 8;

/// `status.addresses` as the kubelet orders them: the IP addresses the agent reported
/// (`InternalIP`/`ExternalIP` that parse as IPs; anything else is dropped and logged),
/// then the host name.
fn addresses(info: &NodeInfo) -> Value {
    let (valid, invalid): (Vec<&NodeAddress>, Vec<&NodeAddress>) =
        info.addresses.iter().partition(|address| {
            matches!(
                address.kind.as_str(),
                NodeAddress::INTERNAL_IP | "ExternalIP"
            ) && address.address.parse::<std::net::IpAddr>().is_ok()
        });
    if !invalid.is_empty() {
        tracing::warn!(addresses = ?invalid, "ignoring node addresses that are not IP addresses of a known type");
    }
    let mut list: Vec<Value> = valid
        .into_iter()
        .take(MAX_ADDRESSES)
        .map(|address| json!({"type": address.kind, "address": address.address}))
        .collect();
    list.push(json!({"type": "Hostname", "address": info.hostname}));
    Value::Array(list)
}

/// Applies a birth or will from `node`. A birth starts the node's current session
/// whatever its epoch; a will counts only for the current session (see [`leases`]). With
/// `approval`, a birth that creates the Node (a node an external broker admitted: the
/// embedded broker's join creates it, tainted, before) taints it
/// [`UNAPPROVED_TAINT`]`:NoSchedule` until an admin removes the taint.
pub fn handle_state(
    store: &Store,
    leases: &Leases,
    node: &str,
    state: &NodeState,
    approval: bool,
) -> Result<(), StoreError> {
    let update = leases.presence(node, state.epoch, state.online, Instant::now());
    // A lease that fell due is written by the lease writer (`leases::write_due`).
    let LeaseUpdate::Applied { .. } = update else {
        tracing::debug!(%node, epoch = state.epoch, online = state.online, "ignoring a will that is not of the current session");
        return Ok(());
    };
    match (&state.online, &state.info) {
        (true, Some(info)) => register(store, node, info, approval),
        (true, None) => {
            tracing::warn!(%node, "birth without node info; treating it as a heartbeat");
            set_node_ready(store, node, &ready_condition())
        }
        (false, _) => {
            tracing::info!(%node, epoch = state.epoch, "agent disconnected");
            set_node_ready(store, node, &unknown_condition(DISCONNECTED_MESSAGE))
        }
    }
}

fn register(store: &Store, node: &str, info: &NodeInfo, approval: bool) -> Result<(), StoreError> {
    let key = ObjectKey::cluster("nodes", node);
    let now = now_rfc3339();
    store.upsert_with(&key, |existing| {
        let mut obj = node_from_birth(node, info, existing, &now);
        if approval && existing.is_none() {
            tracing::info!(%node, "a new node waits for an admin's approval");
            add_taint(&mut obj, UNAPPROVED_TAINT, "NoSchedule", &now);
        }
        Ok::<Value, StoreError>(obj)
    })?;
    tracing::info!(%node, arch = %info.architecture, agent = %info.agent_version, "node registered");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::k8s::conditions::condition_status;
    use wasmfleet_protocol::node::EngineInfo;
    use wasmfleet_protocol::tunnel::TunnelInfo;

    pub(crate) fn info() -> NodeInfo {
        NodeInfo {
            agent_version: "0.1.0".into(),
            architecture: "arm64".into(),
            operating_system: "linux".into(),
            kernel_version: "6.6.31".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            hostname: "raspberrypi".into(),
            capacity: Resources {
                memory_bytes: 4 << 30,
                cpu_millis: 4000,
                pods: 110,
            },
            allocatable: Resources {
                memory_bytes: 3 << 30,
                cpu_millis: 3500,
                pods: 100,
            },
            labels: BTreeMap::from([("site".into(), "barn".into())]),
            engine: EngineInfo {
                wasmtime_version: "48.0.8".into(),
                target: "aarch64-unknown-linux-gnu".into(),
                compatibility_key: "00".into(),
                can_compile: true,
            },
            addresses: vec![NodeAddress::internal([192, 168, 1, 20].into())],
            tunnel: None,
        }
    }

    fn p256_spki() -> Vec<u8> {
        use rcgen::PublicKeyData;
        rcgen::KeyPair::generate()
            .expect("key")
            .subject_public_key_info()
    }

    #[test]
    fn a_birth_with_a_tunnel_records_its_key_and_port() {
        let spki = p256_spki();
        let mut tunnelled = info();
        tunnelled.tunnel = Some(TunnelInfo {
            public_key: spki.clone(),
            port: 10260,
        });
        let mut existing = node_from_birth("pi-1", &info(), None, "2024-01-01T00:00:00Z");
        existing["metadata"]["annotations"] = json!({"team": "green"});
        let node = node_from_birth("pi-1", &tunnelled, Some(&existing), "2024-01-01T00:00:01Z");
        assert_eq!(
            node["metadata"]["annotations"][TUNNEL_KEY_ANNOTATION],
            tunnel_key_sha256(&spki)
        );
        assert_eq!(node["metadata"]["annotations"]["team"], "green");
        assert_eq!(
            node["status"]["daemonEndpoints"],
            json!({"kubeletEndpoint": {"Port": 10260}})
        );
        let typed: k8s_openapi::api::core::v1::Node =
            serde_json::from_value(node.clone()).expect("a valid Node");
        let port = typed
            .status
            .and_then(|s| s.daemon_endpoints)
            .and_then(|d| d.kubelet_endpoint)
            .map(|e| e.port);
        assert_eq!(port, Some(10260));

        // Dial-out only: the key, no port. An invalid key, or none: neither.
        tunnelled.tunnel = Some(TunnelInfo {
            public_key: spki.clone(),
            port: 0,
        });
        let node = node_from_birth("pi-1", &tunnelled, Some(&node), "t3");
        assert!(node["metadata"]["annotations"][TUNNEL_KEY_ANNOTATION].is_string());
        assert!(node["status"].get("daemonEndpoints").is_none());
        tunnelled.tunnel = Some(TunnelInfo {
            public_key: b"garbage".to_vec(),
            port: 10260,
        });
        let node = node_from_birth("pi-1", &tunnelled, Some(&node), "t4");
        assert!(
            node["metadata"]["annotations"]
                .get(TUNNEL_KEY_ANNOTATION)
                .is_none()
        );
        assert_eq!(node["metadata"]["annotations"]["team"], "green");
        let node = node_from_birth("pi-1", &info(), Some(&node), "t5");
        assert!(
            node["metadata"]["annotations"]
                .get(TUNNEL_KEY_ANNOTATION)
                .is_none()
        );
    }

    #[test]
    fn a_birth_makes_a_ready_node_with_kubernetes_shaped_status() {
        let node = node_from_birth("pi-1", &info(), None, "2024-01-01T00:00:00Z");
        assert_eq!(node["kind"], "Node");
        assert_eq!(node["metadata"]["labels"]["kubernetes.io/arch"], "arm64");
        assert_eq!(node["metadata"]["labels"]["kubernetes.io/os"], "linux");
        assert_eq!(node["metadata"]["labels"]["kubernetes.io/hostname"], "pi-1");
        assert_eq!(node["metadata"]["labels"]["site"], "barn");
        assert_eq!(node["status"]["capacity"]["memory"], "4194304Ki");
        assert_eq!(node["status"]["allocatable"]["memory"], "3145728Ki");
        assert_eq!(node["status"]["allocatable"]["cpu"], "3500m");
        assert_eq!(node["status"]["capacity"]["pods"], "110");
        assert_eq!(node["status"]["nodeInfo"]["kubeletVersion"], "0.1.0");
        assert_eq!(
            node["status"]["nodeInfo"]["containerRuntimeVersion"],
            "wasmtime://48.0.8"
        );
        assert_eq!(
            node["status"]["addresses"],
            json!([{"type": "InternalIP", "address": "192.168.1.20"},
                   {"type": "Hostname", "address": "raspberrypi"}])
        );
        assert_eq!(condition_status(&node, "Ready"), Some("True"));
        assert_eq!(node["status"]["conditions"][0]["reason"], "AgentReady");
        let typed: k8s_openapi::api::core::v1::Node =
            serde_json::from_value(node).expect("a valid Node");
        assert_eq!(typed.metadata.name.as_deref(), Some("pi-1"));
    }

    #[test]
    fn a_rebirth_keeps_what_users_set_and_revives_an_unknown_node() {
        let mut existing = node_from_birth("pi-1", &info(), None, "t1");
        existing["metadata"]["labels"]["team"] = "green".into();
        existing["spec"]["unschedulable"] = true.into();
        set_condition(&mut existing, &unknown_condition("gone"), "t2");
        let node = node_from_birth("pi-1", &info(), Some(&existing), "t3");
        assert_eq!(node["metadata"]["labels"]["team"], "green");
        assert_eq!(node["spec"]["unschedulable"], true);
        assert_eq!(condition_status(&node, "Ready"), Some("True"));
        assert_eq!(node["status"]["conditions"][0]["lastTransitionTime"], "t3");
    }

    #[test]
    fn reported_addresses_that_are_not_ips_are_dropped() {
        let mut info = info();
        info.addresses.push(NodeAddress {
            kind: "InternalIP".into(),
            address: "not-an-ip".into(),
        });
        info.addresses.push(NodeAddress {
            kind: "Bogus".into(),
            address: "10.0.0.1".into(),
        });
        let node = node_from_birth("pi-1", &info, None, "t1");
        assert_eq!(
            node["status"]["addresses"].as_array().map(Vec::len),
            Some(2)
        );
    }

    #[test]
    fn an_identical_rebirth_changes_nothing() {
        let first = node_from_birth("pi-1", &info(), None, "t1");
        let again = node_from_birth("pi-1", &info(), Some(&first), "t2");
        assert_eq!(first, again);
    }
}
