//! The `metrics.k8s.io/v1beta1` objects, built from stored Nodes and Pods and the usage
//! their nodes reported (pure): quantities as metrics-server writes them (CPU in
//! nanocores, `123456n`; memory in KiB, `2048Ki`), `timestamp` (when the report arrived:
//! the end of its window) and `window` (a Go duration, which clients parse).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use wasmfleet_protocol::usage::Usage;

use crate::api::kinds::Column;
use crate::api::table::text;
use crate::fleet::usage::NodeUsage;

/// The group.
pub const GROUP: &str = "metrics.k8s.io";

/// Its one version.
pub const VERSION: &str = "v1beta1";

/// `apiVersion` of its objects.
pub const API_VERSION: &str = "metrics.k8s.io/v1beta1";

/// Its kinds (each read through `get` and `list`).
pub const KINDS: &[&str] = &["NodeMetrics", "PodMetrics"];

/// The item path of one of its [`KINDS`], OpenAPI style (`{namespace}`, `{name}`).
pub fn item_path(kind: &str) -> String {
    match kind {
        "NodeMetrics" => format!("/apis/{API_VERSION}/nodes/{{name}}"),
        _ => format!("/apis/{API_VERSION}/namespaces/{{namespace}}/pods/{{name}}"),
    }
}

/// CPU as a Kubernetes quantity in nanocores (`0` for none, as metrics-server writes it).
pub fn cpu(nanocores: u64) -> String {
    match nanocores {
        0 => "0".to_owned(),
        n => format!("{n}n"),
    }
}

/// Memory as a Kubernetes quantity: whole KiB as `Ki` (linear memory grows in 64 KiB
/// pages and `/proc/meminfo` counts in KiB, so this is exact), anything else in bytes.
pub fn memory(bytes: u64) -> String {
    match bytes {
        0 => "0".to_owned(),
        b if b % 1024 == 0 => format!("{}Ki", b / 1024),
        b => b.to_string(),
    }
}

/// A window as a Go duration (`15s`, `1.002s`), what `metav1.Duration` parses.
pub fn window(window: Duration) -> String {
    let millis = window.as_millis();
    match millis % 1000 {
        0 => format!("{}s", millis / 1000),
        rest => format!("{}.{rest:03}s", millis / 1000),
    }
}

fn usage(usage: &Usage) -> Value {
    json!({"cpu": cpu(usage.cpu_nanocores), "memory": memory(usage.memory_bytes)})
}

/// The object's `metadata` as metrics-server gives it: name, namespace and labels of the
/// measured object, created now.
fn metadata(obj: &Value, now: jiff::Timestamp) -> Value {
    let mut metadata = json!({
        "name": obj.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
        "creationTimestamp": seconds(now),
    });
    if let Some(namespace) = obj.pointer("/metadata/namespace") {
        metadata["namespace"] = namespace.clone();
    }
    if let Some(labels) = obj.pointer("/metadata/labels") {
        metadata["labels"] = labels.clone();
    }
    metadata
}

/// A time as `metav1.Time` writes it: RFC 3339 in whole seconds.
fn seconds(time: jiff::Timestamp) -> String {
    time.round(jiff::Unit::Second).unwrap_or(time).to_string()
}

fn stamped(report: &NodeUsage) -> (String, String) {
    (seconds(report.timestamp), window(report.window))
}

/// The NodeMetrics of the stored `node`, if it reported recently (a fresh entry of
/// `fresh`, the book's reports by node name).
pub fn node_metrics(
    node: &Value,
    fresh: &HashMap<String, Arc<NodeUsage>>,
    now: jiff::Timestamp,
) -> Option<Value> {
    let name = node.pointer("/metadata/name").and_then(Value::as_str)?;
    let report = fresh.get(name)?;
    let (timestamp, window) = stamped(report);
    Some(json!({
        "kind": "NodeMetrics",
        "apiVersion": API_VERSION,
        "metadata": metadata(node, now),
        "timestamp": timestamp,
        "window": window,
        "usage": usage(&report.node),
    }))
}

/// The PodMetrics of the stored `pod`: what the node it is bound to last reported for its
/// uid. `None` when that node has not reported it (not running, or a report from another
/// node, which may not speak for pods not bound to it).
pub fn pod_metrics(
    pod: &Value,
    fresh: &HashMap<String, Arc<NodeUsage>>,
    now: jiff::Timestamp,
) -> Option<Value> {
    let node = crate::k8s::pods::bound_node(pod)?;
    let uid = pod.pointer("/metadata/uid").and_then(Value::as_str)?;
    let report = fresh.get(node)?;
    let containers: Vec<Value> = report
        .pods
        .get(uid)?
        .iter()
        .map(|c| json!({"name": c.name, "usage": usage(&c.usage)}))
        .collect();
    let (timestamp, window) = stamped(report);
    Some(json!({
        "kind": "PodMetrics",
        "apiVersion": API_VERSION,
        "metadata": metadata(pod, now),
        "timestamp": timestamp,
        "window": window,
        "containers": containers,
    }))
}

/// A list of `kind` (`NodeMetricsList`, `PodMetricsList`).
pub fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"kind": kind, "apiVersion": API_VERSION, "metadata": {}, "items": items})
}

/// The columns `kubectl get nodemetrics` and `kubectl get podmetrics` print, as
/// metrics-server's tables have them.
pub const COLUMNS: &[Column] = &[
    Column::new("Name"),
    Column::new("CPU"),
    Column::new("Memory"),
    Column::new("Window"),
];

