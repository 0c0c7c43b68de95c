//! [`PodSync`]: keeps a [`PodBackend`] in step with the server.
//!
//! One task owns the status outbox and the applied revision:
//!
//! - a desired snapshot newer than the applied one is committed to local state first, then
//!   applied (offline autonomy: a reboot finds it there);
//! - status changes are reported once they pause for a few milliseconds, at most ~100 ms
//!   after the first ([`super::debounce`]), persisted (so finished pods are not re-run after
//!   a restart), and reported with the next sequence number;
//! - the latest report is re-sent every few seconds until acknowledged; every new session
//!   and every new server epoch gets a fresh report, so reports survive broker, server and
//!   agent restarts;
//! - log requests are answered by `logs` tasks, one per request.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wasmfleet_protocol::Message;
use wasmfleet_protocol::pod::{DesiredPods, PodStatus};
use wasmfleet_protocol::topic::Up;

use super::PodBackend;
use super::debounce::{self, STATUS_COALESCE, sleep_until};
use super::logs::LogStreams;
use super::outbox::{Outbox, is_newer};
use crate::link::{Inbox, Session, Uplink};
use crate::state::AgentState;

/// How often an unacknowledged report is sent again.
pub const RESEND_INTERVAL: Duration = Duration::from_secs(3);

/// The running synchroniser.
#[derive(Debug)]
pub struct PodSync {
    task: JoinHandle<()>,
    stop: CancellationToken,
    freeze: CancellationToken,
}

impl PodSync {
    /// Starts synchronising `pods` with what arrives in `inbox`. `applied` is the desired
    /// snapshot already applied from local state.
    pub fn start<P: PodBackend>(
        inbox: Inbox,
        pods: P,
        state: AgentState,
        uplink: Uplink,
        applied: Option<DesiredPods>,
        tracker: &TaskTracker,
    ) -> PodSync {
        let stop = CancellationToken::new();
        let freeze = CancellationToken::new();
        let Inbox {
            desired,
            acks,
            server_epoch,
            commands,
            rebirth,
        } = inbox;
        let logs = LogStreams::new(
            pods.clone(),
            uplink.clone(),
            tracker.clone(),
            stop.child_token(),
        );
        tracker.spawn(logs.run(commands));
        if let Some(events) = pods.take_events() {
            tracker.spawn(super::events::forward(
                events,
                uplink.clone(),
                stop.child_token(),
            ));
        }
        let task = Task {
            sessions: uplink.sessions(),
            pods,
            state,
            uplink,
            outbox: Outbox::new(applied.as_ref().map_or(0, |d| d.revision)),
            applied,
            saved: None,
            desired,
            acks,
            server_epoch,
            rebirth,
            last_server_epoch: None,
            stop: stop.clone(),
            freeze: freeze.clone(),
        };
        PodSync {
            task: tracker.spawn(task.run()),
            stop,
            freeze,
        }
    }

    /// Stops persisting statuses (reports still go out). Called before the agent stops its
    /// pods: what the agent's own shutdown does to them must not look, after a restart, as if
    /// they had finished; a graceful stop then leaves the same local state as a power cut.
    pub fn freeze(&self) {
        self.freeze.cancel();
    }

    /// Persists and sends a final report, stops log streams, and waits for the task.
    pub async fn shutdown(self) {
        self.stop.cancel();
        if let Err(err) = self.task.await {
            tracing::warn!(%err, "the pod sync task failed");
        }
    }
}

struct Task<P> {
    pods: P,
    state: AgentState,
    uplink: Uplink,
    outbox: Outbox,
    /// The applied desired snapshot.
    applied: Option<DesiredPods>,
    /// The statuses last persisted, to skip identical writes.
    saved: Option<Vec<PodStatus>>,
    sessions: watch::Receiver<Session>,
    desired: watch::Receiver<Option<DesiredPods>>,
    acks: watch::Receiver<Option<wasmfleet_protocol::pod::StatusAck>>,
    server_epoch: watch::Receiver<Option<u64>>,
    rebirth: watch::Sender<u64>,
    /// The server epoch seen last, to notice a server restart.
    last_server_epoch: Option<u64>,
    stop: CancellationToken,
    freeze: CancellationToken,
}

