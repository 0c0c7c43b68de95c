//! The service load-balancer controller (k3s's ServiceLB without its DaemonSets), on the
//! shared [`runner`]: a `type: LoadBalancer` Service is served by the nodes themselves,
//! every eligible node listening on the Service's ports (the agents do that from the
//! table of Services, `fleet::services`), and its `status.loadBalancer.ingress` lists
//! those nodes' `InternalIP`s (`ipMode: VIP`), so `kubectl get svc` shows them as
//! EXTERNAL-IP (`<pending>` while there is none).
//!
//! Eligible ([`eligible_nodes`], the one home of the rule, which the table of Services
//! uses too): every Ready node, or, once any node carries the label
//! `svccontroller.k3s.cattle.io/enablelb=true`, only the Ready nodes that carry it. With
//! `externalTrafficPolicy: Local` the status lists only those of them that run a ready
//! endpoint of the Service (as k3s does: the others would close the connection). A
//! Service that stops being a LoadBalancer loses its ingress.
//!
//! [`runner`]: super::runner

use std::sync::Arc;

use serde_json::{Value, json};

use super::endpoints::{SERVICE_NAME_LABEL, takes_traffic};
use super::runner::Controller;
use super::writes;
use crate::informer::{Cache, Change, key_of};
use crate::k8s::conditions::condition_status;
use crate::store::{ObjectKey, Store, StoreError};

/// The node label that switches ServiceLB to an allow-list of nodes.
pub const ENABLE_LB_LABEL: &str = "svccontroller.k3s.cattle.io/enablelb";

/// A node that serves LoadBalancer Services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbNode {
    /// Its name.
    pub name: String,
    /// Its `InternalIP`, if it reported one.
    pub internal_ip: Option<String>,
}

/// Pure: the nodes that serve LoadBalancer Services, sorted by name.
pub fn eligible_nodes(nodes: &[Arc<Value>]) -> Vec<LbNode> {
    let labelled = |node: &Value| node["metadata"]["labels"][ENABLE_LB_LABEL] == "true";
    let allow_list = nodes
        .iter()
        .any(|node| !node["metadata"]["labels"][ENABLE_LB_LABEL].is_null());
    let mut eligible: Vec<LbNode> = nodes
        .iter()
        .filter(|node| condition_status(node, "Ready") == Some("True"))
        .filter(|node| !allow_list || labelled(node))
        .filter_map(|node| {
            Some(LbNode {
                name: node["metadata"]["name"].as_str()?.to_owned(),
                internal_ip: internal_ip(node),
            })
        })
        .collect();
    eligible.sort_by(|a, b| a.name.cmp(&b.name));
    eligible
}

/// A node's first `InternalIP`.
pub fn internal_ip(node: &Value) -> Option<String> {
    node["status"]["addresses"]
        .as_array()?
        .iter()
        .find(|address| address["type"] == "InternalIP")
        .and_then(|address| address["address"].as_str())
        .map(str::to_owned)
}

/// The controller.
pub struct ServiceLb {
    cache: Cache,
}

impl ServiceLb {
    /// A controller reading `cache`.
    pub fn new(cache: Cache) -> Self {
        Self { cache }
    }
}

/// One Service and the nodes.
#[derive(Debug, Clone)]
pub struct State {
    /// The Service's key.
    pub key: ObjectKey,
    /// The Service (`None`: deleted).
    pub service: Option<Arc<Value>>,
    /// Every node.
    pub nodes: Vec<Arc<Value>>,
    /// The Service's EndpointSlices.
    pub slices: Vec<Arc<Value>>,
}

/// A write the controller makes.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Sets the Service's `status.loadBalancer.ingress` (empty: no ingress).
    SetIngress(ObjectKey, Vec<Value>),
}

/// Pure: the ingress the Service should show, if it does not show it yet.
pub fn plan(state: &State) -> Vec<Action> {
    let Some(service) = state.service.as_deref() else {
        return Vec::new();
    };
    let want: Vec<Value> = match service["spec"]["type"] == "LoadBalancer" {
        true => ingress(&serving_nodes(service, state)),
        false => Vec::new(),
    };
    let have = service
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    match have == want.as_slice() {
        true => Vec::new(),
        false => vec![Action::SetIngress(state.key.clone(), want)],
    }
}

/// The eligible nodes that serve the Service: all of them, or with
/// `externalTrafficPolicy: Local` those running a ready endpoint.
fn serving_nodes(service: &Value, state: &State) -> Vec<LbNode> {
    let mut nodes = eligible_nodes(&state.nodes);
    if service["spec"]["externalTrafficPolicy"] == "Local" {
        let with_endpoints: Vec<&str> = state
            .slices
            .iter()
            .flat_map(|slice| slice["endpoints"].as_array().into_iter().flatten())
            .filter(|endpoint| takes_traffic(endpoint))
            .filter_map(|endpoint| endpoint["nodeName"].as_str())
            .collect();
        nodes.retain(|node| with_endpoints.contains(&node.name.as_str()));
    }
    nodes
}

/// The eligible nodes' addresses, each once, sorted.
fn ingress(nodes: &[LbNode]) -> Vec<Value> {
    addresses(nodes)
        .into_iter()
        .map(|ip| json!({"ip": ip, "ipMode": "VIP"}))
        .collect()
}

/// The `InternalIP`s of `nodes`, each once, sorted (what load balancers, Ingresses and
/// Gateways list as their addresses).
pub fn addresses(nodes: &[LbNode]) -> Vec<String> {
    let mut ips: Vec<String> = nodes
        .iter()
        .filter_map(|node| node.internal_ip.clone())
        .collect();
    ips.sort_unstable();
    ips.dedup();
    ips
}

