//! `rbac.authorization.k8s.io/v1` Role, ClusterRole, RoleBinding and ClusterRoleBinding:
//! stored objects the authorizer ([`crate::api::rbac`]) reads through the informer's cache.
//!
//! Admission is Kubernetes' validation: names are path segments (`system:basic-user` is a
//! name), every rule has verbs, a resource rule has apiGroups and resources, a
//! non-resource rule (ClusterRoles only) only nonResourceURLs; a binding's `roleRef` is a
//! `Role` (RoleBindings only) or `ClusterRole` of the RBAC group and cannot change, its
//! subjects are Users, Groups or ServiceAccounts (with a namespace in a
//! ClusterRoleBinding). Aggregated ClusterRoles (`aggregationRule`) are refused by name.

use serde_json::Value;

use super::{Column, Kind, READ_WRITE, name_of};
use crate::api::cascade;
use crate::api::rbac::GROUP;
use crate::api::status::{ApiError, Cause};
use crate::api::table::{age, text};
use crate::api::validation::{self, METADATA, Shape};

/// Roles (namespaced).
pub const ROLES: Kind = kind(
    ("roles", "role", "Role", "RoleList"),
    true,
    (ROLE_COLUMNS, role_cells),
    (
        |obj| admit(&ROLES, obj),
        |old, obj| admit_change(&ROLES, old, obj),
    ),
);
/// ClusterRoles (cluster-scoped).
pub const CLUSTER_ROLES: Kind = kind(
    (
        "clusterroles",
        "clusterrole",
        "ClusterRole",
        "ClusterRoleList",
    ),
    false,
    (ROLE_COLUMNS, role_cells),
    (
        |obj| admit(&CLUSTER_ROLES, obj),
        |old, obj| admit_change(&CLUSTER_ROLES, old, obj),
    ),
);
/// RoleBindings (namespaced).
pub const ROLE_BINDINGS: Kind = kind(
    (
        "rolebindings",
        "rolebinding",
        "RoleBinding",
        "RoleBindingList",
    ),
    true,
    (BINDING_COLUMNS, binding_cells),
    (
        |obj| admit(&ROLE_BINDINGS, obj),
        |old, obj| admit_change(&ROLE_BINDINGS, old, obj),
    ),
);
/// ClusterRoleBindings (cluster-scoped).
pub const CLUSTER_ROLE_BINDINGS: Kind = kind(
    (
        "clusterrolebindings",
        "clusterrolebinding",
        "ClusterRoleBinding",
        "ClusterRoleBindingList",
    ),
    false,
    (BINDING_COLUMNS, binding_cells),
    (
        |obj| admit(&CLUSTER_ROLE_BINDINGS, obj),
        |old, obj| admit_change(&CLUSTER_ROLE_BINDINGS, old, obj),
    ),
);

const ROLE_COLUMNS: &[Column] = &[Column::new("Name"), Column::new("Created At")];
const BINDING_COLUMNS: &[Column] = &[
    Column::new("Name"),
    Column::new("Role"),
    Column::new("Age"),
    Column::wide("Users"),
    Column::wide("Groups"),
    Column::wide("ServiceAccounts"),
];

type Cells = fn(&Value, jiff::Timestamp) -> Vec<Value>;
type Admission = (
    fn(&mut Value) -> Result<(), ApiError>,
    fn(&Value, &mut Value) -> Result<(), ApiError>,
);

