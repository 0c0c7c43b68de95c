//! The cluster state: Kubernetes objects in one redb file, with a global revision and a
//! watchable event log.
//!
//! [`Store`] is the one owner of the redb [`redb::Database`]; everything else holds a cheap
//! clone of it. Objects are Kubernetes JSON objects (`serde_json::Value`, with
//! `apiVersion`/`kind`/`metadata`/`spec`/`status`), keyed by [`ObjectKey`]
//! (`resource/namespace/name`). Callers that want typed access convert with
//! `serde_json::from_value::<k8s_openapi::api::core::v1::Pod>(obj)`; the store stays untyped so
//! that it never drops a field it does not know.
//!
//! Every write, in one redb transaction:
//! 1. bumps the global revision (the `metadata.resourceVersion` of everything, as a string),
//! 2. stamps the object (`uid`, `creationTimestamp`, `generation`, `resourceVersion`),
//! 3. stores it and appends an event (ADDED/MODIFIED/DELETED with the object) under the
//!    revision,
//! 4. commits durably (quick-repair on; concurrent writers share fsyncs: [`group_commit`]),
//!
//! and then wakes watchers through a `tokio::sync::watch<u64>` carrying the revision: the
//! watched revision is always durable, and the event log is read only up to it, so watchers
//! and the informer never see a write a crash could take back.
//! [`Store::upsert_many`] writes a batch of objects the same way in one transaction (one
//! fsync for all, each object still with its own revision and event).
//! Events older than the retention window are compacted; a watch that needs them gets
//! [`StoreError::Gone`] (Kubernetes 410).
//!
//! # Blocking
//! The API is synchronous. Each call is one short redb transaction and never spans an
//! `.await`; a write costs about one fsync (a few milliseconds). Async callers may call it
//! directly when an occasional few-millisecond stall of a runtime worker is acceptable
//! (controllers, the fleet's status writes), or wrap it in `tokio::task::spawn_blocking` (the
//! API does, since it serves many clients). Read transactions are MVCC snapshots and never
//! wait for a writer; writers queue on redb's single write lock.

mod error;
mod events;
mod group_commit;
mod key;
mod meta;
mod pages;
pub mod sealing;

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde_json::Value;
use tokio::sync::watch;

pub use error::StoreError;
pub use events::{EventType, WatchEvent, Watcher};
pub use key::{ObjectKey, Scope};
pub use meta::{Preconditions, resource_version};
pub use pages::{Page, PageRequest};
pub use sealing::SecretsCipher;

/// `resource/namespace/name` → the object's JSON.
const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
/// revision → the event written at that revision (see `events::encode_event`).
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// Counters: [`REV`] and [`COMPACTED`].
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The revision of the last write.
const REV: &str = "rev";
/// Events at or below this revision have been deleted.
const COMPACTED: &str = "compacted";

/// Tuning for [`Store::open`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// redb's page cache in bytes (redb's own default is 1 GiB, too much for a Pi).
    pub cache_size: usize,
    /// How many of the latest events to keep for watches to resume from.
    pub event_retention: u64,
    /// Seals Secrets at rest ([`sealing`]); `None` stores them as plain JSON.
    pub secrets_cipher: Option<Arc<SecretsCipher>>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            cache_size: 32 << 20,
            event_retention: 10_000,
            secrets_cipher: None,
        }
    }
}

/// A list result: the objects and the revision the list was read at (a watch started from
/// that revision sees exactly the changes after the list).
#[derive(Debug, Clone)]
pub struct Listing {
    /// The objects, ordered by key (namespace, then name).
    pub items: Vec<Value>,
    /// The store's revision when the list was read.
    pub revision: u64,
}

/// Handle to the cluster state. Cheap to clone; all clones share one database.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
    /// Writes through this handle are checked and answered but never committed
    /// ([`Store::dry_run`]).
    dry_run: bool,
}

struct Inner {
    db: Database,
    /// Carries the latest committed revision; watchers wait on it.
    revision: watch::Sender<u64>,
    retention: u64,
    /// Snapshots of paged lists ([`pages`]).
    snapshots: pages::Snapshots,
    /// Write transactions committed since the store was opened.
    writes: std::sync::atomic::AtomicU64,
    /// Seals and opens the objects of [`sealing::SEALED_RESOURCES`].
    cipher: Option<Arc<SecretsCipher>>,
    /// Shares fsyncs between concurrent writers.
    group: group_commit::GroupCommit,
}

