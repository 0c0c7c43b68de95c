use std::time::Duration;

use serde_json::json;

use super::*;

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(dir.path().join("state.redb")).unwrap()
}

fn pod_key(name: &str) -> ObjectKey {
    ObjectKey::namespaced("pods", "default", name)
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"x": 1}})
}

fn rv(obj: &Value) -> u64 {
    resource_version(obj).unwrap().parse().unwrap()
}

#[test]
fn every_write_bumps_the_global_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let a = store.create(&pod_key("a"), pod("a")).unwrap();
    let b = store.create(&pod_key("b"), pod("b")).unwrap();
    assert_eq!(rv(&a), 1);
    assert_eq!(rv(&b), 2);
    assert_eq!(store.revision(), 2);
    let deleted = store.delete(&pod_key("a"), None).unwrap();
    assert_eq!(rv(&deleted), 3);
    assert_eq!(store.get(&pod_key("a")).unwrap(), None);
}

#[test]
fn creating_an_existing_key_fails() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create(&pod_key("a"), pod("a")).unwrap();
    let err = store.create(&pod_key("a"), pod("a")).unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(_)), "{err}");
    assert_eq!(store.revision(), 1);
}

#[test]
fn a_stale_resource_version_conflicts_and_a_missing_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let created = store.create(&pod_key("a"), pod("a")).unwrap();
    let mut changed = created.clone();
    changed["spec"]["x"] = json!(2);
    let updated = store.update(&pod_key("a"), changed.clone()).unwrap();
    assert_eq!(updated["metadata"]["generation"], 2);

    // `changed` still carries the first resourceVersion.
    let err = store.update(&pod_key("a"), changed.clone()).unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    let err = store.delete(&pod_key("a"), Some("1")).unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");

    changed["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    changed["spec"]["x"] = json!(3);
    let unconditional = store.update(&pod_key("a"), changed).unwrap();
    assert_eq!(unconditional["metadata"]["uid"], created["metadata"]["uid"]);
}

#[test]
fn update_with_writes_changes_and_skips_no_ops() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create(&pod_key("a"), pod("a")).unwrap();
    let updated = store
        .update_with(&pod_key("a"), |obj| {
            obj["status"] = json!({"phase": "Running"});
            Ok::<_, StoreError>(())
        })
        .unwrap();
    assert_eq!(updated["status"]["phase"], "Running");
    assert_eq!(store.revision(), 2);

    let same = store
        .update_with(&pod_key("a"), |obj| {
            obj["status"] = json!({"phase": "Running"});
            Ok::<_, StoreError>(())
        })
        .unwrap();
    assert_eq!(rv(&same), 2);
    assert_eq!(store.revision(), 2);
}

#[test]
fn update_with_aborts_when_the_closure_fails_or_the_key_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create(&pod_key("a"), pod("a")).unwrap();
    let err = store
        .update_with(&pod_key("a"), |obj| {
            obj["spec"] = json!(null);
            Err(StoreError::InvalidObject("no".into()))
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidObject(_)));
    assert_eq!(store.get(&pod_key("a")).unwrap().unwrap()["spec"]["x"], 1);

    let err = store
        .update_with(&pod_key("b"), |_| Ok::<_, StoreError>(()))
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)));
}

#[test]
fn upsert_with_creates_then_modifies() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let key = ObjectKey::cluster("nodes", "pi");
    let node = |current: Option<&Value>| {
        let count = current.map_or(0, |n| n["status"]["n"].as_i64().unwrap());
        Ok::<_, StoreError>(json!({"metadata": {}, "status": {"n": count + 1}}))
    };
    assert_eq!(store.upsert_with(&key, node).unwrap()["status"]["n"], 1);
    let second = store.upsert_with(&key, node).unwrap();
    assert_eq!(second["status"]["n"], 2);
    assert_eq!(second["metadata"]["name"], "pi");
}

