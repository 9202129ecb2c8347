//! etcd's backend contract (`Backend` / `ReadTx` / `BatchTx`) over any storage engine.
//!
//! The batching layer is written once here and is generic over the small [`Engine`] trait that
//! each storage engine implements (`storage-lmdb`, `storage-rocks`):
//!
//! - Writers take the single [`BatchTx`] through [`Backend::batch_tx`]. Their writes go to a
//!   transaction-private buffer; when the `BatchTx` guard ends, the writes are published at once
//!   to every reader started afterwards, *before* they reach the engine (etcd's
//!   `txReadBuffer` / write-back). A reader never sees part of a write transaction.
//! - A background committer applies everything ended-but-uncommitted to the engine as one atomic,
//!   durable batch every [`BackendConfig::batch_interval`], or at once when
//!   [`BackendConfig::batch_limit`] writes are pending, on [`Backend::force_commit`] and on
//!   [`Backend::close`].
//! - Every [`ReadTxn`] is a consistent, cheap (O(1)) snapshot of the engine's last commit plus
//!   the read buffer, usable concurrently with the writer and with other readers.
//!
//! With the `conformance` feature, [`conformance`] holds the test suite every engine must pass.

mod backend;
mod batch_tx;
mod bucket;
mod engine;
mod error;
mod hash;
mod limits;
mod read_buffer;
mod read_tx;
mod snapshot;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use backend::{Backend, BackendConfig, CommitObserver};
pub use batch_tx::BatchTx;
pub use bucket::Bucket;
pub use engine::{Engine, EngineView, Visitor, WriteBatch, WriteOp};
pub use error::StorageError;
pub use limits::{MAX_KEY_LEN, MAX_VALUE_LEN};
pub use read_tx::{ForEachVisitor, KeyValue, ReadTx, ReadTxn};
pub use snapshot::{SNAPSHOT_MAGIC, SNAPSHOT_VERSION, Snapshot, restore_snapshot};

/// The result type of every fallible storage operation.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
