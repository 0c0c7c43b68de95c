//! The Gateway API (gateway.networking.k8s.io/v1), served natively (no CRDs to install):
//! GatewayClass, Gateway and HTTPRoute. The server creates the class `wasmfleet` of
//! wasmfleet's controller; the Gateways of such classes are served by the agents on their
//! listeners' ports, with the HTTPRoutes attached to them compiled into the same route table
//! as Ingresses (`network::gateway`).
//!
//! Served: HTTP listeners and HTTPS ones that terminate TLS with `certificateRefs` to
//! `kubernetes.io/tls` Secrets of the Gateway's namespace (port, optional hostname, routes
//! from the same or all namespaces), route hostnames, path matches `Exact` and
//! `PathPrefix`, `Exact` header matches, Service `backendRefs` with weights. Refused by
//! field: TLS/TCP/UDP listeners, TLS `Passthrough`, certificates of other namespaces,
//! `spec.addresses`, namespace selectors, filters, query-parameter,
//! method and regular-expression matches, and backends in another namespace (there are no
//! ReferenceGrants).

use serde_json::{Value, json};

use super::ingresses::check_host;
use super::{Column, Kind, READ_WRITE, keep_status, name_of};
use crate::api::cascade;
use crate::api::status::{ApiError, Cause};
use crate::api::table::{age, text};
use crate::api::validation::{self, METADATA, Shape};
use crate::network::gateway::{CLASS, CONTROLLER};
use crate::store::{ObjectKey, Store, StoreError};

const GROUP: &str = "gateway.networking.k8s.io";
const API_VERSION: &str = "gateway.networking.k8s.io/v1";

/// GatewayClasses (cluster-scoped).
pub const CLASSES: Kind = Kind {
    group: GROUP,
    version: "v1",
    api_version: API_VERSION,
    plural: "gatewayclasses",
    singular: "gatewayclass",
    kind: "GatewayClass",
    list_kind: "GatewayClassList",
    short_names: &["gc"],
    categories: &["gateway-api"],
    namespaced: false,
    verbs: READ_WRITE,
    subresources: &[],
    columns: &[
        Column::new("Name"),
        Column::new("Controller"),
        Column::new("Accepted"),
        Column::new("Age"),
    ],
    cells: class_cells,
    admit_create: admit_class,
    admit_update: update_class,
    allocate: None,
    delete: cascade::delete,
};

/// Gateways (namespaced).
pub const GATEWAYS: Kind = Kind {
    group: GROUP,
    version: "v1",
    api_version: API_VERSION,
    plural: "gateways",
    singular: "gateway",
    kind: "Gateway",
    list_kind: "GatewayList",
    short_names: &["gtw"],
    categories: &["gateway-api"],
    namespaced: true,
    verbs: READ_WRITE,
    subresources: &[],
    columns: &[
        Column::new("Name"),
        Column::new("Class"),
        Column::new("Address"),
        Column::new("Programmed"),
        Column::new("Age"),
    ],
    cells: gateway_cells,
    admit_create: admit_gateway,
    admit_update: update_gateway,
    allocate: None,
    delete: cascade::delete,
};

/// HTTPRoutes (namespaced).
pub const HTTP_ROUTES: Kind = Kind {
    group: GROUP,
    version: "v1",
    api_version: API_VERSION,
    plural: "httproutes",
    singular: "httproute",
    kind: "HTTPRoute",
    list_kind: "HTTPRouteList",
    short_names: &[],
    categories: &["gateway-api"],
    namespaced: true,
    verbs: READ_WRITE,
    subresources: &[],
    columns: &[
        Column::new("Name"),
        Column::new("Hostnames"),
        Column::new("Age"),
    ],
    cells: route_cells,
    admit_create: admit_route,
    admit_update: update_route,
    allocate: None,
    delete: cascade::delete,
};

