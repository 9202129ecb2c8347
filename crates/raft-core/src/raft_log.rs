//! The Raft log: stable entries in [`Storage`] followed by the [`Unstable`] tail.

use std::fmt;

use crate::log_unstable::Unstable;
use crate::logger::SharedLogger;
use crate::raftpb::{Entry, Snapshot, limit_size};
use crate::storage::{Storage, StorageError};

/// No size limit.
pub const NO_LIMIT: u64 = u64::MAX;

/// A node's log, with its commit and apply positions.
///
/// Invariants: `applied <= applying <= committed`, and `committed <= last_index()`.
pub struct RaftLog<S: Storage> {
    /// The stable entries since the last snapshot.
    pub storage: S,
    /// The entries (and snapshot) not yet stable.
    pub unstable: Unstable,
    /// The highest index known to be stable on a quorum.
    pub committed: u64,
    /// The highest index handed to the application to apply.
    pub applying: u64,
    /// The highest index the application has applied.
    pub applied: u64,
    logger: SharedLogger,
    /// The limit on the encoded size of entries handed out for application but not yet
    /// acknowledged as applied.
    pub max_applying_ents_size: u64,
    applying_ents_size: u64,
    applying_ents_paused: bool,
}

impl<S: Storage> fmt::Display for RaftLog<S> {
    /// etcd's summary of the log positions.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "committed={}, applied={}, applying={}, unstable.offset={}, unstable.offsetInProgress={}, len(unstable.Entries)={}",
            self.committed,
            self.applied,
            self.applying,
            self.unstable.offset,
            self.unstable.offset_in_progress,
            self.unstable.entries.len()
        )
    }
}

impl<S: Storage> RaftLog<S> {
    /// A log over `storage`, committed and applied up to the storage's first index - 1 (the last
    /// compacted entry).
    ///
    /// # Panics
    ///
    /// If the storage cannot report its indexes.
    pub fn new(storage: S, logger: SharedLogger, max_applying_ents_size: u64) -> Self {
        let first_index = match storage.first_index() {
            Ok(i) => i,
            Err(e) => logger.fatal(format_args!("{e}")),
        };
        let last_index = match storage.last_index() {
            Ok(i) => i,
            Err(e) => logger.fatal(format_args!("{e}")),
        };
        RaftLog {
            storage,
            unstable: Unstable::new(last_index + 1, logger.clone()),
            committed: first_index - 1,
            applying: first_index - 1,
            applied: first_index - 1,
            logger,
            max_applying_ents_size,
            applying_ents_size: 0,
            applying_ents_paused: false,
        }
    }

    /// Appends `entries` following `(prev_index, prev_term)` if the log matches there, and
    /// commits up to `committed` (bounded by the last new entry). Returns the index of the last
    /// new entry, or `None` if the log does not match.
    pub fn maybe_append(
        &mut self,
        prev_index: u64,
        prev_term: u64,
        committed: u64,
        entries: &[Entry],
    ) -> Option<u64> {
        let last_new = prev_index + entries.len() as u64;
        if let Some(k) = self.append_start(prev_index, prev_term, entries)? {
            self.append(&entries[k..]);
        }
        self.commit_to(committed.min(last_new));
        Some(last_new)
    }

    /// Like [`maybe_append`](Self::maybe_append), but moves the owned `entries` into the log
    /// instead of copying them.
    pub fn maybe_append_owned(
        &mut self,
        prev_index: u64,
        prev_term: u64,
        committed: u64,
        mut entries: Vec<Entry>,
    ) -> Option<u64> {
        let last_new = prev_index + entries.len() as u64;
        if let Some(k) = self.append_start(prev_index, prev_term, &entries)? {
            entries.drain(..k);
            self.append_owned(entries);
        }
        self.commit_to(committed.min(last_new));
        Some(last_new)
    }