#[test]
fn upsert_many_writes_a_batch_in_one_commit_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create(&pod_key("a"), pod("a")).unwrap();
    store.create(&pod_key("b"), pod("b")).unwrap();
    let mut commits = store.subscribe();
    commits.mark_unchanged();
    let keys = [pod_key("a"), pod_key("b"), pod_key("c"), pod_key("a")];
    let stored = store
        .upsert_many(&keys, |index, current| {
            Ok::<_, StoreError>(match (index, current) {
                // b is left alone, and an unchanged a writes nothing.
                (1, _) => None,
                (0, Some(_)) => Some(json!({"metadata": {"name": "a"}, "spec": {"x": 2}})),
                (2, None) => Some(pod("c")),
                (3, Some(a)) => Some(a.clone()),
                _ => panic!("unexpected {index} {current:?}"),
            })
        })
        .unwrap();
    let written: Vec<bool> = stored.iter().map(Option::is_some).collect();
    assert_eq!(written, [true, false, true, false]);
    assert_eq!(rv(stored[0].as_ref().unwrap()), 3);
    assert_eq!(
        rv(stored[2].as_ref().unwrap()),
        4,
        "one revision per object"
    );
    assert_eq!(store.revision(), 4);
    assert!(commits.has_changed().unwrap(), "watchers are woken");
    assert_eq!(store.get(&pod_key("a")).unwrap().unwrap()["spec"]["x"], 2);
    let (events, _) = store.events_after(&Scope::all("pods"), 2, 10).unwrap();
    assert_eq!(events.len(), 2, "an event per written object");

    let failed = store.upsert_many(&[pod_key("d"), pod_key("e")], |index, _| match index {
        0 => Ok(Some(pod("d"))),
        _ => Err(StoreError::InvalidObject("no".into())),
    });
    assert!(failed.is_err());
    assert_eq!(store.get(&pod_key("d")).unwrap(), None, "all or nothing");
    assert_eq!(store.revision(), 4);
}

#[test]
fn lists_cover_their_scope_and_carry_the_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create(&pod_key("a"), pod("a")).unwrap();
    store
        .create(&ObjectKey::namespaced("pods", "other", "b"), pod("b"))
        .unwrap();
    store
        .create(&ObjectKey::cluster("nodes", "n"), json!({"metadata": {}}))
        .unwrap();
    let all = store.list(&Scope::all("pods")).unwrap();
    assert_eq!(all.items.len(), 2);
    assert_eq!(all.revision, 3);
    let default = store.list(&Scope::namespace("pods", "default")).unwrap();
    assert_eq!(default.items.len(), 1);
    assert_eq!(default.items[0]["metadata"]["name"], "a");
}

#[tokio::test]
async fn a_watch_sees_exactly_the_changes_after_its_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.create(&pod_key("before"), pod("before")).unwrap();
    let listed = store.list(&Scope::all("pods")).unwrap();
    let mut watcher = store.watch(Scope::all("pods"), listed.revision).unwrap();

    let writer = store.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        writer
            .create(&ObjectKey::cluster("nodes", "n"), json!({"metadata": {}}))
            .unwrap();
        writer.create(&pod_key("after"), pod("after")).unwrap();
        writer.delete(&pod_key("after"), None).unwrap();
    });

    let mut seen = Vec::new();
    while seen.len() < 2 {
        let batch = tokio::time::timeout(Duration::from_secs(5), watcher.next())
            .await
            .expect("watch never woke")
            .unwrap();
        seen.extend(batch);
    }
    let kinds: Vec<_> = seen.iter().map(|e| (e.kind, e.key.name.as_str())).collect();
    assert_eq!(
        kinds,
        [(EventType::Added, "after"), (EventType::Deleted, "after")]
    );
    assert_eq!(seen[1].revision, 4);
    assert_eq!(rv(&seen[1].object), 4);
    assert_eq!(watcher.revision(), 4);
}

