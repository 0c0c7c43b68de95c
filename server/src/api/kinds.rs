//! The resources the API serves, and what each does on admission.

use serde_json::Value;

use super::status::ApiError;
use super::{namespaces, nodes, pods};

/// A served resource: its names and its admission hooks.
pub struct Kind {
    /// Plural resource name, as in paths and the store (`pods`).
    pub plural: &'static str,
    /// `kind` of one object (`Pod`).
    pub kind: &'static str,
    /// `kind` of a list (`PodList`).
    pub list_kind: &'static str,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Validates and defaults a new object (name and namespace are already set).
    pub admit_create: fn(&mut Value) -> Result<(), ApiError>,
    /// Validates a replacement of the stored object, and carries over what clients may not
    /// change (status).
    pub admit_update: fn(&Value, &mut Value) -> Result<(), ApiError>,
}

/// Pods (namespaced).
pub const PODS: Kind = Kind {
    plural: "pods",
    kind: "Pod",
    list_kind: "PodList",
    namespaced: true,
    admit_create: pods::admit_create,
    admit_update: pods::admit_update,
};

/// Nodes (cluster-scoped; normally created by the fleet when an agent joins).
pub const NODES: Kind = Kind {
    plural: "nodes",
    kind: "Node",
    list_kind: "NodeList",
    namespaced: false,
    admit_create: nodes::admit_create,
    admit_update: nodes::admit_update,
};

/// Namespaces (cluster-scoped).
pub const NAMESPACES: Kind = Kind {
    plural: "namespaces",
    kind: "Namespace",
    list_kind: "NamespaceList",
    namespaced: false,
    admit_create: namespaces::admit_create,
    admit_update: namespaces::admit_update,
};

/// Sets `apiVersion` and `kind` (clients may leave them out; responses must have them).
pub fn stamp_type(obj: &mut Value, kind: &Kind) {
    if let Some(map) = obj.as_object_mut() {
        map.insert("apiVersion".into(), "v1".into());
        map.insert("kind".into(), kind.kind.into());
    }
}

/// Keeps the stored `status` (clients change spec and metadata; the server owns status).
pub fn keep_status(old: &Value, new: &mut Value) {
    if let Some(map) = new.as_object_mut() {
        match old.get("status") {
            Some(status) => map.insert("status".into(), status.clone()),
            None => map.remove("status"),
        };
    }
}

/// The object's name for messages (`""` when it has none).
pub fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Ties a handler to a [`Kind`] at compile time: `get(objects::list::<Pods>)`.
pub trait Resource: Send + Sync + 'static {
    /// The served resource.
    const KIND: &'static Kind;
}

/// [`PODS`] as a type.
pub struct Pods;
/// [`NODES`] as a type.
pub struct Nodes;
/// [`NAMESPACES`] as a type.
pub struct Namespaces;

impl Resource for Pods {
    const KIND: &'static Kind = &PODS;
}
impl Resource for Nodes {
    const KIND: &'static Kind = &NODES;
}
impl Resource for Namespaces {
    const KIND: &'static Kind = &NAMESPACES;
}
