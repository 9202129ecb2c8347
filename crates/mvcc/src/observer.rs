//! The hook a watchable store layers on: every write transaction that changed keys reports its
//! changes, in revision order.

use crate::Change;

/// Told about every committed change set, in revision order.
///
/// Called after the changes are visible to new readers and before the next write transaction
/// begins, so implementations must be quick and must not write to the store.
pub trait ChangeObserver: Send + Sync {
    /// The write transaction at `rev` made `changes` (in order; never empty).
    fn on_changes(&self, rev: i64, changes: &[Change]);
}
