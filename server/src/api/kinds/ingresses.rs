//! Ingresses (networking.k8s.io/v1): HTTP host and path rules in front of Services, served
//! by the agents on their ingress port. The server compiles the Ingresses of no class or
//! of a class of wasmfleet's controller (`ingressclasses`) into the route table the agents
//! serve (`network::routes`).
//!
//! The ingress-nginx canary annotations (`nginx.ingress.kubernetes.io/canary`,
//! `canary-weight`, `canary-weight-total`, `canary-by-header`, `canary-by-header-value`,
//! `canary-by-cookie`) are honoured with ingress-nginx's semantics; one canary per host and
//! path ([`allocate`] checks it inside the write), and `canary-by-header-pattern` (a
//! regular expression in `regex-lite`'s syntax, checked here). `spec.tls` names `kubernetes.io/tls`
//! Secrets of the Ingress's namespace (`network::tls`), and its hosts redirect plain HTTP
//! to HTTPS unless `nginx.ingress.kubernetes.io/ssl-redirect: "false"`. Refused by name:
//! resource backends and every other `nginx.ingress.kubernetes.io/` annotation (nothing
//! here would honour them).

use serde_json::{Value, json};

use super::{Allocation, Column, Kind, READ_WRITE, keep_status, name_of};
use crate::api::cascade;
use crate::api::status::{ApiError, Cause};
use crate::api::table::{age, text};
use crate::api::validation::{self, METADATA, Shape};
use crate::network::routes::{self, CANARY, CanaryKeys};
use crate::store::Scope;

/// Ingresses (namespaced).
pub const KIND: Kind = Kind {
    group: "networking.k8s.io",
    version: "v1",
    api_version: "networking.k8s.io/v1",
    plural: "ingresses",
    singular: "ingress",
    kind: "Ingress",
    list_kind: "IngressList",
    short_names: &["ing"],
    categories: &[],
    namespaced: true,
    verbs: READ_WRITE,
    subresources: &[],
    columns: &[
        Column::new("Name"),
        Column::new("Class"),
        Column::new("Hosts"),
        Column::new("Address"),
        Column::new("Ports"),
        Column::new("Age"),
    ],
    cells,
    admit_create,
    admit_update,
    allocate: Some(allocate),
    delete: cascade::delete,
};

const BACKEND: Shape = Shape::Object(&[
    (
        "service",
        Shape::Object(&[
            ("name", Shape::Str),
            (
                "port",
                Shape::Object(&[("number", Shape::Int), ("name", Shape::Str)]),
            ),
        ]),
    ),
    ("resource", Shape::Ignored),
]);

const PATH: Shape = Shape::Object(&[
    ("path", Shape::Str),
    (
        "pathType",
        Shape::OneOf(&["Exact", "Prefix", "ImplementationSpecific"]),
    ),
    ("backend", BACKEND),
]);

const RULE: Shape = Shape::Object(&[
    ("host", Shape::Str),
    ("http", Shape::Object(&[("paths", Shape::List(&PATH))])),
]);

const SPEC: Shape = Shape::Object(&[
    ("ingressClassName", Shape::Str),
    ("defaultBackend", BACKEND),
    ("rules", Shape::List(&RULE)),
    ("tls", Shape::List(&TLS)),
]);

const TLS: Shape = Shape::Object(&[
    ("hosts", Shape::List(&Shape::Str)),
    ("secretName", Shape::Str),
]);

const INGRESS: Shape = Shape::Object(&[
    ("apiVersion", Shape::Str),
    ("kind", Shape::Str),
    ("metadata", METADATA),
    ("spec", SPEC),
    ("status", Shape::Ignored),
]);

/// A new Ingress: valid, with an empty load-balancer status.
fn admit_create(ingress: &mut Value) -> Result<(), ApiError> {
    admit(ingress)?;
    if let Some(map) = ingress.as_object_mut() {
        map.insert("status".into(), json!({"loadBalancer": {}}));
    }
    Ok(())
}

/// A changed Ingress keeps its status.
fn admit_update(old: &Value, ingress: &mut Value) -> Result<(), ApiError> {
    admit(ingress)?;
    keep_status(old, ingress);
    Ok(())
}

