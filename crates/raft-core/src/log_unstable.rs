//! The part of the log not yet known to be in stable storage.

use crate::logger::SharedLogger;
use crate::raftpb::{Entry, Snapshot};

/// Entries (and possibly a snapshot) that have not been written to storage yet, or whose write
/// is in progress.
///
/// `entries[i]` is at log index `offset + i`. Entries before `offset_in_progress` (and the
/// snapshot, if `snapshot_in_progress`) have been handed to the application for writing; the
/// rest are still to be handed out. `offset` may be below the last stable index: the next
/// write then truncates the stable log.
#[derive(Clone)]
pub struct Unstable {
    /// The incoming snapshot, if any.
    pub snapshot: Option<Snapshot>,
    /// The entries not yet stable.
    pub entries: Vec<Entry>,
    /// The index of `entries[0]`.
    pub offset: u64,
    /// Whether the snapshot is being written.
    pub snapshot_in_progress: bool,
    /// Entries below this index are being written. `offset <= offset_in_progress`.
    pub offset_in_progress: u64,
    logger: SharedLogger,
}

impl std::fmt::Debug for Unstable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unstable")
            .field("snapshot", &self.snapshot)
            .field("entries", &self.entries)
            .field("offset", &self.offset)
            .field("snapshot_in_progress", &self.snapshot_in_progress)
            .field("offset_in_progress", &self.offset_in_progress)
            .finish()
    }
}

impl Unstable {
    /// An empty unstable log starting at `offset`.
    pub fn new(offset: u64, logger: SharedLogger) -> Self {
        Unstable {
            snapshot: None,
            entries: Vec::new(),
            offset,
            snapshot_in_progress: false,
            offset_in_progress: offset,
            logger,
        }
    }

    /// The index of the first entry, if the snapshot defines it.
    pub fn maybe_first_index(&self) -> Option<u64> {
        self.snapshot.as_ref().map(|s| s.metadata.index + 1)
    }

    /// The last index, if there are unstable entries or a snapshot.
    pub fn maybe_last_index(&self) -> Option<u64> {
        if !self.entries.is_empty() {
            return Some(self.offset + self.entries.len() as u64 - 1);
        }
        self.snapshot.as_ref().map(|s| s.metadata.index)
    }

    /// The term of entry `i`, if it is known here.
    pub fn maybe_term(&self, i: u64) -> Option<u64> {
        if i < self.offset {
            return self
                .snapshot
                .as_ref()
                .filter(|s| s.metadata.index == i)
                .map(|s| s.metadata.term);
        }
        let last = self.maybe_last_index()?;
        if i > last {
            return None;
        }
        self.entries.get((i - self.offset) as usize).map(|e| e.term)
    }

    /// The entries not yet handed out for writing.
    pub fn next_entries(&self) -> &[Entry] {
        let in_progress = (self.offset_in_progress - self.offset) as usize;
        self.entries.get(in_progress..).unwrap_or_default()
    }

    /// The snapshot, if it is not yet handed out for writing.
    pub fn next_snapshot(&self) -> Option<&Snapshot> {
        if self.snapshot_in_progress {
            return None;
        }
        self.snapshot.as_ref()
    }

    /// Marks everything currently here as handed out for writing.
    pub fn accept_in_progress(&mut self) {
        if let Some(last) = self.entries.last() {
            self.offset_in_progress = last.index + 1;
        }
        if self.snapshot.is_some() {
            self.snapshot_in_progress = true;
        }
    }

    /// The entries up to `(index, term)` were written: drops them, unless the entry there was
    /// replaced in the meantime.
    pub fn stable_to(&mut self, index: u64, term: u64) {
        let Some(gt) = self.maybe_term(index) else {
            self.logger.info(format_args!(
                "entry at index {index} missing from unstable log; ignoring"
            ));
            return;
        };
        if index < self.offset {
            self.logger.info(format_args!(
                "entry at index {index} matched unstable snapshot; ignoring"
            ));
            return;
        }
        if gt != term {
            self.logger.info(format_args!(
                "entry at (index,term)=({index},{term}) mismatched with entry at ({index},{gt}) in unstable log; ignoring"
            ));
            return;
        }
        let num = (index + 1 - self.offset) as usize;
        self.entries.drain(..num);
        self.offset = index + 1;
        self.offset_in_progress = self.offset_in_progress.max(self.offset);
    }

