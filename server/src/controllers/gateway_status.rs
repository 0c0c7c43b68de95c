//! The Gateway API status controller, on the shared [`runner`]: what `kubectl get
//! gatewayclass,gateway,httproute` and `kubectl describe` show for the objects wasmfleet
//! serves (`network::gateway`).
//!
//! - a GatewayClass of wasmfleet's controller is `Accepted`;
//! - a served Gateway lists the `InternalIP`s of the nodes that serve it
//!   ([`service_lb::eligible_nodes`], as for LoadBalancer Services) in `status.addresses`,
//!   is `Accepted`, and `Programmed` once it has an address; each listener shows its
//!   attached routes, and `ResolvedRefs` (`False`, `InvalidCertificateRef`, while an HTTPS
//!   listener's certificate Secret is missing or unusable);
//! - an HTTPRoute has one `status.parents` entry per served Gateway it names: `Accepted`
//!   when it attaches to one of its listeners (else `NotAllowedByListeners`), and
//!   `ResolvedRefs` when every backend Service exists (else `BackendNotFound`).
//!
//! Conditions keep their `lastTransitionTime` while their status stays, so a settled
//! object is not rewritten. Objects of other controllers are left alone.
//!
//! [`runner`]: super::runner

use std::sync::Arc;

use serde_json::{Value, json};

use super::runner::Controller;
use super::service_lb::{addresses, eligible_nodes};
use super::writes;
use crate::informer::{Cache, Change};
use crate::k8s::conditions::{Condition, set_condition};
use crate::k8s::time::now_rfc3339;
use crate::network::gateway::{CONTROLLER, attached_routes, attaches, is_served};
use crate::network::routes::Sources;
use crate::network::tls::{Problem, certificates};
use crate::store::{ObjectKey, Store, StoreError};

const GROUP: &str = "gateway.networking.k8s.io";

/// The controller.
pub struct GatewayStatus {
    cache: Cache,
}

impl GatewayStatus {
    /// A controller reading `cache`.
    pub fn new(cache: Cache) -> Self {
        Self { cache }
    }
}

/// One object and what its status depends on.
#[derive(Debug, Clone)]
pub struct State {
    /// The object's key (a GatewayClass, Gateway or HTTPRoute).
    pub key: ObjectKey,
    /// The object (`None`: deleted).
    pub object: Option<Arc<Value>>,
    /// Every GatewayClass.
    pub classes: Vec<Arc<Value>>,
    /// Every Gateway.
    pub gateways: Vec<Arc<Value>>,
    /// Every HTTPRoute.
    pub routes: Vec<Arc<Value>>,
    /// Every Service.
    pub services: Vec<Arc<Value>>,
    /// Every node.
    pub nodes: Vec<Arc<Value>>,
    /// Every Secret (HTTPS listeners' certificates).
    pub secrets: Vec<Arc<Value>>,
    /// The time new conditions get.
    pub now: String,
}

/// A write the controller makes.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Replaces the object's `status`.
    SetStatus(ObjectKey, Value),
}

/// Pure: the status the object should have, if it differs from what it has.
pub fn plan(state: &State) -> Vec<Action> {
    let Some(object) = state.object.as_deref() else {
        return Vec::new();
    };
    let want = match state.key.resource.as_str() {
        "gatewayclasses" => class_status(object, state),
        "gateways" => gateway_status(object, state),
        "httproutes" => route_status(object, state),
        _ => None,
    };
    match want {
        Some(status) if status != object["status"] => {
            vec![Action::SetStatus(state.key.clone(), status)]
        }
        _ => Vec::new(),
    }
}

