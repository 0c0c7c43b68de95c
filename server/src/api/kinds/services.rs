//! Services (core/v1): a stable virtual IP and DNS name in front of the pods a selector
//! picks. Admission validates and defaults them; [`allocate`] hands out the ClusterIP and
//! the node ports inside the write (so two Services never get the same one); the
//! endpoints controller (`controllers::endpoints`) keeps their EndpointSlices, the
//! `service_lb` controller their load-balancer status; the agents route to them.
//!
//! Types `ClusterIP` (also headless, `clusterIP: None`), `NodePort`, `LoadBalancer` (served
//! by the nodes themselves, like k3s's ServiceLB) and `ExternalName` are served, with TCP
//! and UDP ports; `externalIPs` are refused by name.

use std::collections::{BTreeSet, HashSet};
use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::{Allocation, Column, Kind, READ_WRITE, keep_status, name_of};
use crate::api::cascade;
use crate::api::status::{ApiError, Cause};
use crate::api::table::{age, or_none, text};
use crate::api::validation::{self, METADATA, Shape};
use crate::network::{node_ports, service_ips};
use crate::store::Scope;

/// Services (namespaced).
pub const KIND: Kind = Kind {
    group: "",
    version: "v1",
    api_version: "v1",
    plural: "services",
    singular: "service",
    kind: "Service",
    list_kind: "ServiceList",
    short_names: &["svc"],
    categories: &["all"],
    namespaced: true,
    verbs: READ_WRITE,
    subresources: &[],
    columns: &[
        Column::new("Name"),
        Column::new("Type"),
        Column::new("Cluster-IP"),
        Column::new("External-IP"),
        Column::new("Port(s)"),
        Column::new("Age"),
        Column::wide("Selector"),
    ],
    cells,
    admit_create,
    admit_update,
    allocate: Some(allocate),
    delete: cascade::delete,
};

/// The served `spec.type`s.
const TYPES: [&str; 4] = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];

/// The types reached through the nodes' own addresses (they have node ports).
const EXTERNAL_TYPES: [&str; 2] = ["NodePort", "LoadBalancer"];

/// The longest `sessionAffinityConfig.clientIP.timeoutSeconds` (one day, as Kubernetes).
const MAX_AFFINITY_SECONDS: i64 = 86_400;

const PORT: Shape = Shape::Object(&[
    ("name", Shape::Str),
    ("protocol", Shape::Str),
    ("appProtocol", Shape::Str),
    ("port", Shape::Int),
    ("targetPort", Shape::IntOrString),
    ("nodePort", Shape::Int),
]);

const SPEC: Shape = Shape::Object(&[
    ("type", Shape::Str),
    ("selector", Shape::StringMap),
    ("ports", Shape::List(&PORT)),
    ("clusterIP", Shape::Str),
    ("clusterIPs", Shape::List(&Shape::Str)),
    ("ipFamilies", Shape::List(&Shape::Str)),
    ("ipFamilyPolicy", Shape::Str),
    ("externalName", Shape::Str),
    ("externalIPs", Shape::List(&Shape::Str)),
    ("sessionAffinity", Shape::Str),
    (
        "sessionAffinityConfig",
        Shape::Object(&[("clientIP", Shape::Object(&[("timeoutSeconds", Shape::Int)]))]),
    ),
    ("internalTrafficPolicy", Shape::Str),
    ("externalTrafficPolicy", Shape::Str),
    ("allocateLoadBalancerNodePorts", Shape::Bool),
    ("publishNotReadyAddresses", Shape::Bool),
]);

const SERVICE: Shape = Shape::Object(&[
    ("apiVersion", Shape::Str),
    ("kind", Shape::Str),
    ("metadata", METADATA),
    ("spec", SPEC),
    ("status", Shape::Ignored),
]);

/// A new Service: valid and defaulted, with an empty load-balancer status.
pub fn admit_create(svc: &mut Value) -> Result<(), ApiError> {
    admit(svc)?;
    if let Some(map) = svc.as_object_mut() {
        map.insert("status".into(), json!({"loadBalancer": {}}));
    }
    Ok(())
}

/// A changed Service keeps its status (its ClusterIP and node ports are kept by
/// [`allocate`]).
pub fn admit_update(old: &Value, svc: &mut Value) -> Result<(), ApiError> {
    drop_type_dependent_fields(old, svc);
    admit(svc)?;
    keep_status(old, svc);
    Ok(())
}

fn admit(svc: &mut Value) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    validation::check_shape(svc, &SERVICE, "", &mut causes);
    validation::check_type_meta(svc, "v1", "Service", &mut causes);
    validation::check_metadata(svc, &mut causes);
    causes.extend(validation::validate_object_name(svc, true));
    if causes.is_empty() {
        check_spec(&svc["spec"], &mut causes);
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid("Service", name_of(svc), &causes));
    }
    apply_defaults(&mut svc["spec"]);
    Ok(())
}

