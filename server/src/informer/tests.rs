//! The cache against a real store: it mirrors writes in order, tells subscribers which keys
//! changed, and lists again when it falls behind the event log.

use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::reflector::Reflector;
use super::*;
use crate::store::{Scope, StoreOptions};

fn store(retention: u64) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = StoreOptions {
        event_retention: retention,
        ..StoreOptions::default()
    };
    let store = Store::open_with(dir.path().join("state.redb"), options).expect("store");
    (dir, store)
}

fn pod(name: &str, node: &str) -> Value {
    json!({"metadata": {"name": name, "namespace": "default"}, "spec": {"nodeName": node}})
}

fn pod_key(name: &str) -> ObjectKey {
    ObjectKey::namespaced("pods", "default", name)
}

async fn synced(cache: &Cache, store: &Store) {
    let caught_up = tokio::time::timeout(Duration::from_secs(5), cache.wait_for(store.revision()));
    assert!(caught_up.await.expect("the cache caught up in time"));
}

#[tokio::test]
async fn the_cache_starts_complete_and_follows_every_write() {
    let (_dir, store) = store(1000);
    store
        .create(&pod_key("old"), pod("old", "pi-1"))
        .expect("create");
    let (shutdown, tracker) = (CancellationToken::new(), TaskTracker::new());
    let cache = Cache::start(&store, &RESOURCES, shutdown.clone(), &tracker).expect("start");
    assert_eq!(cache.pods_on_node("pi-1").len(), 1);

    let mut changes = cache.subscribe();
    store
        .create(&pod_key("new"), pod("new", "pi-2"))
        .expect("create");
    store.delete(&pod_key("old"), None).expect("delete");
    synced(&cache, &store).await;
    assert!(cache.pods_on_node("pi-1").is_empty());
    assert_eq!(cache.pods_on_node("pi-2").len(), 1);
    assert_eq!(
        cache
            .get(&pod_key("new"))
            .map(|p| p["spec"]["nodeName"].clone()),
        Some(json!("pi-2"))
    );

    let mut seen = Vec::new();
    while seen.len() < 2 {
        let batch = changes.recv().await.expect("a batch");
        seen.extend(
            batch
                .of("pods")
                .map(|c| (c.key.name.clone(), c.new.is_some())),
        );
    }
    assert_eq!(seen, [("new".to_owned(), true), ("old".to_owned(), false)]);
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
}

#[tokio::test]
async fn a_reflector_behind_the_event_log_lists_again_and_reports_the_difference() {
    let (_dir, store) = store(5);
    store
        .create(&pod_key("doomed"), pod("doomed", "pi-1"))
        .expect("create");
    let cache = Cache::empty(&RESOURCES);
    let mut reflector = Reflector::list(&store, &cache).expect("list");
    let mut changes = cache.subscribe();
    store.delete(&pod_key("doomed"), None).expect("delete");
    for i in 0..30 {
        store
            .create(&pod_key(&format!("p{i}")), pod("p", "pi-2"))
            .expect("create");
    }
    assert!(matches!(
        reflector.catch_up(&store),
        Err(StoreError::Gone { .. })
    ));

    let shutdown = CancellationToken::new();
    let task = tokio::spawn(reflector.run(store.clone(), shutdown.clone()));
    synced(&cache, &store).await;
    assert_eq!(cache.list("pods").len(), 30);
    assert!(cache.get(&pod_key("doomed")).is_none());
    let batch = changes.recv().await.expect("a batch");
    assert!(batch.relisted);
    assert!(
        batch
            .changes
            .iter()
            .any(|c| c.key == pod_key("doomed") && c.new.is_none())
    );
    shutdown.cancel();
    task.await.expect("reflector");
}

#[tokio::test]
async fn objects_of_resources_not_followed_stay_out() {
    let (_dir, store) = store(1000);
    let (shutdown, tracker) = (CancellationToken::new(), TaskTracker::new());
    let cache = Cache::start(&store, &["nodes"], shutdown.clone(), &tracker).expect("start");
    store.create(&pod_key("p"), pod("p", "pi")).expect("create");
    store
        .create(
            &ObjectKey::cluster("nodes", "pi"),
            json!({"metadata": {"name": "pi"}}),
        )
        .expect("create");
    synced(&cache, &store).await;
    assert!(cache.list("pods").is_empty());
    assert_eq!(cache.list("nodes").len(), 1);
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_concurrent_writes_the_cache_equals_the_store() {
    let (_dir, store) = store(50);
    let (shutdown, tracker) = (CancellationToken::new(), TaskTracker::new());
    let cache = Cache::start(&store, &RESOURCES, shutdown.clone(), &tracker).expect("start");
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..120 {
                    let key = pod_key(&format!("w{w}-{}", i % 20));
                    let node = format!("pi-{}", i % 3);
                    if i % 7 == 0 {
                        let _ = store.delete(&key, None);
                    } else {
                        let _ = store.delete(&key, None);
                        store.create(&key, pod(&key.name, &node)).expect("create");
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("writer");
    }
    synced(&cache, &store).await;
    let stored = store.list(&Scope::all("pods")).expect("list").items;
    let cached: Vec<Value> = cache.list("pods").iter().map(|p| (**p).clone()).collect();
    assert_eq!(cached, stored);
    let on_nodes: usize = (0..3)
        .map(|n| cache.pods_on_node(&format!("pi-{n}")).len())
        .sum();
    assert_eq!(on_nodes, stored.len());
    shutdown.cancel();
}
