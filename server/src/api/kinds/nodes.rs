//! Node admission. Nodes are normally registered by the fleet when an agent joins; users
//! label, annotate or cordon them (`spec.unschedulable`). The fleet owns `status`, and the
//! broker owns the node's credential binding (the annotation
//! [`NODE_PASSWORD_HASH_ANNOTATION`]): no API client sets or changes it. Deleting the Node
//! forgets the binding, so a device may join under the name again.

use serde_json::Value;

use super::{Column, Kind, READ_WRITE, keep_status, name_of};
use crate::api::cascade;
use crate::api::status::{ApiError, Cause};
use crate::api::table::{age, str_at, text};
use crate::api::validation;
use crate::identity::{NODE_PASSWORD_HASH_ANNOTATION, bound_hash};

/// Nodes (cluster-scoped; normally created by the fleet when an agent joins).
pub const KIND: Kind = Kind {
    group: "",
    version: "v1",
    api_version: "v1",
    plural: "nodes",
    singular: "node",
    kind: "Node",
    list_kind: "NodeList",
    short_names: &["no"],
    categories: &[],
    namespaced: false,
    verbs: READ_WRITE,
    subresources: &[],
    columns: &[
        Column::new("Name"),
        Column::new("Status"),
        Column::new("Roles"),
        Column::new("Age"),
        Column::new("Version"),
        Column::wide("Internal-IP"),
        Column::wide("External-IP"),
        Column::wide("OS-Image"),
        Column::wide("Kernel-Version"),
        Column::wide("Container-Runtime"),
    ],
    cells,
    admit_create,
    admit_update,
    allocate: None,
    delete: cascade::delete,
};

/// A node created through the API: only its name is checked, and it carries no credential.
pub fn admit_create(node: &mut Value) -> Result<(), ApiError> {
    let mut causes = validation::validate_object_name(node, false);
    if bound_hash(node).is_some() {
        causes.push(binding_cause("is set by the server when the node joins"));
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid("Node", name_of(node), &causes))
    }
}

/// A changed node keeps the status the fleet reported and the credential it joined with.
pub fn admit_update(old: &Value, node: &mut Value) -> Result<(), ApiError> {
    if bound_hash(old) != bound_hash(node) {
        let cause = binding_cause(
            "is the node's credential and cannot be changed; delete the Node to let a device join under its name again",
        );
        return Err(ApiError::invalid("Node", name_of(node), &[cause]));
    }
    keep_status(old, node);
    Ok(())
}

fn binding_cause(message: &str) -> Cause {
    Cause::new(
        "FieldValueForbidden",
        format!("metadata.annotations[{NODE_PASSWORD_HASH_ANNOTATION}]"),
        message,
    )
}

fn cells(node: &Value, now: jiff::Timestamp) -> Vec<Value> {
    vec![
        text(node, "/metadata/name"),
        status(node).into(),
        roles(node).into(),
        age(node, now),
        text(node, "/status/nodeInfo/kubeletVersion"),
        address(node, "InternalIP").into(),
        address(node, "ExternalIP").into(),
        text(node, "/status/nodeInfo/osImage"),
        text(node, "/status/nodeInfo/kernelVersion"),
        text(node, "/status/nodeInfo/containerRuntimeVersion"),
    ]
}

/// kubectl's STATUS: `Ready`, `NotReady` (Ready is False or Unknown) or `Unknown` (no
/// Ready condition), then `SchedulingDisabled` when cordoned.
fn status(node: &Value) -> String {
    let ready = crate::k8s::conditions::condition_status(node, "Ready").map(|s| s == "True");
    let mut status = match ready {
        Some(true) => "Ready",
        Some(false) => "NotReady",
        None => "Unknown",
    }
    .to_owned();
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    status
}

fn roles(node: &Value) -> String {
    let roles: Vec<&str> = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(key, _)| key.strip_prefix("node-role.kubernetes.io/"))
        .collect();
    if roles.is_empty() {
        "<none>".to_owned()
    } else {
        roles.join(",")
    }
}

fn address(node: &Value, kind: &str) -> String {
    node.pointer("/status/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|a| a["type"] == kind)
        .and_then(|a| str_at(a, "/address"))
        .unwrap_or("<none>")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_reads_like_kubectl() {
        let node = |ready: &str, cordoned: bool| {
            json!({"spec": {"unschedulable": cordoned},
                   "status": {"conditions": [{"type": "Ready", "status": ready}]}})
        };
        assert_eq!(status(&node("True", true)), "Ready,SchedulingDisabled");
        assert_eq!(status(&node("Unknown", false)), "NotReady");
        assert_eq!(status(&node("False", false)), "NotReady");
        assert_eq!(status(&json!({})), "Unknown");
    }
}