fn check_spec(spec: &Value, causes: &mut Vec<Cause>) {
    let kind = spec["type"].as_str().unwrap_or("ClusterIP");
    if !TYPES.contains(&kind) {
        causes.push(not_supported(
            "spec.type",
            kind,
            "\"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
        ));
        return;
    }
    let cluster_ip = spec["clusterIP"].as_str().unwrap_or("");
    match kind {
        "ExternalName" => check_external_name(spec, cluster_ip, causes),
        _ => {
            check_cluster_ip(spec, cluster_ip, causes);
            if spec["ports"].as_array().is_none_or(Vec::is_empty) && cluster_ip != "None" {
                causes.push(validation::required("spec.ports"));
            }
        }
    }
    let ports = spec["ports"].as_array().map_or(&[][..], Vec::as_slice);
    check_ports(ports, causes);
    check_external(spec, kind, cluster_ip, ports, causes);
    check_selector(spec, causes);
    check_affinity(spec, causes);
    check_families(spec, causes);
    if let Some(policy) = spec["internalTrafficPolicy"].as_str()
        && !matches!(policy, "Cluster" | "Local")
    {
        causes.push(not_supported(
            "spec.internalTrafficPolicy",
            policy,
            "\"Cluster\", \"Local\"",
        ));
    }
    if spec["externalIPs"]
        .as_array()
        .is_some_and(|ips| !ips.is_empty())
    {
        causes.push(Cause::new(
            "FieldValueForbidden",
            "spec.externalIPs",
            "Forbidden: wasmfleet does not route external IPs to Services",
        ));
    }
}

fn check_external_name(spec: &Value, cluster_ip: &str, causes: &mut Vec<Cause>) {
    match spec["externalName"].as_str().unwrap_or("") {
        "" => causes.push(validation::required("spec.externalName")),
        name if wasmfleet_protocol::names::validate_dns_subdomain("name", name).is_err() => {
            causes.push(Cause::new(
                "FieldValueInvalid",
                "spec.externalName",
                format!("Invalid value: {name:?}: must be a valid DNS name"),
            ));
        }
        _ => {}
    }
    if !cluster_ip.is_empty() {
        causes.push(Cause::new(
            "FieldValueForbidden",
            "spec.clusterIP",
            "Forbidden: may not be set for type ExternalName",
        ));
    }
}

fn check_cluster_ip(spec: &Value, cluster_ip: &str, causes: &mut Vec<Cause>) {
    if !cluster_ip.is_empty() && cluster_ip != "None" && cluster_ip.parse::<Ipv4Addr>().is_err() {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "spec.clusterIPs[0]",
            format!("Invalid value: {cluster_ip:?}: must be a valid IPv4 address or \"None\""),
        ));
    }
    if spec["clusterIPs"]
        .as_array()
        .is_some_and(|ips| ips.len() > 1)
    {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "spec.clusterIPs",
            "Invalid value: only one (IPv4) cluster IP is supported",
        ));
    }
}

fn check_ports(ports: &[Value], causes: &mut Vec<Cause>) {
    let mut names = HashSet::new();
    let mut numbers = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        let name = port["name"].as_str().unwrap_or("");
        if name.is_empty() && ports.len() > 1 {
            causes.push(validation::required(&format!("{path}.name")));
        } else if !name.is_empty() && !validation::is_dns_label(name) {
            causes.push(invalid(
                &format!("{path}.name"),
                format!("Invalid value: {name:?}: must be a DNS label"),
            ));
        } else if !names.insert(name) {
            causes.push(duplicate(&format!("{path}.name"), name));
        }
        let protocol = port["protocol"].as_str().unwrap_or("TCP");
        match protocol {
            "TCP" | "UDP" => {}
            other => causes.push(not_supported(
                &format!("{path}.protocol"),
                other,
                "\"TCP\", \"UDP\"",
            )),
        }
        match port["port"].as_i64() {
            None => causes.push(validation::required(&format!("{path}.port"))),
            Some(n) if !(1..=65535).contains(&n) => {
                causes.push(out_of_range(&format!("{path}.port"), n))
            }
            Some(n) if !numbers.insert((n, protocol)) => causes.push(duplicate(
                &format!("{path}.port"),
                &format!("{n}/{protocol}"),
            )),
            Some(_) => {}
        }
        check_target_port(&port["targetPort"], &path, causes);
    }
}

