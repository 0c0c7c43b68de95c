//! What a Pod manifest (or a workload's pod template) may contain, and what it must.
//!
//! wasmfleet refuses what it cannot honour instead of ignoring it: every field outside the
//! allow-list below is a 422 naming the field's path. The checks are pure functions over JSON
//! and return every problem at once, as `Status.details.causes`.

use serde_json::{Map, Value};

use super::status::Cause;
use wasmfleet_protocol::network::{EGRESS_ANNOTATION, parse_egress};
use wasmfleet_protocol::quantity;

/// The JSON a field may hold.
pub enum Shape {
    /// A string.
    Str,
    /// An integer.
    Int,
    /// `true` or `false`.
    Bool,
    /// A string or an integer (`maxSurge: 1` or `"25%"`).
    IntOrString,
    /// A Kubernetes quantity: a string (`64Mi`) or a plain number.
    Quantity,
    /// A string → string map (labels, annotations, nodeSelector).
    StringMap,
    /// Accepted and ignored on input (server-owned fields).
    Ignored,
    /// A string, one of these values (any other is refused naming the field and the
    /// values wasmfleet can honour).
    OneOf(&'static [&'static str]),
    /// A boolean that may only hold this value (the other asks for what a Wasm pod cannot
    /// do: `stdin: true`, `privileged: true`).
    BoolIs(bool),
    /// An integer that may only hold this value (`priority: 0`).
    IntIs(i64),
    /// An object with these fields (any other is refused).
    Object(&'static [(&'static str, Shape)]),
    /// A list of this.
    List(&'static Shape),
}

const RESOURCE_LIST: Shape =
    Shape::Object(&[("memory", Shape::Quantity), ("cpu", Shape::Quantity)]);
const RESOURCES: Shape = Shape::Object(&[("limits", RESOURCE_LIST), ("requests", RESOURCE_LIST)]);
/// `hostPort` and `hostIP` are left out: a pod is reached through its pod IP and Services.
const CONTAINER_PORT: Shape = Shape::Object(&[
    ("name", Shape::Str),
    ("containerPort", Shape::Int),
    ("protocol", Shape::Str),
]);
/// Linux process settings: a Wasm guest has no users, capabilities or syscalls, so the
/// usual hardening (`runAsNonRoot`, `drop: [ALL]`, `seccompProfile`, ...) holds trivially
/// and is accepted; what would grant the guest more (`privileged`, added capabilities) is
/// refused.
const CONTAINER_SECURITY_CONTEXT: Shape = Shape::Object(&[
    ("allowPrivilegeEscalation", Shape::Bool),
    ("privileged", Shape::BoolIs(false)),
    ("readOnlyRootFilesystem", Shape::Bool),
    ("runAsNonRoot", Shape::Bool),
    ("runAsUser", Shape::Int),
    ("runAsGroup", Shape::Int),
    (
        "capabilities",
        Shape::Object(&[("drop", Shape::List(&Shape::Str))]),
    ),
    ("seccompProfile", SECCOMP_PROFILE),
    ("appArmorProfile", SECCOMP_PROFILE),
    ("procMount", Shape::OneOf(&["Default"])),
]);
const SECCOMP_PROFILE: Shape =
    Shape::Object(&[("type", Shape::Str), ("localhostProfile", Shape::Str)]);