impl<P: PodBackend> Task<P> {
    async fn run(mut self) {
        let mut changes = self.pods.changes();
        // Persist (and, once connected, report) what the pods look like right away.
        let mut report_at = Some(Instant::now());
        let mut changed = debounce::status();
        let mut resend = tokio::time::interval(RESEND_INTERVAL);
        resend.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let scheduled = tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                changed = self.sessions.changed() => match changed {
                    Ok(()) => self.on_session(),
                    Err(_) => break,
                },
                changed = self.desired.changed() => match changed {
                    Ok(()) => self.on_desired(),
                    Err(_) => break,
                },
                changed = self.acks.changed() => match changed {
                    Ok(()) => self.on_ack(),
                    Err(_) => break,
                },
                changed = self.server_epoch.changed() => match changed {
                    Ok(()) => self.on_server_epoch(),
                    Err(_) => break,
                },
                change = changes.changed() => match change {
                    Ok(()) => {
                        changed.change(Instant::now());
                        None
                    }
                    Err(_) => break,
                },
                () = sleep_until(earliest(report_at, changed.due())) => {
                    report_at = None;
                    changed.sent(Instant::now());
                    self.report();
                    None
                }
                _ = resend.tick() => {
                    self.resend();
                    None
                }
            };
            // The earliest request wins: a session, a new server epoch or a new desired
            // state is never postponed (status changes wait as `changed` says).
            report_at = earliest(report_at, scheduled);
        }
        // The pods have stopped by now (run stops them first): tell the server.
        self.report();
    }

    /// A new session gets a fresh report at once.
    fn on_session(&mut self) -> Option<Instant> {
        self.sessions
            .borrow_and_update()
            .connected
            .then(Instant::now)
    }

    fn on_desired(&mut self) -> Option<Instant> {
        let desired = self.desired.borrow_and_update().clone()?;
        self.apply(desired)
            .then(|| Instant::now() + STATUS_COALESCE)
    }

    fn on_ack(&mut self) -> Option<Instant> {
        let ack = (*self.acks.borrow_and_update())?;
        if self.outbox.ack(ack) {
            tracing::debug!(
                epoch = ack.epoch,
                seq = ack.seq,
                "status report acknowledged"
            );
        }
        None
    }

    /// A server that comes back with a new epoch may have missed the birth and the last
    /// report: send both again.
    fn on_server_epoch(&mut self) -> Option<Instant> {
        let epoch = *self.server_epoch.borrow_and_update();
        let previous = std::mem::replace(&mut self.last_server_epoch, epoch);
        if previous.is_none() || epoch == previous {
            return None;
        }
        tracing::info!(?epoch, "the server restarted; birth and report again");
        self.rebirth.send_modify(|n| *n = n.wrapping_add(1));
        Some(Instant::now())
    }

    /// Commits a newer snapshot, then applies it; false if it was not newer.
    fn apply(&mut self, desired: DesiredPods) -> bool {
        let applied = self.applied.as_ref().map(|d| d.revision);
        if !is_newer(applied, desired.revision) {
            tracing::debug!(
                revision = desired.revision,
                ?applied,
                "desired snapshot is not newer; ignored"
            );
            return false;
        }
        if let Err(err) = self.state.save_desired(&desired) {
            // Running the pods matters more than surviving a reboot without the server.
            tracing::error!(%err, "cannot persist the desired pods; applying them anyway");
        }
        tracing::info!(
            revision = desired.revision,
            pods = desired.pods.len(),
            "applying desired pods"
        );
        self.outbox.set_observed_revision(desired.revision);
        self.pods.apply(desired.pods.clone());
        let (started, stopped) = pod_changes(self.applied.as_ref(), &desired);
        for pod in started {
            tracing::info!("started pod {pod}");
        }
        for pod in stopped {
            tracing::info!("stopped pod {pod}");
        }
        self.applied = Some(desired);
        true
    }

    /// Persists the current statuses and, when connected, sends them as a new report.
    fn report(&mut self) {
        let (statuses, images) = self.pods.report();
        self.persist(&statuses);
        let session = self.uplink.session();
        if !session.connected {
            // The next session start reports.
            return;
        }
        let starting = self.pods.starting();
        let reasons = self.pods.reasons();
        let report = self
            .outbox
            .next_report(session.epoch, statuses, starting, images, reasons);
        tracing::debug!(
            epoch = report.epoch,
            seq = report.seq,
            pods = report.pods.len(),
            "status report"
        );
        self.send(Message::Status(report));
    }

    fn persist(&mut self, statuses: &[PodStatus]) {
        if self.freeze.is_cancelled() || self.saved.as_deref() == Some(statuses) {
            return;
        }
        match self.state.save_statuses(statuses) {
            Ok(()) => self.saved = Some(statuses.to_vec()),
            Err(err) => tracing::error!(%err, "cannot persist pod statuses"),
        }
    }

    /// Sends the pending report again if it belongs to the current session.
    fn resend(&self) {
        let session = self.uplink.session();
        let Some(pending) = self.outbox.pending() else {
            return;
        };
        if session.connected && pending.epoch == session.epoch {
            tracing::debug!(seq = pending.seq, "re-sending unacknowledged status report");
            self.send(Message::Status(pending.clone()));
        }
    }

    fn send(&self, message: Message) {
        if let Err(err) = self.uplink.try_send(Up::Status, &message) {
            tracing::debug!(%err, "status report not queued; it will be re-sent");
        }
    }
}