/// What only NodePort and LoadBalancer Services may have: node ports, an external
/// traffic policy, `allocateLoadBalancerNodePorts` (LoadBalancer only); and they need a
/// ClusterIP.
fn check_external(
    spec: &Value,
    kind: &str,
    cluster_ip: &str,
    ports: &[Value],
    causes: &mut Vec<Cause>,
) {
    let external = EXTERNAL_TYPES.contains(&kind);
    if !external {
        for (i, port) in ports.iter().enumerate() {
            if !port["nodePort"].is_null() {
                causes.push(Cause::new(
                    "FieldValueForbidden",
                    format!("spec.ports[{i}].nodePort"),
                    format!("Forbidden: may not be used when `type` is '{kind}'"),
                ));
            }
        }
    }
    if external && cluster_ip == "None" {
        causes.push(invalid(
            "spec.clusterIP",
            format!("Invalid value: \"None\": may not be set to 'None' for {kind} services"),
        ));
    }
    match spec["externalTrafficPolicy"].as_str() {
        None => {}
        Some(_) if !external => causes.push(invalid(
            "spec.externalTrafficPolicy",
            "Invalid value: may only be set for externally-accessible services".to_owned(),
        )),
        Some("Cluster" | "Local") => {}
        Some(policy) => causes.push(not_supported(
            "spec.externalTrafficPolicy",
            policy,
            "\"Cluster\", \"Local\"",
        )),
    }
    if kind != "LoadBalancer" && !spec["allocateLoadBalancerNodePorts"].is_null() {
        causes.push(Cause::new(
            "FieldValueForbidden",
            "spec.allocateLoadBalancerNodePorts",
            "Forbidden: may only be used when `type` is 'LoadBalancer'",
        ));
    }
}

/// A Service going back from NodePort or LoadBalancer loses what only those types have,
/// unless the update itself sets it (Kubernetes' `dropTypeDependentFields`): its node
/// ports (so they are freed) and `externalTrafficPolicy`; one that stops being a
/// LoadBalancer loses `allocateLoadBalancerNodePorts`.
fn drop_type_dependent_fields(old: &Value, svc: &mut Value) {
    let old_spec = &old["spec"];
    let kind = svc["spec"]["type"]
        .as_str()
        .unwrap_or("ClusterIP")
        .to_owned();
    let kind = kind.as_str();
    let old_kind = old_spec["type"].as_str().unwrap_or("ClusterIP");
    if kind == old_kind {
        return;
    }
    let spec = &mut svc["spec"];
    if !EXTERNAL_TYPES.contains(&kind) {
        let old_ports = old_spec["ports"].as_array().map_or(&[][..], Vec::as_slice);
        for port in spec["ports"].as_array_mut().into_iter().flatten() {
            let kept = old_ports
                .iter()
                .any(|old| old["port"] == port["port"] && old["nodePort"] == port["nodePort"]);
            if kept && let Some(port) = port.as_object_mut() {
                port.remove("nodePort");
            }
        }
        if spec["externalTrafficPolicy"] == old_spec["externalTrafficPolicy"] {
            spec.as_object_mut()
                .map(|s| s.remove("externalTrafficPolicy"));
        }
    }
    if kind != "LoadBalancer"
        && spec["allocateLoadBalancerNodePorts"] == old_spec["allocateLoadBalancerNodePorts"]
    {
        spec.as_object_mut()
            .map(|s| s.remove("allocateLoadBalancerNodePorts"));
    }
}

fn check_target_port(target: &Value, path: &str, causes: &mut Vec<Cause>) {
    let field = format!("{path}.targetPort");
    match target {
        Value::Null => {}
        Value::Number(n) => match n.as_i64() {
            Some(n) if (1..=65535).contains(&n) => {}
            _ => causes.push(invalid(
                &field,
                format!("Invalid value: {n}: must be between 1 and 65535, inclusive"),
            )),
        },
        Value::String(name) if validation::is_port_name(name) => {}
        other => causes.push(invalid(
            &field,
            format!("Invalid value: {other}: must be a port number or an IANA port name"),
        )),
    }
}

fn check_selector(spec: &Value, causes: &mut Vec<Cause>) {
    let selector = json!({"matchLabels": spec["selector"].clone()});
    if let (false, Err((field, message))) = (
        spec["selector"].is_null(),
        crate::k8s::selectors::Selector::from_label_selector(&selector),
    ) {
        let field = field.replace("matchLabels", "selector");
        causes.push(invalid(&format!("spec.{field}"), message));
    }
}

fn check_affinity(spec: &Value, causes: &mut Vec<Cause>) {
    match spec["sessionAffinity"].as_str().unwrap_or("None") {
        "None" | "ClientIP" => {}
        other => causes.push(not_supported(
            "spec.sessionAffinity",
            other,
            "\"ClientIP\", \"None\"",
        )),
    }
    let timeout = spec.pointer("/sessionAffinityConfig/clientIP/timeoutSeconds");
    if let Some(seconds) = timeout.and_then(Value::as_i64)
        && !(1..=MAX_AFFINITY_SECONDS).contains(&seconds)
    {
        causes.push(invalid(
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
            format!("Invalid value: {seconds}: must be greater than 0 and less than {MAX_AFFINITY_SECONDS}"),
        ));
    }
}