const CONTAINER: Shape = Shape::Object(&[
    ("name", Shape::Str),
    ("ports", Shape::List(&CONTAINER_PORT)),
    ("image", Shape::Str),
    ("command", Shape::List(&Shape::Str)),
    ("args", Shape::List(&Shape::Str)),
    ("env", Shape::List(&super::volumes::ENV_VAR)),
    ("envFrom", Shape::List(&super::volumes::ENV_FROM)),
    ("volumeMounts", Shape::List(&super::volumes::VOLUME_MOUNT)),
    ("resources", RESOURCES),
    ("startupProbe", super::probes::PROBE),
    ("livenessProbe", super::probes::PROBE),
    ("readinessProbe", super::probes::PROBE),
    // Modules are content-addressed: every policy resolves the tag when the pod is sent.
    (
        "imagePullPolicy",
        Shape::OneOf(&["Always", "IfNotPresent", "Never"]),
    ),
    // A Wasm guest has no filesystem to leave a termination message in.
    ("terminationMessagePath", Shape::Str),
    (
        "terminationMessagePolicy",
        Shape::OneOf(&["File", "FallbackToLogsOnError"]),
    ),
    ("securityContext", CONTAINER_SECURITY_CONTEXT),
    // No attach: a guest's stdin is always empty.
    ("stdin", Shape::BoolIs(false)),
    ("stdinOnce", Shape::BoolIs(false)),
    ("tty", Shape::BoolIs(false)),
]);
/// A pod's Linux settings (see [`CONTAINER_SECURITY_CONTEXT`]); `sysctls` and Windows
/// options are refused.
const POD_SECURITY_CONTEXT: Shape = Shape::Object(&[
    ("runAsNonRoot", Shape::Bool),
    ("runAsUser", Shape::Int),
    ("runAsGroup", Shape::Int),
    ("fsGroup", Shape::Int),
    ("fsGroupChangePolicy", Shape::Str),
    ("supplementalGroups", Shape::List(&Shape::Int)),
    ("seccompProfile", SECCOMP_PROFILE),
    ("appArmorProfile", SECCOMP_PROFILE),
]);
const TOLERATION: Shape = Shape::Object(&[
    ("key", Shape::Str),
    ("operator", Shape::Str),
    ("value", Shape::Str),
    ("effect", Shape::Str),
    ("tolerationSeconds", Shape::Int),
]);
const SELECTOR_REQUIREMENT: Shape = Shape::Object(&[
    ("key", Shape::Str),
    ("operator", Shape::Str),
    ("values", Shape::List(&Shape::Str)),
]);
/// `metav1.LabelSelector`.
pub const LABEL_SELECTOR: Shape = Shape::Object(&[
    ("matchLabels", Shape::StringMap),
    ("matchExpressions", Shape::List(&SELECTOR_REQUIREMENT)),
]);
/// What a pod spec may hold.
pub const POD_SPEC: Shape = Shape::Object(&[
    ("affinity", super::placement::AFFINITY),
    (
        "topologySpreadConstraints",
        Shape::List(&super::placement::SPREAD_CONSTRAINT),
    ),
    ("tolerations", Shape::List(&TOLERATION)),
    ("containers", Shape::List(&CONTAINER)),
    ("volumes", Shape::List(&super::volumes::VOLUME)),
    ("restartPolicy", Shape::Str),
    ("nodeName", Shape::Str),
    ("nodeSelector", Shape::StringMap),
    ("terminationGracePeriodSeconds", Shape::Int),
    // Kubernetes defaults (filled in by `api::defaults`) and settings with no meaning for
    // a Wasm pod; values wasmfleet cannot honour are refused by name.
    (
        "dnsPolicy",
        Shape::OneOf(&["ClusterFirst", "ClusterFirstWithHostNet", "Default"]),
    ),
    ("schedulerName", Shape::OneOf(&["default-scheduler"])),
    ("securityContext", POD_SECURITY_CONTEXT),
    ("enableServiceLinks", Shape::Bool),
    ("priority", Shape::IntIs(0)),
    ("priorityClassName", Shape::OneOf(&[""])),
    (
        "preemptionPolicy",
        Shape::OneOf(&["PreemptLowerPriority", "Never"]),
    ),
    ("serviceAccountName", Shape::Str),
    ("serviceAccount", Shape::Str),
    ("automountServiceAccountToken", Shape::Bool),
]);
const OWNER_REFERENCE: Shape = Shape::Object(&[
    ("apiVersion", Shape::Str),
    ("kind", Shape::Str),
    ("name", Shape::Str),
    ("uid", Shape::Str),
    ("controller", Shape::Bool),
    ("blockOwnerDeletion", Shape::Bool),
]);
/// What an object's `metadata` may hold (the server-owned fields are ignored on input).
pub const METADATA: Shape = Shape::Object(&[
    ("name", Shape::Str),
    ("generateName", Shape::Str),
    ("namespace", Shape::Str),
    ("labels", Shape::StringMap),
    ("annotations", Shape::StringMap),
    ("ownerReferences", Shape::List(&OWNER_REFERENCE)),
    ("finalizers", Shape::List(&Shape::Str)),
    ("uid", Shape::Ignored),
    ("resourceVersion", Shape::Ignored),
    ("creationTimestamp", Shape::Ignored),
    ("generation", Shape::Ignored),
    ("deletionTimestamp", Shape::Ignored),
    ("deletionGracePeriodSeconds", Shape::Ignored),
    ("managedFields", Shape::Ignored),
    ("selfLink", Shape::Ignored),
]);
/// A pod template's metadata: labels and annotations (the rest is set per pod).
const TEMPLATE_METADATA: Shape = Shape::Object(&[
    ("name", Shape::Str),
    ("labels", Shape::StringMap),
    ("annotations", Shape::StringMap),
    ("creationTimestamp", Shape::Ignored),
]);
/// A workload's pod template.
pub const POD_TEMPLATE: Shape =
    Shape::Object(&[("metadata", TEMPLATE_METADATA), ("spec", POD_SPEC)]);
const POD: Shape = Shape::Object(&[
    ("apiVersion", Shape::Str),
    ("kind", Shape::Str),
    ("metadata", METADATA),
    ("spec", POD_SPEC),
    ("status", Shape::Ignored),
]);

