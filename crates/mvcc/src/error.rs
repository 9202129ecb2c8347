//! The typed errors of the store; messages follow etcd's.

use storage_api::{Bucket, StorageError};

use crate::kv_encoding::DecodeError;
use crate::revision::MalformedRevision;

/// Every way a store operation can fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MvccError {
    /// The revision asked for was compacted away (etcd's `ErrCompacted`).
    #[error(
        "mvcc: required revision has been compacted (requested {requested}, compacted {compacted})"
    )]
    Compacted {
        /// The revision asked for.
        requested: i64,
        /// The store's compaction revision.
        compacted: i64,
    },
    /// The revision asked for is later than the store's (etcd's `ErrFutureRev`).
    #[error(
        "mvcc: required revision is a future revision (requested {requested}, current {current})"
    )]
    FutureRev {
        /// The revision asked for.
        requested: i64,
        /// The store's current revision.
        current: i64,
    },
    /// A request without a key (etcd's `ErrGRPCEmptyKey`).
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// `ignore_value` / `ignore_lease` on a key that does not exist (etcd's `ErrKeyNotFound`).
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// `ignore_value` together with a value (etcd's `ErrGRPCValueProvided`).
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// `ignore_lease` together with a lease (etcd's `ErrGRPCLeaseProvided`).
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// A transaction puts a key twice, or puts and deletes it (etcd's `ErrGRPCDuplicateKey`).
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// The lease is not known to the lease registry (etcd's `ErrLeaseNotFound`).
    #[error("lease not found: {0:#x}")]
    LeaseNotFound(i64),
    /// Raw writes through a write transaction may not touch the store's own buckets.
    #[error("bucket {0} is owned by the key-value store; raw writes are refused")]
    ReservedBucket(Bucket),
    /// The store was closed.
    #[error("mvcc: closed")]
    Closed,
    /// The data on disk contradicts the store's invariants.
    #[error("mvcc: corrupted data: {0}")]
    Corrupted(String),
    /// The backend failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<DecodeError> for MvccError {
    fn from(e: DecodeError) -> Self {
        MvccError::Corrupted(e.to_string())
    }
}

impl From<MalformedRevision> for MvccError {
    fn from(e: MalformedRevision) -> Self {
        MvccError::Corrupted(e.to_string())
    }
}

/// The result type of store operations.
pub type Result<T, E = MvccError> = std::result::Result<T, E>;
