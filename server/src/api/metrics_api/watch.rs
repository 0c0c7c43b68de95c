//! `?watch=true` on NodeMetrics and PodMetrics (`kubectl get podmetrics -w`): whenever a
//! node's usage report arrives (at most once a second, and every [`RECHECK`] so a stale
//! report or a deleted pod drops out without one), the collection is measured again and
//! what changed goes out as events: `ADDED` (a new object with a fresh report), `MODIFIED`
//! (a newer report), `DELETED` (no fresh report any more, or the object is gone).
//!
//! The `resourceVersion` of metrics is the count of reports recorded
//! ([`crate::fleet::usage::UsageBook::revision`]), which lists carry; a watch from one
//! starts with what is measured now and sends only later changes (a client that just listed
//! sees no repeats); without one it starts with every object `ADDED`. The stream ends on
//! `timeoutSeconds` (default 30 minutes), when the client goes away, or at shutdown.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{Measured, current, table_of};
use crate::api::ApiContext;
use crate::api::status::ApiError;
use crate::api::watch::{self as stream, Chunk};
use crate::k8s::selectors::Selector;
use crate::store::Scope;

/// How often the collection is measured again without a new report.
const RECHECK: Duration = Duration::from_secs(15);

/// The shortest time between two measurements (reports of many nodes come together).
const MIN_GAP: Duration = Duration::from_secs(1);

/// The metrics of a collection by `namespace/name`.
type Measurement = BTreeMap<String, Value>;

/// Starts the watch and returns its streaming response.
pub fn serve(
    ctx: &ApiContext,
    measured: Measured,
    scope: Scope,
    selector: Selector,
    query: &HashMap<String, String>,
    as_table: bool,
) -> Result<Response, ApiError> {
    let timeout = stream::timeout(query);
    let from_now = !matches!(
        query.get("resourceVersion").map(String::as_str),
        None | Some("" | "0")
    );
    let (tx, rx) = mpsc::channel::<Chunk>(64);
    let stream = Stream {
        ctx: ctx.clone(),
        measured,
        scope,
        selector,
        as_table,
        tx,
    };
    ctx.tracker.spawn(stream.run(from_now, timeout));
    stream::response(rx)
}

/// What changed from `before` to `after`, as watch events (type, object), in name order.
pub fn changes(before: &Measurement, after: &Measurement) -> Vec<(&'static str, Value)> {
    let mut events = Vec::new();
    for (key, metrics) in after {
        match before.get(key) {
            None => events.push(("ADDED", metrics.clone())),
            Some(old) if old != metrics => events.push(("MODIFIED", metrics.clone())),
            Some(_) => {}
        }
    }
    for (key, metrics) in before {
        if !after.contains_key(key) {
            events.push(("DELETED", metrics.clone()));
        }
    }
    events
}

fn measurement(items: Vec<Value>) -> Measurement {
    items
        .into_iter()
        .map(|metrics| {
            let meta = &metrics["metadata"];
            let key = format!(
                "{}/{}",
                meta["namespace"].as_str().unwrap_or(""),
                meta["name"].as_str().unwrap_or("")
            );
            (key, metrics)
        })
        .collect()
}

/// One watch connection's sending side.
struct Stream {
    ctx: ApiContext,
    measured: Measured,
    scope: Scope,
    selector: Selector,
    /// Send each object as a one-row Table (`kubectl get -w`).
    as_table: bool,
    tx: mpsc::Sender<Chunk>,
}

impl Stream {
    async fn run(self, from_now: bool, timeout: Duration) {
        let _counted = self.ctx.metrics.watch();
        let shutdown = self.ctx.shutdown.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut reports = self.ctx.usage.subscribe();
        let mut sent = Measurement::new();
        if from_now {
            reports.borrow_and_update();
            match self.measure().await {
                Some(now) => sent = now,
                None => return,
            }
        }
        let mut pass = true;
        loop {
            if pass {
                let Some(now) = self.measure().await else {
                    return;
                };
                for (kind, metrics) in changes(&sent, &now) {
                    if !self.send(kind, metrics).await {
                        return;
                    }
                }
                sent = now;
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = self.tx.closed() => return,
                    () = tokio::time::sleep_until(deadline) => return,
                    () = tokio::time::sleep(MIN_GAP) => {}
                }
            }
            pass = tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.tx.closed() => return,
                () = tokio::time::sleep_until(deadline) => return,
                changed = reports.changed() => changed.is_ok(),
                () = tokio::time::sleep(RECHECK) => true,
            };
            if !pass {
                return; // the book is gone: the server is stopping
            }
        }
    }

    /// The collection's metrics now; `None` (after telling the client) if it cannot be read.
    async fn measure(&self) -> Option<Measurement> {
        let items = current(
            &self.ctx,
            self.measured,
            self.scope.clone(),
            self.selector.clone(),
        )
        .await;
        match items {
            Ok(items) => Some(measurement(items)),
            Err(err) => {
                let event = json!({"type": "ERROR", "object": err.to_status()});
                self.send_line(event).await;
                None
            }
        }
    }

    async fn send(&self, kind: &str, metrics: Value) -> bool {
        let object = match self.as_table {
            true => table_of(&[metrics], None),
            false => metrics,
        };
        self.send_line(json!({"type": kind, "object": object}))
            .await
    }

    async fn send_line(&self, event: Value) -> bool {
        self.tx.send(stream::line(&event)).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(name: &str, timestamp: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "default"}, "timestamp": timestamp})
    }

    #[test]
    fn new_changed_and_gone_metrics_are_added_modified_and_deleted() {
        let before = measurement(vec![metrics("a", "t1"), metrics("b", "t1")]);
        let after = measurement(vec![
            metrics("a", "t1"),
            metrics("b", "t2"),
            metrics("c", "t2"),
        ]);
        let kinds: Vec<(&str, Value)> = changes(&before, &after);
        let summary: Vec<(&str, &str)> = kinds
            .iter()
            .map(|(kind, m)| (*kind, m["metadata"]["name"].as_str().unwrap()))
            .collect();
        assert_eq!(summary, [("MODIFIED", "b"), ("ADDED", "c")]);
        let gone = changes(&after, &measurement(vec![metrics("a", "t1")]));
        let summary: Vec<(&str, &str)> = gone
            .iter()
            .map(|(kind, m)| (*kind, m["metadata"]["name"].as_str().unwrap()))
            .collect();
        assert_eq!(summary, [("DELETED", "b"), ("DELETED", "c")]);
        assert!(changes(&after, &after).is_empty());
    }
}
