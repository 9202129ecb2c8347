//! A consistent read view: a RocksDB snapshot kept beside the database it borrows.

use std::sync::Arc;

use rocksdb::{ReadOptions, SnapshotWithThreadMode};
use storage_api::{Bucket, EngineView, Result, Visitor};

use crate::engine::{Db, rocks_error};

type Snapshot<'db> = SnapshotWithThreadMode<'db, Db>;

self_cell::self_cell!(
    /// The database and a snapshot borrowing it, in one owned value (rust-rocksdb#937).
    struct SnapshotCell {
        owner: Arc<Db>,
        #[covariant]
        dependent: Snapshot,
    }
);

/// A consistent view of one RocksDB snapshot; RocksDB reads are thread-safe, so readers share it.
pub(crate) struct RocksView {
    cell: SnapshotCell,
}

impl RocksView {
    pub(crate) fn new(db: Arc<Db>) -> RocksView {
        RocksView {
            cell: SnapshotCell::new(db, |db| db.snapshot()),
        }
    }
}

impl EngineView for RocksView {
    fn visit(
        &self,
        bucket: Bucket,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut Visitor<'_>,
    ) -> Result<()> {
        let db = self.cell.borrow_owner();
        let Some(cf) = db.cf_handle(bucket.name()) else {
            return Ok(());
        };
        let mut options = ReadOptions::default();
        options.set_snapshot(self.cell.borrow_dependent());
        if let Some(end) = end {
            options.set_iterate_upper_bound(end.to_vec());
        }
        let mut it = db.raw_iterator_cf_opt(&cf, options);
        it.seek(start);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !visit(k, v) {
                return Ok(());
            }
            it.next();
        }
        it.status().map_err(rocks_error)
    }
}
