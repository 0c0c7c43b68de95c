//! Pods (core/v1): admission (validation against what wasmfleet supports, defaults,
//! immutability) and kubectl's print rules.

use axum::routing::{MethodRouter, get};
use serde_json::{Value, json};

use super::{Column, Kind, READ_WRITE, Subresource, keep_status, name_of};
use crate::api::cascade;
use crate::api::objects::DeleteOptions;
use crate::api::status::{ApiError, Cause};
use crate::api::table::{age, str_at, text};
use crate::api::{ApiContext, defaults, eviction, logs, pod_streams, router, validation};
use crate::fleet::delivery;
use crate::k8s;
use crate::k8s::termination::{self, Deletion};
use crate::store::{ObjectKey, Store, StoreError};

/// Pods (namespaced; also listed across namespaces at `/api/v1/pods`).
pub const KIND: Kind = Kind {
    group: "",
    version: "v1",
    api_version: "v1",
    plural: "pods",
    singular: "pod",
    kind: "Pod",
    list_kind: "PodList",
    short_names: &["po"],
    categories: &["all"],
    namespaced: true,
    verbs: READ_WRITE,
    subresources: &[
        Subresource {
            name: "log",
            kind: "Pod",
            group_version: None,
            verbs: &["get"],
            route: log_route,
        },
        eviction::SUBRESOURCE,
        pod_streams::EXEC,
        pod_streams::ATTACH,
        pod_streams::PORT_FORWARD,
        pod_streams::EPHEMERAL_CONTAINERS,
    ],
    columns: &[
        Column::new("Name"),
        Column::new("Ready"),
        Column::new("Status"),
        Column::new("Restarts"),
        Column::new("Age"),
        Column::wide("IP"),
        Column::wide("Node"),
    ],
    cells,
    admit_create,
    admit_update,
    allocate: None,
    delete,
};

fn log_route() -> MethodRouter<ApiContext> {
    get(logs::pod_logs).fallback(router::method_not_allowed)
}

/// A new pod: validated, defaulted, and `Pending` (whatever status the client sent).
pub fn admit_create(pod: &mut Value) -> Result<(), ApiError> {
    let causes = validation::validate_pod(pod);
    if !causes.is_empty() {
        return Err(ApiError::invalid("Pod", name_of(pod), &causes));
    }
    defaults::apply_pod_defaults(pod);
    super::serviceaccounts::set_account(pod);
    check_deliverable(pod)?;
    if let Some(map) = pod.as_object_mut() {
        map.insert("status".into(), json!({"phase": "Pending"}));
    }
    Ok(())
}

/// A changed pod: valid, and differing from `old` only in images, labels and annotations.
pub fn admit_update(old: &Value, pod: &mut Value) -> Result<(), ApiError> {
    let mut causes = validation::validate_pod(pod);
    if causes.is_empty() {
        defaults::apply_pod_defaults(pod);
        causes = validation::validate_pod_update(old, pod);
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid("Pod", name_of(pod), &causes));
    }
    check_deliverable(pod)?;
    keep_status(old, pod);
    Ok(())
}

/// Deleting a pod is graceful ([`termination`]): a pod that may be running on a node is
/// marked (`deletionTimestamp`, `deletionGracePeriodSeconds`) and answered as marked; its
/// node stops it and its report removes the object. A pod that runs nowhere, or a grace
/// period of 0, goes at once. Preconditions and dry runs as for any kind.
pub fn delete(store: &Store, key: &ObjectKey, options: &DeleteOptions) -> Result<Value, ApiError> {
    let expected = &options.preconditions;
    let current = cascade::would_delete(store, key, expected)?;
    let now = jiff::Timestamp::now();
    let deletion = termination::plan(&current, options.grace_period_seconds, now);
    if deletion == Deletion::Now {
        return cascade::delete(store, key, options);
    }
    if options.dry_run {
        let mut marked = current;
        termination::mark(&mut marked, &deletion);
        return Ok(marked);
    }
    // Decided again inside the write: the pod may have finished or been marked meanwhile.
    let mut at_once = false;
    let marked = store.update_with(key, |pod: &mut Value| {
        expected.check(key, pod)?;
        match termination::plan(pod, options.grace_period_seconds, now) {
            Deletion::Now => at_once = true,
            graceful => termination::mark(pod, &graceful),
        }
        Ok::<_, StoreError>(())
    })?;
    match at_once {
        true => cascade::delete(store, key, options),
        false => {
            crate::fleet::status::record_events(store, &current, &marked);
            Ok(marked)
        }
    }
}

