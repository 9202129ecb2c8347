//! Shared helpers of mvcc's integration tests: opening backends and stores on an engine.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use mvcc::{KvStore, LeaseRegistry, StoreConfig};
use parking_lot::Mutex;
use storage_api::{Backend, BackendConfig, Engine};

/// A storage engine the tests run on.
#[derive(Clone, Copy, Debug)]
pub enum EngineKind {
    /// LMDB (always).
    Lmdb,
    /// RocksDB (with the `rocks` feature).
    #[cfg(feature = "rocks")]
    Rocks,
}

impl EngineKind {
    /// Opens the engine's database in `dir`.
    pub fn open_engine(self, dir: &Path) -> Box<dyn Engine> {
        match self {
            EngineKind::Lmdb => Box::new(
                storage_lmdb::LmdbEngine::open(dir, storage_lmdb::LmdbConfig::default()).unwrap(),
            ),
            #[cfg(feature = "rocks")]
            EngineKind::Rocks => Box::new(
                storage_rocks::RocksEngine::open(dir, storage_rocks::RocksConfig::default())
                    .unwrap(),
            ),
        }
    }

    /// Opens a backend on the engine's database in `dir`.
    pub fn open_backend(self, dir: &Path) -> Arc<Backend> {
        Arc::new(Backend::new(self.open_engine(dir), BackendConfig::default()).unwrap())
    }
}

/// A store on LMDB in `dir` with `config`.
pub fn open_store(dir: &Path, config: StoreConfig) -> (Arc<Backend>, KvStore) {
    let backend = EngineKind::Lmdb.open_backend(dir);
    let store = KvStore::open(Arc::clone(&backend), config).unwrap();
    (backend, store)
}

/// A store on LMDB in a new temporary directory with the default config.
pub fn temp_store() -> (tempfile::TempDir, Arc<Backend>, KvStore) {
    let dir = tempfile::tempdir().unwrap();
    let (backend, store) = open_store(dir.path(), StoreConfig::default());
    (dir, backend, store)
}

/// A lease registry for tests: known leases and the keys attached to each.
#[derive(Default)]
pub struct TestLeases {
    /// Lease → attached keys.
    pub leases: Mutex<BTreeMap<i64, BTreeSet<Vec<u8>>>>,
}

impl TestLeases {
    /// A registry knowing `ids`.
    pub fn with(ids: &[i64]) -> Arc<TestLeases> {
        let r = TestLeases::default();
        for id in ids {
            r.leases.lock().insert(*id, BTreeSet::new());
        }
        Arc::new(r)
    }

    /// The keys attached to `lease`.
    pub fn keys(&self, lease: i64) -> Vec<Vec<u8>> {
        self.leases
            .lock()
            .get(&lease)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl LeaseRegistry for TestLeases {
    fn contains(&self, lease: i64) -> bool {
        self.leases.lock().contains_key(&lease)
    }
    fn attach(&self, lease: i64, key: &[u8]) {
        self.leases
            .lock()
            .entry(lease)
            .or_default()
            .insert(key.to_vec());
    }
    fn detach(&self, lease: i64, key: &[u8]) {
        if let Some(keys) = self.leases.lock().get_mut(&lease) {
            keys.remove(key);
        }
    }
}
