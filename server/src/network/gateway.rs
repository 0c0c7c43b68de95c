//! The Gateway API compiler: the served Gateways' listeners, with the HTTPRoutes attached
//! to them, into listeners of the route table (see [`super::routes::compile`]).
//!
//! Pure. A Gateway is served when its class's controller is [`CONTROLLER`] (or it names
//! [`CLASS`] before that class exists). A route attaches to a listener when one of its
//! `parentRefs` names the Gateway (in the route's namespace unless it says another), and
//! the listener if it gives a `sectionName` or `port`, and the listener allows the route's
//! namespace (`Same` by default, or `All`). Its hostnames meet the listener's: equal, or
//! one a wildcard covering the other; with neither, the route serves any host. Each match
//! of a rule (a `PathPrefix /` when it has none) becomes a route to the rule's
//! `backendRefs` with their weights (default 1). Gateways on one port share its hosts;
//! for one host, path and header set the oldest route wins.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use wasmfleet_protocol::routes::{Backend, HeaderMatch, Listener, PathMatch, Route};

use super::routes::{Sources, oldest_first, virtual_hosts};

/// The GatewayClass the server creates, of [`CONTROLLER`].
pub const CLASS: &str = "wasmfleet";

/// The controller name of the GatewayClasses wasmfleet serves.
pub const CONTROLLER: &str = "wasmfleet.io/gateway-controller";

/// Whether `gateway` is served by wasmfleet (its class is one of [`CONTROLLER`]'s).
pub fn is_served(gateway: &Value, classes: &[Arc<Value>]) -> bool {
    let name = gateway["spec"]["gatewayClassName"]
        .as_str()
        .unwrap_or_default();
    match classes.iter().find(|c| c["metadata"]["name"] == name) {
        Some(class) => class["spec"]["controllerName"] == CONTROLLER,
        None => name == CLASS,
    }
}

/// Pure: one listener per port of the served Gateways.
pub fn listeners(sources: &Sources<'_>) -> Vec<Listener> {
    let gateways = sources
        .gateways
        .iter()
        .map(AsRef::as_ref)
        .filter(|g| is_served(g, sources.gateway_classes));
    let routes = oldest_first(sources.http_routes.iter().map(AsRef::as_ref));
    let mut ports: BTreeMap<u16, BTreeMap<String, Vec<Route>>> = BTreeMap::new();
    for gateway in oldest_first(gateways) {
        for listener in list(&gateway["spec"]["listeners"]) {
            let Some(port) = listener["port"]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
            else {
                continue;
            };
            let hosts = ports.entry(port).or_default();
            for route in routes.iter().filter(|r| attaches(r, gateway, listener)) {
                add_route(route, listener, hosts);
            }
        }
    }
    ports
        .into_iter()
        .map(|(port, hosts)| Listener {
            port,
            hosts: virtual_hosts(hosts),
        })
        .collect()
}

/// The number of routes attached to each listener of `gateway`, by listener name.
pub fn attached_routes(gateway: &Value, http_routes: &[Arc<Value>]) -> Vec<(String, usize)> {
    list(&gateway["spec"]["listeners"])
        .iter()
        .map(|listener| {
            let name = listener["name"].as_str().unwrap_or_default().to_owned();
            let count = http_routes
                .iter()
                .filter(|r| attaches(r, gateway, listener))
                .count();
            (name, count)
        })
        .collect()
}

/// Whether `route` attaches to `listener` of `gateway`.
pub fn attaches(route: &Value, gateway: &Value, listener: &Value) -> bool {
    let route_ns = namespace(route);
    let gateway_ns = namespace(gateway);
    let allowed = match listener["allowedRoutes"]["namespaces"]["from"].as_str() {
        Some("All") => true,
        _ => route_ns == gateway_ns,
    };
    allowed
        && list(&route["spec"]["parentRefs"]).iter().any(|parent| {
            parent["name"] == gateway["metadata"]["name"]
                && parent["namespace"].as_str().unwrap_or(route_ns) == gateway_ns
                && parent["kind"].as_str().unwrap_or("Gateway") == "Gateway"
                && parent["sectionName"]
                    .as_str()
                    .is_none_or(|s| listener["name"] == s)
                && parent["port"]
                    .as_u64()
                    .is_none_or(|p| listener["port"] == p)
        })
        && !hostnames(route, listener).is_empty()
}

/// The hosts `route` serves on `listener` (`""`: any).
fn hostnames(route: &Value, listener: &Value) -> Vec<String> {
    let theirs = listener["hostname"].as_str().map(str::to_ascii_lowercase);
    let ours: Vec<String> = list(&route["spec"]["hostnames"])
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_ascii_lowercase)
        .collect();
    match (theirs, ours.is_empty()) {
        (None, true) => vec![String::new()],
        (Some(listener), true) => vec![listener],
        (None, false) => ours,
        (Some(listener), false) => ours
            .iter()
            .filter_map(|host| meet(host, &listener))
            .collect(),
    }
}

/// The more specific of two host names if one covers the other.
fn meet(a: &str, b: &str) -> Option<String> {
    let covers = |wild: &str, host: &str| {
        wild.strip_prefix('*')
            .is_some_and(|suffix| host.ends_with(suffix) && host.len() > suffix.len())
    };
    if a == b || covers(b, a) {
        Some(a.to_owned())
    } else if covers(a, b) {
        Some(b.to_owned())
    } else {
        None
    }
}