fn admit(ingress: &Value) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    validation::check_shape(ingress, &INGRESS, "", &mut causes);
    validation::check_type_meta(ingress, KIND.api_version, KIND.kind, &mut causes);
    validation::check_metadata(ingress, &mut causes);
    causes.extend(validation::validate_object_name(ingress, false));
    if causes.is_empty() {
        check_spec(&ingress["spec"], &mut causes);
        check_annotations(&ingress["metadata"]["annotations"], &mut causes);
    }
    match causes.is_empty() {
        true => Ok(()),
        false => Err(ApiError::invalid(KIND.kind, name_of(ingress), &causes)),
    }
}

fn check_spec(spec: &Value, causes: &mut Vec<Cause>) {
    if let Some(class) = spec["ingressClassName"].as_str() {
        validation::check_dns_subdomain(class, "spec.ingressClassName", causes);
    }
    for (i, tls) in spec["tls"].as_array().into_iter().flatten().enumerate() {
        check_tls(tls, &format!("spec.tls[{i}]"), causes);
    }
    let rules = spec["rules"].as_array().map_or(&[][..], Vec::as_slice);
    if spec["defaultBackend"].is_null() && rules.is_empty() {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "spec",
            "Invalid value: either `defaultBackend` or `rules` must be specified",
        ));
    }
    if !spec["defaultBackend"].is_null() {
        check_backend(&spec["defaultBackend"], "spec.defaultBackend", causes);
    }
    for (i, rule) in rules.iter().enumerate() {
        check_rule(rule, &format!("spec.rules[{i}]"), causes);
    }
}

/// A TLS entry: its hosts are host names (or wildcards) and its Secret a name; whether
/// the Secret exists and holds a usable certificate is the controller's to say (an Event),
/// as in Kubernetes, since it may be created later.
fn check_tls(tls: &Value, field: &str, causes: &mut Vec<Cause>) {
    for (j, host) in tls["hosts"].as_array().into_iter().flatten().enumerate() {
        check_host(
            host.as_str().unwrap_or_default(),
            &format!("{field}.hosts[{j}]"),
            causes,
        );
    }
    if let Some(name) = tls["secretName"].as_str() {
        validation::check_dns_subdomain(name, &format!("{field}.secretName"), causes);
    }
}

