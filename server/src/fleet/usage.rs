//! The latest usage each node reported (`n/{node}/up/usage`), kept in memory, as
//! metrics-server keeps its scrapes; the store never sees it. A server that stops saves
//! the fresh reports to a file ([`UsageBook::save`]) and the next one reads them back
//! ([`UsageBook::restore`]), so `kubectl top` answers across a restart with the reports'
//! own timestamps, no write per report and no message to the agents; after a crash it is
//! empty until their next reports.
//!
//! A node's report replaces its previous one whole, so the pods it no longer lists are
//! forgotten with it; a report older than [`stale_after`] its window counts as gone (the
//! node stopped reporting: offline, or deleted), and such entries are dropped at most
//! once a minute when reports arrive, which bounds the book by the nodes that report.
//! Which pods and nodes are shown is decided where they are served (`api::metrics_api`),
//! against the store: a pod is shown only while it exists and is bound to the node that
//! reported it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use wasmfleet_protocol::usage::{ContainerUsage, InvalidUsage, PodUsage, Usage, UsageReport};

/// How often stale entries are swept out.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The shortest time a report stays fresh, whatever its window.
const MIN_FRESH: Duration = Duration::from_secs(30);

/// A report is stale once it is this much older than its window: three windows (one lost
/// report is forgiven), at least [`MIN_FRESH`].
pub fn stale_after(window: Duration) -> Duration {
    (window * 3).max(MIN_FRESH)
}

/// One node's latest report, as received.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeUsage {
    /// When it arrived (the end of its window): the metrics' `timestamp`.
    pub timestamp: jiff::Timestamp,
    /// The same moment on the monotonic clock, for staleness.
    pub received: Instant,
    /// The window its CPU rates were averaged over.
    pub window: Duration,
    /// The node as a whole.
    pub node: Usage,
    /// Its running pods' containers, by pod uid.
    pub pods: HashMap<String, Vec<ContainerUsage>>,
}

impl NodeUsage {
    /// Whether it still counts at `now`.
    pub fn is_fresh(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.received) <= stale_after(self.window)
    }

    /// The report it was made from.
    fn report(&self) -> UsageReport {
        UsageReport {
            window_ms: u32::try_from(self.window.as_millis()).unwrap_or(u32::MAX),
            node: self.node,
            pods: self
                .pods
                .iter()
                .map(|(uid, containers)| PodUsage {
                    uid: uid.clone(),
                    containers: containers.clone(),
                })
                .collect(),
        }
    }
}

/// One node's report as [`UsageBook::save`] writes it.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    node: String,
    /// When it arrived (RFC 3339).
    timestamp: String,
    report: UsageReport,
}

/// The latest usage of every node. Cheap to clone; every clone is the same book.
#[derive(Debug, Clone)]
pub struct UsageBook {
    inner: Arc<Mutex<Book>>,
    /// How many reports were recorded: the metrics' `resourceVersion`, and what their
    /// watches wait on.
    recorded: Arc<watch::Sender<u64>>,
}

impl Default for UsageBook {
    fn default() -> Self {
        Self {
            inner: Arc::default(),
            recorded: Arc::new(watch::channel(0).0),
        }
    }
}

#[derive(Debug, Default)]
struct Book {
    // Shared with readers: a request for every pod's metrics clones pointers, not reports.
    nodes: HashMap<String, Arc<NodeUsage>>,
    swept: Option<Instant>,
}

impl UsageBook {
    /// Keeps `report` as `node`'s latest (received at `now`), replacing the one before;
    /// a report that fails validation changes nothing.
    pub fn record(
        &self,
        node: &str,
        report: UsageReport,
        now: Instant,
        timestamp: jiff::Timestamp,
    ) -> Result<(), InvalidUsage> {
        report.validate()?;
        let usage = NodeUsage {
            timestamp,
            received: now,
            window: Duration::from_millis(u64::from(report.window_ms)),
            node: report.node,
            pods: report
                .pods
                .into_iter()
                .map(|pod| (pod.uid, pod.containers))
                .collect(),
        };
        let mut book = self.book();
        if book
            .swept
            .is_none_or(|at| now.saturating_duration_since(at) >= SWEEP_EVERY)
        {
            book.nodes.retain(|_, usage| usage.is_fresh(now));
            book.swept = Some(now);
        }
        book.nodes.insert(node.to_owned(), Arc::new(usage));
        drop(book);
        self.recorded
            .send_modify(|count| *count = count.wrapping_add(1));
        Ok(())
    }

