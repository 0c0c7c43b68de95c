//! The status outbox: which report is the latest, and whether the server has it.
//!
//! Reports are level-triggered (each holds every pod), so only the newest unacknowledged
//! one matters: it is re-sent until the server acknowledges its `(epoch, seq)` or a newer
//! report replaces it. Pure bookkeeping, no I/O.

use wasmfleet_protocol::pod::{
    ContainerRef, PodImages, PodReason, PodStatus, StatusAck, StatusReport,
};

/// The latest report and the counters that stamp the next one.
#[derive(Debug, Clone, Default)]
pub struct Outbox {
    seq: u64,
    observed_revision: u64,
    pending: Option<StatusReport>,
}

impl Outbox {
    /// An empty outbox that will report `observed_revision`.
    pub fn new(observed_revision: u64) -> Self {
        Outbox {
            seq: 0,
            observed_revision,
            pending: None,
        }
    }

    /// The revision of the last desired snapshot applied.
    pub fn observed_revision(&self) -> u64 {
        self.observed_revision
    }

    /// Records that a desired snapshot was applied.
    pub fn set_observed_revision(&mut self, revision: u64) {
        self.observed_revision = revision;
    }

    /// Stamps a new report in `epoch`; it replaces any unacknowledged one.
    pub fn next_report(
        &mut self,
        epoch: u64,
        pods: Vec<PodStatus>,
        starting: Vec<ContainerRef>,
        images: Vec<PodImages>,
        reasons: Vec<PodReason>,
    ) -> StatusReport {
        self.seq += 1;
        let report = StatusReport {
            epoch,
            seq: self.seq,
            observed_revision: self.observed_revision,
            pods,
            starting,
            images,
            reasons,
        };
        self.pending = Some(report.clone());
        report
    }

    /// Takes an acknowledgement; true if it covered the pending report.
    pub fn ack(&mut self, ack: StatusAck) -> bool {
        let covered = self
            .pending
            .as_ref()
            .is_some_and(|p| p.epoch == ack.epoch && p.seq <= ack.seq);
        if covered {
            self.pending = None;
        }
        covered
    }

    /// The report still waiting for its acknowledgement.
    pub fn pending(&self) -> Option<&StatusReport> {
        self.pending.as_ref()
    }
}

/// Whether a desired snapshot at `incoming` should be applied after `applied`.
pub fn is_newer(applied: Option<u64>, incoming: u64) -> bool {
    applied.is_none_or(|applied| incoming > applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_report_gets_the_next_sequence_number() {
        let mut outbox = Outbox::new(4);
        assert_eq!(outbox.next_report(1, vec![], vec![], vec![], vec![]).seq, 1);
        let second = outbox.next_report(1, vec![], vec![], vec![], vec![]);
        assert_eq!((second.seq, second.observed_revision), (2, 4));
        outbox.set_observed_revision(9);
        assert_eq!(
            outbox
                .next_report(2, vec![], vec![], vec![], vec![])
                .observed_revision,
            9
        );
    }

    #[test]
    fn an_ack_of_the_pending_report_clears_it() {
        let mut outbox = Outbox::new(0);
        outbox.next_report(3, vec![], vec![], vec![], vec![]);
        assert!(outbox.ack(StatusAck { epoch: 3, seq: 1 }));
        assert_eq!(outbox.pending(), None);
    }

    #[test]
    fn an_ack_of_an_older_report_keeps_the_newer_one_pending() {
        let mut outbox = Outbox::new(0);
        outbox.next_report(3, vec![], vec![], vec![], vec![]);
        outbox.next_report(3, vec![], vec![], vec![], vec![]);
        assert!(!outbox.ack(StatusAck { epoch: 3, seq: 1 }));
        assert_eq!(outbox.pending().map(|p| p.seq), Some(2));
    }

    #[test]
    fn an_ack_from_another_epoch_clears_nothing() {
        let mut outbox = Outbox::new(0);
        outbox.next_report(3, vec![], vec![], vec![], vec![]);
        assert!(!outbox.ack(StatusAck { epoch: 2, seq: 9 }));
        assert!(outbox.pending().is_some());
    }

    #[test]
    fn only_strictly_newer_snapshots_are_applied() {
        assert!(is_newer(None, 0));
        assert!(is_newer(Some(4), 5));
        assert!(!is_newer(Some(5), 5));
        assert!(!is_newer(Some(6), 5));
    }
}
