//! Range / put / delete-range / txn semantics and their errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use mvcc::{
    Change, ChangeKind, ChangeObserver, Compare, CompareResult, CompareTarget, DeleteRangeRequest,
    KeyValue, MvccError, PutRequest, RangeOptions, RangeRequest, RequestOp, ResponseOp,
    StoreConfig, TxnRequest,
};
use parking_lot::Mutex;
use storage_api::{Bucket, ReadTx};

use common::{TestLeases, open_store, temp_store};

fn put(store: &mvcc::KvStore, k: &str, v: &str) -> i64 {
    store.put(&PutRequest::new(k, v)).unwrap().revision
}

fn get(store: &mvcc::KvStore, k: &str) -> Option<KeyValue> {
    store
        .range(k.as_bytes(), None, &RangeOptions::default())
        .unwrap()
        .kvs
        .into_iter()
        .next()
}

fn keys(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| String::from_utf8(kv.key.clone()).unwrap())
        .collect()
}

#[test]
fn puts_get_revisions_versions_and_creation() {
    let (_dir, _b, store) = temp_store();
    assert_eq!(store.rev(), 1);
    assert_eq!(put(&store, "foo", "bar"), 2);
    assert_eq!(put(&store, "foo", "baz"), 3);
    let kv = get(&store, "foo").unwrap();
    assert_eq!(
        kv,
        KeyValue {
            key: b"foo".to_vec(),
            create_revision: 2,
            mod_revision: 3,
            version: 2,
            value: b"baz".to_vec(),
            lease: 0
        }
    );
    // Old revisions stay readable.
    let old = store
        .range(
            b"foo",
            None,
            &RangeOptions {
                rev: 2,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(old.kvs[0].value, b"bar");
    assert_eq!(old.rev, 3);
    let before = store
        .range(
            b"foo",
            None,
            &RangeOptions {
                rev: 1,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(before.kvs.is_empty());
    assert_eq!(before.count, 0);
}

#[test]
fn ranges_follow_etcd_end_semantics_limit_count_and_keys_only() {
    let (_dir, _b, store) = temp_store();
    for k in ["a", "b", "c", "d"] {
        put(&store, k, &format!("v{k}"));
    }
    let all = |end: Option<&[u8]>, opts: RangeOptions| store.range(b"b", end, &opts).unwrap();
    assert_eq!(keys(&all(None, RangeOptions::default()).kvs), ["b"]);
    assert_eq!(
        keys(&all(Some(b"d"), RangeOptions::default()).kvs),
        ["b", "c"]
    );
    assert_eq!(
        keys(&all(Some(&[0]), RangeOptions::default()).kvs),
        ["b", "c", "d"]
    );
    assert!(all(Some(b"a"), RangeOptions::default()).kvs.is_empty());
    let every = store
        .range(&[0], Some(&[0]), &RangeOptions::default())
        .unwrap();
    assert_eq!(keys(&every.kvs), ["a", "b", "c", "d"]);

    let limited = all(
        Some(&[0]),
        RangeOptions {
            limit: 2,
            ..Default::default()
        },
    );
    assert_eq!(keys(&limited.kvs), ["b", "c"]);
    assert_eq!((limited.count, limited.more), (3, true));
    let exact = all(
        Some(&[0]),
        RangeOptions {
            limit: 3,
            ..Default::default()
        },
    );
    assert!(!exact.more);

    let counted = all(
        Some(&[0]),
        RangeOptions {
            count_only: true,
            ..Default::default()
        },
    );
    assert!(counted.kvs.is_empty());
    assert_eq!(counted.count, 3);

    let bare = all(
        Some(&[0]),
        RangeOptions {
            keys_only: true,
            ..Default::default()
        },
    );
    assert!(
        bare.kvs
            .iter()
            .all(|kv| kv.value.is_empty() && kv.version == 1)
    );
}

#[test]
fn future_and_compacted_revisions_fail() {
    let (_dir, _b, store) = temp_store();
    for i in 0..5 {
        put(&store, "k", &i.to_string());
    }
    assert_eq!(store.rev(), 6);
    let at = |rev| {
        store.range(
            b"k",
            None,
            &RangeOptions {
                rev,
                ..Default::default()
            },
        )
    };
    assert!(matches!(
        at(7),
        Err(MvccError::FutureRev {
            requested: 7,
            current: 6
        })
    ));
    store.compact(4).unwrap().wait().unwrap();
    assert!(matches!(
        at(3),
        Err(MvccError::Compacted {
            requested: 3,
            compacted: 4
        })
    ));
    // The compaction revision itself stays readable, as in etcd.
    assert_eq!(at(4).unwrap().kvs[0].value, b"2");
    assert_eq!(at(0).unwrap().kvs[0].value, b"4");
    assert!(matches!(store.compact(4), Err(MvccError::Compacted { .. })));
    assert!(matches!(store.compact(7), Err(MvccError::FutureRev { .. })));
}

#[test]
fn deletes_report_counts_previous_values_and_revisions() {
    let (_dir, _b, store) = temp_store();
    put(&store, "a", "1");
    put(&store, "b", "2");
    put(&store, "c", "3");
    let resp = store
        .delete_range(&DeleteRangeRequest {
            key: b"a".to_vec(),
            range_end: Some(b"c".to_vec()),
            prev_kv: true,
        })
        .unwrap();
    assert_eq!((resp.deleted, resp.revision), (2, 5));
    assert_eq!(keys(&resp.prev_kvs), ["a", "b"]);
    // Deleting nothing does not move the revision.
    let none = store.delete_range(&DeleteRangeRequest::key("zz")).unwrap();
    assert_eq!((none.deleted, none.revision), (0, 5));
    assert_eq!(store.rev(), 5);
    // A re-created key starts a new generation.
    assert_eq!(put(&store, "a", "again"), 6);
    let kv = get(&store, "a").unwrap();
    assert_eq!((kv.create_revision, kv.version), (6, 1));
    // The deletion is visible at its revision, the old value before.
    let at = |rev| {
        store
            .range(
                b"a",
                None,
                &RangeOptions {
                    rev,
                    ..Default::default()
                },
            )
            .unwrap()
            .kvs
    };
    assert!(at(5).is_empty());
    assert_eq!(at(4)[0].value, b"1");
    assert!(matches!(
        store.delete_range(&DeleteRangeRequest::key("")),
        Err(MvccError::EmptyKey)
    ));
}

#[test]
fn put_options_prev_kv_and_ignores() {
    let leases = TestLeases::with(&[7]);
    let dir = tempfile::tempdir().unwrap();
    let (_b, store) = open_store(
        dir.path(),
        StoreConfig {
            lease_registry: Some(leases.clone()),
            ..Default::default()
        },
    );
    let mut req = PutRequest::new("k", "v1");
    req.lease = 7;
    req.prev_kv = true;
    let resp = store.put(&req).unwrap();
    assert_eq!(resp.prev_kv, None);

    let mut keep_value = PutRequest::new("k", "");
    keep_value.ignore_value = true;
    keep_value.prev_kv = true;
    let resp = store.put(&keep_value).unwrap();
    assert_eq!(resp.prev_kv.unwrap().value, b"v1");
    let kv = get(&store, "k").unwrap();
    // ignore_value keeps the value; the lease (0 in the request) is replaced.
    assert_eq!(
        (kv.value.as_slice(), kv.lease, kv.version),
        (&b"v1"[..], 0, 2)
    );

    store
        .put(&PutRequest {
            lease: 7,
            ..PutRequest::new("k", "v2")
        })
        .unwrap();
    let mut keep_lease = PutRequest::new("k", "v3");
    keep_lease.ignore_lease = true;
    store.put(&keep_lease).unwrap();
    let kv = get(&store, "k").unwrap();
    assert_eq!((kv.value.as_slice(), kv.lease), (&b"v3"[..], 7));

    let mut missing = PutRequest::new("nope", "");
    missing.ignore_value = true;
    let rev = store.rev();
    assert!(matches!(store.put(&missing), Err(MvccError::KeyNotFound)));
    assert_eq!(store.rev(), rev);
    let mut bad = PutRequest::new("k", "x");
    bad.ignore_value = true;
    assert!(matches!(store.put(&bad), Err(MvccError::ValueProvided)));
    let mut bad = PutRequest::new("k", "");
    bad.ignore_lease = true;
    bad.lease = 7;
    assert!(matches!(store.put(&bad), Err(MvccError::LeaseProvided)));
}

#[test]
fn leases_are_validated_attached_and_detached() {
    let leases = TestLeases::with(&[1, 2]);
    let dir = tempfile::tempdir().unwrap();
    let (_b, store) = open_store(
        dir.path(),
        StoreConfig {
            lease_registry: Some(leases.clone()),
            ..Default::default()
        },
    );
    let with_lease = |k: &str, lease| PutRequest {
        lease,
        ..PutRequest::new(k, "v")
    };
    assert!(matches!(
        store.put(&with_lease("a", 9)),
        Err(MvccError::LeaseNotFound(9))
    ));
    assert_eq!(store.rev(), 1);
    store.put(&with_lease("a", 1)).unwrap();
    store.put(&with_lease("b", 1)).unwrap();
    assert_eq!(leases.keys(1), [b"a".to_vec(), b"b".to_vec()]);
    store.put(&with_lease("a", 2)).unwrap();
    assert_eq!(leases.keys(1), [b"b".to_vec()]);
    assert_eq!(leases.keys(2), [b"a".to_vec()]);
    store.put(&with_lease("a", 0)).unwrap();
    assert!(leases.keys(2).is_empty());
    store.delete_range(&DeleteRangeRequest::key("b")).unwrap();
    assert!(leases.keys(1).is_empty());

    // Without a registry no lease exists.
    let (_dir, _b, bare) = temp_store();
    assert!(matches!(
        bare.put(&with_lease("a", 1)),
        Err(MvccError::LeaseNotFound(1))
    ));
}

#[test]
fn lease_revocation_deletes_keys_and_the_lease_record_in_one_batch() {
    let leases = TestLeases::with(&[5]);
    let dir = tempfile::tempdir().unwrap();
    let (backend, store) = open_store(
        dir.path(),
        StoreConfig {
            lease_registry: Some(leases.clone()),
            ..Default::default()
        },
    );
    {
        let mut txn = store.write().unwrap();
        txn.create_bucket(Bucket::LEASE).unwrap();
        txn.raw_put(Bucket::LEASE, b"lease-5", b"ttl").unwrap();
        txn.put(b"k", b"v", 5).unwrap();
        assert!(matches!(
            txn.raw_put(Bucket::KEY, b"x", b"y"),
            Err(MvccError::ReservedBucket(_))
        ));
        txn.end().unwrap();
    }
    // What a lessor's revoke does: delete the lease's keys and its record together.
    let mut txn = store.write().unwrap();
    for key in leases.keys(5) {
        txn.delete_range(&key, None).unwrap();
    }
    txn.raw_delete(Bucket::LEASE, b"lease-5").unwrap();
    assert_eq!(txn.raw_get(Bucket::LEASE, b"lease-5").unwrap(), None);
    let committed = txn.end().unwrap();
    assert_eq!(committed.rev, 3);
    assert!(get(&store, "k").is_none());
    assert!(leases.keys(5).is_empty());
    assert_eq!(
        backend
            .read_tx()
            .unwrap()
            .get(Bucket::LEASE, b"lease-5")
            .unwrap(),
        None
    );
}

#[derive(Default)]
struct Recorder(Mutex<Vec<(i64, Vec<Change>)>>);

impl ChangeObserver for Recorder {
    fn on_changes(&self, rev: i64, changes: &[Change]) {
        self.0.lock().push((rev, changes.to_vec()));
    }
}

#[test]
fn a_write_txn_changes_at_one_revision_and_reports_its_changes() {
    let recorder = Arc::new(Recorder::default());
    let dir = tempfile::tempdir().unwrap();
    let (_b, store) = open_store(
        dir.path(),
        StoreConfig {
            observer: Some(recorder.clone()),
            ..Default::default()
        },
    );
    let mut txn = store.write().unwrap();
    assert_eq!(txn.rev(), 1);
    assert_eq!(txn.put(b"a", b"1", 0).unwrap(), 2);
    assert_eq!(txn.put(b"a", b"2", 0).unwrap(), 2);
    assert_eq!(txn.put(b"b", b"3", 0).unwrap(), 2);
    // The transaction reads its own writes; other readers do not yet.
    let own = txn.range(b"a", None, &RangeOptions::default()).unwrap();
    assert_eq!(
        (own.kvs[0].value.as_slice(), own.kvs[0].version, own.rev),
        (&b"2"[..], 2, 2)
    );
    assert_eq!(store.read().unwrap().rev(), 1);
    assert_eq!(txn.delete_range(b"b", None).unwrap(), (1, 2));
    let committed = txn.end().unwrap();
    assert_eq!(committed.rev, 2);
    let kinds: Vec<_> = committed.changes.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        [
            ChangeKind::Put,
            ChangeKind::Put,
            ChangeKind::Put,
            ChangeKind::Delete
        ]
    );
    assert_eq!(committed.changes[3].kv.mod_revision, 2);
    assert_eq!(store.rev(), 2);
    assert_eq!(get(&store, "a").unwrap().version, 2);
    assert!(get(&store, "b").is_none());
    assert_eq!(recorder.0.lock().clone(), [(2, committed.changes.clone())]);

    // A write transaction that changes nothing keeps the revision and tells nobody.
    let txn = store.write().unwrap();
    assert_eq!(txn.end().unwrap().rev, 2);
    assert_eq!(recorder.0.lock().len(), 1);
}

fn put_op(k: &str, v: &str) -> RequestOp {
    RequestOp::Put(PutRequest::new(k, v))
}

fn range_op(k: &str) -> RequestOp {
    RequestOp::Range(RangeRequest {
        key: k.into(),
        ..Default::default()
    })
}

#[test]
fn txn_compares_choose_the_branch_and_run_at_one_revision() {
    let (_dir, _b, store) = temp_store();
    put(&store, "k", "v1");
    let cas = |expected: i64, value: &str| TxnRequest {
        compare: vec![Compare::new(
            "k",
            CompareResult::Equal,
            CompareTarget::ModRevision(expected),
        )],
        success: vec![put_op("k", value), put_op("other", value), range_op("k")],
        failure: vec![range_op("k")],
    };
    let ok = store.txn(&cas(2, "v2")).unwrap();
    assert!(ok.succeeded);
    assert_eq!(ok.revision, 3);
    let ResponseOp::Put(p) = &ok.responses[0] else {
        panic!()
    };
    assert_eq!(p.revision, 3);
    let ResponseOp::Range(r) = &ok.responses[2] else {
        panic!()
    };
    assert_eq!((r.kvs[0].value.as_slice(), r.rev), (&b"v2"[..], 3));
    assert_eq!(get(&store, "other").unwrap().mod_revision, 3);

    // A failed guard runs the failure branch; read-only, it keeps the revision.
    let failed = store.txn(&cas(2, "v3")).unwrap();
    assert!(!failed.succeeded);
    assert_eq!(failed.revision, 3);
    let ResponseOp::Range(r) = &failed.responses[0] else {
        panic!()
    };
    assert_eq!(r.kvs[0].value, b"v2");
    assert_eq!(store.rev(), 3);
}

#[test]
fn txn_compares_on_missing_keys_and_ranges() {
    let (_dir, _b, store) = temp_store();
    put(&store, "a1", "x");
    put(&store, "a2", "y");
    let holds = |c: Compare| {
        store
            .txn(&TxnRequest {
                compare: vec![c],
                ..Default::default()
            })
            .unwrap()
            .succeeded
    };
    use CompareResult::*;
    use CompareTarget::*;
    assert!(holds(Compare::new("missing", Equal, Version(0))));
    assert!(holds(Compare::new("missing", Equal, CreateRevision(0))));
    assert!(holds(Compare::new("missing", Equal, Lease(0))));
    assert!(!holds(Compare::new("missing", Equal, Value(vec![]))));
    assert!(!holds(Compare::new(
        "missing",
        NotEqual,
        Value(b"z".to_vec())
    )));
    let range = |result, target| Compare {
        range_end: Some(b"a3".to_vec()),
        ..Compare::new("a", result, target)
    };
    assert!(holds(range(Greater, ModRevision(1))));
    assert!(!holds(range(Equal, Value(b"x".to_vec()))));
    assert!(holds(range(Less, Value(b"z".to_vec()))));
    assert!(holds(range(Equal, Version(1))));
}

#[test]
fn nested_txns_evaluate_guards_before_running_anything() {
    let (_dir, _b, store) = temp_store();
    let nested = TxnRequest {
        // Evaluated before the outer put runs: "k" does not exist yet.
        compare: vec![Compare::new(
            "k",
            CompareResult::Equal,
            CompareTarget::Version(0),
        )],
        success: vec![put_op("inner", "then")],
        failure: vec![put_op("inner", "else")],
    };
    let resp = store
        .txn(&TxnRequest {
            compare: vec![],
            success: vec![put_op("k", "v"), RequestOp::Txn(nested)],
            failure: vec![],
        })
        .unwrap();
    assert!(resp.succeeded);
    assert_eq!(resp.revision, 2);
    let ResponseOp::Txn(inner) = &resp.responses[1] else {
        panic!()
    };
    assert!(inner.succeeded);
    assert_eq!(inner.revision, 0);
    assert_eq!(get(&store, "inner").unwrap().value, b"then");
    assert_eq!(get(&store, "k").unwrap().mod_revision, 2);
}

#[test]
fn txn_validation_errors_change_nothing() {
    let (_dir, _b, store) = temp_store();
    put(&store, "k", "v");
    let rev = store.rev();
    let dup = TxnRequest {
        success: vec![put_op("a", "1"), put_op("a", "2")],
        ..Default::default()
    };
    let err = store.txn(&dup).unwrap_err();
    assert!(matches!(err, MvccError::DuplicateKey));
    assert_eq!(
        err.to_string(),
        "etcdserver: duplicate key given in txn request"
    );
    let put_and_delete = TxnRequest {
        success: vec![
            RequestOp::DeleteRange(DeleteRangeRequest {
                key: b"a".to_vec(),
                range_end: Some(b"c".to_vec()),
                prev_kv: false,
            }),
            put_op("b", "1"),
        ],
        ..Default::default()
    };
    assert!(matches!(
        store.txn(&put_and_delete),
        Err(MvccError::DuplicateKey)
    ));
    let empty = TxnRequest {
        success: vec![put_op("", "1")],
        ..Default::default()
    };
    assert!(matches!(store.txn(&empty), Err(MvccError::EmptyKey)));
    let ignore_missing = TxnRequest {
        success: vec![
            put_op("x", "1"),
            RequestOp::Put(PutRequest {
                ignore_value: true,
                ..PutRequest::new("missing", "")
            }),
        ],
        ..Default::default()
    };
    assert!(matches!(
        store.txn(&ignore_missing),
        Err(MvccError::KeyNotFound)
    ));
    let future_range = TxnRequest {
        success: vec![
            put_op("x", "1"),
            RequestOp::Range(RangeRequest {
                key: b"k".to_vec(),
                range_end: None,
                options: RangeOptions {
                    rev: rev + 1,
                    ..Default::default()
                },
            }),
        ],
        ..Default::default()
    };
    assert!(matches!(
        store.txn(&future_range),
        Err(MvccError::FutureRev { .. })
    ));
    assert_eq!(store.rev(), rev);
    assert!(get(&store, "x").is_none());
}

#[test]
fn closed_stores_refuse_work() {
    let (_dir, _b, store) = temp_store();
    put(&store, "k", "v");
    let read = store.read().unwrap();
    store.close();
    assert!(matches!(store.write(), Err(MvccError::Closed)));
    assert!(matches!(store.read(), Err(MvccError::Closed)));
    // An open read transaction still reads its snapshot.
    assert_eq!(
        read.range(b"k", None, &RangeOptions::default())
            .unwrap()
            .kvs
            .len(),
        1
    );
}

/// What the store served, as etcd's mvcc counts it for `etcd_mvcc_{range,put,delete,txn}_total`:
/// each range (a txn's compares and reads included), put and delete of a range (however
/// many keys), and each transaction of more than one of these.
#[test]
fn operations_are_counted_as_etcd_counts_them() {
    let (_dir, _b, store) = temp_store();
    let at_start = store.op_counts();
    put(&store, "a", "1");
    put(&store, "b", "2");
    get(&store, "a");
    let deleted = store
        .delete_range(&DeleteRangeRequest {
            key: b"a".to_vec(),
            range_end: Some(b"c".to_vec()),
            prev_kv: false,
        })
        .unwrap();
    assert_eq!(deleted.deleted, 2);
    let c = store.op_counts();
    assert_eq!(
        (c.puts, c.deletes, c.ranges - at_start.ranges, c.txns),
        (2, 1, 1, 0)
    );
    // A write txn: one compare (a range) and two puts: one transaction.
    store
        .txn(&TxnRequest {
            compare: vec![Compare::new(
                "k",
                CompareResult::Equal,
                CompareTarget::Version(0),
            )],
            success: vec![put_op("k", "v"), put_op("l", "v")],
            failure: vec![],
        })
        .unwrap();
    // A read-only txn of two ranges: one more.
    store
        .txn(&TxnRequest {
            compare: vec![],
            success: vec![range_op("k"), range_op("l")],
            failure: vec![],
        })
        .unwrap();
    let d = store.op_counts();
    assert_eq!((d.puts, d.deletes, d.txns), (4, 1, 2));
    assert!(d.ranges >= c.ranges + 3, "{c:?} -> {d:?}");
}
