//! The typed errors of the storage layer.

use crate::Bucket;

/// Every way a storage operation can fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The bucket was never created in this backend.
    #[error("bucket {0:?} does not exist")]
    UnknownBucket(String),
    /// The bucket name is not one engines can store (see [`Bucket::new`]).
    #[error("invalid bucket name {0:?}: use 1 to 64 bytes of [A-Za-z0-9_.-]")]
    InvalidBucketName(String),
    /// Keys must not be empty.
    #[error("empty key in bucket {0}")]
    EmptyKey(Bucket),
    /// The key exceeds [`crate::MAX_KEY_LEN`].
    #[error("key of {len} bytes in bucket {bucket} exceeds the limit of {max} bytes")]
    KeyTooLarge {
        /// The bucket written to.
        bucket: Bucket,
        /// The key's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The value exceeds [`crate::MAX_VALUE_LEN`].
    #[error("value of {len} bytes in bucket {bucket} exceeds the limit of {max} bytes")]
    ValueTooLarge {
        /// The bucket written to.
        bucket: Bucket,
        /// The value's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A range whose end sorts before its start.
    #[error("invalid range in bucket {0}: end key sorts before start key")]
    InvalidRange(Bucket),
    /// The backend was closed.
    #[error("backend is closed")]
    Closed,
    /// An earlier commit failed: writes that readers saw may not be durable, so the backend
    /// refuses further work instead of pretending otherwise.
    #[error("backend failed and refuses further work: {0}")]
    Failed(String),
    /// The engine ran out of its configured space and could not grow.
    #[error("{engine}: database is full and cannot grow: {message}")]
    Full {
        /// The engine's name.
        engine: &'static str,
        /// What the engine reported.
        message: String,
    },
    /// The data on disk (or in a snapshot) is corrupted.
    #[error("corrupted data: {0}")]
    Corrupted(String),
    /// Any other engine failure.
    #[error("{engine}: {source}")]
    Engine {
        /// The engine's name.
        engine: &'static str,
        /// The engine's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// A file-system failure.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl StorageError {
    /// Wraps an engine's own error.
    pub fn engine(
        engine: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        StorageError::Engine {
            engine,
            source: source.into(),
        }
    }
}
