//! The write transaction (etcd's buffered `batchTx`): the only writer, holding the writer lock
//! from [`crate::Backend::batch_tx`] until it ends.

use std::sync::Arc;

use parking_lot::MutexGuard;

use crate::backend::{Shared, WriterState};
use crate::read_buffer::ReadBuffer;
use crate::read_tx::{ForEachVisitor, Layers};
use crate::{Bucket, KeyValue, MAX_KEY_LEN, MAX_VALUE_LEN, ReadTx, Result, StorageError};

/// The write transaction. Reads through it see its own writes; other readers see them, all at
/// once, when it ends: on drop or [`BatchTx::end`].
pub struct BatchTx<'a> {
    shared: &'a Shared,
    writer: MutexGuard<'a, WriterState>,
    own: ReadBuffer,
    writes: usize,
}

impl<'a> BatchTx<'a> {
    pub(crate) fn begin(shared: &'a Shared) -> BatchTx<'a> {
        BatchTx {
            shared,
            writer: shared.writer.lock(),
            own: ReadBuffer::default(),
            writes: 0,
        }
    }

    /// Creates `bucket` if it does not exist (durably and at once, like etcd's
    /// `UnsafeCreateBucket`).
    pub fn create_bucket(&mut self, bucket: Bucket) -> Result<()> {
        if !Bucket::is_valid_name(bucket.name()) {
            return Err(StorageError::InvalidBucketName(bucket.name().to_owned()));
        }
        if self.shared.buckets.read().contains(&bucket) {
            return Ok(());
        }
        self.shared.engine.create_bucket(bucket)?;
        let mut buckets = self.shared.buckets.write();
        let mut next = (**buckets).clone();
        next.insert(bucket);
        *buckets = Arc::new(next);
        Ok(())
    }

    fn check_write(&self, bucket: Bucket, key: &[u8], value_len: usize) -> Result<()> {
        self.shared.check_usable()?;
        if !self.shared.buckets.read().contains(&bucket) {
            return Err(StorageError::UnknownBucket(bucket.name().to_owned()));
        }
        if key.is_empty() {
            return Err(StorageError::EmptyKey(bucket));
        }
        if key.len() > MAX_KEY_LEN {
            return Err(StorageError::KeyTooLarge {
                bucket,
                len: key.len(),
                max: MAX_KEY_LEN,
            });
        }
        if value_len > MAX_VALUE_LEN {
            return Err(StorageError::ValueTooLarge {
                bucket,
                len: value_len,
                max: MAX_VALUE_LEN,
            });
        }
        Ok(())
    }

    /// Sets `key` to `value` in `bucket`.
    pub fn put(&mut self, bucket: Bucket, key: &[u8], value: &[u8]) -> Result<()> {
        self.check_write(bucket, key, value.len())?;
        self.own
            .insert(bucket, Arc::from(key), Some(Arc::from(value)));
        self.writes += 1;
        Ok(())
    }

    /// Like [`BatchTx::put`], for keys written in ascending order (etcd's `UnsafeSeqPut`, used
    /// for revisions). Engines receive every commit sorted, so both take the same path.
    pub fn seq_put(&mut self, bucket: Bucket, key: &[u8], value: &[u8]) -> Result<()> {
        self.put(bucket, key, value)
    }

    /// Removes `key` from `bucket` (a no-op when absent).
    pub fn delete(&mut self, bucket: Bucket, key: &[u8]) -> Result<()> {
        self.check_write(bucket, key, 0)?;
        self.own.insert(bucket, Arc::from(key), None);
        self.writes += 1;
        Ok(())
    }

    /// Publishes this transaction's writes so far, then commits everything ended to the engine.
    pub fn commit(&mut self) -> Result<()> {
        self.publish();
        self.shared.commit_locked(&mut self.writer)
    }

    /// Ends the transaction, reporting a failure of the commit its writes may trigger (dropping
    /// the transaction does the same but can only log such a failure).
    pub fn end(mut self) -> Result<()> {
        self.finish()
    }

    /// Makes this transaction's writes visible to every reader that begins afterwards.
    fn publish(&mut self) {
        if self.writes == 0 {
            return;
        }
        let own = std::mem::take(&mut self.own);
        // Only the writer changes the buffer, and we are the writer: build the next buffer
        // without blocking readers, then swap it in atomically.
        let mut next = self.shared.read.read().buffer.clone();
        for bucket in own.buckets() {
            for (key, slot) in own.range(bucket, &[], None) {
                next.insert(bucket, Arc::clone(key), slot.clone());
            }
        }
        self.shared.read.write().buffer = next;
        self.writer.pending += self.writes;
        self.writes = 0;
    }

    fn finish(&mut self) -> Result<()> {
        self.publish();
        if self.writer.pending >= self.shared.config.batch_limit {
            self.shared.commit_locked(&mut self.writer)
        } else {
            Ok(())
        }
    }

    fn layers<R>(&self, read: impl FnOnce(&Layers<'_>) -> Result<R>) -> Result<R> {
        let buckets = Arc::clone(&self.shared.buckets.read());
        let state = self.shared.read.read();
        read(&Layers {
            buckets: &buckets,
            view: &*state.view,
            read_buffer: &state.buffer,
            tx_buffer: Some(&self.own),
        })
    }
}

impl Drop for BatchTx<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            tracing::error!(error = %e, "commit at the end of a write transaction failed");
        }
    }
}

impl ReadTx for BatchTx<'_> {
    fn get(&self, bucket: Bucket, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.layers(|l| l.get(bucket, key))
    }

    fn range(
        &self,
        bucket: Bucket,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>> {
        self.layers(|l| l.range(bucket, start, end, limit))
    }

    fn for_each(&self, bucket: Bucket, visit: &mut ForEachVisitor<'_>) -> Result<()> {
        self.layers(|l| l.for_each(bucket, visit))
    }
}