    /// The matching and conflict check of [`maybe_append`](Self::maybe_append): `None` if the
    /// log does not match at `(prev_index, prev_term)`, else the position in `entries` of the
    /// first one to append (`Some(None)`: the log already holds them all).
    fn append_start(
        &self,
        prev_index: u64,
        prev_term: u64,
        entries: &[Entry],
    ) -> Option<Option<usize>> {
        if !self.match_term(prev_index, prev_term) {
            return None;
        }
        let ci = self.find_conflict(entries);
        if ci == 0 {
            return Some(None);
        }
        if ci <= self.committed {
            self.logger.fatal(format_args!(
                "entry {ci} conflict with committed entry [committed({})]",
                self.committed
            ));
        }
        let offset = prev_index + 1;
        if ci - offset > entries.len() as u64 {
            self.logger.fatal(format_args!(
                "index, {}, is out of range [{}]",
                ci - offset,
                entries.len()
            ));
        }
        Some(Some((ci - offset) as usize))
    }

    /// Appends `entries` (truncating what they overwrite) and returns the new last index.
    pub fn append(&mut self, entries: &[Entry]) -> u64 {
        let Some(first) = entries.first() else {
            return self.last_index();
        };
        self.check_append_after(first.index - 1);
        self.unstable.truncate_and_append(entries);
        self.last_index()
    }

    /// Like [`append`](Self::append), but moves the owned `entries` into the log instead of
    /// copying them.
    pub fn append_owned(&mut self, entries: Vec<Entry>) -> u64 {
        let Some(first) = entries.first() else {
            return self.last_index();
        };
        self.check_append_after(first.index - 1);
        self.unstable.truncate_and_append_owned(entries);
        self.last_index()
    }

    fn check_append_after(&self, after: u64) {
        if after < self.committed {
            self.logger.fatal(format_args!(
                "after({after}) is out of range [committed({})]",
                self.committed
            ));
        }
    }

    /// The index of the first entry of `entries` that is new or conflicts with the log, or 0 if
    /// the log already holds them all.
    pub fn find_conflict(&self, entries: &[Entry]) -> u64 {
        for e in entries {
            if !self.match_term(e.index, e.term) {
                if e.index <= self.last_index() {
                    self.logger.info(format_args!(
                        "found conflict at index {} [existing term: {}, conflicting term: {}]",
                        e.index,
                        self.term(e.index).unwrap_or(0),
                        e.term
                    ));
                }
                return e.index;
            }
        }
        0
    }

    /// The best guess of where this log stops matching another log of which only entry
    /// `(index, term)` is known: the largest index `<= index` whose term is `<= term` (or
    /// unknown), with its term (0 if unknown).
    pub fn find_conflict_by_term(&self, mut index: u64, term: u64) -> (u64, u64) {
        while index > 0 {
            match self.term(index) {
                Err(_) => return (index, 0),
                Ok(our) if our <= term => return (index, our),
                Ok(_) => index -= 1,
            }
        }
        (0, 0)
    }

    /// The unstable entries not yet handed out for writing.
    pub fn next_unstable_ents(&self) -> &[Entry] {
        self.unstable.next_entries()
    }

    /// Whether there are unstable entries to hand out for writing.
    pub fn has_next_unstable_ents(&self) -> bool {
        !self.next_unstable_ents().is_empty()
    }

    /// Whether there are unstable entries, handed out or not.
    pub fn has_next_or_in_progress_unstable_ents(&self) -> bool {
        !self.unstable.entries.is_empty()
    }

    /// The committed entries to hand out for application (within the applying size budget).
    /// With `allow_unstable`, entries not yet stable locally may be included.
    ///
    /// # Panics
    ///
    /// If the entries cannot be read.
    pub fn next_committed_ents(&self, allow_unstable: bool) -> Vec<Entry> {
        if self.applying_ents_paused || self.has_next_or_in_progress_snapshot() {
            return Vec::new();
        }
        let (lo, hi) = (
            self.applying + 1,
            self.max_appliable_index(allow_unstable) + 1,
        );
        if lo >= hi {
            return Vec::new();
        }
        let max_size = self.max_applying_ents_size - self.applying_ents_size;
        if max_size == 0 {
            self.logger.fatal(format_args!(
                "applying entry size ({}-{})={max_size} not positive",
                self.max_applying_ents_size, self.applying_ents_size
            ));
        }
        match self.slice(lo, hi, max_size) {
            Ok(ents) => ents,
            Err(e) => self.logger.fatal(format_args!(
                "unexpected error when getting unapplied entries ({e})"
            )),
        }
    }

