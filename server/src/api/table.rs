//! Server-side `Table` rendering: what `kubectl get` prints in its human-readable formats.
//!
//! kubectl asks for it with `Accept: application/json;as=Table;...`. Columns follow upstream
//! (`-o wide` shows the columns with priority 1). Rows carry the object's metadata as a
//! `PartialObjectMetadata`, which `-A` and `--show-labels` read.

use axum::http::{HeaderMap, header};
use serde_json::{Value, json};

use super::kinds::Kind;

/// Whether the client asked for a Table.
pub fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("as=Table"))
}

/// A Table of `objects`, read at `revision`.
pub fn render(
    kind: &Kind,
    objects: &[Value],
    revision: Option<&str>,
    now: jiff::Timestamp,
) -> Value {
    let columns: Vec<Value> = columns(kind)
        .iter()
        .map(|(name, priority)| {
            json!({"name": name, "type": "string", "format": if *name == "Name" {"name"} else {""},
                   "description": "", "priority": priority})
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            json!({
                "cells": cells(kind, obj, now),
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
                },
            })
        })
        .collect();
    let mut metadata = json!({});
    if let Some(revision) = revision {
        metadata["resourceVersion"] = revision.into();
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

fn columns(kind: &Kind) -> &'static [(&'static str, u8)] {
    match kind.plural {
        "pods" => &[
            ("Name", 0),
            ("Ready", 0),
            ("Status", 0),
            ("Restarts", 0),
            ("Age", 0),
            ("IP", 1),
            ("Node", 1),
        ],
        "nodes" => &[
            ("Name", 0),
            ("Status", 0),
            ("Roles", 0),
            ("Age", 0),
            ("Version", 0),
            ("Internal-IP", 1),
            ("OS-Image", 1),
            ("Kernel-Version", 1),
            ("Container-Runtime", 1),
        ],
        "namespaces" => &[("Name", 0), ("Status", 0), ("Age", 0)],
        _ => &[("Name", 0), ("Age", 0)],
    }
}

fn cells(kind: &Kind, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let text = |pointer: &str| str_at(obj, pointer).unwrap_or("<none>").to_owned();
    let name = text("/metadata/name");
    let age = age(obj, now);
    let cells: Vec<String> = match kind.plural {
        "pods" => vec![
            name,
            pod_ready(obj),
            pod_status(obj),
            pod_restarts(obj).to_string(),
            age,
            text("/status/podIP"),
            text("/spec/nodeName"),
        ],
        "nodes" => vec![
            name,
            node_status(obj),
            node_roles(obj),
            age,
            text("/status/nodeInfo/kubeletVersion"),
            node_address(obj, "InternalIP"),
            text("/status/nodeInfo/osImage"),
            text("/status/nodeInfo/kernelVersion"),
            text("/status/nodeInfo/containerRuntimeVersion"),
        ],
        "namespaces" => vec![name, text("/status/phase"), age],
        _ => vec![name, age],
    };
    cells.into_iter().map(Value::String).collect()
}

fn str_at<'a>(obj: &'a Value, pointer: &str) -> Option<&'a str> {
    obj.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn container_statuses(obj: &Value) -> &[Value] {
    obj.pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn pod_ready(obj: &Value) -> String {
    let total = obj
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let ready = container_statuses(obj)
        .iter()
        .filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
        .count();
    format!("{ready}/{total}")
}

/// Like kubectl: a container's waiting or terminated reason wins over the phase.
fn pod_status(obj: &Value) -> String {
    let reason = container_statuses(obj).iter().find_map(|c| {
        str_at(c, "/state/waiting/reason").or_else(|| str_at(c, "/state/terminated/reason"))
    });
    reason
        .or_else(|| str_at(obj, "/status/reason"))
        .or_else(|| str_at(obj, "/status/phase"))
        .unwrap_or("Unknown")
        .to_owned()
}

fn pod_restarts(obj: &Value) -> i64 {
    container_statuses(obj)
        .iter()
        .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
        .sum()
}

fn node_status(obj: &Value) -> String {
    let ready = obj
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        .and_then(|c| c.get("status").and_then(Value::as_str));
    let mut status = match ready {
        Some("True") => "Ready",
        Some("False") => "NotReady",
        _ => "Unknown",
    }
    .to_owned();
    if obj.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    status
}

fn node_roles(obj: &Value) -> String {
    let roles: Vec<&str> = obj
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(key, _)| key.strip_prefix("node-role.kubernetes.io/"))
        .collect();
    if roles.is_empty() {
        "<none>".to_owned()
    } else {
        roles.join(",")
    }
}

fn node_address(obj: &Value, kind: &str) -> String {
    obj.pointer("/status/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|a| a.get("type").and_then(Value::as_str) == Some(kind))
        .and_then(|a| a.get("address").and_then(Value::as_str))
        .unwrap_or("<none>")
        .to_owned()
}

fn age(obj: &Value, now: jiff::Timestamp) -> String {
    let created =
        str_at(obj, "/metadata/creationTimestamp").and_then(|t| t.parse::<jiff::Timestamp>().ok());
    match created {
        Some(created) => human_duration(now.as_second().saturating_sub(created.as_second())),
        None => "<unknown>".to_owned(),
    }
}

/// kubectl's short durations: `42s`, `3m12s`, `15m`, `4h5m`, `20h`, `3d4h`, `12d`, `3y`.
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86_400);
    match s {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 => format!("{m}m{}s", s % 60),
        _ if h < 3 => format!("{m}m"),
        _ if h < 8 => format!("{h}h{}m", m % 60),
        _ if h < 48 => format!("{h}h"),
        _ if d < 8 => format!("{d}d{}h", h % 24),
        _ if d < 365 * 2 => format!("{d}d"),
        _ => format!("{}y", d / 365),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::api::kinds::{NODES, PODS};

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(human_duration(42), "42s");
        assert_eq!(human_duration(192), "3m12s");
        assert_eq!(human_duration(900), "15m");
        assert_eq!(human_duration(4 * 3600 + 300), "4h5m");
        assert_eq!(human_duration(3 * 86_400 + 4 * 3600), "3d4h");
        assert_eq!(human_duration(-5), "0s");
    }

    #[test]
    fn pod_rows_show_readiness_reason_restarts_and_node() {
        let pod = json!({
            "metadata": {"name": "web", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"nodeName": "pi", "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Pending", "containerStatuses": [
                {"ready": true, "restartCount": 2, "state": {"running": {}}},
                {"ready": false, "restartCount": 1, "state": {"waiting": {"reason": "ErrModuleNotFound"}}},
            ]},
        });
        let now: jiff::Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let table = render(&PODS, &[pod], Some("7"), now);
        assert_eq!(
            table["rows"][0]["cells"],
            json!([
                "web",
                "1/2",
                "ErrModuleNotFound",
                "3",
                "60s",
                "<none>",
                "pi"
            ])
        );
        assert_eq!(table["metadata"]["resourceVersion"], "7");
        assert_eq!(table["rows"][0]["object"]["metadata"]["name"], "web");
    }

    #[test]
    fn node_rows_show_readiness_and_cordon() {
        let node = json!({
            "metadata": {"name": "pi"}, "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        });
        let table = render(&NODES, &[node], None, jiff::Timestamp::now());
        assert_eq!(table["rows"][0]["cells"][1], "Ready,SchedulingDisabled");
    }
}
