//! Decoders of bytes from the disk and the network on arbitrary and damaged input: WAL
//! segments and records, snapshot metadata files, portable backend snapshots, the peer
//! handshake, frames and postcard payloads, request envelopes and configuration changes.
//! Each gives a value or an error, never a panic, and damage is never read as valid data.
//! (The same properties under `cargo fuzz`: see `fuzz/`.)

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;

use node::engine::EngineKind;
use node::membership::Member;
use node::request::Envelope;
use node::snapshot::{DataPaths, metas_newest_first, save_meta};
use node::transport::tcp::wire::{
    ClusterInfo, HANDSHAKE_LEN, Handshake, HandshakeReply, REPLY_LEN, SnapshotHeader, WireError,
    read_frame, write_frame,
};
use node::wal::segment::SegmentName;
use node::wal::{RecordReader, SnapshotMarker, Wal, WalMetadata, WalRecord};
use proptest::collection::vec;
use proptest::prelude::*;
use raft_core::raftpb::{
    AnyConfChange, ConfState, Entry, EntryType, HardState, Message, SnapshotMetadata,
};
use storage_api::{Backend, BackendConfig, Bucket, restore_snapshot};

const META: WalMetadata = WalMetadata {
    member_id: 0x8e9e05c52164694d,
    cluster_id: 0xcdf818194e3a8c32,
};

/// A damage to apply to a valid encoding.
#[derive(Clone, Debug)]
enum Damage {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Zero(usize, usize),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, mask)| Damage::Flip(at, mask)),
        any::<usize>().prop_map(Damage::Truncate),
        (any::<usize>(), vec(any::<u8>(), 1..16)).prop_map(|(at, b)| Damage::Insert(at, b)),
        (any::<usize>(), 1..600usize).prop_map(|(at, n)| Damage::Zero(at, n)),
    ]
}

fn apply(bytes: &mut Vec<u8>, d: &Damage) {
    let len = bytes.len();
    let pos = |at: usize| if len == 0 { 0 } else { at % len };
    match d {
        Damage::Flip(at, mask) => {
            if len > 0 {
                bytes[pos(*at)] ^= mask;
            }
        }
        Damage::Truncate(at) => bytes.truncate(pos(*at)),
        Damage::Insert(at, b) => {
            let i = pos(*at);
            bytes.splice(i..i, b.iter().copied());
        }
        Damage::Zero(at, n) => {
            let i = pos(*at);
            let end = (i + n).min(len);
            bytes[i..end].fill(0);
        }
    }
}

// ---- WAL ------------------------------------------------------------------------------------

fn wal_entries() -> Vec<Entry> {
    (1..=40)
        .map(|i| {
            let data = format!("put key-{i} value-{}", "x".repeat(i as usize % 7 * 20));
            Entry::new(1 + i / 10, i, EntryType::Normal, data.into_bytes())
        })
        .collect()
}

/// The written part of a real WAL segment holding [`wal_entries`], plus some of its
/// pre-allocated zeros (the full 64 MiB segment is too big to copy per case).
fn wal_segment() -> &'static [u8] {
    static SEGMENT: OnceLock<Vec<u8>> = OnceLock::new();
    SEGMENT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(dir.path(), META).unwrap();
        for chunk in wal_entries().chunks(5) {
            let last = chunk.last().unwrap().index;
            let hs = HardState {
                term: chunk.last().unwrap().term,
                vote: 1,
                commit: last,
            };
            wal.save(&hs, chunk).unwrap();
        }
        drop(wal);
        let path = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "wal"))
            .unwrap();
        let bytes = std::fs::read(path).unwrap();
        let written = bytes.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1);
        bytes[..(written + 4096).min(bytes.len())].to_vec()
    })
}

fn write_segment(dir: &Path, bytes: &[u8]) {
    let name = SegmentName {
        seq: 0,
        first_index: 0,
    }
    .file_name();
    std::fs::write(dir.join(name), bytes).unwrap();
}

