//! Three members in one process over `LocalNetwork`: election, replication, linearizable reads
//! on followers, failover, restart, catch-up through a snapshot, durability.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::{TestCluster, WAIT, eventually};

#[test]
fn leader_elected_and_writes_replicate() {
    let c = TestCluster::new(3, 10_000);
    let l = c.wait_leader();
    c.put(l, "a", "1");
    for i in 0..3 {
        assert!(c.wait_value(i, "a", "1"), "node {i} missing the write");
    }
    // Proposals made on a follower are forwarded to the leader.
    let f = (l + 1) % 3;
    c.put(f, "b", "2");
    assert!(c.wait_value(l, "b", "2"));
    assert_eq!(c.node(0).cluster_id(), c.node(2).cluster_id());
    assert_eq!(c.node(f).member_list().body.len(), 3);
}

#[test]
fn every_member_lists_every_members_published_attributes() {
    let c = TestCluster::new(3, 10_000);
    c.wait_leader();
    let mut expected: Vec<(u64, String, Vec<String>)> = (0..3)
        .map(|i| (c.id(i), c.members[i].0.clone(), vec![c.client_url(i)]))
        .collect();
    expected.sort();
    for i in 0..3 {
        let listed = || {
            let mut got: Vec<(u64, String, Vec<String>)> = c
                .node(i)
                .member_list()
                .body
                .into_iter()
                .map(|m| (m.id, m.name, m.client_urls))
                .collect();
            got.sort();
            got
        };
        assert!(
            eventually(WAIT, || listed() == expected),
            "node {i} lists {:?}",
            listed()
        );
        assert!(
            eventually(WAIT, || c.node(i).published()),
            "node {i} never published"
        );
        let h = c.node(i).header();
        assert_eq!(h.member_id, c.id(i));
        assert_eq!(h.cluster_id, c.node(i).cluster_id());
        assert!(h.raft_term >= 1);
        assert_eq!(h.revision, c.node(i).member_list().header.revision);
    }
}

#[test]
fn linearizable_read_after_write_on_a_follower() {
    let c = TestCluster::new(3, 10_000);
    let l = c.wait_leader();
    for i in 0..20 {
        let v = format!("v{i}");
        c.put(l, "k", &v);
        for f in (0..3).filter(|&f| f != l) {
            assert_eq!(c.get(f, "k", false), Some(v.clone().into_bytes()));
        }
    }
}

#[test]
fn leader_stopped_new_leader_and_writes_continue() {
    let mut c = TestCluster::new(3, 10_000);
    let l = c.wait_leader();
    c.put(l, "before", "1");
    c.stop(l);
    let l2 = c.wait_leader();
    assert_ne!(l2, l);
    c.put_anywhere("after", "2");
    for i in (0..3).filter(|&i| i != l) {
        assert!(c.wait_value(i, "after", "2"));
        assert!(c.wait_value(i, "before", "1"));
    }
}

#[test]
fn restarted_node_catches_up() {
    let mut c = TestCluster::new(3, 10_000);
    let l = c.wait_leader();
    let f = (l + 1) % 3;
    c.put(l, "a", "1");
    assert!(c.wait_value(f, "a", "1"));
    c.stop(f);
    for i in 0..10 {
        c.put_anywhere(&format!("k{i}"), "x");
    }
    c.start(f);
    assert!(c.wait_value(f, "k9", "x"));
    assert!(c.wait_value(f, "a", "1"));
}

#[test]
fn node_behind_compaction_catches_up_through_a_snapshot() {
    let mut c = TestCluster::new(3, 20);
    let l = c.wait_leader();
    let f = (l + 1) % 3;
    c.stop(f);
    for i in 0..100 {
        c.put_anywhere(&format!("k{i}"), &format!("v{i}"));
    }
    c.start(f);
    assert!(c.wait_value(f, "k99", "v99"));
    assert!(c.wait_value(f, "k0", "v0"));
    // The follower keeps working after installing the snapshot.
    c.put_anywhere("post", "snap");
    assert!(c.wait_value(f, "post", "snap"));
    assert!(eventually(WAIT, || c
        .node(f)
        .status()
        .unwrap()
        .raft_applied_index
        == c.node(c.wait_leader()).status().unwrap().raft_applied_index));
}

#[test]
fn every_acknowledged_write_survives_a_full_restart() {
    let mut c = TestCluster::new(3, 15);
    c.wait_leader();
    let mut acked = Vec::new();
    for i in 0..40 {
        let k = format!("k{i}");
        c.put_anywhere(&k, &i.to_string());
        acked.push((k, i.to_string()));
    }
    c.stop_all();
    for i in 0..3 {
        c.start(i);
    }
    let l = c.wait_leader();
    for (k, v) in &acked {
        assert_eq!(c.get(l, k, false), Some(v.clone().into_bytes()), "{k} lost");
    }
    for i in 0..3 {
        assert!(c.wait_value(i, "k39", "39"));
    }
}

#[test]
fn move_leader_hands_over() {
    let c = TestCluster::new(3, 10_000);
    let l = c.wait_leader();
    let target = (l + 1) % 3;
    c.node(l).move_leader(c.id(target)).wait(WAIT).unwrap();
    assert!(eventually(WAIT, || c.node(target).is_leader()));
    c.put_anywhere("x", "y");
}