const CLASS_SPEC: Shape = Shape::Object(&[
    ("controllerName", Shape::Str),
    ("parametersRef", Shape::Ignored),
    ("description", Shape::Str),
]);

const LISTENER: Shape = Shape::Object(&[
    ("name", Shape::Str),
    ("hostname", Shape::Str),
    ("port", Shape::Int),
    ("protocol", Shape::Str),
    (
        "tls",
        Shape::Object(&[
            ("mode", Shape::OneOf(&["Terminate"])),
            ("certificateRefs", Shape::List(&CERTIFICATE_REF)),
        ]),
    ),
    (
        "allowedRoutes",
        Shape::Object(&[
            (
                "namespaces",
                Shape::Object(&[("from", Shape::Str), ("selector", Shape::Ignored)]),
            ),
            ("kinds", Shape::Ignored),
        ]),
    ),
]);

/// A Secret of the Gateway's namespace (there are no ReferenceGrants for other ones).
const CERTIFICATE_REF: Shape = Shape::Object(&[
    ("group", Shape::OneOf(&[""])),
    ("kind", Shape::OneOf(&["Secret"])),
    ("name", Shape::Str),
]);

const GATEWAY_SPEC: Shape = Shape::Object(&[
    ("gatewayClassName", Shape::Str),
    ("listeners", Shape::List(&LISTENER)),
    ("addresses", Shape::Ignored),
    ("infrastructure", Shape::Ignored),
]);

const PARENT_REF: Shape = Shape::Object(&[
    ("group", Shape::Str),
    ("kind", Shape::Str),
    ("namespace", Shape::Str),
    ("name", Shape::Str),
    ("sectionName", Shape::Str),
    ("port", Shape::Int),
]);

const HEADER_MATCH: Shape = Shape::Object(&[
    ("type", Shape::OneOf(&["Exact"])),
    ("name", Shape::Str),
    ("value", Shape::Str),
]);

const MATCH: Shape = Shape::Object(&[
    (
        "path",
        Shape::Object(&[
            ("type", Shape::OneOf(&["Exact", "PathPrefix"])),
            ("value", Shape::Str),
        ]),
    ),
    ("headers", Shape::List(&HEADER_MATCH)),
    ("queryParams", Shape::Ignored),
    ("method", Shape::Ignored),
]);

const BACKEND_REF: Shape = Shape::Object(&[
    ("group", Shape::Str),
    ("kind", Shape::Str),
    ("name", Shape::Str),
    ("namespace", Shape::Str),
    ("port", Shape::Int),
    ("weight", Shape::Int),
    ("filters", Shape::Ignored),
]);

const RULE: Shape = Shape::Object(&[
    ("name", Shape::Str),
    ("matches", Shape::List(&MATCH)),
    ("backendRefs", Shape::List(&BACKEND_REF)),
    ("filters", Shape::Ignored),
    ("timeouts", Shape::Ignored),
    ("sessionPersistence", Shape::Ignored),
]);

const ROUTE_SPEC: Shape = Shape::Object(&[
    ("parentRefs", Shape::List(&PARENT_REF)),
    ("hostnames", Shape::List(&Shape::Str)),
    ("rules", Shape::List(&RULE)),
]);

/// An object of `kind` with `spec`.
const fn object(spec: Shape) -> [(&'static str, Shape); 5] {
    [
        ("apiVersion", Shape::Str),
        ("kind", Shape::Str),
        ("metadata", METADATA),
        ("spec", spec),
        ("status", Shape::Ignored),
    ]
}

const CLASS_FIELDS: [(&str, Shape); 5] = object(CLASS_SPEC);
const GATEWAY_FIELDS: [(&str, Shape); 5] = object(GATEWAY_SPEC);
const ROUTE_FIELDS: [(&str, Shape); 5] = object(ROUTE_SPEC);

/// Checks what every kind shares (shape, type, metadata, name), then `spec` with `check`.
fn admit(
    obj: &Value,
    kind: &Kind,
    fields: &'static [(&'static str, Shape)],
    check: fn(&Value, &mut Vec<Cause>),
) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    validation::check_shape(obj, &Shape::Object(fields), "", &mut causes);
    validation::check_type_meta(obj, kind.api_version, kind.kind, &mut causes);
    validation::check_metadata(obj, &mut causes);
    causes.extend(validation::validate_object_name(obj, false));
    if causes.is_empty() {
        check(&obj["spec"], &mut causes);
    }
    match causes.is_empty() {
        true => Ok(()),
        false => Err(ApiError::invalid(kind.kind, name_of(obj), &causes)),
    }
}

