//! The one place a storage engine is chosen: which engines this build has, and how to open one.
//!
//! Architecture invariant: nothing else in the workspace names a concrete engine type; the server,
//! the benchmarks and the tests all go through [`EngineKind`].

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use storage_api::{Backend, BackendConfig, Engine, StorageError};

/// A storage engine ferrocd can keep its data in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EngineKind {
    /// LMDB through `heed`: the default embedded engine (cargo feature `lmdb`).
    Lmdb,
    /// RocksDB (cargo feature `rocks`).
    Rocks,
}

/// Why an engine could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenEngineError {
    /// The engine exists but this binary was built without its cargo feature.
    #[error("storage engine `{0}` is not compiled into this build (rebuild with `--features {0}`)")]
    NotCompiled(EngineKind),
    /// The engine failed to open its files.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl EngineKind {
    /// Every engine, compiled in or not.
    pub const ALL: [EngineKind; 2] = [EngineKind::Lmdb, EngineKind::Rocks];

    /// The name `--backend` takes.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Lmdb => "lmdb",
            EngineKind::Rocks => "rocks",
        }
    }

    /// Whether this build contains the engine.
    pub fn is_compiled(self) -> bool {
        match self {
            EngineKind::Lmdb => cfg!(feature = "lmdb"),
            EngineKind::Rocks => cfg!(feature = "rocks"),
        }
    }

    /// The engines this build contains, the default first.
    pub fn compiled() -> Vec<EngineKind> {
        EngineKind::ALL
            .into_iter()
            .filter(|kind| kind.is_compiled())
            .collect()
    }

    /// Opens (creating when absent) the engine's files in `dir` with the engine's defaults.
    pub fn open(self, dir: &Path) -> Result<Box<dyn Engine>, OpenEngineError> {
        match self {
            #[cfg(feature = "lmdb")]
            EngineKind::Lmdb => Ok(Box::new(storage_lmdb::LmdbEngine::open(
                dir,
                storage_lmdb::LmdbConfig::default(),
            )?)),
            #[cfg(feature = "rocks")]
            EngineKind::Rocks => Ok(Box::new(storage_rocks::RocksEngine::open(
                dir,
                storage_rocks::RocksConfig::default(),
            )?)),
            #[allow(unreachable_patterns)] // reachable when a feature is off
            kind => {
                let _ = dir;
                Err(OpenEngineError::NotCompiled(kind))
            }
        }
    }

    /// Opens the engine in `dir` behind etcd's batching [`Backend`].
    pub fn open_backend(
        self,
        dir: &Path,
        config: BackendConfig,
    ) -> Result<Backend, OpenEngineError> {
        Ok(Backend::new(self.open(dir)?, config)?)
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not an engine.
#[derive(Debug, thiserror::Error)]
#[error("unknown storage engine `{0}` (expected `lmdb` or `rocks`)")]
pub struct UnknownEngine(String);

impl FromStr for EngineKind {
    type Err = UnknownEngine;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EngineKind::ALL
            .into_iter()
            .find(|kind| kind.name() == s)
            .ok_or_else(|| UnknownEngine(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use storage_api::{Bucket, ReadTx};

    #[test]
    fn names_round_trip() {
        for kind in EngineKind::ALL {
            assert_eq!(kind.name().parse::<EngineKind>().unwrap(), kind);
        }
        assert!("bolt".parse::<EngineKind>().is_err());
    }

    #[test]
    fn every_compiled_engine_opens_and_keeps_a_write() {
        assert!(!EngineKind::compiled().is_empty(), "no engine compiled in");
        for kind in EngineKind::compiled() {
            let dir = tempfile::tempdir().unwrap();
            let backend = kind
                .open_backend(dir.path(), BackendConfig::default())
                .unwrap();
            assert_eq!(backend.engine_name(), kind.name());
            let mut tx = backend.batch_tx().unwrap();
            tx.create_bucket(Bucket::KEY).unwrap();
            tx.put(Bucket::KEY, b"k", b"v").unwrap();
            tx.end().unwrap();
            let read = backend.read_tx().unwrap();
            assert_eq!(read.get(Bucket::KEY, b"k").unwrap(), Some(b"v".to_vec()));
        }
    }

    #[test]
    fn an_engine_left_out_of_the_build_says_so() {
        for kind in EngineKind::ALL.into_iter().filter(|k| !k.is_compiled()) {
            let dir = tempfile::tempdir().unwrap();
            let err = kind.open(dir.path()).err().unwrap();
            assert!(err.to_string().contains("not compiled"), "{err}");
        }
    }
}
