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
    /// The directory holds another engine's files: opening it would start an empty store
    /// beside the data instead of the data.
    #[error(
        "{dir} holds data of the `{found}` storage engine, not `{wanted}`: start with `--backend {found}` (to change engines, restore a snapshot into a new data dir)"
    )]
    Mismatch {
        /// The engine directory.
        dir: String,
        /// The engine whose files are there.
        found: EngineKind,
        /// The engine asked for.
        wanted: EngineKind,
    },
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

    /// The engine whose files `dir` holds, if any (LMDB's `data.mdb`, RocksDB's `CURRENT`).
    pub fn detect(dir: &Path) -> Option<EngineKind> {
        if dir.join("data.mdb").exists() {
            Some(EngineKind::Lmdb)
        } else if dir.join("CURRENT").exists() {
            Some(EngineKind::Rocks)
        } else {
            None
        }
    }

    /// Opens (creating when absent) the engine's files in `dir` with the engine's defaults;
    /// refuses a directory that holds another engine's files.
    pub fn open(self, dir: &Path) -> Result<Box<dyn Engine>, OpenEngineError> {
        if let Some(found) = EngineKind::detect(dir)
            && found != self
        {
            return Err(OpenEngineError::Mismatch {
                dir: dir.display().to_string(),
                found,
                wanted: self,
            });
        }
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
    fn another_engines_directory_is_refused_not_overwritten() {
        let lmdb_dir = tempfile::tempdir().unwrap();
        std::fs::write(lmdb_dir.path().join("data.mdb"), b"").unwrap();
        let rocks_dir = tempfile::tempdir().unwrap();
        std::fs::write(rocks_dir.path().join("CURRENT"), b"MANIFEST-000001\n").unwrap();
        assert_eq!(EngineKind::detect(lmdb_dir.path()), Some(EngineKind::Lmdb));
        assert_eq!(
            EngineKind::detect(rocks_dir.path()),
            Some(EngineKind::Rocks)
        );
        for (dir, wanted, found) in [
            (&lmdb_dir, EngineKind::Rocks, EngineKind::Lmdb),
            (&rocks_dir, EngineKind::Lmdb, EngineKind::Rocks),
        ] {
            let err = wanted.open(dir.path()).err().unwrap();
            assert!(
                matches!(err, OpenEngineError::Mismatch { found: f, wanted: w, .. } if f == found && w == wanted),
                "{err}"
            );
            assert!(
                err.to_string().contains(&format!("--backend {found}")),
                "{err}"
            );
        }
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(EngineKind::detect(empty.path()), None);
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
