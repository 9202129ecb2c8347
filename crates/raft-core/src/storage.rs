//! Read access to the stable log, and an in-memory implementation of it.
//!
//! Raft reads persisted entries and state through [`Storage`]; the application writes them (as
//! instructed by Raft) through its own means. [`MemStorage`] keeps everything in memory, for
//! tests and for applications that persist elsewhere.

use crate::raftpb::{ConfState, Entry, HardState, Snapshot, limit_size};

/// Why the storage could not answer. The messages are etcd's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The requested index precedes the last snapshot.
    #[error("requested index is unavailable due to compaction")]
    Compacted,
    /// The requested snapshot index is not newer than the existing snapshot.
    #[error("requested index is older than the existing snapshot")]
    SnapOutOfDate,
    /// The requested entries are not (yet) in the storage.
    #[error("requested entry at index is unavailable")]
    Unavailable,
    /// The snapshot is being prepared; ask again later.
    #[error("snapshot is temporarily unavailable")]
    SnapshotTemporarilyUnavailable,
}

/// The stable part of a node's log and state, as Raft reads it.
///
/// Any error other than [`StorageError::Compacted`], [`StorageError::Unavailable`] or
/// [`StorageError::SnapshotTemporarilyUnavailable`] where documented makes the Raft node
/// inoperable.
pub trait Storage {
    /// The persisted hard state (empty if none) and the configuration.
    fn initial_state(&self) -> Result<(HardState, ConfState), StorageError>;

    /// The entries in `[lo, hi)`, as many as fit in `max_size` bytes of encoded size but at
    /// least one. [`StorageError::Compacted`] if `lo` was compacted away,
    /// [`StorageError::Unavailable`] if entries are missing.
    fn entries(&self, lo: u64, hi: u64, max_size: u64) -> Result<Vec<Entry>, StorageError>;

    /// The term of entry `index`, for `index` in `[first_index() - 1, last_index()]` (the term
    /// of the entry before the first one is kept for matching).
    fn term(&self, index: u64) -> Result<u64, StorageError>;

    /// The index of the last entry.
    fn last_index(&self) -> Result<u64, StorageError>;

    /// The index of the first entry available through [`entries`](Self::entries); older ones
    /// are in the snapshot.
    fn first_index(&self) -> Result<u64, StorageError>;

    /// The most recent snapshot.
    fn snapshot(&self) -> Result<Snapshot, StorageError>;
}

/// A [`Storage`] in memory.
///
/// The log is kept behind a dummy entry holding the index and term of the last compacted (or
/// snapshotted) entry, so that the term before the first entry is always known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemStorage {
    hard_state: HardState,
    snapshot: Snapshot,
    /// `entries[i]` is at log index `entries[0].index + i`; `entries[0]` is the dummy.
    entries: Vec<Entry>,
}

impl Default for MemStorage {
    fn default() -> Self {
        Self::new()
    }
}

impl MemStorage {
    /// An empty storage: no entries, empty hard state and snapshot.
    pub fn new() -> Self {
        MemStorage {
            hard_state: HardState::default(),
            snapshot: Snapshot::default(),
            entries: vec![Entry::default()],
        }
    }

    /// The dummy entry; the vector is never empty.
    fn dummy(&self) -> &Entry {
        &self.entries[0]
    }

    fn offset(&self) -> u64 {
        self.dummy().index
    }

    fn last(&self) -> u64 {
        self.offset() + self.entries.len() as u64 - 1
    }

    /// The hard state last set (what the embedder persisted).
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// Saves the hard state.
    pub fn set_hard_state(&mut self, hard_state: HardState) {
        self.hard_state = hard_state;
    }