    /// Whether [`next_committed_ents`](Self::next_committed_ents) would return anything.
    pub fn has_next_committed_ents(&self, allow_unstable: bool) -> bool {
        if self.applying_ents_paused || self.has_next_or_in_progress_snapshot() {
            return false;
        }
        self.applying + 1 < self.max_appliable_index(allow_unstable) + 1
    }

    /// The highest committed index that may be applied.
    pub fn max_appliable_index(&self, allow_unstable: bool) -> u64 {
        if allow_unstable {
            self.committed
        } else {
            self.committed.min(self.unstable.offset - 1)
        }
    }

    /// The unstable snapshot, if not yet handed out for writing.
    pub fn next_unstable_snapshot(&self) -> Option<&Snapshot> {
        self.unstable.next_snapshot()
    }

    /// Whether there is an unstable snapshot to hand out.
    pub fn has_next_unstable_snapshot(&self) -> bool {
        self.unstable.next_snapshot().is_some()
    }

    /// Whether there is an unstable snapshot, handed out or not.
    pub fn has_next_or_in_progress_snapshot(&self) -> bool {
        self.unstable.snapshot.is_some()
    }

    /// The most recent snapshot: the unstable one, else the storage's.
    pub fn snapshot(&self) -> Result<Snapshot, StorageError> {
        match &self.unstable.snapshot {
            Some(s) => Ok(s.clone()),
            None => self.storage.snapshot(),
        }
    }

    /// The index of the first entry available.
    ///
    /// # Panics
    ///
    /// If the storage fails.
    pub fn first_index(&self) -> u64 {
        if let Some(i) = self.unstable.maybe_first_index() {
            return i;
        }
        match self.storage.first_index() {
            Ok(i) => i,
            Err(e) => self.logger.fatal(format_args!("{e}")),
        }
    }

    /// The index of the last entry.
    ///
    /// # Panics
    ///
    /// If the storage fails.
    pub fn last_index(&self) -> u64 {
        if let Some(i) = self.unstable.maybe_last_index() {
            return i;
        }
        match self.storage.last_index() {
            Ok(i) => i,
            Err(e) => self.logger.fatal(format_args!("{e}")),
        }
    }

    /// Raises the commit index to `to_commit` (never lowers it).
    ///
    /// # Panics
    ///
    /// If `to_commit` is beyond the last index.
    pub fn commit_to(&mut self, to_commit: u64) {
        if self.committed < to_commit {
            let last = self.last_index();
            if last < to_commit {
                self.logger.fatal(format_args!(
                    "tocommit({to_commit}) is out of range [lastIndex({last})]. Was the raft log corrupted, truncated, or lost?"
                ));
            }
            self.committed = to_commit;
        }
    }

    /// The application applied up to `i`, entries of `size` bytes having been acknowledged.
    ///
    /// # Panics
    ///
    /// If `i` is outside `[applied, committed]`.
    pub fn applied_to(&mut self, i: u64, size: u64) {
        if self.committed < i || i < self.applied {
            self.logger.fatal(format_args!(
                "applied({i}) is out of range [prevApplied({}), committed({})]",
                self.applied, self.committed
            ));
        }
        self.applied = i;
        self.applying = self.applying.max(i);
        self.applying_ents_size = self.applying_ents_size.saturating_sub(size);
        self.applying_ents_paused = self.applying_ents_size >= self.max_applying_ents_size;
    }

    /// Entries up to `i` of total encoded `size` were handed out for application.
    ///
    /// # Panics
    ///
    /// If `i` is beyond the commit index.
    pub fn accept_applying(&mut self, i: u64, size: u64, allow_unstable: bool) {
        if self.committed < i {
            self.logger.fatal(format_args!(
                "applying({i}) is out of range [prevApplying({}), committed({})]",
                self.applying, self.committed
            ));
        }
        self.applying = i;
        self.applying_ents_size = self.applying_ents_size.saturating_add(size);
        // Pause if the budget is used up, or if the size limit cut the entries short.
        self.applying_ents_paused = self.applying_ents_size >= self.max_applying_ents_size
            || i < self.max_appliable_index(allow_unstable);
    }

