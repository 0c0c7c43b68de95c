//! Pods: the node a pod is bound to, and whether it is ready. One home for these rules,
//! on the stored JSON and on the typed `k8s_openapi` pod alike.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use super::conditions::condition_status;

/// The node a pod is bound to (`spec.nodeName`, non-empty), whatever its state.
pub fn bound_node(pod: &Value) -> Option<&str> {
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|node| !node.is_empty())
}

/// The node a pod should run on: the one it is bound to, unless it is being deleted
/// (`metadata.deletionTimestamp` set). This is what a node is sent.
pub fn running_node(pod: &Value) -> Option<&str> {
    if super::termination::is_terminating(pod) {
        None
    } else {
        bound_node(pod)
    }
}

/// [`bound_node`] of a typed pod.
pub fn bound_node_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.node_name.as_deref())
        .filter(|node| !node.is_empty())
}

/// [`running_node`] of a typed pod.
pub fn running_node_of(pod: &Pod) -> Option<&str> {
    if pod.metadata.deletion_timestamp.is_some() {
        None
    } else {
        bound_node_of(pod)
    }
}

/// Whether the pod's `Ready` condition is `True`.
pub fn is_ready(pod: &Value) -> bool {
    condition_status(pod, "Ready") == Some("True")
}

fn container_ready_flags(pod: &Value) -> impl Iterator<Item = bool> + '_ {
    pod.pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| c.get("ready") == Some(&Value::Bool(true)))
}

/// How many container statuses say `ready: true` (kubectl's READY numerator).
pub fn ready_containers(pod: &Value) -> usize {
    container_ready_flags(pod).filter(|ready| *ready).count()
}

/// Whether any container status says `ready: true`.
pub fn any_container_ready(pod: &Value) -> bool {
    container_ready_flags(pod).any(|ready| ready)
}

/// Whether the pod has container statuses and every one says `ready: true`.
pub fn all_containers_ready(pod: &Value) -> bool {
    let mut flags = container_ready_flags(pod).peekable();
    flags.peek().is_some() && flags.all(|ready| ready)
}

/// Whether anything about the pod still says ready (its `Ready` condition or a container):
/// what must be withdrawn when its node becomes unreachable.
pub fn looks_ready(pod: &Value) -> bool {
    is_ready(pod) || any_container_ready(pod)
}

/// A new pod of a workload's `template`, controlled by `owner`: `{prefix}` plus a random
/// suffix as its `generateName`, the template's labels and annotations, `Pending`.
pub fn from_template(owner: &Value, template: &Value, prefix: &str) -> Option<Value> {
    let meta = |field: &str| {
        template
            .pointer(&format!("/metadata/{field}"))
            .filter(|v| v.is_object())
            .cloned()
            .unwrap_or_else(|| serde_json::json!({}))
    };
    Some(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": prefix,
            "namespace": owner.pointer("/metadata/namespace")?,
            "labels": meta("labels"),
            "annotations": meta("annotations"),
            "ownerReferences": [super::owners::controller_reference(owner)?],
        },
        "spec": template.get("spec")?,
        "status": {"phase": "Pending"},
    }))
}

/// Ready for at least `seconds` by its Ready condition's last transition: *available*,
/// as ReplicaSets and DaemonSets count it with `minReadySeconds`.
pub fn ready_for(pod: &Value, seconds: i64, now: jiff::Timestamp) -> bool {
    if !is_ready(pod) {
        return false;
    }
    if seconds <= 0 {
        return true;
    }
    ready_since(pod).is_some_and(|since| now.as_second() - since.as_second() >= seconds)
}

/// When the pod's Ready condition last changed.
fn ready_since(pod: &Value) -> Option<jiff::Timestamp> {
    super::conditions::condition(pod, "Ready")
        .and_then(|c| c.get("lastTransitionTime"))
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
}

/// How long until a ready pod that is not yet [`ready_for`] `seconds` becomes so (`None`
/// when it already is, or is not ready): when a controller counting it with
/// `minReadySeconds` must look again.
pub fn available_in(pod: &Value, seconds: i64, now: jiff::Timestamp) -> Option<Duration> {
    if !is_ready(pod) || ready_for(pod, seconds, now) {
        return None;
    }
    let since = ready_since(pod)?;
    // `ready_for` compares whole seconds: due at the start of that second.
    let due_ms = (since.as_second() + seconds).saturating_mul(1000);
    let left = due_ms.saturating_sub(now.as_millisecond()).max(0);
    Some(Duration::from_millis(u64::try_from(left).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn typed(pod: &Value) -> Pod {
        serde_json::from_value(pod.clone()).expect("a valid pod")
    }

    #[test]
    fn a_pod_is_bound_by_a_non_empty_node_name() {
        let bound = json!({"spec": {"nodeName": "pi-1", "containers": []}});
        let empty = json!({"spec": {"nodeName": "", "containers": []}});
        let unbound = json!({"spec": {"containers": []}});
        assert_eq!(bound_node(&bound), Some("pi-1"));
        assert_eq!(bound_node(&empty), None);
        assert_eq!(bound_node(&unbound), None);
        for pod in [&bound, &empty, &unbound] {
            assert_eq!(bound_node_of(&typed(pod)), bound_node(pod));
        }
    }

    #[test]
    fn a_pod_being_deleted_runs_nowhere_though_it_is_still_bound() {
        let pod = json!({
            "metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"nodeName": "pi-1", "containers": []}
        });
        assert_eq!(bound_node(&pod), Some("pi-1"));
        assert_eq!(running_node(&pod), None);
        assert_eq!(running_node_of(&typed(&pod)), None);
        let live = json!({"spec": {"nodeName": "pi-1", "containers": []}});
        assert_eq!(running_node(&live), Some("pi-1"));
        assert_eq!(running_node_of(&typed(&live)), Some("pi-1"));
    }

    #[test]
    fn readiness_comes_from_the_ready_condition_and_the_containers() {
        let ready = json!({"status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "a", "ready": true}, {"name": "b", "ready": true}]
        }});
        assert!(is_ready(&ready) && all_containers_ready(&ready) && looks_ready(&ready));
        let half = json!({"status": {
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "a", "ready": true}, {"name": "b", "ready": false}]
        }});
        assert!(!is_ready(&half) && !all_containers_ready(&half));
        assert!(any_container_ready(&half) && looks_ready(&half));
        assert_eq!(ready_containers(&half), 1);
        assert_eq!(ready_containers(&ready), 2);
        let none = json!({"status": {"phase": "Pending"}});
        assert!(!all_containers_ready(&none) && !any_container_ready(&none));
        assert!(!looks_ready(&none));
    }

    #[test]
    fn a_ready_pod_is_due_to_become_available_when_min_ready_seconds_have_passed() {
        let ready_at = |since: &str| {
            json!({"status": {"conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": since}
            ]}})
        };
        let pod = ready_at("2026-01-01T00:00:10Z");
        let at = |t: &str| t.parse::<jiff::Timestamp>().expect("a time");
        let now = at("2026-01-01T00:00:10.400Z");
        assert_eq!(
            available_in(&pod, 2, now),
            Some(Duration::from_millis(1600))
        );
        assert!(!ready_for(&pod, 2, at("2026-01-01T00:00:11.999Z")));
        assert!(ready_for(&pod, 2, at("2026-01-01T00:00:12Z")));
        assert_eq!(available_in(&pod, 2, at("2026-01-01T00:00:12Z")), None);
        assert_eq!(available_in(&pod, 0, now), None, "no minReadySeconds");
        let not_ready = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}});
        assert_eq!(available_in(&not_ready, 2, now), None);
    }
}
