//! What a pod may ask of its configuration: `env[].valueFrom`, `envFrom`, `volumes` and
//! `volumeMounts` (shapes for [`super::validation`]'s allow-list, and the checks across
//! fields). Volumes are WASI preopened directories: `configMap`, `secret`, `downwardAPI`,
//! `projected` (with `serviceAccountToken` sources: `identity::pod_tokens`), `emptyDir`
//! (with `sizeLimit`) and `hostPath` (directories only; the node's agent decides which);
//! every other volume type, and what a Wasm guest cannot be given, is a 422 naming the
//! field.

use std::collections::BTreeSet;

use serde_json::Value;

use wasmfleet_protocol::quantity;

use super::status::Cause;
use super::validation::{Shape, is_dns_label};

const KEY_SELECTOR: Shape = Shape::Object(&[
    ("name", Shape::Str),
    ("key", Shape::Str),
    ("optional", Shape::Bool),
]);
const FIELD_SELECTOR: Shape =
    Shape::Object(&[("apiVersion", Shape::Str), ("fieldPath", Shape::Str)]);
/// `env[].valueFrom` (`resourceFieldRef` is refused: a guest's limits are not in its env).
const ENV_VAR_SOURCE: Shape = Shape::Object(&[
    ("configMapKeyRef", KEY_SELECTOR),
    ("secretKeyRef", KEY_SELECTOR),
    ("fieldRef", FIELD_SELECTOR),
]);
/// A container's `env[]`.
pub const ENV_VAR: Shape = Shape::Object(&[
    ("name", Shape::Str),
    ("value", Shape::Str),
    ("valueFrom", ENV_VAR_SOURCE),
]);
const OBJECT_REF: Shape = Shape::Object(&[("name", Shape::Str), ("optional", Shape::Bool)]);
/// A container's `envFrom[]`.
pub const ENV_FROM: Shape = Shape::Object(&[
    ("prefix", Shape::Str),
    ("configMapRef", OBJECT_REF),
    ("secretRef", OBJECT_REF),
]);
/// A container's `volumeMounts[]` (no propagation, no `subPathExpr`).
pub const VOLUME_MOUNT: Shape = Shape::Object(&[
    ("name", Shape::Str),
    ("mountPath", Shape::Str),
    ("readOnly", Shape::Bool),
    ("subPath", Shape::Str),
]);
const KEY_TO_PATH: Shape = Shape::Object(&[
    ("key", Shape::Str),
    ("path", Shape::Str),
    ("mode", Shape::Int),
]);
const DOWNWARD_FILE: Shape = Shape::Object(&[
    ("path", Shape::Str),
    ("fieldRef", FIELD_SELECTOR),
    ("mode", Shape::Int),
]);
const CONFIG_MAP_SOURCE: Shape = Shape::Object(&[
    ("name", Shape::Str),
    ("items", Shape::List(&KEY_TO_PATH)),
    ("defaultMode", Shape::Int),
    ("optional", Shape::Bool),
]);
const SECRET_SOURCE: Shape = Shape::Object(&[
    ("secretName", Shape::Str),
    ("items", Shape::List(&KEY_TO_PATH)),
    ("defaultMode", Shape::Int),
    ("optional", Shape::Bool),
]);
const DOWNWARD_SOURCE: Shape = Shape::Object(&[
    ("items", Shape::List(&DOWNWARD_FILE)),
    ("defaultMode", Shape::Int),
]);
const TOKEN_PROJECTION: Shape = Shape::Object(&[
    ("audience", Shape::Str),
    ("expirationSeconds", Shape::Int),
    ("path", Shape::Str),
]);
const PROJECTION: Shape = Shape::Object(&[
    ("configMap", PROJECTED_KEYS),
    ("secret", PROJECTED_KEYS),
    (
        "downwardAPI",
        Shape::Object(&[("items", Shape::List(&DOWNWARD_FILE))]),
    ),
    ("serviceAccountToken", TOKEN_PROJECTION),
]);
/// The sources of a projected volume; each names exactly one.
const PROJECTED_SOURCES: [&str; 4] = ["configMap", "secret", "downwardAPI", "serviceAccountToken"];
const PROJECTED_KEYS: Shape = Shape::Object(&[
    ("name", Shape::Str),
    ("items", Shape::List(&KEY_TO_PATH)),
    ("optional", Shape::Bool),
]);
/// `emptyDir` on the node's disk, or with `medium: Memory` on a tmpfs of the node (its
/// `sizeLimit` at most the pod's memory limit); the limit enforced by eviction.
const EMPTY_DIR: Shape = Shape::Object(&[
    ("medium", Shape::OneOf(&["", "Memory"])),
    ("sizeLimit", Shape::Quantity),
]);
/// `hostPath`: a directory of the node, mounted only where the node's agent allows it
/// (WASI preopens only directories: no `File`, and nothing is created on the node).
const HOST_PATH: Shape = Shape::Object(&[
    ("path", Shape::Str),
    ("type", Shape::OneOf(&["", "Directory"])),
]);
/// A pod's `volumes[]`.
pub const VOLUME: Shape = Shape::Object(&[
    ("name", Shape::Str),
    ("configMap", CONFIG_MAP_SOURCE),
    ("secret", SECRET_SOURCE),
    ("downwardAPI", DOWNWARD_SOURCE),
    (
        "projected",
        Shape::Object(&[
            ("sources", Shape::List(&PROJECTION)),
            ("defaultMode", Shape::Int),
        ]),
    ),
    ("emptyDir", EMPTY_DIR),
    ("hostPath", HOST_PATH),
]);

