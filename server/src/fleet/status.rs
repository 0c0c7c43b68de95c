//! Status reports: the agent's view of its pods, written into the pods' Kubernetes status.
//!
//! [`merge_status`] is the pure mapping from a protocol [`PodStatus`] onto a stored pod
//! (phase, containerStatuses, conditions, startTime); [`apply_report`] writes the pods of a
//! report that are really bound to the reporting node and whose uid matches (found in the
//! informer's node index, re-checked inside each write), skipping unchanged ones (the store
//! writes nothing for a no-op edit). [`record_pod_events`] records the probe events an
//! agent reports about pods bound to it.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value, json};
use wasmfleet_protocol::pod::probe::{MAX_EVENTS_PER_MESSAGE, NodeEventKind, PodEvents};
use wasmfleet_protocol::pod::{
    ContainerState, ContainerStatus, PodImages, PodPhase, PodReason, PodStatus, StatusReport,
};

use super::pod_events;
use crate::events;
use crate::informer::{Cache, key_of};
use crate::k8s::conditions::{Condition, set_condition};
use crate::k8s::termination;
use crate::k8s::time::{now_rfc3339, rfc3339_from_unix_ms};
use crate::modules::ModuleStore;
use crate::store::{ObjectKey, Store, StoreError, resource_version};

/// Maps a spec image to its `sha256:...` id through the module store (`None` when the
/// image is unknown).
pub fn image_id_resolver(modules: ModuleStore) -> impl Fn(&str) -> Option<String> {
    move |image: &str| {
        modules
            .resolve(image)
            .ok()
            .flatten()
            .map(|m| format!("sha256:{}", m.digest))
    }
}

fn phase(phase: PodPhase) -> &'static str {
    match phase {
        PodPhase::Pending => "Pending",
        PodPhase::Running => "Running",
        PodPhase::Succeeded => "Succeeded",
        PodPhase::Failed => "Failed",
    }
}

/// A container state as Kubernetes JSON (`{"running": {...}}` and so on).
pub fn container_state(state: &ContainerState) -> Value {
    match state {
        ContainerState::Waiting { reason, message } => {
            let mut waiting = json!({"reason": reason});
            if !message.is_empty() {
                waiting["message"] = message.clone().into();
            }
            json!({"waiting": waiting})
        }
        ContainerState::Running { started_unix_ms } => {
            json!({"running": {"startedAt": rfc3339_from_unix_ms(*started_unix_ms)}})
        }
        ContainerState::Terminated {
            exit_code,
            reason,
            message,
            started_unix_ms,
            finished_unix_ms,
        } => {
            let mut terminated = json!({
                "exitCode": exit_code,
                "reason": reason,
                "startedAt": rfc3339_from_unix_ms(*started_unix_ms),
                "finishedAt": rfc3339_from_unix_ms(*finished_unix_ms),
            });
            if !message.is_empty() {
                terminated["message"] = message.clone().into();
            }
            json!({"terminated": terminated})
        }
    }
}

/// One container's Kubernetes status. `image` is the spec's image, `image_id` its digest.
/// `started` is Kubernetes': running, and past its startup probe (if any): `starting` says
/// the probe has not succeeded yet.
fn container_status(
    status: &ContainerStatus,
    starting: bool,
    pod_uid: &str,
    image: &str,
    image_id: &str,
) -> Value {
    let running = matches!(status.state, ContainerState::Running { .. });
    json!({
        "name": status.name,
        "image": image,
        "imageID": image_id,
        "containerID": format!("wasmtime://{pod_uid}/{}", status.name),
        "restartCount": status.restart_count,
        "ready": status.ready,
        "started": running && !starting,
        "state": container_state(&status.state),
        "lastState": status.last_state.as_ref().map_or_else(|| json!({}), container_state),
    })
}

/// The spec images of a stored pod, by container name.
fn spec_images(pod: &Value) -> HashMap<String, String> {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let name = c.get("name")?.as_str()?.to_owned();
            let image = c
                .get("image")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            Some((name, image))
        })
        .collect()
}

