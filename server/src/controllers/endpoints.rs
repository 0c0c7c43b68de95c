//! The endpoints controller (kube-controller-manager's `endpointslice` and `endpoints`
//! controllers in one), on the shared [`runner`]: for every Service with a selector, the
//! pods it selects that have an IP become its endpoints, in EndpointSlices
//! (discovery.k8s.io/v1, what the agents route from) and in the core/v1 Endpoints object
//! of the same name (what `kubectl describe service` reads).
//!
//! An endpoint is `ready` when its pod is Ready and not terminating (or always, with
//! `publishNotReadyAddresses`), `serving` when its pod is Ready, `terminating` once the
//! pod is being deleted; finished pods (Succeeded, Failed) are left out. A named
//! `targetPort` is looked up in each pod's `containerPorts`, so pods can serve it on
//! different numbers: pods are grouped by the ports they serve, one slice per group,
//! named `{service}-{hash of the ports}` so that a plan never depends on earlier writes.
//! A slice holds at most [`MAX_ENDPOINTS_PER_SLICE`] endpoints (kube-controller-manager's
//! default): a larger group is cut, in pod-name order, into `{service}-{hash}`,
//! `{service}-{hash}-1`, ... The Endpoints object keeps at most [`MAX_ENDPOINTS_ADDRESSES`]
//! addresses and says it was truncated, as Kubernetes does.
//! When the Service goes, its slices and Endpoints go too.
//!
//! [`runner`]: super::runner

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::runner::Controller;
use super::writes;
use crate::informer::{Cache, Change, key_of};
use crate::k8s::{names, owners, pods, selectors::Selector};
use crate::store::{ObjectKey, Store, StoreError};

/// The label that ties a slice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Whether a slice endpoint may take traffic (its `ready` is not false: nil means ready),
/// as kube-proxy reads it.
pub fn takes_traffic(endpoint: &Value) -> bool {
    endpoint["conditions"]["ready"] != false
}

/// The most endpoints one slice holds (`--max-endpoints-per-slice`'s default).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// The most addresses an Endpoints object holds (ready first); more are left out and the
/// object is annotated [`OVER_CAPACITY`] `truncated`.
pub const MAX_ENDPOINTS_ADDRESSES: usize = 1000;

/// The annotation Kubernetes puts on an Endpoints object that holds only part of the
/// Service's endpoints.
const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";

/// The label that says who manages a slice, and this controller's value.
const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
const MANAGED_BY: &str = "endpointslice-controller.k8s.io";

/// The endpoints controller. It holds the cache to find the Services a pod may belong to.
pub struct Endpoints {
    cache: Cache,
}

impl Endpoints {
    /// A controller reading `cache`.
    pub fn new(cache: Cache) -> Self {
        Self { cache }
    }
}

/// One Service and what its endpoints are made of.
#[derive(Debug, Clone)]
pub struct State {
    /// The Service's key.
    pub key: ObjectKey,
    /// The Service (`None`: deleted).
    pub service: Option<Arc<Value>>,
    /// The pods of its namespace.
    pub pods: Vec<Arc<Value>>,
    /// The slices labelled with its name.
    pub slices: Vec<Arc<Value>>,
    /// Its Endpoints object, if any.
    pub endpoints: Option<Arc<Value>>,
}

/// A write the controller makes.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Creates or replaces the object at the key.
    Put(ObjectKey, Value),
    /// Deletes the object at the key.
    Delete(ObjectKey),
}

/// One pod as an endpoint.
struct Member<'a> {
    pod: &'a Value,
    ip: &'a str,
    ready: bool,
    serving: bool,
    terminating: bool,
}

/// Pure: the writes that make the Service's slices and Endpoints match its pods.
pub fn plan(state: &State) -> Vec<Action> {
    let namespace = state.key.namespace.as_deref().unwrap_or("default");
    let service = state.service.as_deref();
    let selector = service.and_then(selector_of);
    let mut desired: BTreeMap<String, Value> = BTreeMap::new();
    if let (Some(service), Some(selector)) = (service, &selector) {
        for slice in desired_slices(service, selector, &state.pods) {
            let name = slice["metadata"]["name"].as_str().unwrap_or_default();
            desired.insert(name.to_owned(), slice);
        }
    }
    let mut actions = Vec::new();
    for slice in &state.slices {
        let name = slice["metadata"]["name"].as_str().unwrap_or_default();
        let ours = slice.pointer(&label_pointer(MANAGED_BY_LABEL)) == Some(&json!(MANAGED_BY));
        match desired.remove(name) {
            Some(want) if !same_slice(slice, &want) => actions.push(put("endpointslices", want)),
            Some(_) => {}
            None if ours => actions.push(Action::Delete(ObjectKey::namespaced(
                "endpointslices",
                namespace,
                name,
            ))),
            None => {}
        }
    }
    actions.extend(
        desired
            .into_values()
            .map(|slice| put("endpointslices", slice)),
    );
    actions.extend(plan_endpoints(state, service, selector.as_ref()));
    actions
}