#[test]
fn the_undamaged_segment_replays_everything() {
    let dir = tempfile::tempdir().unwrap();
    write_segment(dir.path(), wal_segment());
    assert_eq!(Wal::read_metadata(dir.path()).unwrap(), META);
    let (_wal, state) = Wal::open(dir.path(), SnapshotMarker::default()).unwrap();
    assert_eq!(state.entries, wal_entries());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A damaged segment opens to a prefix of what was written (a torn tail cut off) or is
    /// refused; it never replays an entry that was not written, and never panics.
    #[test]
    fn a_damaged_segment_replays_a_prefix_or_is_refused(damages in vec(damage(), 1..4)) {
        let mut bytes = wal_segment().to_vec();
        for d in &damages {
            apply(&mut bytes, d);
        }
        let dir = tempfile::tempdir().unwrap();
        write_segment(dir.path(), &bytes);
        if let Ok(meta) = Wal::read_metadata(dir.path()) {
            prop_assert_eq!(meta, META);
        }
        if let Ok((_wal, state)) = Wal::open(dir.path(), SnapshotMarker::default()) {
            let written = wal_entries();
            prop_assert!(state.entries.len() <= written.len());
            prop_assert_eq!(&state.entries[..], &written[..state.entries.len()]);
        }
    }

    /// Arbitrary bytes as a segment: an error or a (possibly empty) replay.
    #[test]
    fn arbitrary_bytes_as_a_segment_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        let dir = tempfile::tempdir().unwrap();
        write_segment(dir.path(), &bytes);
        let _ = Wal::read_metadata(dir.path());
        let _ = Wal::open(dir.path(), SnapshotMarker::default());
    }

    /// The record reader and the payload decoder on arbitrary bytes; decoded payloads
    /// round-trip.
    #[test]
    fn arbitrary_records_never_panic(bytes in vec(any::<u8>(), 0..512), seed: u32, kind: u8) {
        let mut reader = RecordReader::new(&bytes, seed);
        while let Ok(Some(frame)) = reader.next_record() {
            let _ = WalRecord::decode(frame.kind, frame.payload);
        }
        if let Ok(record) = WalRecord::decode(kind, &bytes) {
            let mut again = Vec::new();
            record.encode_payload(&mut again);
            prop_assert_eq!(WalRecord::decode(kind, &again), Ok(record));
        }
    }
}

// ---- snapshot metadata files ------------------------------------------------------------------