/// Applies a reported status to a stored pod. `starting` names its running containers
/// whose startup probe has not succeeded yet. Each container's image and `imageID` are the
/// ones the agent says it runs (`running`); from an agent that does not say, the spec's
/// image, with `image_id` mapping it to its `sha256:...` id. Returns whether anything
/// changed.
pub fn merge_status(
    pod: &mut Value,
    reported: &PodStatus,
    starting: &[&str],
    running: Option<&PodImages>,
    image_id: &dyn Fn(&str) -> Option<String>,
    now: &str,
) -> bool {
    let before = pod.clone();
    let images = spec_images(pod);
    let containers: Vec<Value> = reported
        .containers
        .iter()
        .map(|c| {
            let runs = running.and_then(|r| r.containers.iter().find(|i| i.name == c.name));
            let (image, id) = match runs {
                Some(runs) => (runs.image.clone(), format!("sha256:{}", runs.digest)),
                None => {
                    let image = images.get(&c.name).cloned().unwrap_or_default();
                    let id = image_id(&image).unwrap_or_default();
                    (image, id)
                }
            };
            let starting = starting.contains(&c.name.as_str());
            container_status(c, starting, &reported.uid, &image, &id)
        })
        .collect();
    let all_ready = !reported.containers.is_empty() && reported.containers.iter().all(|c| c.ready);
    let unready: Vec<&str> = reported
        .containers
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    let Some(status) = status_map(pod) else {
        return false;
    };
    status.insert("phase".into(), phase(reported.phase).into());
    status.insert("containerStatuses".into(), Value::Array(containers));
    if let Some(start) = reported.start_unix_ms {
        status.insert("startTime".into(), rfc3339_from_unix_ms(start).into());
    }
    set_pod_conditions(pod, reported.phase, all_ready, &unready, now);
    *pod != before
}

/// Writes why the pod ended (`status.reason`, `status.message`: an eviction) and says
/// whether that changed it. Reports without a reason leave them as they were.
pub fn set_reason(pod: &mut Value, why: &PodReason) -> bool {
    let Some(status) = status_map(pod) else {
        return false;
    };
    let changed = status.get("reason").and_then(Value::as_str) != Some(why.reason.as_str())
        || status.get("message").and_then(Value::as_str) != Some(why.message.as_str());
    status.insert("reason".into(), why.reason.clone().into());
    status.insert("message".into(), why.message.clone().into());
    changed
}

fn status_map(pod: &mut Value) -> Option<&mut Map<String, Value>> {
    pod.as_object_mut()?
        .entry("status")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
}

fn set_pod_conditions(
    pod: &mut Value,
    phase: PodPhase,
    all_ready: bool,
    unready: &[&str],
    now: &str,
) {
    let finished = matches!(phase, PodPhase::Succeeded | PodPhase::Failed);
    let unready_message = format!("containers with unready status: [{}]", unready.join(" "));
    let (containers_ready, ready_reason, ready_message) = if all_ready {
        ("True", "", "")
    } else if finished {
        ("False", "PodCompleted", "")
    } else {
        ("False", "ContainersNotReady", unready_message.as_str())
    };
    let ready = if all_ready && phase == PodPhase::Running {
        "True"
    } else {
        "False"
    };
    for condition in [
        Condition {
            type_: "Initialized",
            status: "True",
            reason: "",
            message: "",
        },
        Condition {
            type_: "Ready",
            status: ready,
            reason: ready_reason,
            message: ready_message,
        },
        Condition {
            type_: "ContainersReady",
            status: containers_ready,
            reason: ready_reason,
            message: ready_message,
        },
        Condition {
            type_: "PodScheduled",
            status: "True",
            reason: "",
            message: "",
        },
    ] {
        set_condition(pod, &condition, now);
    }
}

