//! Per-container resource limits: a memory limiter that remembers it said no (and draws
//! from the node's memory pool, see [`super::budget`]), and a CPU throttle driven by epoch
//! ticks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtime::ResourceLimiter;

use super::budget::MemoryPool;
use super::engine::EPOCH_TICK;
use super::usage::UsageMeter;

/// The most elements a guest table may grow to (function tables of ordinary programs hold
/// hundreds to a few thousand entries).
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// Denies linear-memory growth past the container's `resources.limits.memory`, or past
/// what the node's pool has left, and records that it did, so that the guest's resulting
/// trap or abort is reported as `OOMKilled`. What it took from the pool goes back when the
/// limiter (the container's store) is dropped.
///
/// The limit applies to each linear memory separately (wasmtime asks per memory);
/// ordinary guests have exactly one.
pub struct MemoryLimiter {
    limit: Option<usize>,
    exceeded: Arc<AtomicBool>,
    pool: Arc<MemoryPool>,
    taken: u64,
    meter: UsageMeter,
}

impl MemoryLimiter {
    /// A limiter for `limit_bytes` (no limit of its own when `None`) drawing from `pool`.
    pub fn new(limit_bytes: Option<u64>, pool: Arc<MemoryPool>) -> Self {
        Self {
            limit: limit_bytes.map(|b| usize::try_from(b).unwrap_or(usize::MAX)),
            exceeded: Arc::new(AtomicBool::new(false)),
            pool,
            taken: 0,
            meter: UsageMeter::default(),
        }
    }

    /// Counts what it grants (and gives back) into the container's `meter` too.
    pub fn counting_into(mut self, meter: UsageMeter) -> Self {
        self.meter = meter;
        self
    }

    /// A flag that turns true once growth was denied; readable after the store is gone.
    pub fn exceeded_flag(&self) -> Arc<AtomicBool> {
        self.exceeded.clone()
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let within_limit = self.limit.is_none_or(|limit| desired <= limit);
        let growth = u64::try_from(desired.saturating_sub(current)).unwrap_or(u64::MAX);
        if within_limit && self.pool.try_take(growth) {
            self.taken = self.taken.saturating_add(growth);
            self.meter.grow(growth);
            return Ok(true);
        }
        self.exceeded.store(true, Ordering::Relaxed);
        Ok(false)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        self.pool.give_back(self.taken);
        self.meter.release(self.taken);
    }
}

/// The shortest accounting window. A throttled guest runs in bursts of at most its share
/// of one window, so short windows keep its latency smooth.
const MIN_WINDOW: Duration = Duration::from_millis(100);

/// Limits a guest to `cpu_millis` of one core by counting the epoch ticks it runs for in
/// each window and pausing it for the rest of the window once it used its share.
///
/// Each tick the guest is interrupted on counts as one [`EPOCH_TICK`] of CPU. The window
/// is long enough to hold at least one tick of the share (1 s for 10m), so small limits
/// are honoured on average rather than rounded up.
#[derive(Debug, Clone)]
pub struct CpuThrottle {
    window: Duration,
    allowed_ticks: u32,
    window_start: Instant,
    ticks: u32,
}

impl CpuThrottle {
    /// A throttle for `cpu_millis`, or `None` when the limit is a whole core or more
    /// (a wasm instance runs on one thread, so it can never use more).
    pub fn new(cpu_millis: u64, now: Instant) -> Option<Self> {
        (cpu_millis < 1000).then(|| Self::shared(cpu_millis, now))
    }

    /// A throttle for `cpu_millis` counted over several guests (the node's budget): any
    /// share, whole cores included, since the ticks of guests on all threads add up.
    pub fn shared(cpu_millis: u64, now: Instant) -> Self {
        let cpu_millis = cpu_millis.max(1);
        let tick = EPOCH_TICK.as_micros() as u64;
        let window_us = (MIN_WINDOW.as_micros() as u64).max(tick * 1000 / cpu_millis);
        let allowed_ticks = (window_us * cpu_millis / 1000 / tick).max(1);
        Self {
            window: Duration::from_micros(window_us),
            allowed_ticks: u32::try_from(allowed_ticks).unwrap_or(u32::MAX),
            window_start: now,
            ticks: 0,
        }
    }

