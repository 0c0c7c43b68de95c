//! The node's allocatable, enforced over all pods together: what the agent reports as
//! allocatable is also the most its guests may use at once, whatever their own limits say
//! (a pod without limits, or many pods with generous ones, cannot take the device).
//!
//! Memory is a pool of bytes that every container's linear-memory growth draws from and
//! gives back when its instance ends; growth the pool cannot cover is denied like growth
//! past the container's own limit (the container ends `OOMKilled`). CPU is one
//! [`CpuThrottle`] shared by every guest: each epoch tick a guest runs through counts
//! against the node's share of each window, and once it is used up every guest pauses
//! until the window ends, leaving the reserve to the agent and the OS.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use super::limits::CpuThrottle;

/// The node-wide budget; cheap to clone (one per runtime, shared by every sandbox).
#[derive(Clone, Default)]
pub struct NodeBudget {
    memory: Arc<MemoryPool>,
    cpu: Arc<Mutex<Option<CpuThrottle>>>,
}

impl NodeBudget {
    /// Limits all guests together to `memory_bytes` of linear memory and `cpu_millis` of CPU
    /// (until this is called the budget is unlimited).
    pub fn limit_to(&self, memory_bytes: u64, cpu_millis: u64) {
        self.memory.limit.store(memory_bytes, Ordering::Relaxed);
        *self.cpu.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(CpuThrottle::shared(cpu_millis, Instant::now()));
    }

    /// The memory pool containers draw from.
    pub fn memory(&self) -> Arc<MemoryPool> {
        self.memory.clone()
    }

    /// Records one tick of some guest running at `now`; returns when guests may run again
    /// if the node's share of the current window is used up.
    pub fn on_tick(&self, now: Instant) -> Option<Instant> {
        self.cpu
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
            .and_then(|throttle| throttle.on_tick(now))
    }
}

/// Bytes of linear memory in use by all guests, and the most they may use.
#[derive(Debug)]
pub struct MemoryPool {
    used: AtomicU64,
    limit: AtomicU64,
}

impl Default for MemoryPool {
    fn default() -> Self {
        Self {
            used: AtomicU64::new(0),
            limit: AtomicU64::new(u64::MAX),
        }
    }
}

impl MemoryPool {
    /// Takes `bytes` from the pool; `false` (and nothing taken) when they do not fit.
    pub fn try_take(&self, bytes: u64) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= limit)
            })
            .is_ok()
    }

    /// Gives `bytes` back.
    pub fn give_back(&self, bytes: u64) {
        // Never below zero, even if a caller gave back more than it took.
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
    }

    /// Bytes in use.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::runtime::engine::EPOCH_TICK;

    #[test]
    fn the_pool_grants_what_fits_and_refuses_the_rest() {
        let budget = NodeBudget::default();
        budget.limit_to(100, 1000);
        let pool = budget.memory();
        assert!(pool.try_take(60));
        assert!(!pool.try_take(41), "60 + 41 is over the 100 byte pool");
        assert_eq!(pool.used(), 60);
        assert!(pool.try_take(40));
        pool.give_back(60);
        assert!(pool.try_take(60));
        assert_eq!(pool.used(), 100);
    }

    #[test]
    fn an_unlimited_budget_never_refuses_or_pauses() {
        let budget = NodeBudget::default();
        assert!(budget.memory().try_take(u64::MAX / 2));
        let start = Instant::now();
        for i in 1..1000 {
            assert_eq!(budget.on_tick(start + EPOCH_TICK * i), None);
        }
    }

    #[test]
    fn all_guests_together_get_the_nodes_cpu_share_per_window() {
        let budget = NodeBudget::default();
        // 1.5 cores: 15 ticks of 10 ms per 100 ms window, whichever guests run them.
        budget.limit_to(u64::MAX, 1500);
        let start = Instant::now();
        let paused = (1..=15)
            .map(|i| budget.on_tick(start + Duration::from_millis(i * 3)))
            .position(|pause| pause.is_some());
        assert_eq!(paused, Some(14), "the 15th tick uses up the window");
        let until = budget.on_tick(start + Duration::from_millis(60));
        assert!(until.is_some_and(|until| until <= start + Duration::from_millis(100)));
        assert_eq!(budget.on_tick(start + Duration::from_millis(101)), None);
    }
}
