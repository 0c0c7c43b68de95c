//! Revocation: when a Node object is deleted (`kubectl delete node X`), the embedded broker
//! closes that node's live MQTT session at once, instead of letting it run on the login it
//! made while it was still admitted.
//!
//! Deleting the Node also forgets the name's password binding (see [`crate::identity`]), so
//! the device can come back only through a join token that still admits it: delete or let
//! expire the token it joined with (or rotate the default one) to keep it out.

use tokio_util::sync::CancellationToken;

use super::Sessions;
use crate::store::{EventType, Scope, Store, StoreError};

/// Follows Node deletions and closes their sessions until `shutdown`.
pub async fn run(store: Store, sessions: Sessions, shutdown: CancellationToken) {
    loop {
        let from = store.revision();
        let Ok(mut watcher) = store.watch(Scope::all("nodes"), from) else {
            tracing::warn!("cannot watch nodes; node revocation is paused for a second");
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
            }
        };
        loop {
            let events = tokio::select! {
                () = shutdown.cancelled() => return,
                events = watcher.next() => events,
            };
            match events {
                Ok(events) => {
                    for event in events.iter().filter(|e| e.kind == EventType::Deleted) {
                        tracing::info!(node = %event.key.name, "node deleted: closing its session");
                        sessions.close(&event.key.name).await;
                    }
                }
                // Fell behind the retained events: start again from now.
                Err(StoreError::Gone { .. }) => break,
                Err(err) => {
                    tracing::warn!(%err, "node revocation stopped");
                    return;
                }
            }
        }
    }
}