/// Whether the Service is or was a load balancer (nodes changing concern it).
fn concerns(service: &Value) -> bool {
    service["spec"]["type"] == "LoadBalancer"
        || service
            .pointer("/status/loadBalancer/ingress")
            .is_some_and(|ingress| ingress.as_array().is_some_and(|i| !i.is_empty()))
}

impl Controller for ServiceLb {
    type State = State;
    type Action = Action;

    fn name(&self) -> &'static str {
        "service-lb"
    }

    fn keys_for(&self, change: &Change) -> Vec<ObjectKey> {
        match change.key.resource.as_str() {
            "services" => vec![change.key.clone()],
            "endpointslices" => change
                .latest()
                .and_then(|slice| slice["metadata"]["labels"][SERVICE_NAME_LABEL].as_str())
                .map(|name| {
                    let namespace = change.key.namespace.as_deref().unwrap_or_default();
                    vec![ObjectKey::namespaced("services", namespace, name)]
                })
                .unwrap_or_default(),
            "nodes" => self
                .cache
                .list("services")
                .iter()
                .filter(|svc| concerns(svc))
                .filter_map(|svc| key_of("services", svc))
                .collect(),
            _ => Vec::new(),
        }
    }

    fn all_keys(&self, cache: &Cache) -> Vec<ObjectKey> {
        cache.keys("services")
    }

    fn observe(&self, key: &ObjectKey, cache: &Cache) -> State {
        let namespace = key.namespace.as_deref().unwrap_or_default();
        State {
            key: key.clone(),
            service: cache.get(key),
            nodes: cache.list("nodes"),
            slices: cache
                .in_namespace("endpointslices", namespace)
                .into_iter()
                .filter(|slice| slice["metadata"]["labels"][SERVICE_NAME_LABEL] == key.name)
                .collect(),
        }
    }

    fn plan(&self, state: &State) -> Vec<Action> {
        plan(state)
    }

    fn execute(&self, action: &Action, store: &Store) -> Result<(), StoreError> {
        let Action::SetIngress(key, ingress) = action;
        writes::edit(store, key, |svc| {
            svc["status"]["loadBalancer"] = match ingress.is_empty() {
                true => json!({}),
                false => json!({"ingress": ingress}),
            };
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn node(name: &str, ip: &str, ready: bool, label: Option<&str>) -> Arc<Value> {
        let mut node = json!({"metadata": {"name": name, "labels": {}},
            "status": {"addresses": [{"type": "InternalIP", "address": ip},
                                     {"type": "Hostname", "address": name}],
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "Unknown" }}]}});
        if let Some(value) = label {
            node["metadata"]["labels"][ENABLE_LB_LABEL] = value.into();
        }
        Arc::new(node)
    }

    fn service(kind: &str, ingress: Value) -> Arc<Value> {
        Arc::new(json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": kind, "ports": [{"port": 18080}]},
            "status": {"loadBalancer": ingress}}))
    }

    fn state(service: Arc<Value>, nodes: Vec<Arc<Value>>) -> State {
        State {
            key: ObjectKey::namespaced("services", "default", "web"),
            service: Some(service),
            nodes,
            slices: Vec::new(),
        }
    }

    fn set(ips: &[&str]) -> Vec<Action> {
        let ingress = ips
            .iter()
            .map(|ip| json!({"ip": ip, "ipMode": "VIP"}))
            .collect();
        vec![Action::SetIngress(
            ObjectKey::namespaced("services", "default", "web"),
            ingress,
        )]
    }

    #[test]
    fn a_load_balancer_lists_every_ready_node() {
        let nodes = vec![
            node("b", "192.0.2.3", true, None),
            node("a", "192.0.2.2", true, None),
            node("c", "192.0.2.4", false, None),
        ];
        let lb = state(service("LoadBalancer", json!({})), nodes);
        assert_eq!(plan(&lb), set(&["192.0.2.2", "192.0.2.3"]));
    }

    #[test]
    fn a_local_policy_lists_only_nodes_with_a_ready_endpoint() {
        let nodes = vec![
            node("a", "192.0.2.2", true, None),
            node("b", "192.0.2.3", true, None),
            node("c", "192.0.2.4", true, None),
        ];
        let svc = Arc::new(json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local"},
            "status": {"loadBalancer": {}}}));
        let mut lb = state(svc, nodes);
        lb.slices = vec![Arc::new(json!({"endpoints": [
            {"addresses": ["10.42.1.2"], "nodeName": "b", "conditions": {"ready": true}},
            {"addresses": ["10.42.2.2"], "nodeName": "c", "conditions": {"ready": false}}]}))];
        assert_eq!(plan(&lb), set(&["192.0.2.3"]));
    }

    #[test]
    fn the_enablelb_label_makes_an_allow_list() {
        let nodes = vec![
            node("a", "192.0.2.2", true, None),
            node("b", "192.0.2.3", true, Some("true")),
            node("c", "192.0.2.4", true, Some("false")),
        ];
        let names: Vec<String> = eligible_nodes(&nodes).into_iter().map(|n| n.name).collect();
        assert_eq!(names, ["b"]);
    }

    #[test]
    fn an_up_to_date_status_changes_nothing_and_other_types_lose_theirs() {
        let nodes = vec![node("a", "192.0.2.2", true, None)];
        let done = json!({"ingress": [{"ip": "192.0.2.2", "ipMode": "VIP"}]});
        assert_eq!(
            plan(&state(service("LoadBalancer", done.clone()), nodes.clone())),
            []
        );
        assert_eq!(
            plan(&state(service("NodePort", done), nodes.clone())),
            set(&[])
        );
        assert_eq!(plan(&state(service("NodePort", json!({})), nodes)), []);
        let none = state(service("LoadBalancer", json!({})), vec![]);
        assert_eq!(plan(&none), [], "no node yet: stays pending");
    }
}