    /// Replaces the whole contents with `snapshot`: the log restarts right after it.
    /// [`StorageError::SnapOutOfDate`] if it is not newer than the current snapshot (a
    /// bootstrap snapshot at index 0 may always be replaced).
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) -> Result<(), StorageError> {
        let current = self.snapshot.metadata.index;
        if current != 0 && current >= snapshot.metadata.index {
            return Err(StorageError::SnapOutOfDate);
        }
        self.entries = vec![Entry {
            term: snapshot.metadata.term,
            index: snapshot.metadata.index,
            ..Entry::default()
        }];
        self.snapshot = snapshot;
        Ok(())
    }

    /// Makes a snapshot at `index` with the application's `data` (and, if it changed since the
    /// last snapshot, the configuration `conf_state`), and returns it.
    /// [`StorageError::SnapOutOfDate`] if `index` is not above the current snapshot.
    ///
    /// # Panics
    ///
    /// If `index` is beyond the last entry: the application cannot have applied it.
    pub fn create_snapshot(
        &mut self,
        index: u64,
        conf_state: Option<ConfState>,
        data: Vec<u8>,
    ) -> Result<Snapshot, StorageError> {
        if index <= self.snapshot.metadata.index {
            return Err(StorageError::SnapOutOfDate);
        }
        let last = self.last();
        assert!(
            index <= last,
            "snapshot {index} is out of bound lastindex({last})"
        );
        self.snapshot.metadata.index = index;
        self.snapshot.metadata.term = self.entries[(index - self.offset()) as usize].term;
        if let Some(conf_state) = conf_state {
            self.snapshot.metadata.conf_state = conf_state;
        }
        self.snapshot.data = data;
        Ok(self.snapshot.clone())
    }

    /// Discards the entries up to `compact_index` (which becomes the dummy entry).
    /// [`StorageError::Compacted`] if they already are.
    ///
    /// # Panics
    ///
    /// If `compact_index` is beyond the last entry: the application cannot have applied it.
    pub fn compact(&mut self, compact_index: u64) -> Result<(), StorageError> {
        let offset = self.offset();
        if compact_index <= offset {
            return Err(StorageError::Compacted);
        }
        let last = self.last();
        assert!(
            compact_index <= last,
            "compact {compact_index} is out of bound lastindex({last})"
        );
        let i = (compact_index - offset) as usize;
        self.entries.drain(..i);
        self.entries[0].data = Vec::new();
        self.entries[0].entry_type = Default::default();
        Ok(())
    }

    /// Appends `entries`, which must be consecutive; entries at or after their first index are
    /// replaced, entries already compacted away are skipped.
    ///
    /// # Panics
    ///
    /// If the entries would leave a gap after the last entry.
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first_new) = entries.first() else {
            return;
        };
        let first = self.offset() + 1;
        let last_new = first_new.index + entries.len() as u64 - 1;
        if last_new < first {
            // Everything is already compacted.
            return;
        }
        let entries = if first > first_new.index {
            &entries[(first - first_new.index) as usize..]
        } else {
            entries
        };
        let offset = entries[0].index - self.offset();
        let len = self.entries.len() as u64;
        assert!(
            offset <= len,
            "missing log entry [last: {}, append at: {}]",
            self.last(),
            entries[0].index
        );
        self.entries.truncate(offset as usize);
        self.entries.extend_from_slice(entries);
    }
}

impl Storage for MemStorage {
    fn initial_state(&self) -> Result<(HardState, ConfState), StorageError> {
        Ok((self.hard_state, self.snapshot.metadata.conf_state.clone()))
    }

    /// # Panics
    ///
    /// If `hi` is beyond the last entry + 1.
    fn entries(&self, lo: u64, hi: u64, max_size: u64) -> Result<Vec<Entry>, StorageError> {
        let offset = self.offset();
        if lo <= offset {
            return Err(StorageError::Compacted);
        }
        let last = self.last();
        assert!(
            hi <= last + 1,
            "entries' hi({hi}) is out of bound lastindex({last})"
        );
        if self.entries.len() == 1 {
            // Only the dummy entry.
            return Err(StorageError::Unavailable);
        }
        let range = &self.entries[(lo - offset) as usize..(hi - offset) as usize];
        Ok(limit_size(range, max_size).to_vec())
    }

    fn term(&self, index: u64) -> Result<u64, StorageError> {
        let offset = self.offset();
        if index < offset {
            return Err(StorageError::Compacted);
        }
        self.entries
            .get((index - offset) as usize)
            .map(|e| e.term)
            .ok_or(StorageError::Unavailable)
    }