/// The message for a field outside the allow-list.
const UNSUPPORTED: &str = "Unsupported value: wasmfleet does not support this field yet";

/// Checks a Pod manifest: only supported fields, of the right types, with valid values.
pub fn validate_pod(pod: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    check_shape(pod, &POD, "", &mut causes);
    check_type_meta(pod, "v1", "Pod", &mut causes);
    check_pod_metadata(pod, &mut causes);
    check_pod_spec(pod.get("spec"), "spec", &mut causes);
    causes
}

/// Checks the pod spec of a workload's template at `path` (`spec.template.spec`); the
/// template's shape is checked with the workload's ([`POD_TEMPLATE`]).
pub fn validate_template_spec(spec: Option<&Value>, path: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    check_pod_spec(spec, path, &mut causes);
    causes
}

/// Checks a replacement of `old` by `new`: only images, tolerations, labels and annotations
/// may change.
/// Both are complete pods (after defaults).
pub fn validate_pod_update(old: &Value, new: &Value) -> Vec<Cause> {
    let strip_images = |pod: &Value| {
        let mut spec = pod.get("spec").cloned().unwrap_or(Value::Null);
        // A pod stored before a default existed compares as if it had it.
        super::defaults::apply_pod_spec_defaults(&mut spec);
        if let Some(containers) = spec.get_mut("containers").and_then(Value::as_array_mut) {
            for container in containers.iter_mut().filter_map(Value::as_object_mut) {
                container.remove("image");
                // Defaulted from the image's tag, and without effect on content-addressed
                // modules: it may follow the image.
                container.remove("imagePullPolicy");
            }
        }
        // Tolerations may be added (a pod stored before defaults gave it some gets them).
        if let Some(spec) = spec.as_object_mut() {
            spec.remove("tolerations");
        }
        spec
    };
    if strip_images(old) == strip_images(new) {
        Vec::new()
    } else {
        vec![Cause::new(
            "FieldValueForbidden",
            "spec",
            "Forbidden: pod updates may not change fields other than `spec.containers[*].image`",
        )]
    }
}

/// Checks `metadata.name` of a namespace (a DNS label: `label_only`) or a node (a DNS
/// subdomain).
pub fn validate_object_name(obj: &Value, label_only: bool) -> Vec<Cause> {
    let mut causes = Vec::new();
    match obj.pointer("/metadata/name").and_then(Value::as_str) {
        None | Some("") => causes.push(required("metadata.name")),
        Some(name) if label_only => check_dns_label(name, "metadata.name", &mut causes),
        Some(name) => check_dns_subdomain(name, "metadata.name", &mut causes),
    }
    causes
}

/// Checks `value` against `shape`: every field known, of the right JSON type.
pub fn check_shape(value: &Value, shape: &Shape, path: &str, causes: &mut Vec<Cause>) {
    if value.is_null() {
        return; // `null` means "not set", as in Kubernetes.
    }
    let wrong = |expected: &str| {
        Cause::new(
            "FieldValueInvalid",
            path,
            format!("Invalid value: expected {expected}"),
        )
    };
    match shape {
        Shape::Ignored => {}
        Shape::OneOf(_) if !value.is_string() => causes.push(wrong("a string")),
        Shape::OneOf(values) => {
            if let Some(actual) = value.as_str().filter(|v| !values.contains(v)) {
                causes.push(not_supported(path, &format!("{actual:?}"), values));
            }
        }
        Shape::BoolIs(_) if !value.is_boolean() => causes.push(wrong("a boolean")),
        Shape::IntIs(_) if !value.is_i64() => causes.push(wrong("an integer")),
        Shape::BoolIs(only) if value.as_bool() != Some(*only) => causes.push(not_supported(
            path,
            &value.to_string(),
            &[only.to_string().as_str()],
        )),
        Shape::IntIs(only) if value.as_i64() != Some(*only) => causes.push(not_supported(
            path,
            &value.to_string(),
            &[only.to_string().as_str()],
        )),
        Shape::Str if !value.is_string() => causes.push(wrong("a string")),
        Shape::Int if !value.is_i64() => causes.push(wrong("an integer")),
        Shape::Bool if !value.is_boolean() => causes.push(wrong("a boolean")),
        Shape::IntOrString if !(value.is_i64() || value.is_string()) => {
            causes.push(wrong("an integer or a string"))
        }
        Shape::Quantity if !(value.is_string() || value.is_number()) => {
            causes.push(wrong("a quantity"))
        }
        Shape::StringMap => match value.as_object() {
            Some(map) => {
                for (key, _) in map.iter().filter(|(_, v)| !v.is_string() && !v.is_null()) {
                    causes.push(Cause::new(
                        "FieldValueInvalid",
                        format!("{path}.{key}"),
                        "Invalid value: expected a string",
                    ));
                }
            }
            None => causes.push(wrong("a map of strings")),
        },
        Shape::Object(fields) => match value.as_object() {
            Some(map) => check_object(map, fields, path, causes),
            None => causes.push(wrong("an object")),
        },
        Shape::List(item) => match value.as_array() {
            Some(items) => {
                for (i, v) in items.iter().enumerate() {
                    check_shape(v, item, &format!("{path}[{i}]"), causes);
                }
            }
            None => causes.push(wrong("a list")),
        },
        Shape::Str
        | Shape::Int
        | Shape::Bool
        | Shape::IntOrString
        | Shape::Quantity
        | Shape::BoolIs(_)
        | Shape::IntIs(_) => {}
    }
}