#[test]
fn a_watch_resumes_from_any_retained_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for name in ["a", "b", "c"] {
        store.create(&pod_key(name), pod(name)).unwrap();
    }
    let (events, scanned) = store.events_after(&Scope::all("pods"), 1, 100).unwrap();
    let names: Vec<_> = events.iter().map(|e| e.key.name.as_str()).collect();
    assert_eq!(names, ["b", "c"]);
    assert_eq!(scanned, 3);

    let (events, scanned) = store.events_after(&Scope::all("pods"), 0, 2).unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(scanned, 2, "a limited scan reports where it stopped");
}

#[test]
fn compacted_revisions_are_gone() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        event_retention: 10,
        ..StoreOptions::default()
    };
    let store = Store::open_with(dir.path().join("s.redb"), options).unwrap();
    for i in 0..30 {
        store.create(&pod_key(&format!("p{i}")), pod("p")).unwrap();
    }
    let err = store.watch(Scope::all("pods"), 1).err().unwrap();
    assert!(
        matches!(err, StoreError::Gone { requested: 1, .. }),
        "{err}"
    );
    let (events, _) = store.events_after(&Scope::all("pods"), 25, 100).unwrap();
    assert_eq!(events.len(), 5);
}

#[test]
fn state_survives_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let uid = {
        let store = open(&dir);
        store.create(&pod_key("a"), pod("a")).unwrap();
        let b = store.create(&pod_key("b"), pod("b")).unwrap();
        store.delete(&pod_key("a"), None).unwrap();
        b["metadata"]["uid"].clone()
    };
    let store = open(&dir);
    assert_eq!(store.revision(), 3);
    let b = store.get(&pod_key("b")).unwrap().unwrap();
    assert_eq!(b["metadata"]["uid"], uid);
    assert_eq!(store.get(&pod_key("a")).unwrap(), None);
    let (events, _) = store.events_after(&Scope::all("pods"), 2, 100).unwrap();
    assert_eq!(events[0].kind, EventType::Deleted);
    let next = store.create(&pod_key("c"), pod("c")).unwrap();
    assert_eq!(rv(&next), 4);
}

#[test]
fn a_second_open_of_the_same_file_fails_instead_of_corrupting_it() {
    let dir = tempfile::tempdir().unwrap();
    let _store = open(&dir);
    assert!(Store::open(dir.path().join("state.redb")).is_err());
}

#[test]
fn a_dry_run_handle_answers_like_a_write_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let dry = store.dry_run(true);
    let answered = dry.create(&pod_key("a"), pod("a")).unwrap();
    assert_eq!(answered["metadata"]["name"], "a");
    assert!(answered["metadata"]["uid"].is_string());
    assert_eq!(store.get(&pod_key("a")).unwrap(), None);
    assert_eq!(store.revision(), 0);

    let stored = store.create(&pod_key("a"), pod("a")).unwrap();
    let edited = dry
        .update_with(&pod_key("a"), |obj: &mut Value| {
            obj["spec"]["x"] = json!(2);
            Ok::<_, StoreError>(())
        })
        .unwrap();
    assert_eq!(edited["spec"]["x"], 2);
    assert_eq!(store.get(&pod_key("a")).unwrap(), Some(stored));
    assert!(dry.delete(&pod_key("a"), None).is_ok());
    assert!(store.get(&pod_key("a")).unwrap().is_some());
    assert_eq!(store.revision(), 1);
}

fn page_names(page: &Page) -> Vec<&str> {
    page.items
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect()
}

