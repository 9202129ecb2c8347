//! etcd's backend contract on RocksDB: the opt-in engine (cargo feature `rocks` of `node` and
//! `server`).
//!
//! [`RocksEngine`] implements [`storage_api::Engine`]; wrap it in a [`storage_api::Backend`] for
//! batching, read buffering, hashing and snapshots. Buckets are column families; every batch is
//! one `WriteBatch` written with the WAL on and synced; views are RocksDB snapshots.

mod engine;
mod view;

pub use engine::{RocksConfig, RocksEngine};
