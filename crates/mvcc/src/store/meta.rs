//! The store's records in the `meta` bucket and their encodings (as etcd writes them).

use crate::Revision;
use crate::error::{MvccError, Result};

/// The raft applied index of the last write transaction (8-byte big-endian).
pub(crate) const CONSISTENT_INDEX: &[u8] = b"consistent_index";
/// The raft term of that index (8-byte big-endian).
pub(crate) const TERM: &[u8] = b"term";
/// The revision of the last compaction asked for (an encoded revision `{rev, 0}`).
pub(crate) const SCHEDULED_COMPACT: &[u8] = b"scheduledCompactRev";
/// The revision of the last compaction that finished deleting (an encoded revision).
pub(crate) const FINISHED_COMPACT: &[u8] = b"finishedCompactRev";

/// The raft position the store's data reflects, stored with the data of each write transaction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConsistentIndex {
    /// The raft log index last applied.
    pub index: u64,
    /// Its term.
    pub term: u64,
}

/// A compaction mark: the revision `{rev, 0}` in its 17-byte form.
pub(crate) fn encode_compact_rev(rev: i64) -> [u8; crate::revision::REVISION_LEN] {
    Revision::new(rev, 0).to_bytes()
}

/// The main revision of a compaction mark.
pub(crate) fn decode_compact_rev(bytes: &[u8]) -> Result<i64> {
    let head: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| MvccError::Corrupted(format!("compaction mark of {} bytes", bytes.len())))?;
    Ok(i64::from_be_bytes(head))
}

/// An 8-byte big-endian number of the meta bucket.
pub(crate) fn decode_u64(name: &[u8], bytes: &[u8]) -> Result<u64> {
    let b: [u8; 8] = bytes.try_into().map_err(|_| {
        MvccError::Corrupted(format!(
            "meta {} holds {} bytes, not 8",
            String::from_utf8_lossy(name),
            bytes.len()
        ))
    })?;
    Ok(u64::from_be_bytes(b))
}