#[test]
fn pages_continue_in_the_snapshot_of_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for name in ["a", "b", "c"] {
        store.create(&pod_key(name), pod(name)).unwrap();
    }
    let scope = Scope::namespace("pods", "default");
    let first_page = PageRequest {
        limit: 2,
        resume: None,
    };
    let first = store.list_page(&scope, &first_page, |_| true).unwrap();
    assert_eq!(page_names(&first), ["a", "b"]);
    assert_eq!(first.remaining, 1);
    let after = first.next.clone().unwrap();
    store.delete(&pod_key("c"), None).unwrap();
    store.create(&pod_key("d"), pod("d")).unwrap();
    let resume = PageRequest {
        limit: 2,
        resume: Some((first.revision, after)),
    };
    let second = store.list_page(&scope, &resume, |_| true).unwrap();
    assert_eq!(
        page_names(&second),
        ["c"],
        "the snapshot, not the store now"
    );
    assert_eq!((second.next, second.remaining), (None, 0));
    assert_eq!(
        store.inner.snapshots.len(),
        0,
        "a finished list lets its snapshot go (redb reuses pages only without it)"
    );
    let filtered = store
        .list_page(&scope, &PageRequest::default(), |p| {
            p["metadata"]["name"] != "a"
        })
        .unwrap();
    assert_eq!(page_names(&filtered), ["b", "d"]);
    let gone = PageRequest {
        limit: 1,
        resume: Some((1, "pods/default/a".into())),
    };
    assert!(matches!(
        store.list_page(&scope, &gone, |_| true),
        Err(StoreError::Gone { .. })
    ));
}

#[test]
fn a_snapshot_stays_until_every_list_on_it_read_its_last_page() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for name in ["a", "b", "c"] {
        store.create(&pod_key(name), pod(name)).unwrap();
    }
    let scope = Scope::namespace("pods", "default");
    let first_page = PageRequest {
        limit: 1,
        resume: None,
    };
    let one = store.list_page(&scope, &first_page, |_| true).unwrap();
    let two = store.list_page(&scope, &first_page, |_| true).unwrap();
    assert_eq!(one.revision, two.revision);
    store.create(&pod_key("d"), pod("d")).unwrap();
    let finish = |first: &Page| {
        let mut after = first.next.clone();
        while let Some(key) = after {
            let resume = PageRequest {
                limit: 1,
                resume: Some((first.revision, key)),
            };
            after = store.list_page(&scope, &resume, |_| true).unwrap().next;
        }
    };
    finish(&one);
    assert_eq!(
        store.inner.snapshots.len(),
        1,
        "the second list still reads it"
    );
    finish(&two);
    assert_eq!(store.inner.snapshots.len(), 0);
}

#[test]
fn snapshots_expire_and_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let snapshots = pages::Snapshots::default();
    let read = || Arc::new(store.database().begin_read().unwrap());
    let now = std::time::Instant::now();
    snapshots.keep(1, read(), now.checked_sub(pages::SNAPSHOT_TTL).unwrap());
    assert!(snapshots.find(1).is_none(), "older than the TTL");
    for rev in 0..=pages::MAX_SNAPSHOTS as u64 {
        snapshots.keep(rev + 10, read(), now);
    }
    assert!(snapshots.find(10).is_none(), "the oldest went first");
    assert!(snapshots.find(11).is_some());
}

fn sealed_store(path: &std::path::Path, cipher: &Arc<SecretsCipher>) -> Store {
    let options = StoreOptions {
        secrets_cipher: Some(Arc::clone(cipher)),
        ..StoreOptions::default()
    };
    Store::open_with(path, options).unwrap()
}

fn secret(name: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
        "data": {"password": value}})
}