/// Writes a report's pods, then removes the pods being deleted that the node has stopped
/// ([`remove_stopped`]). Pods not bound to `node` or with another uid are ignored. Returns
/// how many pods changed.
pub fn apply_report(
    store: &Store,
    cache: &Cache,
    node: &str,
    report: &StatusReport,
    image_id: &dyn Fn(&str) -> Option<String>,
) -> Result<usize, StoreError> {
    let bound = pods_bound_to(cache, node);
    let running: HashMap<&str, &PodImages> =
        report.images.iter().map(|i| (i.uid.as_str(), i)).collect();
    let now = now_rfc3339();
    let reported: Vec<(&PodStatus, ObjectKey)> = report
        .pods
        .iter()
        .filter_map(|reported| match bound.get(&reported.uid) {
            Some(key) => Some((reported, key.clone())),
            None => {
                tracing::debug!(%node, uid = %reported.uid, "ignoring status of a pod not bound to this node");
                None
            }
        })
        .collect();
    let mut changed = 0;
    // One commit (one fsync) per batch of pods, not one per pod: a node that starts a
    // hundred pods reports them in one message.
    for batch in reported.chunks(WRITE_BATCH) {
        let keys: Vec<ObjectKey> = batch.iter().map(|(_, key)| key.clone()).collect();
        let mut before = vec![Value::Null; batch.len()];
        let written = store.upsert_many(&keys, |index, current| {
            let (reported, _) = batch[index];
            let Some(current) = current else {
                return Ok::<_, StoreError>(None);
            };
            if uid_and_node(current) != (Some(reported.uid.as_str()), Some(node)) {
                return Ok(None);
            }
            let mut edited = current.clone();
            let starting: Vec<&str> = report
                .starting
                .iter()
                .filter(|c| c.uid == reported.uid)
                .map(|c| c.container.as_str())
                .collect();
            let runs = running.get(reported.uid.as_str()).copied();
            let mut wrote = merge_status(&mut edited, reported, &starting, runs, image_id, &now);
            if let Some(why) = report.reasons.iter().find(|r| r.uid == reported.uid) {
                wrote |= set_reason(&mut edited, why);
            }
            if !wrote {
                return Ok(None);
            }
            before[index] = current.clone();
            Ok(Some(edited))
        })?;
        let occurrences: Vec<events::Occurrence> = before
            .iter()
            .zip(&written)
            .filter_map(|(before, after)| Some(occurrences_between(before, after.as_ref()?)))
            .flatten()
            .collect();
        events::record_many(store, &occurrences, "kubelet");
        changed += written.iter().flatten().count();
    }
    Ok(changed + remove_stopped(store, cache, node, report)?)
}

/// The most pods whose statuses one store commit writes.
const WRITE_BATCH: usize = 256;

/// Removes the pods bound to `node` that are being deleted and that its report no longer
/// lists: the node has stopped them ([`termination::confirmed_gone`]). Each is checked again
/// on the stored object and deleted at the resourceVersion it was checked at. Returns how
/// many were removed.
fn remove_stopped(
    store: &Store,
    cache: &Cache,
    node: &str,
    report: &StatusReport,
) -> Result<usize, StoreError> {
    let listed: HashSet<&str> = report.pods.iter().map(|p| p.uid.as_str()).collect();
    let mut removed = 0;
    for pod in cache.pods_on_node(node) {
        let uid = pod.pointer("/metadata/uid").and_then(Value::as_str);
        let listed = uid.is_some_and(|uid| listed.contains(uid));
        if !termination::confirmed_gone(&pod, node, listed) {
            continue;
        }
        let Some(key) = key_of("pods", &pod) else {
            continue;
        };
        for _attempt in 0..3 {
            let Some(current) = store.get(&key)? else {
                break;
            };
            let same = current.pointer("/metadata/uid").and_then(Value::as_str) == uid;
            if !same || !termination::confirmed_gone(&current, node, false) {
                break;
            }
            match store.delete(&key, resource_version(&current)) {
                Ok(_) => {
                    tracing::info!(%node, pod = %key, "the node stopped the pod; removed");
                    removed += 1;
                    break;
                }
                Err(StoreError::NotFound(_)) => break,
                Err(StoreError::Conflict { .. }) => continue,
                Err(err) => return Err(err),
            }
        }
    }
    Ok(removed)
}

/// Records what the report (or the delete that marked the pod) implies about the pod (see
/// [`pod_events`]).
pub(crate) fn record_events(store: &Store, before: &Value, after: &Value) {
    events::record_many(store, &occurrences_between(before, after), "kubelet");
}

/// The events a pod's change from `before` to `after` implies ([`pod_events::between`]).
fn occurrences_between(before: &Value, after: &Value) -> Vec<events::Occurrence<'static>> {
    let involved = events::Involved::of(after);
    pod_events::between(before, after)
        .into_iter()
        .map(|(kind, reason, message)| events::Occurrence {
            involved: involved.clone(),
            kind,
            reason,
            message,
        })
        .collect()
}

/// Records the events of `reported` about pods bound to `node` (others are ignored: a node
/// speaks only for its own pods), in one store commit.
pub fn record_pod_events(store: &Store, cache: &Cache, node: &str, reported: &PodEvents) {
    let pods: HashMap<String, std::sync::Arc<Value>> = cache
        .pods_on_node(node)
        .into_iter()
        .filter_map(|pod| Some((pod.pointer("/metadata/uid")?.as_str()?.to_owned(), pod)))
        .collect();
    let occurrences: Vec<events::Occurrence> = reported
        .events
        .iter()
        .take(MAX_EVENTS_PER_MESSAGE)
        .filter_map(|event| {
            let Some(pod) = pods.get(&event.uid) else {
                tracing::debug!(%node, uid = %event.uid, "ignoring an event about a pod not bound to this node");
                return None;
            };
            let (kind, reason, message) = pod_events::reported(event);
            Some(events::Occurrence {
                involved: events::Involved::of(pod),
                kind,
                reason,
                message,
            })
        })
        .collect();
    events::record_many(store, &occurrences, "kubelet");
    record_node_events(store, cache, node, reported);
}

