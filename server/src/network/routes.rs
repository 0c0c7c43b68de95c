//! The ingress controller's compiler: Ingresses (and their ingress-nginx canary
//! annotations) into the [`RouteTable`] every agent serves on its ingress port.
//!
//! Pure. An Ingress is served when it names no class or a class whose controller is
//! [`CONTROLLER`] (the server creates [`CLASS`], the default class). Each host
//! and path of a plain Ingress becomes a route to its Service port (named ports resolved
//! from the Service); `defaultBackend` becomes the catch-all of the hosts no rule names.
//! A canary Ingress (`nginx.ingress.kubernetes.io/canary: "true"`) adds its backend as the
//! canary of the routes of the same host and path, as ingress-nginx does: a canary with no
//! such route is not served. Within a host, exact paths come before prefixes and longer
//! prefixes before shorter ones; for one host and path the oldest Ingress wins.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use wasmfleet_protocol::routes::{
    Backend, Canary, CanaryHeader, CanaryPattern, INGRESS_PORT, Listener, PathMatch, Route,
    RouteTable, VirtualHost,
};

/// The ingress class the server creates, of [`CONTROLLER`].
pub const CLASS: &str = "wasmfleet";

/// The controller name of the classes wasmfleet serves.
pub const CONTROLLER: &str = "wasmfleet.io/ingress";

/// Where ingress-nginx's annotations live.
pub const NGINX_PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// The annotation (after [`NGINX_PREFIX`]) that makes an Ingress a canary.
pub const CANARY: &str = "canary";

/// The canary annotations wasmfleet honours (after [`NGINX_PREFIX`]).
const CANARY_KEYS: [&str; 7] = [
    CANARY,
    "canary-weight",
    "canary-weight-total",
    "canary-by-header",
    "canary-by-header-value",
    "canary-by-header-pattern",
    "canary-by-cookie",
];

/// ingress-nginx's weight total when none (or one of 100 or less) is given.
const DEFAULT_WEIGHT_TOTAL: u32 = 100;

/// Why an ingress-nginx annotation `name` (after the prefix) with `value` is refused.
pub fn check_nginx_annotation(name: &str, value: &str) -> Result<(), String> {
    match name {
        CANARY => match value {
            "true" | "false" => Ok(()),
            _ => Err(format!(
                "Invalid value: {value:?}: must be \"true\" or \"false\""
            )),
        },
        "canary-weight" | "canary-weight-total" => value
            .parse::<u32>()
            .map(drop)
            .map_err(|_| format!("Invalid value: {value:?}: must be a whole number")),
        "canary-by-header" | "canary-by-cookie" if !is_token(value) => Err(format!(
            "Invalid value: {value:?}: must be a header or cookie name"
        )),
        "canary-by-header" | "canary-by-cookie" | "canary-by-header-value" => Ok(()),
        "canary-by-header-pattern" => regex_lite::Regex::new(value).map(drop).map_err(|err| {
            format!(
                "Invalid value: {value:?}: not a regular expression the agents can match \
                 (RE2-like syntax: no look-around or back-references): {err}"
            )
        }),
        super::tls::SSL_REDIRECT => match value {
            "true" | "false" => Ok(()),
            _ => Err(format!(
                "Invalid value: {value:?}: must be \"true\" or \"false\""
            )),
        },
        _ => Err(format!(
            "Unsupported value: wasmfleet's ingress honours only the canary annotations \
             ({}{}) and {}",
            NGINX_PREFIX,
            CANARY_KEYS.join(", "),
            super::tls::SSL_REDIRECT
        )),
    }
}

/// An HTTP token (header and cookie names).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The canary annotations of one Ingress, parsed (unparsable ones are left out: admission
/// refuses them).
#[derive(Debug, Default)]
pub struct CanaryKeys {
    /// `canary: "true"`.
    pub enabled: bool,
    /// Any canary annotation but `canary` itself is set.
    pub any_set: bool,
    /// `canary-weight`.
    pub weight: Option<u32>,
    /// `canary-weight-total`.
    pub weight_total: Option<u32>,
    /// `canary-by-header`.
    pub header: Option<String>,
    /// `canary-by-header-value`.
    pub header_value: Option<String>,
    /// `canary-by-header-pattern`.
    pub header_pattern: Option<String>,
    /// `canary-by-cookie`.
    pub cookie: Option<String>,
}