/// What a read-modify-write decided to do with the object.
enum Op {
    Put(Value),
    Delete,
    Keep,
}

impl Store {
    /// Opens (or creates) the store at `path` with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, StoreOptions::default())
    }

    /// Opens (or creates) the store at `path`. Fails if another process holds the file.
    pub fn open_with(path: impl AsRef<Path>, options: StoreOptions) -> Result<Self, StoreError> {
        let mut db = Database::builder()
            .set_cache_size(options.cache_size)
            .create(path)?;
        let write = begin_write(&db)?;
        let rev = {
            write.open_table(OBJECTS)?;
            write.open_table(EVENTS)?;
            read_counter(&write.open_table(META)?, REV)?
        };
        let sealed = match &options.secrets_cipher {
            Some(cipher) => reseal_values(&write, cipher)?,
            None => false,
        };
        write.commit()?;
        if sealed {
            // Frees the pages that held the plain (or old-key) values, so the file no longer
            // does.
            db.compact()?;
        }
        let (revision, _) = watch::channel(rev);
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                revision,
                retention: options.event_retention.max(1),
                snapshots: pages::Snapshots::default(),
                writes: std::sync::atomic::AtomicU64::new(0),
                cipher: options.secrets_cipher,
                group: group_commit::GroupCommit::default(),
            }),
            dry_run: false,
        })
    }

    /// This store, or (when `dry_run`) a handle to it whose writes run exactly as usual
    /// (preconditions, stamping, the returned object) but are rolled back instead of
    /// committed: nothing is stored, no revision is used, no watcher wakes. What
    /// `dryRun=All` requests write through.
    pub fn dry_run(&self, dry_run: bool) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            dry_run,
        }
    }

    /// The redb database, for subsystems that keep their own tables in the same file (the
    /// module store). Their writes do not bump the revision or produce events.
    pub fn database(&self) -> &Database {
        &self.inner.db
    }

    /// The revision of the latest committed write.
    pub fn revision(&self) -> u64 {
        *self.inner.revision.borrow()
    }

    /// How many write transactions were committed since the store was opened (a commit of
    /// several objects counts once).
    pub fn writes(&self) -> u64 {
        self.inner.writes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A receiver woken after every commit, carrying the new revision.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.revision.subscribe()
    }

    /// The object under `key`, if any.
    pub fn get(&self, key: &ObjectKey) -> Result<Option<Value>, StoreError> {
        let read = self.inner.db.begin_read()?;
        let objects = read.open_table(OBJECTS)?;
        let raw_key = key.encode();
        let value = objects.get(raw_key.as_str())?;
        value
            .map(|guard| self.inner.decode(&raw_key, guard.value()))
            .transpose()
    }

    /// Every object in `scope`, with the revision they were read at.
    pub fn list(&self, scope: &Scope) -> Result<Listing, StoreError> {
        tracing::trace!(resource = %scope.resource, "store list");
        let read = self.inner.db.begin_read()?;
        let revision = read_counter(&read.open_table(META)?, REV)?;
        let objects = read.open_table(OBJECTS)?;
        let (start, end) = scope.key_range();
        let mut items = Vec::new();
        for entry in objects.range(start.as_str()..end.as_str())? {
            let (key, value) = entry?;
            items.push(self.inner.decode(key.value(), value.value())?);
        }
        Ok(Listing { items, revision })
    }

    /// Creates `obj` under `key`; [`StoreError::AlreadyExists`] if the key is taken.
    /// Returns the stored object (with `uid`, `creationTimestamp`, `generation` and
    /// `resourceVersion` set; `metadata.name`/`namespace` forced to match the key).
    pub fn create(&self, key: &ObjectKey, obj: Value) -> Result<Value, StoreError> {
        self.write(key, |current| match current {
            Some(_) => Err(StoreError::AlreadyExists(key.clone())),
            None => Ok(Op::Put(obj)),
        })
    }

    /// Replaces the object under `key` with `obj`.
    ///
    /// When `obj` carries a non-empty `metadata.resourceVersion` it is a precondition: a
    /// different stored version fails with [`StoreError::Conflict`] (Kubernetes PUT
    /// semantics). `uid` and `creationTimestamp` are kept from the stored object. A
    /// replacement equal to the stored object writes nothing and returns it unchanged.
    pub fn update(&self, key: &ObjectKey, obj: Value) -> Result<Value, StoreError> {
        self.write(key, |current| {
            let current = current.ok_or_else(|| StoreError::NotFound(key.clone()))?;
            check_precondition(key, current, resource_version(&obj))?;
            Ok(replacement(current, obj))
        })
    }

    /// Read-modify-write in one transaction: `f` edits a copy of the stored object; the
    /// result is written unless `f` fails or changed nothing. [`StoreError::NotFound`] (via
    /// `E: From<StoreError>`) when the key is empty.
    ///
    /// This is the way to write status: no lost updates between concurrent writers, and no
    /// revision or event for a no-op (so periodic status reports stay cheap). `f` runs while
    /// the write lock is held: keep it short and free of I/O.
    pub fn update_with<E, F>(&self, key: &ObjectKey, f: F) -> Result<Value, E>
    where
        E: From<StoreError>,
        F: FnOnce(&mut Value) -> Result<(), E>,
    {
        self.write(key, |current| {
            let current = current.ok_or_else(|| StoreError::NotFound(key.clone()))?;
            let mut edited = current.clone();
            f(&mut edited)?;
            Ok(replacement(current, edited))
        })
    }

    /// Create-or-modify in one transaction: `f` gets the stored object (if any) and returns
    /// the object to store. Like [`Store::update_with`], an unchanged result writes nothing.
    /// Useful for objects owned by the server itself (a node registering on its birth).
    pub fn upsert_with<E, F>(&self, key: &ObjectKey, f: F) -> Result<Value, E>
    where
        E: From<StoreError>,
        F: FnOnce(Option<&Value>) -> Result<Value, E>,
    {
        self.write(key, |current| {
            let new = f(current)?;
            Ok(match current {
                Some(current) => replacement(current, new),
                None => Op::Put(new),
            })
        })
    }

    /// Deletes the object under `key` and returns its last state, stamped with the revision
    /// of the deletion. `expected_rv`, when given, is a precondition like in
    /// [`Store::update`].
    pub fn delete(&self, key: &ObjectKey, expected_rv: Option<&str>) -> Result<Value, StoreError> {
        self.write(key, |current| {
            let current = current.ok_or_else(|| StoreError::NotFound(key.clone()))?;
            check_precondition(key, current, expected_rv)?;
            Ok(Op::Delete)
        })
    }

    /// Deletes the object under `key` if it meets `preconditions` (a
    /// [`StoreError::PreconditionFailed`] otherwise), checked in the write itself; returns
    /// its last state as [`Store::delete`] does.
    pub fn delete_if(
        &self,
        key: &ObjectKey,
        preconditions: &Preconditions,
    ) -> Result<Value, StoreError> {
        self.write(key, |current| {
            let current = current.ok_or_else(|| StoreError::NotFound(key.clone()))?;
            preconditions.check(key, current)?;
            Ok(Op::Delete)
        })
    }

    /// A [`Watcher`] for the changes in `scope` after revision `after`. Use the revision of
    /// a [`Store::list`] to see exactly what happens after that list.
    /// [`StoreError::Gone`] if the events after `after` were already compacted.
    pub fn watch(&self, scope: Scope, after: u64) -> Result<Watcher, StoreError> {
        self.events_after(&scope, after, 0)?;
        Ok(Watcher::new(self.clone(), scope, after))
    }

    /// The events in `scope` with revisions after `after`, scanning at most `limit` events
    /// (0: only check that `after` is still retained). Also returns the revision scanned up
    /// to, so the next call can continue from it even when nothing was in scope.
    pub fn events_after(
        &self,
        scope: &Scope,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<WatchEvent>, u64), StoreError> {
        self.scan_events(after, limit, &|key| scope.contains(key))
    }

    /// Like [`Store::events_after`], for the events of every resource in `resources` (the
    /// informer follows several resources in one revision order).
    pub fn events_of(
        &self,
        resources: &[&str],
        after: u64,
        limit: usize,
    ) -> Result<(Vec<WatchEvent>, u64), StoreError> {
        self.scan_events(after, limit, &|key| {
            resources.contains(&key.resource.as_str())
        })
    }

    fn scan_events(
        &self,
        after: u64,
        limit: usize,
        wanted: &dyn Fn(&ObjectKey) -> bool,
    ) -> Result<(Vec<WatchEvent>, u64), StoreError> {
        let read = self.inner.db.begin_read()?;
        let meta = read.open_table(META)?;
        let compacted = read_counter(&meta, COMPACTED)?;
        if after < compacted {
            return Err(StoreError::Gone {
                requested: after,
                oldest: compacted,
            });
        }
        // Only up to the watched revision: later commits may not be durable yet.
        let upto = read_counter(&meta, REV)?.min(self.revision());
        let mut scanned = after.max(upto);
        if after >= upto {
            return Ok((Vec::new(), scanned));
        }
        let table = read.open_table(EVENTS)?;
        let mut events = Vec::new();
        for (count, entry) in table.range(after + 1..=upto)?.enumerate() {
            let (revision, raw) = entry?;
            if count == limit {
                scanned = revision.value() - 1;
                break;
            }
            if let Some(event) = self
                .inner
                .decode_event(wanted, revision.value(), raw.value())?
            {
                events.push(event);
            }
        }
        Ok((events, scanned))
    }

    /// The one write path: read the current object, let `decide` choose, apply, commit,
    /// notify.
    fn write<E, D>(&self, key: &ObjectKey, decide: D) -> Result<Value, E>
    where
        E: From<StoreError>,
        D: FnOnce(Option<&Value>) -> Result<Op, E>,
    {
        let raw_key = key.encode();
        let write = begin_write(&self.inner.db)?;
        let current = self.read_object(&write, &raw_key)?;
        let (stored, rev) = match decide(current.as_ref())? {
            // Dropping `write` aborts the transaction.
            Op::Keep => return current.ok_or_else(|| StoreError::NotFound(key.clone()).into()),
            Op::Put(obj) => self.put(&write, key, current.as_ref(), obj)?,
            Op::Delete => self.remove(&write, key, current)?,
        };
        if self.dry_run {
            // Dropping `write` aborts the transaction.
            return Ok(stored);
        }
        self.commit(write)?;
        self.notify(rev);
        Ok(stored)
    }

    /// Several create-or-modify writes in one transaction with one commit (one fsync for
    /// all): for each key in order, `f` gets its index and the stored object (if any,
    /// including what earlier keys of the batch wrote) and returns the object to store, or
    /// `None` to leave it. Each object that changes gets its own revision and event, as if
    /// written one by one; a result equal to the stored object writes nothing, like
    /// [`Store::upsert_with`]. Returns, per key, the object as stored when it was written.
    /// When `f` or a write fails, nothing is written. `f` runs under the write lock: keep
    /// batches bounded.
    pub fn upsert_many<E, F>(&self, keys: &[ObjectKey], mut f: F) -> Result<Vec<Option<Value>>, E>
    where
        E: From<StoreError>,
        F: FnMut(usize, Option<&Value>) -> Result<Option<Value>, E>,
    {
        let write = begin_write(&self.inner.db)?;
        let mut stored = Vec::with_capacity(keys.len());
        let mut last = None;
        for (index, key) in keys.iter().enumerate() {
            let current = self.read_object(&write, &key.encode())?;
            let op = match (f(index, current.as_ref())?, &current) {
                (None, _) => Op::Keep,
                (Some(new), Some(current)) => replacement(current, new),
                (Some(new), None) => Op::Put(new),
            };
            stored.push(match op {
                Op::Put(obj) => {
                    let (obj, rev) = self.put(&write, key, current.as_ref(), obj)?;
                    last = Some(rev);
                    Some(obj)
                }
                Op::Keep | Op::Delete => None,
            });
        }
        if let Some(rev) = last {
            self.commit(write)?;
            self.notify(rev);
        }
        Ok(stored)
    }

    /// Commits `write` durably, sharing the fsync with concurrent writers.
    fn commit(&self, write: WriteTransaction) -> Result<(), StoreError> {
        self.inner.group.commit(&self.inner.db, write)
    }

    /// Wakes watchers with the revision of a commit (and lets go of paged lists' snapshots
    /// past their time, which would otherwise hold back redb's page reuse).
    fn notify(&self, rev: u64) {
        let writes = &self.inner.writes;
        writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.snapshots.purge();
        self.inner.revision.send_if_modified(|latest| {
            // Commits from different threads may notify out of order; never go backwards.
            let newer = rev > *latest;
            if newer {
                *latest = rev;
            }
            newer
        });
    }

    fn put(
        &self,
        write: &WriteTransaction,
        key: &ObjectKey,
        current: Option<&Value>,
        mut obj: Value,
    ) -> Result<(Value, u64), StoreError> {
        let rev = self.next_revision(write)?;
        let kind = match current {
            Some(old) => {
                meta::stamp_updated(&mut obj, old, key, rev)?;
                EventType::Modified
            }
            None => {
                meta::stamp_created(&mut obj, key, rev)?;
                EventType::Added
            }
        };
        let raw_key = key.encode();
        let bytes = self.inner.encode(&raw_key, &obj)?;
        write
            .open_table(OBJECTS)?
            .insert(raw_key.as_str(), bytes.as_slice())?;
        self.append_event(write, rev, kind, &raw_key, &bytes)?;
        Ok((obj, rev))
    }

    fn remove(
        &self,
        write: &WriteTransaction,
        key: &ObjectKey,
        current: Option<Value>,
    ) -> Result<(Value, u64), StoreError> {
        let mut obj = current.ok_or_else(|| StoreError::NotFound(key.clone()))?;
        let rev = self.next_revision(write)?;
        meta::stamp_revision(&mut obj, rev)?;
        let raw_key = key.encode();
        write.open_table(OBJECTS)?.remove(raw_key.as_str())?;
        let bytes = self.inner.encode(&raw_key, &obj)?;
        self.append_event(write, rev, EventType::Deleted, &raw_key, &bytes)?;
        Ok((obj, rev))
    }

    fn next_revision(&self, write: &WriteTransaction) -> Result<u64, StoreError> {
        let mut meta = write.open_table(META)?;
        let rev = read_counter(&meta, REV)? + 1;
        meta.insert(REV, rev)?;
        Ok(rev)
    }

    /// Appends the event, and compacts the log once it exceeds the retention window by a
    /// tenth (so compaction runs once per many writes, not on every one).
    fn append_event(
        &self,
        write: &WriteTransaction,
        rev: u64,
        kind: EventType,
        raw_key: &str,
        object: &[u8],
    ) -> Result<(), StoreError> {
        let mut events = write.open_table(EVENTS)?;
        events.insert(rev, events::encode_event(kind, raw_key, object).as_slice())?;
        let mut meta = write.open_table(META)?;
        let compacted = read_counter(&meta, COMPACTED)?;
        let retention = self.inner.retention;
        if rev.saturating_sub(compacted) > retention + retention / 10 {
            let cut = rev - retention;
            events.retain_in(..=cut, |_, _| false)?;
            meta.insert(COMPACTED, cut)?;
        }
        Ok(())
    }
}

