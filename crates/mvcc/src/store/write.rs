//! Write transactions (etcd's `storeTxnWrite`): every change gets the revision
//! `{begin + 1, change index}`; the store's revision moves to `begin + 1` when the transaction
//! ends, if it changed anything.

use std::cell::Cell;

use parking_lot::MutexGuard;
use storage_api::{BatchTx, Bucket, ReadTx};

use super::Inner;
use super::counts::TxnOps;
use super::meta::{CONSISTENT_INDEX, ConsistentIndex, TERM};
use super::range::{range_keys, read_kv};
use crate::error::{MvccError, Result};
use crate::request::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeOptions, RangeResult,
    TxnRequest, TxnResponse,
};
use crate::tree_index::KeySpan;
use crate::{Change, ChangeKind, KeyValue, Revision, RevisionKey};

/// What an ended write transaction did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Committed {
    /// The store's revision after the transaction: its own if it changed keys, else unchanged.
    pub rev: i64,
    /// Its changes, in order (what watchers are told).
    pub changes: Vec<Change>,
}

/// The single write transaction. Its writes, the index changes and the new revision become
/// visible together when it ends ([`WriteTxn::end`], or drop). Ranges through it see its own
/// changes.
///
/// While it is open, other writers wait: calling the store's own writing methods
/// ([`crate::KvStore::put`], [`crate::KvStore::compact`], ...) from the thread holding it
/// deadlocks, as it would in etcd.
pub struct WriteTxn<'a> {
    inner: &'a Inner,
    tx: Option<BatchTx<'a>>,
    begin_rev: i64,
    changes: Vec<Change>,
    consistent: Option<ConsistentIndex>,
    /// What it did, counted into the store's [`super::OpCounts`] when it ends (ranges in a
    /// cell: reading takes `&self`).
    ops: TxnOps,
    ranges: Cell<u64>,
    // Dropped last: the next writer starts only after this one fully ended.
    _writer: MutexGuard<'a, ()>,
}

impl<'a> WriteTxn<'a> {
    pub(crate) fn begin(inner: &'a Inner) -> Result<WriteTxn<'a>> {
        let writer = inner.writer.lock();
        let tx = inner.backend.batch_tx()?;
        let begin_rev = inner.revs().current;
        Ok(WriteTxn {
            inner,
            tx: Some(tx),
            begin_rev,
            changes: Vec::with_capacity(4),
            consistent: None,
            ops: TxnOps::default(),
            ranges: Cell::new(0),
            _writer: writer,
        })
    }

    fn tx(&self) -> &BatchTx<'a> {
        match &self.tx {
            Some(tx) => tx,
            None => panic!("invariant violated: a write transaction is used after it ended"),
        }
    }

