//! Table rows per kind, computed from the API objects the way kubectl prints them.
//!
//! Pure functions of the JSON objects and "now", so they are tested on fixtures.

use indicatif::HumanBytes;
use jiff::Timestamp;
use serde_json::Value;

use super::age::{age, since};
use super::table::Table;
use crate::kinds::Kind;

/// How a table is laid out.
#[derive(Debug, Clone, Copy)]
pub struct TableOptions {
    /// `-o wide`: the extra columns.
    pub wide: bool,
    /// `-A`: a leading NAMESPACE column (namespaced kinds only).
    pub all_namespaces: bool,
    /// The reference time for AGE columns.
    pub now: Timestamp,
}

/// Computes one table row from one object.
type RowFn = fn(&Value, &TableOptions) -> Vec<String>;

/// Renders `items` of `kind` as a table.
pub fn table(kind: Kind, items: &[Value], options: TableOptions) -> Table {
    let (headers, row): (&[&str], RowFn) = match kind {
        Kind::Pod if options.wide => (
            &["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"],
            pod_row,
        ),
        Kind::Pod => (&["NAME", "READY", "STATUS", "RESTARTS", "AGE"], pod_row),
        Kind::Node if options.wide => (
            &[
                "NAME", "STATUS", "ROLES", "AGE", "VERSION", "ARCH", "OS-IMAGE", "KERNEL",
            ],
            node_row,
        ),
        Kind::Node => (&["NAME", "STATUS", "ROLES", "AGE", "VERSION"], node_row),
        Kind::Namespace => (&["NAME", "STATUS", "AGE"], namespace_row),
        Kind::Module => (&["NAME", "TAG", "DIGEST", "SIZE"], module_row),
    };
    let mut table = Table::new(headers);
    table.rows = items.iter().map(|item| row(item, &options)).collect();
    if options.all_namespaces && kind.namespaced() {
        let namespaces = items
            .iter()
            .map(|item| text(&item["metadata"]["namespace"]).to_owned())
            .collect();
        table.prepend_column("NAMESPACE", namespaces);
    }
    table
}

fn pod_row(pod: &Value, options: &TableOptions) -> Vec<String> {
    let mut row = vec![
        name(pod),
        pod_ready(pod),
        pod_status(pod),
        pod_restarts(pod, options.now),
        age(&pod["metadata"]["creationTimestamp"], options.now),
    ];
    if options.wide {
        row.push(or_none(&pod["status"]["podIP"]));
        row.push(or_none(&pod["spec"]["nodeName"]));
    }
    row
}

fn node_row(node: &Value, options: &TableOptions) -> Vec<String> {
    let info = &node["status"]["nodeInfo"];
    let mut row = vec![
        name(node),
        node_status(node),
        node_roles(node),
        age(&node["metadata"]["creationTimestamp"], options.now),
        text(&info["kubeletVersion"]).to_owned(),
    ];
    if options.wide {
        for field in ["architecture", "osImage", "kernelVersion"] {
            row.push(or_unknown(&info[field]));
        }
    }
    row
}

fn namespace_row(namespace: &Value, options: &TableOptions) -> Vec<String> {
    let phase = text(&namespace["status"]["phase"]);
    vec![
        name(namespace),
        if phase.is_empty() { "Active" } else { phase }.to_owned(),
        age(&namespace["metadata"]["creationTimestamp"], options.now),
    ]
}

fn module_row(module: &Value, _options: &TableOptions) -> Vec<String> {
    vec![
        text(&module["name"]).to_owned(),
        text(&module["tag"]).to_owned(),
        text(&module["digest"]).to_owned(),
        module["size"].as_u64().map_or_else(
            || "<unknown>".to_owned(),
            |size| HumanBytes(size).to_string(),
        ),
    ]
}

/// `READY` of a pod: ready containers / containers in the spec.
pub fn pod_ready(pod: &Value) -> String {
    let total = array(&pod["spec"]["containers"]).len();
    let ready = array(&pod["status"]["containerStatuses"])
        .iter()
        .filter(|status| status["ready"].as_bool() == Some(true))
        .count();
    format!("{ready}/{total}")
}