    /// The snapshot at index `i` was written: drops it.
    pub fn stable_snap_to(&mut self, i: u64) {
        if self
            .snapshot
            .as_ref()
            .is_some_and(|s| s.metadata.index == i)
        {
            self.snapshot = None;
            self.snapshot_in_progress = false;
        }
    }

    /// Replaces everything with `snapshot`.
    pub fn restore(&mut self, snapshot: Snapshot) {
        self.offset = snapshot.metadata.index + 1;
        self.offset_in_progress = self.offset;
        self.entries.clear();
        self.snapshot = Some(snapshot);
        self.snapshot_in_progress = false;
    }

    /// Appends `ents`, first truncating whatever they overwrite.
    pub fn truncate_and_append(&mut self, ents: &[Entry]) {
        let Some(first) = ents.first() else {
            return;
        };
        self.truncate_from(first.index);
        self.entries.extend_from_slice(ents);
    }

    /// Like [`truncate_and_append`](Self::truncate_and_append), but moves the owned `ents` in
    /// instead of copying them.
    pub fn truncate_and_append_owned(&mut self, mut ents: Vec<Entry>) {
        let Some(first) = ents.first() else {
            return;
        };
        self.truncate_from(first.index);
        if self.entries.is_empty() && self.entries.capacity() < ents.len() {
            // Take over the incoming buffer rather than growing ours.
            self.entries = ents;
        } else {
            self.entries.append(&mut ents);
        }
    }

    /// Makes index `from` the next to append at: drops the entries at and after it (or all of
    /// them, moving the offset, if `from` is at or before the offset).
    fn truncate_from(&mut self, from: u64) {
        if from == self.offset + self.entries.len() as u64 {
            // Directly after the last entry: nothing to truncate.
        } else if from <= self.offset {
            self.logger.info(format_args!(
                "replace the unstable entries from index {from}"
            ));
            self.entries.clear();
            self.offset = from;
            self.offset_in_progress = self.offset;
        } else {
            self.logger.info(format_args!(
                "truncate the unstable entries before index {from}"
            ));
            self.must_check_out_of_bounds(self.offset, from);
            self.entries.truncate((from - self.offset) as usize);
            self.offset_in_progress = self.offset_in_progress.min(from);
        }
    }

    /// The entries in `[lo, hi)`, which must all be here.
    pub fn slice(&self, lo: u64, hi: u64) -> &[Entry] {
        self.must_check_out_of_bounds(lo, hi);
        &self.entries[(lo - self.offset) as usize..(hi - self.offset) as usize]
    }