/// Records the events of `reported` about `node` itself on its Node object.
fn record_node_events(store: &Store, cache: &Cache, node: &str, reported: &PodEvents) {
    if reported.node_events.is_empty() {
        return;
    }
    let Some(object) = cache.get(&ObjectKey::cluster("nodes", node)) else {
        tracing::debug!(%node, "ignoring events about a node that has no Node object");
        return;
    };
    let occurrences: Vec<events::Occurrence> = reported
        .node_events
        .iter()
        .take(MAX_EVENTS_PER_MESSAGE)
        .map(|event| {
            let (kind, reason) = match event.kind {
                NodeEventKind::FailedToListen => (events::Type::Warning, "FailedToListen"),
                NodeEventKind::PeerReachedDirectly => (events::Type::Normal, "PeerReachedDirectly"),
                NodeEventKind::PeerReachedThroughRelay => {
                    (events::Type::Normal, "PeerReachedThroughRelay")
                }
            };
            events::Occurrence {
                involved: events::Involved::of(&object),
                kind,
                reason,
                message: event.detail.clone(),
            }
        })
        .collect();
    events::record_many(store, &occurrences, "wasmfleet-agent");
}

fn uid_and_node(obj: &Value) -> (Option<&str>, Option<&str>) {
    (
        obj.pointer("/metadata/uid").and_then(Value::as_str),
        obj.pointer("/spec/nodeName").and_then(Value::as_str),
    )
}

