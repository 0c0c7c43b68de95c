//! Lists in pages (`limit` / `continue`) that together show one consistent snapshot.
//!
//! The first page of a list is read in a redb read transaction; when more pages follow,
//! that transaction (an MVCC snapshot: later commits do not change what it reads) is kept in
//! a small pool under its revision, and the next pages of any list at that revision read
//! from it. A snapshot goes as soon as every list that started on it has read its last page:
//! while redb holds a read transaction, it cannot reuse the pages later commits free, so a
//! snapshot kept longer than its lists need makes the file grow by everything written
//! meanwhile. A snapshot lives at most [`SNAPSHOT_TTL`] after it was taken and at most
//! [`MAX_SNAPSHOTS`] are kept (the oldest goes first), so a client that never comes back
//! holds back redb's page reuse only briefly (expired snapshots are dropped on the next
//! commit or paged list). A page asked at a revision whose snapshot is
//! gone is [`StoreError::Gone`] (the API's 410 Expired), unless nothing was written since,
//! when a fresh read is the same snapshot.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redb::{ReadTransaction, ReadableDatabase};
use serde_json::Value;

use super::{META, OBJECTS, REV, Scope, Store, StoreError, read_counter};

/// How long a list's snapshot serves its next pages.
pub const SNAPSHOT_TTL: Duration = Duration::from_secs(60);
/// The most snapshots kept at once.
pub const MAX_SNAPSHOTS: usize = 16;

/// The snapshots of unfinished paged lists.
#[derive(Default)]
pub(super) struct Snapshots {
    open: Mutex<Vec<Snapshot>>,
}

struct Snapshot {
    revision: u64,
    taken: Instant,
    read: Arc<ReadTransaction>,
    /// Lists that started on it and have not read their last page yet.
    lists: usize,
}

/// Which page to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// At most this many items (0: all).
    pub limit: usize,
    /// Continue a list read at this revision, after this store key.
    pub resume: Option<(u64, String)>,
}

/// One page of a list.
#[derive(Debug)]
pub struct Page {
    /// The objects that passed the filter, ordered by key.
    pub items: Vec<Value>,
    /// The revision of the snapshot the whole list is read at.
    pub revision: u64,
    /// When more objects follow: the key of the last object looked at (the next page starts
    /// after it).
    pub next: Option<String>,
    /// How many objects of the scope follow (before any filter).
    pub remaining: u64,
}

impl Store {
    /// One page of the objects in `scope` that pass `keep` (see the module docs).
    pub fn list_page(
        &self,
        scope: &Scope,
        request: &PageRequest,
        keep: impl Fn(&Value) -> bool,
    ) -> Result<Page, StoreError> {
        let read = self.snapshot(request.resume.as_ref().map(|(rev, _)| *rev))?;
        let revision = read_counter(&read.open_table(META)?, REV)?;
        let objects = read.open_table(OBJECTS)?;
        let (start, end) = scope.key_range();
        let from = match &request.resume {
            Some((_, after)) => format!("{after}\0"),
            None => start,
        };
        let limit = if request.limit == 0 {
            usize::MAX
        } else {
            request.limit
        };
        let mut range = objects.range(from.as_str()..end.as_str())?;
        let mut items = Vec::new();
        let mut last = None;
        while items.len() < limit {
            let Some(entry) = range.next() else {
                last = None;
                break;
            };
            let (key, value) = entry?;
            let object = self.inner.decode(key.value(), value.value())?;
            if keep(&object) {
                items.push(object);
            }
            last = Some(key.value().to_owned());
        }
        let remaining = range.count() as u64;
        let next = last.filter(|_| remaining > 0);
        let snapshots = &self.inner.snapshots;
        match (&request.resume, &next) {
            // A list that goes on past its first page reads the rest from this snapshot.
            (None, Some(_)) => snapshots.keep(revision, read, Instant::now()),
            // Its later pages: kept (again, if it expired while nothing was written) until
            // the last one.
            (Some(_), Some(_)) => snapshots.keep_for_next_page(revision, read, Instant::now()),
            (Some(_), None) => snapshots.finish(revision),
            (None, None) => {}
        }
        Ok(Page {
            items,
            revision,
            next,
            remaining,
        })
    }

    /// A read at `revision` (the latest when `None`): a kept snapshot, or a fresh read when
    /// nothing was written since.
    fn snapshot(&self, revision: Option<u64>) -> Result<Arc<ReadTransaction>, StoreError> {
        let Some(wanted) = revision else {
            return Ok(Arc::new(self.inner.db.begin_read()?));
        };
        if let Some(kept) = self.inner.snapshots.find(wanted) {
            return Ok(kept);
        }
        let fresh = self.inner.db.begin_read()?;
        let current = read_counter(&fresh.open_table(META)?, REV)?;
        if current == wanted {
            Ok(Arc::new(fresh))
        } else {
            Err(StoreError::Gone {
                requested: wanted,
                oldest: current,
            })
        }
    }
}

impl Snapshots {
    /// Drops the snapshots past [`SNAPSHOT_TTL`] (after every commit, so an abandoned
    /// list's snapshot goes once the store moves on).
    pub(super) fn purge(&self) {
        expire(&mut self.lock(), Instant::now());
    }

    /// The live snapshot at `revision`, if one is kept.
    pub(super) fn find(&self, revision: u64) -> Option<Arc<ReadTransaction>> {
        let mut open = self.lock();
        expire(&mut open, Instant::now());
        open.iter()
            .find(|s| s.revision == revision)
            .map(|s| Arc::clone(&s.read))
    }

    /// Keeps `read` for the next pages of a new list at `revision` (one snapshot per
    /// revision, shared by the lists at it).
    pub(super) fn keep(&self, revision: u64, read: Arc<ReadTransaction>, now: Instant) {
        self.hold(revision, read, now, 1);
    }

    /// Keeps `read` for the next page of a list already counted at `revision` (re-kept if
    /// it expired while nothing was written).
    pub(super) fn keep_for_next_page(
        &self,
        revision: u64,
        read: Arc<ReadTransaction>,
        now: Instant,
    ) {
        self.hold(revision, read, now, 0);
    }

    fn hold(&self, revision: u64, read: Arc<ReadTransaction>, now: Instant, new_lists: usize) {
        let mut open = self.lock();
        expire(&mut open, now);
        if let Some(kept) = open.iter_mut().find(|s| s.revision == revision) {
            kept.lists += new_lists;
            return;
        }
        if open.len() >= MAX_SNAPSHOTS {
            open.remove(0);
        }
        open.push(Snapshot {
            revision,
            taken: now,
            read,
            lists: new_lists.max(1),
        });
    }

    /// A list at `revision` read its last page: the snapshot goes once no list needs it.
    pub(super) fn finish(&self, revision: u64) {
        let mut open = self.lock();
        if let Some(at) = open.iter().position(|s| s.revision == revision) {
            open[at].lists = open[at].lists.saturating_sub(1);
            if open[at].lists == 0 {
                open.remove(at);
            }
        }
    }

    /// How many snapshots are kept now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Snapshot>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Drops the snapshots older than [`SNAPSHOT_TTL`] (they are in the order taken).
fn expire(open: &mut Vec<Snapshot>, now: Instant) {
    open.retain(|s| now.duration_since(s.taken) < SNAPSHOT_TTL);
}
