//! Asking the broker to replay the node's retained desired state when a session goes on
//! without a complete desired set.
//!
//! On every (re)subscribe the broker replays the retained index and per-pod messages, and
//! the agent assembles a complete set from them within milliseconds. Brokers can lose that
//! replay: mqtt5 0.49 did, when an agent restarted inside a network partition took over its
//! own dead session (found by the chaos tests), and the agent then kept an old set for good
//! while its node looked Ready. So a session that has seen no index, or holds an incomplete
//! set, for [`RESYNC_AFTER`] subscribes again (which makes the broker replay the retained
//! messages), backing off to [`RESYNC_MAX`] while the replay keeps failing. Pure: the
//! connection feeds it events and the time, and asks when the next replay is due.

use std::time::{Duration, Instant};

/// How long a session may go without a complete desired set before asking for a replay.
pub const RESYNC_AFTER: Duration = Duration::from_secs(5);

/// The longest wait between replays while the set stays incomplete.
pub const RESYNC_MAX: Duration = Duration::from_secs(60);

/// When to ask the broker for a replay, if at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resync {
    due: Option<Instant>,
    delay: Duration,
}

impl Default for Resync {
    fn default() -> Self {
        Self {
            due: None,
            delay: RESYNC_AFTER,
        }
    }
}

impl Resync {
    /// A session started: its set must be complete within [`RESYNC_AFTER`].
    pub fn on_connected(&mut self, now: Instant) {
        self.delay = RESYNC_AFTER;
        self.due = Some(now + RESYNC_AFTER);
    }

    /// The session ended: nothing to ask for until the next one.
    pub fn on_disconnected(&mut self) {
        self.due = None;
    }

    /// Desired state arrived; `complete` says whether the session now holds a complete
    /// set of the newest index.
    pub fn on_desired(&mut self, complete: bool, now: Instant) {
        if complete {
            self.due = None;
            self.delay = RESYNC_AFTER;
        } else if self.due.is_none() {
            self.due = Some(now + self.delay);
        }
    }

    /// When the next replay is due (`None`: not needed).
    pub fn due(&self) -> Option<Instant> {
        self.due
    }

    /// A replay was asked for at `now`; if the set is still incomplete later, ask again
    /// after twice the wait (at most [`RESYNC_MAX`]).
    pub fn asked(&mut self, now: Instant) {
        self.delay = (self.delay * 2).min(RESYNC_MAX);
        self.due = Some(now + self.delay);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_that_never_gets_its_index_asks_for_a_replay_after_the_wait() {
        let now = Instant::now();
        let mut resync = Resync::default();
        assert_eq!(resync.due(), None);
        resync.on_connected(now);
        assert_eq!(resync.due(), Some(now + RESYNC_AFTER));
    }

    #[test]
    fn a_complete_set_cancels_the_replay_and_an_incomplete_one_schedules_it() {
        let now = Instant::now();
        let mut resync = Resync::default();
        resync.on_connected(now);
        resync.on_desired(true, now);
        assert_eq!(resync.due(), None);
        let later = now + Duration::from_secs(30);
        resync.on_desired(false, later);
        assert_eq!(resync.due(), Some(later + RESYNC_AFTER));
        // More incomplete news does not push the replay further away.
        resync.on_desired(false, later + Duration::from_secs(1));
        assert_eq!(resync.due(), Some(later + RESYNC_AFTER));
    }

    #[test]
    fn replays_back_off_while_the_set_stays_incomplete_and_reset_once_complete() {
        let now = Instant::now();
        let mut resync = Resync::default();
        resync.on_connected(now);
        let mut at = now + RESYNC_AFTER;
        let mut waits = Vec::new();
        for _ in 0..6 {
            resync.asked(at);
            let next = resync.due().expect("still due");
            waits.push((next - at).as_secs());
            at = next;
        }
        assert_eq!(waits, [10, 20, 40, 60, 60, 60]);
        resync.on_desired(true, at);
        resync.on_desired(false, at);
        assert_eq!(resync.due(), Some(at + RESYNC_AFTER));
    }

    #[test]
    fn a_lost_session_asks_for_nothing() {
        let now = Instant::now();
        let mut resync = Resync::default();
        resync.on_connected(now);
        resync.on_disconnected();
        assert_eq!(resync.due(), None);
    }
}