/// A value outside what wasmfleet can honour, naming the values it can (Kubernetes'
/// `FieldValueNotSupported` wording).
pub fn not_supported(path: &str, actual: &str, supported: &[&str]) -> Cause {
    let supported: Vec<String> = supported.iter().map(|v| format!("{v:?}")).collect();
    Cause::new(
        "FieldValueNotSupported",
        path,
        format!(
            "Unsupported value: {actual}: supported values: {} (wasmfleet cannot honour others)",
            supported.join(", ")
        ),
    )
}

fn check_object(
    map: &Map<String, Value>,
    fields: &[(&str, Shape)],
    path: &str,
    causes: &mut Vec<Cause>,
) {
    for (key, value) in map {
        let field_path = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        match fields.iter().find(|(name, _)| name == key) {
            Some((_, shape)) => check_shape(value, shape, &field_path, causes),
            None if value.is_null() => {}
            None => causes.push(Cause::new(
                "FieldValueNotSupported",
                field_path,
                UNSUPPORTED,
            )),
        }
    }
}

/// `apiVersion` and `kind`, when given, must be the kind's.
pub fn check_type_meta(obj: &Value, api_version: &str, kind: &str, causes: &mut Vec<Cause>) {
    for (field, expected) in [("apiVersion", api_version), ("kind", kind)] {
        if let Some(actual) = obj.get(field).and_then(Value::as_str)
            && actual != expected
        {
            causes.push(Cause::new(
                "FieldValueInvalid",
                field,
                format!("Invalid value: {actual:?}: must be {expected:?}"),
            ));
        }
    }
}

fn check_pod_metadata(pod: &Value, causes: &mut Vec<Cause>) {
    check_metadata(pod, causes);
    check_egress_annotation(pod.get("metadata"), "metadata", causes);
}

/// The pod network's egress rules ([`EGRESS_ANNOTATION`]) of a pod's or a template's
/// `metadata` at `path` must parse.
pub fn check_egress_annotation(metadata: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    let rules = metadata
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(EGRESS_ANNOTATION))
        .and_then(Value::as_str);
    if let Some(Err(err)) = rules.map(parse_egress) {
        causes.push(Cause::new(
            "FieldValueInvalid",
            format!("{path}.annotations[{EGRESS_ANNOTATION}]"),
            format!("Invalid value: {err}"),
        ));
    }
}

/// `metadata.name` (or `generateName`) and `metadata.namespace` of a namespaced object.
pub fn check_metadata(obj: &Value, causes: &mut Vec<Cause>) {
    let name = obj.pointer("/metadata/name").and_then(Value::as_str);
    let generate = obj
        .pointer("/metadata/generateName")
        .and_then(Value::as_str);
    match (name, generate) {
        (Some(name), _) if !name.is_empty() => check_dns_subdomain(name, "metadata.name", causes),
        (_, Some(prefix)) if !prefix.is_empty() => {}
        _ => causes.push(Cause::new(
            "FieldValueRequired",
            "metadata.name",
            "Required value: name or generateName is required",
        )),
    }
    if let Some(ns) = obj.pointer("/metadata/namespace").and_then(Value::as_str) {
        check_dns_label(ns, "metadata.namespace", causes);
    }
}

fn check_pod_spec(spec: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    let Some(spec) = spec.filter(|s| s.is_object()) else {
        causes.push(required(path));
        return;
    };
    match spec.get("containers").and_then(Value::as_array) {
        Some(containers) if !containers.is_empty() => check_containers(containers, path, causes),
        _ => causes.push(required(&format!("{path}.containers"))),
    }
    check_tolerations(spec.get("tolerations"), path, causes);
    super::placement::check(spec, path, causes);
    super::volumes::check(spec, path, causes);
    if let Some(policy) = spec.get("restartPolicy").and_then(Value::as_str)
        && !matches!(policy, "Always" | "OnFailure" | "Never")
    {
        causes.push(Cause::new(
            "FieldValueNotSupported",
            format!("{path}.restartPolicy"),
            format!(
                "Unsupported value: {policy:?}: supported values: \"Always\", \"OnFailure\", \"Never\""
            ),
        ));
    }
    if let Some(node) = spec.get("nodeName").and_then(Value::as_str) {
        check_dns_subdomain(node, &format!("{path}.nodeName"), causes);
    }
    if spec
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|s| s < 0)
    {
        causes.push(Cause::new(
            "FieldValueInvalid",
            format!("{path}.terminationGracePeriodSeconds"),
            "Invalid value: must be greater than or equal to 0",
        ));
    }
}

