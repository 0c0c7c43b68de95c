//! The Ingress status controller, on the shared [`runner`]: an Ingress the agents serve
//! (`network::routes::is_served`) shows, in `status.loadBalancer.ingress`, the
//! `InternalIP`s of the nodes that serve it, so `kubectl get ingress` prints them as
//! ADDRESS. Those are the nodes that serve LoadBalancer Services
//! ([`service_lb::eligible_nodes`]: every Ready node, or the ones labelled for it), as
//! k3s's Traefik is itself such a Service. Ingresses of other controllers' classes are
//! left alone.
//!
//! [`runner`]: super::runner

use std::sync::Arc;

use serde_json::{Value, json};

use super::runner::Controller;
use super::service_lb::{addresses, eligible_nodes};
use super::writes;
use crate::informer::{Cache, Change};
use crate::network::routes::is_served;
use crate::store::{ObjectKey, Store, StoreError};

/// The controller.
pub struct IngressStatus {
    cache: Cache,
}

impl IngressStatus {
    /// A controller reading `cache`.
    pub fn new(cache: Cache) -> Self {
        Self { cache }
    }
}

/// One Ingress, the classes and the nodes.
#[derive(Debug, Clone)]
pub struct State {
    /// The Ingress's key.
    pub key: ObjectKey,
    /// The Ingress (`None`: deleted).
    pub ingress: Option<Arc<Value>>,
    /// Every IngressClass.
    pub classes: Vec<Arc<Value>>,
    /// Every node.
    pub nodes: Vec<Arc<Value>>,
}

/// A write the controller makes.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Sets the Ingress's `status.loadBalancer.ingress`.
    SetAddresses(ObjectKey, Vec<Value>),
}

/// Pure: the addresses a served Ingress should show, if it does not show them yet.
pub fn plan(state: &State) -> Vec<Action> {
    let Some(ingress) = state.ingress.as_deref() else {
        return Vec::new();
    };
    if !is_served(ingress, &state.classes) {
        return Vec::new();
    }
    let want: Vec<Value> = addresses(&eligible_nodes(&state.nodes))
        .into_iter()
        .map(|ip| json!({"ip": ip}))
        .collect();
    let have = ingress
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    match have == want.as_slice() {
        true => Vec::new(),
        false => vec![Action::SetAddresses(state.key.clone(), want)],
    }
}

impl Controller for IngressStatus {
    type State = State;
    type Action = Action;

    fn name(&self) -> &'static str {
        "ingress-status"
    }

    fn keys_for(&self, change: &Change) -> Vec<ObjectKey> {
        match change.key.resource.as_str() {
            "ingresses" => vec![change.key.clone()],
            "nodes" | "ingressclasses" => self.cache.keys("ingresses"),
            _ => Vec::new(),
        }
    }

    fn all_keys(&self, cache: &Cache) -> Vec<ObjectKey> {
        cache.keys("ingresses")
    }

    fn observe(&self, key: &ObjectKey, cache: &Cache) -> State {
        State {
            key: key.clone(),
            ingress: cache.get(key),
            classes: cache.list("ingressclasses"),
            nodes: cache.list("nodes"),
        }
    }

    fn plan(&self, state: &State) -> Vec<Action> {
        plan(state)
    }

    fn execute(&self, action: &Action, store: &Store) -> Result<(), StoreError> {
        let Action::SetAddresses(key, addresses) = action;
        writes::edit(store, key, |ingress| {
            ingress["status"]["loadBalancer"] = match addresses.is_empty() {
                true => json!({}),
                false => json!({"ingress": addresses}),
            };
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn node(name: &str, ip: &str, ready: bool) -> Arc<Value> {
        Arc::new(json!({"metadata": {"name": name, "labels": {}},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}],
                       "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}}))
    }

    fn state(class: Option<&str>, status: Value, nodes: Vec<Arc<Value>>) -> State {
        let mut ingress = json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {}, "status": status});
        if let Some(class) = class {
            ingress["spec"]["ingressClassName"] = json!(class);
        }
        State {
            key: ObjectKey::namespaced("ingresses", "default", "web"),
            ingress: Some(Arc::new(ingress)),
            classes: vec![Arc::new(json!({"metadata": {"name": "nginx"},
                "spec": {"controller": "k8s.io/ingress-nginx"}}))],
            nodes,
        }
    }

    #[test]
    fn a_served_ingress_shows_the_ready_nodes_addresses() {
        let nodes = vec![
            node("b", "10.0.0.2", true),
            node("a", "10.0.0.1", true),
            node("c", "10.0.0.3", false),
        ];
        let plan = plan(&state(None, json!({"loadBalancer": {}}), nodes.clone()));
        let want = vec![json!({"ip": "10.0.0.1"}), json!({"ip": "10.0.0.2"})];
        assert_eq!(
            plan,
            [Action::SetAddresses(
                ObjectKey::namespaced("ingresses", "default", "web"),
                want.clone()
            )]
        );
        let settled = state(
            Some("wasmfleet"),
            json!({"loadBalancer": {"ingress": want}}),
            nodes,
        );
        assert!(super::plan(&settled).is_empty());
    }

    #[test]
    fn another_controllers_ingress_is_left_alone() {
        let nodes = vec![node("a", "10.0.0.1", true)];
        assert!(plan(&state(Some("nginx"), json!({}), nodes)).is_empty());
    }
}
