//! The lessor's typed errors.

use storage_api::StorageError;

use super::LeaseId;
use super::record::DecodeError;

/// Every way a lessor operation can fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// Lease id 0 ([`super::NO_LEASE`]) means "no lease" and cannot be granted.
    #[error("lease id 0 is reserved for \"no lease\"")]
    InvalidId,
    /// A lease with this id already exists (etcd's `ErrLeaseExists`).
    #[error("lease {0:016x} already exists")]
    LeaseExists(LeaseId),
    /// The requested TTL exceeds [`super::MAX_LEASE_TTL`] (etcd's `ErrLeaseTTLTooLarge`).
    #[error("lease TTL of {ttl}s exceeds the maximum of {max}s")]
    TtlTooLarge {
        /// The requested TTL in seconds.
        ttl: i64,
        /// The maximum TTL in seconds.
        max: i64,
    },
    /// No lease with this id (etcd's `ErrLeaseNotFound`).
    #[error("lease {0:016x} not found")]
    LeaseNotFound(LeaseId),
    /// Only the primary lessor (the raft leader's) renews leases (etcd's `ErrNotPrimary`): the
    /// caller forwards the request to the leader.
    #[error("not the primary lessor")]
    NotPrimary,
    /// The lease has expired and its revoke is pending. etcd's renew waits for the revoke and
    /// then answers `ErrLeaseNotFound` (or `ErrNotPrimary` if leadership moves first, since a new
    /// leader extends every lease): the caller decides how to wait.
    #[error("lease {0:016x} has expired and awaits its revoke")]
    LeaseExpired(LeaseId),
    /// A record of the `lease` bucket cannot be read back.
    #[error("corrupted lease record under key {key:02x?}: {reason}")]
    Corrupted {
        /// The record's key.
        key: Vec<u8>,
        /// What is wrong with it.
        #[source]
        reason: CorruptRecord,
    },
    /// The revoke transaction failed; the lessor's state is unchanged.
    #[error("revoking lease {id:016x}: {source}")]
    Revoke {
        /// The lease being revoked.
        id: LeaseId,
        /// What the transaction reported.
        #[source]
        source: RevokeError,
    },
    /// Reading or persisting lease records failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What is wrong with a corrupted `lease` bucket record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CorruptRecord {
    /// The key is not an 8-byte lease id.
    #[error("key is {0} bytes, expected 8")]
    KeyLength(usize),
    /// The key and the record name different leases.
    #[error("key names lease {key:016x} but the record lease {record:016x}")]
    IdMismatch {
        /// The id the key encodes.
        key: LeaseId,
        /// The id the record holds.
        record: LeaseId,
    },
    /// The value is not a protobuf `leasepb.Lease`.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Why a [`super::RevokeTxn`] could not delete something.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RevokeError {
    /// The backend failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The store implementing the transaction failed in its own way.
    #[error("{0}")]
    Store(Box<dyn std::error::Error + Send + Sync + 'static>),
}
