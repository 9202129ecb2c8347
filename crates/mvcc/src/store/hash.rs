//! Hashes for detecting diverging replicas (etcd's `HashByRev` and `Hash`).

use storage_api::{Bucket, ReadTx, StorageError};

use super::KvStore;
use super::meta::{CONSISTENT_INDEX, TERM};
use crate::error::{MvccError, Result};
use crate::{Revision, RevisionKey};

/// The hash of the store's history up to a revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyValueHash {
    /// CRC-32C (Castagnoli) of `key`, then of each hashed revision key and value.
    pub hash: u32,
    /// The store's compaction revision when hashed.
    pub compact_revision: i64,
    /// The revision hashed up to.
    pub revision: i64,
    /// The store's current revision when hashed.
    pub current_revision: i64,
}

impl KvStore {
    /// Hashes the `key` bucket's revisions `<= rev` (`0`: the current revision), skipping those
    /// at or below the compaction revision that a compaction at `rev` would not keep, so the
    /// hash does not depend on how far a compaction got (etcd's `HashByRev`).
    pub fn hash_by_rev(&self, rev: i64) -> Result<KeyValueHash> {
        let inner = &self.inner;
        inner.check_open()?;
        let (tx, keep, revs, rev) = {
            let _gate = inner.compact_gate.read();
            let revs = inner.revs();
            if rev > 0 && rev < revs.compact {
                return Err(MvccError::Compacted {
                    requested: rev,
                    compacted: revs.compact,
                });
            }
            if rev > revs.current {
                return Err(MvccError::FutureRev {
                    requested: rev,
                    current: revs.current,
                });
            }
            let rev = if rev <= 0 { revs.current } else { rev };
            let keep = inner.index.keep(rev);
            (inner.backend.read_tx()?, keep, revs, rev)
        };
        let upper = Revision::new(rev.saturating_add(1), 0);
        let lower = Revision::new(revs.compact.saturating_add(1), 0);
        let mut crc = crc32c::crc32c_append(0, Bucket::KEY.name().as_bytes());
        tx.for_each(Bucket::KEY, &mut |k, v| {
            let kr = RevisionKey::from_bytes(k)
                .map_err(|e| StorageError::Corrupted(e.to_string()))?
                .revision;
            if kr >= upper {
                return Ok(());
            }
            // Skip revisions a compaction deletes (or already deleted); keep everything when
            // nothing is kept (etcd's behaviour).
            if kr < lower && !keep.is_empty() && !keep.contains(&kr) {
                return Ok(());
            }
            crc = crc32c::crc32c_append(crc, k);
            crc = crc32c::crc32c_append(crc, v);
            Ok(())
        })?;
        Ok(KeyValueHash {
            hash: crc,
            compact_revision: revs.compact,
            revision: rev,
            current_revision: revs.current,
        })
    }

    /// Commits the backend and hashes all of it except the consistent index and term, which
    /// differ between replicas (etcd's `Hash`); returns the hash and the current revision.
    pub fn hash(&self) -> Result<(u32, i64)> {
        self.inner.check_open()?;
        let rev = self.rev();
        let backend = &self.inner.backend;
        backend.force_commit()?;
        let hash = backend.hash(&|bucket, key| {
            bucket == Bucket::META && (key == CONSISTENT_INDEX || key == TERM)
        })?;
        Ok((hash, rev))
    }
}