/// Refuses a pod its node could not be sent (see [`delivery`]), naming the field.
fn check_deliverable(pod: &Value) -> Result<(), ApiError> {
    delivery::admit(pod).map_err(|why| {
        let reason = match why {
            delivery::Undeliverable::TooManyContainers { .. } => "FieldValueTooMany",
            delivery::Undeliverable::TooLarge { .. } => "FieldValueTooLong",
            _ => "FieldValueInvalid",
        };
        let cause = Cause::new(reason, why.field(), why.to_string());
        ApiError::invalid("Pod", name_of(pod), &[cause])
    })
}

fn cells(pod: &Value, now: jiff::Timestamp) -> Vec<Value> {
    vec![
        text(pod, "/metadata/name"),
        ready(pod).into(),
        status(pod).into(),
        restarts(pod).to_string().into(),
        age(pod, now),
        text(pod, "/status/podIP"),
        text(pod, "/spec/nodeName"),
    ]
}

fn container_statuses(pod: &Value) -> &[Value] {
    pod.pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn ready(pod: &Value) -> String {
    let total = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    format!("{}/{total}", k8s::pods::ready_containers(pod))
}

/// kubectl's STATUS (`printPod`): the phase or the pod's reason, overridden by the last
/// container with a waiting or terminated reason (`ExitCode:N` when it has none); a pod
/// whose containers run again after one completed shows `Running` (`NotReady` if not
/// Ready); a pod being deleted shows `Terminating`.
fn status(pod: &Value) -> String {
    let mut reason = str_at(pod, "/status/reason")
        .or_else(|| str_at(pod, "/status/phase"))
        .unwrap_or("Unknown")
        .to_owned();
    let mut running = false;
    for container in container_statuses(pod).iter().rev() {
        if let Some(waiting) = str_at(container, "/state/waiting/reason") {
            reason = waiting.to_owned();
        } else if let Some(terminated) = container.pointer("/state/terminated") {
            reason = match (str_at(terminated, "/reason"), terminated.get("exitCode")) {
                (Some(why), _) => why.to_owned(),
                (None, Some(code)) => format!("ExitCode:{code}"),
                (None, None) => "Terminated".to_owned(),
            };
        } else if container.get("ready").and_then(Value::as_bool) == Some(true)
            && container.pointer("/state/running").is_some()
        {
            running = true;
        }
    }
    if reason == "Completed" && running {
        reason = if k8s::pods::is_ready(pod) {
            "Running"
        } else {
            "NotReady"
        }
        .to_owned();
    }
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        reason = if str_at(pod, "/status/reason") == Some("NodeLost") {
            "Unknown"
        } else {
            "Terminating"
        }
        .to_owned();
    }
    reason
}

fn restarts(pod: &Value) -> i64 {
    container_statuses(pod)
        .iter()
        .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
        .sum()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::api::table::render;

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
        let table = render(&KIND, &[pod], Some("7"), now);
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
    fn status_follows_kubectl_for_exit_codes_restarts_and_deletion() {
        let with = |containers: Value, extra: Value| {
            let mut pod = json!({"status": {"phase": "Running", "containerStatuses": containers}});
            json_patch::merge(&mut pod, &extra);
            status(&pod)
        };
        let exit = json!([{"state": {"terminated": {"exitCode": 3}}}]);
        assert_eq!(with(exit, json!({})), "ExitCode:3");
        let completed_then_running = json!([
            {"ready": true, "state": {"running": {}}},
            {"state": {"terminated": {"reason": "Completed", "exitCode": 0}}},
        ]);
        assert_eq!(with(completed_then_running.clone(), json!({})), "NotReady");
        let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        assert_eq!(with(completed_then_running, ready), "Running");
        let deleting = json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}});
        assert_eq!(with(json!([]), deleting), "Terminating");
        assert_eq!(with(json!([]), json!({})), "Running");
    }
}