fn check_rule(rule: &Value, field: &str, causes: &mut Vec<Cause>) {
    if let Some(host) = rule["host"].as_str() {
        check_host(host, &format!("{field}.host"), causes);
    }
    let paths = rule["http"]["paths"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    if rule["http"].is_object() && paths.is_empty() {
        causes.push(validation::required(&format!("{field}.http.paths")));
    }
    for (j, path) in paths.iter().enumerate() {
        let field = format!("{field}.http.paths[{j}]");
        if path["pathType"].is_null() {
            causes.push(validation::required(&format!("{field}.pathType")));
        }
        match path["path"].as_str() {
            Some(p) if p.starts_with('/') => {}
            Some(p) => causes.push(Cause::new(
                "FieldValueInvalid",
                format!("{field}.path"),
                format!("Invalid value: {p:?}: must be an absolute path"),
            )),
            None if path["pathType"] == "ImplementationSpecific" => {}
            None => causes.push(validation::required(&format!("{field}.path"))),
        }
        check_backend(&path["backend"], &format!("{field}.backend"), causes);
    }
}

/// A host name, or a wildcard `*.` in front of one; never an IP address (Ingress hosts,
/// Gateway listener and HTTPRoute hostnames).
pub fn check_host(host: &str, field: &str, causes: &mut Vec<Cause>) {
    if host.parse::<std::net::IpAddr>().is_ok() {
        causes.push(Cause::new(
            "FieldValueInvalid",
            field,
            format!("Invalid value: {host:?}: must be a DNS name, not an IP address"),
        ));
        return;
    }
    validation::check_dns_subdomain(host.strip_prefix("*.").unwrap_or(host), field, causes);
}

fn check_backend(backend: &Value, field: &str, causes: &mut Vec<Cause>) {
    if !backend["resource"].is_null() {
        causes.push(Cause::new(
            "FieldValueForbidden",
            format!("{field}.resource"),
            "Forbidden: resource backends are not served; name a Service",
        ));
        return;
    }
    let service = &backend["service"];
    match service["name"].as_str() {
        Some(name) if validation::is_dns_label(name) => {}
        Some(name) => causes.push(Cause::new(
            "FieldValueInvalid",
            format!("{field}.service.name"),
            format!("Invalid value: {name:?}: must be a Service name (a DNS label)"),
        )),
        None => causes.push(validation::required(&format!("{field}.service.name"))),
    }
    let port = &service["port"];
    match (port["number"].as_i64(), port["name"].as_str()) {
        (Some(n), None) if (1..=65_535).contains(&n) => {}
        (Some(n), None) => causes.push(Cause::new(
            "FieldValueInvalid",
            format!("{field}.service.port.number"),
            format!("Invalid value: {n}: must be between 1 and 65535, inclusive"),
        )),
        (None, Some(name)) if validation::is_port_name(name) => {}
        (None, Some(name)) => causes.push(Cause::new(
            "FieldValueInvalid",
            format!("{field}.service.port.name"),
            format!("Invalid value: {name:?}: must be an IANA service name"),
        )),
        (None, None) => causes.push(validation::required(&format!("{field}.service.port"))),
        (Some(_), Some(_)) => causes.push(Cause::new(
            "FieldValueInvalid",
            format!("{field}.service.port"),
            "Invalid value: cannot set both port name & port number",
        )),
    }
}

/// The canary annotations must parse, be enabled to be set at all, and no other
/// ingress-nginx annotation may be set.
fn check_annotations(annotations: &Value, causes: &mut Vec<Cause>) {
    let Some(map) = annotations.as_object() else {
        return;
    };
    let field = |key: &str| format!("metadata.annotations[{key}]");
    for (key, value) in map {
        let Some(name) = key.strip_prefix(routes::NGINX_PREFIX) else {
            continue;
        };
        let value = value.as_str().unwrap_or_default();
        if let Err(why) = routes::check_nginx_annotation(name, value) {
            causes.push(Cause::new("FieldValueInvalid", field(key), why));
        }
    }
    let canary = CanaryKeys::of(annotations);
    if !canary.enabled && canary.any_set {
        causes.push(Cause::new(
            "FieldValueInvalid",
            field(&format!("{}{CANARY}", routes::NGINX_PREFIX)),
            "Invalid value: canary annotations are configured but not enabled: set it to \"true\"",
        ));
    }
    if canary.enabled
        && let Some(total) = canary.weight_total
        && canary.weight.unwrap_or(0) > total
    {
        causes.push(Cause::new(
            "FieldValueInvalid",
            field(&format!("{}canary-weight", routes::NGINX_PREFIX)),
            format!("Invalid value: must be at most canary-weight-total ({total})"),
        ));
    }
}

/// One canary per host and path, across the cluster (ingress-nginx's admission rule),
/// checked inside the write so that two canaries cannot race in.
fn allocate(
    alloc: &Allocation<'_>,
    _old: Option<&Value>,
    ingress: &mut Value,
) -> Result<(), ApiError> {
    if !routes::is_canary(ingress) {
        return Ok(());
    }
    let me = (
        ingress["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default(),
        name_of(ingress),
    );
    let others = alloc.store.list(&Scope::all(KIND.plural))?;
    let clash = others.items.iter().find_map(|other| {
        let them = (
            other["metadata"]["namespace"].as_str().unwrap_or_default(),
            name_of(other),
        );
        if them == me || !routes::is_canary(other) {
            return None;
        }
        routes::shared_host_path(ingress, other).map(|hp| (them, hp))
    });
    match clash {
        None => Ok(()),
        Some(((namespace, name), (host, path))) => Err(ApiError::invalid(
            KIND.kind,
            me.1,
            &[Cause::new(
                "FieldValueDuplicate",
                "metadata.annotations[nginx.ingress.kubernetes.io/canary]",
                format!(
                    "Duplicate value: host {host:?} path {path:?} already has a canary: \
                     Ingress {namespace}/{name} (one canary per host and path)"
                ),
            )],
        )),
    }
}

fn cells(ingress: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let spec = &ingress["spec"];
    let hosts: Vec<&str> = spec["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|rule| rule["host"].as_str().unwrap_or("*"))
        .collect();
    let addresses: Vec<&str> = ingress["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["ip"].as_str().or_else(|| a["hostname"].as_str()))
        .collect();
    vec![
        text(ingress, "/metadata/name"),
        text(ingress, "/spec/ingressClassName"),
        match hosts.is_empty() {
            true => "*".into(),
            false => hosts.join(",").into(),
        },
        addresses.join(",").into(),
        // As kubectl prints it: 443 too when the Ingress has TLS.
        match spec["tls"].as_array().is_some_and(|tls| !tls.is_empty()) {
            true => "80, 443".into(),
            false => "80".into(),
        },
        age(ingress, now),
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ingress(annotations: Value, spec: Value) -> Value {
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "web", "namespace": "default", "annotations": annotations},
            "spec": spec,
        })
    }

    fn rules() -> Value {
        json!({"rules": [{"host": "shop.example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix",
             "backend": {"service": {"name": "web", "port": {"number": 80}}}}
        ]}}]})
    }

    fn fields(result: Result<(), ApiError>) -> Vec<String> {
        result.unwrap_err().cause_fields()
    }

    #[test]
    fn a_plain_ingress_and_a_canary_are_admitted() {
        let mut plain = ingress(json!({}), rules());
        admit_create(&mut plain).unwrap();
        assert_eq!(plain["status"], json!({"loadBalancer": {}}));
        let mut canary = ingress(
            json!({"nginx.ingress.kubernetes.io/canary": "true",
                   "nginx.ingress.kubernetes.io/canary-weight": "20",
                   "nginx.ingress.kubernetes.io/canary-by-header": "x-canary"}),
            rules(),
        );
        admit_create(&mut canary).unwrap();
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_by_field() {
        let mut tls = ingress(json!({}), rules());
        tls["spec"]["tls"] = json!([{"hosts": ["shop.example.com", "*.example.com"],
                                      "secretName": "shop-tls"}]);
        admit(&tls).unwrap();
        tls["spec"]["tls"] = json!([{"hosts": ["10.0.0.1", "a_b"], "secretName": "Bad_Name"},
                                     {"secretName": "ok", "extra": 1}]);
        assert_eq!(
            fields(admit(&tls)),
            ["spec.tls[1].extra"],
            "unknown fields first (shape)"
        );
        tls["spec"]["tls"] = json!([{"hosts": ["10.0.0.1", "a_b"], "secretName": "Bad_Name"}]);
        assert_eq!(
            fields(admit(&tls)),
            [
                "spec.tls[0].hosts[0]",
                "spec.tls[0].hosts[1]",
                "spec.tls[0].secretName"
            ]
        );
        let rewrite = ingress(
            json!({"nginx.ingress.kubernetes.io/rewrite-target": "/"}),
            rules(),
        );
        assert_eq!(
            fields(admit(&rewrite)),
            ["metadata.annotations[nginx.ingress.kubernetes.io/rewrite-target]"]
        );
        let not_enabled = ingress(
            json!({"nginx.ingress.kubernetes.io/canary-weight": "20"}),
            rules(),
        );
        assert_eq!(
            fields(admit(&not_enabled)),
            ["metadata.annotations[nginx.ingress.kubernetes.io/canary]"]
        );
        let bad_weight = ingress(
            json!({"nginx.ingress.kubernetes.io/canary": "true",
                   "nginx.ingress.kubernetes.io/canary-weight": "lots"}),
            rules(),
        );
        assert_eq!(
            fields(admit(&bad_weight)),
            ["metadata.annotations[nginx.ingress.kubernetes.io/canary-weight]"]
        );
    }

    #[test]
    fn paths_hosts_and_backends_are_checked() {
        let bad = ingress(
            json!({}),
            json!({"rules": [{"host": "10.0.0.1", "http": {"paths": [
                {"path": "api", "pathType": "Prefix",
                 "backend": {"service": {"name": "web", "port": {"number": 70000}}}},
                {"path": "/", "backend": {"service": {"name": "web"}}}
            ]}}]}),
        );
        assert_eq!(
            fields(admit(&bad)),
            [
                "spec.rules[0].host",
                "spec.rules[0].http.paths[0].path",
                "spec.rules[0].http.paths[0].backend.service.port.number",
                "spec.rules[0].http.paths[1].pathType",
                "spec.rules[0].http.paths[1].backend.service.port",
            ]
        );
        let empty = ingress(json!({}), json!({}));
        assert_eq!(fields(admit(&empty)), ["spec"]);
        let wildcard = ingress(
            json!({}),
            json!({"defaultBackend": {"service": {"name": "web", "port": {"name": "http"}}},
                   "rules": [{"host": "*.example.com"}]}),
        );
        admit(&wildcard).unwrap();
    }
}
