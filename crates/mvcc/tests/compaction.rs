//! Compaction: what it deletes (tombstones included), resumption after an interrupted run, and
//! hashes that do not depend on its progress.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use mvcc::{
    DeleteRangeRequest, KvStore, MvccError, PutRequest, RangeOptions, Revision, RevisionKey,
    StoreConfig,
};
use storage_api::{Backend, Bucket, ReadTx};

use common::{open_store, temp_store};

/// The `key` bucket's records as `(main, sub, tombstone)`.
fn records(backend: &Backend) -> Vec<(i64, i64, bool)> {
    backend
        .read_tx()
        .unwrap()
        .range(Bucket::KEY, b"", None, 0)
        .unwrap()
        .into_iter()
        .map(|(k, _)| {
            let rk = RevisionKey::from_bytes(&k).unwrap();
            (rk.revision.main, rk.revision.sub, rk.tombstone)
        })
        .collect()
}

fn meta_rev(backend: &Backend, name: &[u8]) -> Option<i64> {
    backend
        .read_tx()
        .unwrap()
        .get(Bucket::META, name)
        .unwrap()
        .map(|b| i64::from_be_bytes(b[..8].try_into().unwrap()))
}

fn put(store: &KvStore, k: &str, v: &str) -> i64 {
    store.put(&PutRequest::new(k, v)).unwrap().revision
}

fn del(store: &KvStore, k: &str) -> i64 {
    store
        .delete_range(&DeleteRangeRequest::key(k))
        .unwrap()
        .revision
}

fn value_at(store: &KvStore, k: &str, rev: i64) -> Result<Option<Vec<u8>>, MvccError> {
    Ok(store
        .range(
            k.as_bytes(),
            None,
            &RangeOptions {
                rev,
                ..Default::default()
            },
        )?
        .kvs
        .into_iter()
        .next()
        .map(|kv| kv.value))
}

#[test]
fn compaction_deletes_superseded_revisions() {
    let (_dir, backend, store) = temp_store();
    put(&store, "a", "1"); // 2
    put(&store, "a", "2"); // 3
    put(&store, "b", "1"); // 4
    put(&store, "a", "3"); // 5
    assert_eq!(records(&backend).len(), 4);
    store.compact(4).unwrap().wait().unwrap();
    // a@3 is a's latest revision <= 4, b@4 b's: both stay; a@2 goes.
    assert_eq!(
        records(&backend),
        [(3, 0, false), (4, 0, false), (5, 0, false)]
    );
    assert_eq!(meta_rev(&backend, b"scheduledCompactRev"), Some(4));
    assert_eq!(meta_rev(&backend, b"finishedCompactRev"), Some(4));
    assert_eq!(value_at(&store, "a", 4).unwrap().unwrap(), b"2");
    assert!(matches!(
        value_at(&store, "a", 3),
        Err(MvccError::Compacted { .. })
    ));
}

#[test]
fn compaction_at_tombstones_keeps_the_tombstone_at_the_compaction_revision() {
    let (_dir, backend, store) = temp_store();
    // put(2) put(3) tomb(4) put(5) tomb(6), then an unrelated put(7).
    put(&store, "k", "a");
    put(&store, "k", "b");
    del(&store, "k");
    put(&store, "k", "c");
    del(&store, "k");
    put(&store, "other", "x");

    store.compact(3).unwrap().wait().unwrap();
    assert_eq!(
        records(&backend),
        [
            (3, 0, false),
            (4, 0, true),
            (5, 0, false),
            (6, 0, true),
            (7, 0, false)
        ]
    );
    store.compact(5).unwrap().wait().unwrap();
    assert_eq!(
        records(&backend),
        [(5, 0, false), (6, 0, true), (7, 0, false)]
    );
    store.compact(6).unwrap().wait().unwrap();
    // The tombstone at exactly the compaction revision stays, so a watcher from 6 sees it.
    assert_eq!(records(&backend), [(6, 0, true), (7, 0, false)]);
    assert_eq!(value_at(&store, "k", 6).unwrap(), None);
    store.compact(7).unwrap().wait().unwrap();
    assert_eq!(records(&backend), [(7, 0, false)]);
    // The key is gone from the index: it can start over.
    assert_eq!(put(&store, "k", "new"), 8);
    let kv = store
        .range(b"k", None, &RangeOptions::default())
        .unwrap()
        .kvs[0]
        .clone();
    assert_eq!((kv.create_revision, kv.version), (8, 1));
}

#[test]
fn an_interrupted_compaction_resumes_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let slow = StoreConfig {
        compaction_batch_limit: 1,
        compaction_pause: Duration::from_secs(5),
        ..Default::default()
    };
    let (backend, store) = open_store(dir.path(), slow);
    for i in 0..10 {
        put(&store, "k", &i.to_string()); // revisions 2..=11
    }
    put(&store, "j", "x"); // 12
    let handle = store.compact(11).unwrap();
    store.close();
    assert!(matches!(handle.wait(), Err(MvccError::Closed)));
    assert_eq!(meta_rev(&backend, b"scheduledCompactRev"), Some(11));
    assert_eq!(meta_rev(&backend, b"finishedCompactRev"), None);
    assert!(
        records(&backend).len() > 3,
        "the compaction was not interrupted"
    );
    drop(store);

    let store = KvStore::open(backend.clone(), StoreConfig::default()).unwrap();
    assert_eq!(store.compact_rev(), 11);
    assert_eq!(store.rev(), 12);
    store.compaction_barrier().wait().unwrap();
    assert_eq!(records(&backend), [(11, 0, false), (12, 0, false)]);
    assert_eq!(meta_rev(&backend, b"finishedCompactRev"), Some(11));
    assert!(matches!(
        value_at(&store, "k", 10),
        Err(MvccError::Compacted { .. })
    ));
    assert_eq!(value_at(&store, "k", 11).unwrap().unwrap(), b"9");
}

