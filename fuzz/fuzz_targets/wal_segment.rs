//! A WAL segment file, raw or built from records and then damaged, opened through
//! `Wal::read_metadata` and `Wal::open`: an error or a replay, never a panic or a hang.

#![no_main]

use arbitrary::Arbitrary;
use ferrocd_fuzz::{Damage, damage};
use libfuzzer_sys::fuzz_target;
use node::wal::segment::SegmentName;
use node::wal::{SnapshotMarker, Wal, WalMetadata, WalRecord, encode_record};
use raft_core::raftpb::{Entry, EntryType, HardState};

#[derive(Arbitrary, Debug)]
enum Rec {
    Seed(u32),
    Metadata(u64, u64),
    Entry {
        term: u64,
        index: u8,
        kind: u8,
        data: Vec<u8>,
    },
    HardState(u64, u64, u64),
    Snapshot(u8, u64),
    Raw {
        kind: u8,
        payload: Vec<u8>,
    },
}

#[derive(Arbitrary, Debug)]
enum Input {
    /// The segment's bytes as they are.
    Raw(Vec<u8>),
    /// A well-formed chain of records (CRCs right), then damaged.
    Built {
        seed: u32,
        records: Vec<Rec>,
        damages: Vec<Damage>,
        snapshot: (u8, u64),
    },
}

fn entry_type(k: u8) -> EntryType {
    match k % 3 {
        0 => EntryType::Normal,
        1 => EntryType::ConfChange,
        _ => EntryType::ConfChangeV2,
    }
}

fuzz_target!(|input: Input| {
    let (bytes, snapshot, expect_metadata) = match input {
        Input::Raw(bytes) => (bytes, SnapshotMarker::default(), None),
        Input::Built {
            seed,
            records,
            damages,
            snapshot,
        } => {
            let mut out = Vec::new();
            let mut crc = seed;
            for rec in &records {
                let (kind, payload) = match rec {
                    Rec::Raw { kind, payload } => (*kind, payload.clone()),
                    other => {
                        let record = match other {
                            Rec::Seed(s) => WalRecord::Seed(*s),
                            Rec::Metadata(m, c) => WalRecord::Metadata(WalMetadata {
                                member_id: *m,
                                cluster_id: *c,
                            }),
                            Rec::Entry {
                                term,
                                index,
                                kind,
                                data,
                            } => WalRecord::Entry(Entry::new(
                                *term,
                                u64::from(*index),
                                entry_type(*kind),
                                data.clone(),
                            )),
                            Rec::HardState(term, vote, commit) => WalRecord::HardState(HardState {
                                term: *term,
                                vote: *vote,
                                commit: *commit,
                            }),
                            Rec::Snapshot(index, term) => WalRecord::Snapshot(SnapshotMarker {
                                index: u64::from(*index),
                                term: *term,
                            }),
                            Rec::Raw { .. } => unreachable!(),
                        };
                        let mut payload = Vec::new();
                        record.encode_payload(&mut payload);
                        (record.kind(), payload)
                    }
                };
                crc = encode_record(&mut out, crc, kind, &payload);
            }
            // An undamaged segment that starts with its seed and metadata names its owner.
            let expect = match (records.first(), records.get(1)) {
                (Some(Rec::Seed(s)), Some(Rec::Metadata(m, c)))
                    if *s == seed && damages.is_empty() =>
                {
                    Some(WalMetadata {
                        member_id: *m,
                        cluster_id: *c,
                    })
                }
                _ => None,
            };
            damage(&mut out, &damages);
            let marker = SnapshotMarker {
                index: u64::from(snapshot.0),
                term: snapshot.1,
            };
            (out, marker, expect)
        }
    };
    let Ok(dir) = tempfile::tempdir() else { return };
    let name = SegmentName {
        seq: 0,
        first_index: 0,
    }
    .file_name();
    if std::fs::write(dir.path().join(name), &bytes).is_err() {
        return;
    }
    let metadata = Wal::read_metadata(dir.path());
    if let Some(want) = expect_metadata {
        match &metadata {
            Ok(got) => assert_eq!(*got, want),
            Err(e) => panic!("an undamaged segment head does not read: {e}"),
        }
    }
    if let Ok((_wal, state)) = Wal::open(dir.path(), snapshot) {
        // What replays is a contiguous run of entries.
        for pair in state.entries.windows(2) {
            assert_eq!(
                pair[0].index + 1,
                pair[1].index,
                "replayed entries are not contiguous"
            );
        }
    }
});
