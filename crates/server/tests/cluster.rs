//! Three `ferrocd` processes over the TCP peer transport: writes on one member are read on
//! the others, the member list names all three, and one leader is elected.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{Ferrocd, MemberSpec, eventually};

#[test]
fn three_processes_replicate() {
    let dir = tempfile::tempdir().unwrap();
    let specs: Vec<MemberSpec> = ["infra1", "infra2", "infra3"]
        .iter()
        .map(|n| MemberSpec::new(n))
        .collect();
    let initial = specs
        .iter()
        .map(|s| format!("{}={}", s.name, s.peer_url()))
        .collect::<Vec<_>>()
        .join(",");
    let mut members: Vec<Ferrocd> = specs
        .iter()
        .map(|s| Ferrocd::start_member(s.clone(), &initial, dir.path()))
        .collect();
    for m in &mut members {
        m.wait_ready(Duration::from_secs(60));
    }
    assert_eq!(members[0].ok(&["put", "k", "v1"]), "OK\n");
    assert_eq!(members[2].ok(&["put", "k2", "v2"]), "OK\n");
    for m in &members {
        // Linearizable reads on every member see both writes.
        assert_eq!(m.ok(&["get", "k", "--prefix"]), "k\nv1\nk2\nv2\n");
    }
    let list = members[1].ok(&["member", "list"]);
    assert_eq!(list.lines().count(), 3, "{list}");
    for s in &specs {
        assert!(
            list.contains(&format!(", {}, {}, ", s.name, s.peer_url())),
            "{list}"
        );
    }
    // Exactly one leader, and every member agrees on it.
    let leaders = eventually(Duration::from_secs(20), || {
        let leads: Vec<bool> = members
            .iter()
            .map(|m| {
                let s = m.ok(&["endpoint", "status"]);
                s.split(", ").nth(4) == Some("true")
            })
            .collect();
        (leads.iter().filter(|l| **l).count() == 1).then_some(leads)
    });
    assert_eq!(leaders.len(), 3);
    // A watch on a follower sees a write made through another member.
    let follower = leaders.iter().position(|l| !l).unwrap();
    let writer = (follower + 1) % 3;
    let w = common::Background::start(&members[follower].endpoint(), &["watch", "wk"]);
    std::thread::sleep(Duration::from_millis(700));
    members[writer].ok(&["put", "wk", "x"]);
    std::thread::sleep(Duration::from_millis(700));
    let out = w.finish();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "PUT\nwk\nx\n");
}
