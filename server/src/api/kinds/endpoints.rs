//! Endpoints (core/v1): the older form of a Service's endpoints, which `kubectl describe
//! service` still reads. The endpoints controller (`controllers::endpoints`) keeps one per
//! Service with a selector, beside its EndpointSlices; the agents route from the slices.

use serde_json::Value;

use super::endpointslices::{ENDPOINT_PORT, TARGET_REF, abbreviated, check_ip, check_ports};
use super::{Column, Kind, READ_WRITE, name_of};
use crate::api::cascade;
use crate::api::status::{ApiError, Cause};
use crate::api::table::{age, or_none, text};
use crate::api::validation::{self, METADATA, Shape};

/// Endpoints (namespaced).
pub const KIND: Kind = Kind {
    group: "",
    version: "v1",
    api_version: "v1",
    plural: "endpoints",
    singular: "endpoints",
    kind: "Endpoints",
    list_kind: "EndpointsList",
    short_names: &["ep"],
    categories: &[],
    namespaced: true,
    verbs: READ_WRITE,
    subresources: &[],
    columns: &[
        Column::new("Name"),
        Column::new("Endpoints"),
        Column::new("Age"),
    ],
    cells,
    admit_create,
    admit_update,
    allocate: None,
    delete: cascade::delete,
};

const ADDRESS: Shape = Shape::Object(&[
    ("ip", Shape::Str),
    ("hostname", Shape::Str),
    ("nodeName", Shape::Str),
    ("targetRef", TARGET_REF),
]);

const SUBSET: Shape = Shape::Object(&[
    ("addresses", Shape::List(&ADDRESS)),
    ("notReadyAddresses", Shape::List(&ADDRESS)),
    ("ports", Shape::List(&ENDPOINT_PORT)),
]);

const ENDPOINTS: Shape = Shape::Object(&[
    ("apiVersion", Shape::Str),
    ("kind", Shape::Str),
    ("metadata", METADATA),
    ("subsets", Shape::List(&SUBSET)),
]);

fn admit_create(endpoints: &mut Value) -> Result<(), ApiError> {
    let mut causes: Vec<Cause> = Vec::new();
    validation::check_shape(endpoints, &ENDPOINTS, "", &mut causes);
    validation::check_type_meta(endpoints, "v1", "Endpoints", &mut causes);
    validation::check_metadata(endpoints, &mut causes);
    for (i, subset) in subsets(endpoints).enumerate() {
        for list in ["addresses", "notReadyAddresses"] {
            for (j, address) in subset[list].as_array().into_iter().flatten().enumerate() {
                check_ip(
                    &address["ip"],
                    &format!("subsets[{i}].{list}[{j}].ip"),
                    &mut causes,
                );
            }
        }
        check_ports(
            &subset["ports"],
            &format!("subsets[{i}].ports"),
            &mut causes,
        );
    }
    match causes.is_empty() {
        true => Ok(()),
        false => Err(ApiError::invalid("Endpoints", name_of(endpoints), &causes)),
    }
}

fn admit_update(_old: &Value, endpoints: &mut Value) -> Result<(), ApiError> {
    admit_create(endpoints)
}

fn subsets(endpoints: &Value) -> impl Iterator<Item = &Value> {
    endpoints["subsets"].as_array().into_iter().flatten()
}

/// `10.42.0.2:8080,10.42.0.3:8080` (ready addresses only, like kubectl).
fn cells(endpoints: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let mut pairs = Vec::new();
    for subset in subsets(endpoints) {
        let ports: Vec<i64> = subset["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["port"].as_i64())
            .collect();
        for address in subset["addresses"].as_array().into_iter().flatten() {
            let ip = address["ip"].as_str().unwrap_or_default();
            match ports.is_empty() {
                true => pairs.push(ip.to_owned()),
                false => pairs.extend(ports.iter().map(|port| format!("{ip}:{port}"))),
            }
        }
    }
    let pairs: Vec<&str> = pairs.iter().map(String::as_str).collect();
    vec![
        text(endpoints, "/metadata/name"),
        or_none(abbreviated(&pairs)),
        age(endpoints, now),
    ]
}