/// The volume types [`VOLUME`] allows; a volume names exactly one.
const TYPES: [&str; 6] = [
    "configMap",
    "secret",
    "downwardAPI",
    "projected",
    "emptyDir",
    "hostPath",
];

/// The downward API fields an env var may read.
const ENV_FIELDS: [&str; 7] = [
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.podIP",
    "metadata.labels['<key>'] or metadata.annotations['<key>']",
];

/// Checks the pod spec at `path`'s volumes and every container's env sources and mounts.
pub fn check(spec: &Value, path: &str, causes: &mut Vec<Cause>) {
    let mut names = BTreeSet::new();
    for (i, volume) in list(spec, "volumes").enumerate() {
        let at = format!("{path}.volumes[{i}]");
        check_volume(volume, &at, causes);
        if let Some(name) = volume["name"].as_str()
            && !names.insert(name)
        {
            causes.push(Cause::new(
                "FieldValueDuplicate",
                format!("{at}.name"),
                format!("Duplicate value: {name:?}"),
            ));
        }
    }
    for (c, container) in list(spec, "containers").enumerate() {
        let at = format!("{path}.containers[{c}]");
        for (i, var) in list(container, "env").enumerate() {
            let field = &var["valueFrom"]["fieldRef"]["fieldPath"];
            if let Some(field) = field.as_str()
                && !env_field(field)
            {
                causes.push(field_not_supported(
                    &format!("{at}.env[{i}].valueFrom.fieldRef.fieldPath"),
                    field,
                ));
            }
            let sources = ["configMapKeyRef", "secretKeyRef", "fieldRef"];
            check_one_of(
                &var["valueFrom"],
                &sources,
                &format!("{at}.env[{i}].valueFrom"),
                causes,
            );
        }
        for (i, from) in list(container, "envFrom").enumerate() {
            let sources = ["configMapRef", "secretRef"];
            check_one_of(from, &sources, &format!("{at}.envFrom[{i}]"), causes);
        }
        check_mounts(container, &names, &at, causes);
    }
}

fn list<'a>(obj: &'a Value, field: &str) -> impl Iterator<Item = &'a Value> {
    obj.get(field)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn check_volume(volume: &Value, at: &str, causes: &mut Vec<Cause>) {
    match volume["name"].as_str() {
        Some(name) if is_dns_label(name) => {}
        _ => causes.push(Cause::new(
            "FieldValueInvalid",
            format!("{at}.name"),
            "Invalid value: must be a DNS label",
        )),
    }
    let given: Vec<&str> = TYPES
        .into_iter()
        .filter(|t| volume.get(*t).is_some_and(|v| !v.is_null()))
        .collect();
    if given.len() != 1 && volume.is_object() {
        causes.push(Cause::new(
            "FieldValueRequired",
            at,
            format!(
                "Required value: exactly one volume type of {} (other types are not supported)",
                TYPES.join(", ")
            ),
        ));
    }
    check_mode(
        &volume["configMap"]["defaultMode"],
        &format!("{at}.configMap.defaultMode"),
        causes,
    );
    check_mode(
        &volume["secret"]["defaultMode"],
        &format!("{at}.secret.defaultMode"),
        causes,
    );
    check_mode(
        &volume["projected"]["defaultMode"],
        &format!("{at}.projected.defaultMode"),
        causes,
    );
    check_mode(
        &volume["downwardAPI"]["defaultMode"],
        &format!("{at}.downwardAPI.defaultMode"),
        causes,
    );
    for kind in ["configMap", "secret"] {
        check_items(&volume[kind], &format!("{at}.{kind}"), causes);
    }
    check_downward(&volume["downwardAPI"], &format!("{at}.downwardAPI"), causes);
    check_host_path(&volume["hostPath"], &format!("{at}.hostPath"), causes);
    check_size_limit(
        &volume["emptyDir"]["sizeLimit"],
        &format!("{at}.emptyDir.sizeLimit"),
        causes,
    );
    for (s, source) in list(&volume["projected"], "sources").enumerate() {
        let at = format!("{at}.projected.sources[{s}]");
        check_one_of(source, &PROJECTED_SOURCES, &at, causes);
        check_items(&source["configMap"], &format!("{at}.configMap"), causes);
        check_items(&source["secret"], &format!("{at}.secret"), causes);
        check_downward(&source["downwardAPI"], &format!("{at}.downwardAPI"), causes);
        check_token(
            &source["serviceAccountToken"],
            &format!("{at}.serviceAccountToken"),
            causes,
        );
    }
}

