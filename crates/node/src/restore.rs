//! Restoring a new data dir from a snapshot's buckets: the node side of
//! `ferrocdutl snapshot restore` (etcd's `snapshot restore`).
//!
//! [`Restorer`] creates `<data-dir>/member/backend` exactly where [`Node::start`] looks for it
//! (through [`snapshot::open_backend`]), copies every bucket into it except those that belong
//! to the old cluster (see [`dropped_bucket`]), and resets the consistent index to the raft
//! position of the bootstrap snapshot a fresh WAL starts from (index 1, term 1). No WAL is
//! written: `ferrocd` started on the directory with its `--initial-cluster` bootstraps a new
//! cluster (new member ids, members saved then) over the restored data, and applies new
//! entries from index 2 on.
//!
//! [`Node::start`]: crate::Node::start
//! [`snapshot::open_backend`]: crate::snapshot::open_backend

use std::fs;
use std::path::{Path, PathBuf};

use storage_api::{Backend, Bucket, StorageError};

use crate::engine::EngineKind;
use crate::error::StartError;
use crate::snapshot::{self, DataPaths};

/// The consistent index a restored backend is given: the bootstrap snapshot's index, so that
/// every entry of the new cluster's log (from index 2) is applied.
pub const RESTORED_INDEX: u64 = 1;
/// The term of [`RESTORED_INDEX`].
pub const RESTORED_TERM: u64 = 1;

/// Key/values buffered before they are written in one batch.
const BATCH: usize = 10_000;

/// Whether the entries of bucket `name` are left out of a restore, and why: the member list
/// and removed ids belong to the old cluster (the new one saves its own on first start, as
/// etcd's restore does), and alarms name old members (and etcd encodes their keys
/// differently). The buckets themselves are still created, empty.
pub fn dropped_bucket(name: &str) -> Option<&'static str> {
    match name {
        "members" | "members_removed" => Some("the old cluster's membership"),
        "alarm" => Some("alarms of the old cluster's members"),
        _ => None,
    }
}

/// Why a restore failed. The partly written data dir is left for the caller to remove.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The target data dir exists (etcd refuses to restore over one too).
    #[error("data-dir {0:?} exists")]
    DataDirExists(PathBuf),
    /// Creating the data dir failed.
    #[error("creating the data dir {path:?}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The backend could not be opened.
    #[error(transparent)]
    Open(#[from] StartError),
    /// A bucket name the engines cannot store.
    #[error("invalid bucket name {0:?}")]
    InvalidBucketName(String),
    /// Writing the backend failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What a restore wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreSummary {
    /// Key/values written.
    pub keys: u64,
    /// Key/values left out (see [`dropped_bucket`]).
    pub dropped: u64,
    /// The buckets created, in the order they came.
    pub buckets: Vec<String>,
}

/// Writes a snapshot's buckets into a new data dir's backend. Feed it with
/// [`Restorer::bucket`] and [`Restorer::put`], then call [`Restorer::finish`].
pub struct Restorer {
    backend: Backend,
    pending: Vec<(Bucket, Vec<u8>, Vec<u8>)>,
    summary: RestoreSummary,
    current: Option<(Bucket, bool)>,
}

impl std::fmt::Debug for Restorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restorer")
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

