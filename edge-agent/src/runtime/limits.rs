//! Per-container resource limits: a memory limiter that remembers it said no, and a CPU
//! throttle driven by epoch ticks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtime::ResourceLimiter;

use super::engine::EPOCH_TICK;

/// The most elements a guest table may grow to (function tables of ordinary programs hold
/// hundreds to a few thousand entries).
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// Denies linear-memory growth past the container's `resources.limits.memory` and records
/// that it did, so that the guest's resulting trap or abort is reported as `OOMKilled`.
///
/// The limit applies to each linear memory separately (wasmtime asks per memory);
/// ordinary guests have exactly one.
pub struct MemoryLimiter {
    limit: Option<usize>,
    exceeded: Arc<AtomicBool>,
}

impl MemoryLimiter {
    /// A limiter for `limit_bytes` (no limit when `None`).
    pub fn new(limit_bytes: Option<u64>) -> Self {
        Self {
            limit: limit_bytes.map(|b| usize::try_from(b).unwrap_or(usize::MAX)),
            exceeded: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A flag that turns true once growth was denied; readable after the store is gone.
    pub fn exceeded_flag(&self) -> Arc<AtomicBool> {
        self.exceeded.clone()
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        match self.limit {
            Some(limit) if desired > limit => {
                self.exceeded.store(true, Ordering::Relaxed);
                Ok(false)
            }
            _ => Ok(true),
        }
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
        if cpu_millis >= 1000 {
            return None;
        }
        let cpu_millis = cpu_millis.max(1);
        let tick = EPOCH_TICK.as_micros() as u64;
        let window_us = (MIN_WINDOW.as_micros() as u64).max(tick * 1000 / cpu_millis);
        let allowed_ticks = (window_us * cpu_millis / 1000 / tick).max(1);
        Some(Self {
            window: Duration::from_micros(window_us),
            allowed_ticks: u32::try_from(allowed_ticks).unwrap_or(u32::MAX),
            window_start: now,
            ticks: 0,
        })
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
        let mut limiter = MemoryLimiter::new(Some(32 << 20));
        assert!(limiter.memory_growing(0, 32 << 20, None).expect("ok"));
        assert!(!limiter.exceeded_flag().load(Ordering::Relaxed));
    }

    #[test]
    fn memory_growth_past_the_limit_is_denied_and_remembered() {
        let mut limiter = MemoryLimiter::new(Some(32 << 20));
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
        let mut limiter = MemoryLimiter::new(None);
        assert!(limiter.memory_growing(0, 3 << 30, None).expect("ok"));
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