/// The Endpoints object: kept for Services with a selector, deleted with the Service,
/// left alone for Services without one (a user writes those).
fn plan_endpoints(
    state: &State,
    service: Option<&Value>,
    selector: Option<&Selector>,
) -> Option<Action> {
    let existing = state.endpoints.as_deref();
    match (service, selector) {
        (None, _) => existing.map(|_| {
            let mut key = state.key.clone();
            key.resource = "endpoints".into();
            Action::Delete(key)
        }),
        (Some(_), None) => None,
        (Some(service), Some(selector)) => {
            let want = desired_endpoints(service, selector, &state.pods);
            let same = existing.is_some_and(|e| {
                e.get("subsets") == want.get("subsets")
                    && e["metadata"]["labels"] == want["metadata"]["labels"]
                    && e["metadata"]["annotations"][OVER_CAPACITY]
                        == want["metadata"]["annotations"][OVER_CAPACITY]
            });
            (!same).then(|| put("endpoints", want))
        }
    }
}

fn put(resource: &str, obj: Value) -> Action {
    let namespace = obj["metadata"]["namespace"].as_str().unwrap_or("default");
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    Action::Put(ObjectKey::namespaced(resource, namespace, name), obj)
}

/// The Service's selector, when it routes to pods (not ExternalName, not selector-less).
fn selector_of(service: &Value) -> Option<Selector> {
    let spec = &service["spec"];
    let labels = spec["selector"].as_object().filter(|s| !s.is_empty())?;
    if spec["type"] == "ExternalName" {
        return None;
    }
    Selector::from_label_selector(&json!({"matchLabels": labels})).ok()
}

/// The pods the selector picks that can be endpoints.
fn members<'a>(service: &Value, selector: &Selector, pods: &'a [Arc<Value>]) -> Vec<Member<'a>> {
    let publish_unready = service["spec"]["publishNotReadyAddresses"] == true;
    let mut members: Vec<Member<'a>> = pods
        .iter()
        .map(Arc::as_ref)
        .filter(|pod| selector.matches(pod))
        .filter(|pod| {
            !matches!(
                pod["status"]["phase"].as_str(),
                Some("Succeeded" | "Failed")
            )
        })
        .filter_map(|pod| {
            let ip = pod["status"]["podIP"]
                .as_str()
                .filter(|ip| !ip.is_empty())?;
            let terminating = !pod["metadata"]["deletionTimestamp"].is_null();
            let serving = pods::is_ready(pod);
            Some(Member {
                pod,
                ip,
                ready: publish_unready || (serving && !terminating),
                serving: publish_unready || serving,
                terminating,
            })
        })
        .collect();
    members.sort_by(|a, b| {
        a.pod["metadata"]["name"]
            .as_str()
            .cmp(&b.pod["metadata"]["name"].as_str())
    });
    members
}

/// Each member's port per Service port (`None`: it does not serve that one).
fn resolved_ports(service: &Value, pod: &Value) -> Vec<Option<u16>> {
    service_ports(service)
        .iter()
        .map(|port| match &port["targetPort"] {
            Value::String(name) => named_port(pod, name, protocol_of(port)),
            Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            _ => port["port"].as_u64().and_then(|n| u16::try_from(n).ok()),
        })
        .collect()
}

fn service_ports(service: &Value) -> &[Value] {
    service["spec"]["ports"]
        .as_array()
        .map_or(&[], Vec::as_slice)
}

/// A port's `protocol` (TCP when unset).
fn protocol_of(port: &Value) -> &str {
    port["protocol"].as_str().unwrap_or("TCP")
}

/// The number of the pod's `containerPort` called `name` with `protocol`.
fn named_port(pod: &Value, name: &str, protocol: &str) -> Option<u16> {
    pod["spec"]["containers"]
        .as_array()?
        .iter()
        .flat_map(|c| c["ports"].as_array().into_iter().flatten())
        .find(|p| p["name"] == name && protocol_of(p) == protocol)
        .and_then(|p| p["containerPort"].as_u64())
        .and_then(|n| u16::try_from(n).ok())
}

