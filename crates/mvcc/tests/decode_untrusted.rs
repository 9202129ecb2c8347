//! mvcc's decoders of bytes from the backend on damaged input: `key` bucket keys (revisions)
//! and values (`mvccpb.KeyValue`), `lease` bucket records (`leasepb.Lease`), and a store or a
//! lessor opened over buckets holding such damage: an error, never a panic, and never an
//! undamaged-looking read of damaged data. The in-crate proptests cover round trips and short
//! garbage; these add mutated valid encodings and the open paths. (Also under `cargo fuzz`:
//! see `fuzz/`.)

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::Arc;

use common::{EngineKind, open_store};
use mvcc::kv_encoding::{decode, encode};
use mvcc::lease::{LeaseRecord, Lessor, LessorConfig};
use mvcc::{KeyValue, PutRequest, RangeOptions, RevisionKey, StoreConfig};
use proptest::collection::vec;
use proptest::prelude::*;
use storage_api::{Bucket, ReadTx};

#[derive(Clone, Debug)]
enum Damage {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, mask)| Damage::Flip(at, mask)),
        any::<usize>().prop_map(Damage::Truncate),
        (any::<usize>(), vec(any::<u8>(), 1..12)).prop_map(|(at, b)| Damage::Insert(at, b)),
    ]
}

fn apply(bytes: &mut Vec<u8>, d: &Damage) {
    let len = bytes.len();
    let pos = |at: usize| if len == 0 { 0 } else { at % (len + 1) };
    match d {
        Damage::Flip(at, mask) => {
            if len > 0 {
                bytes[at % len] ^= mask;
            }
        }
        Damage::Truncate(at) => bytes.truncate(pos(*at)),
        Damage::Insert(at, b) => {
            let i = pos(*at);
            bytes.splice(i..i, b.iter().copied());
        }
    }
}