impl CanaryKeys {
    /// Reads them from `metadata.annotations`.
    pub fn of(annotations: &Value) -> Self {
        let get = |key: &str| annotations[format!("{NGINX_PREFIX}{key}")].as_str();
        Self {
            enabled: get(CANARY) == Some("true"),
            any_set: CANARY_KEYS[1..].iter().any(|key| get(key).is_some()),
            weight: get("canary-weight").and_then(|w| w.parse().ok()),
            weight_total: get("canary-weight-total").and_then(|w| w.parse().ok()),
            header: get("canary-by-header").map(str::to_ascii_lowercase),
            header_value: get("canary-by-header-value")
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
            header_pattern: get("canary-by-header-pattern")
                .filter(|p| !p.is_empty())
                .map(str::to_owned),
            cookie: get("canary-by-cookie").map(str::to_owned),
        }
    }

    /// The canary of `backend`, as ingress-nginx applies it (a total of 100 or less
    /// counts as 100).
    fn canary(&self, backend: Backend) -> Canary {
        Canary {
            backend,
            header: self.header.clone().map(|name| CanaryHeader {
                name,
                value: self.header_value.clone(),
            }),
            cookie: self.cookie.clone(),
            weight: self.weight.unwrap_or(0),
            weight_total: self
                .weight_total
                .filter(|t| *t > DEFAULT_WEIGHT_TOTAL)
                .unwrap_or(DEFAULT_WEIGHT_TOTAL),
        }
    }
}

/// Whether `ingress` is an enabled canary.
pub fn is_canary(ingress: &Value) -> bool {
    CanaryKeys::of(&ingress["metadata"]["annotations"]).enabled
}

/// Whether `ingress` is served by wasmfleet: it names no class, or a class of
/// [`CONTROLLER`] (of `classes`), or [`CLASS`] before that class exists.
pub fn is_served(ingress: &Value, classes: &[Arc<Value>]) -> bool {
    let Some(name) = ingress["spec"]["ingressClassName"].as_str() else {
        return true;
    };
    match classes.iter().find(|c| c["metadata"]["name"] == name) {
        Some(class) => class["spec"]["controller"] == CONTROLLER,
        None => name == CLASS,
    }
}

/// A host and path both Ingresses route, if any (host `""` = any host).
pub fn shared_host_path(a: &Value, b: &Value) -> Option<(String, String)> {
    let theirs: Vec<(String, String)> = paths(b).map(|(h, p, _)| (h, p.text())).collect();
    paths(a)
        .map(|(h, p, _)| (h, p.text()))
        .find(|hp| theirs.contains(hp))
}

/// Every (host, path, backend) an Ingress routes, `defaultBackend` as host `""` path `/`.
fn paths(ingress: &Value) -> impl Iterator<Item = (String, PathMatch, &Value)> {
    let spec = &ingress["spec"];
    let rules = spec["rules"].as_array().into_iter().flatten();
    let routed = rules.flat_map(|rule| {
        let host = rule["host"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let paths = rule["http"]["paths"].as_array().into_iter().flatten();
        paths.map(move |path| (host.clone(), path_match(path), &path["backend"]))
    });
    let default = spec["defaultBackend"].is_object().then(|| {
        (
            String::new(),
            PathMatch::Prefix("/".into()),
            &spec["defaultBackend"],
        )
    });
    routed.chain(default)
}

/// An Ingress path's match (`ImplementationSpecific` is a prefix, as in ingress-nginx).
fn path_match(path: &Value) -> PathMatch {
    let text = path["path"].as_str().unwrap_or("/").to_owned();
    match path["pathType"].as_str() {
        Some("Exact") => PathMatch::Exact(text),
        _ => PathMatch::Prefix(text),
    }
}

trait PathText {
    fn text(&self) -> String;
}

impl PathText for PathMatch {
    /// How the path reads in messages and as a key (`=/a` exact, `/a` prefix).
    fn text(&self) -> String {
        match self {
            PathMatch::Exact(path) => format!("={path}"),
            PathMatch::Prefix(path) => path.clone(),
        }
    }
}

/// The Service port an Ingress backend names, by number (0: no such Service or port).
fn backend(namespace: &str, backend: &Value, services: &BTreeMap<(&str, &str), &Value>) -> Backend {
    let service = backend["service"]["name"].as_str().unwrap_or_default();
    let port = &backend["service"]["port"];
    let number = match (port["number"].as_u64(), port["name"].as_str()) {
        (Some(n), _) => u16::try_from(n).unwrap_or(0),
        (None, Some(name)) => services
            .get(&(namespace, service))
            .and_then(|svc| svc["spec"]["ports"].as_array())
            .into_iter()
            .flatten()
            .find(|p| p["name"] == name)
            .and_then(|p| u16::try_from(p["port"].as_u64()?).ok())
            .unwrap_or(0),
        (None, None) => 0,
    };
    Backend {
        namespace: namespace.to_owned(),
        service: service.to_owned(),
        port: number,
        weight: 1,
    }
}

/// `objects` oldest first, then by namespace and name: who wins a host and path.
pub(super) fn oldest_first<'a>(objects: impl Iterator<Item = &'a Value>) -> Vec<&'a Value> {
    let mut sorted: Vec<&Value> = objects.collect();
    sorted.sort_by_key(|o| {
        let meta = &o["metadata"];
        (
            meta["creationTimestamp"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            meta["namespace"].as_str().unwrap_or_default().to_owned(),
            meta["name"].as_str().unwrap_or_default().to_owned(),
        )
    });
    sorted
}