/// Adds the routes of every rule and match of `route` to `hosts`.
fn add_route(route: &Value, listener: &Value, hosts: &mut BTreeMap<String, Vec<Route>>) {
    let ns = namespace(route);
    let source = format!(
        "HTTPRoute {ns}/{}",
        route["metadata"]["name"].as_str().unwrap_or_default()
    );
    for rule in list(&route["spec"]["rules"]) {
        let backends: Vec<Backend> = list(&rule["backendRefs"])
            .iter()
            .map(|b| Backend {
                namespace: ns.to_owned(),
                service: b["name"].as_str().unwrap_or_default().to_owned(),
                port: b["port"]
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or(0),
                weight: b["weight"]
                    .as_u64()
                    .and_then(|w| u32::try_from(w).ok())
                    .unwrap_or(1),
            })
            .collect();
        let matches = match list(&rule["matches"]) {
            [] => vec![(PathMatch::Prefix("/".into()), Vec::new())],
            some => some.iter().map(matched).collect(),
        };
        for host in hostnames(route, listener) {
            let routes = hosts.entry(host).or_default();
            for (path, headers) in &matches {
                if routes
                    .iter()
                    .any(|r| &r.path == path && &r.headers == headers)
                {
                    continue; // An older route has this match.
                }
                routes.push(Route {
                    path: path.clone(),
                    headers: headers.clone(),
                    backends: backends.clone(),
                    canary: None,
                    source: source.clone(),
                });
            }
        }
    }
}

/// A match's path (default `PathPrefix /`) and headers.
fn matched(m: &Value) -> (PathMatch, Vec<HeaderMatch>) {
    let value = m["path"]["value"].as_str().unwrap_or("/").to_owned();
    let path = match m["path"]["type"].as_str() {
        Some("Exact") => PathMatch::Exact(value),
        _ => PathMatch::Prefix(value),
    };
    let mut headers: Vec<HeaderMatch> = list(&m["headers"])
        .iter()
        .map(|h| HeaderMatch {
            name: h["name"].as_str().unwrap_or_default().to_ascii_lowercase(),
            value: h["value"].as_str().unwrap_or_default().to_owned(),
        })
        .collect();
    headers.sort_by(|a, b| a.name.cmp(&b.name));
    (path, headers)
}

fn namespace(obj: &Value) -> &str {
    obj["metadata"]["namespace"].as_str().unwrap_or_default()
}

fn list(value: &Value) -> &[Value] {
    value.as_array().map_or(&[][..], Vec::as_slice)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn gateway(from: &str) -> Arc<Value> {
        Arc::new(json!({"metadata": {"name": "web", "namespace": "default",
                                     "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"gatewayClassName": "wasmfleet", "listeners": [
                {"name": "http", "port": 8080, "protocol": "HTTP", "hostname": "*.example.com",
                 "allowedRoutes": {"namespaces": {"from": from}}}]}}))
    }

    fn route(namespace: &str, hostnames: Value, rules: Value) -> Arc<Value> {
        Arc::new(json!({"metadata": {"name": "shop", "namespace": namespace,
                                     "creationTimestamp": "2026-01-02T00:00:00Z"},
            "spec": {"parentRefs": [{"name": "web", "namespace": "default"}],
                     "hostnames": hostnames, "rules": rules}}))
    }

    fn compile(gateways: &[Arc<Value>], routes: &[Arc<Value>]) -> Vec<Listener> {
        listeners(&Sources {
            gateways,
            http_routes: routes,
            ..Sources::default()
        })
    }

    #[test]
    fn a_weighted_route_with_a_header_rule_compiles_in_precedence_order() {
        let shop = route(
            "default",
            json!(["shop.example.com", "other.org"]),
            json!([
                {"backendRefs": [{"name": "v1", "port": 80, "weight": 90},
                                 {"name": "v2", "port": 80, "weight": 10}]},
                {"matches": [{"headers": [{"name": "Traffic", "value": "test"}]}],
                 "backendRefs": [{"name": "v2", "port": 80}]},
            ]),
        );
        let listeners = compile(&[gateway("Same")], &[shop]);
        assert_eq!(listeners.len(), 1);
        assert_eq!(listeners[0].port, 8080);
        let hosts = &listeners[0].hosts;
        assert_eq!(hosts.len(), 1, "other.org is outside *.example.com");
        assert_eq!(hosts[0].hostname, "shop.example.com");
        let routes = &hosts[0].routes;
        assert_eq!(routes[0].headers[0].name, "traffic", "more headers first");
        assert_eq!(routes[0].backends[0].weight, 1, "weight defaults to 1");
        let weights: Vec<u32> = routes[1].backends.iter().map(|b| b.weight).collect();
        assert_eq!(weights, [90, 10]);
    }

    #[test]
    fn routes_attach_only_where_namespaces_and_classes_allow() {
        let elsewhere = route(
            "team",
            json!([]),
            json!([{"backendRefs": [{"name": "v1", "port": 80}]}]),
        );
        let same = compile(&[gateway("Same")], &[Arc::clone(&elsewhere)]);
        assert!(
            same[0].hosts.is_empty(),
            "from: Same keeps other namespaces out"
        );
        let all = compile(&[gateway("All")], &[elsewhere]);
        assert_eq!(all[0].hosts[0].hostname, "*.example.com");
        let mut theirs = (*gateway("All")).clone();
        theirs["spec"]["gatewayClassName"] = json!("istio");
        assert!(compile(&[Arc::new(theirs)], &[]).is_empty());
    }

    #[test]
    fn wildcards_meet_names_they_cover() {
        assert_eq!(
            meet("a.example.com", "*.example.com").unwrap(),
            "a.example.com"
        );
        assert_eq!(
            meet("*.example.com", "a.example.com").unwrap(),
            "a.example.com"
        );
        assert_eq!(meet("example.com", "*.example.com"), None);
        assert_eq!(meet("a.org", "b.org"), None);
    }
}