/// `status` of `object` with `conditions` set (keeping unchanged ones' transition times).
fn with_conditions(status: &Value, conditions: &[Condition<'_>], now: &str) -> Value {
    let mut holder = json!({"status": status.clone()});
    if !holder["status"].is_object() {
        holder["status"] = json!({});
    }
    if !holder["status"]["conditions"].is_array() {
        holder["status"]["conditions"] = json!([]);
    }
    for condition in conditions {
        set_condition(&mut holder, condition, now);
    }
    holder["status"].take()
}

fn yes<'a>(type_: &'a str, reason: &'a str) -> Condition<'a> {
    Condition {
        type_,
        status: "True",
        reason,
        message: "",
    }
}

fn class_status(class: &Value, state: &State) -> Option<Value> {
    (class["spec"]["controllerName"] == CONTROLLER)
        .then(|| with_conditions(&class["status"], &[yes("Accepted", "Accepted")], &state.now))
}

fn gateway_status(gateway: &Value, state: &State) -> Option<Value> {
    if !is_served(gateway, &state.classes) {
        return None;
    }
    let ips = addresses(&eligible_nodes(&state.nodes));
    let programmed = match ips.is_empty() {
        true => Condition {
            type_: "Programmed",
            status: "False",
            reason: "AddressNotAssigned",
            message: "no Ready node with an address serves Gateways yet",
        },
        false => yes("Programmed", "Programmed"),
    };
    let conditions = [yes("Accepted", "Accepted"), programmed];
    let mut status = with_conditions(&gateway["status"], &conditions, &state.now);
    status["addresses"] = ips
        .iter()
        .map(|ip| json!({"type": "IPAddress", "value": ip}))
        .collect();
    status["listeners"] = listener_statuses(gateway, state);
    Some(status)
}

fn listener_statuses(gateway: &Value, state: &State) -> Value {
    let old = gateway["status"]["listeners"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let problems = certificate_problems(gateway, state);
    attached_routes(gateway, &state.routes)
        .into_iter()
        .map(|(name, attached)| {
            let before = old
                .iter()
                .find(|l| l["name"] == name.as_str())
                .cloned()
                .unwrap_or(Value::Null);
            let refs = match problems.iter().find(|p| p.listener.as_ref() == Some(&name)) {
                None => yes("ResolvedRefs", "ResolvedRefs"),
                Some(problem) => Condition {
                    type_: "ResolvedRefs",
                    status: "False",
                    reason: "InvalidCertificateRef",
                    message: &problem.message,
                },
            };
            let conditions = [
                yes("Accepted", "Accepted"),
                yes("Programmed", "Programmed"),
                refs,
            ];
            let mut listener = with_conditions(&before, &conditions, &state.now);
            listener["name"] = name.into();
            listener["attachedRoutes"] = attached.into();
            listener["supportedKinds"] = json!([{"group": GROUP, "kind": "HTTPRoute"}]);
            listener
        })
        .collect()
}

/// The certificate Secrets of `gateway`'s HTTPS listeners that cannot be served.
fn certificate_problems(gateway: &Value, state: &State) -> Vec<Problem> {
    let gateways = [Arc::new(gateway.clone())];
    let sources = Sources {
        gateways: &gateways,
        gateway_classes: &state.classes,
        ..Sources::default()
    };
    certificates(&sources, &state.secrets).problems
}

fn route_status(route: &Value, state: &State) -> Option<Value> {
    let namespace = route["metadata"]["namespace"].as_str().unwrap_or_default();
    let old = route["status"]["parents"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let resolved = missing_backend(route, namespace, &state.services);
    let parents: Vec<Value> = route["spec"]["parentRefs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|parent| {
            let gateway = parent_gateway(parent, namespace, state)?;
            let listeners = gateway["spec"]["listeners"].as_array().cloned().unwrap_or_default();
            let accepted = match listeners.iter().any(|l| attaches(route, gateway, l)) {
                true => yes("Accepted", "Accepted"),
                false => Condition {
                    type_: "Accepted",
                    status: "False",
                    reason: "NotAllowedByListeners",
                    message: "no listener of the Gateway takes this route (namespace, section, port or hostname)",
                },
            };
            let refs = match &resolved {
                None => yes("ResolvedRefs", "ResolvedRefs"),
                Some(why) => Condition {
                    type_: "ResolvedRefs",
                    status: "False",
                    reason: "BackendNotFound",
                    message: why,
                },
            };
            let before = old
                .iter()
                .find(|p| p["parentRef"] == *parent)
                .cloned()
                .unwrap_or(Value::Null);
            let mut entry = with_conditions(&before, &[accepted, refs], &state.now);
            entry["parentRef"] = parent.clone();
            entry["controllerName"] = CONTROLLER.into();
            Some(entry)
        })
        .collect();
    let mut status = route["status"].clone();
    if !status.is_object() {
        status = json!({});
    }
    status["parents"] = parents.into();
    Some(status)
}

/// The served Gateway `parent` names, if any.
fn parent_gateway<'a>(parent: &Value, namespace: &str, state: &'a State) -> Option<&'a Value> {
    let ns = parent["namespace"].as_str().unwrap_or(namespace);
    state
        .gateways
        .iter()
        .map(AsRef::as_ref)
        .find(|g| g["metadata"]["name"] == parent["name"] && g["metadata"]["namespace"] == ns)
        .filter(|g| is_served(g, &state.classes))
}

/// Why a backend cannot be resolved (the first missing Service), if one cannot.
fn missing_backend(route: &Value, namespace: &str, services: &[Arc<Value>]) -> Option<String> {
    route["spec"]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|rule| rule["backendRefs"].as_array().cloned().unwrap_or_default())
        .filter_map(|backend| backend["name"].as_str().map(str::to_owned))
        .find(|name| {
            !services.iter().any(|s| {
                s["metadata"]["name"] == name.as_str() && s["metadata"]["namespace"] == namespace
            })
        })
        .map(|name| format!("Service {namespace}/{name} does not exist"))
}

impl Controller for GatewayStatus {
    type State = State;
    type Action = Action;