#[test]
fn compaction_survives_a_backend_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (backend, store) = open_store(dir.path(), StoreConfig::default());
        put(&store, "k", "1");
        put(&store, "k", "2");
        put(&store, "k", "3");
        store.compact(3).unwrap().wait().unwrap();
        drop(store);
        backend.close().unwrap();
    }
    let (backend, store) = open_store(dir.path(), StoreConfig::default());
    assert_eq!((store.rev(), store.compact_rev()), (4, 3));
    assert_eq!(records(&backend), [(3, 0, false), (4, 0, false)]);
    assert!(matches!(store.compact(3), Err(MvccError::Compacted { .. })));
}

fn fill(store: &KvStore) {
    for i in 0..20 {
        put(store, &format!("k{}", i % 4), &i.to_string());
        if i % 5 == 4 {
            del(store, &format!("k{}", i % 3));
        }
    }
}

#[test]
fn hash_by_rev_does_not_depend_on_compaction_progress() {
    let (_d1, _b1, finished) = temp_store();
    fill(&finished);
    let rev = finished.rev();
    let before = finished.hash_by_rev(0).unwrap();
    assert_eq!(before.revision, rev);
    finished.compact(rev - 5).unwrap().wait().unwrap();
    let after = finished.hash_by_rev(rev).unwrap();
    assert_eq!(after.compact_revision, rev - 5);

    // The same history, compaction interrupted then resumed: same hash all along.
    let dir = tempfile::tempdir().unwrap();
    let slow = StoreConfig {
        compaction_batch_limit: 1,
        compaction_pause: Duration::from_secs(5),
        ..Default::default()
    };
    let (backend, interrupted) = open_store(dir.path(), slow);
    fill(&interrupted);
    assert_eq!(interrupted.hash_by_rev(0).unwrap().hash, before.hash);
    let handle = interrupted.compact(rev - 5).unwrap();
    assert_eq!(interrupted.hash_by_rev(rev).unwrap().hash, after.hash);
    interrupted.close();
    let _ = handle.wait();
    drop(interrupted);
    let resumed = KvStore::open(backend, StoreConfig::default()).unwrap();
    assert_eq!(resumed.hash_by_rev(rev).unwrap().hash, after.hash);
    resumed.compaction_barrier().wait().unwrap();
    assert_eq!(resumed.hash_by_rev(rev).unwrap().hash, after.hash);

    assert!(matches!(
        resumed.hash_by_rev(rev - 6),
        Err(MvccError::Compacted { .. })
    ));
    assert!(matches!(
        resumed.hash_by_rev(rev + 1),
        Err(MvccError::FutureRev { .. })
    ));
    // The whole-backend hash ignores the consistent index.
    let (h1, r1) = resumed.hash().unwrap();
    let mut txn = resumed.write().unwrap();
    txn.set_consistent_index(42, 7);
    txn.end().unwrap();
    assert_eq!(resumed.hash().unwrap(), (h1, r1));
}

#[test]
fn hash_by_rev_matches_etcd_layout() {
    let (_dir, _b, store) = temp_store();
    put(&store, "foo", "bar");
    // crc32c("key" ++ revision key ++ protobuf KeyValue), as etcd computes it.
    let mut expected = crc32c::crc32c(b"key");
    expected = crc32c::crc32c_append(expected, &Revision::new(2, 0).to_bytes());
    expected = crc32c::crc32c_append(expected, b"\x0a\x03foo\x10\x02\x18\x02\x20\x01\x2a\x03bar");
    assert_eq!(store.hash_by_rev(0).unwrap().hash, expected);
}

#[test]
fn reads_racing_writes_and_compactions_are_exact_or_compacted() {
    let (_dir, _backend, store) = temp_store();
    put(&store, "k", "0");
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 1..200 {
                put(&store, "k", &i.to_string());
                if i % 20 == 0 {
                    let _ = store.compact(store.rev() - 5).map(|h| h.wait());
                }
            }
        });
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..300 {
                    let read = store.read().unwrap();
                    let rev = read.rev();
                    for back in [0, 3, 10].into_iter().filter(|b| rev - b >= 2) {
                        let at = RangeOptions {
                            rev: rev - back,
                            ..Default::default()
                        };
                        match read.range(b"k", None, &at) {
                            // k was put at every revision from 2 on, with value rev - 2.
                            Ok(r) => {
                                let kv = &r.kvs[0];
                                assert_eq!(kv.mod_revision, rev - back);
                                assert_eq!(kv.value, (rev - back - 2).to_string().into_bytes());
                            }
                            Err(MvccError::Compacted { .. }) => {}
                            Err(e) => panic!("unexpected error: {e}"),
                        }
                    }
                }
            });
        }
    });
    assert_eq!(store.rev(), 201);
}
