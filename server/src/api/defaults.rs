//! What a Pod gets when its manifest leaves something out, applied at admission so the
//! stored object (and `kubectl get -o yaml`) shows what the cluster really does with it.
//!
//! Resources work like a Kubernetes LimitRange that every namespace has: a container that
//! names no limit gets [`DEFAULT_LIMITS`], one that names no request gets its limit as the
//! request when it set a limit itself (Kubernetes' own defaulting), else
//! [`DEFAULT_REQUESTS`]. A request above the default limit raises that limit to the request
//! rather than making the pod invalid. So every admitted pod has limits the agent enforces
//! (a runaway guest without them once took a device's whole memory) and requests the
//! scheduler counts against each node's allocatable.

use serde_json::{Map, Value};
use wasmfleet_protocol::quantity::{Parser, RESOURCES};

use super::validation::quantity_text;

/// A container's limits when it names none: enough for ordinary Wasm services, small enough
/// that a few runaway ones cannot take a Raspberry Pi.
pub const DEFAULT_LIMITS: Defaults = Defaults {
    memory: "128Mi",
    cpu: "500m",
};

/// A container's requests when it names neither a request nor a limit: what the scheduler
/// reserves for it (about what a small Wasm service really uses).
pub const DEFAULT_REQUESTS: Defaults = Defaults {
    memory: "16Mi",
    cpu: "10m",
};

/// A quantity per resource.
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    /// Memory.
    pub memory: &'static str,
    /// CPU.
    pub cpu: &'static str,
}

/// Fills in what a Pod gets when the manifest leaves it out (the pod is already valid).
pub fn apply_pod_defaults(pod: &mut Value) {
    if let Some(obj) = pod.as_object_mut() {
        obj.insert("apiVersion".into(), "v1".into());
        obj.insert("kind".into(), "Pod".into());
    }
    if let Some(spec) = pod.get_mut("spec") {
        apply_pod_spec_defaults(spec);
    }
}

/// Fills in a pod spec's defaults (of a Pod, or of a workload's pod template).
pub fn apply_pod_spec_defaults(spec: &mut Value) {
    let Some(spec) = spec.as_object_mut() else {
        return;
    };
    for (field, value) in pod_spec_defaults() {
        fill(spec, field, value);
    }
    if let Some(containers) = spec.get_mut("containers").and_then(Value::as_array_mut) {
        for container in containers.iter_mut() {
            default_resources(container);
            default_container(container);
            super::probes::apply_defaults(container);
        }
    }
    default_tolerations(spec);
}

/// Kubernetes' defaults for a pod spec's plain fields (`SetDefaults_PodSpec` and the
/// priority admission plugin), so stored pods look like a Kubernetes cluster's.
fn pod_spec_defaults() -> [(&'static str, Value); 8] {
    [
        ("restartPolicy", "Always".into()),
        ("terminationGracePeriodSeconds", 30.into()),
        ("dnsPolicy", "ClusterFirst".into()),
        ("schedulerName", "default-scheduler".into()),
        ("securityContext", Value::Object(Map::new())),
        ("enableServiceLinks", true.into()),
        ("priority", 0.into()),
        ("preemptionPolicy", "PreemptLowerPriority".into()),
    ]
}

/// Sets `field` to `value` when it is missing or null.
fn fill(map: &mut Map<String, Value>, field: &str, value: Value) {
    let slot = map.entry(field).or_insert(Value::Null);
    if slot.is_null() {
        *slot = value;
    }
}

/// A container's defaults (`SetDefaults_Container`): the pull policy (`Always` for
/// `:latest` or no tag, else `IfNotPresent`), the termination message settings and each
/// port's protocol.
fn default_container(container: &mut Value) {
    let Some(container) = container.as_object_mut() else {
        return;
    };
    let latest = container
        .get("image")
        .and_then(Value::as_str)
        .is_some_and(image_is_latest);
    let policy = if latest { "Always" } else { "IfNotPresent" };
    fill(container, "imagePullPolicy", policy.into());
    fill(
        container,
        "terminationMessagePath",
        "/dev/termination-log".into(),
    );
    fill(container, "terminationMessagePolicy", "File".into());
    let ports = container.get_mut("ports").and_then(Value::as_array_mut);
    for port in ports.into_iter().flatten().filter_map(Value::as_object_mut) {
        fill(port, "protocol", "TCP".into());
    }
}

/// Whether an image reference means "the latest": tagged `latest`, or not tagged (and
/// not pinned by digest).
fn image_is_latest(image: &str) -> bool {
    if image.contains('@') {
        return false;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) => tag == "latest",
        None => true,
    }
}

/// How long a pod stays bound to a node that became unreachable or not ready before it is
/// evicted (and its controller replaces it elsewhere): Kubernetes' DefaultTolerationSeconds.
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// Tolerates `node.kubernetes.io/not-ready` and `unreachable` (`NoExecute`) for
/// [`DEFAULT_TOLERATION_SECONDS`] unless the pod tolerates them itself.
fn default_tolerations(spec: &mut Map<String, Value>) {
    let tolerations = spec
        .entry("tolerations")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Some(list) = tolerations.as_array_mut() else {
        return;
    };
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let covered = list.iter().any(|t| {
            t["operator"] == "Exists"
                && (t["key"] == key || t["key"].as_str().is_none_or(str::is_empty))
                && (t["effect"] == "NoExecute" || t["effect"].as_str().is_none_or(str::is_empty))
        });
        if !covered {
            list.push(
                serde_json::json!({"key": key, "operator": "Exists", "effect": "NoExecute",
                                         "tolerationSeconds": DEFAULT_TOLERATION_SECONDS}),
            );
        }
    }
}

