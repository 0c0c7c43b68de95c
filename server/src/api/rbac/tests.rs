use std::sync::Arc;

use serde_json::{Value, json};

use super::*;

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
    let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
    PolicyRule {
        verbs: strings(verbs),
        api_groups: strings(groups),
        resources: strings(resources),
        ..PolicyRule::default()
    }
}

fn request(verb: &str, group: &str, resource: &str, sub: &str, name: &str) -> Attributes {
    let mut a = Attributes::resource(verb, group, resource, "default", name);
    a.subresource = sub.into();
    a
}

#[test]
fn verbs_groups_and_resources_must_all_match() {
    let read_pods = rule(&["get", "list"], &[""], &["pods"]);
    assert!(rule_allows(
        &read_pods,
        &request("get", "", "pods", "", "web")
    ));
    assert!(!rule_allows(
        &read_pods,
        &request("delete", "", "pods", "", "web")
    ));
    assert!(!rule_allows(
        &read_pods,
        &request("get", "apps", "pods", "", "web")
    ));
    assert!(!rule_allows(
        &read_pods,
        &request("get", "", "services", "", "web")
    ));
    let everything = rule(&["*"], &["*"], &["*"]);
    assert!(rule_allows(
        &everything,
        &request("escalate", "x.io", "y", "z", "n")
    ));
}

#[test]
fn a_subresource_needs_its_own_rule() {
    let pods = rule(&["get"], &[""], &["pods"]);
    assert!(!rule_allows(
        &pods,
        &request("get", "", "pods", "log", "web")
    ));
    let logs = rule(&["get"], &[""], &["pods/log"]);
    assert!(rule_allows(
        &logs,
        &request("get", "", "pods", "log", "web")
    ));
    assert!(!rule_allows(&logs, &request("get", "", "pods", "", "web")));
    let any_status = rule(&["update"], &["*"], &["*/status"]);
    assert!(rule_allows(
        &any_status,
        &request("update", "apps", "deployments", "status", "d")
    ));
    assert!(!rule_allows(
        &any_status,
        &request("update", "apps", "deployments", "", "d")
    ));
}

#[test]
fn resource_names_limit_a_rule_to_those_objects() {
    let mut one = rule(&["get", "delete"], &[""], &["pods"]);
    one.resource_names = vec!["web".into()];
    assert!(rule_allows(&one, &request("get", "", "pods", "", "web")));
    assert!(!rule_allows(&one, &request("get", "", "pods", "", "db")));
    // A list has no name: a rule with names never allows it.
    assert!(!rule_allows(&one, &request("get", "", "pods", "", "")));
}

#[test]
fn non_resource_urls_match_exactly_or_by_prefix() {
    let urls = PolicyRule {
        verbs: vec!["get".into()],
        non_resource_urls: vec!["/healthz".into(), "/apis/*".into()],
        ..PolicyRule::default()
    };
    let path = |p: &str| Attributes {
        verb: "get".into(),
        path: p.into(),
        ..Attributes::default()
    };
    assert!(rule_allows(&urls, &path("/healthz")));
    assert!(!rule_allows(&urls, &path("/healthz/etcd")));
    assert!(rule_allows(&urls, &path("/apis/apps/v1")));
    assert!(!rule_allows(&urls, &path("/api/v1")));
    // A non-resource rule never allows a resource request, and the other way round.
    assert!(!rule_allows(&urls, &request("get", "", "healthz", "", "")));
    let all = rule(&["*"], &["*"], &["*"]);
    assert!(!rule_allows(&all, &path("/version")));
}

#[test]
fn subjects_are_users_groups_or_service_accounts() {
    let alice = User::new("alice", ["dev"]);
    assert!(applies_to(
        &json!({"kind": "User", "name": "alice"}),
        "",
        &alice
    ));
    assert!(!applies_to(
        &json!({"kind": "User", "name": "bob"}),
        "",
        &alice
    ));
    assert!(applies_to(
        &json!({"kind": "Group", "name": "dev"}),
        "",
        &alice
    ));
    assert!(applies_to(
        &json!({"kind": "Group", "name": "system:authenticated"}),
        "",
        &alice
    ));
    let account = User::new("system:serviceaccount:a:web", []);
    let subject = json!({"kind": "ServiceAccount", "name": "web"});
    assert!(applies_to(&subject, "a", &account));
    assert!(!applies_to(&subject, "b", &account));
    let elsewhere = json!({"kind": "ServiceAccount", "name": "web", "namespace": "a"});
    assert!(applies_to(&elsewhere, "b", &account));
}

/// A policy held in vectors (the authorizer reads the informer's cache).
#[derive(Default)]
struct Objects(Vec<Arc<Value>>);

impl Objects {
    fn with(mut self, obj: Value) -> Self {
        self.0.push(Arc::new(obj));
        self
    }

    fn of(&self, kind: &str, namespace: Option<&str>) -> Vec<Arc<Value>> {
        self.0
            .iter()
            .filter(|o| o["kind"] == kind)
            .filter(|o| namespace.is_none_or(|ns| o["metadata"]["namespace"] == ns))
            .cloned()
            .collect()
    }

    fn named(&self, kind: &str, namespace: Option<&str>, name: &str) -> Option<Arc<Value>> {
        self.of(kind, namespace)
            .into_iter()
            .find(|o| o["metadata"]["name"] == name)
    }
}

impl Policy for Objects {
    fn cluster_role_bindings(&self) -> Vec<Arc<Value>> {
        self.of("ClusterRoleBinding", None)
    }
    fn role_bindings(&self, namespace: &str) -> Vec<Arc<Value>> {
        self.of("RoleBinding", Some(namespace))
    }
    fn cluster_role(&self, name: &str) -> Option<Arc<Value>> {
        self.named("ClusterRole", None, name)
    }
    fn role(&self, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.named("Role", Some(namespace), name)
    }
}

