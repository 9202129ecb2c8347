//! Reopening a store: index, revisions, consistent index and lease attachments come back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use mvcc::{DeleteRangeRequest, KeyValue, KvStore, PutRequest, RangeOptions, StoreConfig};
use storage_api::{Bucket, ReadTx};

use common::{TestLeases, open_store};

fn all_at(store: &KvStore, rev: i64) -> Vec<KeyValue> {
    store
        .range(
            &[0],
            Some(&[0]),
            &RangeOptions {
                rev,
                ..Default::default()
            },
        )
        .unwrap()
        .kvs
}

#[test]
fn reopen_restores_history_revisions_and_versions() {
    let dir = tempfile::tempdir().unwrap();
    let history: Vec<Vec<KeyValue>>;
    {
        let (backend, store) = open_store(dir.path(), StoreConfig::default());
        let mut txn = store.write().unwrap();
        txn.put(b"a", b"1", 0).unwrap();
        txn.put(b"b", b"1", 0).unwrap();
        txn.end().unwrap();
        store.put(&PutRequest::new("a", "2")).unwrap();
        store.delete_range(&DeleteRangeRequest::key("b")).unwrap();
        store.put(&PutRequest::new("b", "again")).unwrap();
        store.put(&PutRequest::new("c", "1")).unwrap();
        assert_eq!(store.rev(), 6);
        history = (1..=6).map(|rev| all_at(&store, rev)).collect();
        drop(store);
        backend.close().unwrap();
    }
    let (_backend, store) = open_store(dir.path(), StoreConfig::default());
    assert_eq!((store.rev(), store.compact_rev()), (6, -1));
    for (i, want) in history.iter().enumerate() {
        assert_eq!(&all_at(&store, i as i64 + 1), want, "rev {}", i + 1);
    }
    // Versions and creation revisions carry on.
    assert_eq!(store.put(&PutRequest::new("a", "3")).unwrap().revision, 7);
    let a = store
        .range(b"a", None, &RangeOptions::default())
        .unwrap()
        .kvs[0]
        .clone();
    assert_eq!((a.create_revision, a.version), (2, 3));
}

#[test]
fn reopen_restores_a_key_whose_oldest_record_is_a_tombstone() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_backend, store) = open_store(dir.path(), StoreConfig::default());
        store.put(&PutRequest::new("k", "1")).unwrap(); // 2
        store.delete_range(&DeleteRangeRequest::key("k")).unwrap(); // 3
        store.put(&PutRequest::new("z", "1")).unwrap(); // 4
        store.compact(3).unwrap().wait().unwrap();
    }
    let (backend, store) = open_store(dir.path(), StoreConfig::default());
    assert_eq!((store.rev(), store.compact_rev()), (4, 3));
    assert!(all_at(&store, 3).is_empty());
    assert_eq!(store.put(&PutRequest::new("k", "2")).unwrap().revision, 5);
    let k = store
        .range(b"k", None, &RangeOptions::default())
        .unwrap()
        .kvs[0]
        .clone();
    assert_eq!((k.create_revision, k.version), (5, 1));
    store.compact(5).unwrap().wait().unwrap();
    let left = backend
        .read_tx()
        .unwrap()
        .range(Bucket::KEY, b"", None, 0)
        .unwrap()
        .len();
    assert_eq!(left, 2, "the old tombstone was compacted away");
}

#[test]
fn consistent_index_is_stored_with_the_data_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (backend, store) = open_store(dir.path(), StoreConfig::default());
        assert_eq!(store.consistent_index().index, 0);
        let mut txn = store.write().unwrap();
        txn.put(b"k", b"v", 0).unwrap();
        txn.set_consistent_index(17, 3);
        txn.end().unwrap();
        assert_eq!(store.consistent_index().index, 17);
        let meta = backend.read_tx().unwrap();
        assert_eq!(
            meta.get(Bucket::META, b"consistent_index").unwrap(),
            Some(17u64.to_be_bytes().to_vec())
        );
        assert_eq!(
            meta.get(Bucket::META, b"term").unwrap(),
            Some(3u64.to_be_bytes().to_vec())
        );
        drop(store);
        backend.close().unwrap();
    }
    let (_backend, store) = open_store(dir.path(), StoreConfig::default());
    let ci = store.consistent_index();
    assert_eq!((ci.index, ci.term), (17, 3));
}

#[test]
fn reopen_attaches_live_keys_to_their_leases() {
    let dir = tempfile::tempdir().unwrap();
    {
        let leases = TestLeases::with(&[1, 2]);
        let (_backend, store) = open_store(
            dir.path(),
            StoreConfig {
                lease_registry: Some(leases),
                ..Default::default()
            },
        );
        let with = |k: &str, lease| PutRequest {
            lease,
            ..PutRequest::new(k, "v")
        };
        store.put(&with("a", 1)).unwrap();
        store.put(&with("b", 1)).unwrap();
        store.put(&with("c", 2)).unwrap();
        store.put(&with("b", 0)).unwrap();
        store.delete_range(&DeleteRangeRequest::key("c")).unwrap();
    }
    let leases = TestLeases::with(&[]);
    let (_backend, _store) = open_store(
        dir.path(),
        StoreConfig {
            lease_registry: Some(Arc::clone(&leases) as Arc<dyn mvcc::LeaseRegistry>),
            ..Default::default()
        },
    );
    assert_eq!(leases.keys(1), [b"a".to_vec()]);
    assert!(leases.keys(2).is_empty());
}