/// uid → key of every pod bound to `node`, from the cache's node index (the write
/// re-checks uid and node inside its transaction).
///
/// The cache is never behind what the agent reports about: an agent learns of a pod only
/// from the desired-state publisher, which read it from this same cache, and the cache only
/// moves forward (after a server restart it is listed before the fleet link starts). A uid
/// missing here was deleted (or re-bound) since, and ignoring its status is right.
fn pods_bound_to(cache: &Cache, node: &str) -> HashMap<String, ObjectKey> {
    cache
        .pods_on_node(node)
        .iter()
        .filter_map(|pod| {
            let uid = pod.pointer("/metadata/uid")?.as_str()?.to_owned();
            Some((uid, key_of("pods", pod)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored_pod() -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u-1"},
            "spec": {"nodeName": "pi-1", "containers": [
                {"name": "a", "image": "hello:v1"},
                {"name": "b", "image": "other:v2"}
            ]},
            "status": {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "True", "reason": "", "message": "", "lastTransitionTime": "2024-01-01T00:00:00Z"}
            ]}
        })
    }

    fn image_id(image: &str) -> Option<String> {
        (image == "hello:v1").then(|| format!("sha256:{}", "ab".repeat(32)))
    }

    fn report() -> PodStatus {
        PodStatus {
            uid: "u-1".into(),
            phase: PodPhase::Running,
            start_unix_ms: Some(1_700_000_000_000),
            containers: vec![
                ContainerStatus {
                    name: "a".into(),
                    restart_count: 2,
                    state: ContainerState::Running {
                        started_unix_ms: 1_700_000_001_000,
                    },
                    last_state: Some(ContainerState::Terminated {
                        exit_code: 137,
                        reason: "OOMKilled".into(),
                        message: String::new(),
                        started_unix_ms: 1_700_000_000_000,
                        finished_unix_ms: 1_700_000_000_500,
                    }),
                    ready: true,
                },
                ContainerStatus {
                    name: "b".into(),
                    restart_count: 0,
                    state: ContainerState::Waiting {
                        reason: "CrashLoopBackOff".into(),
                        message: "back-off 10s".into(),
                    },
                    last_state: None,
                    ready: false,
                },
            ],
        }
    }

    #[test]
    fn a_report_becomes_kubernetes_pod_status() {
        let mut pod = stored_pod();
        assert!(merge_status(
            &mut pod,
            &report(),
            &[],
            None,
            &image_id,
            "2024-01-01T00:00:01Z"
        ));
        let status = &pod["status"];
        assert_eq!(status["phase"], "Running");
        assert_eq!(status["startTime"], "2023-11-14T22:13:20Z");
        let a = &status["containerStatuses"][0];
        assert_eq!(a["name"], "a");
        assert_eq!(a["image"], "hello:v1");
        assert_eq!(a["imageID"], format!("sha256:{}", "ab".repeat(32)));
        assert_eq!(a["restartCount"], 2);
        assert_eq!(a["ready"], true);
        assert_eq!(a["state"]["running"]["startedAt"], "2023-11-14T22:13:21Z");
        assert_eq!(a["lastState"]["terminated"]["exitCode"], 137);
        assert_eq!(a["lastState"]["terminated"]["reason"], "OOMKilled");
        let b = &status["containerStatuses"][1];
        assert_eq!(b["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(b["lastState"], json!({}));
        assert_eq!(
            a["started"], true,
            "running, without a startup probe pending"
        );
        assert_eq!(b["started"], false, "not running");
        let typed: k8s_openapi::api::core::v1::Pod =
            serde_json::from_value(pod.clone()).expect("valid pod");
        let conditions = typed.status.and_then(|s| s.conditions).unwrap_or_default();
        let get = |t: &str| {
            conditions
                .iter()
                .find(|c| c.type_ == t)
                .map(|c| c.status.clone())
        };
        assert_eq!(get("Ready").as_deref(), Some("False"));
        assert_eq!(get("ContainersReady").as_deref(), Some("False"));
        assert_eq!(get("Initialized").as_deref(), Some("True"));
        assert_eq!(get("PodScheduled").as_deref(), Some("True"));
    }

    #[test]
    fn status_names_the_image_the_agent_runs_not_a_newer_spec() {
        let mut pod = stored_pod();
        pod["spec"]["containers"][0]["image"] = "hello:v2".into();
        let running = PodImages {
            uid: "u-1".into(),
            containers: vec![wasmfleet_protocol::pod::RunningImage {
                name: "a".into(),
                image: "hello:v1".into(),
                digest: "cd".repeat(32),
            }],
        };
        merge_status(&mut pod, &report(), &[], Some(&running), &image_id, "t1");
        let a = &pod["status"]["containerStatuses"][0];
        assert_eq!(a["image"], "hello:v1");
        assert_eq!(a["imageID"], format!("sha256:{}", "cd".repeat(32)));
        // A container the agent says nothing about: the spec's image.
        assert_eq!(pod["status"]["containerStatuses"][1]["image"], "other:v2");
    }

    #[test]
    fn a_pod_whose_containers_are_all_ready_and_running_is_ready() {
        let mut pod = stored_pod();
        let mut all_ready = report();
        all_ready.containers[1].ready = true;
        all_ready.containers[1].state = ContainerState::Running { started_unix_ms: 1 };
        merge_status(&mut pod, &all_ready, &[], None, &image_id, "t1");
        let ready = pod["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
            .map(|c| c["status"].clone());
        assert_eq!(ready, Some(json!("True")));
    }

    #[test]
    fn the_same_report_twice_changes_nothing_the_second_time() {
        let mut pod = stored_pod();
        assert!(merge_status(
            &mut pod,
            &report(),
            &[],
            None,
            &image_id,
            "t1"
        ));
        assert!(!merge_status(
            &mut pod,
            &report(),
            &[],
            None,
            &image_id,
            "t2"
        ));
    }

    #[test]
    fn a_finished_pod_reports_completed_conditions() {
        let mut pod = stored_pod();
        let done = PodStatus {
            uid: "u-1".into(),
            phase: PodPhase::Succeeded,
            start_unix_ms: None,
            containers: vec![ContainerStatus {
                name: "a".into(),
                restart_count: 0,
                state: ContainerState::Terminated {
                    exit_code: 0,
                    reason: "Completed".into(),
                    message: String::new(),
                    started_unix_ms: 0,
                    finished_unix_ms: 1000,
                },
                last_state: None,
                ready: false,
            }],
        };
        merge_status(&mut pod, &done, &[], None, &image_id, "t1");
        assert_eq!(pod["status"]["phase"], "Succeeded");
        assert_eq!(
            pod["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"],
            "1970-01-01T00:00:01Z"
        );
        let ready = pod["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(ready["reason"], "PodCompleted");
    }

    #[test]
    fn a_running_container_has_started_only_once_its_startup_probe_succeeded() {
        let mut pod = stored_pod();
        let started = |pod: &Value| pod["status"]["containerStatuses"][0]["started"].clone();
        merge_status(&mut pod, &report(), &["a"], None, &image_id, "t1");
        assert_eq!(started(&pod), false, "running, startup probe pending");
        assert!(merge_status(
            &mut pod,
            &report(),
            &[],
            None,
            &image_id,
            "t2"
        ));
        assert_eq!(started(&pod), true);
    }
}
