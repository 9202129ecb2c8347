//! The WAL on real files: what is saved comes back, a crash's torn tail is cut off, and any
//! other damage stops the open with an error naming the file and offset.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};

use node::wal::{SnapshotMarker, Wal, WalError, WalMetadata};
use raft_core::raftpb::{Entry, EntryType, HardState};

const META: WalMetadata = WalMetadata {
    member_id: 0x8e9e05c52164694d,
    cluster_id: 0xcdf818194e3a8c32,
};

fn entry(term: u64, index: u64, data: &[u8]) -> Entry {
    Entry::new(term, index, EntryType::Normal, data.to_vec())
}

fn entries(term: u64, range: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    range
        .map(|i| entry(term, i, format!("put k{i}").as_bytes()))
        .collect()
}

fn hs(term: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote: 1,
        commit,
    }
}

fn only_segment(dir: &Path) -> PathBuf {
    let mut segments = node::wal::segment::list(dir).unwrap();
    assert_eq!(segments.len(), 1);
    segments.remove(0).1
}

#[test]
fn saved_entries_and_hard_state_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(dir.path(), META).unwrap();
    wal.save(&hs(1, 0), &entries(1, 1..=3)).unwrap();
    wal.save(&hs(1, 3), &[]).unwrap();
    wal.save(&hs(1, 3), &entries(1, 4..=5)).unwrap();
    drop(wal);

    let (wal, state) = Wal::open(dir.path(), SnapshotMarker::default()).unwrap();
    assert_eq!(state.metadata, META);
    assert_eq!(state.hard_state, hs(1, 3));
    assert_eq!(state.entries, entries(1, 1..=5));
    assert_eq!(wal.last_index(), 5);
    assert!(matches!(
        Wal::create(dir.path(), META),
        Err(WalError::AlreadyExists(_))
    ));
}

#[test]
fn appending_after_reopen_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(dir.path(), META).unwrap();
    wal.save(&hs(1, 1), &entries(1, 1..=2)).unwrap();
    drop(wal);
    let (mut wal, _) = Wal::open(dir.path(), SnapshotMarker::default()).unwrap();
    wal.save(&hs(1, 2), &entries(1, 3..=4)).unwrap();
    drop(wal);
    let (_, state) = Wal::open(dir.path(), SnapshotMarker::default()).unwrap();
    assert_eq!(state.entries, entries(1, 1..=4));
    assert_eq!(state.hard_state, hs(1, 2));
}

#[test]
fn a_new_leaders_entries_replace_the_conflicting_suffix() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(dir.path(), META).unwrap();
    wal.save(&hs(1, 2), &entries(1, 1..=5)).unwrap();
    wal.save(&hs(2, 2), &entries(2, 3..=4)).unwrap();
    drop(wal);
    let (_, state) = Wal::open(dir.path(), SnapshotMarker::default()).unwrap();
    let mut want = entries(1, 1..=2);
    want.extend(entries(2, 3..=4));
    assert_eq!(state.entries, want);
}

/// A crash during the last save: its second sector never reached the disk. The member restarts
/// with everything synced before, and the torn save (never acknowledged) is gone.
#[test]
fn a_torn_last_write_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(dir.path(), META).unwrap();
    wal.save(&hs(1, 1), &entries(1, 1..=2)).unwrap();
    drop(wal);
    let path = only_segment(dir.path());
    let synced_len = written_len(&path);
    let (mut wal, _) = Wal::open(dir.path(), SnapshotMarker::default()).unwrap();
    wal.save(&hs(1, 2), &[entry(1, 3, &[7u8; 2000])]).unwrap();
    drop(wal);
    // Zero one whole sector inside the new record, as an unwritten page would be.
    let mut data = std::fs::read(&path).unwrap();
    let sector = (synced_len / 512 + 2) * 512;
    data[sector..sector + 512].fill(0);
    std::fs::write(&path, &data).unwrap();

    let (mut wal, state) = Wal::open(dir.path(), SnapshotMarker::default()).unwrap();
    assert_eq!(state.entries, entries(1, 1..=2));
    assert_eq!(state.hard_state, hs(1, 1));
    // The log goes on from there, and what follows survives a reopen.
    wal.save(&hs(2, 3), &entries(2, 3..=3)).unwrap();
    drop(wal);
    let (_, state) = Wal::open(dir.path(), SnapshotMarker::default()).unwrap();
    let mut want = entries(1, 1..=2);
    want.extend(entries(2, 3..=3));
    assert_eq!(state.entries, want);
}