    fn name(&self) -> &'static str {
        "gateway-status"
    }

    fn keys_for(&self, change: &Change) -> Vec<ObjectKey> {
        let all = |resource: &str| self.cache.keys(resource);
        match change.key.resource.as_str() {
            "gatewayclasses" => [vec![change.key.clone()], all("gateways")].concat(),
            "gateways" => [vec![change.key.clone()], all("httproutes")].concat(),
            "httproutes" => [vec![change.key.clone()], all("gateways")].concat(),
            "nodes" | "secrets" => all("gateways"),
            "services" => all("httproutes"),
            _ => Vec::new(),
        }
    }

    fn all_keys(&self, cache: &Cache) -> Vec<ObjectKey> {
        ["gatewayclasses", "gateways", "httproutes"]
            .into_iter()
            .flat_map(|resource| cache.keys(resource))
            .collect()
    }

    fn observe(&self, key: &ObjectKey, cache: &Cache) -> State {
        State {
            key: key.clone(),
            object: cache.get(key),
            classes: cache.list("gatewayclasses"),
            gateways: cache.list("gateways"),
            routes: cache.list("httproutes"),
            services: cache.list("services"),
            nodes: cache.list("nodes"),
            secrets: cache.list("secrets"),
            now: now_rfc3339(),
        }
    }

    fn plan(&self, state: &State) -> Vec<Action> {
        plan(state)
    }

    fn execute(&self, action: &Action, store: &Store) -> Result<(), StoreError> {
        let Action::SetStatus(key, status) = action;
        writes::edit(store, key, |object| object["status"] = status.clone())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn state(key: ObjectKey, object: Value) -> State {
        State {
            key,
            object: Some(Arc::new(object)),
            classes: Vec::new(),
            gateways: vec![Arc::new(gateway())],
            routes: Vec::new(),
            services: vec![Arc::new(
                json!({"metadata": {"name": "v1", "namespace": "default"}}),
            )],
            nodes: vec![Arc::new(json!({"metadata": {"name": "a"},
                "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
                           "conditions": [{"type": "Ready", "status": "True"}]}}))],
            secrets: Vec::new(),
            now: "2026-12-07T00:00:00Z".into(),
        }
    }

    fn gateway() -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"},
               "spec": {"gatewayClassName": "wasmfleet",
                        "listeners": [{"name": "http", "port": 8080, "protocol": "HTTP"}]}})
    }

    fn status_of(plan: Vec<Action>) -> Value {
        let [Action::SetStatus(_, status)] = plan.as_slice() else {
            panic!("one status write: {plan:?}");
        };
        status.clone()
    }

    #[test]
    fn a_served_gateway_is_programmed_on_the_nodes_addresses_and_then_left_alone() {
        let key = ObjectKey::namespaced("gateways", "default", "web");
        let status = status_of(plan(&state(key.clone(), gateway())));
        assert_eq!(
            status["addresses"],
            json!([{"type": "IPAddress", "value": "10.0.0.1"}])
        );
        assert_eq!(status["conditions"][1]["type"], "Programmed");
        assert_eq!(status["conditions"][1]["status"], "True");
        assert_eq!(status["listeners"][0]["attachedRoutes"], 0);
        let mut settled = gateway();
        settled["status"] = status;
        let mut later = state(key, settled);
        later.now = "2026-12-08T00:00:00Z".into();
        assert!(
            plan(&later).is_empty(),
            "a settled Gateway is not rewritten"
        );
    }

    #[test]
    fn a_route_is_accepted_by_its_gateway_and_names_a_missing_backend() {
        let route = json!({"metadata": {"name": "shop", "namespace": "default"},
            "spec": {"parentRefs": [{"name": "web"}, {"name": "elsewhere"}],
                     "rules": [{"backendRefs": [{"name": "v1", "port": 80},
                                                {"name": "v2", "port": 80}]}]}});
        let key = ObjectKey::namespaced("httproutes", "default", "shop");
        let status = status_of(plan(&state(key, route)));
        let parents = status["parents"].as_array().unwrap();
        assert_eq!(parents.len(), 1, "only served Gateways get an entry");
        assert_eq!(parents[0]["controllerName"], CONTROLLER);
        assert_eq!(parents[0]["conditions"][0]["status"], "True");
        assert_eq!(parents[0]["conditions"][1]["reason"], "BackendNotFound");
        assert!(
            parents[0]["conditions"][1]["message"]
                .as_str()
                .unwrap()
                .contains("default/v2")
        );
    }

    #[test]
    fn an_https_listener_with_a_missing_secret_has_unresolved_refs() {
        let mut https = gateway();
        https["spec"]["listeners"] = json!([
            {"name": "http", "port": 8080, "protocol": "HTTP"},
            {"name": "https", "port": 8443, "protocol": "HTTPS",
             "tls": {"certificateRefs": [{"name": "shop-tls"}]}},
        ]);
        let key = ObjectKey::namespaced("gateways", "default", "web");
        let status = status_of(plan(&state(key, https)));
        let refs = |i: usize| status["listeners"][i]["conditions"][2].clone();
        assert_eq!(refs(0)["status"], "True");
        assert_eq!(refs(1)["type"], "ResolvedRefs");
        assert_eq!(refs(1)["status"], "False");
        assert_eq!(refs(1)["reason"], "InvalidCertificateRef");
        assert!(
            refs(1)["message"]
                .as_str()
                .unwrap()
                .contains("Secret default/shop-tls: not found")
        );
    }
}