fn begin_write(db: &Database) -> Result<WriteTransaction, StoreError> {
    let mut write = db.begin_write()?;
    // Recovery after a crash is then near-instant instead of a full-file scan.
    write.set_quick_repair(true);
    Ok(write)
}

fn read_counter(
    table: &impl ReadableTable<&'static str, u64>,
    name: &str,
) -> Result<u64, StoreError> {
    Ok(table.get(name)?.map(|guard| guard.value()).unwrap_or(0))
}

impl Store {
    fn read_object(
        &self,
        write: &WriteTransaction,
        raw_key: &str,
    ) -> Result<Option<Value>, StoreError> {
        let objects = write.open_table(OBJECTS)?;
        let value = objects.get(raw_key)?;
        value
            .map(|guard| self.inner.decode(raw_key, guard.value()))
            .transpose()
    }
}

/// A replacement that changes nothing is skipped; anything else is written.
fn replacement(current: &Value, mut new: Value) -> Op {
    // Compare without the store-owned fields the caller may have left stale or missing.
    if let (Ok(new_meta), Some(old_meta)) = (
        meta::metadata_mut(&mut new),
        current.get("metadata").and_then(Value::as_object),
    ) {
        for field in ["uid", "creationTimestamp", "generation", "resourceVersion"] {
            match old_meta.get(field) {
                Some(value) => new_meta.insert(field.into(), value.clone()),
                None => new_meta.remove(field),
            };
        }
    }
    if &new == current {
        Op::Keep
    } else {
        Op::Put(new)
    }
}