/// `STATUS` of a pod, following kubectl's `printPod`: the pod's reason or phase, overridden
/// by a container's waiting or terminated reason (the first container's wins), `Terminating`
/// while a deletion is pending.
pub fn pod_status(pod: &Value) -> String {
    let status = &pod["status"];
    let mut reason = first_non_empty(&[text(&status["reason"]), text(&status["phase"])])
        .unwrap_or("Pending")
        .to_owned();
    let mut has_running = false;
    for container in array(&status["containerStatuses"]).iter().rev() {
        let state = &container["state"];
        if let Some(waiting) = non_empty(&state["waiting"]["reason"]) {
            reason = waiting.to_owned();
        } else if let Some(terminated) = non_empty(&state["terminated"]["reason"]) {
            reason = terminated.to_owned();
        } else if state["terminated"].is_object() {
            reason = exit_description(&state["terminated"]);
        } else if container["ready"].as_bool() == Some(true) && state["running"].is_object() {
            has_running = true;
        }
    }
    if reason == "Completed" && has_running {
        reason = if pod_ready_condition(pod) {
            "Running"
        } else {
            "NotReady"
        }
        .to_owned();
    }
    if !pod["metadata"]["deletionTimestamp"].is_null() {
        reason = if text(&status["reason"]) == "NodeLost" {
            "Unknown"
        } else {
            "Terminating"
        }
        .to_owned();
    }
    reason
}

fn exit_description(terminated: &Value) -> String {
    match terminated["signal"].as_i64().filter(|s| *s != 0) {
        Some(signal) => format!("Signal:{signal}"),
        None => format!("ExitCode:{}", terminated["exitCode"].as_i64().unwrap_or(0)),
    }
}

fn pod_ready_condition(pod: &Value) -> bool {
    array(&pod["status"]["conditions"])
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// `RESTARTS` of a pod: the sum over containers, with the time since the last one, e.g.
/// `3 (12s ago)`.
pub fn pod_restarts(pod: &Value, now: Timestamp) -> String {
    let statuses = array(&pod["status"]["containerStatuses"]);
    let restarts: i64 = statuses
        .iter()
        .filter_map(|s| s["restartCount"].as_i64())
        .sum();
    let last_finished = statuses
        .iter()
        .filter_map(|s| s["lastState"]["terminated"]["finishedAt"].as_str())
        .filter_map(|t| t.parse::<Timestamp>().ok())
        .max();
    match last_finished {
        Some(finished) if restarts > 0 => {
            let ago = since(&Value::from(finished.to_string()), now).unwrap_or_default();
            format!("{restarts} ({ago} ago)")
        }
        _ => restarts.to_string(),
    }
}

/// `STATUS` of a node: its Ready condition, plus `SchedulingDisabled` when cordoned.
pub fn node_status(node: &Value) -> String {
    let ready = array(&node["status"]["conditions"])
        .iter()
        .find(|c| c["type"] == "Ready")
        .map(|c| {
            if c["status"] == "True" {
                "Ready"
            } else {
                "NotReady"
            }
        })
        .unwrap_or("Unknown");
    if node["spec"]["unschedulable"].as_bool() == Some(true) {
        format!("{ready},SchedulingDisabled")
    } else {
        ready.to_owned()
    }
}

/// `ROLES` of a node, from `node-role.kubernetes.io/<role>` labels.
pub fn node_roles(node: &Value) -> String {
    let mut roles: Vec<&str> = node["metadata"]["labels"]
        .as_object()
        .map(|labels| {
            labels
                .keys()
                .filter_map(|key| key.strip_prefix("node-role.kubernetes.io/"))
                .filter(|role| !role.is_empty())
                .collect()
        })
        .unwrap_or_default();
    roles.sort_unstable();
    if roles.is_empty() {
        "<none>".to_owned()
    } else {
        roles.join(",")
    }
}

fn name(object: &Value) -> String {
    text(&object["metadata"]["name"]).to_owned()
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

fn non_empty(value: &Value) -> Option<&str> {
    value.as_str().filter(|s| !s.is_empty())
}

fn first_non_empty<'a>(candidates: &[&'a str]) -> Option<&'a str> {
    candidates.iter().copied().find(|s| !s.is_empty())
}

