//! The node authorizer (Kubernetes' Node authorizer and NodeRestriction, for what nodes
//! reach over HTTPS): a node's identity (`system:node:NAME` in `system:nodes`, from its
//! node certificate, `api::users`) reads only its own pods and what they refer to, and
//! writes only its own Node and its pods' status.
//!
//! - pods: `get` and `pods/status` of a pod bound to the node; another node's pod, or one
//!   that does not exist, is a 403 (never a 404, which would tell that it exists
//!   elsewhere); lists and other writes are refused.
//! - Secrets, ConfigMaps and ServiceAccounts (`get`, and `serviceaccounts/token`
//!   `create`): only those a pod bound to the node refers to ([`crate::k8s::references`],
//!   the one home of that rule).
//! - nodes: any node may be read, none written: a node reports its Node over MQTT, and
//!   writing it here would let an unapproved node remove its own
//!   `node.wasmfleet.io/unapproved` taint (`identity`). (Kubernetes lets a kubelet write its
//!   own Node.)
//! - leases (`coordination.k8s.io`, namespace `kube-node-lease`): only its own.
//! - events: created and updated.
//! - `metrics.k8s.io` (what nodes and pods use): nothing. A node reports its own usage over
//!   MQTT and has no reason to read anyone's; RBAC could otherwise grant it other nodes'.
//!
//! Anything else has no opinion here and goes to RBAC (which grants `system:nodes`
//! nothing beyond discovery by default). Over MQTT the broker's ACL confines nodes
//! to their own topics already (`broker::auth`).

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use super::auth::{Attributes, User};
use super::users::NODES;
use crate::k8s::references;

/// What the node authorizer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed.
    Allow,
    /// Refused (403), whatever RBAC says.
    Deny,
    /// Not a node request: RBAC decides.
    NoOpinion,
}

/// The pods the authorizer looks at (the informer's cache; a vector in unit tests).
pub trait NodeGraph {
    /// The pods bound to `node`.
    fn pods_on_node(&self, node: &str) -> Vec<Arc<Value>>;
    /// The pod `name` of `namespace`.
    fn pod(&self, namespace: &str, name: &str) -> Option<Arc<Value>>;
}

/// The node a user is, if it is one.
pub fn node_of(user: &User) -> Option<&str> {
    let name = user.name.strip_prefix("system:node:")?;
    (user.groups.iter().any(|g| g == NODES) && !name.is_empty()).then_some(name)
}

/// Whether `node` may do what `attributes` describe.
pub fn authorize(graph: &dyn NodeGraph, node: &str, attributes: &Attributes) -> Verdict {
    if !attributes.resource_request {
        return Verdict::NoOpinion;
    }
    let a = attributes;
    let verdict = match (a.group.as_str(), a.resource.as_str()) {
        ("", "pods") => pods(graph, node, a),
        ("", "secrets" | "configmaps" | "serviceaccounts") => referenced(graph, node, a),
        ("", "nodes") => matches!(a.verb.as_str(), "get" | "list" | "watch"),
        ("coordination.k8s.io", "leases") => {
            a.namespace == "kube-node-lease"
                && matches!(a.verb.as_str(), "get" | "create" | "update" | "patch")
                && (a.name == node || (a.verb == "create" && a.name.is_empty()))
        }
        ("" | "events.k8s.io", "events") => {
            matches!(a.verb.as_str(), "create" | "update" | "patch")
        }
        ("metrics.k8s.io", _) => false,
        _ => return Verdict::NoOpinion,
    };
    if verdict {
        Verdict::Allow
    } else {
        Verdict::Deny
    }
}

fn pods(graph: &dyn NodeGraph, node: &str, a: &Attributes) -> bool {
    let allowed = match a.subresource.as_str() {
        "" => a.verb == "get",
        "status" => matches!(a.verb.as_str(), "get" | "update" | "patch"),
        _ => false,
    };
    allowed
        && graph
            .pod(&a.namespace, &a.name)
            .is_some_and(|pod| crate::k8s::pods::bound_node(&pod) == Some(node))
}

/// A Secret, ConfigMap or ServiceAccount (or its token) one of the node's pods refers to.
fn referenced(graph: &dyn NodeGraph, node: &str, a: &Attributes) -> bool {
    let allowed = match (a.resource.as_str(), a.subresource.as_str()) {
        ("serviceaccounts", "token") => a.verb == "create",
        (_, "") => a.verb == "get",
        _ => false,
    };
    allowed
        && graph
            .pods_on_node(node)
            .iter()
            .any(|pod| pod["metadata"]["namespace"] == a.namespace.as_str() && refers_to(pod, a))
}