    fn tx_mut(&mut self) -> &mut BatchTx<'a> {
        match &mut self.tx {
            Some(tx) => tx,
            None => panic!("invariant violated: a write transaction is used after it ended"),
        }
    }

    /// The store's revision when the transaction began; its changes get the next one.
    pub fn rev(&self) -> i64 {
        self.begin_rev
    }

    /// The revision ranges read at by default: the transaction's own once it changed something.
    pub fn cur_rev(&self) -> i64 {
        if self.changes.is_empty() {
            self.begin_rev
        } else {
            self.begin_rev + 1
        }
    }

    /// The store's compaction revision (ranges below it fail).
    pub fn first_rev(&self) -> i64 {
        self.inner.revs().compact
    }

    /// Whether the lease registry knows `lease`.
    pub(crate) fn lease_known(&self, lease: i64) -> bool {
        self.inner
            .leases
            .as_ref()
            .is_some_and(|l| l.contains(lease))
    }

    /// The changes made so far.
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    /// Reads `[key, end)` (see [`crate::request`] for `end`) at `opts.rev`, or at
    /// [`WriteTxn::cur_rev`] when it is `<= 0`.
    pub fn range(
        &self,
        key: &[u8],
        end: Option<&[u8]>,
        opts: &RangeOptions,
    ) -> Result<RangeResult> {
        self.ranges.set(self.ranges.get() + 1);
        range_keys(self.inner, self.tx(), key, end, self.cur_rev(), opts)
    }

    /// Sets `key` to `value` with `lease` (0: none), returning the revision of the change
    /// (etcd's `TxnWrite.Put`). A lease must be known to the lease registry; the key's previous
    /// lease, if different, is detached.
    pub fn put(&mut self, key: &[u8], value: &[u8], lease: i64) -> Result<i64> {
        self.ops.puts += 1;
        if key.is_empty() {
            return Err(MvccError::EmptyKey);
        }
        if lease != 0 && !self.lease_known(lease) {
            return Err(MvccError::LeaseNotFound(lease));
        }
        let rev = self.begin_rev + 1;
        let prev = self.inner.index.get(key, rev);
        let (created, version) = prev.map_or((rev, 0), |p| (p.created.main, p.version));
        let old_lease = match (&prev, &self.inner.leases) {
            (Some(p), Some(_)) => read_kv(self.tx(), p.modified)?.lease,
            _ => 0,
        };
        let idx_rev = Revision::new(rev, self.changes.len() as i64);
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision: created,
            mod_revision: rev,
            version: version + 1,
            value: value.to_vec(),
            lease,
        };
        self.tx_mut()
            .seq_put(Bucket::KEY, &idx_rev.to_bytes(), &kv.encode())?;
        self.inner.index.put(key, idx_rev);
        self.changes.push(Change {
            kind: ChangeKind::Put,
            kv,
        });
        if let Some(leases) = &self.inner.leases
            && old_lease != lease
        {
            if old_lease != 0 {
                leases.detach(old_lease, key);
            }
            if lease != 0 {
                leases.attach(lease, key);
            }
        }
        Ok(rev)
    }

    /// Deletes the keys of `[key, end)` (see [`crate::request`] for `end`), returning how many
    /// were deleted and the store's revision after it (etcd's `TxnWrite.DeleteRange`).
    pub fn delete_range(&mut self, key: &[u8], end: Option<&[u8]>) -> Result<(i64, i64)> {
        self.ops.deletes += 1;
        if key.is_empty() {
            return Err(MvccError::EmptyKey);
        }
        let keys = self
            .inner
            .index
            .range(KeySpan::new(key, end), self.cur_rev());
        for (k, modified) in &keys {
            self.delete(k, *modified)?;
        }
        let n = keys.len() as i64;
        if n != 0 || !self.changes.is_empty() {
            Ok((n, self.begin_rev + 1))
        } else {
            Ok((0, self.begin_rev))
        }
    }

    fn delete(&mut self, key: &[u8], modified: Revision) -> Result<()> {
        let rev = self.begin_rev + 1;
        let idx_rev = Revision::new(rev, self.changes.len() as i64);
        let old_lease = match &self.inner.leases {
            Some(_) => read_kv(self.tx(), modified)?.lease,
            None => 0,
        };
        let record = KeyValue {
            key: key.to_vec(),
            ..KeyValue::default()
        };
        let bucket_key = RevisionKey {
            revision: idx_rev,
            tombstone: true,
        };
        self.tx_mut()
            .seq_put(Bucket::KEY, &bucket_key.to_bytes(), &record.encode())?;
        if self.inner.index.tombstone(key, idx_rev).is_err() {
            panic!(
                "invariant violated: a key found live in the index can be tombstoned (key {:?})",
                String::from_utf8_lossy(key)
            );
        }
        self.changes.push(Change {
            kind: ChangeKind::Delete,
            kv: KeyValue {
                key: key.to_vec(),
                mod_revision: rev,
                ..KeyValue::default()
            },
        });
        if old_lease != 0
            && let Some(leases) = &self.inner.leases
        {
            leases.detach(old_lease, key);
        }
        Ok(())
    }

    /// A put with etcd's request options: `prev_kv`, `ignore_value`, `ignore_lease`, as an
    /// operation of a transaction (etcd's `checkRequestPut`: the key `ignore_*` needs is looked
    /// for before the lease).
    pub fn put_request(&mut self, req: &PutRequest) -> Result<PutResponse> {
        crate::txn_check::check_put(req)?;
        let prev = if req.ignore_value || req.ignore_lease || req.prev_kv {
            self.range(&req.key, None, &RangeOptions::default())?
                .kvs
                .into_iter()
                .next()
        } else {
            None
        };
        let (value, lease) = match &prev {
            None if req.ignore_value || req.ignore_lease => return Err(MvccError::KeyNotFound),
            Some(p) => (
                if req.ignore_value {
                    &p.value
                } else {
                    &req.value
                },
                if req.ignore_lease { p.lease } else { req.lease },
            ),
            None => (&req.value, req.lease),
        };
        let (value, lease) = (value.clone(), lease);
        let revision = self.put(&req.key, &value, lease)?;
        Ok(PutResponse {
            revision,
            prev_kv: if req.prev_kv { prev } else { None },
        })
    }

    /// A put that is a request of its own, not an operation of a transaction: etcd then looks
    /// the lease up before it looks for the key `ignore_value`/`ignore_lease` need, so an
    /// unknown lease is the error reported when both are wrong.
    pub fn put_standalone(&mut self, req: &PutRequest) -> Result<PutResponse> {
        crate::txn_check::check_put(req)?;
        if req.lease != 0 && !self.lease_known(req.lease) {
            return Err(MvccError::LeaseNotFound(req.lease));
        }
        self.put_request(req)
    }

    /// A delete with etcd's request options: `prev_kv` (etcd's `DeleteRange` apply).
    pub fn delete_range_request(
        &mut self,
        req: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse> {
        if req.key.is_empty() {
            return Err(MvccError::EmptyKey);
        }
        let end = req.range_end.as_deref();
        let prev_kvs = if req.prev_kv {
            self.range(&req.key, end, &RangeOptions::default())?.kvs
        } else {
            Vec::new()
        };
        let (deleted, revision) = self.delete_range(&req.key, end)?;
        Ok(DeleteRangeResponse {
            revision,
            deleted,
            prev_kvs,
        })
    }

    /// Runs a transaction inside this write transaction (see [`crate::KvStore::txn`]); its
    /// `revision` is this transaction's revision after it.
    pub fn txn(&mut self, req: &TxnRequest) -> Result<TxnResponse> {
        crate::txn_check::check_txn(req)?;
        let mut resp = super::txn::run(self, req)?;
        resp.revision = self.cur_rev();
        Ok(resp)
    }

    /// Stores the raft position `index` / `term` in the `meta` bucket in the same backend batch
    /// as this transaction's data, when it ends.
    pub fn set_consistent_index(&mut self, index: u64, term: u64) {
        self.consistent = Some(ConsistentIndex { index, term });
    }

    fn check_raw(bucket: Bucket) -> Result<()> {
        if bucket == Bucket::KEY || bucket == Bucket::META {
            return Err(MvccError::ReservedBucket(bucket));
        }
        Ok(())
    }

    /// Creates `bucket` in the backend if it does not exist (for raw writes).
    pub fn create_bucket(&mut self, bucket: Bucket) -> Result<()> {
        Ok(self.tx_mut().create_bucket(bucket)?)
    }

    /// Reads a raw record of the backend, seeing this transaction's writes.
    pub fn raw_get(&self, bucket: Bucket, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.tx().get(bucket, key)?)
    }

    /// Writes a raw record to a bucket other than `key` and `meta` (for example the lessor's
    /// `lease` bucket), atomically with this transaction's changes.
    pub fn raw_put(&mut self, bucket: Bucket, key: &[u8], value: &[u8]) -> Result<()> {
        Self::check_raw(bucket)?;
        Ok(self.tx_mut().put(bucket, key, value)?)
    }

    /// Deletes a raw record from a bucket other than `key` and `meta` (for example a revoked
    /// lease), atomically with this transaction's changes.
    pub fn raw_delete(&mut self, bucket: Bucket, key: &[u8]) -> Result<()> {
        Self::check_raw(bucket)?;
        Ok(self.tx_mut().delete(bucket, key)?)
    }

    /// Ends the transaction: publishes its writes, moves the store's revision if it changed
    /// anything, tells the observer, and returns what it did. A failure reported here is the
    /// backend's commit failing: the writes were published but may not be durable.
    pub fn end(mut self) -> Result<Committed> {
        self.finish()
    }

    fn finish(&mut self) -> Result<Committed> {
        let mut ops = std::mem::take(&mut self.ops);
        ops.ranges = self.ranges.take();
        self.inner.counts.add_write(&ops);
        let Some(mut tx) = self.tx.take() else {
            return Ok(Committed {
                rev: self.begin_rev,
                changes: Vec::new(),
            });
        };
        let meta = match self.consistent.take() {
            Some(ci) => tx
                .put(Bucket::META, CONSISTENT_INDEX, &ci.index.to_be_bytes())
                .and_then(|()| tx.put(Bucket::META, TERM, &ci.term.to_be_bytes()))
                .map(|()| *self.inner.consistent.lock() = ci),
            None => Ok(()),
        };
        // Ending publishes the writes (even when the commit it may trigger fails), so the
        // revision must move regardless.
        let ended = tx.end();
        let changes = std::mem::take(&mut self.changes);
        let rev = if changes.is_empty() {
            self.begin_rev
        } else {
            let rev = self.begin_rev + 1;
            self.inner.revs.lock().current = rev;
            if let Some(observer) = &self.inner.observer {
                observer.on_changes(rev, &changes);
            }
            rev
        };
        meta?;
        ended?;
        Ok(Committed { rev, changes })
    }
}

impl Drop for WriteTxn<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            tracing::error!(error = %e, "ending a write transaction failed");
        }
    }
}