fn check_precondition(
    key: &ObjectKey,
    current: &Value,
    expected: Option<&str>,
) -> Result<(), StoreError> {
    let actual = resource_version(current).unwrap_or("");
    match expected {
        Some(expected) if !expected.is_empty() && expected != actual => Err(StoreError::Conflict {
            key: key.clone(),
            expected: expected.to_owned(),
            actual: actual.to_owned(),
        }),
        _ => Ok(()),
    }
}

impl Inner {
    /// The stored bytes of `obj` under `raw_key`: its JSON, sealed when its resource is.
    fn encode(&self, raw_key: &str, obj: &Value) -> Result<Vec<u8>, StoreError> {
        let json =
            serde_json::to_vec(obj).map_err(|err| StoreError::InvalidObject(err.to_string()))?;
        match &self.cipher {
            Some(cipher) if sealing::is_sealed_key(raw_key) => cipher
                .seal(raw_key, &json)
                .map_err(|err| corrupt(raw_key, err.to_string())),
            _ => Ok(json),
        }
    }

    /// The object stored as `bytes` under `raw_key` (opened first when sealed).
    fn decode(&self, raw_key: &str, bytes: &[u8]) -> Result<Value, StoreError> {
        let opened;
        let json = match (&self.cipher, sealing::is_sealed_value(bytes)) {
            (_, false) => bytes,
            (None, true) => return Err(corrupt(raw_key, sealing::SealError::NoKey.to_string())),
            (Some(cipher), true) => {
                opened = cipher
                    .open(raw_key, bytes)
                    .map_err(|err| corrupt(raw_key, err.to_string()))?;
                opened.as_slice()
            }
        };
        serde_json::from_slice(json).map_err(|err| corrupt(raw_key, err.to_string()))
    }