fn check_families(spec: &Value, causes: &mut Vec<Cause>) {
    for (i, family) in spec["ipFamilies"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        if family.as_str() != Some("IPv4") {
            causes.push(not_supported(
                &format!("spec.ipFamilies[{i}]"),
                family.as_str().unwrap_or_default(),
                "\"IPv4\" (the pod network is IPv4 only)",
            ));
        }
    }
    if let Some(policy) = spec["ipFamilyPolicy"].as_str()
        && !matches!(policy, "SingleStack" | "PreferDualStack")
    {
        causes.push(not_supported(
            "spec.ipFamilyPolicy",
            policy,
            "\"SingleStack\", \"PreferDualStack\"",
        ));
    }
}

/// Kubernetes' defaults: type, affinity, traffic policy, families, each port's protocol
/// and target port.
fn apply_defaults(spec: &mut Value) {
    let external = spec["type"].as_str() == Some("ExternalName");
    let defaults: &[(&str, Value)] = &[
        ("type", "ClusterIP".into()),
        ("sessionAffinity", "None".into()),
    ];
    for (field, value) in defaults {
        if spec[field].is_null() {
            spec[field] = value.clone();
        }
    }
    if spec["sessionAffinity"] == "ClientIP"
        && spec
            .pointer("/sessionAffinityConfig/clientIP/timeoutSeconds")
            .is_none()
    {
        spec["sessionAffinityConfig"] = json!({"clientIP": {"timeoutSeconds": 10_800}});
    }
    if !external {
        for (field, value) in [
            ("internalTrafficPolicy", json!("Cluster")),
            ("ipFamilies", json!(["IPv4"])),
            ("ipFamilyPolicy", json!("SingleStack")),
        ] {
            if spec[field].is_null() {
                spec[field] = value;
            }
        }
    }
    let kind = spec["type"].as_str().unwrap_or_default().to_owned();
    if EXTERNAL_TYPES.contains(&kind.as_str()) && spec["externalTrafficPolicy"].is_null() {
        spec["externalTrafficPolicy"] = "Cluster".into();
    }
    if kind == "LoadBalancer" && spec["allocateLoadBalancerNodePorts"].is_null() {
        spec["allocateLoadBalancerNodePorts"] = true.into();
    }
    for port in spec["ports"].as_array_mut().into_iter().flatten() {
        if port["protocol"].is_null() {
            port["protocol"] = "TCP".into();
        }
        if port["targetPort"].is_null() {
            port["targetPort"] = port["port"].clone();
        }
    }
}

/// Hands out (or keeps) the ClusterIP, inside the write that stores `svc`: a new Service
/// gets the address it asks for, if free, or the lowest free one; a changed Service keeps
/// the one it has (`clusterIP` may be left out, not changed); an ExternalName has none.
pub fn allocate(
    alloc: &Allocation<'_>,
    old: Option<&Value>,
    svc: &mut Value,
) -> Result<(), ApiError> {
    let name = name_of(svc).to_owned();
    let spec = &mut svc["spec"];
    if spec["type"] == "ExternalName" {
        for field in ["clusterIP", "clusterIPs"] {
            spec.as_object_mut().map(|s| s.remove(field));
        }
        return Ok(());
    }
    let kept = old
        .filter(|old| old["spec"]["type"] != "ExternalName")
        .and_then(|old| old["spec"]["clusterIP"].as_str())
        .filter(|ip| !ip.is_empty());
    let requested = requested_ip(spec, kept).map_err(|why| invalid_ip(&name, why))?;
    let ip = match (kept, requested.as_str()) {
        (Some(kept), "") => kept.to_owned(),
        (Some(kept), requested) if requested == kept => requested.to_owned(),
        (Some(kept), requested) => {
            return Err(invalid_ip(
                &name,
                format!("Invalid value: {requested:?}: may not change once set (it is {kept:?})"),
            ));
        }
        (None, "None") => "None".to_owned(),
        (None, requested) => new_cluster_ip(alloc, requested, &name)?.to_string(),
    };
    spec["clusterIP"] = ip.clone().into();
    spec["clusterIPs"] = json!([ip]);
    allocate_node_ports(alloc, old, svc)
}

