//! Membership changes: a learner joins, catches up, is promoted, and a member is removed.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{TOKEN, TestCluster, WAIT, eventually};
use node::{ClusterState, Node, NodeConfig, NodeError};

#[test]
fn learner_added_promoted_then_removed() {
    let c = TestCluster::new(3, 10_000);
    let l = c.wait_leader();
    c.put(l, "before", "1");

    let urls = vec!["http://127.0.0.1:2399".to_string()];
    let added = c
        .node(l)
        .member_add(urls.clone(), true)
        .wait(WAIT)
        .unwrap()
        .body;
    assert!(added.member.is_learner);
    assert_eq!(added.members.len(), 4);
    // Within the same second the id collides first (etcd checks ids before URLs).
    assert!(matches!(
        c.node(l)
            .member_add(urls.clone(), true)
            .wait(WAIT)
            .unwrap_err(),
        NodeError::PeerUrlExists | NodeError::MemberExists
    ));

    // Start the new member, joining the existing cluster.
    let new_id = added.member.id;
    let (transport, rx) = c.net.join(new_id);
    let mut members = c.members.clone();
    members.push(("n3".into(), urls.clone()));
    let mut cfg = NodeConfig::new("n3", c.dir.path().join("n3"), members, transport, rx);
    cfg.cluster_token = TOKEN.into();
    cfg.cluster_state = ClusterState::Existing;
    cfg.heartbeat = Duration::from_millis(10);
    cfg.election = Duration::from_millis(100);
    cfg.member_id = Some(new_id);
    let learner = Node::start(cfg).unwrap();
    assert!(c.wait_value(l, "before", "1"));
    assert!(eventually(WAIT, || {
        learner
            .range(
                mvcc::RangeRequest {
                    key: b"before".to_vec(),
                    ..Default::default()
                },
                true,
            )
            .wait(WAIT)
            .is_ok_and(|r| r.body.count == 1)
    }));
    assert!(eventually(WAIT, || c
        .node(c.wait_leader())
        .member_promote(new_id)
        .wait(WAIT)
        .is_ok()));
    let l = c.wait_leader();
    let members = c.node(l).member_list().body;
    assert!(members.iter().all(|m| !m.is_learner));

    let removed = c.node(l).member_remove(new_id).wait(WAIT).unwrap().body;
    assert_eq!(removed.len(), 3);
    learner.stop();
    c.put_anywhere("after", "2");
}