    fn decode_event(
        &self,
        wanted: &dyn Fn(&ObjectKey) -> bool,
        revision: u64,
        raw: &[u8],
    ) -> Result<Option<WatchEvent>, StoreError> {
        let event = format!("event {revision}");
        let (kind, key, object) =
            events::decode_header(raw).ok_or_else(|| corrupt(&event, "bad event header".into()))?;
        if !wanted(&key) {
            return Ok(None);
        }
        let object = self.decode(&key.encode(), object)?;
        Ok(Some(WatchEvent {
            revision,
            kind,
            key,
            object,
        }))
    }
}

fn corrupt(key: &str, reason: String) -> StoreError {
    StoreError::Corrupt {
        key: key.to_owned(),
        reason,
    }
}

/// Seals, with the current key, the values of sealed resources stored as plain JSON
/// (written before encryption was on) or sealed with an older key (before a rotation), in
/// the objects table and the event log, without new revisions. Returns whether there were
/// any.
fn reseal_values(write: &WriteTransaction, cipher: &SecretsCipher) -> Result<bool, StoreError> {
    let reseal = |raw_key: &str, value: &[u8]| -> Result<Vec<u8>, StoreError> {
        let plain = match sealing::is_sealed_value(value) {
            true => cipher.open(raw_key, value),
            false => Ok(value.to_vec()),
        };
        plain
            .and_then(|plain| cipher.seal(raw_key, &plain))
            .map_err(|err| corrupt(raw_key, err.to_string()))
    };
    let mut objects = write.open_table(OBJECTS)?;
    let mut stale = Vec::new();
    for resource in sealing::SEALED_RESOURCES {
        let (start, end) = (format!("{resource}/"), format!("{resource}0"));
        for entry in objects.range(start.as_str()..end.as_str())? {
            let (key, value) = entry?;
            if !cipher.is_current(value.value()) {
                stale.push((key.value().to_owned(), value.value().to_vec()));
            }
        }
    }
    for (key, value) in &stale {
        objects.insert(key.as_str(), reseal(key, value)?.as_slice())?;
    }
    let mut events = write.open_table(EVENTS)?;
    let mut stale_events = Vec::new();
    for entry in events.iter()? {
        let (revision, raw) = entry?;
        if let Some((kind, key, object)) = events::decode_header(raw.value()) {
            let raw_key = key.encode();
            if sealing::is_sealed_key(&raw_key) && !cipher.is_current(object) {
                let sealed = reseal(&raw_key, object)?;
                let event = events::encode_event(kind, &raw_key, &sealed);
                stale_events.push((revision.value(), event));
            }
        }
    }
    for (revision, event) in &stale_events {
        events.insert(*revision, event.as_slice())?;
    }
    let any = !stale.is_empty() || !stale_events.is_empty();
    if any {
        tracing::info!(
            objects = stale.len(),
            events = stale_events.len(),
            key = cipher.current(),
            "sealed secrets stored in plain text or with an older key with the current key"
        );
    }
    Ok(any)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