/// Each toleration: a known operator and effect, no value with `Exists`, and
/// `tolerationSeconds` only for `NoExecute`.
fn check_tolerations(tolerations: Option<&Value>, spec_path: &str, causes: &mut Vec<Cause>) {
    let list = tolerations.and_then(Value::as_array).into_iter().flatten();
    for (i, toleration) in list.enumerate() {
        let path = format!("{spec_path}.tolerations[{i}]");
        let operator = toleration["operator"].as_str().unwrap_or("Equal");
        let effect = toleration["effect"].as_str().unwrap_or("");
        let problem = if !matches!(operator, "Equal" | "Exists") {
            Some((
                "operator",
                format!("Unsupported value: {operator:?}: supported values: \"Equal\", \"Exists\""),
            ))
        } else if operator == "Exists" && !toleration["value"].as_str().unwrap_or("").is_empty() {
            Some((
                "operator",
                "Invalid value: value must be empty when `operator` is 'Exists'".to_owned(),
            ))
        } else if operator == "Equal" && toleration["key"].as_str().unwrap_or("").is_empty() {
            Some((
                "operator",
                "Invalid value: operator must be Exists when `key` is empty".to_owned(),
            ))
        } else if !matches!(effect, "" | "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            Some((
                "effect",
                format!(
                    "Unsupported value: {effect:?}: supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\""
                ),
            ))
        } else if !toleration["tolerationSeconds"].is_null() && effect != "NoExecute" {
            Some((
                "effect",
                "Invalid value: effect must be 'NoExecute' when `tolerationSeconds` is set"
                    .to_owned(),
            ))
        } else {
            None
        };
        if let Some((field, message)) = problem {
            causes.push(Cause::new(
                "FieldValueInvalid",
                format!("{path}.{field}"),
                message,
            ));
        }
    }
}

fn check_containers(containers: &[Value], spec_path: &str, causes: &mut Vec<Cause>) {
    let mut seen = std::collections::HashSet::new();
    for (i, container) in containers.iter().enumerate() {
        let path = format!("{spec_path}.containers[{i}]");
        match container.get("name").and_then(Value::as_str) {
            None | Some("") => causes.push(required(&format!("{path}.name"))),
            Some(name) => {
                check_dns_label(name, &format!("{path}.name"), causes);
                if !seen.insert(name) {
                    causes.push(Cause::new(
                        "FieldValueDuplicate",
                        format!("{path}.name"),
                        format!("Duplicate value: {name:?}"),
                    ));
                }
            }
        }
        match container.get("image").and_then(Value::as_str) {
            None | Some("") => causes.push(required(&format!("{path}.image"))),
            Some(_) => {}
        }
        check_env(container.get("env"), &path, causes);
        check_resources(container.get("resources"), &path, causes);
        super::probes::check(container, &path, causes);
    }
    check_ports(containers, spec_path, causes);
}

/// `containerPort`s: a valid number and protocol, names that Services can refer to, and
/// no port declared twice in the pod (its containers share one port space).
fn check_ports(containers: &[Value], spec_path: &str, causes: &mut Vec<Cause>) {
    let mut names = std::collections::HashSet::new();
    let mut ports = std::collections::HashSet::new();
    for (i, container) in containers.iter().enumerate() {
        let list = container.get("ports").and_then(Value::as_array);
        for (j, port) in list.into_iter().flatten().enumerate() {
            let path = format!("{spec_path}.containers[{i}].ports[{j}]");
            let number = port.get("containerPort").and_then(Value::as_i64);
            let protocol = port
                .get("protocol")
                .and_then(Value::as_str)
                .unwrap_or("TCP");
            let invalid = |field: &str, message: String| {
                Cause::new("FieldValueInvalid", format!("{path}.{field}"), message)
            };
            match number {
                None => causes.push(required(&format!("{path}.containerPort"))),
                Some(n) if !(1..=65535).contains(&n) => causes.push(invalid(
                    "containerPort",
                    format!("Invalid value: {n}: must be between 1 and 65535, inclusive"),
                )),
                Some(n) if !ports.insert((n, protocol.to_owned())) => causes.push(Cause::new(
                    "FieldValueDuplicate",
                    format!("{path}.containerPort"),
                    format!("Duplicate value: \"{n}/{protocol}\": the containers of a pod share one port space"),
                )),
                Some(_) => {}
            }
            match protocol {
                "TCP" | "UDP" => {}
                other => causes.push(invalid(
                    "protocol",
                    format!("Unsupported value: {other:?}: supported values: \"TCP\", \"UDP\""),
                )),
            }
            if let Some(name) = port.get("name").and_then(Value::as_str) {
                if !is_port_name(name) {
                    causes.push(invalid("name", format!("Invalid value: {name:?}: must be no more than 15 characters, contain only lowercase letters, digits and '-', at least one letter, and not begin or end with '-' or hold \"--\"")));
                } else if !names.insert(name) {
                    causes.push(Cause::new(
                        "FieldValueDuplicate",
                        format!("{path}.name"),
                        format!("Duplicate value: {name:?}"),
                    ));
                }
            }
        }
    }
}