    fn last_index(&self) -> Result<u64, StorageError> {
        Ok(self.last())
    }

    fn first_index(&self) -> Result<u64, StorageError> {
        Ok(self.offset() + 1)
    }

    fn snapshot(&self) -> Result<Snapshot, StorageError> {
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raftpb::{EntryType, SnapshotMetadata};

    fn entry(index: u64, term: u64) -> Entry {
        Entry::new(term, index, EntryType::Normal, Vec::new())
    }

    /// A storage whose dummy entry is (3, 3), holding entries 4 and 5 (terms 4 and 5).
    fn storage_3_to_5() -> MemStorage {
        let mut s = MemStorage::new();
        s.entries = vec![entry(3, 3), entry(4, 4), entry(5, 5)];
        s
    }

    #[test]
    fn term_covers_the_dummy_entry() {
        let s = storage_3_to_5();
        assert_eq!(s.term(2), Err(StorageError::Compacted));
        assert_eq!(s.term(3), Ok(3));
        assert_eq!(s.term(4), Ok(4));
        assert_eq!(s.term(5), Ok(5));
        assert_eq!(s.term(6), Err(StorageError::Unavailable));
    }

    #[test]
    fn entries_in_range_and_size_limited() {
        let mut s = MemStorage::new();
        s.entries = (3..=6).map(|i| entry(i, i)).collect();
        assert_eq!(s.entries(2, 6, u64::MAX), Err(StorageError::Compacted));
        assert_eq!(s.entries(3, 4, u64::MAX), Err(StorageError::Compacted));
        assert_eq!(s.entries(4, 5, u64::MAX), Ok(vec![entry(4, 4)]));
        assert_eq!(
            s.entries(4, 6, u64::MAX),
            Ok(vec![entry(4, 4), entry(5, 5)])
        );
        assert_eq!(
            s.entries(4, 7, u64::MAX),
            Ok(vec![entry(4, 4), entry(5, 5), entry(6, 6)])
        );
        // Each of these entries encodes to 6 bytes: the limit cuts after whole entries, but
        // always returns one.
        assert_eq!(s.entries(4, 7, 0), Ok(vec![entry(4, 4)]));
        assert_eq!(s.entries(4, 7, 11), Ok(vec![entry(4, 4)]));
        assert_eq!(s.entries(4, 7, 12), Ok(vec![entry(4, 4), entry(5, 5)]));
        assert_eq!(s.entries(4, 7, 18).map(|e| e.len()), Ok(3));
        // Only the dummy entry: nothing is available.
        let empty = MemStorage::new();
        assert_eq!(
            empty.entries(1, 1, u64::MAX),
            Err(StorageError::Unavailable)
        );
    }

    #[test]
    #[should_panic(expected = "entries' hi(7) is out of bound lastindex(5)")]
    fn entries_beyond_the_log_is_a_bug() {
        let _ = storage_3_to_5().entries(4, 7, u64::MAX);
    }

    #[test]
    fn first_and_last_index() {
        let mut s = storage_3_to_5();
        assert_eq!((s.first_index(), s.last_index()), (Ok(4), Ok(5)));
        assert_eq!(s.compact(4), Ok(()));
        assert_eq!((s.first_index(), s.last_index()), (Ok(5), Ok(5)));
    }

    #[test]
    fn compact_keeps_the_term_of_the_new_dummy() {
        for (index, want, want_index, want_term, want_len) in [
            (2, Err(StorageError::Compacted), 3, 3, 3),
            (3, Err(StorageError::Compacted), 3, 3, 3),
            (4, Ok(()), 4, 4, 2),
            (5, Ok(()), 5, 5, 1),
        ] {
            let mut s = storage_3_to_5();
            assert_eq!(s.compact(index), want, "compact({index})");
            assert_eq!(s.entries[0].index, want_index, "compact({index})");
            assert_eq!(s.entries[0].term, want_term, "compact({index})");
            assert_eq!(s.entries.len(), want_len, "compact({index})");
        }
    }

    #[test]
    fn create_snapshot_records_index_term_and_conf_state() {
        let cs = ConfState {
            voters: vec![1, 2, 3],
            ..ConfState::default()
        };
        for (index, term) in [(4, 4), (5, 5)] {
            let mut s = storage_3_to_5();
            let snap = s.create_snapshot(index, Some(cs.clone()), b"data".to_vec());
            let want = Snapshot {
                data: b"data".to_vec(),
                metadata: SnapshotMetadata {
                    conf_state: cs.clone(),
                    index,
                    term,
                },
            };
            assert_eq!(snap, Ok(want.clone()));
            assert_eq!(s.snapshot(), Ok(want));
            assert_eq!(
                s.create_snapshot(index, None, Vec::new()),
                Err(StorageError::SnapOutOfDate)
            );
        }
    }

    #[test]
    fn append_overwrites_and_skips_compacted_entries() {
        let cases: Vec<(Vec<Entry>, Vec<Entry>)> = vec![
            // Same entries: nothing changes.
            (
                vec![entry(4, 4), entry(5, 5)],
                vec![entry(3, 3), entry(4, 4), entry(5, 5)],
            ),
            // A conflicting suffix is replaced, and the log grows.
            (
                vec![entry(4, 6), entry(5, 6)],
                vec![entry(3, 3), entry(4, 6), entry(5, 6)],
            ),
            (
                vec![entry(4, 4), entry(5, 5), entry(6, 5)],
                vec![entry(3, 3), entry(4, 4), entry(5, 5), entry(6, 5)],
            ),
            // Entries already compacted are skipped.
            (
                vec![entry(2, 3), entry(3, 3), entry(4, 5)],
                vec![entry(3, 3), entry(4, 5)],
            ),
            // Overwriting in the middle truncates the rest.
            (
                vec![entry(5, 5)],
                vec![entry(3, 3), entry(4, 4), entry(5, 5)],
            ),
            (
                vec![entry(5, 6)],
                vec![entry(3, 3), entry(4, 4), entry(5, 6)],
            ),
            // Directly after the last entry.
            (
                vec![entry(6, 5)],
                vec![entry(3, 3), entry(4, 4), entry(5, 5), entry(6, 5)],
            ),
            // Everything compacted: nothing changes.
            (
                vec![entry(1, 1), entry(2, 2)],
                vec![entry(3, 3), entry(4, 4), entry(5, 5)],
            ),
        ];
        for (append, want) in cases {
            let mut s = storage_3_to_5();
            s.append(&append);
            assert_eq!(s.entries, want, "append {append:?}");
        }
    }

    #[test]
    #[should_panic(expected = "missing log entry [last: 5, append at: 7]")]
    fn appending_with_a_gap_is_a_bug() {
        storage_3_to_5().append(&[entry(7, 5)]);
    }

    #[test]
    fn apply_snapshot_resets_the_log() {
        let snap = |index, term| Snapshot {
            data: Vec::new(),
            metadata: SnapshotMetadata {
                conf_state: ConfState {
                    voters: vec![1, 2, 3],
                    ..ConfState::default()
                },
                index,
                term,
            },
        };
        let mut s = MemStorage::new();
        assert_eq!(s.apply_snapshot(snap(4, 4)), Ok(()));
        assert_eq!(
            (s.first_index(), s.last_index(), s.term(4)),
            (Ok(5), Ok(4), Ok(4))
        );
        assert_eq!(
            s.apply_snapshot(snap(3, 3)),
            Err(StorageError::SnapOutOfDate)
        );
        assert_eq!(
            s.apply_snapshot(snap(4, 4)),
            Err(StorageError::SnapOutOfDate)
        );
        let (hs, cs) = s.initial_state().unwrap_or_default();
        assert!(hs.is_empty());
        assert_eq!(cs.voters, vec![1, 2, 3]);
        s.set_hard_state(HardState {
            term: 4,
            vote: 1,
            commit: 4,
        });
        assert_eq!(s.initial_state().map(|(hs, _)| hs.vote), Ok(1));
    }
}
