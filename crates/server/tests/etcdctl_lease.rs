//! etcdctl 3.4 `lease` commands against `ferrocd`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::Ferrocd;

fn lease_id(granted: &str) -> String {
    // "lease 694d77aa9e38260f granted with TTL(60s)"
    let mut words = granted.split_whitespace();
    assert_eq!(words.next(), Some("lease"), "{granted}");
    let id = words.next().expect("an id").to_owned();
    assert!(
        granted.ends_with("granted with TTL(60s)\n"),
        "unexpected output: {granted}"
    );
    id
}

#[test]
fn grant_keep_alive_time_to_live_list_revoke() {
    let f = Ferrocd::start();
    let id = lease_id(&f.ok(&["lease", "grant", "60"]));
    assert_eq!(
        f.ok(&["put", "leased", "v", &format!("--lease={id}")]),
        "OK\n"
    );
    let ttl = f.ok(&["lease", "timetolive", &id, "--keys"]);
    assert!(
        ttl.starts_with(&format!("lease {id} granted with TTL(60s), remaining(")),
        "{ttl}"
    );
    assert!(ttl.ends_with("attached keys([leased])\n"), "{ttl}");
    assert_eq!(
        f.ok(&["lease", "keep-alive", "--once", &id]),
        format!("lease {id} keepalived with TTL(60)\n")
    );
    assert_eq!(f.ok(&["lease", "list"]), format!("found 1 leases\n{id}\n"));
    assert_eq!(
        f.ok(&["lease", "revoke", &id]),
        format!("lease {id} revoked\n")
    );
    // The lease's key went with it.
    assert_eq!(f.ok(&["get", "leased"]), "");
    assert_eq!(
        f.ok(&["lease", "timetolive", &id]),
        format!("lease {id} already expired\n")
    );
    assert_eq!(f.ok(&["lease", "list"]), "found 0 leases\n");
}

#[test]
fn missing_leases_are_reported_like_etcd() {
    let f = Ferrocd::start();
    assert_eq!(
        f.ok(&["lease", "timetolive", "1234"]),
        "lease 0000000000001234 already expired\n"
    );
    let e = f.err(&["lease", "revoke", "1234"]);
    assert!(
        e.contains("Error: failed to revoke lease (etcdserver: requested lease not found)"),
        "{e}"
    );
    let e = f.err(&["lease", "keep-alive", "--once", "1234"]);
    assert!(
        e.contains("Error: etcdserver: requested lease not found"),
        "{e}"
    );
    let e = f.err(&["put", "k", "v", "--lease=1234"]);
    assert!(e.contains("etcdserver: requested lease not found"), "{e}");
}