    fn must_check_out_of_bounds(&self, lo: u64, hi: u64) {
        if lo > hi {
            self.logger
                .fatal(format_args!("invalid unstable.slice {lo} > {hi}"));
        }
        let upper = self.offset + self.entries.len() as u64;
        if lo < self.offset || hi > upper {
            self.logger.fatal(format_args!(
                "unstable.slice[{lo},{hi}) out of bound [{},{upper}]",
                self.offset
            ));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::raftpb::{EntryType, SnapshotMetadata};

    fn ent(index: u64, term: u64) -> Entry {
        Entry::new(term, index, EntryType::Normal, Vec::new())
    }

    fn snap(index: u64, term: u64) -> Snapshot {
        Snapshot {
            data: Vec::new(),
            metadata: SnapshotMetadata {
                index,
                term,
                ..Default::default()
            },
        }
    }

    fn unstable(entries: Vec<Entry>, offset: u64, snapshot: Option<Snapshot>) -> Unstable {
        let mut u = Unstable::new(offset, crate::logger::default_logger());
        u.entries = entries;
        u.snapshot = snapshot;
        u
    }

    #[test]
    fn first_last_and_term() {
        let u = unstable(vec![ent(5, 1)], 5, None);
        assert_eq!(u.maybe_first_index(), None);
        assert_eq!(u.maybe_last_index(), Some(5));
        assert_eq!(u.maybe_term(5), Some(1));
        assert_eq!(u.maybe_term(6), None);
        assert_eq!(u.maybe_term(4), None);
        let u = unstable(vec![ent(5, 1)], 5, Some(snap(4, 1)));
        assert_eq!(u.maybe_first_index(), Some(5));
        assert_eq!(u.maybe_term(4), Some(1));
        assert_eq!(u.maybe_term(3), None);
        let u = unstable(vec![], 5, Some(snap(4, 2)));
        assert_eq!(u.maybe_last_index(), Some(4));
        assert_eq!(u.maybe_term(4), Some(2));
        let u = unstable(vec![], 0, None);
        assert_eq!(u.maybe_last_index(), None);
    }

    #[test]
    fn in_progress_tracking() {
        let mut u = unstable(vec![ent(5, 1), ent(6, 1)], 5, Some(snap(4, 1)));
        assert_eq!(u.next_entries().len(), 2);
        assert!(u.next_snapshot().is_some());
        u.accept_in_progress();
        assert!(u.next_entries().is_empty());
        assert!(u.next_snapshot().is_none());
        assert_eq!(u.offset_in_progress, 7);
        u.truncate_and_append(&[ent(6, 2), ent(7, 2)]);
        assert_eq!(u.offset_in_progress, 6);
        assert_eq!(u.next_entries(), &[ent(6, 2), ent(7, 2)]);
    }

    #[test]
    fn stable_to_ignores_replaced_entries() {
        let mut u = unstable(vec![ent(5, 1), ent(6, 1)], 5, None);
        u.stable_to(5, 2); // term mismatch
        assert_eq!(u.offset, 5);
        u.stable_to(5, 1);
        assert_eq!(u.offset, 6);
        assert_eq!(u.entries, vec![ent(6, 1)]);
        u.stable_to(9, 1); // missing
        assert_eq!(u.offset, 6);
        let mut u = unstable(vec![], 5, Some(snap(4, 1)));
        u.stable_to(4, 1); // snapshot
        assert_eq!(u.offset, 5);
        u.stable_snap_to(4);
        assert!(u.snapshot.is_none());
    }

    #[test]
    fn truncate_and_append_cases() {
        // Append directly after.
        let mut u = unstable(vec![ent(5, 1)], 5, None);
        u.truncate_and_append(&[ent(6, 1), ent(7, 1)]);
        assert_eq!((u.offset, u.entries.len()), (5, 3));
        // Replace from before the offset.
        let mut u = unstable(vec![ent(5, 1)], 5, None);
        u.truncate_and_append(&[ent(4, 2), ent(5, 2)]);
        assert_eq!(
            (u.offset, u.entries.clone()),
            (4, vec![ent(4, 2), ent(5, 2)])
        );
        // Truncate in the middle.
        let mut u = unstable(vec![ent(5, 1), ent(6, 1), ent(7, 1)], 5, None);
        u.truncate_and_append(&[ent(6, 2)]);
        assert_eq!(u.entries, vec![ent(5, 1), ent(6, 2)]);
        assert_eq!(u.slice(5, 7), &[ent(5, 1), ent(6, 2)]);
    }

    #[test]
    fn truncate_and_append_owned_matches_borrowed() {
        type Case = (Vec<Entry>, Vec<Entry>);
        let cases: Vec<Case> = vec![
            (vec![], vec![ent(5, 1), ent(6, 1)]),
            (vec![ent(5, 1)], vec![ent(6, 1), ent(7, 1)]),
            (vec![ent(5, 1)], vec![ent(4, 2), ent(5, 2)]),
            (vec![ent(5, 1), ent(6, 1), ent(7, 1)], vec![ent(6, 2)]),
            (vec![ent(5, 1)], vec![]),
        ];
        for (have, add) in cases {
            let mut a = unstable(have.clone(), 5, None);
            a.offset_in_progress = 5 + have.len() as u64;
            let mut b = a.clone();
            a.truncate_and_append(&add);
            b.truncate_and_append_owned(add);
            assert_eq!(
                (a.entries, a.offset, a.offset_in_progress),
                (b.entries, b.offset, b.offset_in_progress)
            );
        }
    }

    #[test]
    fn restore_resets() {
        let mut u = unstable(vec![ent(5, 1)], 5, Some(snap(4, 1)));
        u.accept_in_progress();
        u.restore(snap(6, 2));
        assert_eq!(u.offset, 7);
        assert_eq!(u.offset_in_progress, 7);
        assert!(u.entries.is_empty());
        assert!(!u.snapshot_in_progress);
    }
}
