//! The runner with a toy controller (every node gets the label `toy=yes`) on a real store
//! and cache: the toy's plan is pure and tested alone; the runner reconciles new keys,
//! retries failures with back-off, leaves a settled world alone and drains on shutdown.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

use super::*;
use crate::informer::{RESOURCES, key_of};

/// Labels every node `toy=yes`; its first `fail_first` executions fail.
struct Toy {
    fail_first: usize,
    executed: Arc<AtomicUsize>,
    observed: Arc<AtomicUsize>,
}

#[derive(Debug, PartialEq, Eq)]
enum ToyAction {
    Label(ObjectKey),
}

impl Controller for Toy {
    type State = Option<(ObjectKey, bool)>;
    type Action = ToyAction;

    fn name(&self) -> &'static str {
        "toy"
    }

    fn keys_for(&self, change: &Change) -> Vec<ObjectKey> {
        (change.key.resource == "nodes")
            .then(|| change.key.clone())
            .into_iter()
            .collect()
    }

    fn all_keys(&self, cache: &Cache) -> Vec<ObjectKey> {
        cache
            .list("nodes")
            .iter()
            .filter_map(|node| key_of("nodes", node))
            .collect()
    }

    fn observe(&self, key: &ObjectKey, cache: &Cache) -> Self::State {
        self.observed.fetch_add(1, Ordering::SeqCst);
        let node = cache.get(key)?;
        let labelled = node.pointer("/metadata/labels/toy") == Some(&json!("yes"));
        Some((key.clone(), labelled))
    }

    fn plan(&self, state: &Self::State) -> Vec<ToyAction> {
        match state {
            Some((key, false)) => vec![ToyAction::Label(key.clone())],
            _ => Vec::new(),
        }
    }

    fn execute(&self, action: &ToyAction, store: &Store) -> Result<(), StoreError> {
        let attempt = self.executed.fetch_add(1, Ordering::SeqCst);
        if attempt < self.fail_first {
            return Err(StoreError::InvalidObject("the toy fails on purpose".into()));
        }
        let ToyAction::Label(key) = action;
        store.update_with(key, |node: &mut Value| {
            node["metadata"]["labels"]["toy"] = json!("yes");
            Ok::<(), StoreError>(())
        })?;
        Ok(())
    }
}

/// A toy and its counters of executed actions and observed keys.
fn toy(fail_first: usize) -> (Toy, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let (executed, observed) = (Arc::default(), Arc::default());
    let toy = Toy {
        fail_first,
        executed: Arc::clone(&executed),
        observed: Arc::clone(&observed),
    };
    (toy, executed, observed)
}

#[test]
fn the_toy_plans_a_label_only_for_an_unlabelled_node() {
    let (toy, _, _) = toy(0);
    let key = ObjectKey::cluster("nodes", "pi");
    assert_eq!(
        toy.plan(&Some((key.clone(), false))),
        [ToyAction::Label(key.clone())]
    );
    assert!(toy.plan(&Some((key, true))).is_empty());
    assert!(toy.plan(&None).is_empty());
}

fn config() -> RunnerConfig {
    RunnerConfig {
        resync: Duration::from_millis(200),
        workers: 2,
        backoff: BackoffPolicy {
            base: Duration::from_millis(20),
            max: Duration::from_millis(100),
        },
    }
}

async fn labelled(store: &Store, name: &str) {
    let key = ObjectKey::cluster("nodes", name);
    let done = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let node = store.get(&key).expect("read").expect("node");
            if node.pointer("/metadata/labels/toy") == Some(&json!("yes")) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    assert!(done.await.is_ok(), "node {name} was never labelled");
}

#[tokio::test]
async fn the_runner_reconciles_new_keys_retries_failures_and_drains_on_shutdown() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path().join("state.redb")).expect("store");
    store
        .create(&ObjectKey::cluster("nodes", "early"), json!({}))
        .expect("node");
    let (shutdown, tracker) = (CancellationToken::new(), TaskTracker::new());
    let cache = Cache::start(&store, &RESOURCES, shutdown.clone(), &tracker).expect("cache");
    let (toy, executed, observed) = toy(2);
    let runner = tokio::spawn(run(toy, store.clone(), cache, config(), shutdown.clone()));

    labelled(&store, "early").await;
    assert_eq!(
        executed.load(Ordering::SeqCst),
        3,
        "two failures, then the label"
    );
    store
        .create(&ObjectKey::cluster("nodes", "late"), json!({}))
        .expect("node");
    labelled(&store, "late").await;

    // Settled: resyncs re-plan both keys (twice each at least) and write nothing.
    let revision = store.revision();
    let before = observed.load(Ordering::SeqCst);
    let resynced = tokio::time::timeout(Duration::from_secs(5), async {
        while observed.load(Ordering::SeqCst) < before + 4 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    assert!(resynced.await.is_ok(), "no resync re-planned the keys");
    assert_eq!(store.revision(), revision);
    assert_eq!(executed.load(Ordering::SeqCst), 4);

    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(5), runner).await;
    assert!(
        stopped.is_ok_and(|joined| joined.is_ok()),
        "the runner did not drain"
    );
}

/// Plans nothing and hears of no change; says its one key is due again in 20 ms until it
/// was observed `times`.
struct Ticking {
    times: usize,
    observed: Arc<AtomicUsize>,
}

impl Controller for Ticking {
    type State = usize;
    type Action = ToyAction;

    fn name(&self) -> &'static str {
        "ticking"
    }

    fn keys_for(&self, _change: &Change) -> Vec<ObjectKey> {
        Vec::new()
    }

    fn all_keys(&self, _cache: &Cache) -> Vec<ObjectKey> {
        vec![ObjectKey::cluster("nodes", "clock")]
    }

    fn observe(&self, _key: &ObjectKey, _cache: &Cache) -> usize {
        self.observed.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn plan(&self, _state: &usize) -> Vec<ToyAction> {
        Vec::new()
    }

    fn execute(&self, _action: &ToyAction, _store: &Store) -> Result<(), StoreError> {
        Ok(())
    }

    fn due_in(&self, observed: &usize) -> Option<Duration> {
        (*observed < self.times).then_some(Duration::from_millis(20))
    }
}

#[tokio::test]
async fn a_key_due_by_the_clock_is_planned_again_without_a_change_or_a_resync() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path().join("state.redb")).expect("store");
    let (shutdown, tracker) = (CancellationToken::new(), TaskTracker::new());
    let cache = Cache::start(&store, &RESOURCES, shutdown.clone(), &tracker).expect("cache");
    let observed = Arc::new(AtomicUsize::new(0));
    let ticking = Ticking {
        times: 3,
        observed: Arc::clone(&observed),
    };
    let config = RunnerConfig {
        resync: Duration::from_secs(3600),
        ..config()
    };
    let runner = tokio::spawn(run(ticking, store, cache, config, shutdown.clone()));
    let thrice = tokio::time::timeout(Duration::from_secs(5), async {
        while observed.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    shutdown.cancel();
    runner.await.expect("runner");
    assert!(
        thrice.is_ok(),
        "observed {} times",
        observed.load(Ordering::SeqCst)
    );
}
