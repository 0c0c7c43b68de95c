//! What can go wrong in the store, as one matchable enum.

use super::ObjectKey;

/// A store operation failed. The first variants are expected outcomes the API maps to
/// Kubernetes statuses (404, 409, 410); the rest are faults.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No object under this key.
    #[error("{0} not found")]
    NotFound(ObjectKey),
    /// Create found an object under this key already.
    #[error("{0} already exists")]
    AlreadyExists(ObjectKey),
    /// The caller's `metadata.resourceVersion` is not the stored one (optimistic concurrency).
    #[error("{key} has been modified: expected resourceVersion {expected}, found {actual}")]
    Conflict {
        /// The object.
        key: ObjectKey,
        /// The resourceVersion the caller based its write on.
        expected: String,
        /// The resourceVersion in the store.
        actual: String,
    },
    /// A delete's precondition does not hold (Kubernetes answers 409 with this wording).
    #[error("Precondition failed: {what}")]
    PreconditionFailed {
        /// The object.
        key: ObjectKey,
        /// Which field and both values (`UID in precondition: a, UID in object meta: b`).
        what: String,
    },
    /// A watch asked for events that were compacted away (Kubernetes 410 Expired).
    #[error("too old resource version: {requested} (oldest retained: {oldest})")]
    Gone {
        /// The revision the watch wanted to resume after.
        requested: u64,
        /// Watches must resume at or after this revision.
        oldest: u64,
    },
    /// The object given to a write is not a JSON object with a `metadata` object.
    #[error("invalid object: {0}")]
    InvalidObject(String),
    /// A stored value could not be decoded (the file was written by something else).
    #[error("corrupt store entry {key}: {reason}")]
    Corrupt {
        /// The redb key of the entry.
        key: String,
        /// What was wrong with it.
        reason: String,
    },
    /// An admission rule refused a write before it reached the store (a controller's pod
    /// whose ServiceAccount does not exist): the API answers 403, a controller retries.
    #[error("{} \"{}\" is forbidden: {reason}", key.resource, key.name)]
    Refused {
        /// The object (named by its `generateName` when it has no name yet).
        key: ObjectKey,
        /// Why, in kube-apiserver's words.
        reason: String,
    },
    /// The store was shut down while a watch waited.
    #[error("store closed")]
    Closed,
    /// redb failed (I/O, corruption, the file is locked by another process).
    #[error("database: {0}")]
    Database(#[from] redb::Error),
}

/// redb has one error type per operation; they all convert into `redb::Error`.
macro_rules! from_redb {
    ($($ty:ty),*) => {$(
        impl From<$ty> for StoreError {
            fn from(err: $ty) -> Self {
                StoreError::Database(err.into())
            }
        }
    )*};
}

from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
    redb::CompactionError
);
