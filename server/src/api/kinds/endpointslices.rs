//! EndpointSlices (discovery.k8s.io/v1): the pods behind a Service, with their readiness.
//! The endpoints controller (`controllers::endpoints`) writes them for Services with a
//! selector; a user may write them for a Service without one. The agents route from them
//! (through the server's table of Services). Only `addressType: IPv4` is served.

use serde_json::Value;

use super::{Column, Kind, READ_WRITE, name_of};
use crate::api::cascade;
use crate::api::status::{ApiError, Cause};
use crate::api::table::{age, or_none, text};
use crate::api::validation::{self, METADATA, Shape};

/// EndpointSlices (namespaced).
pub const KIND: Kind = Kind {
    group: "discovery.k8s.io",
    version: "v1",
    api_version: "discovery.k8s.io/v1",
    plural: "endpointslices",
    singular: "endpointslice",
    kind: "EndpointSlice",
    list_kind: "EndpointSliceList",
    short_names: &[],
    categories: &[],
    namespaced: true,
    verbs: READ_WRITE,
    subresources: &[],
    columns: &[
        Column::new("Name"),
        Column::new("AddressType"),
        Column::new("Ports"),
        Column::new("Endpoints"),
        Column::new("Age"),
    ],
    cells,
    admit_create,
    admit_update,
    allocate: None,
    delete: cascade::delete,
};

/// A reference to the pod behind an address (shared with core/v1 Endpoints).
pub const TARGET_REF: Shape = Shape::Object(&[
    ("kind", Shape::Str),
    ("namespace", Shape::Str),
    ("name", Shape::Str),
    ("uid", Shape::Str),
    ("apiVersion", Shape::Str),
    ("resourceVersion", Shape::Str),
    ("fieldPath", Shape::Str),
]);

/// A port of endpoints (shared with core/v1 Endpoints).
pub const ENDPOINT_PORT: Shape = Shape::Object(&[
    ("name", Shape::Str),
    ("port", Shape::Int),
    ("protocol", Shape::Str),
    ("appProtocol", Shape::Str),
]);

const ENDPOINT: Shape = Shape::Object(&[
    ("addresses", Shape::List(&Shape::Str)),
    (
        "conditions",
        Shape::Object(&[
            ("ready", Shape::Bool),
            ("serving", Shape::Bool),
            ("terminating", Shape::Bool),
        ]),
    ),
    ("hostname", Shape::Str),
    ("nodeName", Shape::Str),
    ("zone", Shape::Str),
    ("targetRef", TARGET_REF),
    ("hints", Shape::Ignored),
    ("deprecatedTopology", Shape::StringMap),
]);

const SLICE: Shape = Shape::Object(&[
    ("apiVersion", Shape::Str),
    ("kind", Shape::Str),
    ("metadata", METADATA),
    ("addressType", Shape::Str),
    ("endpoints", Shape::List(&ENDPOINT)),
    ("ports", Shape::List(&ENDPOINT_PORT)),
]);

/// The longest list of endpoints in one slice (Kubernetes' limit).
const MAX_ENDPOINTS: usize = 1000;

fn admit_create(slice: &mut Value) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    validation::check_shape(slice, &SLICE, "", &mut causes);
    validation::check_type_meta(slice, "discovery.k8s.io/v1", "EndpointSlice", &mut causes);
    validation::check_metadata(slice, &mut causes);
    match slice["addressType"].as_str() {
        Some("IPv4") => {}
        None => causes.push(validation::required("addressType")),
        Some(other) => causes.push(Cause::new(
            "FieldValueNotSupported",
            "addressType",
            format!("Unsupported value: {other:?}: supported values: \"IPv4\""),
        )),
    }
    let endpoints = slice["endpoints"].as_array().map_or(&[][..], Vec::as_slice);
    if endpoints.len() > MAX_ENDPOINTS {
        causes.push(Cause::new(
            "FieldValueTooMany",
            "endpoints",
            format!(
                "Too many: {}: must have at most {MAX_ENDPOINTS} items",
                endpoints.len()
            ),
        ));
    }
    for (i, endpoint) in endpoints.iter().enumerate() {
        check_addresses(endpoint, &format!("endpoints[{i}]"), &mut causes);
    }
    check_ports(&slice["ports"], "ports", &mut causes);
    match causes.is_empty() {
        true => Ok(()),
        false => Err(ApiError::invalid("EndpointSlice", name_of(slice), &causes)),
    }
}

fn admit_update(_old: &Value, slice: &mut Value) -> Result<(), ApiError> {
    admit_create(slice)
}

fn check_addresses(endpoint: &Value, path: &str, causes: &mut Vec<Cause>) {
    let addresses = endpoint["addresses"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    if addresses.len() != 1 {
        causes.push(Cause::new(
            "FieldValueInvalid",
            format!("{path}.addresses"),
            "Invalid value: must contain exactly one address",
        ));
    }
    for (j, address) in addresses.iter().enumerate() {
        check_ip(address, &format!("{path}.addresses[{j}]"), causes);
    }
}

/// An IPv4 address (shared with core/v1 Endpoints).
pub fn check_ip(address: &Value, path: &str, causes: &mut Vec<Cause>) {
    let text = address.as_str().unwrap_or_default();
    if text.parse::<std::net::Ipv4Addr>().is_err() {
        causes.push(Cause::new(
            "FieldValueInvalid",
            path,
            format!("Invalid value: {text:?}: must be a valid IPv4 address"),
        ));
    }
}

/// Port numbers 1–65535 and TCP (shared with core/v1 Endpoints).
pub fn check_ports(ports: &Value, path: &str, causes: &mut Vec<Cause>) {
    for (i, port) in ports.as_array().into_iter().flatten().enumerate() {
        let n = port["port"].as_i64().unwrap_or(0);
        if !(1..=65535).contains(&n) {
            causes.push(Cause::new(
                "FieldValueInvalid",
                format!("{path}[{i}].port"),
                format!("Invalid value: {n}: must be between 1 and 65535, inclusive"),
            ));
        }
        if let Some(protocol) = port["protocol"].as_str().filter(|p| *p != "TCP") {
            causes.push(Cause::new(
                "FieldValueNotSupported",
                format!("{path}[{i}].protocol"),
                format!("Unsupported value: {protocol:?}: supported values: \"TCP\""),
            ));
        }
    }
}

fn cells(slice: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let ports: Vec<String> = slice["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["port"].as_i64().map(|n| n.to_string()))
        .collect();
    let addresses: Vec<&str> = slice["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.pointer("/addresses/0")?.as_str())
        .collect();
    vec![
        text(slice, "/metadata/name"),
        text(slice, "/addressType"),
        or_none(ports.join(",")),
        or_none(abbreviated(&addresses)),
        age(slice, now),
    ]
}

/// The first three items, then `+ N more...` (kubectl's way).
pub fn abbreviated(items: &[&str]) -> String {
    match items.len() {
        0..=3 => items.join(","),
        n => format!("{} + {} more...", items[..3].join(","), n - 3),
    }
}