/// The members grouped by the ports they serve (members serving none are left out).
fn groups<'a>(
    service: &Value,
    members: Vec<Member<'a>>,
) -> BTreeMap<Vec<Option<u16>>, Vec<Member<'a>>> {
    let mut groups: BTreeMap<Vec<Option<u16>>, Vec<Member<'a>>> = BTreeMap::new();
    for member in members {
        let ports = resolved_ports(service, member.pod);
        if ports.iter().any(Option::is_some) {
            groups.entry(ports).or_default().push(member);
        }
    }
    groups
}

/// `ports` of a slice or an Endpoints subset for one group.
fn port_list(service: &Value, ports: &[Option<u16>]) -> Value {
    service_ports(service)
        .iter()
        .zip(ports)
        .filter_map(|(port, number)| {
            Some(json!({
                "name": port["name"].as_str().unwrap_or(""),
                "port": (*number)?,
                "protocol": protocol_of(port),
            }))
        })
        .collect()
}

fn target_ref(pod: &Value) -> Value {
    json!({
        "kind": "Pod",
        "namespace": pod["metadata"]["namespace"],
        "name": pod["metadata"]["name"],
        "uid": pod["metadata"]["uid"],
    })
}

fn desired_slices(service: &Value, selector: &Selector, pods: &[Arc<Value>]) -> Vec<Value> {
    let members = members(service, selector, pods);
    let mut slices: Vec<Value> = Vec::new();
    for (ports, members) in groups(service, members) {
        let ports = port_list(service, &ports);
        for (part, chunk) in members.chunks(MAX_ENDPOINTS_PER_SLICE).enumerate() {
            let endpoints = chunk.iter().map(slice_endpoint).collect();
            slices.push(slice(service, part, endpoints, ports.clone()));
        }
    }
    if slices.is_empty() {
        // Kubernetes keeps one empty slice for a Service without endpoints.
        slices.push(slice(service, 0, Vec::new(), port_list(service, &[])));
    }
    slices
}

/// Part `part` of the slices of `service` serving `ports`, named after its ports.
fn slice(service: &Value, part: usize, endpoints: Vec<Value>, ports: Value) -> Value {
    let service_name = service["metadata"]["name"].as_str().unwrap_or_default();
    let mut name = format!("{service_name}-{}", names::template_hash(&ports));
    if part > 0 {
        name = format!("{name}-{part}");
    }
    let mut labels = service["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    labels[SERVICE_NAME_LABEL] = service_name.into();
    labels[MANAGED_BY_LABEL] = MANAGED_BY.into();
    let owner = owners::controller_reference(service);
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": service["metadata"]["namespace"].as_str().unwrap_or("default"),
            "labels": labels,
            "ownerReferences": owner.iter().collect::<Vec<_>>(),
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    })
}

fn slice_endpoint(member: &Member<'_>) -> Value {
    let mut endpoint = json!({
        "addresses": [member.ip],
        "conditions": {
            "ready": member.ready,
            "serving": member.serving,
            "terminating": member.terminating,
        },
        "targetRef": target_ref(member.pod),
    });
    if let Some(node) = pods::bound_node(member.pod) {
        endpoint["nodeName"] = node.into();
    }
    endpoint
}

