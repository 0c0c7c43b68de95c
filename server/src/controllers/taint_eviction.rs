//! Taint-based eviction (Kubernetes' NoExecute taint manager), on the shared [`runner`]: a
//! pod bound to a node with a `NoExecute` taint it does not tolerate is deleted; one it
//! tolerates for `tolerationSeconds` is deleted that long after the taint's `timeAdded`.
//! Every pod tolerates `node.kubernetes.io/unreachable` and `not-ready` for 300 s unless it
//! says otherwise (`api::defaults`), so the pods of a node that went away are deleted after
//! five minutes, their controllers replace them on other nodes, and when the node comes
//! back its agent stops the stale copies instead of running them twice. DaemonSet pods
//! tolerate those taints forever.
//!
//! [`runner`]: super::runner

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Taint, Toleration};
use serde_json::Value;

use super::runner::Controller;
use super::writes;
use crate::events::{self, Involved, Type};
use crate::informer::{Cache, Change, key_of};
use crate::scheduler::fit;
use crate::store::{ObjectKey, Store, StoreError};

/// The `source.component` of its events.
const COMPONENT: &str = "taint-eviction-controller";

/// The taint eviction controller.
#[derive(Debug, Default)]
pub struct TaintEviction;

/// One node and the pods bound to it.
#[derive(Debug, Clone)]
pub struct State {
    /// The node (`None`: gone).
    pub node: Option<Arc<Value>>,
    /// The pods bound to it.
    pub pods: Vec<Arc<Value>>,
    /// Now.
    pub now: jiff::Timestamp,
}

/// Whether a `NoExecute` taint should evict the pod now.
fn evicts(taint: &Taint, tolerations: &[Toleration], now: jiff::Timestamp) -> bool {
    if taint.effect != "NoExecute" {
        return false;
    }
    let matching: Vec<&Toleration> = tolerations
        .iter()
        .filter(|t| fit::tolerates(t, taint))
        .collect();
    if matching.is_empty() {
        return true;
    }
    // The pod stays as long as the most patient matching toleration allows.
    let Some(seconds) = matching
        .iter()
        .map(|t| t.toleration_seconds)
        .try_fold(0_i64, |most, seconds| seconds.map(|s| most.max(s)))
    else {
        return false; // one tolerates it forever
    };
    let added = taint.time_added.as_ref().map_or(now, |t| {
        t.0.to_string().parse::<jiff::Timestamp>().unwrap_or(now)
    });
    now.as_second() - added.as_second() >= seconds
}

/// Pure: the pods to evict.
pub fn plan(state: &State) -> Vec<ObjectKey> {
    let Some(node) = state.node.as_deref() else {
        return Vec::new();
    };
    let taints: Vec<Taint> =
        serde_json::from_value(node["spec"]["taints"].clone()).unwrap_or_default();
    if !taints.iter().any(|t| t.effect == "NoExecute") {
        return Vec::new();
    }
    state
        .pods
        .iter()
        .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
        .filter(|pod| {
            let tolerations: Vec<Toleration> =
                serde_json::from_value(pod["spec"]["tolerations"].clone()).unwrap_or_default();
            taints
                .iter()
                .any(|taint| evicts(taint, &tolerations, state.now))
        })
        .filter_map(|pod| key_of("pods", pod))
        .collect()
}

impl Controller for TaintEviction {
    type State = State;
    type Action = ObjectKey;

    fn name(&self) -> &'static str {
        "taint-eviction"
    }

    fn keys_for(&self, change: &Change) -> Vec<ObjectKey> {
        match change.key.resource.as_str() {
            "nodes" => vec![change.key.clone()],
            "pods" => change
                .new
                .as_deref()
                .and_then(|pod| crate::k8s::pods::bound_node(pod))
                .map(|node| vec![ObjectKey::cluster("nodes", node)])
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    fn all_keys(&self, cache: &Cache) -> Vec<ObjectKey> {
        cache.keys("nodes")
    }

    fn observe(&self, key: &ObjectKey, cache: &Cache) -> State {
        State {
            node: cache.get(key),
            pods: cache.pods_on_node(&key.name),
            now: jiff::Timestamp::now(),
        }
    }

    fn plan(&self, state: &State) -> Vec<ObjectKey> {
        plan(state)
    }

    fn execute(&self, key: &ObjectKey, store: &Store) -> Result<(), StoreError> {
        if let Some(pod) = store.get(key)? {
            let message = format!(
                "Marking for deletion Pod {}/{}",
                key.namespace.as_deref().unwrap_or(""),
                key.name
            );
            events::record(
                store,
                &Involved::of(&pod),
                Type::Normal,
                "TaintManagerEviction",
                &message,
                COMPONENT,
            );
        }
        writes::delete(store, key)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(added: &str) -> Arc<Value> {
        Arc::new(json!({"metadata": {"name": "pi"}, "spec": {"taints": [
            {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": added},
            {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule", "timeAdded": added},
        ]}}))
    }

    fn pod(name: &str, tolerations: Value) -> Arc<Value> {
        Arc::new(json!({"metadata": {"name": name, "namespace": "default"},
                        "spec": {"nodeName": "pi", "tolerations": tolerations}}))
    }

    #[test]
    fn pods_go_when_their_toleration_runs_out_and_forever_tolerations_stay() {
        let tolerate = |seconds: Value| {
            json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                    "effect": "NoExecute", "tolerationSeconds": seconds}])
        };
        let pods = vec![
            pod("none", json!([])),
            pod("five-minutes", tolerate(json!(300))),
            pod("ten-seconds", tolerate(json!(10))),
            pod("forever", tolerate(Value::Null)),
        ];
        let state = State {
            node: Some(node("2026-01-01T00:00:00Z")),
            pods,
            now: "2026-01-01T00:01:00Z".parse().expect("time"),
        };
        let names: Vec<String> = plan(&state).into_iter().map(|k| k.name).collect();
        assert_eq!(names, ["none", "ten-seconds"]);
        let healthy = State {
            node: Some(Arc::new(json!({"metadata": {"name": "pi"}, "spec": {}}))),
            ..state
        };
        assert!(plan(&healthy).is_empty());
    }
}
