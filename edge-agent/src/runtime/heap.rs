//! Giving freed heap back to the operating system after bursts of work.
//!
//! Compiling modules (Cranelift, on several threads) and starting many containers at once
//! allocates and frees hundreds of MiB. glibc keeps freed memory in its per-thread arenas,
//! so without help an agent that once compiled 100 modules stays at that peak RSS for
//! good (measured: 227 MiB, 70 MiB after `malloc_trim`; BENCHMARKS.md). On a 512 MiB
//! device that memory belongs to the pods.
//!
//! The agent's runtime and the server's artifact compiler both use it.
//!
//! [`HeapTrimmer::poke`] is called after work that may have freed a lot (a compile, a
//! container's end). A background thread waits until no poke has come for [`QUIET`], then
//! asks the allocator to release what it holds. Trimming walks every arena, so it waits
//! for quiet instead of running after each of 100 container exits. The thread ends when
//! the last trimmer handle is dropped. On other allocators (musl) it does nothing.

use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;

/// How long the agent must be quiet before the heap is trimmed.
pub const QUIET: Duration = Duration::from_secs(2);

/// A handle to the trimming thread. Cheap to clone.
#[derive(Clone, Debug)]
pub struct HeapTrimmer {
    pokes: SyncSender<()>,
}

impl HeapTrimmer {
    /// Starts the trimming thread.
    pub fn start() -> std::io::Result<Self> {
        Self::start_with(QUIET, release_free_heap)
    }

    fn start_with(quiet: Duration, trim: fn()) -> std::io::Result<Self> {
        // One slot is enough: a poke that finds the slot full is already counted.
        let (pokes, rx) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("heap-trim".into())
            .spawn(move || trim_after_quiet(&rx, quiet, trim))?;
        Ok(Self { pokes })
    }

    /// Notes that memory may have been freed; the heap is trimmed once things are quiet.
    pub fn poke(&self) {
        match self.pokes.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) => {}
            Err(TrySendError::Disconnected(())) => {
                tracing::debug!("heap trimming thread is gone");
            }
        }
    }
}

fn trim_after_quiet(pokes: &mpsc::Receiver<()>, quiet: Duration, trim: fn()) {
    // Wait for a first poke, then for a quiet period without pokes, then trim.
    while pokes.recv().is_ok() {
        loop {
            match pokes.recv_timeout(quiet) {
                Ok(()) => continue,
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        trim();
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // one call into glibc; see the SAFETY note
fn release_free_heap() {
    let started = std::time::Instant::now();
    // SAFETY: malloc_trim only reorganises the allocator's own free lists; it is
    // thread-safe and has no preconditions.
    let released = unsafe { libc::malloc_trim(0) };
    tracing::debug!(
        released = released != 0,
        took = ?started.elapsed(),
        "returned free heap to the OS"
    );
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_heap() {}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    static TRIMS: AtomicUsize = AtomicUsize::new(0);

    fn count_trim() {
        TRIMS.fetch_add(1, Ordering::SeqCst);
    }

    fn wait_for_trims(n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while TRIMS.load(Ordering::SeqCst) < n && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(TRIMS.load(Ordering::SeqCst), n);
    }

    #[test]
    fn a_burst_of_pokes_trims_once_after_it_goes_quiet() {
        // The quiet period is long against the 10 ms between pokes, so a slow machine
        // cannot fit a quiet period into the burst.
        let quiet = Duration::from_secs(1);
        let trimmer = HeapTrimmer::start_with(quiet, count_trim).unwrap();
        for _ in 0..30 {
            trimmer.poke();
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(TRIMS.load(Ordering::SeqCst), 0, "no trim while busy");
        wait_for_trims(1);
        std::thread::sleep(quiet * 2);
        assert_eq!(TRIMS.load(Ordering::SeqCst), 1, "one trim per quiet period");
        trimmer.poke();
        wait_for_trims(2);
    }
}