fn desired_endpoints(service: &Value, selector: &Selector, pods: &[Arc<Value>]) -> Value {
    let members = members(service, selector, pods);
    let address = |m: &Member<'_>| {
        let mut address = json!({"ip": m.ip, "targetRef": target_ref(m.pod)});
        if let Some(node) = pods::bound_node(m.pod) {
            address["nodeName"] = node.into();
        }
        address
    };
    let groups = groups(service, members);
    let total: usize = groups.values().map(Vec::len).sum();
    let mut split: Vec<_> = groups
        .into_iter()
        .map(|(ports, members)| {
            let (ready, unready): (Vec<_>, Vec<_>) = members.into_iter().partition(|m| m.ready);
            (ports, ready, unready)
        })
        .collect();
    // Over capacity, ready addresses are kept first (in group and name order).
    let mut room = MAX_ENDPOINTS_ADDRESSES;
    for (_, ready, _) in &mut split {
        ready.truncate(room);
        room -= ready.len();
    }
    for (_, _, unready) in &mut split {
        unready.truncate(room);
        room -= unready.len();
    }
    let subsets: Vec<Value> = split
        .into_iter()
        .filter(|(_, ready, unready)| !ready.is_empty() || !unready.is_empty())
        .map(|(ports, ready, unready)| {
            let mut subset = json!({"ports": port_list(service, &ports)});
            if !ready.is_empty() {
                subset["addresses"] = ready.iter().map(address).collect();
            }
            if !unready.is_empty() {
                subset["notReadyAddresses"] = unready.iter().map(address).collect();
            }
            subset
        })
        .collect();
    let mut endpoints = json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": service["metadata"]["name"],
            "namespace": service["metadata"]["namespace"],
            "labels": service["metadata"]["labels"].as_object().cloned().unwrap_or_default(),
        },
    });
    if !subsets.is_empty() {
        endpoints["subsets"] = subsets.into();
    }
    if total > MAX_ENDPOINTS_ADDRESSES {
        endpoints["metadata"]["annotations"] = json!({OVER_CAPACITY: "truncated"});
    }
    endpoints
}

/// Whether a stored slice already says what `want` says.
fn same_slice(stored: &Value, want: &Value) -> bool {
    ["addressType", "endpoints", "ports"]
        .iter()
        .all(|field| stored.get(*field) == want.get(*field))
        && stored["metadata"]["labels"] == want["metadata"]["labels"]
        && stored["metadata"]["ownerReferences"] == want["metadata"]["ownerReferences"]
}

fn label_pointer(label: &str) -> String {
    format!(
        "/metadata/labels/{}",
        label.replace('~', "~0").replace('/', "~1")
    )
}

impl Controller for Endpoints {
    type State = State;
    type Action = Action;

