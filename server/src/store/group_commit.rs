//! Group commit: concurrent writers share one fsync.
//!
//! A write commits to redb without waiting for the disk ([`Durability::None`]), then waits
//! until a durable commit covers it. The first writer to wait makes that durable commit (an
//! empty transaction with [`Durability::Immediate`], which persists every earlier commit);
//! writers that committed while it was on disk wait for the next one, which one of them
//! makes. One writer at a time still costs one fsync per write; a hundred concurrent
//! creates cost a handful.
//!
//! A writer returns (and the store wakes watchers) only once its commit is durable, so
//! nothing is acknowledged or watched that a crash could take back. Reads in between may
//! see a commit that is not yet durable, as in redb itself.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use redb::{Database, Durability, WriteTransaction};

use super::StoreError;

/// Counts commits and how many of them are known to be on disk.
#[derive(Debug, Default)]
pub(super) struct GroupCommit {
    state: Mutex<State>,
    flushed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Commits made so far (non-durable at first).
    committed: u64,
    /// Of those, how many a durable commit covers.
    durable: u64,
    /// Whether a writer is making a durable commit right now.
    flushing: bool,
}

impl GroupCommit {
    /// Commits `write` and returns once it is on disk.
    pub(super) fn commit(
        &self,
        db: &Database,
        mut write: WriteTransaction,
    ) -> Result<(), StoreError> {
        write.set_durability(Durability::None)?;
        write.commit()?;
        let ticket = {
            let mut state = self.lock();
            state.committed += 1;
            state.committed
        };
        self.wait_durable(db, ticket)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change is a plain counter update, so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until commit number `ticket` is durable, making the durable commit when no
    /// other writer is.
    fn wait_durable(&self, db: &Database, ticket: u64) -> Result<(), StoreError> {
        let mut state = self.lock();
        loop {
            if state.durable >= ticket {
                return Ok(());
            }
            if state.flushing {
                state = self
                    .flushed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            state.flushing = true;
            // Every commit counted so far finished before this flush begins, so it covers them.
            let covers = state.committed;
            drop(state);
            let flushed = flush(db);
            state = self.lock();
            state.flushing = false;
            if flushed.is_ok() {
                state.durable = state.durable.max(covers);
            }
            self.flushed.notify_all();
            // On failure the waiters try a flush of their own, and this writer reports it.
            flushed?;
        }
    }
}

/// An empty durable commit: persists every commit before it.
fn flush(db: &Database) -> Result<(), StoreError> {
    let mut write = db.begin_write()?;
    write.set_quick_repair(true);
    write.set_durability(Durability::Immediate)?;
    write.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use redb::TableDefinition;

    use super::*;

    const T: TableDefinition<u64, u64> = TableDefinition::new("t");

    #[test]
    fn concurrent_writers_share_durable_commits_and_all_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.redb");
        {
            let db = Arc::new(Database::create(&path).unwrap());
            let group = Arc::new(GroupCommit::default());
            let threads: Vec<_> = (0..8u64)
                .map(|t| {
                    let (db, group) = (Arc::clone(&db), Arc::clone(&group));
                    std::thread::spawn(move || {
                        for i in 0..25u64 {
                            let write = db.begin_write().unwrap();
                            write.open_table(T).unwrap().insert(t * 100 + i, i).unwrap();
                            group.commit(&db, write).unwrap();
                        }
                    })
                })
                .collect();
            for thread in threads {
                thread.join().unwrap();
            }
            let state = group.lock();
            assert_eq!((state.committed, state.durable), (200, 200));
        }
        // Reopened without a clean durable close of its own: every write is there.
        let db = Database::open(&path).unwrap();
        let read = redb::ReadableDatabase::begin_read(&db).unwrap();
        let table = read.open_table(T).unwrap();
        assert_eq!(redb::ReadableTableMetadata::len(&table).unwrap(), 200);
    }
}
