//! etcd's lessor (`server/lease`): leases, their attached keys, expiry and checkpoints.
//!
//! A lease is granted with a TTL; keys attached to it are deleted when it is revoked. The
//! primary lessor (the raft leader's) tracks expiries and renewals; every member applies the same
//! grants, revokes and checkpoints from the raft log, so their `lease` buckets stay identical.
//!
//! The lessor keeps no clock and runs no thread. Every method that needs the time takes `now`,
//! an [`std::time::Instant`] of the caller's monotonic clock, and the caller drives the work
//! etcd's lessor does in its run loop:
//!
//! - [`Lessor::expired_leases`] gives the leases due for revoke, which the leader proposes
//!   through raft (at its own rate); [`Lessor::revoke`] applies each proposal.
//! - [`Lessor::checkpoint_due`] gives the remaining TTLs to propose as checkpoints;
//!   [`Lessor::apply_checkpoint`] applies them on every member, so a restart or a new leader does
//!   not give a lease its full TTL again.
//!
//! Expiry and checkpoint times live in two time-ordered queues with one entry per lease, so
//! finding due leases costs O(log n) per lease returned rather than a scan of every lease.
//!
//! The `lease` bucket holds etcd's format (see [`record`]), so snapshots stay readable by etcd's
//! tooling. Attached keys are not persisted: the store re-attaches them when it restores.

mod error;
mod lessor;
mod queue;
pub mod record;
mod types;

pub use error::{CorruptRecord, LeaseError, RevokeError};
pub use lessor::{Lessor, LessorConfig};
pub use record::{DecodeError, LeaseRecord};
pub use types::{Lease, LeaseItem, TimeToLive};

use storage_api::Bucket;

/// A lease's id; [`NO_LEASE`] (0) stands for "no lease".
pub type LeaseId = i64;

/// The id meaning "no lease" (etcd's `NoLease`).
pub const NO_LEASE: LeaseId = 0;

/// The largest TTL a lease may be granted, in seconds (etcd's `MaxLeaseTTL`, about 285 years).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// The deletions of a revoke, applied in one atomic write transaction of the store (etcd's
/// `TxnDelete`): every attached key, then the lease's record, so a crash cannot leave the keys
/// without the lease or the lease without its keys.
///
/// The mvcc store's write transaction implements it; an implementation must not call back into
/// the lessor, which detaches the keys itself once the revoke succeeds.
pub trait RevokeTxn {
    /// Deletes `key` from the key space (its latest generation, as a delete-range of one key).
    fn delete_key(&mut self, key: &[u8]) -> Result<(), RevokeError>;

    /// Deletes `key` from `bucket` directly; the lessor uses it for the lease's own record in
    /// [`Bucket::LEASE`].
    fn delete_raw(&mut self, bucket: Bucket, key: &[u8]) -> Result<(), RevokeError>;
}