fn snapshot_metadata() -> impl Strategy<Value = SnapshotMetadata> {
    (
        any::<u64>(),
        any::<u64>(),
        vec(any::<u64>(), 0..5),
        vec(any::<u64>(), 0..3),
        any::<bool>(),
    )
        .prop_map(
            |(index, term, voters, learners, auto_leave)| SnapshotMetadata {
                conf_state: ConfState {
                    voters,
                    learners,
                    auto_leave,
                    ..ConfState::default()
                },
                index,
                term,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A damaged `.snap` file is skipped (etcd's snapshotter does the same), never misread.
    #[test]
    fn a_damaged_snapshot_meta_is_skipped(meta in snapshot_metadata(), damages in vec(damage(), 0..3)) {
        let dir = tempfile::tempdir().unwrap();
        let paths = DataPaths::new(dir.path());
        save_meta(&paths, &meta).unwrap();
        let file = paths.meta_file(meta.term, meta.index);
        let mut bytes = std::fs::read(&file).unwrap();
        let original = bytes.clone();
        for d in &damages {
            apply(&mut bytes, d);
        }
        std::fs::write(&file, &bytes).unwrap();
        let metas = metas_newest_first(&paths).unwrap();
        if bytes == original {
            prop_assert_eq!(metas, vec![meta]);
        } else {
            prop_assert!(metas.is_empty() || metas == vec![meta], "{metas:?}");
        }
    }

    /// Arbitrary bytes, with or without a valid checksum, as a `.snap` file.
    #[test]
    fn arbitrary_snapshot_meta_files_never_panic(mut body in vec(any::<u8>(), 0..256), checksum: bool) {
        if checksum {
            let crc = crc32c::crc32c(&body);
            body.extend_from_slice(&crc.to_be_bytes());
        }
        let dir = tempfile::tempdir().unwrap();
        let paths = DataPaths::new(dir.path());
        std::fs::create_dir_all(&paths.snap).unwrap();
        std::fs::write(paths.meta_file(1, 1), &body).unwrap();
        prop_assert!(metas_newest_first(&paths).unwrap().len() <= 1);
    }
}

// ---- portable backend snapshots (`.snap.db`, and what a leader streams) ---------------------

fn lmdb(dir: &Path) -> Backend {
    EngineKind::Lmdb
        .open_backend(dir, BackendConfig::default())
        .unwrap()
}

/// A real snapshot of a backend holding a few records, and the backend's hash.
fn backend_snapshot() -> &'static (Vec<u8>, u32) {
    static SNAP: OnceLock<(Vec<u8>, u32)> = OnceLock::new();
    SNAP.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let b = lmdb(dir.path());
        let mut tx = b.batch_tx().unwrap();
        for (bucket, n) in [("key", 30), ("meta", 3), ("lease", 4)] {
            let bucket = Bucket::intern(bucket).unwrap();
            tx.create_bucket(bucket).unwrap();
            for i in 0..n {
                tx.put(bucket, format!("k{i:03}").as_bytes(), &vec![i as u8; i * 3])
                    .unwrap();
            }
        }
        tx.end().unwrap();
        let mut bytes = Vec::new();
        b.snapshot().unwrap().read_to_end(&mut bytes).unwrap();
        let hash = b.hash(&|_, _| false).unwrap();
        b.close().unwrap();
        (bytes, hash)
    })
}

#[test]
fn the_undamaged_backend_snapshot_restores_identically() {
    let (bytes, hash) = backend_snapshot();
    let dir = tempfile::tempdir().unwrap();
    let b = lmdb(dir.path());
    assert_eq!(restore_snapshot(&b, &bytes[..]).unwrap(), 37);
    assert_eq!(b.hash(&|_, _| false).unwrap(), *hash);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A truncated, extended or bit-flipped snapshot is refused: every byte is covered by the
    /// magic, a chunk checksum or the trailer.
    #[test]
    fn a_damaged_backend_snapshot_is_refused(d in damage()) {
        let (original, _) = backend_snapshot();
        let mut bytes = original.clone();
        apply(&mut bytes, &d);
        prop_assume!(bytes != *original);
        let dir = tempfile::tempdir().unwrap();
        let b = lmdb(dir.path());
        let restored = restore_snapshot(&b, &bytes[..]);
        prop_assert!(restored.is_err(), "{d:?} restored as {restored:?}");
    }

    /// Arbitrary bytes, behind a valid header or not.
    #[test]
    fn arbitrary_backend_snapshots_never_panic(mut bytes in vec(any::<u8>(), 0..256), header: bool) {
        if header {
            let mut h = b"FRCDSNAP\0\0\0\x01".to_vec();
            h.append(&mut bytes);
            bytes = h;
        }
        let dir = tempfile::tempdir().unwrap();
        let b = lmdb(dir.path());
        let _ = restore_snapshot(&b, &bytes[..]);
    }
}

