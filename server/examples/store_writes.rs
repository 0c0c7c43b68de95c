//! How long a store write takes, one writer at a time and eight at once: with group commit
//! concurrent writers share fsyncs (`store::group_commit`). 200 creates each way, to a store
//! in the current directory (not /tmp, which may be a tmpfs where fsync costs nothing).
//!
//! `cargo run --release -p wasmfleet-server --example store_writes`

use std::time::Instant;

use serde_json::json;
use wasmfleet_server::store::{ObjectKey, Store};

const WRITES: u32 = 200;
const THREADS: u32 = 8;

fn create(store: &Store, name: &str) -> anyhow::Result<()> {
    let key = ObjectKey::namespaced("pods", "default", name);
    store.create(
        &key,
        json!({"metadata": {"name": name, "namespace": "default"}}),
    )?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir_in(".")?;
    let store = Store::open(dir.path().join("state.redb"))?;
    let start = Instant::now();
    for i in 0..WRITES {
        create(&store, &format!("one-{i}"))?;
    }
    let one = start.elapsed() / WRITES;
    let start = Instant::now();
    std::thread::scope(|scope| {
        let writers: Vec<_> = (0..THREADS)
            .map(|t| {
                let store = store.clone();
                scope.spawn(move || {
                    (0..WRITES / THREADS).try_for_each(|i| create(&store, &format!("many-{t}-{i}")))
                })
            })
            .collect();
        writers
            .into_iter()
            .try_for_each(|w| w.join().map_err(|_| anyhow::anyhow!("a writer panicked"))?)
    })?;
    let many = start.elapsed() / WRITES;
    println!("{WRITES} creates, one writer: {one:?} per write");
    println!("{WRITES} creates, {THREADS} writers at once: {many:?} per write");
    println!("commits: {}", store.writes());
    Ok(())
}