fn defaults() -> Objects {
    let objects = defaults::cluster_roles()
        .into_iter()
        .chain(defaults::cluster_role_bindings());
    objects.fold(Objects::default(), Objects::with)
}

fn role_binding(ns: &str, name: &str, role: (&str, &str), subject: Value) -> Value {
    json!({"kind": "RoleBinding", "metadata": {"name": name, "namespace": ns},
           "roleRef": {"apiGroup": GROUP, "kind": role.0, "name": role.1},
           "subjects": [subject]})
}

#[test]
fn a_role_binding_grants_its_role_in_its_namespace_only() {
    let policy = defaults().with(role_binding(
        "default",
        "alice-view",
        ("ClusterRole", "view"),
        json!({"kind": "User", "name": "alice"}),
    ));
    let alice = User::new("alice", []);
    let list = Attributes::resource("list", "", "pods", "default", "");
    let decision = authorize(&policy, &alice, &list);
    assert!(decision.allowed);
    assert_eq!(
        decision.reason,
        r#"RBAC: allowed by RoleBinding "alice-view/default" of ClusterRole "view" to User "alice""#
    );
    for denied in [
        Attributes::resource("delete", "", "pods", "default", "web"),
        Attributes::resource("list", "", "pods", "other", ""),
        Attributes::resource("list", "", "pods", "", ""),
        Attributes::resource("get", "", "secrets", "default", "s"),
    ] {
        assert!(!authorize(&policy, &alice, &denied).allowed, "{denied:?}");
    }
}

#[test]
fn a_namespaced_role_and_a_group_subject() {
    let role = json!({"kind": "Role", "metadata": {"name": "deleter", "namespace": "a"},
        "rules": [{"verbs": ["delete"], "apiGroups": [""], "resources": ["pods"]}]});
    let policy = defaults().with(role).with(role_binding(
        "a",
        "devs",
        ("Role", "deleter"),
        json!({"kind": "Group", "name": "dev"}),
    ));
    let delete = Attributes::resource("delete", "", "pods", "a", "web");
    assert!(authorize(&policy, &User::new("bob", ["dev"]), &delete).allowed);
    assert!(!authorize(&policy, &User::new("bob", ["ops"]), &delete).allowed);
    // A binding to a missing role grants nothing.
    let dangling = defaults().with(role_binding(
        "a",
        "x",
        ("Role", "missing"),
        json!({"kind": "Group", "name": "dev"}),
    ));
    assert!(!authorize(&dangling, &User::new("bob", ["dev"]), &delete).allowed);
}

#[test]
fn every_user_may_discover_and_review_itself_but_nothing_else() {
    let policy = defaults();
    let nobody = User::new("nobody", []);
    let discovery = Attributes {
        verb: "get".into(),
        path: "/apis/apps/v1".into(),
        ..Attributes::default()
    };
    assert!(authorize(&policy, &nobody, &discovery).allowed);
    let review = Attributes::resource(
        "create",
        "authorization.k8s.io",
        "selfsubjectaccessreviews",
        "",
        "",
    );
    assert!(authorize(&policy, &nobody, &review).allowed);
    assert!(
        !authorize(
            &policy,
            &nobody,
            &Attributes::resource("list", "", "pods", "a", "")
        )
        .allowed
    );
    assert!(
        !authorize(
            &policy,
            &nobody,
            &Attributes::resource("list", "", "nodes", "", "")
        )
        .allowed
    );
}

#[test]
fn the_default_roles_nest_view_in_edit_in_admin() {
    let (mut view, mut edit, mut admin) = (None, None, None);
    for role in defaults::cluster_roles() {
        let rules = PolicyRule::of_role(&role);
        match role["metadata"]["name"].as_str() {
            Some("view") => view = Some(rules),
            Some("edit") => edit = Some(rules),
            Some("admin") => admin = Some(rules),
            _ => {}
        }
    }
    let (view, edit, admin) = (
        view.unwrap_or_default(),
        edit.unwrap_or_default(),
        admin.unwrap_or_default(),
    );
    let allows = |rules: &[PolicyRule], a: &Attributes| rules.iter().any(|r| rule_allows(r, a));
    let get_log = request("get", "", "pods", "log", "web");
    let delete_pod = request("delete", "", "pods", "", "web");
    let read_secret = request("get", "", "secrets", "", "s");
    let bind = request("create", GROUP, "rolebindings", "", "");
    let scale = request("update", "apps", "deployments", "scale", "d");
    assert!(allows(&view, &get_log) && allows(&edit, &get_log) && allows(&admin, &get_log));
    assert!(!allows(&view, &delete_pod) && allows(&edit, &delete_pod));
    assert!(!allows(&view, &read_secret) && allows(&edit, &read_secret));
    assert!(!allows(&view, &scale) && allows(&edit, &scale));
    assert!(!allows(&edit, &bind) && allows(&admin, &bind));
}

#[test]
fn rules_for_lists_what_the_bindings_give() {
    let policy = defaults().with(role_binding(
        "default",
        "alice-view",
        ("ClusterRole", "view"),
        json!({"kind": "User", "name": "alice"}),
    ));
    let alice = User::new("alice", []);
    let here = rules_for(&policy, &alice, "default");
    let elsewhere = rules_for(&policy, &alice, "other");
    assert!(here.len() > elsewhere.len());
    assert!(
        here.iter()
            .any(|r| r.resources.contains(&"pods".to_owned()))
    );
    assert!(
        !elsewhere
            .iter()
            .any(|r| r.resources.contains(&"pods".to_owned()))
    );
}