/// The cells of a NodeMetrics or PodMetrics (a pod's usage is its containers' sum).
pub fn cells(metrics: &Value, _now: jiff::Timestamp) -> Vec<Value> {
    let usages: Vec<&Value> = match metrics.get("containers").and_then(Value::as_array) {
        Some(containers) => containers.iter().map(|c| &c["usage"]).collect(),
        None => vec![&metrics["usage"]],
    };
    let total = |resource: &str, parse: fn(&str) -> Option<u64>| -> u64 {
        usages
            .iter()
            .filter_map(|usage| usage[resource].as_str().and_then(parse))
            .sum()
    };
    vec![
        text(metrics, "/metadata/name"),
        cpu(total("cpu", parse_cpu)).into(),
        memory(total("memory", parse_memory)).into(),
        text(metrics, "/window"),
    ]
}

/// Nanocores of a quantity [`cpu`] wrote.
fn parse_cpu(quantity: &str) -> Option<u64> {
    quantity.strip_suffix('n').unwrap_or(quantity).parse().ok()
}

/// Bytes of a quantity [`memory`] wrote.
fn parse_memory(quantity: &str) -> Option<u64> {
    match quantity.strip_suffix("Ki") {
        Some(kib) => kib.parse::<u64>().ok()?.checked_mul(1024),
        None => quantity.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use wasmfleet_protocol::usage::ContainerUsage;

    #[test]
    fn quantities_are_written_as_metrics_server_writes_them() {
        assert_eq!(cpu(0), "0");
        assert_eq!(cpu(1_234_567), "1234567n");
        assert_eq!(memory(0), "0");
        assert_eq!(memory(64 << 20), "65536Ki");
        assert_eq!(memory(1000), "1000");
        assert_eq!(window(Duration::from_secs(15)), "15s");
        assert_eq!(window(Duration::from_millis(1_002)), "1.002s");
        assert_eq!(window(Duration::from_millis(60_050)), "60.050s");
    }

    fn reports() -> HashMap<String, Arc<NodeUsage>> {
        let usage = NodeUsage {
            timestamp: "2026-12-07T18:00:00.4Z".parse().expect("time"),
            received: Instant::now(),
            window: Duration::from_secs(15),
            node: Usage {
                cpu_nanocores: 500_000_000,
                memory_bytes: 1 << 30,
            },
            pods: [(
                "uid-1".to_owned(),
                vec![ContainerUsage {
                    name: "main".into(),
                    usage: Usage {
                        cpu_nanocores: 2_000_000,
                        memory_bytes: 2 << 20,
                    },
                }],
            )]
            .into(),
        };
        [("pi-1".to_owned(), Arc::new(usage))].into()
    }

    fn pod(uid: &str, node: &str) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default", "uid": uid,
               "labels": {"app": "web"}}, "spec": {"nodeName": node}})
    }

    #[test]
    fn a_pod_gets_the_usage_its_node_reported_for_its_uid() {
        let now = jiff::Timestamp::now();
        let metrics = pod_metrics(&pod("uid-1", "pi-1"), &reports(), now).expect("reported");
        assert_eq!(metrics["kind"], "PodMetrics");
        assert_eq!(metrics["metadata"]["namespace"], "default");
        assert_eq!(metrics["metadata"]["labels"]["app"], "web");
        assert_eq!(metrics["timestamp"], "2026-12-07T18:00:00Z");
        assert_eq!(metrics["window"], "15s");
        assert_eq!(
            metrics["containers"],
            json!([{"name": "main", "usage": {"cpu": "2000000n", "memory": "2048Ki"}}])
        );
    }

    #[test]
    fn a_node_speaks_only_for_the_pods_bound_to_it() {
        let now = jiff::Timestamp::now();
        assert!(pod_metrics(&pod("uid-1", "pi-2"), &reports(), now).is_none());
        assert!(pod_metrics(&pod("uid-2", "pi-1"), &reports(), now).is_none());
        assert!(pod_metrics(&json!({"metadata": {"uid": "uid-1"}}), &reports(), now).is_none());
    }

    #[test]
    fn table_rows_read_back_what_was_written_and_sum_a_pods_containers() {
        for n in [0, 1, 1_234_567] {
            assert_eq!(parse_cpu(&cpu(n)), Some(n));
        }
        for bytes in [0, 1000, 64 << 20] {
            assert_eq!(parse_memory(&memory(bytes)), Some(bytes));
        }
        let pod = json!({"metadata": {"name": "web"}, "window": "15s", "containers": [
            {"name": "a", "usage": {"cpu": "1000n", "memory": "1024Ki"}},
            {"name": "b", "usage": {"cpu": "500n", "memory": "2048Ki"}},
        ]});
        let now = jiff::Timestamp::now();
        assert_eq!(
            cells(&pod, now),
            [json!("web"), json!("1500n"), json!("3072Ki"), json!("15s")]
        );
        let node = json!({"metadata": {"name": "pi-1"}, "window": "15s",
                          "usage": {"cpu": "0", "memory": "8Ki"}});
        assert_eq!(
            cells(&node, now),
            [json!("pi-1"), json!("0"), json!("8Ki"), json!("15s")]
        );
    }

    #[test]
    fn a_node_gets_its_own_figures() {
        let now = jiff::Timestamp::now();
        let node = json!({"metadata": {"name": "pi-1", "labels": {"zone": "a"}}});
        let metrics = node_metrics(&node, &reports(), now).expect("reported");
        assert_eq!(
            metrics["usage"],
            json!({"cpu": "500000000n", "memory": "1048576Ki"})
        );
        assert_eq!(metrics["metadata"]["labels"]["zone"], "a");
        assert!(metrics["metadata"].get("namespace").is_none());
        let silent = json!({"metadata": {"name": "pi-9"}});
        assert!(node_metrics(&silent, &reports(), now).is_none());
    }
}
