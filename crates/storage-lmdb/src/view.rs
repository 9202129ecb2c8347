//! A consistent read view of one LMDB snapshot, shareable across threads.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;

use heed::{Env, RoTxn, WithoutTls};
use parking_lot::{Condvar, Mutex};
use storage_api::{Bucket, EngineView, Result, Visitor};

use crate::engine::{Db, lmdb_error};

/// LMDB read transactions may move between threads but not be used by two at once, so a view
/// keeps a pool of them, all reading the same snapshot (checked by transaction id). A reader
/// takes one from the pool, or opens one while the snapshot is still the newest, or waits.
pub(crate) struct LmdbView {
    env: Env<WithoutTls>,
    dbs: Arc<HashMap<Bucket, Db>>,
    snapshot: usize,
    pool: Mutex<Vec<RoTxn<'static, WithoutTls>>>,
    returned: Condvar,
}

impl LmdbView {
    pub(crate) fn open(env: &Env<WithoutTls>, dbs: Arc<HashMap<Bucket, Db>>) -> Result<LmdbView> {
        let txn = env.clone().static_read_txn().map_err(lmdb_error)?;
        Ok(LmdbView {
            env: env.clone(),
            dbs,
            snapshot: txn.id(),
            pool: Mutex::new(vec![txn]),
            returned: Condvar::new(),
        })
    }

    fn acquire(&self) -> Result<RoTxn<'static, WithoutTls>> {
        let mut pool = self.pool.lock();
        loop {
            if let Some(txn) = pool.pop() {
                return Ok(txn);
            }
            drop(pool);
            let txn = self.env.clone().static_read_txn().map_err(lmdb_error)?;
            if txn.id() == self.snapshot {
                return Ok(txn);
            }
            drop(txn);
            pool = self.pool.lock();
            // The snapshot moved on: only a pooled transaction reads it. One exists (the view
            // began with one), so wait for it to come back.
            if pool.is_empty() {
                self.returned.wait(&mut pool);
            }
        }
    }

    fn release(&self, txn: RoTxn<'static, WithoutTls>) {
        self.pool.lock().push(txn);
        self.returned.notify_one();
    }
}

impl EngineView for LmdbView {
    fn visit(
        &self,
        bucket: Bucket,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut Visitor<'_>,
    ) -> Result<()> {
        let Some(db) = self.dbs.get(&bucket) else {
            return Ok(());
        };
        let txn = self.acquire()?;
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        let result = (|| {
            // LMDB cannot seek to an empty key: an empty start is "from the first key".
            let lower = if start.is_empty() {
                Bound::Unbounded
            } else {
                Bound::Included(start)
            };
            let range = (lower, upper);
            for entry in db.range(&txn, &range).map_err(lmdb_error)? {
                let (k, v) = entry.map_err(lmdb_error)?;
                if !visit(k, v) {
                    break;
                }
            }
            Ok(())
        })();
        self.release(txn);
        result
    }
}
