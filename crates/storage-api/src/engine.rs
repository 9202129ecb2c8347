//! The engine boundary: the little a storage engine must provide for the batching layer to give
//! etcd's full backend contract on top of it.
//!
//! Architecture invariant: this trait knows nothing of buffering, batching or visibility; the
//! engines know nothing of them either. Engines only apply whole batches atomically and durably,
//! and serve consistent read views of what they committed.

use std::path::Path;

use crate::{Bucket, Result};

/// One change in a [`WriteBatch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOp {
    /// Set `key` to `value` in `bucket`.
    Put {
        /// The bucket.
        bucket: Bucket,
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Remove `key` from `bucket` (a no-op when absent).
    Delete {
        /// The bucket.
        bucket: Bucket,
        /// The key.
        key: Vec<u8>,
    },
}

/// Changes an engine applies as one atomic, durable unit, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// The changes, applied in this order.
    pub ops: Vec<WriteOp>,
}

impl WriteBatch {
    /// Whether the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Called for each key-value of a range in key order; returning `false` stops the visit.
pub type Visitor<'a> = dyn FnMut(&[u8], &[u8]) -> bool + 'a;

/// A consistent, read-only view of everything an engine had committed when the view was opened.
///
/// A view is `Send + Sync`: readers on many threads share one view.
pub trait EngineView: Send + Sync {
    /// Visits the key-values of `bucket` with `start <= key < end` (no upper bound when `end` is
    /// `None`) in ascending key order, until `visit` returns `false`. A bucket that did not
    /// exist when the view was opened is empty.
    fn visit(
        &self,
        bucket: Bucket,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut Visitor<'_>,
    ) -> Result<()>;
}

/// A storage engine behind the backend contract.
pub trait Engine: Send + Sync + 'static {
    /// The engine's short name, as `--backend` takes it (`lmdb`, `rocks`).
    fn name(&self) -> &'static str;

    /// The names of the buckets that exist, in any order.
    fn bucket_names(&self) -> Result<Vec<String>>;

    /// Creates `bucket` durably if it does not exist yet.
    fn create_bucket(&self, bucket: Bucket) -> Result<()>;

    /// Applies `batch` atomically and durably: after a crash either all of it or none of it is
    /// there. Returns [`crate::StorageError::Full`] when the engine must [`Engine::grow`] first.
    fn apply(&self, batch: &WriteBatch) -> Result<()>;

    /// Opens a consistent view of what is committed now.
    fn view(&self) -> Result<Box<dyn EngineView>>;

    /// Makes room after [`Engine::apply`] reported `Full`. Called by the backend with no view of
    /// its own open; it may wait until views held elsewhere are dropped.
    fn grow(&self) -> Result<()>;

    /// Bytes the engine's files take on disk.
    fn size(&self) -> Result<u64>;

    /// Bytes of those files holding live data (the rest is free space defrag can return).
    fn size_in_use(&self) -> Result<u64>;

    /// Rewrites the data compactly and returns the freed space to the file system. Called by the
    /// backend with no write pending and no view of its own open; it may wait until views held
    /// elsewhere are dropped.
    fn defrag(&self) -> Result<()>;

    /// The directory holding the engine's files.
    fn path(&self) -> &Path;
}
