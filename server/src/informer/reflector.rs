//! The reflector: the one task that writes the [`Cache`]. It lists once, then follows the
//! store's event log in revision order, never skipping an event; when the events it needs
//! were compacted away (`StoreError::Gone`), it lists again.

use std::collections::HashMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Cache, key_of};
use crate::store::{Scope, Store, StoreError, WatchEvent};

/// Most events read per store transaction.
const BATCH: usize = 512;

/// How long to wait after a failed read before trying again.
const RETRY: Duration = Duration::from_millis(500);

/// The follower's position.
pub(super) struct Reflector {
    cache: Cache,
    /// Every event at or below this revision has been applied.
    after: u64,
    /// Each resource was listed at its own revision: its events up to it are already in.
    listed_at: HashMap<&'static str, u64>,
}

impl Reflector {
    /// Lists every resource of `cache` into it.
    pub(super) fn list(store: &Store, cache: &Cache) -> Result<Reflector, StoreError> {
        let mut listed_at = HashMap::new();
        let mut listings = Vec::new();
        for &resource in cache.resources() {
            let listing = store.list(&Scope::all(resource))?;
            let objects: Vec<_> = listing
                .items
                .into_iter()
                .filter_map(|obj| Some((key_of(resource, &obj)?, obj)))
                .collect();
            listed_at.insert(resource, listing.revision);
            listings.push((resource, objects));
        }
        // Everything up to the oldest list is in; later events of the resources listed
        // later are skipped by `already_listed`.
        let after = listed_at.values().copied().min().unwrap_or(0);
        cache.publish(after, true, |index| {
            listings
                .into_iter()
                .flat_map(|(resource, objects)| index.replace(resource, objects))
                .collect()
        });
        tracing::debug!(revision = after, "informer listed the store");
        Ok(Reflector {
            cache: cache.clone(),
            after,
            listed_at,
        })
    }

    /// Follows the store until `shutdown`.
    pub(super) async fn run(mut self, store: Store, shutdown: CancellationToken) {
        let mut wake = store.subscribe();
        loop {
            wake.borrow_and_update();
            match self.catch_up(&store) {
                Ok(()) => {}
                Err(StoreError::Gone { requested, oldest }) => {
                    tracing::warn!(
                        requested,
                        oldest,
                        "informer fell behind the event log; listing again"
                    );
                    self.relist(&store);
                    continue;
                }
                Err(err) => {
                    tracing::warn!(%err, "informer cannot read the store; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(RETRY) => continue,
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                changed = wake.changed() => if changed.is_err() { break },
            }
        }
    }

    fn relist(&mut self, store: &Store) {
        match Reflector::list(store, &self.cache) {
            Ok(fresh) => *self = fresh,
            Err(err) => tracing::warn!(%err, "informer cannot list the store"),
        }
    }

    /// Applies every event after `self.after`, a batch per store read.
    pub(super) fn catch_up(&mut self, store: &Store) -> Result<(), StoreError> {
        let resources = self.cache.resources().to_vec();
        loop {
            let (events, scanned) = store.events_of(&resources, self.after, BATCH)?;
            if scanned <= self.after && events.is_empty() {
                return Ok(());
            }
            let fresh: Vec<WatchEvent> = events
                .into_iter()
                .filter(|event| !self.already_listed(event))
                .collect();
            self.cache.publish(scanned, false, |index| {
                fresh
                    .into_iter()
                    .filter_map(|event| {
                        let deleted = event.kind == crate::store::EventType::Deleted;
                        index.apply(event.key, (!deleted).then_some(event.object))
                    })
                    .collect()
            });
            self.after = scanned.max(self.after);
        }
    }

    fn already_listed(&self, event: &WatchEvent) -> bool {
        self.listed_at
            .get(event.key.resource.as_str())
            .is_some_and(|&at| event.revision <= at)
    }
}