/// Hands out (or keeps) the node ports of a NodePort or LoadBalancer Service, port by port
/// ([`node_ports::assign`]; a port's old node port is found by port and protocol); a
/// LoadBalancer with `allocateLoadBalancerNodePorts: false` gets only those it asks for.
fn allocate_node_ports(
    alloc: &Allocation<'_>,
    old: Option<&Value>,
    svc: &mut Value,
) -> Result<(), ApiError> {
    let spec = &svc["spec"];
    let kind = spec["type"].as_str().unwrap_or_default();
    if !EXTERNAL_TYPES.contains(&kind) {
        return Ok(());
    }
    let wanted = kind == "NodePort" || spec["allocateLoadBalancerNodePorts"] != false;
    let name = name_of(svc).to_owned();
    let namespace = svc["metadata"]["namespace"].as_str().unwrap_or_default();
    let mut taken = taken_node_ports(alloc, namespace, &name)?;
    let kept = kept_node_ports(old);
    for (i, port) in svc["spec"]["ports"]
        .as_array_mut()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let had = kept.get(&port_key(port)).copied();
        let chosen = node_ports::assign(had, port["nodePort"].as_i64(), wanted, &taken);
        let node_port = match chosen {
            Ok(Some(node_port)) => node_port,
            Ok(None) => continue,
            Err(node_ports::Refused::Invalid(message)) => {
                let field = format!("spec.ports[{i}].nodePort");
                let cause = Cause::new("FieldValueInvalid", field, message);
                return Err(ApiError::invalid("Service", &name, &[cause]));
            }
            Err(node_ports::Refused::Full) => {
                return Err(ApiError::internal(
                    &"failed to allocate a nodePort: range is full",
                ));
            }
        };
        taken.insert(node_port);
        port["nodePort"] = node_port.into();
    }
    Ok(())
}

/// A port's identity across updates: its number and protocol.
fn port_key(port: &Value) -> (i64, String) {
    let number = port["port"].as_i64().unwrap_or_default();
    let protocol = port["protocol"].as_str().unwrap_or("TCP").to_owned();
    (number, protocol)
}

/// The node ports the stored Service holds, by port.
fn kept_node_ports(old: Option<&Value>) -> std::collections::HashMap<(i64, String), u16> {
    old.and_then(|old| old["spec"]["ports"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|port| {
            let node_port = u16::try_from(port["nodePort"].as_u64()?).ok()?;
            Some((port_key(port), node_port))
        })
        .collect()
}

/// Every node port other Services hold.
fn taken_node_ports(
    alloc: &Allocation<'_>,
    namespace: &str,
    name: &str,
) -> Result<BTreeSet<u16>, ApiError> {
    let listing = alloc.store.list(&Scope::all("services"))?;
    let others = listing
        .items
        .iter()
        .filter(|svc| svc["metadata"]["namespace"] != namespace || svc["metadata"]["name"] != name);
    Ok(others
        .flat_map(|svc| svc["spec"]["ports"].as_array().into_iter().flatten())
        .filter_map(|port| u16::try_from(port["nodePort"].as_u64()?).ok())
        .collect())
}

/// The address asked for in `clusterIP` and `clusterIPs[0]` (`""`: none). An update may
/// leave `clusterIPs` as it was (`kubectl apply` does), so a change of `clusterIP` alone
/// still counts as asking for the new address.
fn requested_ip(spec: &Value, kept: Option<&str>) -> Result<String, String> {
    let single = spec["clusterIP"].as_str().unwrap_or("");
    let first = spec
        .pointer("/clusterIPs/0")
        .and_then(Value::as_str)
        .unwrap_or("");
    match (single, first) {
        ("", first) => Ok(first.to_owned()),
        (single, "") => Ok(single.to_owned()),
        (single, first) if single == first || Some(first) == kept => Ok(single.to_owned()),
        (single, first) => Err(format!(
            "Invalid value: {first:?}: must match `clusterIP` {single:?}"
        )),
    }
}

/// A fresh ClusterIP: the requested one if it is free, else the lowest free one.
fn new_cluster_ip(
    alloc: &Allocation<'_>,
    requested: &str,
    name: &str,
) -> Result<Ipv4Addr, ApiError> {
    let taken = taken_ips(alloc)?;
    if let Ok(ip) = requested.parse::<Ipv4Addr>() {
        return service_ips::check_requested(alloc.service_cidr, ip, &taken)
            .map(|()| ip)
            .map_err(|why| invalid_ip(name, format!("Invalid value: [{requested:?}]: {why}")));
    }
    service_ips::free_service_ip(alloc.service_cidr, &taken).ok_or_else(|| {
        ApiError::internal(&format!(
            "failed to allocate a serviceIP: range is full (service CIDR {})",
            alloc.service_cidr
        ))
    })
}

/// Every ClusterIP in use.
fn taken_ips(alloc: &Allocation<'_>) -> Result<BTreeSet<Ipv4Addr>, ApiError> {
    let listing = alloc.store.list(&Scope::all("services"))?;
    Ok(listing
        .items
        .iter()
        .filter_map(|svc| svc["spec"]["clusterIP"].as_str()?.parse().ok())
        .collect())
}

fn invalid_ip(name: &str, message: String) -> ApiError {
    let cause = Cause::new("FieldValueInvalid", "spec.clusterIPs[0]", message);
    ApiError::invalid("Service", name, &[cause])
}

fn invalid(field: &str, message: String) -> Cause {
    Cause::new("FieldValueInvalid", field, message)
}

fn duplicate(field: &str, value: &str) -> Cause {
    Cause::new(
        "FieldValueDuplicate",
        field,
        format!("Duplicate value: {value:?}"),
    )
}

fn out_of_range(field: &str, n: i64) -> Cause {
    invalid(
        field,
        format!("Invalid value: {n}: must be between 1 and 65535, inclusive"),
    )
}

fn not_supported(field: &str, value: &str, supported: &str) -> Cause {
    Cause::new(
        "FieldValueNotSupported",
        field,
        format!("Unsupported value: {value:?}: supported values: {supported}"),
    )
}

fn cells(svc: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let spec = &svc["spec"];
    let external = spec["type"] == "ExternalName";
    let cluster_ip = match spec["clusterIP"].as_str() {
        Some(ip) if !ip.is_empty() => ip.to_owned(),
        _ => "<none>".to_owned(),
    };
    let external_ip = match spec["type"].as_str() {
        _ if external => spec["externalName"].as_str().unwrap_or("<none>").to_owned(),
        Some("LoadBalancer") => load_balancer_text(svc),
        _ => "<none>".to_owned(),
    };
    vec![
        text(svc, "/metadata/name"),
        text(svc, "/spec/type"),
        cluster_ip.into(),
        external_ip.into(),
        or_none(ports_text(spec)),
        age(svc, now),
        or_none(selector_text(spec)),
    ]
}

/// `80/TCP,443/TCP` (kubectl's PORT(S) column).
fn ports_text(spec: &Value) -> String {
    let ports: Vec<String> = spec["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|port| {
            let protocol = port["protocol"].as_str().unwrap_or("TCP");
            match port["nodePort"].as_u64() {
                Some(node_port) => format!("{}:{node_port}/{protocol}", port["port"]),
                None => format!("{}/{protocol}", port["port"]),
            }
        })
        .collect();
    ports.join(",")
}

