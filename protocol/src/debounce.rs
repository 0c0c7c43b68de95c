//! When changes that are sent in batches are due: once they pause for a short quiet time,
//! and at most a longer time after the first one a batch holds, but never sooner than that
//! longer time after the last batch went. A lone change (a container that started, a first
//! log line, a pod just scheduled) goes out within milliseconds; a burst (many pods starting,
//! a chatty log, a large apply) goes out as one message per longer time, so there are never
//! more messages than with a fixed interval of that length. The agent's status reports and
//! followed logs and the server's desired-state passes wait by this one rule.

use std::ops::Add;
use std::time::{Duration, Instant};

/// The unsent changes: when the first and the last came, when the last batch went, and
/// the rule they wait by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Debounce<I = Instant> {
    quiet: Duration,
    most: Duration,
    first: Option<I>,
    last: Option<I>,
    sent: Option<I>,
}

impl<I: Copy + Ord + Add<Duration, Output = I>> Debounce<I> {
    /// Changes are due once they pause for `quiet`, at most `most` after the first, and no
    /// sooner than `most` after the last batch.
    pub fn new(quiet: Duration, most: Duration) -> Self {
        Self {
            quiet,
            most,
            first: None,
            last: None,
            sent: None,
        }
    }

    /// Notes a change at `now`.
    pub fn change(&mut self, now: I) {
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    /// When the batch is due; `None` when there are no changes.
    pub fn due(&self) -> Option<I> {
        let settled = (self.last? + self.quiet).min(self.first? + self.most);
        Some(match self.sent {
            Some(sent) => settled.max(sent + self.most),
            None => settled,
        })
    }

    /// The changes were sent at `now`.
    pub fn sent(&mut self, now: I) {
        (self.first, self.last, self.sent) = (None, None, Some(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS_QUIET: Duration = Duration::from_millis(15);
    const STATUS_COALESCE: Duration = Duration::from_millis(100);

    #[test]
    fn a_lone_change_is_due_after_the_quiet_time() {
        let t = Instant::now();
        let mut debounce = Debounce::new(STATUS_QUIET, STATUS_COALESCE);
        assert_eq!(debounce.due(), None);
        debounce.change(t);
        assert_eq!(debounce.due(), Some(t + STATUS_QUIET));
        debounce.sent(t + STATUS_QUIET);
        assert_eq!(debounce.due(), None);
        // The next batch waits until the longer time after the last one went...
        let next = t + STATUS_QUIET + Duration::from_millis(1);
        debounce.change(next);
        assert_eq!(debounce.due(), Some(t + STATUS_QUIET + STATUS_COALESCE));
        // ...but a change long after it goes after the quiet time again.
        debounce.sent(next);
        let later = next + 2 * STATUS_COALESCE;
        debounce.change(later);
        assert_eq!(debounce.due(), Some(later + STATUS_QUIET));
    }

    #[test]
    fn changes_that_keep_coming_are_due_at_most_the_longer_time_after_the_first() {
        let t = Instant::now();
        let (quiet, most) = (Duration::from_millis(10), Duration::from_millis(100));
        let mut debounce = Debounce::new(quiet, most);
        let step = quiet / 2;
        let mut at = t;
        while at < t + 2 * most {
            debounce.change(at);
            at += step;
        }
        assert_eq!(debounce.due(), Some(t + most));
        let mut two = Debounce::new(quiet, most);
        two.change(t);
        two.change(t + step);
        assert_eq!(two.due(), Some(t + step + quiet));
    }
}