    /// The entries up to `(index, term)` are stable.
    pub fn stable_to(&mut self, index: u64, term: u64) {
        self.unstable.stable_to(index, term);
    }

    /// The snapshot at `index` is stable.
    pub fn stable_snap_to(&mut self, index: u64) {
        self.unstable.stable_snap_to(index);
    }

    /// The unstable entries and snapshot were handed out for writing.
    pub fn accept_unstable(&mut self) {
        self.unstable.accept_in_progress();
    }

    /// The term of the last entry.
    ///
    /// # Panics
    ///
    /// If it is unknown (a broken log).
    pub fn last_term(&self) -> u64 {
        let last = self.last_index();
        match self.term(last) {
            Ok(t) => t,
            Err(e) => self.logger.fatal(format_args!(
                "unexpected error when getting the last term ({e})"
            )),
        }
    }

    /// The term of entry `i`, for `i` in `[first_index() - 1, last_index()]`.
    ///
    /// # Panics
    ///
    /// On storage errors other than compaction or unavailability.
    pub fn term(&self, i: u64) -> Result<u64, StorageError> {
        if let Some(t) = self.unstable.maybe_term(i) {
            return Ok(t);
        }
        if i + 1 < self.first_index() {
            return Err(StorageError::Compacted);
        }
        if i > self.last_index() {
            return Err(StorageError::Unavailable);
        }
        match self.storage.term(i) {
            Ok(t) => Ok(t),
            Err(e @ (StorageError::Compacted | StorageError::Unavailable)) => Err(e),
            Err(e) => self.logger.fatal(format_args!("{e}")),
        }
    }

    /// The entries from `i` to the end, limited to `max_size` bytes (but at least one).
    pub fn entries(&self, i: u64, max_size: u64) -> Result<Vec<Entry>, StorageError> {
        let last = self.last_index();
        if i > last {
            return Ok(Vec::new());
        }
        self.slice(i, last + 1, max_size)
    }

    /// Every entry of the log.
    ///
    /// # Panics
    ///
    /// If the entries cannot be read.
    pub fn all_entries(&self) -> Vec<Entry> {
        match self.entries(self.first_index(), NO_LIMIT) {
            Ok(ents) => ents,
            Err(e) => self.logger.fatal(format_args!("{e}")),
        }
    }

    /// Whether a log ending at `(last_index, term)` is at least as up-to-date as this one.
    pub fn is_up_to_date(&self, last_index: u64, term: u64) -> bool {
        let our_term = self.last_term();
        term > our_term || (term == our_term && last_index >= self.last_index())
    }

    /// Whether entry `i` has term `term`.
    pub fn match_term(&self, i: u64, term: u64) -> bool {
        self.term(i).is_ok_and(|t| t == term)
    }

    /// Commits up to `max_index` if that entry is from `term` (the leader's current term).
    pub fn maybe_commit(&mut self, max_index: u64, term: u64) -> bool {
        if max_index > self.committed && term != 0 && self.term(max_index).unwrap_or(0) == term {
            self.commit_to(max_index);
            return true;
        }
        false
    }

    /// Replaces the log with `snapshot`, committing up to it.
    pub fn restore(&mut self, snapshot: Snapshot) {
        self.logger.info(format_args!(
            "log [{self}] starts to restore snapshot [index: {}, term: {}]",
            snapshot.metadata.index, snapshot.metadata.term
        ));
        self.committed = snapshot.metadata.index;
        self.unstable.restore(snapshot);
    }

