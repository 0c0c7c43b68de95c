//! RBAC (`rbac.authorization.k8s.io/v1`) as Kubernetes evaluates it, pure: which rules a
//! user holds through the bindings that name it, and whether one of them allows a request.
//!
//! - [`rule_allows`]: one `PolicyRule` against request [`Attributes`] (verbs, apiGroups,
//!   resources with `pods/log` and `*/status` subresource forms, resourceNames,
//!   nonResourceURLs with a trailing `*`; `*` everywhere).
//! - [`applies_to`]: whether a binding's subject is the user (User, Group, ServiceAccount).
//! - [`authorize`] and [`rules_for`]: walk a [`Policy`] (the bindings and roles; the API
//!   reads them from the informer's cache, unit tests from a vector) as the RBAC
//!   authorizer does: ClusterRoleBindings everywhere, RoleBindings in the request's
//!   namespace, each naming a Role of its namespace or a ClusterRole.
//!
//! The default ClusterRoles and bindings created at start are in [`defaults`].

pub mod defaults;

use std::sync::Arc;

use serde_json::Value;

use crate::api::auth::{Attributes, User};

/// The RBAC API group.
pub const GROUP: &str = "rbac.authorization.k8s.io";

/// One rule of a Role or ClusterRole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyRule {
    /// `get`, `list`, ... or `*`.
    pub verbs: Vec<String>,
    /// API groups (`""` is the core group) or `*`.
    pub api_groups: Vec<String>,
    /// Resources (`pods`, `pods/log`, `*/scale`) or `*`.
    pub resources: Vec<String>,
    /// Object names the rule is limited to (none: every object).
    pub resource_names: Vec<String>,
    /// Non-resource paths (`/healthz`, `/api/*`) or `*`.
    pub non_resource_urls: Vec<String>,
}

impl PolicyRule {
    /// The rules of a Role or ClusterRole object (`rules`, unknown fields ignored).
    pub fn of_role(role: &Value) -> Vec<PolicyRule> {
        let strings = |rule: &Value, field: &str| -> Vec<String> {
            rule[field]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        };
        role["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|rule| PolicyRule {
                verbs: strings(rule, "verbs"),
                api_groups: strings(rule, "apiGroups"),
                resources: strings(rule, "resources"),
                resource_names: strings(rule, "resourceNames"),
                non_resource_urls: strings(rule, "nonResourceURLs"),
            })
            .collect()
    }
}

/// Whether `rule` allows the request `attributes` describe.
pub fn rule_allows(rule: &PolicyRule, attributes: &Attributes) -> bool {
    if !matches_any(&rule.verbs, &attributes.verb) {
        return false;
    }
    if !attributes.resource_request {
        return rule
            .non_resource_urls
            .iter()
            .any(|url| url_matches(url, &attributes.path));
    }
    matches_any(&rule.api_groups, &attributes.group)
        && resource_matches(rule, &attributes.resource, &attributes.subresource)
        && (rule.resource_names.is_empty() || rule.resource_names.contains(&attributes.name))
}

fn matches_any(allowed: &[String], wanted: &str) -> bool {
    allowed.iter().any(|a| a == "*" || a == wanted)
}

/// `pods` does not match `pods/log`; `pods/log`, `*/log` and `*` do.
fn resource_matches(rule: &PolicyRule, resource: &str, subresource: &str) -> bool {
    let combined = match subresource {
        "" => resource.to_owned(),
        sub => format!("{resource}/{sub}"),
    };
    rule.resources.iter().any(|r| {
        r == "*"
            || *r == combined
            || (!subresource.is_empty() && r.strip_prefix("*/") == Some(subresource))
    })
}

fn url_matches(rule_url: &str, path: &str) -> bool {
    match rule_url.strip_suffix('*') {
        _ if rule_url == "*" => true,
        Some(prefix) => path.starts_with(prefix),
        None => rule_url == path,
    }
}

/// Whether a binding's `subject` (in a binding of `namespace`, empty for a
/// ClusterRoleBinding) is `user`.
pub fn applies_to(subject: &Value, namespace: &str, user: &User) -> bool {
    let name = subject["name"].as_str().unwrap_or_default();
    match subject["kind"].as_str() {
        Some("User") => name == user.name,
        Some("Group") => user.groups.iter().any(|g| g == name),
        Some("ServiceAccount") => {
            let account_ns = subject["namespace"]
                .as_str()
                .filter(|ns| !ns.is_empty())
                .unwrap_or(namespace);
            !name.is_empty() && user.name == service_account_user(account_ns, name)
        }
        _ => false,
    }
}