// ---- the peer transport ------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn handshakes_decode_or_fail_and_round_trip(
        mut h in proptest::array::uniform31(any::<u8>()),
        mut r in proptest::array::uniform23(any::<u8>()),
        magic: bool,
    ) {
        prop_assert_eq!(HANDSHAKE_LEN, 31);
        prop_assert_eq!(REPLY_LEN, 23);
        if magic {
            h[..4].copy_from_slice(b"FRCD");
            r[..4].copy_from_slice(b"FRCD");
        }
        if let Ok(d) = Handshake::decode(&h) {
            prop_assert_eq!(d.encode(), h);
        }
        if let Ok(d) = HandshakeReply::decode(&r) {
            prop_assert_eq!(d.encode(), r);
        }
    }

    /// Arbitrary streams: frames, a clean end or an error; a length prefix alone never
    /// allocates what it announces.
    #[test]
    fn arbitrary_frame_streams_never_panic(stream in vec(any::<u8>(), 0..256), max in 0..1024usize) {
        for max in [max, 64 << 20] {
            let mut r = &stream[..];
            for _ in 0..=stream.len() {
                let mut out = Vec::new();
                let more = read_frame(&mut r, max, &mut out);
                prop_assert!(out.capacity() <= 4096, "{} bytes allocated", out.capacity());
                if !matches!(more, Ok(true)) {
                    break;
                }
            }
        }
    }

    /// A frame with any byte flipped is refused (a flipped length may also look truncated).
    #[test]
    fn a_flipped_frame_is_refused(payload in vec(any::<u8>(), 0..64), at: usize, mask in 1..=255u8) {
        let mut stream = Vec::new();
        write_frame(&mut stream, &payload).unwrap();
        let i = at % stream.len();
        stream[i] ^= mask;
        let mut out = Vec::new();
        let read = read_frame(&mut &stream[..], 1 << 20, &mut out);
        prop_assert!(
            matches!(read, Err(WireError::Checksum { .. } | WireError::Io(_) | WireError::FrameTooLarge { .. })),
            "{read:?}"
        );
    }

    /// Peer payloads on arbitrary bytes; what decodes round-trips.
    #[test]
    fn arbitrary_peer_payloads_never_panic(bytes in vec(any::<u8>(), 0..256)) {
        fn round_trip<T>(bytes: &[u8]) -> Result<(), TestCaseError>
        where
            T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
        {
            if let Ok(v) = postcard::from_bytes::<T>(bytes) {
                let again: T = postcard::from_bytes(&postcard::to_allocvec(&v).unwrap()).unwrap();
                prop_assert_eq!(again, v);
            }
            Ok(())
        }
        round_trip::<Message>(&bytes)?;
        round_trip::<SnapshotHeader>(&bytes)?;
        round_trip::<ClusterInfo>(&bytes)?;
        round_trip::<Member>(&bytes)?;
    }

    /// Committed entry data: configuration changes and request envelopes.
    #[test]
    fn arbitrary_entry_data_never_panics(bytes in vec(any::<u8>(), 0..256), t in 0..3u8) {
        let t = [EntryType::Normal, EntryType::ConfChange, EntryType::ConfChangeV2][usize::from(t)];
        if let Some(Ok(cc)) = AnyConfChange::from_entry(t, &bytes) {
            let (t2, data) = cc.to_entry_data();
            prop_assert_eq!(t2, t);
            prop_assert_eq!(AnyConfChange::from_entry(t2, &data), Some(Ok(cc)));
        }
        if let Ok(e) = Envelope::decode(&bytes) {
            prop_assert_eq!(Envelope::decode(&e.encode()), Ok(e));
        }
    }
}

// ---- nesting depth -----------------------------------------------------------------------------

/// The bytes an attacker would send for a `Message` whose `responses` nest `depth` deep, in the
/// encoding that had `responses` as a last field (13 fields of zeros, then the `responses`
/// length). Built by hand, as server's bad_input.rs does: `responses` is not encoded any more.
fn nested_message(depth: usize) -> Vec<u8> {
    let leaf = [0u8; 14];
    let level = &leaf[..leaf.len() - 1];
    let mut out = Vec::with_capacity(depth * leaf.len());
    for _ in 0..depth {
        out.extend_from_slice(level);
        out.push(1);
    }
    out.extend_from_slice(&leaf);
    out
}