fn new_status(obj: &mut Value) {
    if let Some(map) = obj.as_object_mut() {
        map.insert("status".into(), json!({}));
    }
}

fn admit_class(class: &mut Value) -> Result<(), ApiError> {
    admit(class, &CLASSES, &CLASS_FIELDS, |spec, causes| {
        if spec["controllerName"].as_str().is_none_or(str::is_empty) {
            causes.push(validation::required("spec.controllerName"));
        }
    })?;
    new_status(class);
    Ok(())
}

fn update_class(old: &Value, class: &mut Value) -> Result<(), ApiError> {
    admit_class(class)?;
    keep_status(old, class);
    if old["spec"]["controllerName"] != class["spec"]["controllerName"] {
        let cause = Cause::new(
            "FieldValueInvalid",
            "spec.controllerName",
            "Invalid value: Value is immutable",
        );
        return Err(ApiError::invalid(CLASSES.kind, name_of(class), &[cause]));
    }
    Ok(())
}

fn admit_gateway(gateway: &mut Value) -> Result<(), ApiError> {
    admit(gateway, &GATEWAYS, &GATEWAY_FIELDS, check_gateway)?;
    new_status(gateway);
    Ok(())
}

fn update_gateway(old: &Value, gateway: &mut Value) -> Result<(), ApiError> {
    admit(gateway, &GATEWAYS, &GATEWAY_FIELDS, check_gateway)?;
    keep_status(old, gateway);
    Ok(())
}

fn check_gateway(spec: &Value, causes: &mut Vec<Cause>) {
    if spec["gatewayClassName"].as_str().is_none_or(str::is_empty) {
        causes.push(validation::required("spec.gatewayClassName"));
    }
    if !spec["addresses"].is_null() {
        causes.push(forbidden(
            "spec.addresses",
            "a Gateway is served on the addresses of the nodes that serve LoadBalancers",
        ));
    }
    let listeners = spec["listeners"].as_array().map_or(&[][..], Vec::as_slice);
    if listeners.is_empty() || listeners.len() > 64 {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "spec.listeners",
            "Invalid value: a Gateway has 1 to 64 listeners",
        ));
    }
    let mut names = Vec::new();
    let mut protocols: Vec<(&Value, &Value)> = Vec::new();
    for (i, listener) in listeners.iter().enumerate() {
        let field = format!("spec.listeners[{i}]");
        check_listener(listener, &field, causes);
        let (port, protocol) = (&listener["port"], &listener["protocol"]);
        if protocols
            .iter()
            .any(|(p, proto)| *p == port && *proto != protocol)
        {
            causes.push(Cause::new(
                "FieldValueInvalid",
                format!("{field}.protocol"),
                "Invalid value: another listener serves this port with another protocol \
                 (one port is either HTTP or HTTPS)",
            ));
        }
        protocols.push((port, protocol));
        let name = listener["name"].as_str().unwrap_or_default();
        if names.contains(&name) {
            causes.push(Cause::new(
                "FieldValueDuplicate",
                format!("{field}.name"),
                format!("Duplicate value: {name:?}"),
            ));
        }
        names.push(name);
    }
}