fn refers_to(pod: &Value, a: &Attributes) -> bool {
    let Ok(pod) = serde_json::from_value::<Pod>(pod.clone()) else {
        return false;
    };
    let refs = references::of(&pod);
    match a.resource.as_str() {
        "secrets" => refs.uses_secret(&a.name),
        "configmaps" => refs.uses_config_map(&a.name),
        _ => refs.service_account == a.name,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    struct Pods(Vec<Arc<Value>>);

    impl NodeGraph for Pods {
        fn pods_on_node(&self, node: &str) -> Vec<Arc<Value>> {
            let on = |p: &&Arc<Value>| p["spec"]["nodeName"] == node;
            self.0.iter().filter(on).cloned().collect()
        }
        fn pod(&self, namespace: &str, name: &str) -> Option<Arc<Value>> {
            let named = |p: &&Arc<Value>| {
                p["metadata"]["name"] == name && p["metadata"]["namespace"] == namespace
            };
            self.0.iter().find(named).cloned()
        }
    }

    fn graph() -> Pods {
        let pod = json!({"metadata": {"name": "web", "namespace": "a"}, "spec": {
            "nodeName": "pi-1", "serviceAccountName": "robot",
            "containers": [{"name": "c", "image": "i", "env": [{"name": "K",
                "valueFrom": {"secretKeyRef": {"name": "db", "key": "k"}}}]}]}});
        Pods(vec![Arc::new(pod)])
    }

    fn ask(verb: &str, resource: &str, name: &str) -> Attributes {
        Attributes::resource(verb, "", resource, "a", name)
    }

    #[test]
    fn a_node_reads_its_own_pods_only() {
        let g = graph();
        assert_eq!(
            authorize(&g, "pi-1", &ask("get", "pods", "web")),
            Verdict::Allow
        );
        assert_eq!(
            authorize(&g, "pi-2", &ask("get", "pods", "web")),
            Verdict::Deny
        );
        assert_eq!(
            authorize(&g, "pi-1", &ask("get", "pods", "missing")),
            Verdict::Deny
        );
        assert_eq!(
            authorize(&g, "pi-1", &ask("list", "pods", "")),
            Verdict::Deny
        );
        assert_eq!(
            authorize(&g, "pi-1", &ask("delete", "pods", "web")),
            Verdict::Deny
        );
        let mut status = ask("patch", "pods", "web");
        status.subresource = "status".into();
        assert_eq!(authorize(&g, "pi-1", &status), Verdict::Allow);
        assert_eq!(authorize(&g, "pi-2", &status), Verdict::Deny);
    }

    #[test]
    fn a_node_reads_only_what_its_pods_refer_to() {
        let g = graph();
        assert_eq!(
            authorize(&g, "pi-1", &ask("get", "secrets", "db")),
            Verdict::Allow
        );
        assert_eq!(
            authorize(&g, "pi-1", &ask("get", "secrets", "other")),
            Verdict::Deny
        );
        assert_eq!(
            authorize(&g, "pi-2", &ask("get", "secrets", "db")),
            Verdict::Deny
        );
        assert_eq!(
            authorize(&g, "pi-1", &ask("list", "secrets", "")),
            Verdict::Deny
        );
        assert_eq!(
            authorize(&g, "pi-1", &ask("get", "serviceaccounts", "robot")),
            Verdict::Allow
        );
        let mut token = ask("create", "serviceaccounts", "robot");
        token.subresource = "token".into();
        assert_eq!(authorize(&g, "pi-1", &token), Verdict::Allow);
        assert_eq!(authorize(&g, "pi-2", &token), Verdict::Deny);
        let elsewhere = Attributes::resource("get", "", "secrets", "b", "db");
        assert_eq!(authorize(&g, "pi-1", &elsewhere), Verdict::Deny);
    }

    #[test]
    fn a_node_reads_nodes_and_writes_none_not_even_its_own() {
        let g = graph();
        let node = |verb: &str, name: &str| Attributes::resource(verb, "", "nodes", "", name);
        assert_eq!(authorize(&g, "pi-1", &node("get", "pi-2")), Verdict::Allow);
        assert_eq!(authorize(&g, "pi-1", &node("patch", "pi-1")), Verdict::Deny);
        assert_eq!(authorize(&g, "pi-1", &node("patch", "pi-2")), Verdict::Deny);
        assert_eq!(
            authorize(&g, "pi-1", &node("delete", "pi-1")),
            Verdict::Deny
        );
        let lease = |name: &str| {
            Attributes::resource(
                "update",
                "coordination.k8s.io",
                "leases",
                "kube-node-lease",
                name,
            )
        };
        assert_eq!(authorize(&g, "pi-1", &lease("pi-1")), Verdict::Allow);
        assert_eq!(authorize(&g, "pi-1", &lease("pi-2")), Verdict::Deny);
        let deployments = Attributes::resource("list", "apps", "deployments", "a", "");
        assert_eq!(authorize(&g, "pi-1", &deployments), Verdict::NoOpinion);
    }

    #[test]
    fn a_node_reads_no_metrics_not_even_its_own() {
        let g = graph();
        for (resource, namespace, name) in [("nodes", "", "pi-1"), ("pods", "a", "web")] {
            for verb in ["get", "list"] {
                let metrics =
                    Attributes::resource(verb, "metrics.k8s.io", resource, namespace, name);
                assert_eq!(
                    authorize(&g, "pi-1", &metrics),
                    Verdict::Deny,
                    "{verb} {resource}"
                );
            }
        }
    }

    #[test]
    fn only_node_identities_are_nodes() {
        assert_eq!(
            node_of(&User::new("system:node:pi-1", [NODES])),
            Some("pi-1")
        );
        assert_eq!(node_of(&User::new("system:node:pi-1", [])), None);
        assert_eq!(node_of(&User::new("pi-1", [NODES])), None);
    }
}