/// A `hostPath`'s path: absolute, without `..` (whether the node allows it is the node's
/// agent's decision, when the pod starts).
fn check_host_path(host_path: &Value, at: &str, causes: &mut Vec<Cause>) {
    if !host_path.is_object() {
        return;
    }
    let path = host_path["path"].as_str().unwrap_or("");
    if path.is_empty() {
        causes.push(Cause::new(
            "FieldValueRequired",
            format!("{at}.path"),
            "Required value",
        ));
    } else if !path.starts_with('/') || path.split('/').any(|p| p == "..") {
        causes.push(Cause::new(
            "FieldValueInvalid",
            format!("{at}.path"),
            format!("Invalid value: {path:?}: must be an absolute path without '..'"),
        ));
    }
}

/// An `emptyDir`'s `sizeLimit`: a quantity of bytes.
fn check_size_limit(limit: &Value, at: &str, causes: &mut Vec<Cause>) {
    let text = match limit {
        Value::Null => return,
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    if let Err(err) = quantity::memory_bytes(&text) {
        causes.push(Cause::new(
            "FieldValueInvalid",
            at,
            format!("Invalid value: {text:?}: {err}"),
        ));
    }
}

/// A projected token: a path, and a lifetime of at least ten minutes (Kubernetes' checks
/// and words; the lifetime issued is at most the server's longest, `identity::pod_tokens`).
fn check_token(token: &Value, at: &str, causes: &mut Vec<Cause>) {
    if !token.is_object() {
        return;
    }
    match token["path"].as_str() {
        None | Some("") => causes.push(Cause::new(
            "FieldValueRequired",
            format!("{at}.path"),
            "Required value",
        )),
        Some(_) => check_relative(&token["path"], &format!("{at}.path"), causes),
    }
    let Some(seconds) = token["expirationSeconds"].as_i64() else {
        return;
    };
    let limit = if seconds < MIN_TOKEN_SECONDS {
        "may not specify a duration less than 10 minutes"
    } else if seconds > MAX_TOKEN_SECONDS {
        "may not specify a duration larger than 2^32 seconds"
    } else {
        return;
    };
    causes.push(Cause::new(
        "FieldValueInvalid",
        format!("{at}.expirationSeconds"),
        format!("Invalid value: {seconds}: {limit}"),
    ));
}

/// The shortest lifetime a projected token may ask for (Kubernetes: ten minutes).
const MIN_TOKEN_SECONDS: i64 = crate::identity::service_account_tokens::MIN_EXPIRATION;
/// The longest lifetime a projected token may ask for (Kubernetes: 2^32 seconds).
const MAX_TOKEN_SECONDS: i64 = 1 << 32;

fn check_items(source: &Value, at: &str, causes: &mut Vec<Cause>) {
    for (i, item) in list(source, "items").enumerate() {
        check_relative(&item["path"], &format!("{at}.items[{i}].path"), causes);
        check_mode(&item["mode"], &format!("{at}.items[{i}].mode"), causes);
    }
}

fn check_downward(source: &Value, at: &str, causes: &mut Vec<Cause>) {
    for (i, item) in list(source, "items").enumerate() {
        check_relative(&item["path"], &format!("{at}.items[{i}].path"), causes);
        check_mode(&item["mode"], &format!("{at}.items[{i}].mode"), causes);
        let field = item["fieldRef"]["fieldPath"].as_str().unwrap_or("");
        let whole = matches!(field, "metadata.labels" | "metadata.annotations");
        if !whole && !env_field(field) {
            causes.push(field_not_supported(
                &format!("{at}.items[{i}].fieldRef.fieldPath"),
                field,
            ));
        }
    }
}

fn check_mounts(container: &Value, volumes: &BTreeSet<&str>, at: &str, causes: &mut Vec<Cause>) {
    let mut paths = BTreeSet::new();
    for (i, mount) in list(container, "volumeMounts").enumerate() {
        let at = format!("{at}.volumeMounts[{i}]");
        match mount["name"].as_str() {
            Some(name) if volumes.contains(name) => {}
            name => causes.push(Cause::new(
                "FieldValueNotFound",
                format!("{at}.name"),
                format!("Not found: {:?}", name.unwrap_or("")),
            )),
        }
        let path = mount["mountPath"].as_str().unwrap_or("");
        if !path.starts_with('/') || path.split('/').any(|p| p == "..") {
            causes.push(Cause::new(
                "FieldValueInvalid",
                format!("{at}.mountPath"),
                format!("Invalid value: {path:?}: must be an absolute path without '..'"),
            ));
        } else if !paths.insert(path.trim_end_matches('/')) {
            causes.push(Cause::new(
                "FieldValueInvalid",
                format!("{at}.mountPath"),
                format!("Invalid value: {path:?}: must be unique"),
            ));
        }
        if mount.get("subPath").is_some_and(|p| p.as_str() != Some("")) {
            check_relative(&mount["subPath"], &format!("{at}.subPath"), causes);
        }
    }
}

/// Exactly one of `fields` is set in `obj` (when `obj` is given at all).
fn check_one_of(obj: &Value, fields: &[&str], at: &str, causes: &mut Vec<Cause>) {
    if !obj.is_object() {
        return;
    }
    let set = fields.iter().filter(|f| !obj[**f].is_null()).count();
    if set != 1 {
        causes.push(Cause::new(
            "FieldValueInvalid",
            at,
            format!(
                "Invalid value: must name exactly one of {}",
                fields.join(", ")
            ),
        ));
    }
}

/// A relative path inside a volume: not empty, not absolute, no `..` element.
fn check_relative(path: &Value, at: &str, causes: &mut Vec<Cause>) {
    let text = path.as_str().unwrap_or("");
    if text.is_empty() || text.starts_with('/') || text.split('/').any(|p| p == "..") {
        causes.push(Cause::new(
            "FieldValueInvalid",
            at,
            format!("Invalid value: {text:?}: must be a relative path without '..'"),
        ));
    }
}

fn check_mode(mode: &Value, at: &str, causes: &mut Vec<Cause>) {
    if let Some(mode) = mode.as_i64()
        && !(0..=0o777).contains(&mode)
    {
        causes.push(Cause::new(
            "FieldValueInvalid",
            at,
            format!(
                "Invalid value: {mode}: must be a number between 0 and 0777 (octal), both inclusive"
            ),
        ));
    }
}

/// Whether an env var may read `field` (`metadata.labels['k']` and annotations included).
fn env_field(field: &str) -> bool {
    let keyed = |prefix: &str| {
        field
            .strip_prefix(prefix)
            .and_then(|r| r.strip_prefix("['"))
            .is_some_and(|r| r.ends_with("']") && r.len() > 2)
    };
    ENV_FIELDS[..6].contains(&field) || keyed("metadata.labels") || keyed("metadata.annotations")
}

fn field_not_supported(at: &str, field: &str) -> Cause {
    let values: Vec<String> = ENV_FIELDS.iter().map(|f| format!("{f:?}")).collect();
    Cause::new(
        "FieldValueNotSupported",
        at,
        format!(
            "Unsupported value: {field:?}: supported values: {}",
            values.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::api::validation::validate_pod;

    fn fields(spec: serde_json::Value) -> Vec<String> {
        let pod = json!({"metadata": {"name": "p"}, "spec": spec});
        validate_pod(&pod).into_iter().map(|c| c.field).collect()
    }

    fn container(extra: serde_json::Value) -> serde_json::Value {
        let mut c = json!({"name": "c", "image": "m:v1"});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        c
    }

    #[test]
    fn config_sources_and_volumes_wasm_can_have_are_accepted() {
        let spec = json!({"containers": [container(json!({
        "env": [
            {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}},
            {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": true}}},
            {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}}
        ],
        "envFrom": [{"prefix": "X_", "secretRef": {"name": "s"}}],
        "volumeMounts": [
            {"name": "conf", "mountPath": "/etc/conf", "readOnly": true},
            {"name": "work", "mountPath": "/work", "subPath": "a/b"}
        ]}))],
        "volumes": [
            {"name": "conf", "projected": {"sources": [
                {"configMap": {"name": "cm", "items": [{"key": "k", "path": "k.txt"}]}},
                {"downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                {"serviceAccountToken": {"path": "token", "audience": "vault", "expirationSeconds": 600}},
                {"serviceAccountToken": {"path": "api-token"}}
            ]}},
            {"name": "work", "emptyDir": {"sizeLimit": "1Mi"}},
            {"name": "dev", "hostPath": {"path": "/sys/class/thermal", "type": "Directory"}}
        ]});
        assert!(fields(spec).is_empty());
    }

    #[test]
    fn a_projected_token_needs_a_path_and_ten_minutes_as_kubernetes_says() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [container(json!({}))],
        "volumes": [{"name": "tok", "projected": {"sources": [
            {"serviceAccountToken": {"expirationSeconds": 599}},
            {"serviceAccountToken": {"path": "../t", "expirationSeconds": 5_000_000_000_i64}},
            {"serviceAccountToken": {"path": "t"}, "secret": {"name": "s"}}
        ]}}]}});
        let said: Vec<(String, String)> = validate_pod(&pod)
            .into_iter()
            .map(|c| (c.field, c.message))
            .collect();
        let at = "spec.volumes[0].projected.sources";
        assert_eq!(
            said,
            [
                (format!("{at}[0].serviceAccountToken.path"), "Required value".into()),
                (
                    format!("{at}[0].serviceAccountToken.expirationSeconds"),
                    "Invalid value: 599: may not specify a duration less than 10 minutes".into()
                ),
                (
                    format!("{at}[1].serviceAccountToken.path"),
                    "Invalid value: \"../t\": must be a relative path without '..'".into()
                ),
                (
                    format!("{at}[1].serviceAccountToken.expirationSeconds"),
                    "Invalid value: 5000000000: may not specify a duration larger than 2^32 seconds"
                        .into()
                ),
                (
                    format!("{at}[2]"),
                    "Invalid value: must name exactly one of configMap, secret, downwardAPI, serviceAccountToken".into()
                ),
            ]
        );
    }

    #[test]
    fn what_a_wasm_pod_cannot_have_is_refused_by_name() {
        let spec = json!({"containers": [container(json!({
        "env": [
            {"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}
        ],
        "volumeMounts": [
            {"name": "nope", "mountPath": "/a"},
            {"name": "tok", "mountPath": "relative"},
            {"name": "tmp", "mountPath": "/t", "subPath": "../up"}
        ]}))],
        "volumes": [
            {"name": "host", "hostPath": {"path": "/dev/ttyS0", "type": "CharDevice"}},
            {"name": "tok", "projected": {"sources": [{"serviceAccountToken": {"path": "t", "expirationSeconds": 300}}]}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "lots", "medium": "HugePages"}},
            {"name": "tmp", "configMap": {"name": "x", "defaultMode": 4096}},
            {"name": "rel", "hostPath": {"path": "etc/../x"}},
            {"name": "nfs", "nfs": {"server": "s", "path": "/"}}
        ]});
        let mut got = fields(spec);
        got.sort();
        assert_eq!(
            got,
            [
                "spec.containers[0].env[0].valueFrom",
                "spec.containers[0].env[0].valueFrom.resourceFieldRef",
                "spec.containers[0].env[1].valueFrom.fieldRef.fieldPath",
                "spec.containers[0].volumeMounts[0].name",
                "spec.containers[0].volumeMounts[1].mountPath",
                "spec.containers[0].volumeMounts[2].subPath",
                "spec.volumes[0].hostPath.type",
                "spec.volumes[1].projected.sources[0].serviceAccountToken.expirationSeconds",
                "spec.volumes[2].emptyDir.medium",
                "spec.volumes[2].emptyDir.sizeLimit",
                "spec.volumes[3].configMap.defaultMode",
                "spec.volumes[3].name",
                "spec.volumes[4].hostPath.path",
                "spec.volumes[5]",
                "spec.volumes[5].nfs",
            ]
        );
    }
}
