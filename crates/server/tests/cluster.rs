//! Three `ferrocd` processes over the TCP peer transport: writes on one member are read on
//! the others, the member list names all three with their published client URLs, one leader
//! is elected, and followers forward lease keep-alives and TimeToLive to it.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{Ferrocd, MemberSpec, eventually, leader};

/// Starts three members and waits until each serves linearizable reads.
fn start_three(dir: &std::path::Path, names: [&str; 3]) -> (Vec<MemberSpec>, Vec<Ferrocd>) {
    let specs: Vec<MemberSpec> = names.iter().map(|n| MemberSpec::new(n)).collect();
    let members = common::start_cluster(dir, &specs, &[], &|_| Vec::new());
    (specs, members)
}

#[test]
fn three_processes_replicate() {
    let dir = tempfile::tempdir().unwrap();
    let (specs, members) = start_three(dir.path(), ["infra1", "infra2", "infra3"]);
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

#[test]
fn member_list_shows_client_urls_and_followers_forward_leases() {
    let dir = tempfile::tempdir().unwrap();
    let (specs, members) = start_three(dir.path(), ["m1", "m2", "m3"]);
    // Every member published its name and client URL; any member lists all of them.
    // (A member serves once its own attributes are applied; the others' may still be applying.)
    for m in &members {
        let lines: Vec<String> = specs
            .iter()
            .map(|s| {
                format!(
                    ", started, {}, {}, {}, false",
                    s.name,
                    s.peer_url(),
                    s.client_url()
                )
            })
            .collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let list = m.ok(&["member", "list"]);
            if list.lines().count() == 3 && lines.iter().all(|l| list.contains(l)) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{list}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let (l, leader_hex) = leader(&members);
    let leader_id = u64::from_str_radix(&leader_hex, 16).unwrap();
    let follower = (l + 1) % 3;
    // "lease 694d77aa9e38260f granted with TTL(60s)"
    let granted = members[l].ok(&["lease", "grant", "60"]);
    let id = granted.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(granted, format!("lease {id} granted with TTL(60s)\n"));
    std::thread::sleep(Duration::from_millis(1500));
    // The follower forwards the keep-alive to the leader, which renews the lease.
    assert_eq!(
        members[follower].ok(&["lease", "keep-alive", "--once", &id]),
        format!("lease {id} keepalived with TTL(60)\n")
    );
    let ttl = members[follower].ok(&["lease", "timetolive", &id]);
    assert!(
        ttl.starts_with(&format!("lease {id} granted with TTL(60s), remaining(")),
        "{ttl}"
    );
    // The answers come from the leader: their headers name it.
    let json = members[follower].ok(&["lease", "timetolive", &id, "-w", "json"]);
    assert!(
        json.contains(&format!("\"member_id\":{leader_id},")),
        "leader {leader_hex}: {json}"
    );
    let json = members[follower].ok(&["lease", "keep-alive", "--once", &id, "-w", "json"]);
    assert!(
        json.contains(&format!("\"member_id\":{leader_id},")),
        "leader {leader_hex}: {json}"
    );
    // A lease that does not exist is reported like etcd through a follower too.
    assert_eq!(
        members[follower].ok(&["lease", "timetolive", "1234abcd"]),
        "lease 000000001234abcd already expired\n"
    );
}

/// Three members over unix socket peer URLs (etcd's `unix://` peers): they elect a leader and
/// replicate, the member list shows the socket URLs, and a follower killed with -9 (leaving
/// its socket file behind) restarts on the same socket and catches up.
#[test]
fn three_processes_over_unix_socket_peers() {
    let dir = tempfile::tempdir().unwrap();
    let specs: Vec<MemberSpec> = ["u1", "u2", "u3"]
        .iter()
        .map(|n| MemberSpec::new(n))
        .collect();
    let peer = |s: &MemberSpec| {
        format!(
            "unix://{}",
            dir.path().join(format!("{}.peer", s.name)).display()
        )
    };
    let initial = specs
        .iter()
        .map(|s| format!("{}={}", s.name, peer(s)))
        .collect::<Vec<_>>()
        .join(",");
    let mut members: Vec<Ferrocd> = specs
        .iter()
        .map(|s| {
            let url = peer(s);
            Ferrocd::start_member_with(
                s.clone(),
                &initial,
                dir.path(),
                &[
                    "--listen-peer-urls",
                    &url,
                    "--initial-advertise-peer-urls",
                    &url,
                ],
            )
        })
        .collect();
    for m in &mut members {
        m.wait_ready(Duration::from_secs(60));
    }
    let serializable =
        |m: &Ferrocd, key: &str| m.ok(&["get", key, "--consistency=s", "--print-value-only"]);
    members[0].ok(&["put", "k", "v"]);
    eventually(Duration::from_secs(20), || {
        (serializable(&members[2], "k") == "v\n").then_some(())
    });
    let list = members[1].ok(&["member", "list"]);
    for s in &specs {
        assert!(list.contains(&peer(s)), "{list}");
    }
    let (l, _) = leader(&members);
    let victim = (l + 1) % members.len();
    members[victim].kill9();
    members[l].ok(&["put", "k2", "v2"]);
    members[victim].restart();
    members[victim].wait_ready(Duration::from_secs(60));
    eventually(Duration::from_secs(20), || {
        (serializable(&members[victim], "k2") == "v2\n").then_some(())
    });
}

/// With client TLS only (https client URLs; the trusted CA makes client certificates
/// required), a follower still forwards lease keep-alives and time-to-live to the leader:
/// over TLS, presenting its own certificate, as Kubernetes' clients rely on any member.
#[test]
fn followers_forward_leases_to_an_https_leader() {
    let dir = tempfile::tempdir().unwrap();
    let ca = common::pki::Ca::new(dir.path(), "clients");
    let cert = ca.issue("member", "member", &["127.0.0.1", "localhost"], 2);
    let specs: Vec<MemberSpec> = ["t1", "t2", "t3"]
        .iter()
        .map(|n| MemberSpec::new_tls(n))
        .collect();
    let initial = common::initial_cluster(&specs);
    let flags = [
        "--cert-file",
        cert.cert_str(),
        "--key-file",
        cert.key_str(),
        "--trusted-ca-file",
        ca.cert_str(),
    ];
    let ctl = vec![
        format!("--cacert={}", ca.cert_str()),
        format!("--cert={}", cert.cert_str()),
        format!("--key={}", cert.key_str()),
    ];
    let mut members: Vec<Ferrocd> = specs
        .iter()
        .map(|s| {
            let mut m = Ferrocd::start_member_with(s.clone(), &initial, dir.path(), &flags);
            m.ctl_flags = ctl.clone();
            m
        })
        .collect();
    for m in &mut members {
        m.wait_ready(Duration::from_secs(60));
    }
    let (l, _) = leader(&members);
    let follower = (l + 1) % members.len();
    let granted = members[l].ok(&["lease", "grant", "60"]);
    let id = granted.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(
        members[follower].ok(&["lease", "keep-alive", "--once", &id]),
        format!("lease {id} keepalived with TTL(60)\n")
    );
    let ttl = members[follower].ok(&["lease", "timetolive", &id]);
    assert!(ttl.contains("granted with TTL(60s)"), "{ttl}");
}
