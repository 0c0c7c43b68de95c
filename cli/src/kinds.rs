//! Resource kinds the CLI knows: their command-line aliases and their REST paths.
//!
//! One table ([`Kind`]) maps what a user types (`po`, `nodes`, `ns`, `module`) and what a
//! manifest says (`kind: Pod`) onto the API paths of the Kubernetes REST shape and the
//! wasmfleet module API.

use std::fmt;

/// Path of the module collection on the server.
pub const MODULES_PATH: &str = "/apis/wasmfleet.dev/v1/modules";

/// A resource kind the CLI can list, show, apply or delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `v1/Pod`, namespaced.
    Pod,
    /// `v1/Node`, cluster-scoped.
    Node,
    /// `v1/Namespace`, cluster-scoped.
    Namespace,
    /// `wasmfleet.dev/v1` module tags, cluster-scoped; listed only.
    Module,
}

/// Which namespaces a request covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One namespace.
    Namespace(String),
    /// Every namespace (`-A`).
    All,
}

/// A kind name the CLI does not know.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the server doesn't have a resource type {0:?}")]
pub struct UnknownKind(pub String);

impl Kind {
    /// Parses a command-line resource name (`pods`, `pod`, `po`, ...), case-insensitively.
    pub fn from_alias(alias: &str) -> Result<Self, UnknownKind> {
        match alias.to_ascii_lowercase().as_str() {
            "pods" | "pod" | "po" => Ok(Self::Pod),
            "nodes" | "node" | "no" => Ok(Self::Node),
            "namespaces" | "namespace" | "ns" => Ok(Self::Namespace),
            "modules" | "module" | "mod" => Ok(Self::Module),
            _ => Err(UnknownKind(alias.to_owned())),
        }
    }

    /// Maps a manifest's `apiVersion` + `kind` onto a kind the CLI can apply.
    pub fn from_manifest(api_version: &str, kind: &str) -> Result<Self, UnknownKind> {
        match (api_version, kind) {
            ("v1", "Pod") => Ok(Self::Pod),
            ("v1", "Node") => Ok(Self::Node),
            ("v1", "Namespace") => Ok(Self::Namespace),
            _ => Err(UnknownKind(format!("{kind} ({api_version})"))),
        }
    }

    /// Lower-case singular name, as in `pod/hello created`.
    pub fn singular(self) -> &'static str {
        match self {
            Self::Pod => "pod",
            Self::Node => "node",
            Self::Namespace => "namespace",
            Self::Module => "module",
        }
    }

    /// Lower-case plural name, as in `pods "hello" deleted`.
    pub fn plural(self) -> &'static str {
        match self {
            Self::Pod => "pods",
            Self::Node => "nodes",
            Self::Namespace => "namespaces",
            Self::Module => "modules",
        }
    }

    /// Whether objects of this kind live in a namespace.
    pub fn namespaced(self) -> bool {
        matches!(self, Self::Pod)
    }

    /// The collection path for a list (GET) or a create (POST).
    pub fn collection_path(self, scope: &Scope) -> String {
        match (self, scope) {
            (Self::Module, _) => MODULES_PATH.to_owned(),
            (Self::Pod, Scope::Namespace(ns)) => format!("/api/v1/namespaces/{ns}/pods"),
            (_, _) => format!("/api/v1/{}", self.plural()),
        }
    }

    /// The path of one object; `namespace` is ignored for cluster-scoped kinds.
    pub fn item_path(self, namespace: &str, name: &str) -> String {
        let scope = Scope::Namespace(namespace.to_owned());
        format!("{}/{name}", self.collection_path(&scope))
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.plural())
    }
}

/// Path of a pod's `log` subresource.
pub fn pod_log_path(namespace: &str, name: &str) -> String {
    format!("{}/log", Kind::Pod.item_path(namespace, name))
}

/// Path of one module tag (`PUT` uploads the bytes).
pub fn module_tag_path(name: &str, tag: &str) -> String {
    format!("{MODULES_PATH}/{name}/tags/{tag}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_alias_maps_to_its_kind() {
        for alias in ["pods", "pod", "po", "Pods"] {
            assert_eq!(Kind::from_alias(alias), Ok(Kind::Pod), "{alias}");
        }
        for alias in ["nodes", "node", "no"] {
            assert_eq!(Kind::from_alias(alias), Ok(Kind::Node), "{alias}");
        }
        for alias in ["namespaces", "namespace", "ns"] {
            assert_eq!(Kind::from_alias(alias), Ok(Kind::Namespace), "{alias}");
        }
        for alias in ["modules", "module"] {
            assert_eq!(Kind::from_alias(alias), Ok(Kind::Module), "{alias}");
        }
    }

    #[test]
    fn an_unknown_alias_is_reported_like_kubectl() {
        let err = Kind::from_alias("deployments").expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "the server doesn't have a resource type \"deployments\""
        );
    }

    #[test]
    fn manifests_map_only_supported_core_kinds() {
        assert_eq!(Kind::from_manifest("v1", "Pod"), Ok(Kind::Pod));
        assert_eq!(Kind::from_manifest("v1", "Namespace"), Ok(Kind::Namespace));
        assert!(Kind::from_manifest("apps/v1", "Deployment").is_err());
        assert!(Kind::from_manifest("v2", "Pod").is_err());
    }

    #[test]
    fn paths_follow_the_kubernetes_rest_shape() {
        let ns = Scope::Namespace("edge".to_owned());
        assert_eq!(
            Kind::Pod.collection_path(&ns),
            "/api/v1/namespaces/edge/pods"
        );
        assert_eq!(Kind::Pod.collection_path(&Scope::All), "/api/v1/pods");
        assert_eq!(Kind::Node.collection_path(&ns), "/api/v1/nodes");
        assert_eq!(
            Kind::Namespace.item_path("edge", "x"),
            "/api/v1/namespaces/x"
        );
        assert_eq!(
            Kind::Pod.item_path("edge", "p"),
            "/api/v1/namespaces/edge/pods/p"
        );
        assert_eq!(
            pod_log_path("default", "p"),
            "/api/v1/namespaces/default/pods/p/log"
        );
        assert_eq!(
            module_tag_path("hello", "v1"),
            "/apis/wasmfleet.dev/v1/modules/hello/tags/v1"
        );
        assert_eq!(Kind::Module.collection_path(&ns), MODULES_PATH);
    }
}