/// The pods (`namespace/name`) a new snapshot adds and removes, by uid.
pub fn pod_changes(old: Option<&DesiredPods>, new: &DesiredPods) -> (Vec<String>, Vec<String>) {
    let uids = |d: Option<&DesiredPods>| -> BTreeMap<String, String> {
        d.map(|d| {
            d.pods
                .iter()
                .map(|p| (p.uid.clone(), format!("{}/{}", p.namespace, p.name)))
                .collect()
        })
        .unwrap_or_default()
    };
    let before = uids(old);
    let after = uids(Some(new));
    let started = after
        .iter()
        .filter(|(uid, _)| !before.contains_key(*uid))
        .map(|(_, name)| name.clone())
        .collect();
    let stopped = before
        .iter()
        .filter(|(uid, _)| !after.contains_key(*uid))
        .map(|(_, name)| name.clone())
        .collect();
    (started, stopped)
}

/// The earlier of two optional instants.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmfleet_protocol::pod::{PodAssignment, RestartPolicy};

    fn snapshot(revision: u64, pods: &[(&str, &str)]) -> DesiredPods {
        DesiredPods {
            revision,
            pods: pods
                .iter()
                .map(|(uid, name)| PodAssignment {
                    config: Default::default(),
                    network: None,
                    uid: (*uid).into(),
                    namespace: "default".into(),
                    name: (*name).into(),
                    restart_policy: RestartPolicy::Always,
                    containers: vec![],
                })
                .collect(),
        }
    }

    #[test]
    fn a_new_snapshot_starts_new_uids_and_stops_missing_ones() {
        let old = snapshot(1, &[("u1", "a"), ("u2", "b")]);
        let new = snapshot(2, &[("u2", "b"), ("u3", "c")]);
        let (started, stopped) = pod_changes(Some(&old), &new);
        assert_eq!(started, vec!["default/c".to_owned()]);
        assert_eq!(stopped, vec!["default/a".to_owned()]);
    }

    #[test]
    fn a_pod_recreated_under_the_same_name_is_a_stop_and_a_start() {
        let old = snapshot(1, &[("u1", "a")]);
        let new = snapshot(2, &[("u9", "a")]);
        let (started, stopped) = pod_changes(Some(&old), &new);
        assert_eq!((started.len(), stopped.len()), (1, 1));
    }

    #[test]
    fn the_first_snapshot_only_starts_pods() {
        let (started, stopped) = pod_changes(None, &snapshot(1, &[("u1", "a")]));
        assert_eq!(started, vec!["default/a".to_owned()]);
        assert!(stopped.is_empty());
    }
}
