//! etcd's backend contract on LMDB (through `heed`): the default embedded engine.
//!
//! [`LmdbEngine`] implements [`storage_api::Engine`]; wrap it in a [`storage_api::Backend`] for
//! batching, read buffering, hashing and snapshots. Buckets are LMDB named databases in one
//! environment; every batch is one LMDB write transaction, durable on commit.

mod engine;
mod view;

pub use engine::{LmdbConfig, LmdbEngine};