    /// The entries in `[lo, hi)`, limited to `max_size` bytes (but at least one).
    /// [`StorageError::Compacted`] if `lo` was compacted away.
    ///
    /// # Panics
    ///
    /// If the range is invalid or beyond the log.
    pub fn slice(&self, lo: u64, hi: u64, max_size: u64) -> Result<Vec<Entry>, StorageError> {
        self.must_check_out_of_bounds(lo, hi)?;
        if lo == hi {
            return Ok(Vec::new());
        }
        let mut ents = Vec::new();
        let offset = self.unstable.offset;
        if lo < offset {
            let stable_hi = hi.min(offset);
            let stored = match self.storage.entries(lo, stable_hi, max_size) {
                Ok(e) => e,
                Err(StorageError::Compacted) => return Err(StorageError::Compacted),
                Err(StorageError::Unavailable) => self.logger.fatal(format_args!(
                    "entries[{lo}:{stable_hi}) is unavailable from storage"
                )),
                Err(e) => self.logger.fatal(format_args!("{e}")),
            };
            // The size limit was reached within the stable entries.
            if (stored.len() as u64) < stable_hi - lo {
                return Ok(stored);
            }
            ents = stored;
        }
        if hi > offset {
            // Size-limit the borrowed unstable entries before copying them: the limit applies to
            // the stable entries and the unstable ones together (keeping at least one entry).
            let unstable = self.unstable.slice(lo.max(offset), hi);
            let mut size = 0u64;
            for (i, e) in ents.iter().enumerate() {
                size = size.saturating_add(e.encoded_size());
                if i > 0 && size > max_size {
                    ents.truncate(i);
                    return Ok(ents);
                }
            }
            let mut take = unstable.len();
            for (i, e) in unstable.iter().enumerate() {
                size = size.saturating_add(e.encoded_size());
                if (i > 0 || !ents.is_empty()) && size > max_size {
                    take = i;
                    break;
                }
            }
            ents.reserve_exact(take);
            ents.extend_from_slice(&unstable[..take]);
            return Ok(ents);
        }
        let n = limit_size(&ents, max_size).len();
        ents.truncate(n);
        Ok(ents)
    }

    fn must_check_out_of_bounds(&self, lo: u64, hi: u64) -> Result<(), StorageError> {
        if lo > hi {
            self.logger.fatal(format_args!("invalid slice {lo} > {hi}"));
        }
        let fi = self.first_index();
        if lo < fi {
            return Err(StorageError::Compacted);
        }
        let last = self.last_index();
        if hi > last + 1 {
            self.logger
                .fatal(format_args!("slice[{lo},{hi}) out of bound [{fi},{last}]"));
        }
        Ok(())
    }