/// Where the written records end: the offset of the first all-zero run to the end of the file.
fn written_len(path: &Path) -> usize {
    let data = std::fs::read(path).unwrap();
    data.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1)
}

#[test]
fn a_flipped_byte_in_the_middle_refuses_to_open_and_names_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(dir.path(), META).unwrap();
    for i in 1..=10 {
        wal.save(&hs(1, i - 1), &entries(1, i..=i)).unwrap();
    }
    drop(wal);
    let path = only_segment(dir.path());
    let mut data = std::fs::read(&path).unwrap();
    let middle = written_len(&path) / 2;
    data[middle] ^= 0x10;
    std::fs::write(&path, &data).unwrap();

    match Wal::open(dir.path(), SnapshotMarker::default()) {
        Err(WalError::Corrupted {
            path: bad, offset, ..
        }) => {
            assert_eq!(bad, path);
            assert!(offset as usize <= middle, "offset {offset} after the flip");
        }
        Err(e) => panic!("expected corruption, got {e}"),
        Ok(_) => panic!("a corrupted WAL opened"),
    }
    // Nothing was "repaired": the file is as damaged as before.
    assert_eq!(std::fs::read(&path).unwrap(), data);
}

#[test]
fn snapshots_bound_what_is_read_and_release_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(dir.path(), META).unwrap();
    wal.set_segment_bytes(1 << 20);
    // 64 KiB entries: a 1 MiB segment fills after about 15 of them.
    let big = vec![0xabu8; 64 << 10];
    let count = 16 + 8;
    for i in 1..=count {
        wal.save(&hs(1, i - 1), &[entry(1, i, &big)]).unwrap();
    }
    assert_eq!(wal.segment_paths().count(), 2, "the log was cut once");
    let marker = SnapshotMarker {
        index: count - 2,
        term: 1,
    };
    wal.save_snapshot(marker).unwrap();
    wal.release_to(marker.index).unwrap();
    assert_eq!(
        wal.segment_paths().count(),
        1,
        "the first segment is released"
    );
    drop(wal);

    let (_, state) = Wal::open(dir.path(), marker).unwrap();
    let indexes: Vec<u64> = state.entries.iter().map(|e| e.index).collect();
    assert_eq!(indexes, vec![count - 1, count]);
    assert_eq!(state.metadata, META);
    assert_eq!(state.hard_state, hs(1, count - 1));

    // A snapshot the log never recorded is an error, not an empty log.
    let unknown = SnapshotMarker {
        index: count - 1,
        term: 1,
    };
    assert!(matches!(
        Wal::open(dir.path(), unknown),
        Err(WalError::SnapshotNotFound(m)) if m == unknown
    ));
    // Reading from the beginning is impossible once the beginning is released.
    assert!(Wal::open(dir.path(), SnapshotMarker::default()).is_err());
}

#[test]
fn a_missing_wal_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    assert!(!Wal::exists(dir.path()));
    assert!(matches!(
        Wal::open(dir.path(), SnapshotMarker::default()),
        Err(WalError::NotFound(_))
    ));
}

#[test]
fn metadata_is_read_from_the_newest_segment_head() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(dir.path(), META).unwrap();
    wal.set_segment_bytes(4096);
    for i in 0..20 {
        wal.save(&hs(1, i * 10), &entries(1, i * 10 + 1..=i * 10 + 10))
            .unwrap();
    }
    assert!(node::wal::segment::list(dir.path()).unwrap().len() > 1);
    drop(wal);
    assert_eq!(Wal::read_metadata(dir.path()).unwrap(), META);

    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        Wal::read_metadata(empty.path()),
        Err(WalError::NotFound(_))
    ));
}

#[test]
fn metadata_of_a_damaged_segment_head_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    drop(Wal::create(dir.path(), META).unwrap());
    let seg = only_segment(dir.path());
    let mut data = std::fs::read(&seg).unwrap();
    data[20] ^= 0xff;
    std::fs::write(&seg, &data).unwrap();
    assert!(matches!(
        Wal::read_metadata(dir.path()),
        Err(WalError::Corrupted { .. })
    ));
}
