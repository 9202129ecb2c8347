//! etcd's multi-version store over the storage-api backend contract.
//!
//! Every change to the key space gets a [`Revision`]; the store keeps every revision of every
//! key until compaction, so reads and watches can ask for the key space as it was at any
//! uncompacted revision. This crate depends only on `storage-api`, so it runs on every engine.
//!
//! - [`KeyIndex`] / [`TreeIndex`]: the in-memory index from keys to their revisions.
//! - [`KvStore`]: the store, with read transactions ([`ReadTxn`]), the write transaction
//!   ([`WriteTxn`]), etcd's put / delete-range / txn semantics ([`request`]), compaction and
//!   hashes.
//! - [`LeaseRegistry`] and [`ChangeObserver`]: the hooks the lessor and the watch layer use.
//! - [`watch`]: [`WatchableStore`] and [`WatchStream`], etcd's watches over the store.
//! - [`lease`]: etcd's lessor: grant, revoke, keep-alive, expiry by the caller's clock,
//!   checkpoints, restore.
//!
//! Values in the `key` bucket are etcd's protobuf `mvccpb.KeyValue` ([`kv_encoding`]), so the
//! bucket is byte-compatible with etcd's.

mod compare;
pub mod error;
pub mod key_index;
pub mod key_value;
pub mod kv_encoding;
pub mod lease;
pub mod observer;
pub mod registry;
pub mod request;
pub mod revision;
pub mod store;
pub mod tree_index;
mod txn_check;
pub mod watch;

pub use error::{MvccError, Result};
pub use key_index::{Generation, KeyIndex, KeyRevision};
pub use key_value::{Change, ChangeKind, KeyValue};
pub use observer::ChangeObserver;
pub use registry::LeaseRegistry;
pub use request::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeOptions, RangeRequest, RangeResult, RequestOp, ResponseOp, TxnRequest,
    TxnResponse,
};
pub use revision::{Revision, RevisionKey};
pub use store::{
    Committed, CompactionHandle, ConsistentIndex, KeyValueHash, KvStore, OpCounts, ReadTxn,
    StoreConfig, WriteTxn,
};
pub use tree_index::{KeySpan, TreeIndex};
pub use txn_check::check_txn;
pub use watch::{
    Event, EventKind, WatchConfig, WatchError, WatchFilters, WatchId, WatchResponse, WatchStream,
    WatchableStore,
};
