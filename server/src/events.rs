//! Events (core/v1 `Event`): what the scheduler and the controllers tell users about an
//! object, shown by `kubectl describe` and `kubectl get events`.
//!
//! [`record`] writes one ([`record_many`] several in one commit): the same reason and message about the same object from the same
//! component is one Event whose `count` and `lastTimestamp` grow (Kubernetes' correlator),
//! so a loop that repeats itself cannot fill the store. Recording is best effort: a failed
//! write is logged, never the caller's failure. [`run_expiry`] deletes events whose last
//! occurrence is older than the TTL (one hour by default, as `kube-apiserver
//! --event-ttl`), so they never fill the disk.

use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::k8s::{names, time};
use crate::store::{ObjectKey, Scope, Store, StoreError};

/// How long an event is kept after it last happened.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// How often expired events are looked for.
const EXPIRY_INTERVAL: Duration = Duration::from_secs(60);

/// The longest message kept (longer ones are cut, marked with `...`).
const MAX_MESSAGE: usize = 1024;

/// `Normal` or `Warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// Something went as planned.
    Normal,
    /// Something a user may have to act on.
    Warning,
}

/// The object an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Involved {
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// Its namespace (events of cluster-scoped objects go to `default`).
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
}

impl Involved {
    /// The object itself (as stored: with `apiVersion` and `kind`).
    pub fn of(obj: &Value) -> Self {
        let field = |pointer: &str| {
            obj.pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        Self {
            api_version: field("/apiVersion"),
            kind: field("/kind"),
            namespace: field("/metadata/namespace"),
            name: field("/metadata/name"),
            uid: field("/metadata/uid"),
        }
    }

    /// The owner named by an `ownerReference` of an object in `namespace`.
    pub fn owner(namespace: &str, reference: &Value) -> Self {
        let field = |name: &str| reference[name].as_str().unwrap_or("").to_owned();
        Self {
            api_version: field("apiVersion"),
            kind: field("kind"),
            namespace: namespace.to_owned(),
            name: field("name"),
            uid: field("uid"),
        }
    }

    fn event_namespace(&self) -> &str {
        match self.namespace.as_str() {
            "" => "default",
            namespace => namespace,
        }
    }
}

/// Records an event about the controller (owner) of `obj`, if it has one: what a
/// controller says about the pods or ReplicaSets it creates and deletes.
pub fn record_on_controller(
    store: &Store,
    obj: &Value,
    kind: Type,
    reason: &str,
    message: &str,
    component: &str,
) {
    let namespace = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    if let Some(owner) = crate::k8s::owners::controller_of(obj) {
        record(
            store,
            &Involved::owner(namespace, owner),
            kind,
            reason,
            message,
            component,
        );
    }
}

/// Records an event about `involved` (see the module docs).
pub fn record(
    store: &Store,
    involved: &Involved,
    kind: Type,
    reason: &str,
    message: &str,
    component: &str,
) {
    let occurrence = Occurrence {
        involved: involved.clone(),
        kind,
        reason,
        message: message.to_owned(),
    };
    record_many(store, std::slice::from_ref(&occurrence), component);
}

/// One event to record with [`record_many`].
#[derive(Debug, Clone)]
pub struct Occurrence<'a> {
    /// What it is about.
    pub involved: Involved,
    /// `Normal` or `Warning`.
    pub kind: Type,
    /// Its reason.
    pub reason: &'a str,
    /// Its message.
    pub message: String,
}

/// Records several events from `component` in one store commit, aggregated like
/// [`record`] (a loop that places many pods at once pays one fsync, not one per event).
pub fn record_many(store: &Store, occurrences: &[Occurrence], component: &str) {
    let messages: Vec<String> = occurrences.iter().map(|o| cut(&o.message)).collect();
    let names: Vec<String> = occurrences
        .iter()
        .zip(&messages)
        .map(|(o, message)| {
            let involved = &o.involved;
            let identity = json!([
                involved.uid,
                involved.kind,
                involved.name,
                o.reason,
                message,
                component
            ]);
            format!("{}.{}", involved.name, names::template_hash(&identity))
        })
        .collect();
    let keys: Vec<ObjectKey> = occurrences
        .iter()
        .zip(&names)
        .map(|(o, name)| ObjectKey::namespaced("events", o.involved.event_namespace(), name))
        .collect();
    let now = time::now_rfc3339();
    let result = store.upsert_many(&keys, |index, current| {
        let o = &occurrences[index];
        let event = match current {
            Some(existing) => {
                let mut event = existing.clone();
                let count = event["count"].as_i64().unwrap_or(1);
                event["count"] = (count + 1).into();
                event["lastTimestamp"] = now.clone().into();
                event
            }
            None => new_event(
                &names[index],
                &o.involved,
                o.kind,
                o.reason,
                &messages[index],
                component,
                &now,
            ),
        };
        Ok::<_, StoreError>(Some(event))
    });
    if let Err(err) = result {
        let reasons: Vec<&str> = occurrences.iter().map(|o| o.reason).collect();
        tracing::warn!(%err, ?reasons, "recording events failed");
    }
}

