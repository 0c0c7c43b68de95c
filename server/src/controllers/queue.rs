//! The runner's work queue: keys waiting for a reconcile, deduplicated, never handed to two
//! workers at once, with per-key exponential back-off after failures. Pure bookkeeping
//! (client-go's workqueue semantics); the runner adds the locking and the waking.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use wasmfleet_protocol::backoff::{Backoff, BackoffPolicy};

use crate::store::ObjectKey;

/// Keys to reconcile; see the module documentation.
#[derive(Debug)]
pub struct WorkQueue {
    order: VecDeque<ObjectKey>,
    queued: HashSet<ObjectKey>,
    /// Being reconciled by a worker right now.
    active: HashSet<ObjectKey>,
    /// Added again while active: queued once its worker is done.
    dirty: HashSet<ObjectKey>,
    failures: HashMap<ObjectKey, Backoff>,
    policy: BackoffPolicy,
}

impl WorkQueue {
    /// An empty queue whose retries back off by `policy`.
    pub fn new(policy: BackoffPolicy) -> Self {
        WorkQueue {
            order: VecDeque::new(),
            queued: HashSet::new(),
            active: HashSet::new(),
            dirty: HashSet::new(),
            failures: HashMap::new(),
            policy,
        }
    }

    /// Queues `key` unless it is queued already; a key being reconciled is queued again
    /// when its worker is done. Returns whether a worker can take it now.
    pub fn add(&mut self, key: ObjectKey) -> bool {
        if self.active.contains(&key) {
            self.dirty.insert(key);
            return false;
        }
        if self.queued.insert(key.clone()) {
            self.order.push_back(key);
            return true;
        }
        false
    }

    /// The next key to reconcile, now marked active.
    pub fn take(&mut self) -> Option<ObjectKey> {
        let key = self.order.pop_front()?;
        self.queued.remove(&key);
        self.active.insert(key.clone());
        Some(key)
    }

    /// The worker finished `key`; returns whether it was queued again meanwhile.
    pub fn done(&mut self, key: &ObjectKey) -> bool {
        self.active.remove(key);
        self.dirty.remove(key) && self.add(key.clone())
    }

    /// `key` was reconciled successfully: its back-off starts over.
    pub fn succeeded(&mut self, key: &ObjectKey) {
        self.failures.remove(key);
    }

    /// `key` failed: how long to wait before queueing it again (`jitter` in `[0, 1]`).
    pub fn failed(&mut self, key: &ObjectKey, jitter: f64) -> Duration {
        let policy = self.policy;
        self.failures
            .entry(key.clone())
            .or_insert_with(|| Backoff::new(policy))
            .next_delay(jitter)
    }

    /// How many keys wait.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether no key waits.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ObjectKey {
        ObjectKey::cluster("nodes", name)
    }

    fn queue() -> WorkQueue {
        WorkQueue::new(BackoffPolicy {
            base: Duration::from_millis(10),
            max: Duration::from_millis(40),
        })
    }

    #[test]
    fn a_key_added_twice_waits_once() {
        let mut q = queue();
        assert!(q.add(key("a")));
        assert!(!q.add(key("a")));
        q.add(key("b"));
        assert_eq!(q.len(), 2);
        assert_eq!(q.take(), Some(key("a")));
        assert_eq!(q.take(), Some(key("b")));
        assert_eq!(q.take(), None);
    }

    #[test]
    fn a_key_being_reconciled_is_not_handed_out_again_until_done() {
        let mut q = queue();
        q.add(key("a"));
        let a = q.take().expect("a");
        assert!(!q.add(key("a")));
        assert!(q.is_empty());
        assert!(q.done(&a));
        assert_eq!(q.take(), Some(key("a")));
        assert!(!q.done(&key("a")));
        assert!(q.is_empty());
    }

    #[test]
    fn failures_back_off_per_key_and_a_success_resets_them() {
        let mut q = queue();
        let delays: Vec<u128> = (0..4)
            .map(|_| q.failed(&key("a"), 1.0).as_millis())
            .collect();
        assert_eq!(delays, [10, 20, 40, 40]);
        assert_eq!(q.failed(&key("b"), 1.0).as_millis(), 10);
        q.succeeded(&key("a"));
        assert_eq!(q.failed(&key("a"), 1.0).as_millis(), 10);
    }
}