fn or_none(value: &Value) -> String {
    non_empty(value).unwrap_or("<none>").to_owned()
}

fn or_unknown(value: &Value) -> String {
    non_empty(value).unwrap_or("<unknown>").to_owned()
}

fn array(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2026-11-27T12:00:00Z".parse().expect("timestamp")
    }

    fn options(wide: bool, all_namespaces: bool) -> TableOptions {
        TableOptions {
            wide,
            all_namespaces,
            now: now(),
        }
    }

    fn pod(name: &str, status: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": "2026-11-27T11:59:30Z"},
            "spec": {"nodeName": "pi-1", "containers": [{"name": "main", "image": "hello:v1"}]},
            "status": status,
        })
    }

    fn container(state: Value, ready: bool, restarts: i64) -> Value {
        json!({"name": "main", "ready": ready, "restartCount": restarts, "state": state})
    }

    #[test]
    fn a_running_pod_shows_ready_running_and_its_age() {
        let running = pod(
            "hello",
            json!({"phase": "Running", "podIP": "10.42.0.5",
                   "containerStatuses": [container(json!({"running": {}}), true, 0)]}),
        );
        let table = table(Kind::Pod, &[running], options(false, false));
        assert_eq!(
            table.render(),
            "NAME    READY   STATUS    RESTARTS   AGE\nhello   1/1     Running   0          30s\n"
        );
    }

    #[test]
    fn wide_pods_add_ip_and_node() {
        let pending = pod("p", json!({"phase": "Pending"}));
        let table = table(Kind::Pod, &[pending], options(true, false));
        assert_eq!(table.headers.last().map(String::as_str), Some("NODE"));
        assert_eq!(
            table.rows[0][2..],
            ["Pending", "0", "30s", "<none>", "pi-1"]
        );
    }

    #[test]
    fn all_namespaces_prepends_the_namespace() {
        let table = table(Kind::Pod, &[pod("p", json!({}))], options(false, true));
        assert_eq!(table.headers[0], "NAMESPACE");
        assert_eq!(table.rows[0][..3], ["default", "p", "0/1"]);
    }

    #[test]
    fn a_waiting_reason_wins_over_the_phase() {
        let crashing = pod(
            "c",
            json!({"phase": "Running", "containerStatuses": [container(
                json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}}), false, 3)]}),
        );
        assert_eq!(pod_status(&crashing), "CrashLoopBackOff");
        let missing = pod(
            "m",
            json!({"phase": "Pending", "containerStatuses": [container(
                json!({"waiting": {"reason": "ErrModuleNotFound", "message": "module hello:v9 not found"}}), false, 0)]}),
        );
        assert_eq!(pod_status(&missing), "ErrModuleNotFound");
    }

    #[test]
    fn a_terminated_reason_wins_over_the_phase() {
        let oom = pod(
            "o",
            json!({"phase": "Failed", "containerStatuses": [container(
                json!({"terminated": {"reason": "OOMKilled", "exitCode": 137}}), false, 0)]}),
        );
        assert_eq!(pod_status(&oom), "OOMKilled");
        let done = pod(
            "d",
            json!({"phase": "Succeeded", "containerStatuses": [container(
                json!({"terminated": {"reason": "Completed", "exitCode": 0}}), false, 0)]}),
        );
        assert_eq!(pod_status(&done), "Completed");
    }

    #[test]
    fn a_terminated_container_without_reason_shows_its_exit_code() {
        let exited = pod(
            "e",
            json!({"phase": "Failed", "containerStatuses": [container(
                json!({"terminated": {"exitCode": 3}}), false, 0)]}),
        );
        assert_eq!(pod_status(&exited), "ExitCode:3");
    }

    #[test]
    fn the_pod_reason_wins_over_the_phase_and_deletion_shows_terminating() {
        let evicted = pod("e", json!({"phase": "Failed", "reason": "Evicted"}));
        assert_eq!(pod_status(&evicted), "Evicted");
        let mut deleting = pod("d", json!({"phase": "Running"}));
        deleting["metadata"]["deletionTimestamp"] = json!("2026-11-27T11:59:59Z");
        assert_eq!(pod_status(&deleting), "Terminating");
    }

    #[test]
    fn a_pod_without_status_is_pending() {
        assert_eq!(pod_status(&pod("new", Value::Null)), "Pending");
        assert_eq!(pod_ready(&pod("new", Value::Null)), "0/1");
    }

    #[test]
    fn restarts_show_the_time_since_the_last_one() {
        let mut status = container(json!({"waiting": {"reason": "CrashLoopBackOff"}}), false, 4);
        status["lastState"] =
            json!({"terminated": {"exitCode": 1, "finishedAt": "2026-11-27T11:59:48Z"}});
        let crashing = pod(
            "c",
            json!({"phase": "Running", "containerStatuses": [status]}),
        );
        assert_eq!(pod_restarts(&crashing, now()), "4 (12s ago)");
        assert_eq!(pod_restarts(&pod("p", json!({})), now()), "0");
    }

    fn node(ready: &str, unschedulable: bool) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "pi-1", "creationTimestamp": "2026-11-27T09:00:00Z",
                         "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/agent": "true", "kubernetes.io/arch": "arm64"}},
            "spec": {"unschedulable": unschedulable},
            "status": {
                "conditions": [{"type": "Ready", "status": ready}],
                "nodeInfo": {"kubeletVersion": "wasmfleet-v0.1.0", "architecture": "arm64",
                             "osImage": "Debian GNU/Linux 12 (bookworm)", "kernelVersion": "6.1.0-rpi7"}
            }
        })
    }

    #[test]
    fn nodes_show_readiness_roles_age_and_version() {
        let table = table(Kind::Node, &[node("True", false)], options(false, false));
        assert_eq!(
            table.render(),
            "NAME   STATUS   ROLES                 AGE   VERSION\n\
             pi-1   Ready    agent,control-plane   3h    wasmfleet-v0.1.0\n"
        );
    }

    #[test]
    fn wide_nodes_add_arch_os_image_and_kernel() {
        let table = table(Kind::Node, &[node("True", false)], options(true, false));
        assert_eq!(table.headers[5..], ["ARCH", "OS-IMAGE", "KERNEL"]);
        assert_eq!(
            table.rows[0][5..],
            ["arm64", "Debian GNU/Linux 12 (bookworm)", "6.1.0-rpi7"]
        );
    }

    #[test]
    fn a_cordoned_unready_node_says_so() {
        assert_eq!(
            node_status(&node("Unknown", true)),
            "NotReady,SchedulingDisabled"
        );
        assert_eq!(node_status(&json!({})), "Unknown");
        assert_eq!(node_roles(&json!({"metadata": {}})), "<none>");
    }

    #[test]
    fn namespaces_default_to_active() {
        let items = [
            json!({"metadata": {"name": "default", "creationTimestamp": "2026-11-27T11:00:00Z"}}),
            json!({"metadata": {"name": "old", "creationTimestamp": "2026-11-27T11:00:00Z"}, "status": {"phase": "Terminating"}}),
        ];
        let table = table(Kind::Namespace, &items, options(false, true));
        assert_eq!(
            table.render(),
            "NAME      STATUS        AGE\ndefault   Active        60m\nold       Terminating   60m\n"
        );
    }

    #[test]
    fn modules_show_name_tag_digest_and_human_size() {
        let items = [json!({"name": "hello", "tag": "v1", "digest": "sha256:ab12", "size": 46889})];
        let table = table(Kind::Module, &items, options(false, true));
        assert_eq!(
            table.render(),
            "NAME    TAG   DIGEST        SIZE\nhello   v1    sha256:ab12   45.79 KiB\n"
        );
    }
}