fn check_listener(listener: &Value, field: &str, causes: &mut Vec<Cause>) {
    match listener["name"].as_str() {
        Some(name) if validation::is_dns_label(name) => {}
        _ => causes.push(validation::required(&format!("{field}.name"))),
    }
    match listener["port"].as_i64() {
        Some(port) if (1..=65_535).contains(&port) => {}
        _ => causes.push(Cause::new(
            "FieldValueInvalid",
            format!("{field}.port"),
            "Invalid value: must be between 1 and 65535, inclusive",
        )),
    }
    let refs = listener["tls"]["certificateRefs"]
        .as_array()
        .map_or(0, Vec::len);
    match listener["protocol"].as_str() {
        Some("HTTP") if !listener["tls"].is_null() => causes.push(forbidden(
            &format!("{field}.tls"),
            "an HTTP listener has no TLS; use protocol HTTPS",
        )),
        Some("HTTPS") if refs == 0 => causes.push(validation::required(&format!(
            "{field}.tls.certificateRefs"
        ))),
        Some("HTTP" | "HTTPS") => {}
        Some(other) => causes.push(Cause::new(
            "FieldValueNotSupported",
            format!("{field}.protocol"),
            format!("Unsupported value: {other:?}: supported values: \"HTTP\", \"HTTPS\""),
        )),
        None => causes.push(validation::required(&format!("{field}.protocol"))),
    }
    for (j, reference) in listener["tls"]["certificateRefs"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let field = format!("{field}.tls.certificateRefs[{j}].name");
        match reference["name"].as_str() {
            Some(name) => validation::check_dns_subdomain(name, &field, causes),
            None => causes.push(validation::required(&field)),
        }
    }
    if let Some(host) = listener["hostname"].as_str() {
        check_host(host, &format!("{field}.hostname"), causes);
    }
    let namespaces = &listener["allowedRoutes"]["namespaces"];
    match namespaces["from"].as_str() {
        None | Some("Same" | "All") => {}
        Some(other) => causes.push(Cause::new(
            "FieldValueNotSupported",
            format!("{field}.allowedRoutes.namespaces.from"),
            format!("Unsupported value: {other:?}: supported values: \"Same\", \"All\""),
        )),
    }
}

fn admit_route(route: &mut Value) -> Result<(), ApiError> {
    admit(route, &HTTP_ROUTES, &ROUTE_FIELDS, check_route)?;
    new_status(route);
    Ok(())
}

fn update_route(old: &Value, route: &mut Value) -> Result<(), ApiError> {
    admit(route, &HTTP_ROUTES, &ROUTE_FIELDS, check_route)?;
    keep_status(old, route);
    Ok(())
}

fn check_route(spec: &Value, causes: &mut Vec<Cause>) {
    for (i, parent) in list(&spec["parentRefs"]).iter().enumerate() {
        let field = format!("spec.parentRefs[{i}]");
        if parent["name"].as_str().is_none_or(str::is_empty) {
            causes.push(validation::required(&format!("{field}.name")));
        }
        if parent["kind"].as_str().is_some_and(|k| k != "Gateway") {
            causes.push(forbidden(
                &format!("{field}.kind"),
                "routes attach to Gateways only (Service parents are not served yet)",
            ));
        }
    }
    for (i, host) in list(&spec["hostnames"]).iter().enumerate() {
        check_host(
            host.as_str().unwrap_or_default(),
            &format!("spec.hostnames[{i}]"),
            causes,
        );
    }
    for (i, rule) in list(&spec["rules"]).iter().enumerate() {
        check_rule(rule, &format!("spec.rules[{i}]"), causes);
    }
}