impl Restorer {
    /// Creates `data_dir` (which must not exist) and its backend on `engine`.
    pub fn create(data_dir: &Path, engine: EngineKind) -> Result<Restorer, RestoreError> {
        if data_dir.exists() {
            return Err(RestoreError::DataDirExists(data_dir.to_owned()));
        }
        fs::create_dir_all(data_dir).map_err(|source| RestoreError::CreateDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let backend = snapshot::open_backend(&DataPaths::new(data_dir), engine)?;
        Ok(Restorer {
            backend,
            pending: Vec::new(),
            summary: RestoreSummary::default(),
            current: None,
        })
    }

    /// Starts bucket `name` (created even when it stays empty); [`Restorer::put`] writes into
    /// it.
    pub fn bucket(&mut self, name: &[u8]) -> Result<(), RestoreError> {
        let name = std::str::from_utf8(name)
            .map_err(|_| RestoreError::InvalidBucketName(String::from_utf8_lossy(name).into()))?;
        let bucket =
            Bucket::intern(name).map_err(|_| RestoreError::InvalidBucketName(name.to_owned()))?;
        let dropped = dropped_bucket(name);
        if let Some(why) = dropped {
            tracing::info!(bucket = name, why, "leaving out the bucket's entries");
        }
        self.flush()?;
        let mut tx = self.backend.batch_tx()?;
        tx.create_bucket(bucket)?;
        tx.end()?;
        self.summary.buckets.push(name.to_owned());
        self.current = Some((bucket, dropped.is_some()));
        Ok(())
    }

    /// Writes one key/value into the current bucket (or counts it as dropped).
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), RestoreError> {
        let Some((bucket, dropped)) = self.current else {
            return Err(RestoreError::InvalidBucketName("<none started>".into()));
        };
        if dropped {
            self.summary.dropped += 1;
            return Ok(());
        }
        self.pending.push((bucket, key.to_vec(), value.to_vec()));
        self.summary.keys += 1;
        if self.pending.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), RestoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut tx = self.backend.batch_tx()?;
        for (bucket, k, v) in self.pending.drain(..) {
            tx.put(bucket, &k, &v)?;
        }
        tx.end()?;
        Ok(())
    }

    /// Writes what is buffered, resets the consistent index to [`RESTORED_INDEX`] /
    /// [`RESTORED_TERM`] (8-byte big-endian, etcd's encoding), commits durably and closes the
    /// backend.
    pub fn finish(mut self) -> Result<RestoreSummary, RestoreError> {
        self.flush()?;
        let mut tx = self.backend.batch_tx()?;
        tx.create_bucket(Bucket::META)?;
        tx.put(
            Bucket::META,
            b"consistent_index",
            &RESTORED_INDEX.to_be_bytes(),
        )?;
        tx.put(Bucket::META, b"term", &RESTORED_TERM.to_be_bytes())?;
        tx.end()?;
        self.backend.force_commit()?;
        self.backend.close()?;
        Ok(self.summary)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use storage_api::ReadTx;

    use super::*;

    #[test]
    fn restores_buckets_drops_membership_and_resets_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("d.ferrocd");
        let kind = EngineKind::compiled()[0];
        let mut r = Restorer::create(&data, kind).unwrap();
        r.bucket(b"key").unwrap();
        r.put(b"k1", b"v1").unwrap();
        r.bucket(b"members").unwrap();
        r.put(b"1", b"{}").unwrap();
        r.bucket(b"meta").unwrap();
        r.put(b"consistent_index", &99u64.to_be_bytes()).unwrap();
        let summary = r.finish().unwrap();
        assert_eq!(summary.keys, 2);
        assert_eq!(summary.dropped, 1);

        let backend = snapshot::open_backend(&DataPaths::new(&data), kind).unwrap();
        let tx = backend.read_tx().unwrap();
        assert_eq!(tx.get(Bucket::KEY, b"k1").unwrap(), Some(b"v1".to_vec()));
        assert!(tx.buckets().any(|b| b == Bucket::MEMBERS));
        assert_eq!(tx.get(Bucket::MEMBERS, b"1").unwrap(), None);
        assert_eq!(
            tx.get(Bucket::META, b"consistent_index").unwrap(),
            Some(1u64.to_be_bytes().to_vec())
        );
    }

    #[test]
    fn an_existing_data_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = Restorer::create(dir.path(), EngineKind::compiled()[0]).unwrap_err();
        assert!(matches!(err, RestoreError::DataDirExists(_)), "{err}");
    }
}
