//! One member alone: put/get, txn, compaction, leases, restart.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::{TestCluster, WAIT};
use mvcc::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, PutRequest, RangeOptions,
    RangeRequest, RequestOp, TxnRequest,
};
use node::NodeError;

fn range(key: &str, rev: i64) -> RangeRequest {
    RangeRequest {
        key: key.as_bytes().to_vec(),
        range_end: None,
        options: RangeOptions {
            rev,
            ..RangeOptions::default()
        },
    }
}

#[test]
fn put_get_delete() {
    let c = TestCluster::new(1, 10_000);
    c.wait_leader();
    let r1 = c.put(0, "a", "1");
    let r2 = c.put(0, "a", "2");
    assert!(r2 > r1);
    assert_eq!(c.get(0, "a", false), Some(b"2".to_vec()));
    assert_eq!(c.get(0, "a", true), Some(b"2".to_vec()));
    let old = c.node(0).range(range("a", r1), false).wait(WAIT).unwrap();
    assert_eq!(old.body.kvs[0].value, b"1");
    let del = c
        .node(0)
        .delete_range(DeleteRangeRequest::key("a"))
        .wait(WAIT)
        .unwrap();
    assert_eq!(del.body.deleted, 1);
    assert_eq!(c.get(0, "a", false), None);
    let header = del.header;
    assert_eq!(header.member_id, c.id(0));
    assert!(header.raft_term >= 1);
}

#[test]
fn txn_and_compact() {
    let c = TestCluster::new(1, 10_000);
    c.wait_leader();
    let r1 = c.put(0, "k", "v1");
    let txn = TxnRequest {
        compare: vec![Compare::new(
            "k",
            CompareResult::Equal,
            CompareTarget::Value(b"v1".to_vec()),
        )],
        success: vec![RequestOp::Put(PutRequest::new("k", "v2"))],
        failure: vec![],
    };
    let resp = c.node(0).txn(txn.clone()).wait(WAIT).unwrap();
    assert!(resp.body.succeeded);
    let again = c.node(0).txn(txn).wait(WAIT).unwrap();
    assert!(!again.body.succeeded);
    let ro = TxnRequest {
        compare: vec![],
        success: vec![RequestOp::Range(range("k", 0))],
        failure: vec![],
    };
    assert!(c.node(0).txn(ro).wait(WAIT).unwrap().body.succeeded);

    let r3 = c.put(0, "k", "v3");
    c.node(0).compact(r3, true).wait(WAIT).unwrap();
    let err = c
        .node(0)
        .range(range("k", r1), false)
        .wait(WAIT)
        .unwrap_err();
    assert_eq!(err, NodeError::Compacted);
    let err = c.node(0).compact(r1, false).wait(WAIT).unwrap_err();
    assert_eq!(err, NodeError::Compacted);
}

#[test]
fn leases_grant_attach_revoke() {
    let c = TestCluster::new(1, 10_000);
    c.wait_leader();
    let n = c.node(0);
    let grant = n.lease_grant(0, 60).wait(WAIT).unwrap().body;
    assert_ne!(grant.id, 0);
    assert_eq!(
        n.lease_grant(grant.id, 60).wait(WAIT).unwrap_err(),
        NodeError::LeaseExists
    );
    let mut put = PutRequest::new("leased", "x");
    put.lease = grant.id;
    n.put(put).wait(WAIT).unwrap();
    let mut bad = PutRequest::new("other", "x");
    bad.lease = 42;
    assert_eq!(n.put(bad).wait(WAIT).unwrap_err(), NodeError::LeaseNotFound);

    let ttl = n.lease_time_to_live(grant.id, true).unwrap().body;
    assert_eq!(ttl.keys, vec![b"leased".to_vec()]);
    assert!(n.lease_renew(grant.id).unwrap().body >= 60);
    assert_eq!(n.leases().body, vec![grant.id]);

    n.lease_revoke(grant.id).wait(WAIT).unwrap();
    assert_eq!(c.get(0, "leased", false), None);
    assert!(n.leases().body.is_empty());
    assert_eq!(
        n.lease_revoke(grant.id).wait(WAIT).unwrap_err(),
        NodeError::LeaseNotFound
    );
}

#[test]
fn expired_lease_is_revoked_by_the_leader() {
    let c = TestCluster::new(1, 10_000);
    c.wait_leader();
    let n = c.node(0);
    // The minimum TTL is 1 s with a 100 ms election timeout.
    let grant = n.lease_grant(0, 1).wait(WAIT).unwrap().body;
    let mut put = PutRequest::new("ephemeral", "x");
    put.lease = grant.id;
    n.put(put).wait(WAIT).unwrap();
    assert!(common::eventually(WAIT, || c
        .get(0, "ephemeral", true)
        .is_none()));
    assert!(n.leases().body.is_empty());
}

#[test]
fn restart_keeps_data_and_applies_nothing_twice() {
    let mut c = TestCluster::new(1, 10_000);
    c.wait_leader();
    for i in 0..20 {
        c.put(0, &format!("k{i}"), &format!("v{i}"));
    }
    let rev = c.put(0, "last", "x");
    c.stop(0);
    c.start(0);
    c.wait_leader();
    assert_eq!(c.get(0, "k7", false), Some(b"v7".to_vec()));
    // Replaying the WAL must not apply the puts again: the revision is unchanged.
    assert_eq!(c.node(0).watchable_store().rev(), rev);
    let status = c.node(0).status().unwrap();
    assert!(status.raft_applied_index >= 22);
    assert_eq!(status.leader, c.id(0));
}

#[test]
fn snapshots_are_taken_and_restart_uses_them() {
    let mut c = TestCluster::new(1, 10);
    c.wait_leader();
    for i in 0..75 {
        c.put(0, &format!("k{i}"), "v");
    }
    // Snapshots are written by the apply thread and recorded by the raft loop: wait until
    // every one taken so far is purged down to what is kept.
    let count = |suffix: &str| {
        std::fs::read_dir(c.dir.path().join("n0/member/snap"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .to_string_lossy()
                    .ends_with(suffix)
            })
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while (count(".snap.db") != 1 || count(".snap") != 5) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Seven snapshots were taken; five metadata files are kept (`max_snapshots`, etcd's
    // default), one backend copy (the newest: the only one raft sends).
    assert_eq!(count(".snap"), 5, "metadata files kept");
    assert_eq!(count(".snap.db"), 1, "backend copies kept");
    c.stop(0);
    c.start(0);
    c.wait_leader();
    assert_eq!(c.get(0, "k74", false), Some(b"v".to_vec()));
    assert_eq!(c.get(0, "k0", false), Some(b"v".to_vec()));
}
