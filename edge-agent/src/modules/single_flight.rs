//! Single-flight: concurrent callers of one key share one run of the work and its result.
//!
//! The first caller (the leader) runs the work in its own task; the others wait for its
//! result. If the leader is cancelled before finishing (its pod was deleted), a waiter
//! takes over and runs the work itself. The entry is removed as soon as the run ends, so
//! a later call runs the work again (it usually finds its result already on disk).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

type Running<T> = Mutex<HashMap<String, watch::Receiver<Option<T>>>>;

/// Runs at most one piece of work per key at a time.
pub struct SingleFlight<T> {
    running: Arc<Running<T>>,
}

impl<T> Default for SingleFlight<T> {
    fn default() -> Self {
        Self {
            running: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

impl<T> std::fmt::Debug for SingleFlight<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SingleFlight").finish_non_exhaustive()
    }
}

/// Removes the leader's entry when its run ends or is cancelled.
struct Leading<T> {
    running: Arc<Running<T>>,
    key: String,
}

impl<T> Drop for Leading<T> {
    fn drop(&mut self) {
        lock(&self.running).remove(&self.key);
    }
}

fn lock<T>(
    running: &Running<T>,
) -> std::sync::MutexGuard<'_, HashMap<String, watch::Receiver<Option<T>>>> {
    // Only short critical sections that cannot panic touch the map.
    running.lock().unwrap_or_else(PoisonError::into_inner)
}

enum Role<T> {
    Lead(watch::Sender<Option<T>>, Leading<T>),
    Wait(watch::Receiver<Option<T>>),
}

impl<T: Clone + Send + Sync + 'static> SingleFlight<T> {
    /// Runs `work` for `key` unless a run for `key` is in progress, in which case this
    /// waits for that run's result instead (and `work` is never polled).
    pub async fn run<F>(&self, key: &str, work: F) -> T
    where
        F: Future<Output = T>,
    {
        let mut work = std::pin::pin!(work);
        loop {
            match self.join_or_lead(key) {
                Role::Lead(result, leading) => {
                    let value = work.as_mut().await;
                    drop(leading);
                    result.send_replace(Some(value.clone()));
                    return value;
                }
                Role::Wait(mut result) => {
                    if let Ok(done) = result.wait_for(Option::is_some).await
                        && let Some(value) = done.clone()
                    {
                        return value;
                    }
                    // The leader was cancelled: try again, maybe leading this time.
                }
            }
        }
    }

    fn join_or_lead(&self, key: &str) -> Role<T> {
        let mut running = lock(&self.running);
        if let Some(result) = running.get(key) {
            return Role::Wait(result.clone());
        }
        let (tx, rx) = watch::channel(None);
        running.insert(key.to_owned(), rx);
        Role::Lead(
            tx,
            Leading {
                running: Arc::clone(&self.running),
                key: key.to_owned(),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_callers_share_one_run() {
        let flight = Arc::new(SingleFlight::<u32>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let calls = (0..8).map(|_| {
            let (flight, runs) = (flight.clone(), runs.clone());
            tokio::spawn(async move {
                flight
                    .run("k", async {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        7
                    })
                    .await
            })
        });
        for call in futures::future::join_all(calls).await {
            assert_eq!(call.ok(), Some(7));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Done runs are forgotten: the next call runs again.
        assert_eq!(flight.run("k", async { 8 }).await, 8);
    }

    #[tokio::test]
    async fn a_waiter_takes_over_when_the_leader_is_cancelled() {
        let flight = Arc::new(SingleFlight::<u32>::default());
        let leader = {
            let flight = flight.clone();
            tokio::spawn(async move { flight.run("k", std::future::pending()).await })
        };
        tokio::task::yield_now().await;
        let waiter = {
            let flight = flight.clone();
            tokio::spawn(async move { flight.run("k", async { 3 }).await })
        };
        tokio::task::yield_now().await;
        leader.abort();
        assert_eq!(waiter.await.ok(), Some(3));
    }
}
