//! The kind registry: one description per served resource, and everything that follows from
//! it. Routing ([`super::router`]), discovery and the OpenAPI document
//! ([`super::discovery`]), server-side Table printing ([`super::table`]) and admission
//! ([`super::objects`]) all read [`ALL`]; adding a kind is one file here plus one line in
//! [`ALL`].
//!
//! Each kind's file holds its [`Kind`] constant, its admission (validation, defaults, what a
//! client may not change) and its print columns.

pub mod configmaps;
pub mod cronjobs;
pub mod daemonsets;
pub mod deployments;
pub mod endpoints;
pub mod endpointslices;
pub mod events;
pub mod gateway_api;
pub mod ingressclasses;
pub mod ingresses;
pub mod jobs;
pub mod leases;
pub mod namespaces;
pub mod nodes;
pub mod poddisruptionbudgets;
pub mod pods;
pub mod rbac;
pub mod replicasets;
pub mod reviews;
pub mod secrets;
pub mod serviceaccounts;
pub mod services;
pub mod workload;

use axum::routing::MethodRouter;
use serde_json::Value;

use super::ApiContext;
use super::status::ApiError;
use crate::store::{ObjectKey, Store};

/// Every kind the API serves through the registry, in discovery order.
pub const ALL: &[&Kind] = &[
    &namespaces::KIND,
    &nodes::KIND,
    &pods::KIND,
    &services::KIND,
    &endpoints::KIND,
    &endpointslices::KIND,
    &configmaps::KIND,
    &secrets::KIND,
    &ingresses::KIND,
    &ingressclasses::KIND,
    &gateway_api::CLASSES,
    &gateway_api::GATEWAYS,
    &gateway_api::HTTP_ROUTES,
    &events::KIND,
    &deployments::KIND,
    &replicasets::KIND,
    &daemonsets::KIND,
    &jobs::KIND,
    &cronjobs::KIND,
    &poddisruptionbudgets::KIND,
    &serviceaccounts::KIND,
    &leases::KIND,
    &rbac::ROLES,
    &rbac::CLUSTER_ROLES,
    &rbac::ROLE_BINDINGS,
    &rbac::CLUSTER_ROLE_BINDINGS,
    &reviews::ACCESS,
    &reviews::RULES,
    &reviews::SUBJECT,
];

/// The verbs of an ordinary read-write resource.
pub const READ_WRITE: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// A served resource: its names, its place in the API, what it prints and its admission
/// hooks.
pub struct Kind {
    /// API group (`""` for the core group served under `/api`).
    pub group: &'static str,
    /// API version (`v1`).
    pub version: &'static str,
    /// `apiVersion` of its objects: `version` for the core group, else `group/version`.
    pub api_version: &'static str,
    /// Plural resource name, as in paths and the store (`pods`).
    pub plural: &'static str,
    /// Singular resource name (`pod`).
    pub singular: &'static str,
    /// `kind` of one object (`Pod`).
    pub kind: &'static str,
    /// `kind` of a list (`PodList`).
    pub list_kind: &'static str,
    /// kubectl's short names (`po`).
    pub short_names: &'static [&'static str],
    /// Discovery categories (`all` is what `kubectl get all` lists).
    pub categories: &'static [&'static str],
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// The verbs discovery announces.
    pub verbs: &'static [&'static str],
    /// Subresources beyond the object itself (`pods/log`).
    pub subresources: &'static [Subresource],
    /// The Table columns `kubectl get` prints (priority 1: only with `-o wide`).
    pub columns: &'static [Column],
    /// One Table row: a cell per column.
    pub cells: fn(&Value, jiff::Timestamp) -> Vec<Value>,
    /// Validates and defaults a new object (name and namespace are already set).
    pub admit_create: fn(&mut Value) -> Result<(), ApiError>,
    /// Validates a replacement of the stored object, and carries over what clients may not
    /// change (status).
    pub admit_update: fn(&Value, &mut Value) -> Result<(), ApiError>,
    /// Allocates what must be unique across objects (a Service's ClusterIP), inside the
    /// write that stores a new or changed object (the stored one, if any, is given).
    pub allocate: Option<Allocate>,
    /// What a DELETE does (inside its blocking call): [`super::cascade::delete`] for most
    /// kinds; a Namespace is marked `Terminating` and emptied by its controller.
    pub delete: DeleteFn,
}

/// A Table column.
pub struct Column {
    /// The header (kubectl upper-cases it).
    pub name: &'static str,
    /// `string`, `integer` or `date`.
    pub kind: &'static str,
    /// 0: always printed; 1: only with `-o wide`.
    pub priority: u8,
}