/// An RBAC kind: (plural, singular, kind, list kind), scope, (columns, cells), admission.
const fn kind(
    (plural, singular, kind, list_kind): (&'static str, &'static str, &'static str, &'static str),
    namespaced: bool,
    (columns, cells): (&'static [Column], Cells),
    (admit_create, admit_update): Admission,
) -> Kind {
    Kind {
        group: GROUP,
        version: "v1",
        api_version: "rbac.authorization.k8s.io/v1",
        plural,
        singular,
        kind,
        list_kind,
        short_names: &[],
        categories: &[],
        namespaced,
        verbs: READ_WRITE,
        subresources: &[],
        columns,
        cells,
        admit_create,
        admit_update,
        allocate: None,
        delete: cascade::delete,
    }
}

const STRINGS: Shape = Shape::List(&Shape::Str);
const RULE: Shape = Shape::Object(&[
    ("verbs", STRINGS),
    ("apiGroups", STRINGS),
    ("resources", STRINGS),
    ("resourceNames", STRINGS),
    ("nonResourceURLs", STRINGS),
]);
const ROLE_REF: Shape = Shape::Object(&[
    ("apiGroup", Shape::Str),
    ("kind", Shape::Str),
    ("name", Shape::Str),
]);
const SUBJECT: Shape = Shape::Object(&[
    ("apiGroup", Shape::Str),
    ("kind", Shape::OneOf(&["User", "Group", "ServiceAccount"])),
    ("name", Shape::Str),
    ("namespace", Shape::Str),
]);
const ROLE: Shape = Shape::Object(&[
    ("apiVersion", Shape::Str),
    ("kind", Shape::Str),
    ("metadata", METADATA),
    ("rules", Shape::List(&RULE)),
]);
const BINDING: Shape = Shape::Object(&[
    ("apiVersion", Shape::Str),
    ("kind", Shape::Str),
    ("metadata", METADATA),
    ("roleRef", ROLE_REF),
    ("subjects", Shape::List(&SUBJECT)),
]);

fn admit(kind: &Kind, obj: &mut Value) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    let is_role = kind.plural.ends_with("roles");
    validation::check_shape(obj, if is_role { &ROLE } else { &BINDING }, "", &mut causes);
    validation::check_type_meta(obj, kind.api_version, kind.kind, &mut causes);
    check_name(obj, &mut causes);
    if is_role {
        check_rules(obj, kind.namespaced, &mut causes);
    } else {
        check_binding(obj, kind.namespaced, &mut causes);
    }
    match causes.is_empty() {
        true => Ok(()),
        false => Err(ApiError::invalid(kind.kind, name_of(obj), &causes)),
    }
}

/// A binding's `roleRef` cannot change (Kubernetes: delete and create the binding).
fn admit_change(kind: &Kind, old: &Value, obj: &mut Value) -> Result<(), ApiError> {
    admit(kind, obj)?;
    if obj.get("roleRef").is_some() && old["roleRef"] != obj["roleRef"] {
        let cause = Cause::new(
            "FieldValueInvalid",
            "roleRef",
            "Invalid value: cannot change roleRef",
        );
        return Err(ApiError::invalid(kind.kind, name_of(obj), &[cause]));
    }
    Ok(())
}

/// RBAC names are path segments: not empty, `.` or `..`, without `/` or `%`.
fn check_name(obj: &Value, causes: &mut Vec<Cause>) {
    let name = obj.pointer("/metadata/name").and_then(Value::as_str);
    let generate = obj
        .pointer("/metadata/generateName")
        .and_then(Value::as_str);
    match (name, generate) {
        (Some(name), _) if !name.is_empty() => {
            if matches!(name, "." | "..") || name.contains(['/', '%']) || name.len() > 253 {
                causes.push(Cause::new(
                    "FieldValueInvalid",
                    "metadata.name",
                    format!("Invalid value: {name:?}: may not be '.' or '..', contain '/' or '%', or be longer than 253 characters"),
                ));
            }
        }
        (_, Some(prefix)) if !prefix.is_empty() => {}
        _ => causes.push(Cause::new(
            "FieldValueRequired",
            "metadata.name",
            "Required value: name or generateName is required",
        )),
    }
}

