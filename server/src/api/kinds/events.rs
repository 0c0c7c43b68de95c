//! Events (core/v1): mostly written by the server itself ([`crate::events`]); read by
//! `kubectl describe` (by `involvedObject` field selectors) and `kubectl get events`.

use serde_json::Value;

use super::{Column, Kind, READ_WRITE, name_of};
use crate::api::cascade;
use crate::api::status::ApiError;
use crate::api::table::{age, text};
use crate::api::validation;

/// Events (namespaced).
pub const KIND: Kind = Kind {
    group: "",
    version: "v1",
    api_version: "v1",
    plural: "events",
    singular: "event",
    kind: "Event",
    list_kind: "EventList",
    short_names: &["ev"],
    categories: &[],
    namespaced: true,
    verbs: READ_WRITE,
    subresources: &[],
    columns: &[
        Column::new("Last Seen"),
        Column::new("Type"),
        Column::new("Reason"),
        Column::new("Object"),
        Column::wide("Subobject"),
        Column::wide("Source"),
        Column::new("Message"),
        Column::wide("First Seen"),
        Column::wide("Count"),
        Column::wide("Name"),
    ],
    cells,
    admit_create,
    admit_update,
    allocate: None,
    delete: cascade::delete,
};

/// An event from a client: it needs a name (or generateName) and an involved object.
fn admit_create(event: &mut Value) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    validation::check_metadata(event, &mut causes);
    if !event["involvedObject"].is_object() {
        causes.push(validation::required("involvedObject"));
    }
    match causes.is_empty() {
        true => Ok(()),
        false => Err(ApiError::invalid("Event", name_of(event), &causes)),
    }
}

fn admit_update(_old: &Value, event: &mut Value) -> Result<(), ApiError> {
    admit_create(event)
}

/// An age from one of the event's timestamps.
fn seen(event: &Value, field: &str, now: jiff::Timestamp) -> Value {
    let mut at = serde_json::json!({"metadata": {"creationTimestamp": event[field]}});
    if event[field].is_null() {
        at["metadata"]["creationTimestamp"] = event["metadata"]["creationTimestamp"].clone();
    }
    age(&at, now)
}

fn cells(event: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let involved = &event["involvedObject"];
    let object = format!(
        "{}/{}",
        involved["kind"].as_str().unwrap_or("").to_lowercase(),
        involved["name"].as_str().unwrap_or("")
    );
    vec![
        seen(event, "lastTimestamp", now),
        text(event, "/type"),
        text(event, "/reason"),
        object.into(),
        involved["fieldPath"].as_str().unwrap_or("").into(),
        text(event, "/source/component"),
        event["message"].as_str().unwrap_or("").into(),
        seen(event, "firstTimestamp", now),
        event["count"].as_i64().unwrap_or(1).to_string().into(),
        text(event, "/metadata/name"),
    ]
}