/// An IANA service name, what a named port must be (Kubernetes' `IsValidPortName`).
pub fn is_port_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

fn check_env(env: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    for (i, var) in env
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if var
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            causes.push(required(&format!("{path}.env[{i}].name")));
        }
    }
}

/// The smallest memory limit or request accepted: one WebAssembly page. Below it no module
/// with a memory can even start (a limit of `0` was accepted and the pod OOMKilled at start).
pub const MIN_MEMORY_BYTES: u64 = 64 * 1024;

fn check_resources(resources: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    check_amounts(resources, path, causes);
    if causes.is_empty() {
        check_requests_within_limits(resources, path, causes);
    }
}

/// A request above its limit can never be honoured (Kubernetes refuses it the same way).
fn check_requests_within_limits(resources: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    for (name, parse) in quantity::RESOURCES {
        let amount = |list: &str| {
            let text = quantity_text(resources?.get(list)?.get(name)?)?;
            Some((parse(&text).ok()?, text))
        };
        if let (Some((request, text)), Some((limit, limit_text))) =
            (amount("requests"), amount("limits"))
            && request > limit
        {
            causes.push(Cause::new(
                "FieldValueInvalid",
                format!("{path}.resources.requests.{name}"),
                format!("Invalid value: {text:?}: must be less than or equal to {name} limit of {limit_text}"),
            ));
        }
    }
}

/// A quantity as text: a string (`64Mi`) or a plain JSON number.
pub fn quantity_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn check_amounts(resources: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    for list in ["limits", "requests"] {
        for (name, parse) in quantity::RESOURCES {
            let Some(value) = resources
                .and_then(|r| r.get(list))
                .and_then(|l| l.get(name))
            else {
                continue;
            };
            let Some(text) = quantity_text(value) else {
                continue; // reported by the shape check
            };
            let field = format!("{path}.resources.{list}.{name}");
            match parse(&text) {
                Ok(amount) => check_amount(list, name, amount, &text, &field, causes),
                Err(_) => causes.push(Cause::new(
                    "FieldValueInvalid",
                    field,
                    format!(
                        "Invalid value: {text:?}: quantities must match the regular expression \
                         '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
                    ),
                )),
            }
        }
    }
}

/// Memory limits and requests of at least [`MIN_MEMORY_BYTES`]; CPU limits above zero
/// (a CPU request of zero is fine, as in Kubernetes).
fn check_amount(
    list: &str,
    name: &str,
    amount: u64,
    text: &str,
    field: &str,
    causes: &mut Vec<Cause>,
) {
    let problem = match (list, name) {
        (_, "memory") if amount < MIN_MEMORY_BYTES => {
            "must be at least 64Ki (one WebAssembly page)"
        }
        ("limits", "cpu") if amount == 0 => "must be greater than 0",
        _ => return,
    };
    causes.push(Cause::new(
        "FieldValueInvalid",
        field,
        format!("Invalid value: {text:?}: {problem}"),
    ));
}

/// A missing field.
pub fn required(field: &str) -> Cause {
    Cause::new("FieldValueRequired", field, "Required value")
}

/// DNS-1123 label: at most 63 of `[a-z0-9-]`, alphanumeric at both ends.
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn check_dns_label(name: &str, field: &str, causes: &mut Vec<Cause>) {
    if !is_dns_label(name) {
        causes.push(Cause::new(
            "FieldValueInvalid",
            field,
            format!(
                "Invalid value: {name:?}: a lowercase RFC 1123 label must consist of lower case \
                 alphanumeric characters or '-', start and end with an alphanumeric character, \
                 and be at most 63 characters"
            ),
        ));
    }
}

