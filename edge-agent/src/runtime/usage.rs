//! Measuring what a container uses, cheaply enough to do always: no thread, no timer,
//! no syscall beyond the clock.
//!
//! - CPU: the time its instance's future spends being polled ([`metered`]). A guest runs
//!   only inside a poll (wasmtime's async calls run the guest on a fiber inside the
//!   poll; a guest waiting in a host call such as a sleep is not polled), so this is the
//!   guest's own execution plus the host calls it makes inline, as cgroup CPU time
//!   would count them. It is wall-clock time on the monotonic clock: time the OS took the
//!   thread away in the middle of a poll is counted too (an overloaded host over-reports).
//! - Memory: the linear memory of its live instances, exactly what the
//!   [`MemoryLimiter`](super::limits::MemoryLimiter) granted them, so `kubectl top` shows
//!   the figure the memory limit is enforced against.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One container's meter, shared by its runs (and by a served proxy's requests): cheap
/// to clone, every clone counts into the same figures.
#[derive(Debug, Clone, Default)]
pub struct UsageMeter(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    cpu_nanos: AtomicU64,
    memory_bytes: AtomicU64,
}

/// Two specs are equal when they count into the same meter.
impl PartialEq for UsageMeter {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for UsageMeter {}

impl UsageMeter {
    /// CPU time used since the meter was created.
    pub fn cpu_time(&self) -> Duration {
        Duration::from_nanos(self.0.cpu_nanos.load(Ordering::Relaxed))
    }

    /// Bytes of linear memory its live instances hold.
    pub fn memory_bytes(&self) -> u64 {
        self.0.memory_bytes.load(Ordering::Relaxed)
    }

    fn add_cpu(&self, spent: Duration) {
        let nanos = u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX);
        self.0.cpu_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Counts `bytes` of linear memory granted to an instance.
    pub(super) fn grow(&self, bytes: u64) {
        self.0.memory_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts `bytes` of linear memory released (an instance ended).
    pub(super) fn release(&self, bytes: u64) {
        let _ = self
            .0
            .memory_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                Some(used.saturating_sub(bytes))
            });
    }
}

/// Runs `work`, counting the time spent in each of its polls into `meter`.
pub(super) async fn metered<F: Future>(meter: &UsageMeter, work: F) -> F::Output {
    let mut work = pin!(work);
    std::future::poll_fn(|cx| {
        let started = Instant::now();
        let poll = work.as_mut().poll(cx);
        meter.add_cpu(started.elapsed());
        poll
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn busy_polls_count_and_waiting_does_not() {
        let meter = UsageMeter::default();
        metered(&meter, async {
            std::thread::sleep(Duration::from_millis(30));
            tokio::time::sleep(Duration::from_millis(200)).await;
        })
        .await;
        let used = meter.cpu_time();
        assert!(used >= Duration::from_millis(30), "{used:?}");
        assert!(used < Duration::from_millis(150), "{used:?}");
    }

    #[test]
    fn memory_goes_up_with_grants_and_never_below_zero() {
        let meter = UsageMeter::default();
        let clone = meter.clone();
        clone.grow(64 << 20);
        assert_eq!(meter.memory_bytes(), 64 << 20);
        clone.release(128 << 20);
        assert_eq!(meter.memory_bytes(), 0);
        assert_eq!(meter, clone);
        assert_ne!(meter, UsageMeter::default());
    }
}
