//! The store's view of the lessor: which leases exist, and which keys are attached to which.
//!
//! The lessor itself lives elsewhere; the store only needs to validate a put's lease and keep the
//! lessor's key sets in step with puts, deletes and restores.

/// The hook through which the store tells the lessor about keys and leases.
///
/// Calls happen inside write transactions (and while the store restores on open), so
/// implementations must not call back into the store, and the lessor must not hold the lock these
/// methods take while it opens a write transaction (for a revoke: collect the keys, release the
/// lock, then write).
pub trait LeaseRegistry: Send + Sync {
    /// Whether the lease exists (a put with an unknown lease fails with
    /// [`crate::MvccError::LeaseNotFound`]).
    fn contains(&self, lease: i64) -> bool;
    /// `key` now carries `lease`.
    fn attach(&self, lease: i64, key: &[u8]);
    /// `key` no longer carries `lease` (it was deleted, or put with another lease).
    fn detach(&self, lease: i64, key: &[u8]);
}
