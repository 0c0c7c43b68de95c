//! The controller runner: the one loop every store-driven controller runs on (kube-runtime's
//! `Controller`, client-go's workqueue).
//!
//! # Contract
//! A controller implements [`Controller`]:
//!
//! - [`Controller::keys_for`] maps one cache change to the keys it concerns (a Node to
//!   itself; for a ReplicaSet controller, a pod to its controller owner's key);
//! - [`Controller::all_keys`] lists every key it is responsible for (queued at start, at
//!   every resync and when the runner missed changes);
//! - [`Controller::observe`] reads the desired and the observed state of one key from the
//!   [`Cache`] (and in-memory state), never the store;
//! - [`Controller::plan`] is **pure**: from that state, the actions to take (none when the
//!   world is as desired). Unit-test it exhaustively;
//! - [`Controller::execute`] applies one action through the store, idempotently
//!   (read-modify-write, re-checking inside the write what the plan assumed).
//!
//! The runner hides *why* a key was queued: reconcile is by key and level-triggered, so it
//! must be idempotent: reconciling a key twice, or after a resync with nothing new, writes
//! nothing. The runner guarantees:
//!
//! - a key waits in the queue at most once, and is never reconciled by two workers at once;
//! - after a reconcile that executed actions, the same key is reconciled again only once the
//!   cache holds those writes (so a plan never acts twice on stale state);
//! - a failed reconcile is retried after a per-key exponential back-off (one home:
//!   [`wasmfleet_protocol::backoff`]), reset by the key's next success;
//! - every key is re-planned at least every [`RunnerConfig::resync`], and again when
//!   [`Controller::due_in`] says its state changes with time;
//! - on shutdown it stops taking keys, lets the reconciles in progress finish (drain, not
//!   abort) and returns.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wasmfleet_protocol::backoff::BackoffPolicy;

use super::queue::WorkQueue;
use crate::informer::{Cache, Change};
use crate::store::{ObjectKey, Store, StoreError};

/// What a controller implements; see the module documentation.
pub trait Controller: Send + Sync + 'static {
    /// What [`Controller::plan`] needs about one key (desired and observed state).
    type State: Send;
    /// One change [`Controller::execute`] makes.
    type Action: Send + fmt::Debug;

    /// The controller's name, for logs.
    fn name(&self) -> &'static str;

    /// The keys one cache change concerns.
    fn keys_for(&self, change: &Change) -> Vec<ObjectKey>;

    /// Every key the controller is responsible for.
    fn all_keys(&self, cache: &Cache) -> Vec<ObjectKey>;

    /// Reads the state of `key` from the cache.
    fn observe(&self, key: &ObjectKey, cache: &Cache) -> Self::State;

    /// Pure: what to do about the observed state.
    fn plan(&self, state: &Self::State) -> Vec<Self::Action>;

    /// Applies one action through the store, idempotently.
    fn execute(&self, action: &Self::Action, store: &Store) -> Result<(), StoreError>;

    /// Pure: how soon the observed state changes by the clock alone (a pod becoming
    /// available once `minReadySeconds` have passed), so the key is re-planned then rather
    /// than at the next resync. `None` (the default): nothing is due.
    fn due_in(&self, _state: &Self::State) -> Option<Duration> {
        None
    }
}

/// How a runner behaves.
#[derive(Debug, Clone, Copy)]
pub struct RunnerConfig {
    /// Every key is re-planned at least this often.
    pub resync: Duration,
    /// How many keys are reconciled at once.
    pub workers: usize,
    /// Retries of a failing key.
    pub backoff: BackoffPolicy,
}

impl Default for RunnerConfig {
    /// A 30 s resync, one worker, retries from 100 ms up to 60 s.
    fn default() -> Self {
        RunnerConfig {
            resync: Duration::from_secs(30),
            workers: 1,
            backoff: BackoffPolicy {
                base: Duration::from_millis(100),
                max: Duration::from_secs(60),
            },
        }
    }
}

/// What the runner's tasks share.
struct Shared<C> {
    controller: C,
    store: Store,
    cache: Cache,
    queue: Mutex<WorkQueue>,
    wake: Notify,
}