/// Gives one container a limit and a request for every resource in [`RESOURCES`].
fn default_resources(container: &mut Value) {
    let Some(resources) = object_entry(container, "resources").filter(|r| r.is_object()) else {
        return;
    };
    for (name, parse) in RESOURCES {
        let limit = resources
            .get("limits")
            .and_then(|l| l.get(name))
            .and_then(quantity_text);
        let request = resources
            .get("requests")
            .and_then(|r| r.get(name))
            .and_then(quantity_text);
        let (limit, request) = resolve(name, parse, limit, request);
        for (list, amount) in [("limits", limit), ("requests", request)] {
            if let Some(Value::Object(list)) = object_entry(resources, list) {
                list.insert(name.into(), amount.into());
            }
        }
    }
}

/// The (limit, request) pair of one resource from what the container named.
fn resolve(
    name: &str,
    parse: Parser,
    limit: Option<String>,
    request: Option<String>,
) -> (String, String) {
    let (default_limit, default_request) = match name {
        "memory" => (DEFAULT_LIMITS.memory, DEFAULT_REQUESTS.memory),
        _ => (DEFAULT_LIMITS.cpu, DEFAULT_REQUESTS.cpu),
    };
    match (limit, request) {
        (Some(limit), Some(request)) => (limit, request),
        (Some(limit), None) => (limit.clone(), limit),
        (None, Some(request)) => {
            let above_default = parse(&request)
                .ok()
                .zip(parse(default_limit).ok())
                .is_some_and(|(asked, default)| asked > default);
            let limit = if above_default {
                request.clone()
            } else {
                default_limit.to_owned()
            };
            (limit, request)
        }
        (None, None) => (default_limit.to_owned(), default_request.to_owned()),
    }
}

/// The object under `key` of `value` (created when missing or null); `None` when `value`
/// is not an object.
fn object_entry<'a>(value: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    let slot = value.as_object_mut()?.entry(key).or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    Some(slot)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn defaulted(resources: Value) -> Value {
        let mut pod = json!({"spec": {"containers": [{"name": "a", "resources": resources}]}});
        apply_pod_defaults(&mut pod);
        pod["spec"]["containers"][0]["resources"].clone()
    }

    #[test]
    fn defaults_fill_restart_policy_and_grace() {
        let mut p = json!({"spec": {"containers": []}});
        apply_pod_defaults(&mut p);
        assert_eq!(p["spec"]["restartPolicy"], "Always");
        assert_eq!(p["spec"]["terminationGracePeriodSeconds"], 30);
        assert_eq!(p["kind"], "Pod");
    }

    /// What `kubectl get -o yaml` shows of a pod from a Kubernetes cluster.
    #[test]
    fn pods_get_the_kubernetes_defaults_and_keep_what_they_name() {
        let mut pod = json!({"spec": {"dnsPolicy": "Default", "containers": [
            {"name": "a", "image": "hello:v1", "ports": [{"containerPort": 80}]},
            {"name": "b", "image": "reg.lan:5000/hello", "imagePullPolicy": "Never"},
            {"name": "c", "image": "hello:latest"},
        ]}});
        apply_pod_defaults(&mut pod);
        let spec = &pod["spec"];
        assert_eq!(spec["dnsPolicy"], "Default");
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["securityContext"], json!({}));
        assert_eq!(spec["enableServiceLinks"], true);
        assert_eq!(spec["priority"], 0);
        assert_eq!(spec["preemptionPolicy"], "PreemptLowerPriority");
        let a = &spec["containers"][0];
        assert_eq!(a["imagePullPolicy"], "IfNotPresent");
        assert_eq!(a["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(a["terminationMessagePolicy"], "File");
        assert_eq!(a["ports"][0]["protocol"], "TCP");
        assert_eq!(spec["containers"][1]["imagePullPolicy"], "Never");
        assert_eq!(spec["containers"][2]["imagePullPolicy"], "Always");
        let mut untagged =
            json!({"spec": {"containers": [{"name": "a", "image": "reg.lan:5000/hello"}]}});
        apply_pod_defaults(&mut untagged);
        assert_eq!(
            untagged["spec"]["containers"][0]["imagePullPolicy"],
            "Always"
        );
    }

    #[test]
    fn a_container_without_resources_gets_the_default_limits_and_requests() {
        let mut pod = json!({"spec": {"containers": [{"name": "a"}]}});
        apply_pod_defaults(&mut pod);
        assert_eq!(
            pod["spec"]["containers"][0]["resources"],
            json!({
                "limits": {"memory": "128Mi", "cpu": "500m"},
                "requests": {"memory": "16Mi", "cpu": "10m"}
            })
        );
    }

    #[test]
    fn a_limit_without_a_request_is_also_the_request() {
        assert_eq!(
            defaulted(json!({"limits": {"memory": "32Mi", "cpu": 1}})),
            json!({
                "limits": {"memory": "32Mi", "cpu": "1"},
                "requests": {"memory": "32Mi", "cpu": "1"}
            })
        );
    }

    #[test]
    fn a_request_above_the_default_limit_raises_the_limit_to_it() {
        assert_eq!(
            defaulted(json!({"requests": {"memory": "1Gi", "cpu": "100m"}})),
            json!({
                "limits": {"memory": "1Gi", "cpu": "500m"},
                "requests": {"memory": "1Gi", "cpu": "100m"}
            })
        );
    }

    #[test]
    fn named_limits_and_requests_are_kept() {
        let both = json!({
            "limits": {"memory": "64Mi", "cpu": "250m"},
            "requests": {"memory": "32Mi", "cpu": "0"}
        });
        assert_eq!(defaulted(both.clone()), both);
    }
}