fn new_event(
    name: &str,
    involved: &Involved,
    kind: Type,
    reason: &str,
    message: &str,
    component: &str,
    now: &str,
) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": involved.event_namespace()},
        "involvedObject": {
            "apiVersion": involved.api_version, "kind": involved.kind,
            "namespace": involved.namespace, "name": involved.name, "uid": involved.uid,
        },
        "reason": reason,
        "message": message,
        "type": match kind { Type::Normal => "Normal", Type::Warning => "Warning" },
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": "",
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    })
}

fn cut(message: &str) -> String {
    if message.len() <= MAX_MESSAGE {
        return message.to_owned();
    }
    let mut end = MAX_MESSAGE - 3;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &message[..end])
}

/// Whether an event last happened more than `ttl` before `now`.
pub fn expired(event: &Value, ttl: Duration, now: jiff::Timestamp) -> bool {
    let last = event["lastTimestamp"]
        .as_str()
        .or_else(|| event["eventTime"].as_str())
        .or_else(|| {
            event
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
        })
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    last.is_none_or(|last| now.as_second().saturating_sub(last.as_second()) > ttl)
}

/// Deletes expired events every minute until `shutdown`.
pub async fn run_expiry(store: Store, ttl: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(EXPIRY_INTERVAL);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let store = store.clone();
        let swept =
            tokio::task::spawn_blocking(move || sweep(&store, ttl, jiff::Timestamp::now())).await;
        match swept {
            Ok(Ok(0)) => {}
            Ok(Ok(deleted)) => tracing::debug!(deleted, "expired events deleted"),
            Ok(Err(err)) => tracing::warn!(%err, "deleting expired events failed"),
            Err(err) => tracing::warn!(%err, "the event expiry task failed"),
        }
    }
}

/// Deletes the events expired at `now`; returns how many.
pub fn sweep(store: &Store, ttl: Duration, now: jiff::Timestamp) -> Result<usize, StoreError> {
    let mut deleted = 0;
    for event in store.list(&Scope::all("events"))?.items {
        if !expired(&event, ttl, now) {
            continue;
        }
        let (Some(namespace), Some(name)) = (
            event.pointer("/metadata/namespace").and_then(Value::as_str),
            event.pointer("/metadata/name").and_then(Value::as_str),
        ) else {
            continue;
        };
        match store.delete(&ObjectKey::namespaced("events", namespace, name), None) {
            Ok(_) => deleted += 1,
            Err(StoreError::NotFound(_)) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "web", "namespace": "default", "uid": "p-1"}})
    }

    #[test]
    fn repeats_count_up_in_one_event_and_old_ones_expire() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path().join("state.redb")).expect("store");
        let involved = Involved::of(&pod());
        for _ in 0..3 {
            record(
                &store,
                &involved,
                Type::Warning,
                "BackOff",
                "Back-off restarting",
                "kubelet",
            );
        }
        record(
            &store,
            &involved,
            Type::Normal,
            "Scheduled",
            "assigned",
            "default-scheduler",
        );
        let events = store
            .list(&Scope::namespace("events", "default"))
            .expect("list")
            .items;
        assert_eq!(events.len(), 2);
        let back_off = events
            .iter()
            .find(|e| e["reason"] == "BackOff")
            .expect("BackOff");
        assert_eq!(back_off["count"], 3);
        assert_eq!(back_off["involvedObject"]["uid"], "p-1");
        assert_eq!(back_off["type"], "Warning");
        assert_eq!(back_off["source"]["component"], "kubelet");

        let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(7200);
        assert_eq!(
            sweep(&store, DEFAULT_TTL, jiff::Timestamp::now()).expect("sweep"),
            0
        );
        assert_eq!(sweep(&store, DEFAULT_TTL, later).expect("sweep"), 2);
    }

    #[test]
    fn long_messages_are_cut() {
        let long = "é".repeat(1000);
        let cut = cut(&long);
        assert!(cut.len() <= MAX_MESSAGE && cut.ends_with("..."));
    }
}