impl<C: Controller> Shared<C> {
    fn with_queue<R>(&self, f: impl FnOnce(&mut WorkQueue) -> R) -> R {
        // Every queue operation leaves it consistent: a poisoned lock is still usable.
        f(&mut self.queue.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn add(&self, key: ObjectKey) {
        if self.with_queue(|queue| queue.add(key)) {
            self.wake.notify_one();
        }
    }

    fn add_all(&self) {
        for key in self.controller.all_keys(&self.cache) {
            self.add(key);
        }
    }

    /// Waits for the next key.
    async fn next(&self) -> ObjectKey {
        loop {
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if let Some(key) = self.with_queue(WorkQueue::take) {
                return key;
            }
            woken.await;
        }
    }

    /// Observe, plan, execute. Returns how many actions were executed and when the key is
    /// due again by the clock.
    fn reconcile(&self, key: &ObjectKey) -> Result<(usize, Option<Duration>), StoreError> {
        let state = self.controller.observe(key, &self.cache);
        let actions = self.controller.plan(&state);
        for action in &actions {
            tracing::debug!(controller = self.controller.name(), %key, ?action, "executing");
            self.controller.execute(action, &self.store)?;
        }
        Ok((actions.len(), self.controller.due_in(&state)))
    }
}

/// Runs `controller` until `shutdown` is cancelled; see the module documentation.
pub async fn run<C: Controller>(
    controller: C,
    store: Store,
    cache: Cache,
    config: RunnerConfig,
    shutdown: CancellationToken,
) {
    let mut changes = cache.subscribe();
    let name = controller.name();
    let shared = Arc::new(Shared {
        controller,
        store,
        cache,
        queue: Mutex::new(WorkQueue::new(config.backoff)),
        wake: Notify::new(),
    });
    let tasks = TaskTracker::new();
    for _ in 0..config.workers.max(1) {
        tasks.spawn(worker(Arc::clone(&shared), shutdown.clone(), tasks.clone()));
    }
    tracing::info!(controller = name, "controller started");
    let mut resync = tokio::time::interval(config.resync);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            batch = changes.recv() => match batch {
                Ok(batch) => {
                    for change in &batch.changes {
                        for key in shared.controller.keys_for(change) {
                            shared.add(key);
                        }
                    }
                }
                Err(RecvError::Lagged(_)) => shared.add_all(),
                Err(RecvError::Closed) => break,
            },
            _ = resync.tick() => shared.add_all(),
        }
    }
    tasks.close();
    tasks.wait().await;
    tracing::info!(controller = name, "controller stopped");
}

/// Takes keys until shutdown; a reconcile in progress always finishes.
async fn worker<C: Controller>(
    shared: Arc<Shared<C>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let key = tokio::select! {
            () = shutdown.cancelled() => return,
            key = shared.next() => key,
        };
        match shared.reconcile(&key) {
            Ok((executed, due)) => {
                shared.with_queue(|queue| queue.succeeded(&key));
                if let Some(delay) = due {
                    add_later(&shared, &tasks, &shutdown, key.clone(), delay);
                }
                if executed > 0 {
                    // The next reconcile of this key must see these writes.
                    let store_revision = shared.store.revision();
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        _ = shared.cache.wait_for(store_revision) => {}
                    }
                }
            }
            Err(err) => {
                let delay = shared.with_queue(|queue| queue.failed(&key, rand::random::<f64>()));
                let name = shared.controller.name();
                tracing::warn!(controller = name, %key, %err, retry_in = ?delay, "reconcile failed");
                add_later(&shared, &tasks, &shutdown, key.clone(), delay);
            }
        }
        if shared.with_queue(|queue| queue.done(&key)) {
            shared.wake.notify_one();
        }
    }
}

/// Queues `key` again after `delay` (unless the runner shuts down first).
fn add_later<C: Controller>(
    shared: &Arc<Shared<C>>,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
    key: ObjectKey,
    delay: Duration,
) {
    let (shared, shutdown) = (Arc::clone(shared), shutdown.clone());
    tasks.spawn(async move {
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(delay) => shared.add(key),
        }
    });
}

#[cfg(test)]
mod tests;
