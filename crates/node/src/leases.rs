//! Wiring the lessor to the store: the store's [`LeaseRegistry`] hook over the shared lessor,
//! and the revoke transaction over the store's write transaction.
//!
//! Deadlock avoidance: a revoke holds the lessor's lock while it deletes the lease's keys in
//! the store's write transaction, and each delete tells the registry to detach the key. The
//! registry must not take the lessor's lock again then, so a revoke marks its thread
//! ([`RevokeScope`]) and the registry ignores detaches from that thread: the lessor forgets the
//! keys itself once the revoke succeeds.

use std::cell::Cell;
use std::sync::Arc;

use mvcc::lease::{LeaseItem, Lessor, RevokeError, RevokeTxn};
use mvcc::{LeaseRegistry, WriteTxn};
use parking_lot::Mutex;
use storage_api::Bucket;

thread_local! {
    static REVOKING: Cell<bool> = const { Cell::new(false) };
}

/// The lessor shared by the node's threads.
pub(crate) type SharedLessor = Arc<Mutex<Lessor>>;

/// The store's view of the shared lessor.
pub(crate) struct LessorRegistry {
    pub(crate) lessor: SharedLessor,
}

impl LeaseRegistry for LessorRegistry {
    fn contains(&self, lease: i64) -> bool {
        self.lessor.lock().lookup(lease).is_some()
    }

    fn attach(&self, lease: i64, key: &[u8]) {
        if let Err(e) = self.lessor.lock().attach(lease, &[LeaseItem::new(key)]) {
            tracing::warn!(lease, error = %e, "attaching a key to a lease failed");
        }
    }

    fn detach(&self, lease: i64, key: &[u8]) {
        if REVOKING.with(Cell::get) {
            return;
        }
        // A lease revoked meanwhile has no keys to detach.
        let _ = self.lessor.lock().detach(lease, &[LeaseItem::new(key)]);
    }
}

/// Marks the current thread as revoking until dropped.
struct RevokeScope;

impl RevokeScope {
    fn enter() -> RevokeScope {
        REVOKING.with(|r| r.set(true));
        RevokeScope
    }
}

impl Drop for RevokeScope {
    fn drop(&mut self) {
        REVOKING.with(|r| r.set(false));
    }
}

/// A revoke's deletions in the store's write transaction.
struct StoreRevokeTxn<'t, 'a> {
    txn: &'t mut WriteTxn<'a>,
}

fn store_err(e: mvcc::MvccError) -> RevokeError {
    RevokeError::Store(Box::new(e))
}

impl RevokeTxn for StoreRevokeTxn<'_, '_> {
    fn delete_key(&mut self, key: &[u8]) -> Result<(), RevokeError> {
        self.txn
            .delete_range(key, None)
            .map(|_| ())
            .map_err(store_err)
    }

    fn delete_raw(&mut self, bucket: Bucket, key: &[u8]) -> Result<(), RevokeError> {
        self.txn.raw_delete(bucket, key).map_err(store_err)
    }
}

/// Revokes lease `id` inside `txn`: its keys and its record go in that one write transaction.
pub(crate) fn revoke(
    lessor: &SharedLessor,
    id: i64,
    txn: &mut WriteTxn<'_>,
) -> Result<(), mvcc::lease::LeaseError> {
    let _scope = RevokeScope::enter();
    let mut lessor = lessor.lock();
    lessor.revoke(id, &mut StoreRevokeTxn { txn })
}