fn key_value() -> impl Strategy<Value = KeyValue> {
    (
        vec(any::<u8>(), 0..24),
        vec(any::<u8>(), 0..48),
        any::<i64>(),
        any::<i64>(),
        any::<i64>(),
        any::<i64>(),
    )
        .prop_map(|(key, value, c, m, v, l)| KeyValue {
            key,
            create_revision: c,
            mod_revision: m,
            version: v,
            value,
            lease: l,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// A damaged `mvccpb.KeyValue` decodes to an error or to a value that is stable under
    /// re-encoding, and never to more key/value bytes than the input holds.
    #[test]
    fn damaged_key_values_decode_or_fail(kv in key_value(), damages in vec(damage(), 1..4)) {
        let mut bytes = encode(&kv);
        for d in &damages {
            apply(&mut bytes, d);
        }
        if let Ok(got) = decode(&bytes) {
            prop_assert!(got.key.len() + got.value.len() <= bytes.len());
            prop_assert_eq!(decode(&encode(&got)), Ok(got));
        }
    }

    /// Longer garbage than the in-crate test tries, biased to protobuf-looking tags.
    #[test]
    fn arbitrary_key_values_never_panic(parts in vec((0..16u8, any::<u8>(), vec(any::<u8>(), 0..12)), 0..24)) {
        let mut bytes = Vec::new();
        for (field, wire, rest) in parts {
            bytes.push(field << 3 | (wire % 8));
            bytes.extend(rest);
        }
        if let Ok(got) = decode(&bytes) {
            prop_assert_eq!(decode(&encode(&got)), Ok(got));
        }
    }

    /// A damaged revision key is refused unless it is still exactly an encoded revision.
    #[test]
    fn damaged_revision_keys_decode_exactly_or_fail(
        main: i64, sub: i64, tombstone: bool, damages in vec(damage(), 1..3),
    ) {
        let key = RevisionKey { revision: mvcc::Revision::new(main, sub), tombstone };
        let mut bytes = key.to_bytes();
        for d in &damages {
            apply(&mut bytes, d);
        }
        if let Ok(got) = RevisionKey::from_bytes(&bytes) {
            prop_assert_eq!(got.to_bytes(), bytes);
            prop_assert!(got.revision.main >= 0 && got.revision.sub >= 0);
        }
    }

    /// A damaged `leasepb.Lease` decodes to an error or to a record stable under re-encoding.
    #[test]
    fn damaged_lease_records_decode_or_fail(
        id: i64, ttl: i64, remaining: i64, damages in vec(damage(), 1..4),
    ) {
        let mut bytes = LeaseRecord { id, ttl, remaining_ttl: remaining }.encode();
        for d in &damages {
            apply(&mut bytes, d);
        }
        if let Ok(got) = LeaseRecord::decode(&bytes) {
            prop_assert_eq!(LeaseRecord::decode(&got.encode()), Ok(got));
        }
    }
}

/// What to write over a store's buckets before reopening it.
#[derive(Clone, Debug)]
enum Corruption {
    /// Damage the value of the `n`th `key` bucket record.
    Value(usize, Vec<Damage>),
    /// Damage the key of the `n`th `key` bucket record (the record moves).
    Key(usize, Vec<Damage>),
    /// Add an arbitrary record to a bucket (0: key, 1: meta, 2: lease).
    Extra(u8, Vec<u8>, Vec<u8>),
}

fn corruption() -> impl Strategy<Value = Corruption> {
    prop_oneof![
        (any::<usize>(), vec(damage(), 1..3)).prop_map(|(n, d)| Corruption::Value(n, d)),
        (any::<usize>(), vec(damage(), 1..3)).prop_map(|(n, d)| Corruption::Key(n, d)),
        (0..3u8, vec(any::<u8>(), 0..24), vec(any::<u8>(), 0..24))
            .prop_map(|(b, k, v)| Corruption::Extra(b, k, v)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// A store and a lessor reopened over damaged `key`, `meta` and `lease` buckets either
    /// refuse to open (an error) or open and serve reads; neither panics.
    #[test]
    fn a_store_over_damaged_buckets_opens_or_fails(corruptions in vec(corruption(), 1..4)) {
        let dir = tempfile::tempdir().unwrap();
        {
            let (backend, store) = open_store(dir.path(), StoreConfig::default());
            for i in 0..12 {
                store.put(&PutRequest::new(format!("k{}", i % 5), format!("v{i}"))).unwrap();
            }
            let lessor = Lessor::new(Arc::clone(&backend), LessorConfig::default()).unwrap();
            drop(lessor);
            let mut tx = backend.batch_tx().unwrap();
            tx.create_bucket(Bucket::LEASE).unwrap();
            for id in 1..4i64 {
                let record = LeaseRecord { id, ttl: 60, remaining_ttl: 0 };
                tx.put(Bucket::LEASE, &id.to_be_bytes(), &record.encode()).unwrap();
            }
            tx.end().unwrap();
            drop(store);
            backend.close().unwrap();
        }
        {
            let backend = EngineKind::Lmdb.open_backend(dir.path());
            let records = backend.read_tx().unwrap().range(Bucket::KEY, &[], None, 0).unwrap();
            let mut tx = backend.batch_tx().unwrap();
            for c in &corruptions {
                match c {
                    Corruption::Value(n, damages) => {
                        let (k, v) = &records[n % records.len()];
                        let mut v = v.clone();
                        damages.iter().for_each(|d| apply(&mut v, d));
                        tx.put(Bucket::KEY, k, &v).unwrap();
                    }
                    Corruption::Key(n, damages) => {
                        let (k, v) = &records[n % records.len()];
                        let mut k2 = k.clone();
                        damages.iter().for_each(|d| apply(&mut k2, d));
                        if !k2.is_empty() {
                            tx.delete(Bucket::KEY, k).unwrap();
                            tx.put(Bucket::KEY, &k2, v).unwrap();
                        }
                    }
                    Corruption::Extra(b, k, v) => {
                        let bucket = [Bucket::KEY, Bucket::META, Bucket::LEASE][usize::from(*b)];
                        if !k.is_empty() {
                            tx.put(bucket, k, v).unwrap();
                        }
                    }
                }
            }
            tx.end().unwrap();
            backend.close().unwrap();
        }
        let backend = EngineKind::Lmdb.open_backend(dir.path());
        if let Ok(store) = mvcc::KvStore::open(Arc::clone(&backend), StoreConfig::default()) {
            // A damaged key can carry any revision: read the first revisions and the last
            // (bounded), not every one up to it.
            let current = store.rev();
            for rev in (0..=current.clamp(0, 20)).chain([current]) {
                let opts = RangeOptions { rev, ..RangeOptions::default() };
                let _ = store.range(&[0], Some(&[0]), &opts);
            }
        }
        let _ = Lessor::new(Arc::clone(&backend), LessorConfig::default());
    }
}

// ---- regressions -------------------------------------------------------------------------------

/// A store whose `key` bucket holds `k` put at revision 2 and deleted at 3, and `other` put at
/// 4, reopened after `damage` rewrote the bucket's records: what reopening gives.
fn reopen_after(damage: impl FnOnce(&mut Vec<(Vec<u8>, Vec<u8>)>)) -> mvcc::Result<i64> {
    let dir = tempfile::tempdir().unwrap();
    {
        let (backend, store) = open_store(dir.path(), StoreConfig::default());
        store.put(&PutRequest::new("k", "v")).unwrap();
        store
            .delete_range(&mvcc::DeleteRangeRequest::key("k"))
            .unwrap();
        store.put(&PutRequest::new("other", "v")).unwrap();
        drop(store);
        backend.close().unwrap();
    }
    {
        let backend = EngineKind::Lmdb.open_backend(dir.path());
        let before = backend
            .read_tx()
            .unwrap()
            .range(Bucket::KEY, &[], None, 0)
            .unwrap();
        let mut records = before.clone();
        damage(&mut records);
        let mut tx = backend.batch_tx().unwrap();
        for (k, _) in &before {
            tx.delete(Bucket::KEY, k).unwrap();
        }
        for (k, v) in &records {
            tx.put(Bucket::KEY, k, v).unwrap();
        }
        tx.end().unwrap();
        backend.close().unwrap();
    }
    let backend = EngineKind::Lmdb.open_backend(dir.path());
    mvcc::KvStore::open(Arc::clone(&backend), StoreConfig::default()).map(|s| s.rev())
}

/// Found by `a_store_over_damaged_buckets_opens_or_fails`: a revision key whose sign bit
/// flipped decoded to a negative revision; its bytes sort after every valid revision, and
/// restoring the index panicked ("invariant violated: key index revisions strictly
/// increase"). Fixed in `RevisionKey::from_bytes`, which now refuses negative revisions.
#[test]
fn a_negative_revision_key_is_refused_on_open() {
    let result = reopen_after(|records| records[0].0[0] ^= 0x80);
    assert!(
        matches!(result, Err(mvcc::MvccError::Corrupted(_))),
        "{result:?}"
    );
}

/// Regression: a tombstone moved onto the revision of the put it deletes (one bit flipped, 3
/// to 2: `k`'s records become `2` and `2t`) made reopening the store panic in `KeyIndex::put`
/// ("invariant violated: key index revisions strictly increase"); it is reported as
/// corruption.
#[test]
fn a_tombstone_at_its_puts_revision_is_refused_on_open() {
    let result = std::panic::catch_unwind(|| {
        reopen_after(|records| {
            // Records: 2 (put k), 3t (delete k), 4 (put other).
            assert_eq!(records[1].0.len(), 18);
            records[1].0[7] = 2;
        })
    });
    match result {
        Ok(r) => assert!(matches!(r, Err(mvcc::MvccError::Corrupted(_))), "{r:?}"),
        Err(_) => panic!("reopening the store panicked instead of reporting corruption"),
    }
}