    /// Records one tick of running at `now`; returns when the guest may run again if it has
    /// used up its share of the current window.
    pub fn on_tick(&mut self, now: Instant) -> Option<Instant> {
        if now >= self.window_start + self.window {
            self.window_start = now;
            self.ticks = 0;
        }
        self.ticks += 1;
        (self.ticks >= self.allowed_ticks).then(|| self.window_start + self.window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_growth_within_the_limit_is_allowed() {
        let mut limiter = MemoryLimiter::new(Some(32 << 20), Arc::default());
        assert!(limiter.memory_growing(0, 32 << 20, None).expect("ok"));
        assert!(!limiter.exceeded_flag().load(Ordering::Relaxed));
    }

    #[test]
    fn memory_growth_past_the_limit_is_denied_and_remembered() {
        let mut limiter = MemoryLimiter::new(Some(32 << 20), Arc::default());
        let flag = limiter.exceeded_flag();
        assert!(
            !limiter
                .memory_growing(16 << 20, 33 << 20, None)
                .expect("ok")
        );
        assert!(flag.load(Ordering::Relaxed));
    }

    #[test]
    fn no_memory_limit_allows_any_growth() {
        let mut limiter = MemoryLimiter::new(None, Arc::default());
        assert!(limiter.memory_growing(0, 3 << 30, None).expect("ok"));
    }

    #[test]
    fn growth_beyond_the_nodes_pool_is_denied_and_returned_on_drop() {
        let budget = super::super::budget::NodeBudget::default();
        budget.limit_to(48 << 20, 1000);
        let pool_of = budget.memory();
        let mut first = MemoryLimiter::new(Some(32 << 20), pool_of.clone());
        let mut second = MemoryLimiter::new(None, pool_of.clone());
        assert!(first.memory_growing(0, 32 << 20, None).expect("ok"));
        assert!(second.memory_growing(0, 16 << 20, None).expect("ok"));
        let flag = second.exceeded_flag();
        assert!(
            !second.memory_growing(16 << 20, 17 << 20, None).expect("ok"),
            "the pool is used up, though the second container has no limit of its own"
        );
        assert!(flag.load(Ordering::Relaxed));
        drop(first);
        assert_eq!(pool_of.used(), 16 << 20);
        assert!(second.memory_growing(16 << 20, 40 << 20, None).expect("ok"));
        drop(second);
        assert_eq!(pool_of.used(), 0);
    }

    #[test]
    fn the_containers_meter_sees_what_its_instances_hold() {
        let meter = UsageMeter::default();
        let mut limiter = MemoryLimiter::new(None, Arc::default()).counting_into(meter.clone());
        assert!(limiter.memory_growing(0, 1 << 20, None).expect("ok"));
        assert!(limiter.memory_growing(1 << 20, 3 << 20, None).expect("ok"));
        assert_eq!(meter.memory_bytes(), 3 << 20);
        drop(limiter);
        assert_eq!(meter.memory_bytes(), 0);
    }

    #[test]
    fn a_whole_core_or_more_is_not_throttled() {
        assert!(CpuThrottle::new(1000, Instant::now()).is_none());
        assert!(CpuThrottle::new(4000, Instant::now()).is_none());
    }

    #[test]
    fn half_a_core_runs_five_ticks_per_100_ms_then_pauses_until_the_window_ends() {
        let start = Instant::now();
        let mut throttle = CpuThrottle::new(500, start).expect("throttled");
        for i in 1..5 {
            assert_eq!(throttle.on_tick(start + EPOCH_TICK * i), None);
        }
        assert_eq!(
            throttle.on_tick(start + EPOCH_TICK * 5),
            Some(start + Duration::from_millis(100))
        );
        // The next window starts afresh.
        assert_eq!(throttle.on_tick(start + Duration::from_millis(101)), None);
    }

    #[test]
    fn a_tiny_share_gets_one_tick_in_a_longer_window() {
        let start = Instant::now();
        let mut throttle = CpuThrottle::new(10, start).expect("throttled");
        assert_eq!(
            throttle.on_tick(start + EPOCH_TICK),
            Some(start + Duration::from_secs(1))
        );
    }
}