/// Checks a DNS-1123 subdomain (a host or object name).
pub fn check_dns_subdomain(name: &str, field: &str, causes: &mut Vec<Cause>) {
    if wasmfleet_protocol::names::validate_dns_subdomain("name", name).is_err() {
        causes.push(Cause::new(
            "FieldValueInvalid",
            field,
            format!(
                "Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower \
                 case alphanumeric characters, '-' or '.', and must start and end with an \
                 alphanumeric character"
            ),
        ));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "labels": {"app": "web"}, "creationTimestamp": null},
            "spec": {"containers": [{
                "name": "main", "image": "hello:latest", "args": ["print", "3"],
                "env": [{"name": "A", "value": "b"}],
                "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}, "requests": {"cpu": 0.1}},
            }], "restartPolicy": "Never"},
        })
    }

    fn fields(causes: &[Cause]) -> Vec<&str> {
        causes.iter().map(|c| c.field.as_str()).collect()
    }

    #[test]
    fn a_supported_pod_is_valid() {
        assert_eq!(validate_pod(&pod()), vec![]);
    }

    #[test]
    fn unsupported_fields_are_named_by_path() {
        let mut p = pod();
        p["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80, "hostPort": 80}]);
        p["spec"]["hostNetwork"] = json!(true);
        let causes = validate_pod(&p);
        assert_eq!(
            fields(&causes),
            ["spec.containers[0].ports[0].hostPort", "spec.hostNetwork"]
        );
        assert!(causes[0].message.contains("does not support"));
    }

    /// What `kubectl run` and `kubectl get -o yaml` of a Kubernetes pod carry.
    #[test]
    fn kubernetes_defaults_and_meaningless_settings_are_accepted() {
        let mut p = pod();
        let spec = p["spec"].as_object_mut().unwrap();
        for (field, value) in [
            ("dnsPolicy", json!("ClusterFirst")),
            ("schedulerName", json!("default-scheduler")),
            (
                "securityContext",
                json!({"runAsNonRoot": true, "runAsUser": 1000, "fsGroup": 2000, "seccompProfile": {"type": "RuntimeDefault"}}),
            ),
            ("enableServiceLinks", json!(true)),
            ("priority", json!(0)),
            ("preemptionPolicy", json!("PreemptLowerPriority")),
            ("serviceAccountName", json!("default")),
            ("serviceAccount", json!("default")),
            ("automountServiceAccountToken", json!(false)),
        ] {
            spec.insert(field.into(), value);
        }
        let c = p["spec"]["containers"][0].as_object_mut().unwrap();
        for (field, value) in [
            ("imagePullPolicy", json!("IfNotPresent")),
            ("terminationMessagePath", json!("/dev/termination-log")),
            ("terminationMessagePolicy", json!("File")),
            (
                "securityContext",
                json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}, "privileged": false}),
            ),
            ("stdin", json!(false)),
            ("tty", json!(false)),
        ] {
            c.insert(field.into(), value);
        }
        assert_eq!(validate_pod(&p), vec![]);
    }

    #[test]
    fn values_wasmfleet_cannot_honour_are_refused_by_name() {
        let mut p = pod();
        p["spec"]["dnsPolicy"] = json!("None");
        p["spec"]["schedulerName"] = json!("my-scheduler");
        p["spec"]["priority"] = json!(1000);
        p["spec"]["securityContext"] = json!({"sysctls": [{"name": "a", "value": "1"}]});
        p["spec"]["containers"][0]["stdin"] = json!(true);
        p["spec"]["containers"][0]["securityContext"] =
            json!({"privileged": true, "capabilities": {"add": ["NET_ADMIN"]}});
        let causes = validate_pod(&p);
        assert_eq!(
            fields(&causes),
            [
                "spec.containers[0].securityContext.capabilities.add",
                "spec.containers[0].securityContext.privileged",
                "spec.containers[0].stdin",
                "spec.dnsPolicy",
                "spec.priority",
                "spec.schedulerName",
                "spec.securityContext.sysctls",
            ]
        );
        assert!(
            causes[3]
                .message
                .contains(r#"Unsupported value: "None": supported values: "ClusterFirst""#),
            "{}",
            causes[3].message
        );
        assert!(
            causes[2].message.contains("supported values: \"false\""),
            "{}",
            causes[2].message
        );
    }

    #[test]
    fn container_ports_are_checked_across_the_pod() {
        let mut p = pod();
        p["spec"]["containers"][0]["ports"] = json!([
            {"name": "http", "containerPort": 8080},
            {"name": "http", "containerPort": 8081, "protocol": "TCP"},
            {"containerPort": 0},
            {"name": "Bad_Name", "containerPort": 9000, "protocol": "SCTP"},
            {"containerPort": 53, "protocol": "UDP"},
        ]);
        p["spec"]["containers"]
            .as_array_mut()
            .expect("containers")
            .push(json!({"name": "side", "image": "hello:v1", "ports": [{"containerPort": 8080}]}));
        let causes = validate_pod(&p);
        assert_eq!(
            fields(&causes),
            [
                "spec.containers[0].ports[1].name",
                "spec.containers[0].ports[2].containerPort",
                "spec.containers[0].ports[3].protocol",
                "spec.containers[0].ports[3].name",
                "spec.containers[1].ports[0].containerPort",
            ]
        );
        assert!(
            causes[4].message.contains("share one port space"),
            "{}",
            causes[4].message
        );
        let mut fine = pod();
        fine["spec"]["containers"][0]["ports"] = json!([
            {"name": "echo", "containerPort": 7},
            {"name": "echo-udp", "containerPort": 7, "protocol": "UDP"},
        ]);
        assert_eq!(validate_pod(&fine), vec![]);
    }

    #[test]
    fn egress_rules_must_parse() {
        let mut p = pod();
        p["metadata"]["annotations"] = json!({"wasmfleet.io/egress": "1.1.1.1:53, nope:0"});
        let causes = validate_pod(&p);
        assert_eq!(
            fields(&causes),
            ["metadata.annotations[wasmfleet.io/egress]"]
        );
        assert!(
            causes[0].message.contains("nope:0"),
            "{}",
            causes[0].message
        );
    }

    #[test]
    fn missing_required_fields_are_reported() {
        let p = json!({"metadata": {}, "spec": {"containers": [{"name": "a"}]}});
        assert_eq!(
            fields(&validate_pod(&p)),
            ["metadata.name", "spec.containers[0].image"]
        );
        let p = json!({"metadata": {"name": "x"}, "spec": {}});
        assert_eq!(fields(&validate_pod(&p)), ["spec.containers"]);
    }

    #[test]
    fn bad_values_are_reported() {
        let mut p = pod();
        p["metadata"]["name"] = json!("Web_1");
        p["spec"]["restartPolicy"] = json!("Sometimes");
        p["spec"]["containers"][0]["resources"]["limits"]["memory"] = json!("lots");
        p["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "main", "image": "x"}));
        assert_eq!(
            fields(&validate_pod(&p)),
            [
                "metadata.name",
                "spec.containers[0].resources.limits.memory",
                "spec.containers[1].name",
                "spec.restartPolicy",
            ]
        );
    }

    #[test]
    fn zero_and_tiny_limits_are_refused_naming_the_field() {
        let mut p = pod();
        let resources = &mut p["spec"]["containers"][0]["resources"];
        resources["limits"] = json!({"memory": "0", "cpu": "0"});
        resources["requests"] = json!({"memory": "1Ki", "cpu": "0"});
        let causes = validate_pod(&p);
        assert_eq!(
            fields(&causes),
            [
                "spec.containers[0].resources.limits.memory",
                "spec.containers[0].resources.limits.cpu",
                "spec.containers[0].resources.requests.memory",
            ]
        );
        assert!(
            causes[0].message.contains("at least 64Ki"),
            "{:?}",
            causes[0]
        );
        p["spec"]["containers"][0]["resources"]["limits"] = json!({"memory": "64Ki", "cpu": "1m"});
        p["spec"]["containers"][0]["resources"]["requests"] = json!({"memory": 65536});
        assert!(validate_pod(&p).is_empty(), "{:?}", validate_pod(&p));
    }

    #[test]
    fn a_request_above_its_limit_is_refused_naming_the_field() {
        let mut p = pod();
        p["spec"]["containers"][0]["resources"] = json!({"limits": {"memory": "32Mi", "cpu": "100m"}, "requests": {"memory": "64Mi", "cpu": "100m"}});
        let causes = validate_pod(&p);
        assert_eq!(
            fields(&causes),
            ["spec.containers[0].resources.requests.memory"]
        );
        assert!(
            causes[0]
                .message
                .contains("must be less than or equal to memory limit of 32Mi")
        );
    }

    #[test]
    fn wrong_types_are_reported() {
        let mut p = pod();
        p["spec"]["containers"][0]["args"] = json!("print 3");
        p["metadata"]["labels"]["n"] = json!(3);
        assert_eq!(
            fields(&validate_pod(&p)),
            ["metadata.labels.n", "spec.containers[0].args"]
        );
    }

    #[test]
    fn only_images_may_change_on_update() {
        let old = pod();
        let mut new_image = pod();
        new_image["spec"]["containers"][0]["image"] = json!("hello:v2");
        new_image["metadata"]["labels"]["x"] = json!("y");
        assert!(validate_pod_update(&old, &new_image).is_empty());
        let mut new_args = pod();
        new_args["spec"]["containers"][0]["args"] = json!(["exit", "1"]);
        assert_eq!(fields(&validate_pod_update(&old, &new_args)), ["spec"]);
    }
}