fn check_rule(rule: &Value, field: &str, causes: &mut Vec<Cause>) {
    for key in ["filters", "timeouts", "sessionPersistence"] {
        if !rule[key].is_null() {
            causes.push(forbidden(&format!("{field}.{key}"), "not served yet"));
        }
    }
    for (j, matched) in list(&rule["matches"]).iter().enumerate() {
        let field = format!("{field}.matches[{j}]");
        for key in ["queryParams", "method"] {
            if !matched[key].is_null() {
                causes.push(forbidden(&format!("{field}.{key}"), "not served yet"));
            }
        }
        if let Some(path) = matched["path"]["value"].as_str()
            && !path.starts_with('/')
        {
            causes.push(Cause::new(
                "FieldValueInvalid",
                format!("{field}.path.value"),
                format!("Invalid value: {path:?}: must be an absolute path"),
            ));
        }
    }
    for (j, backend) in list(&rule["backendRefs"]).iter().enumerate() {
        check_backend(backend, &format!("{field}.backendRefs[{j}]"), causes);
    }
}

fn check_backend(backend: &Value, field: &str, causes: &mut Vec<Cause>) {
    let kind = backend["kind"].as_str().unwrap_or("Service");
    let group = backend["group"].as_str().unwrap_or("");
    if kind != "Service" || !group.is_empty() {
        causes.push(forbidden(&format!("{field}.kind"), "backends are Services"));
    }
    if !backend["namespace"].is_null() {
        causes.push(forbidden(
            &format!("{field}.namespace"),
            "backends in other namespaces need ReferenceGrants, which are not served",
        ));
    }
    if !backend["filters"].is_null() {
        causes.push(forbidden(&format!("{field}.filters"), "not served yet"));
    }
    if backend["name"].as_str().is_none_or(str::is_empty) {
        causes.push(validation::required(&format!("{field}.name")));
    }
    match backend["port"].as_i64() {
        Some(port) if (1..=65_535).contains(&port) => {}
        _ => causes.push(validation::required(&format!("{field}.port"))),
    }
    if let Some(weight) = backend["weight"].as_i64()
        && !(0..=1_000_000).contains(&weight)
    {
        causes.push(Cause::new(
            "FieldValueInvalid",
            format!("{field}.weight"),
            format!("Invalid value: {weight}: must be between 0 and 1000000, inclusive"),
        ));
    }
}

fn forbidden(field: &str, why: &str) -> Cause {
    Cause::new("FieldValueForbidden", field, format!("Forbidden: {why}"))
}

fn list(value: &Value) -> &[Value] {
    value.as_array().map_or(&[][..], Vec::as_slice)
}

/// Creates the `wasmfleet` GatewayClass when it does not exist.
pub fn ensure_built_in(store: &Store) -> Result<(), StoreError> {
    let key = ObjectKey::cluster(CLASSES.plural, CLASS);
    if store.get(&key)?.is_some() {
        return Ok(());
    }
    let class = json!({
        "apiVersion": API_VERSION, "kind": CLASSES.kind,
        "metadata": {"name": CLASS},
        "spec": {"controllerName": CONTROLLER,
                 "description": "The agents serve these Gateways on their nodes' addresses"},
        "status": {},
    });
    match store.create(&key, class) {
        Ok(_) | Err(StoreError::AlreadyExists(_)) => Ok(()),
        Err(err) => Err(err),
    }
}

/// The status of condition `kind` of `obj` (`Unknown` when it has none).
fn condition(obj: &Value, kind: &str) -> Value {
    list(&obj["status"]["conditions"])
        .iter()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["status"].as_str())
        .unwrap_or("Unknown")
        .into()
}

fn class_cells(class: &Value, now: jiff::Timestamp) -> Vec<Value> {
    vec![
        text(class, "/metadata/name"),
        text(class, "/spec/controllerName"),
        condition(class, "Accepted"),
        age(class, now),
    ]
}

fn gateway_cells(gateway: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let address = list(&gateway["status"]["addresses"])
        .first()
        .and_then(|a| a["value"].as_str())
        .unwrap_or("")
        .to_owned();
    vec![
        text(gateway, "/metadata/name"),
        text(gateway, "/spec/gatewayClassName"),
        address.into(),
        condition(gateway, "Programmed"),
        age(gateway, now),
    ]
}

