//! etcd's multi-version store over the storage-api backend contract.
//!
//! Every change to the key space gets a [`Revision`]; the store keeps every revision of every
//! key until compaction, so reads and watches can ask for the key space as it was at any
//! uncompacted revision. This crate depends only on `storage-api`, so it runs on every engine.

pub mod revision;

pub use revision::{Revision, RevisionKey};
