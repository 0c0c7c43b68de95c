//! Watch events: their stored form, and [`Watcher`], which follows them from a revision.

use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

use super::{ObjectKey, Scope, Store, StoreError};

/// What happened to an object, named as in a Kubernetes watch stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EventType {
    /// The object was created.
    Added,
    /// The object was replaced or changed.
    Modified,
    /// The object was deleted; the event carries its last state.
    Deleted,
}

impl EventType {
    fn tag(self) -> u8 {
        match self {
            EventType::Added => 0,
            EventType::Modified => 1,
            EventType::Deleted => 2,
        }
    }

    fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            0 => Some(EventType::Added),
            1 => Some(EventType::Modified),
            2 => Some(EventType::Deleted),
            _ => None,
        }
    }
}

/// One committed change.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    /// The revision of the write (equals the object's `metadata.resourceVersion`).
    pub revision: u64,
    /// What happened.
    pub kind: EventType,
    /// Which object.
    pub key: ObjectKey,
    /// The object after the change (its last state for [`EventType::Deleted`]).
    pub object: Value,
}

/// The stored form: `[type u8][key length u16 LE][key][object JSON]`, so a scan can skip
/// events outside its scope without parsing their objects.
pub(crate) fn encode_event(kind: EventType, key: &str, object: &[u8]) -> Vec<u8> {
    // Keys are `resource/namespace/name` of validated names: far below 64 KiB.
    let key_len = u16::try_from(key.len()).unwrap_or(u16::MAX);
    let key = &key.as_bytes()[..usize::from(key_len)];
    let mut out = Vec::with_capacity(3 + key.len() + object.len());
    out.push(kind.tag());
    out.extend_from_slice(&key_len.to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(object);
    out
}

/// Decodes the header of a stored event: its type, key and the object's JSON bytes.
pub(crate) fn decode_header(raw: &[u8]) -> Option<(EventType, ObjectKey, &[u8])> {
    let (&tag, rest) = raw.split_first()?;
    let kind = EventType::from_tag(tag)?;
    let len_bytes: [u8; 2] = rest.get(..2)?.try_into().ok()?;
    let key_len = usize::from(u16::from_le_bytes(len_bytes));
    let key = std::str::from_utf8(rest.get(2..2 + key_len)?).ok()?;
    let key = ObjectKey::decode(key)?;
    Some((kind, key, rest.get(2 + key_len..)?))
}

/// Follows the changes of one [`Scope`] after a revision: the building block of API watches
/// and controller loops.
///
/// Created by [`Store::watch`]. Each [`Watcher::next`] returns the next non-empty batch of
/// events in revision order, waiting for commits when there are none. Stop a watcher by
/// dropping it (for example from a `select!` against a cancellation token).
pub struct Watcher {
    store: Store,
    scope: Scope,
    after: u64,
    wake: watch::Receiver<u64>,
}

/// Most events one [`Watcher::next`] scans, to keep each read transaction short.
const BATCH: usize = 512;

impl Watcher {
    pub(crate) fn new(store: Store, scope: Scope, after: u64) -> Self {
        let wake = store.subscribe();
        Self {
            store,
            scope,
            after,
            wake,
        }
    }

    /// The revision this watcher has seen everything up to.
    pub fn revision(&self) -> u64 {
        self.after
    }

    /// The next batch of events in scope, in revision order; waits while there are none.
    ///
    /// Fails with [`StoreError::Gone`] when the events this watcher still needs were
    /// compacted away (it fell more than the retention window behind): start again from a
    /// fresh list.
    pub async fn next(&mut self) -> Result<Vec<WatchEvent>, StoreError> {
        loop {
            // Mark the current revision seen *before* reading, so a commit that lands after
            // the read still wakes the `changed()` below.
            self.wake.borrow_and_update();
            let (events, scanned) = self.store.events_after(&self.scope, self.after, BATCH)?;
            self.after = self.after.max(scanned);
            if !events.is_empty() {
                return Ok(events);
            }
            self.wake.changed().await.map_err(|_| StoreError::Closed)?;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn stored_events_decode_to_their_parts() {
        let key = ObjectKey::namespaced("pods", "default", "web");
        let raw = encode_event(EventType::Deleted, &key.encode(), b"{}");
        let (kind, decoded, object) = decode_header(&raw).unwrap();
        assert_eq!(kind, EventType::Deleted);
        assert_eq!(decoded, key);
        assert_eq!(object, b"{}");
    }

    #[test]
    fn garbage_does_not_decode() {
        assert!(decode_header(&[9, 0, 0]).is_none());
        assert!(decode_header(&[0, 200, 0, b'a']).is_none());
        assert!(decode_header(&[]).is_none());
    }
}