/// Set in a child process to run a test that may abort the process.
const CHILD_ENV: &str = "FERROCD_DECODE_UNTRUSTED_CHILD";

/// Runs test `name` of this binary in a child process (a stack overflow aborts the whole
/// process, which would take the test harness with it) and reports whether it passed, with
/// its output.
fn passes_in_a_child(name: &str) -> (bool, String) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A peer message frame within the default 64 MiB frame limit: 1 MiB of nested `responses`
/// (~75,000 levels). Decoding it must give a value or an error on an ordinary thread's stack.
/// Does nothing unless run as the child of [`a_deeply_nested_peer_message_does_not_crash`].
#[test]
fn decode_deeply_nested_message() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let bytes = nested_message((1 << 20) / 14);
    assert!(bytes.len() <= 64 << 20);
    // The transport decodes on its reader threads: a default-sized (2 MiB) thread stack.
    let decoded = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || postcard::from_bytes::<Message>(&bytes).is_ok())
        .unwrap()
        .join();
    assert!(decoded.is_ok());
}

/// Regression: the postcard decoding of `raftpb::Message` recursed once per nesting level of
/// `responses` with no limit, so one crafted frame on a message stream overflowed the reader
/// thread's stack and aborted the whole ferrocd process. `responses` are no longer serialized.
#[test]
fn a_deeply_nested_peer_message_does_not_crash() {
    let (ok, output) = passes_in_a_child("decode_deeply_nested_message");
    assert!(ok, "decoding a deeply nested message crashed:\n{output}");
}

/// The entry data of a request envelope holding a transaction nested `depth` deep (built by
/// hand: the encoder recurses too).
fn nested_envelope(depth: usize) -> Vec<u8> {
    use mvcc::TxnRequest;
    use node::request::Request;
    let base = Envelope {
        id: 0,
        request: Request::Txn(TxnRequest::default()),
    }
    .encode();
    // An empty TxnRequest is three empty vectors: [0, 0, 0]. One level of nesting is "no
    // compares, one success op: the `Txn` variant (3)", the nested txn, then "no failure ops".
    assert!(base.ends_with(&[0, 0, 0]));
    let mut out = base[..base.len() - 3].to_vec();
    for _ in 0..depth {
        out.extend_from_slice(&[0, 1, 3]);
    }
    out.extend_from_slice(&[0, 0, 0]);
    out.extend(std::iter::repeat_n(0u8, depth));
    out
}

#[test]
fn nested_envelopes_are_built_right() {
    use mvcc::{RequestOp, TxnRequest};
    use node::request::Request;
    let mut t = TxnRequest::default();
    for _ in 0..3 {
        t = TxnRequest {
            success: vec![RequestOp::Txn(t)],
            ..TxnRequest::default()
        };
    }
    let want = Envelope {
        id: 0,
        request: Request::Txn(t),
    };
    assert_eq!(Envelope::decode(&nested_envelope(3)), Ok(want));
}

/// Does nothing unless run as the child of [`a_deeply_nested_envelope_does_not_crash`].
#[test]
fn decode_deeply_nested_envelope() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let bytes = nested_envelope(300_000);
    let decoded = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || Envelope::decode(&bytes).is_ok())
        .unwrap()
        .join();
    assert!(decoded.is_ok());
}

/// Regression: the same unbounded recursion in request envelopes (`Request::Txn` holding
/// `RequestOp::Txn`), decoded from WAL records and committed entries by the apply thread
/// (reached by a crafted WAL or a forged leader). Decoding now refuses nesting deeper than
/// `mvcc::request::MAX_TXN_DEPTH`.
#[test]
fn a_deeply_nested_envelope_does_not_crash() {
    let (ok, output) = passes_in_a_child("decode_deeply_nested_envelope");
    assert!(ok, "decoding a deeply nested envelope crashed:\n{output}");
}
