//! How much the store's file grows while a client pages through lists (`kubectl get` pages
//! by 500) and the fleet writes: 1,000 objects of ~0.5 KiB, each updated 20 times
//! (21,000 commits), while another thread lists them in pages of 500 every 200 ms.
//! redb cannot reuse pages that a live read transaction may still see, so how long a
//! paged list's snapshot is kept decides how much the file grows.
//!
//! `cargo run --release -p wasmfleet-server --example store_growth`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use wasmfleet_server::store::{ObjectKey, PageRequest, Scope, Store, StoreError};

const OBJECTS: usize = 1000;
const ROUNDS: usize = 20;

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("state.redb");
    let store = Store::open(&path)?;
    let key = |i: usize| ObjectKey::namespaced("pods", "default", &format!("p{i}"));
    for i in 0..OBJECTS {
        let pod = json!({"metadata": {"name": format!("p{i}")}, "spec": {"x": "y".repeat(500)}});
        store.create(&key(i), pod)?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let lister = std::thread::spawn({
        let (store, stop) = (store.clone(), Arc::clone(&stop));
        move || page_through(&store, &stop)
    });
    for round in 0..ROUNDS {
        for i in 0..OBJECTS {
            store.update_with(&key(i), |pod: &mut Value| {
                pod["status"] = json!({"round": round});
                Ok::<_, StoreError>(())
            })?;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let lists = lister
        .join()
        .map_err(|_| anyhow::anyhow!("the lister panicked"))??;
    let size = std::fs::metadata(&path)?.len();
    println!(
        "{} commits, {lists} paged lists: state.redb is {} MiB",
        store.writes(),
        size >> 20
    );
    Ok(())
}

/// Lists every object in pages of 500 until `stop`; returns how many lists it read.
fn page_through(store: &Store, stop: &AtomicBool) -> Result<usize, StoreError> {
    let scope = Scope::namespace("pods", "default");
    let mut lists = 0;
    while !stop.load(Ordering::Relaxed) {
        let mut request = PageRequest {
            limit: 500,
            resume: None,
        };
        loop {
            let page = store.list_page(&scope, &request, |_| true)?;
            match page.next {
                Some(after) => request.resume = Some((page.revision, after)),
                None => break,
            }
        }
        lists += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(lists)
}