    /// Calls `f` on the entries in `[lo, hi)`, in pages of at most `page_size` bytes, until it
    /// returns false.
    pub fn scan(
        &self,
        mut lo: u64,
        hi: u64,
        page_size: u64,
        mut f: impl FnMut(&[Entry]) -> bool,
    ) -> Result<(), StorageError> {
        while lo < hi {
            let ents = self.slice(lo, hi, page_size)?;
            if ents.is_empty() {
                break;
            }
            lo += ents.len() as u64;
            if !f(&ents) {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::raftpb::{EntryType, SnapshotMetadata};
    use crate::storage::MemStorage;

    fn ent(index: u64, term: u64) -> Entry {
        Entry::new(term, index, EntryType::Normal, Vec::new())
    }

    fn ents(terms: &[(u64, u64)]) -> Vec<Entry> {
        terms.iter().map(|&(i, t)| ent(i, t)).collect()
    }

    fn log_with(stable: &[Entry]) -> RaftLog<MemStorage> {
        let mut s = MemStorage::new();
        s.append(stable);
        RaftLog::new(s, crate::logger::default_logger(), NO_LIMIT)
    }

    #[test]
    fn find_conflict_cases() {
        let prev = ents(&[(1, 1), (2, 2), (3, 3)]);
        let cases: Vec<(Vec<Entry>, u64)> = vec![
            (vec![], 0),
            (ents(&[(1, 1), (2, 2), (3, 3)]), 0),
            (ents(&[(2, 2), (3, 3)]), 0),
            (ents(&[(3, 3)]), 0),
            (ents(&[(1, 1), (2, 2), (3, 3), (4, 4), (5, 4)]), 4),
            (ents(&[(3, 3), (4, 4), (5, 4)]), 4),
            (ents(&[(4, 4), (5, 4)]), 4),
            (ents(&[(1, 4), (2, 4)]), 1),
            (ents(&[(2, 1), (3, 4), (4, 4)]), 2),
            (ents(&[(3, 1), (4, 2), (5, 4), (6, 4)]), 3),
        ];
        for (input, want) in cases {
            let mut l = log_with(&[]);
            l.append(&prev);
            assert_eq!(l.find_conflict(&input), want, "{input:?}");
        }
    }

    #[test]
    fn find_conflict_by_term_cases() {
        // Log terms 2 2 5 5 5 at indexes 1..=5 after a snapshot at (0, 0) or compacted.
        let l = {
            let mut l = log_with(&[]);
            l.append(&ents(&[(1, 2), (2, 2), (3, 5), (4, 5), (5, 5)]));
            l
        };
        assert_eq!(l.find_conflict_by_term(5, 5), (5, 5));
        assert_eq!(l.find_conflict_by_term(5, 4), (2, 2));
        assert_eq!(l.find_conflict_by_term(5, 1), (0, 0));
        assert_eq!(l.find_conflict_by_term(2, 5), (2, 2));
        // Beyond the log: unknown term, so the index itself.
        assert_eq!(l.find_conflict_by_term(7, 1), (7, 0));
        // Compacted prefix: unknown terms are assumed to match.
        let mut s = MemStorage::new();
        s.apply_snapshot(Snapshot {
            data: Vec::new(),
            metadata: SnapshotMetadata {
                index: 10,
                term: 3,
                ..Default::default()
            },
        })
        .unwrap();
        s.append(&ents(&[(11, 3), (12, 4)]));
        let l = RaftLog::new(s, crate::logger::default_logger(), NO_LIMIT);
        assert_eq!(l.find_conflict_by_term(12, 2), (9, 0));
        assert_eq!(l.find_conflict_by_term(12, 3), (11, 3));
    }

    #[test]
    fn maybe_append_and_commit() {
        let mut l = log_with(&ents(&[(1, 1), (2, 2), (3, 3)]));
        l.committed = 1;
        // Mismatching prev term.
        assert_eq!(l.maybe_append(3, 2, 3, &[ent(4, 4)]), None);
        // Prev beyond the log.
        assert_eq!(l.maybe_append(4, 4, 3, &[ent(5, 4)]), None);
        // Matching, commit bounded by the last new index.
        assert_eq!(l.maybe_append(3, 3, 10, &[ent(4, 4)]), Some(4));
        assert_eq!(l.committed, 4);
        // Conflict replaces the tail.
        let mut l = log_with(&ents(&[(1, 1), (2, 2), (3, 3)]));
        assert_eq!(l.maybe_append(1, 1, 0, &[ent(2, 4)]), Some(2));
        assert_eq!(l.last_index(), 2);
        assert_eq!(l.term(2), Ok(4));
    }

    #[test]
    #[should_panic(expected = "conflict with committed entry")]
    fn conflict_with_committed_entry_panics() {
        let mut l = log_with(&ents(&[(1, 1), (2, 2), (3, 3)]));
        l.committed = 3;
        let _ = l.maybe_append(1, 1, 3, &[ent(2, 4)]);
    }

    #[test]
    fn unstable_and_committed_entries() {
        let mut l = log_with(&ents(&[(1, 1), (2, 1)]));
        l.append(&ents(&[(3, 1), (4, 1)]));
        assert_eq!(l.next_unstable_ents().len(), 2);
        l.commit_to(4);
        // Unstable entries can be applied only when allowed.
        assert_eq!(l.next_committed_ents(true).len(), 4);
        assert_eq!(l.next_committed_ents(false).len(), 2);
        l.accept_unstable();
        assert!(!l.has_next_unstable_ents());
        assert!(l.has_next_or_in_progress_unstable_ents());
        l.accept_applying(2, 0, false);
        assert_eq!(l.next_committed_ents(true), ents(&[(3, 1), (4, 1)]));
        l.stable_to(4, 1);
        assert!(!l.has_next_or_in_progress_unstable_ents());
        assert!(l.has_next_committed_ents(false));
        l.applied_to(4, 0);
        assert_eq!(l.applying, 4);
        assert!(!l.has_next_committed_ents(true));
    }

    #[test]
    fn applying_size_budget_pauses_application() {
        let mut s = MemStorage::new();
        let big: Vec<Entry> = (1..=4)
            .map(|i| Entry::new(1, i, EntryType::Normal, vec![0; 100]))
            .collect();
        s.append(&big);
        let size = big[0].encoded_size();
        let mut l = RaftLog::new(s, crate::logger::default_logger(), size * 2);
        l.commit_to(4);
        let first = l.next_committed_ents(true);
        assert_eq!(first.len(), 2);
        l.accept_applying(2, size * 2, true);
        assert!(l.next_committed_ents(true).is_empty());
        l.applied_to(1, size);
        assert_eq!(l.next_committed_ents(true).len(), 1);
    }

    /// The size limit applies to the stable and unstable entries together, as `limit_size`
    /// over the whole range does.
    #[test]
    fn slice_limits_across_stable_and_unstable() {
        let sized = |i: u64| Entry::new(1, i, EntryType::Normal, vec![0; (i as usize * 7) % 23]);
        let all: Vec<Entry> = (1..=8).map(sized).collect();
        let mut l = log_with(&all[..4]);
        l.append_owned(all[4..].to_vec());
        let total: u64 = all.iter().map(Entry::encoded_size).sum();
        for lo in 1..=8u64 {
            for hi in lo..=9u64 {
                for max_size in (0..=total + 1).chain([NO_LIMIT]) {
                    let want = limit_size(&all[(lo - 1) as usize..(hi - 1) as usize], max_size);
                    assert_eq!(
                        l.slice(lo, hi, max_size).unwrap(),
                        want,
                        "[{lo},{hi}) {max_size}"
                    );
                }
            }
        }
    }

    #[test]
    fn maybe_append_owned_matches_borrowed() {
        // (prev_index, prev_term, committed, entries) against a log of terms 1, 2, 3.
        let cases: Vec<(u64, u64, u64, Vec<Entry>)> = vec![
            (3, 3, 3, ents(&[(4, 3), (5, 3)])),
            (1, 1, 2, ents(&[(2, 2), (3, 4), (4, 4)])),
            (2, 2, 3, ents(&[(3, 3)])),
            (2, 2, 3, vec![]),
            (3, 2, 3, ents(&[(4, 4)])),
        ];
        for (pi, pt, c, es) in cases {
            let mut a = log_with(&ents(&[(1, 1), (2, 2)]));
            a.append(&ents(&[(3, 3)]));
            let mut b = log_with(&ents(&[(1, 1), (2, 2)]));
            b.append_owned(ents(&[(3, 3)]));
            assert_eq!(
                a.maybe_append(pi, pt, c, &es),
                b.maybe_append_owned(pi, pt, c, es)
            );
            assert_eq!(a.all_entries(), b.all_entries());
            assert_eq!(
                (
                    a.committed,
                    a.unstable.offset,
                    a.unstable.offset_in_progress
                ),
                (
                    b.committed,
                    b.unstable.offset,
                    b.unstable.offset_in_progress
                )
            );
        }
    }

    #[test]
    fn slice_and_term_bounds() {
        let mut s = MemStorage::new();
        s.apply_snapshot(Snapshot {
            data: Vec::new(),
            metadata: SnapshotMetadata {
                index: 3,
                term: 1,
                ..Default::default()
            },
        })
        .unwrap();
        s.append(&ents(&[(4, 1), (5, 2)]));
        let mut l = RaftLog::new(s, crate::logger::default_logger(), NO_LIMIT);
        l.append(&ents(&[(6, 2), (7, 3)]));
        assert_eq!(l.first_index(), 4);
        assert_eq!(l.last_index(), 7);
        assert_eq!(l.term(3), Ok(1));
        assert_eq!(l.term(2), Err(StorageError::Compacted));
        assert_eq!(l.term(8), Err(StorageError::Unavailable));
        assert_eq!(l.slice(3, 5, NO_LIMIT), Err(StorageError::Compacted));
        assert_eq!(l.slice(4, 8, NO_LIMIT).unwrap().len(), 4);
        assert_eq!(l.slice(5, 7, NO_LIMIT).unwrap(), ents(&[(5, 2), (6, 2)]));
        assert_eq!(l.slice(4, 8, 0).unwrap().len(), 1);
        assert!(l.is_up_to_date(7, 3));
        assert!(!l.is_up_to_date(6, 3));
        assert!(l.is_up_to_date(1, 4));
        assert!(!l.is_up_to_date(100, 2));
        assert!(!l.maybe_commit(6, 3));
        assert!(l.maybe_commit(7, 3));
        assert_eq!(l.committed, 7);
    }
}