    fn name(&self) -> &'static str {
        "endpoints"
    }

    fn keys_for(&self, change: &Change) -> Vec<ObjectKey> {
        let namespace = change.key.namespace.as_deref().unwrap_or_default();
        let service = |name: &str| ObjectKey::namespaced("services", namespace, name);
        match change.key.resource.as_str() {
            "services" => vec![change.key.clone()],
            "endpoints" => vec![service(&change.key.name)],
            "endpointslices" => change
                .latest()
                .and_then(|slice| slice.pointer(&label_pointer(SERVICE_NAME_LABEL))?.as_str())
                .map(|name| vec![service(name)])
                .unwrap_or_default(),
            "pods" => {
                let pods = [change.old.as_deref(), change.new.as_deref()];
                self.cache
                    .in_namespace("services", namespace)
                    .iter()
                    .filter(|svc| {
                        selector_of(svc)
                            .is_some_and(|s| pods.iter().flatten().any(|p| s.matches(p)))
                    })
                    .filter_map(|svc| key_of("services", svc))
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    fn all_keys(&self, cache: &Cache) -> Vec<ObjectKey> {
        cache.keys("services")
    }

    fn observe(&self, key: &ObjectKey, cache: &Cache) -> State {
        let namespace = key.namespace.as_deref().unwrap_or_default();
        let pointer = label_pointer(SERVICE_NAME_LABEL);
        let mut endpoints_key = key.clone();
        endpoints_key.resource = "endpoints".into();
        State {
            key: key.clone(),
            service: cache.get(key),
            pods: cache.in_namespace("pods", namespace),
            slices: cache
                .in_namespace("endpointslices", namespace)
                .into_iter()
                .filter(|slice| slice.pointer(&pointer).and_then(Value::as_str) == Some(&key.name))
                .collect(),
            endpoints: cache.get(&endpoints_key),
        }
    }

    fn plan(&self, state: &State) -> Vec<Action> {
        plan(state)
    }

    fn execute(&self, action: &Action, store: &Store) -> Result<(), StoreError> {
        match action {
            Action::Put(key, obj) => store
                .upsert_with(key, |_| Ok::<_, StoreError>(obj.clone()))
                .map(drop),
            Action::Delete(key) => writes::delete(store, key),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn service(selector: Value, ports: Value) -> Arc<Value> {
        Arc::new(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "uid": "svc-uid"},
            "spec": {"type": "ClusterIP", "selector": selector, "ports": ports}}))
    }

    fn pod(name: &str, ip: &str, ready: bool, port_name: &str, port: u16) -> Arc<Value> {
        Arc::new(
            json!({"metadata": {"name": name, "namespace": "default", "uid": format!("{name}-uid"),
                "labels": {"app": "web"}},
            "spec": {"nodeName": "pi-1", "containers": [{"name": "c",
                "ports": [{"name": port_name, "containerPort": port}]}]},
            "status": {"phase": "Running", "podIP": ip,
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}}),
        )
    }

    fn state(service: Option<Arc<Value>>, pods: Vec<Arc<Value>>) -> State {
        State {
            key: ObjectKey::namespaced("services", "default", "web"),
            service,
            pods,
            slices: vec![],
            endpoints: None,
        }
    }

    fn puts(actions: &[Action], resource: &str) -> Vec<Value> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Put(key, obj) if key.resource == resource => Some(obj.clone()),
                _ => None,
            })
            .collect()
    }

    /// The state after `actions` were written.
    fn settled(mut state: State, actions: &[Action]) -> State {
        state.slices = puts(actions, "endpointslices")
            .into_iter()
            .map(Arc::new)
            .collect();
        state.endpoints = puts(actions, "endpoints").pop().map(Arc::new);
        state
    }

    /// `n` pods `p0000`..., every third one not ready.
    fn many_pods(n: usize) -> Vec<Arc<Value>> {
        (0..n)
            .map(|i| {
                let ip = format!("10.42.{}.{}", i / 250, i % 250 + 2);
                pod(&format!("p{i:04}"), &ip, i % 3 != 0, "http", 8080)
            })
            .collect()
    }

    #[test]
    fn a_slice_holds_at_most_a_hundred_endpoints_and_the_rest_follow_in_numbered_slices() {
        let svc = service(
            json!({"app": "web"}),
            json!([{"port": 80, "targetPort": 8080}]),
        );
        let state = state(Some(svc), many_pods(250));
        let actions = plan(&state);
        let slices = puts(&actions, "endpointslices");
        let sizes: Vec<usize> = slices
            .iter()
            .map(|s| s["endpoints"].as_array().map_or(0, Vec::len))
            .collect();
        assert_eq!(sizes, [100, 100, 50]);
        let names: Vec<&str> = slices
            .iter()
            .filter_map(|s| s["metadata"]["name"].as_str())
            .collect();
        let first = names[0];
        assert_eq!(names[1..], [format!("{first}-1"), format!("{first}-2")]);
        assert_eq!(slices[2]["endpoints"][49]["targetRef"]["name"], "p0249");
        // Settled, the plan is empty: the split does not depend on earlier writes.
        assert_eq!(plan(&settled(state, &actions)), []);
    }

    #[test]
    fn endpoints_over_a_thousand_addresses_keep_the_ready_ones_and_say_truncated() {
        let svc = service(
            json!({"app": "web"}),
            json!([{"port": 80, "targetPort": 8080}]),
        );
        let state = state(Some(svc), many_pods(1200));
        let actions = plan(&state);
        let endpoints = &puts(&actions, "endpoints")[0];
        let subset = &endpoints["subsets"][0];
        let count = |field: &str| subset[field].as_array().map_or(0, Vec::len);
        assert_eq!((count("addresses"), count("notReadyAddresses")), (800, 200));
        assert_eq!(
            endpoints["metadata"]["annotations"][OVER_CAPACITY],
            "truncated"
        );
        assert_eq!(puts(&actions, "endpointslices").len(), 12);
        assert_eq!(plan(&settled(state, &actions)), []);
        let small = self::state(
            Some(service(json!({"app": "web"}), json!([{"port": 80}]))),
            many_pods(3),
        );
        let endpoints = &puts(&plan(&small), "endpoints")[0];
        assert!(
            endpoints["metadata"]["annotations"].is_null(),
            "{endpoints}"
        );
    }

    #[test]
    fn ready_pods_are_ready_endpoints_and_unready_ones_are_not() {
        let svc = service(
            json!({"app": "web"}),
            json!([{"port": 80, "targetPort": 8080}]),
        );
        let pods = vec![
            pod("a", "10.42.0.2", true, "http", 8080),
            pod("b", "10.42.0.3", false, "http", 8080),
        ];
        let state = state(Some(svc), pods);
        let actions = plan(&state);
        let slices = puts(&actions, "endpointslices");
        assert_eq!(slices.len(), 1);
        let slice = &slices[0];
        assert_eq!(slice["metadata"]["labels"][SERVICE_NAME_LABEL], "web");
        assert_eq!(slice["metadata"]["ownerReferences"][0]["uid"], "svc-uid");
        assert_eq!(
            slice["ports"],
            json!([{"name": "", "port": 8080, "protocol": "TCP"}])
        );
        assert_eq!(slice["endpoints"][0]["addresses"], json!(["10.42.0.2"]));
        assert_eq!(slice["endpoints"][0]["conditions"]["ready"], true);
        assert_eq!(slice["endpoints"][1]["conditions"]["ready"], false);
        assert_eq!(slice["endpoints"][0]["nodeName"], "pi-1");
        let endpoints = &puts(&actions, "endpoints")[0];
        assert_eq!(endpoints["subsets"][0]["addresses"][0]["ip"], "10.42.0.2");
        assert_eq!(
            endpoints["subsets"][0]["notReadyAddresses"][0]["ip"],
            "10.42.0.3"
        );
        // Written once: the next plan has nothing to do.
        assert!(plan(&settled(state, &actions)).is_empty());
    }

    #[test]
    fn named_target_ports_group_pods_by_the_number_they_serve() {
        let svc = service(
            json!({"app": "web"}),
            json!([{"port": 80, "targetPort": "http"}]),
        );
        let pods = vec![
            pod("a", "10.42.0.2", true, "http", 8080),
            pod("b", "10.42.0.3", true, "http", 9090),
            pod("c", "10.42.0.4", true, "metrics", 9100),
        ];
        let slices = puts(&plan(&state(Some(svc), pods)), "endpointslices");
        let mut ports: Vec<i64> = slices
            .iter()
            .map(|s| s["ports"][0]["port"].as_i64().unwrap())
            .collect();
        ports.sort_unstable();
        assert_eq!(
            ports,
            [8080, 9090],
            "the pod without an `http` port is no endpoint"
        );
    }

    #[test]
    fn a_named_udp_target_port_takes_the_pods_udp_port_of_that_name() {
        let svc = service(
            json!({"app": "web"}),
            json!([{"port": 53, "protocol": "UDP", "targetPort": "dns"}]),
        );
        let mut udp = (*pod("a", "10.42.0.2", true, "dns", 5353)).clone();
        udp["spec"]["containers"][0]["ports"][0]["protocol"] = json!("UDP");
        let pods = vec![Arc::new(udp), pod("b", "10.42.0.3", true, "dns", 5300)];
        let slices = puts(&plan(&state(Some(svc), pods)), "endpointslices");
        assert_eq!(
            slices.len(),
            1,
            "the pod with a TCP `dns` port is no endpoint"
        );
        assert_eq!(slices[0]["ports"][0]["port"], 5353);
        assert_eq!(slices[0]["ports"][0]["protocol"], "UDP");
    }

    #[test]
    fn a_deleted_service_takes_its_slices_and_endpoints_along() {
        let svc = service(json!({"app": "web"}), json!([{"port": 80}]));
        let first = state(Some(svc), vec![pod("a", "10.42.0.2", true, "http", 80)]);
        let actions = plan(&first);
        let mut gone = settled(first, &actions);
        gone.service = None;
        let deletes: Vec<String> = plan(&gone)
            .iter()
            .map(|a| match a {
                Action::Delete(key) => format!("{}/{}", key.resource, key.name),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(deletes.len(), 2, "{deletes:?}");
        assert!(deletes.contains(&"endpoints/web".to_owned()));
    }

    #[test]
    fn terminating_and_finished_pods_receive_no_traffic() {
        let svc = service(json!({"app": "web"}), json!([{"port": 80}]));
        let mut leaving = (*pod("a", "10.42.0.2", true, "http", 80)).clone();
        leaving["metadata"]["deletionTimestamp"] = "2026-12-07T00:00:00Z".into();
        let mut done = (*pod("b", "10.42.0.3", true, "http", 80)).clone();
        done["status"]["phase"] = "Succeeded".into();
        let actions = plan(&state(Some(svc), vec![Arc::new(leaving), Arc::new(done)]));
        let slice = &puts(&actions, "endpointslices")[0];
        assert_eq!(slice["endpoints"].as_array().unwrap().len(), 1);
        let conditions = &slice["endpoints"][0]["conditions"];
        assert_eq!(conditions["ready"], false);
        assert_eq!(conditions["terminating"], true);
    }

    #[test]
    fn a_service_without_selector_is_left_to_its_user() {
        let svc = service(Value::Null, json!([{"port": 80}]));
        assert!(
            plan(&state(
                Some(svc),
                vec![pod("a", "10.42.0.2", true, "http", 80)]
            ))
            .is_empty()
        );
    }
}