impl Column {
    /// A column printed by default.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            kind: "string",
            priority: 0,
        }
    }

    /// A column printed only with `-o wide`.
    pub const fn wide(name: &'static str) -> Self {
        Self {
            name,
            kind: "string",
            priority: 1,
        }
    }
}

/// A subresource: `{item path}/{name}`.
pub struct Subresource {
    /// The path segment after the object (`log`).
    pub name: &'static str,
    /// The kind it takes or returns, with its group and version when they differ from the
    /// parent's (`policy/v1 Eviction`).
    pub kind: &'static str,
    /// Group of `kind`, `None` for the parent's.
    pub group_version: Option<(&'static str, &'static str)>,
    /// The verbs discovery announces.
    pub verbs: &'static [&'static str],
    /// Its handlers (the router adds the [`Kind`] as an extension).
    pub route: fn() -> MethodRouter<ApiContext>,
}

impl Kind {
    /// The path of the group-version: `/api/v1` or `/apis/apps/v1`.
    pub fn group_version_path(&self) -> String {
        group_version_path(self.group, self.version)
    }

    /// The collection path across namespaces (or of a cluster-scoped kind).
    pub fn all_path(&self) -> String {
        format!("{}/{}", self.group_version_path(), self.plural)
    }

    /// The collection path of one namespace (`{ns}` as the axum capture) or of a
    /// cluster-scoped kind.
    pub fn collection_path(&self) -> String {
        match self.namespaced {
            true => format!(
                "{}/namespaces/{{ns}}/{}",
                self.group_version_path(),
                self.plural
            ),
            false => self.all_path(),
        }
    }

    /// The item path (`{name}` as the axum capture).
    pub fn item_path(&self) -> String {
        format!("{}/{{name}}", self.collection_path())
    }

    /// The item path with OpenAPI's parameter names (`{namespace}`, `{name}`).
    pub fn openapi_item_path(&self) -> String {
        self.item_path().replace("{ns}", "{namespace}")
    }
}

/// The path of a group-version: `/api/v1` for the core group, else `/apis/{group}/{version}`.
pub fn group_version_path(group: &str, version: &str) -> String {
    match group {
        "" => format!("/api/{version}"),
        group => format!("/apis/{group}/{version}"),
    }
}

/// A kind's allocation hook (see [`Kind::allocate`]).
pub type Allocate = fn(&Allocation<'_>, Option<&Value>, &mut Value) -> Result<(), ApiError>;

/// What an allocation reads: the store (inside the write, so no other write can take the
/// same value meanwhile) and the ranges to allocate from.
pub struct Allocation<'a> {
    /// The store being written.
    pub store: &'a Store,
    /// Where ClusterIPs come from.
    pub service_cidr: ipnet::Ipv4Net,
}

/// A kind's delete: store, key and the request's `DeleteOptions`.
pub type DeleteFn =
    fn(&Store, &ObjectKey, &super::objects::DeleteOptions) -> Result<Value, ApiError>;

/// Sets `apiVersion` and `kind` (clients may leave them out; responses must have them).
pub fn stamp_type(obj: &mut Value, kind: &Kind) {
    if let Some(map) = obj.as_object_mut() {
        map.insert("apiVersion".into(), kind.api_version.into());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_consistent() {
        let mut seen = std::collections::HashSet::new();
        for kind in ALL {
            let expected = match kind.group {
                "" => kind.version.to_owned(),
                group => format!("{group}/{}", kind.version),
            };
            assert_eq!(kind.api_version, expected, "{}", kind.kind);
            assert_eq!(kind.list_kind, format!("{}List", kind.kind));
            assert_eq!(kind.singular, kind.kind.to_lowercase());
            assert!(seen.insert(kind.plural), "{} twice", kind.plural);
            assert!(
                kind.columns.iter().any(|c| c.name == "Name"),
                "{}",
                kind.kind
            );
        }
    }

    #[test]
    fn paths_follow_the_group_and_scope() {
        assert_eq!(
            pods::KIND.item_path(),
            "/api/v1/namespaces/{ns}/pods/{name}"
        );
        assert_eq!(pods::KIND.all_path(), "/api/v1/pods");
        assert_eq!(nodes::KIND.item_path(), "/api/v1/nodes/{name}");
        assert_eq!(
            pods::KIND.openapi_item_path(),
            "/api/v1/namespaces/{namespace}/pods/{name}"
        );
    }
}