/// What the route table is compiled from (the cached objects).
#[derive(Default)]
pub struct Sources<'a> {
    /// Every Ingress.
    pub ingresses: &'a [Arc<Value>],
    /// Every IngressClass.
    pub ingress_classes: &'a [Arc<Value>],
    /// Every Gateway.
    pub gateways: &'a [Arc<Value>],
    /// Every GatewayClass.
    pub gateway_classes: &'a [Arc<Value>],
    /// Every HTTPRoute.
    pub http_routes: &'a [Arc<Value>],
    /// Every Service (for named ports).
    pub services: &'a [Arc<Value>],
}

/// Pure: the route table: the served Ingresses on the agents' ingress port, then the
/// served Gateways' listeners ([`super::gateway`]).
pub fn compile(sources: &Sources<'_>, revision: u64) -> RouteTable {
    let (hosts, canary_patterns) =
        ingress_hosts(sources.ingresses, sources.ingress_classes, sources.services);
    let mut listeners = vec![Listener {
        port: INGRESS_PORT,
        hosts,
    }];
    listeners.extend(super::gateway::listeners(sources));
    RouteTable {
        revision,
        listeners,
        tls: super::tls::tls_routes(sources),
        canary_patterns,
    }
}

/// The virtual hosts of the served Ingresses (of `classes`), with named Service ports
/// resolved from `services`, and their canaries' header patterns.
fn ingress_hosts(
    ingresses: &[Arc<Value>],
    classes: &[Arc<Value>],
    services: &[Arc<Value>],
) -> (Vec<VirtualHost>, Vec<CanaryPattern>) {
    let by_name: BTreeMap<(&str, &str), &Value> = services
        .iter()
        .filter_map(|svc| {
            let meta = &svc["metadata"];
            Some((
                (meta["namespace"].as_str()?, meta["name"].as_str()?),
                svc.as_ref(),
            ))
        })
        .collect();
    let served = ingresses
        .iter()
        .map(AsRef::as_ref)
        .filter(|i| is_served(i, classes));
    let sorted = oldest_first(served);
    let (canaries, mains): (Vec<&Value>, Vec<&Value>) =
        sorted.into_iter().partition(|i| is_canary(i));
    let mut hosts: BTreeMap<String, Vec<Route>> = BTreeMap::new();
    for ingress in mains {
        let namespace = ingress["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default();
        let source = format!(
            "Ingress {namespace}/{}",
            ingress["metadata"]["name"].as_str().unwrap_or_default()
        );
        for (host, path, target) in paths(ingress) {
            let routes = hosts.entry(host).or_default();
            if routes.iter().any(|r| r.path == path) {
                continue; // An older Ingress has this host and path.
            }
            routes.push(Route {
                path,
                headers: Vec::new(),
                backends: vec![backend(namespace, target, &by_name)],
                canary: None,
                source: source.clone(),
            });
        }
    }
    let mut patterns = Vec::new();
    for ingress in canaries {
        attach_canary(ingress, &mut hosts, &by_name, &mut patterns);
    }
    (virtual_hosts(hosts), patterns)
}

/// The virtual hosts of `hosts`, each with its routes in precedence order.
pub(super) fn virtual_hosts(hosts: BTreeMap<String, Vec<Route>>) -> Vec<VirtualHost> {
    hosts
        .into_iter()
        .map(|(hostname, mut routes)| {
            routes.sort_by_key(precedence);
            VirtualHost { hostname, routes }
        })
        .collect()
}

/// Adds a canary Ingress's backends to the routes of its hosts and paths (the first
/// canary of a route keeps it).
fn attach_canary(
    ingress: &Value,
    hosts: &mut BTreeMap<String, Vec<Route>>,
    services: &BTreeMap<(&str, &str), &Value>,
    patterns: &mut Vec<CanaryPattern>,
) {
    let namespace = ingress["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default();
    let keys = CanaryKeys::of(&ingress["metadata"]["annotations"]);
    for (host, path, target) in paths(ingress) {
        let Some(route) = hosts
            .get_mut(&host)
            .and_then(|routes| routes.iter_mut().find(|r| r.path == path))
        else {
            continue; // No main Ingress for it: not served, as in ingress-nginx.
        };
        if route.canary.is_none() {
            route.canary = Some(keys.canary(backend(namespace, target, services)));
            if let Some(pattern) = &keys.header_pattern {
                patterns.push(CanaryPattern {
                    hostname: host.clone(),
                    path: path.clone(),
                    pattern: pattern.clone(),
                });
            }
        }
    }
}

/// Sort key: exact paths first, then longer prefixes first, then more header matches
/// first (the sort is stable, so among equals the oldest object's route comes first, and
/// an Ingress's defaultBackend `/` stays after any rule's `/`).
fn precedence(route: &Route) -> (u8, Reverse<usize>, Reverse<usize>) {
    let headers = Reverse(route.headers.len());
    match &route.path {
        PathMatch::Exact(path) => (0, Reverse(path.len()), headers),
        PathMatch::Prefix(path) => (1, Reverse(path.trim_end_matches('/').len()), headers),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ingress(name: &str, created: &str, annotations: Value, rules: Value) -> Arc<Value> {
        Arc::new(json!({
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": created,
                         "annotations": annotations},
            "spec": {"rules": rules},
        }))
    }

    fn rule(host: &str, path: &str, path_type: &str, service: &str, port: Value) -> Value {
        json!({"host": host, "http": {"paths": [
            {"path": path, "pathType": path_type,
             "backend": {"service": {"name": service, "port": port}}}]}})
    }

    fn service(name: &str) -> Arc<Value> {
        Arc::new(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"ports": [{"name": "http", "port": 8080}]},
        }))
    }

    fn routes(table: &RouteTable, host: &str) -> Vec<(String, String, u16)> {
        let host = table.listeners[0]
            .hosts
            .iter()
            .find(|h| h.hostname == host)
            .unwrap();
        host.routes
            .iter()
            .map(|r| {
                (
                    r.path.text(),
                    r.backends[0].service.clone(),
                    r.backends[0].port,
                )
            })
            .collect()
    }

    #[test]
    fn rules_become_routes_in_precedence_order_with_named_ports_resolved() {
        let web = ingress(
            "web",
            "2026-01-01T00:00:00Z",
            json!({}),
            json!([
                rule(
                    "shop.example.com",
                    "/",
                    "Prefix",
                    "web",
                    json!({"name": "http"})
                ),
                rule(
                    "shop.example.com",
                    "/api",
                    "Prefix",
                    "api",
                    json!({"number": 9000})
                ),
                rule(
                    "shop.example.com",
                    "/login",
                    "Exact",
                    "login",
                    json!({"number": 80})
                ),
                rule(
                    "shop.example.com",
                    "/x",
                    "Prefix",
                    "web",
                    json!({"name": "nope"})
                ),
            ]),
        );
        let table = compile(
            &Sources {
                ingresses: &[web],
                services: &[service("web")],
                ..Sources::default()
            },
            7,
        );
        assert_eq!(table.revision, 7);
        assert_eq!(
            routes(&table, "shop.example.com"),
            [
                ("=/login".into(), "login".into(), 80),
                ("/api".into(), "api".into(), 9000),
                ("/x".into(), "web".into(), 0),
                ("/".into(), "web".into(), 8080),
            ]
        );
    }

    #[test]
    fn the_oldest_ingress_keeps_a_host_and_path_and_other_classes_are_not_served() {
        let newer = ingress(
            "b",
            "2026-01-02T00:00:00Z",
            json!({}),
            json!([rule("h", "/", "Prefix", "new", json!({"number": 1}))]),
        );
        let older = ingress(
            "a",
            "2026-01-01T00:00:00Z",
            json!({}),
            json!([rule("h", "/", "Prefix", "old", json!({"number": 1}))]),
        );
        let mut nginx = (*ingress(
            "c",
            "2025-01-01T00:00:00Z",
            json!({}),
            json!([rule("n", "/", "Prefix", "x", json!({"number": 1}))]),
        ))
        .clone();
        nginx["spec"]["ingressClassName"] = json!("nginx");
        let theirs = Arc::new(
            json!({"metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx"}}),
        );
        let table = compile(
            &Sources {
                ingresses: &[newer, older, Arc::new(nginx)],
                ingress_classes: &[theirs],
                ..Sources::default()
            },
            1,
        );
        assert_eq!(routes(&table, "h"), [("/".into(), "old".into(), 1)]);
        assert!(table.listeners[0].hosts.iter().all(|h| h.hostname != "n"));
    }

    #[test]
    fn a_canary_joins_the_route_of_its_host_and_path_with_nginx_weights() {
        let main = ingress(
            "web",
            "2026-01-01T00:00:00Z",
            json!({}),
            json!([rule("h", "/", "Prefix", "stable", json!({"number": 80}))]),
        );
        let canary = ingress(
            "web-canary",
            "2026-01-02T00:00:00Z",
            json!({"nginx.ingress.kubernetes.io/canary": "true",
                   "nginx.ingress.kubernetes.io/canary-weight": "20",
                   "nginx.ingress.kubernetes.io/canary-weight-total": "50",
                   "nginx.ingress.kubernetes.io/canary-by-header": "X-Canary",
                   "nginx.ingress.kubernetes.io/canary-by-header-pattern": "^beta"}),
            json!([
                rule("h", "/", "Prefix", "canary", json!({"number": 80})),
                rule("other", "/", "Prefix", "canary", json!({"number": 80}))
            ]),
        );
        let table = compile(
            &Sources {
                ingresses: &[canary, main],
                ..Sources::default()
            },
            1,
        );
        let route = &table.listeners[0].hosts[0].routes[0];
        assert_eq!(route.backends[0].service, "stable");
        let canary = route.canary.as_ref().unwrap();
        assert_eq!(canary.backend.service, "canary");
        assert_eq!(
            (canary.weight, canary.weight_total),
            (20, 100),
            "a total of 100 or less is 100"
        );
        assert_eq!(canary.header.as_ref().unwrap().name, "x-canary");
        assert_eq!(
            table.canary_patterns,
            [CanaryPattern {
                hostname: "h".into(),
                path: PathMatch::Prefix("/".into()),
                pattern: "^beta".into(),
            }]
        );
        assert!(
            table.listeners[0]
                .hosts
                .iter()
                .all(|h| h.hostname != "other"),
            "a canary without a main Ingress is not served"
        );
    }

    #[test]
    fn a_default_backend_catches_what_the_rules_of_no_host_leave() {
        let mut web = (*ingress(
            "web",
            "2026-01-01T00:00:00Z",
            json!({}),
            json!([rule("", "/api", "Prefix", "api", json!({"number": 80}))]),
        ))
        .clone();
        web["spec"]["defaultBackend"] =
            json!({"service": {"name": "fallback", "port": {"number": 8080}}});
        let table = compile(
            &Sources {
                ingresses: &[Arc::new(web)],
                ..Sources::default()
            },
            1,
        );
        assert_eq!(
            routes(&table, ""),
            [
                ("/api".into(), "api".into(), 80),
                ("/".into(), "fallback".into(), 8080),
            ]
        );
    }

    #[test]
    fn annotations_other_than_the_canary_ones_are_refused() {
        assert!(check_nginx_annotation("canary", "true").is_ok());
        assert!(check_nginx_annotation("canary", "yes").is_err());
        assert!(check_nginx_annotation("canary-weight", "-1").is_err());
        assert!(check_nginx_annotation("canary-by-header", "bad header").is_err());
        assert!(check_nginx_annotation("canary-by-header-pattern", "^(beta|qa)-").is_ok());
        let lookahead = check_nginx_annotation("canary-by-header-pattern", "^(?!prod)");
        assert!(lookahead.unwrap_err().contains("look-around"));
        assert!(check_nginx_annotation("ssl-redirect", "false").is_ok());
        assert!(check_nginx_annotation("ssl-redirect", "no").is_err());
        assert!(check_nginx_annotation("force-ssl-redirect", "true").is_err());
    }
}