fn route_cells(route: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let hosts: Vec<&str> = list(&route["spec"]["hostnames"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    vec![
        text(route, "/metadata/name"),
        format!("[{}]", hosts.join(",")).into(),
        age(route, now),
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fields(result: Result<(), ApiError>) -> Vec<String> {
        result.unwrap_err().cause_fields()
    }

    #[test]
    fn an_http_gateway_and_a_weighted_route_are_admitted() {
        let mut gateway = json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"gatewayClassName": "wasmfleet",
                     "listeners": [{"name": "http", "port": 8080, "protocol": "HTTP"}]}});
        admit_gateway(&mut gateway).unwrap();
        let mut route = json!({"metadata": {"name": "shop", "namespace": "default"},
            "spec": {"parentRefs": [{"name": "web"}], "hostnames": ["shop.example.com"],
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"},
                                             "headers": [{"name": "traffic", "value": "test"}]}],
                                "backendRefs": [{"name": "v1", "port": 80, "weight": 90},
                                                {"name": "v2", "port": 80, "weight": 10}]}]}});
        admit_route(&mut route).unwrap();
    }

    #[test]
    fn what_cannot_be_served_is_refused_by_field() {
        let gateway = json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"gatewayClassName": "wasmfleet", "addresses": [{"value": "1.2.3.4"}],
                     "listeners": [{"name": "https", "port": 443, "protocol": "HTTPS"},
                                   {"name": "https", "port": 0, "protocol": "HTTP"},
                                   {"name": "tcp", "port": 9000, "protocol": "TCP"},
                                   {"name": "plain", "port": 443, "protocol": "HTTP",
                                    "tls": {"certificateRefs": [{"name": "Bad_Name"}]}}]}});
        assert_eq!(
            fields(admit(&gateway, &GATEWAYS, &GATEWAY_FIELDS, check_gateway)),
            [
                "spec.addresses",
                "spec.listeners[0].tls.certificateRefs",
                "spec.listeners[1].port",
                "spec.listeners[1].name",
                "spec.listeners[2].protocol",
                "spec.listeners[3].tls",
                "spec.listeners[3].tls.certificateRefs[0].name",
                "spec.listeners[3].protocol",
            ]
        );
        let other_namespace = json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"gatewayClassName": "wasmfleet",
                     "listeners": [{"name": "https", "port": 443, "protocol": "HTTPS",
                                    "tls": {"mode": "Passthrough", "certificateRefs":
                                        [{"name": "s", "namespace": "other"}]}}]}});
        assert_eq!(
            fields(admit(
                &other_namespace,
                &GATEWAYS,
                &GATEWAY_FIELDS,
                check_gateway
            )),
            [
                "spec.listeners[0].tls.certificateRefs[0].namespace",
                "spec.listeners[0].tls.mode",
            ]
        );
        let mut https = json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"gatewayClassName": "wasmfleet",
                     "listeners": [{"name": "https", "port": 8443, "protocol": "HTTPS",
                                    "hostname": "shop.example.com",
                                    "tls": {"mode": "Terminate",
                                            "certificateRefs": [{"kind": "Secret", "group": "",
                                                                 "name": "shop-tls"}]}}]}});
        admit_gateway(&mut https).unwrap();
        let route = json!({"metadata": {"name": "shop", "namespace": "default"},
            "spec": {"rules": [{"filters": [{"type": "RequestRedirect"}],
                                "matches": [{"method": "GET"}],
                                "backendRefs": [{"name": "v1", "namespace": "other", "port": 80,
                                                 "weight": -1}]}]}});
        assert_eq!(
            fields(admit(&route, &HTTP_ROUTES, &ROUTE_FIELDS, check_route)),
            [
                "spec.rules[0].filters",
                "spec.rules[0].matches[0].method",
                "spec.rules[0].backendRefs[0].namespace",
                "spec.rules[0].backendRefs[0].weight",
            ]
        );
    }
}