/// The user name of a ServiceAccount: `system:serviceaccount:NS:NAME`.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// The bindings and roles the authorizer reads.
pub trait Policy {
    /// Every ClusterRoleBinding.
    fn cluster_role_bindings(&self) -> Vec<Arc<Value>>;
    /// The RoleBindings of `namespace`.
    fn role_bindings(&self, namespace: &str) -> Vec<Arc<Value>>;
    /// The ClusterRole `name`.
    fn cluster_role(&self, name: &str) -> Option<Arc<Value>>;
    /// The Role `name` of `namespace`.
    fn role(&self, namespace: &str, name: &str) -> Option<Arc<Value>>;
}

/// A decision and its reason (the reason names the binding and role that allowed it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is allowed.
    pub allowed: bool,
    /// Why (empty when denied: RBAC gives no reason for a denial).
    pub reason: String,
}

/// Whether `user` may do what `attributes` describe, under `policy`.
pub fn authorize(policy: &dyn Policy, user: &User, attributes: &Attributes) -> Decision {
    let mut reason = None;
    visit_rules(policy, user, &attributes.namespace, &mut |binding, rule| {
        if rule_allows(rule, attributes) {
            reason = Some(binding.to_owned());
            return false;
        }
        true
    });
    match reason {
        Some(reason) => Decision {
            allowed: true,
            reason,
        },
        None => Decision {
            allowed: false,
            reason: String::new(),
        },
    }
}

/// Every rule `user` holds in `namespace` (cluster-wide ones included).
pub fn rules_for(policy: &dyn Policy, user: &User, namespace: &str) -> Vec<PolicyRule> {
    let mut rules = Vec::new();
    visit_rules(policy, user, namespace, &mut |_, rule| {
        rules.push(rule.clone());
        true
    });
    rules
}

/// Calls `visit(how, rule)` for each rule `user` holds in `namespace`, until it returns
/// false. `how` says which binding and role gave the rule, in Kubernetes' words.
fn visit_rules(
    policy: &dyn Policy,
    user: &User,
    namespace: &str,
    visit: &mut dyn FnMut(&str, &PolicyRule) -> bool,
) {
    for binding in policy.cluster_role_bindings() {
        let Some(subject) = subject_naming(&binding, "", user) else {
            continue;
        };
        if binding["roleRef"]["kind"] != "ClusterRole" {
            continue;
        }
        let role_name = binding["roleRef"]["name"].as_str().unwrap_or_default();
        let Some(role) = policy.cluster_role(role_name) else {
            continue;
        };
        let how = format!(
            "RBAC: allowed by ClusterRoleBinding \"{}\" of ClusterRole \"{role_name}\" to {subject}",
            crate::api::kinds::name_of(&binding),
        );
        if !PolicyRule::of_role(&role).iter().all(|r| visit(&how, r)) {
            return;
        }
    }
    if namespace.is_empty() {
        return;
    }
    for binding in policy.role_bindings(namespace) {
        let Some(subject) = subject_naming(&binding, namespace, user) else {
            continue;
        };
        let role_name = binding["roleRef"]["name"].as_str().unwrap_or_default();
        let (role, kind) = match binding["roleRef"]["kind"].as_str() {
            Some("ClusterRole") => (policy.cluster_role(role_name), "ClusterRole"),
            Some("Role") => (policy.role(namespace, role_name), "Role"),
            _ => continue,
        };
        let Some(role) = role else { continue };
        let how = format!(
            "RBAC: allowed by RoleBinding \"{}/{namespace}\" of {kind} \"{role_name}\" to {subject}",
            crate::api::kinds::name_of(&binding),
        );
        if !PolicyRule::of_role(&role).iter().all(|r| visit(&how, r)) {
            return;
        }
    }
}

/// The first subject of `binding` that is `user`, as Kubernetes names it in a reason
/// (`Group "system:masters"`).
fn subject_naming(binding: &Value, namespace: &str, user: &User) -> Option<String> {
    let subject = binding["subjects"]
        .as_array()?
        .iter()
        .find(|subject| applies_to(subject, namespace, user))?;
    Some(format!(
        "{} \"{}\"",
        subject["kind"].as_str().unwrap_or_default(),
        subject["name"].as_str().unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests;