fn file_contains(path: &std::path::Path, needle: &str) -> bool {
    let bytes = std::fs::read(path).unwrap();
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn secrets_are_sealed_in_the_file_and_open_transparently() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let key = SecretsCipher::generate_key().unwrap();
    let cipher = Arc::new(SecretsCipher::new(&key).unwrap());
    let store = sealed_store(&path, &cipher);
    let key_a = ObjectKey::namespaced("secrets", "default", "a");
    store
        .create(&key_a, secret("a", "UExBSU5URVhULUEx"))
        .unwrap();
    store
        .update_with(&key_a, |s: &mut Value| {
            s["data"]["password"] = json!("UExBSU5URVhULUEy");
            Ok::<_, StoreError>(())
        })
        .unwrap();
    store.create(&pod_key("p"), pod("p")).unwrap();
    let got = store.get(&key_a).unwrap().unwrap();
    assert_eq!(got["data"]["password"], "UExBSU5URVhULUEy");
    let listed = store.list(&Scope::all("secrets")).unwrap();
    assert_eq!(listed.items.len(), 1);
    let (events, _) = store.events_after(&Scope::all("secrets"), 0, 100).unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].object["data"]["password"], "UExBSU5URVhULUEx");
    drop(store);
    // A dump of the file holds neither version of the value, but still the pod in clear.
    assert!(!file_contains(&path, "UExBSU5URVhULUEx"));
    assert!(!file_contains(&path, "UExBSU5URVhULUEy"));
    assert!(file_contains(&path, "\"kind\":\"Pod\""));
    // Without the key the Secret does not open; with another key neither.
    let store = Store::open(&path).unwrap();
    assert!(matches!(store.get(&key_a), Err(StoreError::Corrupt { .. })));
    drop(store);
    let other = Arc::new(SecretsCipher::new(&SecretsCipher::generate_key().unwrap()).unwrap());
    let store = sealed_store(&path, &other);
    assert!(matches!(store.get(&key_a), Err(StoreError::Corrupt { .. })));
}

#[test]
fn secrets_stored_before_encryption_are_sealed_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let store = Store::open(&path).unwrap();
    let key_a = ObjectKey::namespaced("secrets", "default", "a");
    store.create(&key_a, secret("a", "T0xELVBMQUlO")).unwrap();
    drop(store);
    assert!(file_contains(&path, "T0xELVBMQUlO"));
    let cipher = Arc::new(SecretsCipher::new(&SecretsCipher::generate_key().unwrap()).unwrap());
    let store = sealed_store(&path, &cipher);
    assert_eq!(store.revision(), 1, "sealing writes no revision");
    let got = store.get(&key_a).unwrap().unwrap();
    assert_eq!(got["data"]["password"], "T0xELVBMQUlO");
    let (events, _) = store.events_after(&Scope::all("secrets"), 0, 100).unwrap();
    assert_eq!(events[0].object["data"]["password"], "T0xELVBMQUlO");
    drop(store);
    assert!(!file_contains(&path, "T0xELVBMQUlO"));
}

#[test]
fn after_a_key_rotation_the_next_open_reseals_everything_with_the_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let (old, new) = (
        SecretsCipher::generate_key().unwrap(),
        SecretsCipher::generate_key().unwrap(),
    );
    let store = sealed_store(&path, &Arc::new(SecretsCipher::new(&old).unwrap()));
    let key_a = ObjectKey::namespaced("secrets", "default", "a");
    store.create(&key_a, secret("a", "Uk9UQVRF")).unwrap();
    drop(store);
    assert!(file_contains(&path, "k8s:enc:aesgcm:v1:key1:"));

    let ring = SecretsCipher::with_keys(&[("key2", &new), ("key1", &old)]).unwrap();
    let store = sealed_store(&path, &Arc::new(ring));
    assert_eq!(store.revision(), 1, "resealing writes no revision");
    drop(store);
    assert!(!file_contains(&path, "k8s:enc:aesgcm:v1:key1:"));

    // The old key can go: the object and its event open with the new one alone.
    let store = sealed_store(
        &path,
        &Arc::new(SecretsCipher::with_keys(&[("key2", &new)]).unwrap()),
    );
    let got = store.get(&key_a).unwrap().unwrap();
    assert_eq!(got["data"]["password"], "Uk9UQVRF");
    let (events, _) = store.events_after(&Scope::all("secrets"), 0, 100).unwrap();
    assert_eq!(events[0].object["data"]["password"], "Uk9UQVRF");
}
