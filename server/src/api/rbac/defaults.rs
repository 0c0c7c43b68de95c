//! The default ClusterRoles and ClusterRoleBindings (Kubernetes' bootstrap policy, for the
//! resources wasmfleet serves or will), created at start when missing and never changed
//! after: an administrator may edit them, as in Kubernetes with `autoupdate: "false"`.
//!
//! - `cluster-admin`: everything; bound to the group `system:masters`.
//! - `admin`: `edit` plus Roles and RoleBindings (meant for a RoleBinding: a namespace's
//!   owner).
//! - `edit`: read and write the workload kinds, Services, ConfigMaps, Secrets,
//!   ServiceAccounts (and their tokens), evictions; not Roles or bindings.
//! - `view`: read the same kinds, but not Secrets (nor pods' logs beyond `pods/log` get).
//! - `system:discovery`, `system:basic-user`, `system:public-info-viewer`: discovery, the
//!   OpenAPI documents and the self reviews for every authenticated user (so `kubectl`
//!   works for a user before anything is granted).

use serde_json::{Value, json};

use super::GROUP;
use crate::store::{ObjectKey, Store, StoreError};

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];

/// What `view`, `edit` and `admin` read: (group, resources).
const READABLE: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "pods",
            "pods/log",
            "pods/status",
            "services",
            "services/status",
            "endpoints",
            "events",
            "configmaps",
            "serviceaccounts",
            "persistentvolumeclaims",
            "replicationcontrollers",
        ],
    ),
    ("", &["namespaces", "namespaces/status"]),
    ("discovery.k8s.io", &["endpointslices"]),
    (
        "apps",
        &[
            "deployments",
            "deployments/scale",
            "deployments/status",
            "replicasets",
            "replicasets/scale",
            "replicasets/status",
            "daemonsets",
            "daemonsets/status",
            "statefulsets",
        ],
    ),
    (
        "batch",
        &["jobs", "jobs/status", "cronjobs", "cronjobs/status"],
    ),
    (
        "policy",
        &["poddisruptionbudgets", "poddisruptionbudgets/status"],
    ),
    (
        "networking.k8s.io",
        &["ingresses", "ingresses/status", "networkpolicies"],
    ),
    ("gateway.networking.k8s.io", &["gateways", "httproutes"]),
    ("events.k8s.io", &["events"]),
    ("wasmfleet.dev", &["modules"]),
    // Kubernetes' system:aggregated-metrics-reader, aggregated into view, edit and admin.
    ("metrics.k8s.io", &["pods", "nodes"]),
];

/// What `edit` and `admin` write: (group, resources).
const WRITABLE: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "pods",
            "services",
            "endpoints",
            "configmaps",
            "secrets",
            "serviceaccounts",
            "persistentvolumeclaims",
            "replicationcontrollers",
        ],
    ),
    (
        "apps",
        &[
            "deployments",
            "deployments/scale",
            "replicasets",
            "replicasets/scale",
            "daemonsets",
            "statefulsets",
        ],
    ),
    ("batch", &["jobs", "cronjobs"]),
    ("policy", &["poddisruptionbudgets"]),
    ("networking.k8s.io", &["ingresses", "networkpolicies"]),
    ("gateway.networking.k8s.io", &["gateways", "httproutes"]),
    ("wasmfleet.dev", &["modules/tags"]),
];

fn rule(verbs: &[&str], group: &str, resources: &[&str]) -> Value {
    json!({"apiGroups": [group], "resources": resources, "verbs": verbs})
}

fn view_rules() -> Vec<Value> {
    READABLE
        .iter()
        .map(|(group, resources)| rule(READ, group, resources))
        .collect()
}

fn edit_rules() -> Vec<Value> {
    let mut rules = view_rules();
    rules.extend(
        WRITABLE
            .iter()
            .map(|(group, resources)| rule(WRITE, group, resources)),
    );
    rules.push(rule(READ, "", &["secrets"]));
    rules.push(rule(
        &["create"],
        "",
        &["pods/eviction", "serviceaccounts/token"],
    ));
    rules
}

fn admin_rules() -> Vec<Value> {
    let mut rules = edit_rules();
    let mut all = READ.to_vec();
    all.extend_from_slice(WRITE);
    rules.push(rule(&all, GROUP, &["roles", "rolebindings"]));
    rules.push(rule(
        &["create"],
        "authorization.k8s.io",
        &["localsubjectaccessreviews"],
    ));
    rules
}

/// The default ClusterRoles.
pub fn cluster_roles() -> Vec<Value> {
    let discovery = json!({"verbs": ["get"], "nonResourceURLs": [
        "/api", "/api/*", "/apis", "/apis/*", "/openapi", "/openapi/*", "/version", "/version/",
        "/healthz", "/livez", "/readyz",
    ]});
    let reviews = [
        rule(
            &["create"],
            "authorization.k8s.io",
            &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
        ),
        rule(
            &["create"],
            "authentication.k8s.io",
            &["selfsubjectreviews"],
        ),
    ];
    let public = json!({"verbs": ["get"], "nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"]});
    vec![
        cluster_role(
            "cluster-admin",
            vec![
                json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}),
                json!({"nonResourceURLs": ["*"], "verbs": ["*"]}),
            ],
        ),
        cluster_role("admin", admin_rules()),
        cluster_role("edit", edit_rules()),
        cluster_role("view", view_rules()),
        cluster_role("system:discovery", vec![discovery]),
        cluster_role("system:basic-user", reviews.to_vec()),
        cluster_role("system:public-info-viewer", vec![public]),
    ]
}

/// The default ClusterRoleBindings.
pub fn cluster_role_bindings() -> Vec<Value> {
    let group = |name: &str| json!({"apiGroup": GROUP, "kind": "Group", "name": name});
    let authenticated = group(crate::api::auth::AUTHENTICATED);
    vec![
        binding("cluster-admin", vec![group(crate::api::auth::MASTERS)]),
        binding("system:discovery", vec![authenticated.clone()]),
        binding("system:basic-user", vec![authenticated.clone()]),
        binding("system:public-info-viewer", vec![authenticated]),
    ]
}

fn metadata(name: &str) -> Value {
    json!({
        "name": name,
        "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
    })
}

fn cluster_role(name: &str, rules: Vec<Value>) -> Value {
    json!({
        "apiVersion": format!("{GROUP}/v1"), "kind": "ClusterRole",
        "metadata": metadata(name), "rules": rules,
    })
}

fn binding(name: &str, subjects: Vec<Value>) -> Value {
    json!({
        "apiVersion": format!("{GROUP}/v1"), "kind": "ClusterRoleBinding",
        "metadata": metadata(name),
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": name},
        "subjects": subjects,
    })
}

/// Creates the default ClusterRoles and ClusterRoleBindings that do not exist.
pub fn ensure_built_in(store: &Store) -> Result<(), StoreError> {
    let roles = cluster_roles().into_iter().map(|r| ("clusterroles", r));
    let bindings = cluster_role_bindings()
        .into_iter()
        .map(|b| ("clusterrolebindings", b));
    for (resource, object) in roles.chain(bindings) {
        let key = ObjectKey::cluster(resource, crate::api::kinds::name_of(&object));
        if store.get(&key)?.is_some() {
            continue;
        }
        match store.create(&key, object) {
            Ok(_) | Err(StoreError::AlreadyExists(_)) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}