    /// How many reports were recorded so far (grows with every one).
    pub fn revision(&self) -> u64 {
        *self.recorded.borrow()
    }

    /// Changes whenever a report is recorded.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.recorded.subscribe()
    }

    /// `node`'s latest report, if it is fresh at `now`.
    pub fn node(&self, node: &str, now: Instant) -> Option<Arc<NodeUsage>> {
        self.book()
            .nodes
            .get(node)
            .filter(|usage| usage.is_fresh(now))
            .cloned()
    }

    /// Every node's latest report that is fresh at `now`.
    pub fn fresh(&self, now: Instant) -> HashMap<String, Arc<NodeUsage>> {
        self.book()
            .nodes
            .iter()
            .filter(|(_, usage)| usage.is_fresh(now))
            .map(|(node, usage)| (node.clone(), usage.clone()))
            .collect()
    }

    /// Writes every report that is fresh at `now` to `path` (replaced whole, through a
    /// temporary file), with the time it arrived.
    pub fn save(&self, path: &Path, now: Instant) -> std::io::Result<usize> {
        let saved: Vec<Saved> = self
            .fresh(now)
            .into_iter()
            .map(|(node, usage)| Saved {
                node,
                timestamp: usage.timestamp.to_string(),
                report: usage.report(),
            })
            .collect();
        let text = serde_json::to_vec(&saved).map_err(std::io::Error::other)?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)?;
        Ok(saved.len())
    }

    /// Reads back what [`UsageBook::save`] wrote and deletes the file: the reports that are
    /// still fresh (by their arrival time on the wall clock, `wall`, against `now`) and
    /// whose node has not reported since. A missing or unreadable file restores nothing.
    pub fn restore(&self, path: &Path, now: Instant, wall: jiff::Timestamp) -> usize {
        let Ok(text) = std::fs::read(path) else {
            return 0;
        };
        let _ = std::fs::remove_file(path);
        let saved: Vec<Saved> = match serde_json::from_slice(&text) {
            Ok(saved) => saved,
            Err(err) => {
                tracing::warn!(path = %path.display(), %err, "cannot read the saved usage");
                return 0;
            }
        };
        let mut restored = 0;
        for entry in saved {
            let Ok(timestamp) = entry.timestamp.parse::<jiff::Timestamp>() else {
                continue;
            };
            let age = wall.duration_since(timestamp).unsigned_abs();
            let Some(received) = now.checked_sub(age) else {
                continue;
            };
            if self.node(&entry.node, now).is_some() {
                continue;
            }
            let recorded = self.record(&entry.node, entry.report, received, timestamp);
            if recorded.is_ok() && self.node(&entry.node, now).is_some() {
                restored += 1;
            }
        }
        restored
    }

    /// How many nodes the book holds, fresh or not (for tests of its bound).
    pub fn len(&self) -> usize {
        self.book().nodes.len()
    }

    /// Whether the book holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        // Every change is one insert or retain: a panic elsewhere cannot leave it half done.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(window_ms: u32, uids: &[&str]) -> UsageReport {
        UsageReport {
            window_ms,
            node: Usage {
                cpu_nanocores: 1,
                memory_bytes: 2,
            },
            pods: uids
                .iter()
                .map(|uid| PodUsage {
                    uid: (*uid).into(),
                    containers: vec![ContainerUsage {
                        name: "main".into(),
                        usage: Usage::default(),
                    }],
                })
                .collect(),
        }
    }

    #[test]
    fn a_new_report_replaces_the_old_and_forgets_the_pods_it_no_longer_lists() {
        let book = UsageBook::default();
        let now = Instant::now();
        let at = jiff::Timestamp::now();
        book.record("pi-1", report(15_000, &["a", "b"]), now, at)
            .expect("valid");
        book.record("pi-1", report(15_000, &["b"]), now, at)
            .expect("valid");
        let usage = book.node("pi-1", now).expect("fresh");
        assert_eq!(usage.pods.keys().collect::<Vec<_>>(), ["b"]);
    }

    #[test]
    fn a_malformed_report_changes_nothing() {
        let book = UsageBook::default();
        let now = Instant::now();
        let at = jiff::Timestamp::now();
        book.record("pi-1", report(15_000, &["a"]), now, at)
            .expect("valid");
        assert!(book.record("pi-1", report(0, &[]), now, at).is_err());
        assert!(
            book.record("pi-1", report(1, &["a", "a"]), now, at)
                .is_err()
        );
        assert_eq!(book.node("pi-1", now).expect("kept").pods.len(), 1);
    }

    #[test]
    fn a_node_that_stopped_reporting_is_forgotten() {
        let book = UsageBook::default();
        let t0 = Instant::now();
        let at = jiff::Timestamp::now();
        book.record("gone", report(15_000, &[]), t0, at)
            .expect("valid");
        assert!(book.node("gone", t0 + Duration::from_secs(45)).is_some());
        let later = t0 + Duration::from_secs(46);
        assert!(book.node("gone", later).is_none());
        assert!(book.fresh(later).is_empty());
        // The next report after a minute sweeps it out of memory.
        book.record("pi-1", report(1_000, &[]), t0 + SWEEP_EVERY, at)
            .expect("valid");
        assert_eq!(book.len(), 1);
    }

    #[test]
    fn saved_reports_come_back_with_their_age_unless_stale_or_newer_ones_came() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.json");
        let book = UsageBook::default();
        let t0 = Instant::now();
        let at = jiff::Timestamp::now();
        book.record("pi-1", report(15_000, &["a"]), t0, at)
            .expect("valid");
        book.record("pi-2", report(15_000, &["b"]), t0, at)
            .expect("valid");
        book.record("old", report(1_000, &[]), t0 - Duration::from_secs(31), at)
            .expect("valid");
        assert_eq!(
            book.save(&path, t0).unwrap(),
            2,
            "the stale one is not saved"
        );

        // Ten seconds later, in a new process; pi-2 has reported already.
        let restarted = UsageBook::default();
        let t1 = Instant::now();
        let wall = at.checked_add(jiff::SignedDuration::from_secs(10)).unwrap();
        restarted
            .record("pi-2", report(15_000, &["c"]), t1, wall)
            .expect("valid");
        assert_eq!(restarted.restore(&path, t1, wall), 1);
        assert!(!path.exists(), "read once");
        let pi1 = restarted.node("pi-1", t1).expect("restored");
        assert_eq!(pi1.timestamp, at);
        assert_eq!(pi1.pods.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(pi1.report(), report(15_000, &["a"]));
        let pi2 = restarted.node("pi-2", t1).expect("kept");
        assert_eq!(pi2.pods.keys().collect::<Vec<_>>(), ["c"]);
        // It ages from when it arrived, not from the restart.
        assert!(
            restarted
                .node("pi-1", t1 + Duration::from_secs(36))
                .is_none()
        );

        // Saved too long ago: nothing comes back.
        book.save(&path, t0).unwrap();
        let late = at.checked_add(jiff::SignedDuration::from_secs(60)).unwrap();
        assert_eq!(UsageBook::default().restore(&path, t1, late), 0);
        assert_eq!(UsageBook::default().restore(&path, t1, late), 0, "no file");
    }

    #[test]
    fn short_windows_still_stay_fresh_for_half_a_minute() {
        assert_eq!(stale_after(Duration::from_secs(1)), MIN_FRESH);
        assert_eq!(
            stale_after(Duration::from_secs(60)),
            Duration::from_secs(180)
        );
    }
}