fn check_rules(role: &Value, namespaced: bool, causes: &mut Vec<Cause>) {
    if role.get("aggregationRule").is_some_and(|a| !a.is_null()) {
        causes.push(Cause::new(
            "FieldValueNotSupported",
            "aggregationRule",
            "Unsupported value: aggregated ClusterRoles are not supported by wasmfleet",
        ));
    }
    let rules = role["rules"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (i, rule) in rules.iter().enumerate() {
        let path = format!("rules[{i}]");
        let has = |field: &str| rule[field].as_array().is_some_and(|a| !a.is_empty());
        if !has("verbs") {
            causes.push(Cause::new(
                "FieldValueRequired",
                format!("{path}.verbs"),
                "Required value: verbs must contain at least one value",
            ));
        }
        if has("nonResourceURLs") {
            if namespaced {
                causes.push(Cause::new(
                    "FieldValueInvalid",
                    format!("{path}.nonResourceURLs"),
                    "Invalid value: namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if has("apiGroups") || has("resources") {
                causes.push(Cause::new(
                    "FieldValueInvalid",
                    format!("{path}.nonResourceURLs"),
                    "Invalid value: rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if !has("apiGroups") {
            causes.push(Cause::new(
                "FieldValueRequired",
                format!("{path}.apiGroups"),
                "Required value: resource rules must supply at least one api group",
            ));
        }
        if !has("resources") {
            causes.push(Cause::new(
                "FieldValueRequired",
                format!("{path}.resources"),
                "Required value: resource rules must supply at least one resource",
            ));
        }
    }
}

fn check_binding(binding: &Value, namespaced: bool, causes: &mut Vec<Cause>) {
    let role_ref = &binding["roleRef"];
    if role_ref["apiGroup"] != GROUP {
        causes.push(validation::not_supported(
            "roleRef.apiGroup",
            &format!("{:?}", role_ref["apiGroup"].as_str().unwrap_or_default()),
            &[GROUP],
        ));
    }
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    let role_kind = role_ref["kind"].as_str().unwrap_or_default();
    if !kinds.contains(&role_kind) {
        causes.push(validation::not_supported(
            "roleRef.kind",
            &format!("{role_kind:?}"),
            kinds,
        ));
    }
    if role_ref["name"].as_str().is_none_or(str::is_empty) {
        causes.push(validation::required("roleRef.name"));
    }
    let subjects = binding["subjects"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (i, subject) in subjects.iter().enumerate() {
        if subject["name"].as_str().is_none_or(str::is_empty) {
            causes.push(validation::required(&format!("subjects[{i}].name")));
        }
        let account = subject["kind"] == "ServiceAccount";
        if account && !namespaced && subject["namespace"].as_str().is_none_or(str::is_empty) {
            causes.push(validation::required(&format!("subjects[{i}].namespace")));
        }
    }
}

fn role_cells(role: &Value, _now: jiff::Timestamp) -> Vec<Value> {
    vec![
        text(role, "/metadata/name"),
        text(role, "/metadata/creationTimestamp"),
    ]
}

fn binding_cells(binding: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let role = format!(
        "{}/{}",
        binding["roleRef"]["kind"].as_str().unwrap_or_default(),
        binding["roleRef"]["name"].as_str().unwrap_or_default()
    );
    let subjects = |kind: &str| -> Value {
        let names: Vec<String> = binding["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["kind"] == kind)
            .map(|s| {
                let name = s["name"].as_str().unwrap_or_default();
                match s["namespace"].as_str() {
                    Some(ns) if kind == "ServiceAccount" => format!("{ns}/{name}"),
                    _ => name.to_owned(),
                }
            })
            .collect();
        names.join(", ").into()
    };
    vec![
        text(binding, "/metadata/name"),
        role.into(),
        age(binding, now),
        subjects("User"),
        subjects("Group"),
        subjects("ServiceAccount"),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rules_need_verbs_groups_and_resources() {
        let mut role = json!({"kind": "Role", "metadata": {"name": "r", "namespace": "a"},
            "rules": [{"resources": ["pods"]}, {"verbs": ["get"], "nonResourceURLs": ["/x"]}]});
        let err = (ROLES.admit_create)(&mut role).unwrap_err();
        assert_eq!(
            err.cause_fields(),
            [
                "rules[0].verbs",
                "rules[0].apiGroups",
                "rules[1].nonResourceURLs"
            ]
        );
        let mut ok = json!({"kind": "ClusterRole", "metadata": {"name": "system:x"},
            "rules": [{"verbs": ["get"], "nonResourceURLs": ["/x"]},
                      {"verbs": ["*"], "apiGroups": [""], "resources": ["pods/log"]}]});
        (CLUSTER_ROLES.admit_create)(&mut ok).unwrap();
    }

    #[test]
    fn bindings_need_a_role_of_their_scope_and_keep_it() {
        let mut cluster = json!({"kind": "ClusterRoleBinding", "metadata": {"name": "b"},
            "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "r"},
            "subjects": [{"kind": "ServiceAccount", "name": "default"}]});
        let err = (CLUSTER_ROLE_BINDINGS.admit_create)(&mut cluster).unwrap_err();
        assert_eq!(
            err.cause_fields(),
            ["roleRef.kind", "subjects[0].namespace"]
        );
        let old = json!({"kind": "RoleBinding", "metadata": {"name": "b", "namespace": "a"},
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": "alice"}]});
        let mut changed = old.clone();
        changed["roleRef"]["name"] = "edit".into();
        let err = (ROLE_BINDINGS.admit_update)(&old, &mut changed).unwrap_err();
        assert_eq!(err.cause_fields(), ["roleRef"]);
        let mut same = old.clone();
        (ROLE_BINDINGS.admit_update)(&old, &mut same).unwrap();
    }

    #[test]
    fn a_binding_prints_its_role_and_subjects() {
        let binding = json!({"kind": "RoleBinding", "metadata": {"name": "b"},
            "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "dev"},
                         {"kind": "ServiceAccount", "name": "web", "namespace": "a"}]});
        let cells = binding_cells(&binding, jiff::Timestamp::now());
        assert_eq!(cells[1], "ClusterRole/view");
        assert_eq!(cells[3..], [json!("alice"), json!("dev"), json!("a/web")]);
    }
}
