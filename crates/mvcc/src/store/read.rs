//! Read transactions (etcd's `storeTxnRead`): the store at one revision, over a consistent
//! backend snapshot.

use std::sync::Arc;

use super::Inner;
use super::range::range_keys;
use crate::error::Result;
use crate::request::{RangeOptions, RangeResult};

/// A read-only view of the store at the revision current when it began. Cheap, owned and
/// independent of writers. Reads below a compaction that happens meanwhile fail with
/// [`crate::MvccError::Compacted`] (etcd instead makes the compaction wait for open reads).
pub struct ReadTxn {
    inner: Arc<Inner>,
    tx: storage_api::ReadTxn,
    first_rev: i64,
    rev: i64,
}

impl ReadTxn {
    pub(crate) fn begin(inner: Arc<Inner>) -> Result<ReadTxn> {
        // The revision first, then the snapshot: a write transaction publishes its writes before
        // it moves the revision, so the snapshot holds everything up to `rev`.
        let revs = inner.revs();
        let tx = inner.backend.read_tx()?;
        Ok(ReadTxn {
            inner,
            tx,
            first_rev: revs.compact,
            rev: revs.current,
        })
    }

    /// The revision the transaction reads at by default.
    pub fn rev(&self) -> i64 {
        self.rev
    }

    /// The store's compaction revision when the transaction began.
    pub fn first_rev(&self) -> i64 {
        self.first_rev
    }

    /// Reads `[key, end)` (see [`crate::request`] for `end`) at `opts.rev`, or at
    /// [`ReadTxn::rev`] when it is `<= 0`.
    pub fn range(
        &self,
        key: &[u8],
        end: Option<&[u8]>,
        opts: &RangeOptions,
    ) -> Result<RangeResult> {
        range_keys(&self.inner, &self.tx, key, end, self.rev, opts)
    }
}