/// A LoadBalancer's EXTERNAL-IP: its ingress addresses, `<pending>` until it has one.
fn load_balancer_text(svc: &Value) -> String {
    let ips: Vec<&str> = svc
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|ingress| ingress["ip"].as_str().or(ingress["hostname"].as_str()))
        .collect();
    match ips.is_empty() {
        true => "<pending>".to_owned(),
        false => ips.join(","),
    }
}

/// `app=web,tier=front` (kubectl's SELECTOR column).
fn selector_text(spec: &Value) -> String {
    let pairs: Vec<String> = spec["selector"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    pairs.join(",")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn service(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    }

    fn fields(err: ApiError) -> Vec<String> {
        err.cause_fields()
    }

    #[test]
    fn a_plain_service_is_defaulted_like_kubernetes() {
        let mut svc = service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
        admit_create(&mut svc).unwrap();
        let spec = &svc["spec"];
        assert_eq!(spec["type"], "ClusterIP");
        assert_eq!(spec["sessionAffinity"], "None");
        assert_eq!(spec["ports"][0]["protocol"], "TCP");
        assert_eq!(spec["ports"][0]["targetPort"], 80);
        assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
        assert_eq!(svc["status"], json!({"loadBalancer": {}}));
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_by_name() {
        let cases = [
            (
                json!({"type": "NodeBalancer", "ports": [{"port": 80}]}),
                "spec.type",
            ),
            (
                json!({"type": "NodePort", "clusterIP": "None", "ports": [{"port": 80}]}),
                "spec.clusterIP",
            ),
            (
                json!({"ports": [{"port": 80}], "externalTrafficPolicy": "Local"}),
                "spec.externalTrafficPolicy",
            ),
            (
                json!({"type": "NodePort", "ports": [{"port": 80}], "externalTrafficPolicy": "Far"}),
                "spec.externalTrafficPolicy",
            ),
            (
                json!({"type": "NodePort", "ports": [{"port": 80}], "allocateLoadBalancerNodePorts": false}),
                "spec.allocateLoadBalancerNodePorts",
            ),
            (
                json!({"type": "NodePort", "ports": [{"port": 53, "protocol": "SCTP"}]}),
                "spec.ports[0].protocol",
            ),
            (
                json!({"ports": [{"port": 80, "nodePort": 30080}]}),
                "spec.ports[0].nodePort",
            ),
            (
                json!({"ports": [{"port": 80}], "externalIPs": ["1.2.3.4"]}),
                "spec.externalIPs",
            ),
            (
                json!({"ports": [{"port": 80}], "ipFamilies": ["IPv6"]}),
                "spec.ipFamilies[0]",
            ),
            (json!({"ports": [{"port": 0}]}), "spec.ports[0].port"),
            (
                json!({"ports": [{"port": 80}, {"port": 81}]}),
                "spec.ports[0].name",
            ),
            (
                json!({"ports": [{"port": 80, "targetPort": "Not_A_Name"}]}),
                "spec.ports[0].targetPort",
            ),
            (json!({"ports": []}), "spec.ports"),
            (json!({"type": "ExternalName"}), "spec.externalName"),
            (
                json!({"ports": [{"port": 80}], "sessionAffinity": "Cookie"}),
                "spec.sessionAffinity",
            ),
            (
                json!({"ports": [{"port": 80}], "clusterIP": "10.43.0.300"}),
                "spec.clusterIPs[0]",
            ),
        ];
        for (spec, field) in cases {
            let err = admit_create(&mut service(spec.clone())).unwrap_err();
            assert!(
                fields(err).iter().any(|f| f == field),
                "{spec} should fail on {field}"
            );
        }
    }

    #[test]
    fn headless_and_external_name_services_are_accepted() {
        let mut headless = service(json!({"clusterIP": "None", "selector": {"app": "db"}}));
        admit_create(&mut headless).unwrap();
        let mut external = service(json!({"type": "ExternalName", "externalName": "example.com"}));
        admit_create(&mut external).unwrap();
    }

    #[test]
    fn the_requested_address_comes_from_either_field() {
        let spec = |ip: &str, ips: Value| json!({"clusterIP": ip, "clusterIPs": ips});
        assert_eq!(requested_ip(&spec("", json!(null)), None).unwrap(), "");
        assert_eq!(
            requested_ip(&spec("", json!(["10.43.0.5"])), None).unwrap(),
            "10.43.0.5"
        );
        assert_eq!(
            requested_ip(&spec("10.43.0.5", json!(null)), None).unwrap(),
            "10.43.0.5"
        );
        assert!(requested_ip(&spec("10.43.0.5", json!(["10.43.0.6"])), None).is_err());
        // `kubectl apply` changing only `clusterIP`: the new address is what is asked for.
        let applied = spec("10.43.0.7", json!(["10.43.0.6"]));
        assert_eq!(
            requested_ip(&applied, Some("10.43.0.6")).unwrap(),
            "10.43.0.7"
        );
    }

    #[test]
    fn node_port_and_load_balancer_services_are_defaulted_like_kubernetes() {
        let mut node_port = service(json!({"type": "NodePort", "ports": [{"port": 80}]}));
        admit_create(&mut node_port).unwrap();
        assert_eq!(node_port["spec"]["externalTrafficPolicy"], "Cluster");
        assert!(node_port["spec"]["allocateLoadBalancerNodePorts"].is_null());
        let mut lb = service(json!({"type": "LoadBalancer", "ports": [{"port": 80}],
            "externalTrafficPolicy": "Local"}));
        admit_create(&mut lb).unwrap();
        assert_eq!(lb["spec"]["externalTrafficPolicy"], "Local");
        assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
    }

    #[test]
    fn going_back_to_cluster_ip_drops_the_node_ports_unless_set_anew() {
        let old = service(json!({"type": "NodePort", "externalTrafficPolicy": "Local",
            "ports": [{"port": 80, "nodePort": 30080}, {"port": 81, "nodePort": 30081}]}));
        let mut back = service(
            json!({"type": "ClusterIP", "externalTrafficPolicy": "Local",
            "ports": [{"port": 80, "nodePort": 30080}, {"port": 81, "nodePort": 30081}]}),
        );
        drop_type_dependent_fields(&old, &mut back);
        assert!(back["spec"]["ports"][0]["nodePort"].is_null());
        assert!(back["spec"]["ports"][1]["nodePort"].is_null());
        assert!(back["spec"]["externalTrafficPolicy"].is_null());
        let mut changed = service(json!({"type": "ClusterIP",
            "ports": [{"port": 80, "nodePort": 30090}]}));
        drop_type_dependent_fields(&old, &mut changed);
        assert_eq!(
            changed["spec"]["ports"][0]["nodePort"], 30090,
            "a new value is an error, not dropped"
        );
        let mut lb = service(json!({"type": "LoadBalancer",
            "ports": [{"port": 80, "nodePort": 30080}]}));
        drop_type_dependent_fields(&old, &mut lb);
        assert_eq!(
            lb["spec"]["ports"][0]["nodePort"], 30080,
            "kept from NodePort to LoadBalancer"
        );
    }

    #[test]
    fn load_balancers_show_their_ingress_or_pending() {
        let mut lb = service(json!({"type": "LoadBalancer",
            "ports": [{"port": 18080, "nodePort": 30080}], "clusterIP": "10.43.0.7"}));
        admit_create(&mut lb).unwrap();
        let row = cells(&lb, jiff::Timestamp::now());
        assert_eq!(row[3], "<pending>");
        assert_eq!(row[4], "18080:30080/TCP");
        lb["status"] =
            json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.2"}, {"ip": "192.0.2.3"}]}});
        let row = cells(&lb, jiff::Timestamp::now());
        assert_eq!(row[3], "192.0.2.2,192.0.2.3");
    }

    /// Admits and allocates `svc` (over `old`) against `store`, then stores it.
    fn write(
        store: &crate::store::Store,
        old: Option<&Value>,
        mut svc: Value,
    ) -> Result<Value, ApiError> {
        match old {
            Some(old) => admit_update(old, &mut svc)?,
            None => admit_create(&mut svc)?,
        }
        let alloc = Allocation {
            store,
            service_cidr: "10.43.0.0/16".parse().unwrap(),
        };
        allocate(&alloc, old, &mut svc)?;
        let key = crate::store::ObjectKey::namespaced("services", "default", name_of(&svc));
        store.delete(&key, None).ok();
        Ok(store.create(&key, svc).unwrap())
    }

    fn named(name: &str, spec: Value) -> Value {
        let mut svc = service(spec);
        svc["metadata"]["name"] = name.into();
        svc
    }

    #[test]
    fn node_ports_are_allocated_kept_and_freed_in_the_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path().join("state.redb")).unwrap();
        let a = write(&store, None, named("a", json!({"type": "NodePort",
            "ports": [{"name": "http", "port": 80}, {"name": "admin", "port": 81, "nodePort": 30001}]})))
        .unwrap();
        assert_eq!(
            a["spec"]["ports"][0]["nodePort"], 30086,
            "dynamic band first"
        );
        assert_eq!(
            a["spec"]["ports"][1]["nodePort"], 30001,
            "the requested port"
        );

        let err = write(
            &store,
            None,
            named(
                "b",
                json!({"type": "NodePort",
            "ports": [{"port": 80, "nodePort": 30001}]}),
            ),
        )
        .unwrap_err();
        assert_eq!(fields(err), ["spec.ports[0].nodePort"]);
        let err = write(
            &store,
            None,
            named(
                "b",
                json!({"type": "NodePort",
            "ports": [{"port": 80, "nodePort": 8080}]}),
            ),
        )
        .unwrap_err();
        assert!(format!("{err:?}").contains("30000-32767"), "{err:?}");

        // An update that leaves the node ports out keeps them; changing one is refused.
        let same = write(
            &store,
            Some(&a),
            named(
                "a",
                json!({"type": "LoadBalancer",
            "ports": [{"name": "http", "port": 80}, {"name": "admin", "port": 81}]}),
            ),
        )
        .unwrap();
        assert_eq!(same["spec"]["ports"][0]["nodePort"], 30086);
        assert_eq!(same["spec"]["ports"][1]["nodePort"], 30001);
        let err = write(&store, Some(&same), named("a", json!({"type": "NodePort",
            "ports": [{"name": "http", "port": 80, "nodePort": 30099}, {"name": "admin", "port": 81}]})))
        .unwrap_err();
        assert!(
            format!("{err:?}").contains("may not change once set"),
            "{err:?}"
        );

        // Back to ClusterIP frees them for others.
        let back = write(
            &store,
            Some(&same),
            named(
                "a",
                json!({"type": "ClusterIP",
            "ports": [{"name": "http", "port": 80, "nodePort": 30086},
                      {"name": "admin", "port": 81, "nodePort": 30001}]}),
            ),
        )
        .unwrap();
        assert!(back["spec"]["ports"][1]["nodePort"].is_null());
        let b = write(
            &store,
            None,
            named(
                "b",
                json!({"type": "NodePort",
            "ports": [{"port": 80, "nodePort": 30001}]}),
            ),
        )
        .unwrap();
        assert_eq!(b["spec"]["ports"][0]["nodePort"], 30001);

        // A LoadBalancer may go without node ports.
        let lb = write(
            &store,
            None,
            named(
                "c",
                json!({"type": "LoadBalancer",
            "allocateLoadBalancerNodePorts": false, "ports": [{"port": 18080}]}),
            ),
        )
        .unwrap();
        assert!(lb["spec"]["ports"][0]["nodePort"].is_null());
    }

    #[test]
    fn print_columns_follow_kubectl() {
        let mut svc = service(json!({"selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}],
            "clusterIP": "10.43.0.7"}));
        admit_create(&mut svc).unwrap();
        let row = cells(&svc, jiff::Timestamp::now());
        assert_eq!(row[1], "ClusterIP");
        assert_eq!(row[2], "10.43.0.7");
        assert_eq!(row[3], "<none>");
        assert_eq!(row[4], "80/TCP,443/TCP");
        assert_eq!(row[6], "app=web");
    }
}
