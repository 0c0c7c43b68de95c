//! The Events an agent's status reports imply (what the kubelet records in Kubernetes):
//! `Pulled` when a container's module is first resolved (and again when it runs a new image),
//! `Started` when it (re)starts,
//! `BackOff` when it enters `CrashLoopBackOff`, `OOMKilled` when it was killed for memory,
//! `Failed` when it cannot run (a missing or invalid module), `Killing` when a graceful
//! delete starts stopping a running container or a new image restarted it ("definition
//! changed"), `Evicted` when the agent evicted the pod
//! (an `emptyDir` over its `sizeLimit`). Pure: [`between`] compares a pod before and
//! after a report (or the delete that marked it). Probe failures are not in any status field: agents report
//! them as they happen, and [`reported`] words them as the kubelet does (`Unhealthy`,
//! `Killing`).

use serde_json::Value;

use wasmfleet_protocol::pod::probe::{self, PodEventKind, ProbeKind};

use crate::events::Type;

/// One event: its type, reason and message.
pub type PodEvent = (Type, &'static str, String);

fn containers(pod: &Value) -> &[Value] {
    pod.pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// What changed for each container between `old` and `new`.
pub fn between(old: &Value, new: &Value) -> Vec<PodEvent> {
    let pod = new
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut events = Vec::new();
    let evicted = |pod: &Value| pod.pointer("/status/reason") == Some(&Value::from("Evicted"));
    if evicted(new) && !evicted(old) {
        let message = new.pointer("/status/message").and_then(Value::as_str);
        events.push((
            Type::Warning,
            "Evicted",
            message
                .unwrap_or("The pod was evicted")
                .trim_end()
                .to_owned(),
        ));
    }
    let deleted = |pod: &Value| pod.pointer("/metadata/deletionTimestamp").is_some();
    let stopping = deleted(new) && !deleted(old);
    for after in containers(new) {
        let name = after["name"].as_str().unwrap_or("");
        let before = containers(old)
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or(&Value::Null);
        let changed = |pointer: &str| after.pointer(pointer) != before.pointer(pointer);
        if replaced(new, before, after) {
            events.push((
                Type::Normal,
                "Killing",
                format!("Container {name} definition changed, will be restarted"),
            ));
        }
        if !after["imageID"].is_null() && changed("/imageID") {
            let image = after["image"].as_str().unwrap_or("");
            events.push((
                Type::Normal,
                "Pulled",
                format!("Successfully pulled module {image}"),
            ));
        }
        let started = after.pointer("/state/running/startedAt");
        if started.is_some() && changed("/state/running/startedAt") {
            events.push((Type::Normal, "Started", format!("Started container {name}")));
        }
        let waiting = after
            .pointer("/state/waiting/reason")
            .and_then(Value::as_str);
        if changed("/state/waiting/reason") {
            match waiting {
                Some("CrashLoopBackOff") => events.push((
                    Type::Warning,
                    "BackOff",
                    format!("Back-off restarting failed container {name} in pod {pod}"),
                )),
                Some(reason)
                    if reason.starts_with("Err")
                        || reason.contains("Invalid")
                        || reason == "CreateContainerConfigError" =>
                {
                    let message = after
                        .pointer("/state/waiting/message")
                        .and_then(Value::as_str)
                        .unwrap_or(reason);
                    events.push((Type::Warning, "Failed", format!("Error: {message}")));
                }
                _ => {}
            }
        }
        let oom = |c: &Value| {
            ["/state/terminated/reason", "/lastState/terminated/reason"]
                .iter()
                .any(|p| c.pointer(p).and_then(Value::as_str) == Some("OOMKilled"))
        };
        if stopping && after.pointer("/state/running").is_some() {
            events.push((
                Type::Normal,
                "Killing",
                format!("Stopping container {name}"),
            ));
        }
        let restarts = |c: &Value| c["restartCount"].as_i64().unwrap_or(0);
        if oom(after) && (!oom(before) || restarts(after) > restarts(before)) {
            events.push((
                Type::Warning,
                "OOMKilled",
                format!("Container {name} was killed: out of memory (its limit)"),
            ));
        }
    }
    events
}

/// Whether a container's run ended because its image changed (the agent ends it with 137
/// once the new module is loaded, or could not be): it restarted while its status named
/// another image than the one `pod`'s spec now asks for.
fn replaced(pod: &Value, before: &Value, after: &Value) -> bool {
    let name = &after["name"];
    let wanted = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .and_then(|specs| specs.iter().find(|c| &c["name"] == name))
        .map(|spec| &spec["image"]);
    let restarts = |c: &Value| c["restartCount"].as_i64().unwrap_or(0);
    let last = &after["lastState"]["terminated"];
    restarts(after) > restarts(before)
        && before["image"].is_string()
        && wanted.is_some_and(|image| image != &before["image"])
        && last["exitCode"] == 137
        && last["reason"] != "OOMKilled"
}

/// The Kubernetes event for a probe event an agent reported.
pub fn reported(event: &probe::PodEvent) -> PodEvent {
    let lower = |kind: ProbeKind| kind.title().to_ascii_lowercase();
    match event.kind {
        PodEventKind::ProbeFailed(kind) => (
            Type::Warning,
            "Unhealthy",
            format!("{} probe failed: {}", kind.title(), event.detail),
        ),
        PodEventKind::Restarting(kind) => (
            Type::Normal,
            "Killing",
            format!(
                "Container {} failed {} probe, will be restarted",
                event.container,
                lower(kind)
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(status: Value) -> Value {
        json!({"metadata": {"name": "web"}, "status": {"containerStatuses": [status]}})
    }

    fn reasons(events: &[PodEvent]) -> Vec<&str> {
        events.iter().map(|e| e.1).collect()
    }

    #[test]
    fn a_first_start_a_crash_loop_and_an_oom_each_say_so_once() {
        let pending = pod(
            json!({"name": "c", "image": "app:v1", "state": {"waiting": {"reason": "ContainerCreating"}}}),
        );
        let running = pod(
            json!({"name": "c", "image": "app:v1", "imageID": "sha256:1",
                                 "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}),
        );
        assert_eq!(reasons(&between(&pending, &running)), ["Pulled", "Started"]);
        assert!(
            between(&running, &running).is_empty(),
            "a repeated report says nothing"
        );
        let looping = pod(
            json!({"name": "c", "imageID": "sha256:1", "restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"reason": "OOMKilled"}}}),
        );
        assert_eq!(
            reasons(&between(&running, &looping)),
            ["BackOff", "OOMKilled"]
        );
        let missing = pod(
            json!({"name": "c", "state": {"waiting": {"reason": "ErrModuleNotFound", "message": "no module app:v9"}}}),
        );
        assert_eq!(between(&pending, &missing)[0].2, "Error: no module app:v9");
    }

    #[test]
    fn a_container_restarted_on_a_new_image_says_it_was_killed_and_pulled_it() {
        let mut on_v1 = pod(
            json!({"name": "c", "image": "app:v1", "imageID": "sha256:1",
                   "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}),
        );
        on_v1["spec"] = json!({"containers": [{"name": "c", "image": "app:v2"}]});
        let mut on_v2 = pod(
            json!({"name": "c", "image": "app:v2", "imageID": "sha256:2", "restartCount": 1,
                   "lastState": {"terminated": {"exitCode": 137, "reason": "Error"}},
                   "state": {"running": {"startedAt": "2026-01-01T00:01:00Z"}}}),
        );
        on_v2["spec"] = on_v1["spec"].clone();
        let events = between(&on_v1, &on_v2);
        assert_eq!(reasons(&events), ["Killing", "Pulled", "Started"]);
        assert_eq!(
            events[0].2,
            "Container c definition changed, will be restarted"
        );
        assert_eq!(events[1].2, "Successfully pulled module app:v2");
        assert!(between(&on_v2, &on_v2).is_empty(), "said once");

        // A crash (or an OOM kill) on the image the spec asks for is no definition change.
        let mut crashed = on_v2.clone();
        crashed["status"]["containerStatuses"][0]["restartCount"] = json!(2);
        assert!(!reasons(&between(&on_v2, &crashed)).contains(&"Killing"));
        let mut oom = on_v1.clone();
        oom["status"]["containerStatuses"][0]["restartCount"] = json!(1);
        oom["status"]["containerStatuses"][0]["lastState"] =
            json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}});
        assert!(!reasons(&between(&on_v1, &oom)).contains(&"Killing"));
    }

    #[test]
    fn a_graceful_delete_stops_each_running_container_once() {
        let running = pod(
            json!({"name": "c", "imageID": "sha256:1", "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}),
        );
        let mut marked = running.clone();
        marked["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:01:00Z");
        let events = between(&running, &marked);
        assert_eq!(reasons(&events), ["Killing"]);
        assert_eq!(events[0].2, "Stopping container c");
        assert!(
            between(&marked, &marked).is_empty(),
            "marked once, said once"
        );
        let mut finished = pod(json!({"name": "c", "state": {"terminated": {"exitCode": 0}}}));
        let before = finished.clone();
        finished["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:01:00Z");
        assert!(between(&before, &finished).is_empty(), "nothing to stop");
    }

    #[test]
    fn an_eviction_and_a_refused_host_path_are_warnings_said_once() {
        let running = pod(json!({"name": "c", "state": {"running": {"startedAt": "t"}}}));
        let mut evicted = running.clone();
        evicted["status"]["phase"] = json!("Failed");
        evicted["status"]["reason"] = json!("Evicted");
        evicted["status"]["message"] =
            json!("Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\". ");
        let events = between(&running, &evicted);
        assert_eq!(reasons(&events), ["Evicted"]);
        assert_eq!(events[0].0, Type::Warning);
        assert!(events[0].2.ends_with("\"1Mi\"."), "{}", events[0].2);
        assert!(between(&evicted, &evicted).is_empty(), "said once");

        let refused = pod(json!({"name": "c", "state": {"waiting": {
            "reason": "CreateContainerConfigError", "message": "volume \"dev\": not allowed"}}}));
        let events = between(&pod(json!({"name": "c"})), &refused);
        assert_eq!(reasons(&events), ["Failed"]);
        assert_eq!(events[0].2, "Error: volume \"dev\": not allowed");
    }

    #[test]
    fn probe_events_are_worded_as_the_kubelet_words_them() {
        let event = |kind| probe::PodEvent {
            uid: "u".into(),
            container: "web".into(),
            kind,
            detail: "dial tcp 10.42.0.5:8080: connection refused".into(),
        };
        assert_eq!(
            reported(&event(PodEventKind::ProbeFailed(ProbeKind::Readiness))),
            (
                Type::Warning,
                "Unhealthy",
                "Readiness probe failed: dial tcp 10.42.0.5:8080: connection refused".into()
            )
        );
        assert_eq!(
            reported(&event(PodEventKind::Restarting(ProbeKind::Liveness))),
            (
                Type::Normal,
                "Killing",
                "Container web failed liveness probe, will be restarted".into()
            )
        );
    }
}
