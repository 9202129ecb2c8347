//! Membership changes on real processes, the way an operator makes them with etcdctl: a new
//! process joins a running cluster (`member add`, then `--initial-cluster-state existing`), a
//! learner is promoted, a removed member stops by itself; and member and cluster ids are
//! etcd's for the same flags.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Ferrocd, MemberSpec, eventually, leader};

/// The id (hex) of the member named `name` in `etcdctl member list` output.
fn member_id(list: &str, name: &str) -> Option<String> {
    list.lines()
        .find(|l| l.split(", ").nth(2) == Some(name))
        .and_then(|l| l.split(", ").next())
        .map(str::to_owned)
}

#[test]
fn a_new_process_joins_as_learner_is_promoted_and_stops_once_removed() {
    let dir = tempfile::tempdir().unwrap();
    let specs: Vec<MemberSpec> = ["a", "b", "c"].iter().map(|n| MemberSpec::new(n)).collect();
    let mut members = common::start_cluster(dir.path(), &specs, &[], &|_| Vec::new());
    for i in 0..20 {
        members[0].ok(&["put", &format!("k{i}"), &format!("v{i}")]);
    }

    // Add d as a learner, as `etcdctl member add` tells the operator to start it.
    let d = MemberSpec::new("d");
    let added = members[1].ok(&[
        "member",
        "add",
        "d",
        "--learner",
        &format!("--peer-urls={}", d.peer_url()),
    ]);
    let all = common::initial_cluster([&specs[0], &specs[1], &specs[2], &d]);
    let printed = added
        .lines()
        .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER="))
        .unwrap_or_else(|| panic!("member add prints the initial cluster for d: {added}"));
    let sorted = |s: &str| {
        let mut v: Vec<String> = s.trim_matches('"').split(',').map(str::to_owned).collect();
        v.sort();
        v
    };
    assert_eq!(sorted(printed), sorted(&all));
    assert!(added.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""));
    let mut joiner = Ferrocd::start_member_with(
        d.clone(),
        &all,
        dir.path(),
        &["--initial-cluster-state", "existing"],
    );
    // A learner serves serializable reads once it caught up (linearizable ones need a voter).
    eventually(Duration::from_secs(60), || {
        let out = joiner.ctl(&["get", "k19", "--consistency=s", "--print-value-only"]);
        (out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "v19").then_some(())
    });
    let list = members[0].ok(&["member", "list"]);
    let d_id = member_id(&list, "d").unwrap_or_else(|| panic!("d published its name: {list}"));
    assert!(list.contains(&format!("{d_id}, started, d, {}", d.peer_url())));
    assert!(
        list.lines()
            .any(|l| l.starts_with(&d_id) && l.ends_with("true"))
    );

    // Promote d: it votes, and serves linearizable reads.
    eventually(Duration::from_secs(30), || {
        members[0]
            .ctl(&["member", "promote", &d_id])
            .status
            .success()
            .then_some(())
    });
    joiner.ok(&["put", "from-d", "x"]);
    assert_eq!(
        members[2]
            .ok(&["get", "from-d", "--print-value-only"])
            .trim(),
        "x"
    );
    let cluster_header = |m: &Ferrocd| {
        let out = m.ok(&["member", "list", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["header"]["cluster_id"].as_u64().unwrap()
    };
    assert_eq!(cluster_header(&joiner), cluster_header(&members[0]));

    // The joined member restarts as itself (its WAL knows who it is).
    joiner.terminate(Duration::from_secs(10));
    joiner.restart();
    joiner.wait_ready(Duration::from_secs(60));
    assert_eq!(joiner.ok(&["get", "k0", "--print-value-only"]).trim(), "v0");

    // Removing d makes the process stop by itself.
    members[0].ok(&["member", "remove", &d_id]);
    let status = joiner
        .wait_exit(Duration::from_secs(30))
        .expect("a removed member stops by itself");
    assert!(status.success(), "exit status {status}");
    assert!(
        joiner
            .log_text()
            .contains("permanently removed from the cluster")
    );
    let list = members[0].ok(&["member", "list"]);
    assert_eq!(list.lines().count(), 3, "{list}");
    members[0].ok(&["put", "after-removal", "ok"]);

    // Removing the leader: it stops, the other two elect a leader among them and go on.
    let (l, lead_id) = leader(&members);
    let mut removed = members.remove(l);
    members[0].ok(&["member", "remove", &lead_id]);
    let status = removed
        .wait_exit(Duration::from_secs(30))
        .expect("a removed leader stops by itself");
    assert!(status.success(), "exit status {status}");
    eventually(Duration::from_secs(30), || {
        members[0]
            .ctl(&["put", "after-leader-removal", "ok"])
            .status
            .success()
            .then_some(())
    });
    assert_eq!(
        members[1]
            .ok(&["get", "after-leader-removal", "--print-value-only"])
            .trim(),
        "ok"
    );
    assert_eq!(members[1].ok(&["member", "list"]).lines().count(), 2);
}

#[test]
fn joining_without_member_add_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let a = MemberSpec::new("a");
    let mut first = Ferrocd::start_member(a.clone(), &common::initial_cluster([&a]), dir.path());
    first.wait_ready(Duration::from_secs(30));
    let b = MemberSpec::new("b");
    let mut joiner = Ferrocd::start_member_with(
        b.clone(),
        &common::initial_cluster([&a, &b]),
        dir.path(),
        &["--initial-cluster-state", "existing"],
    );
    let status = joiner
        .wait_exit(Duration::from_secs(30))
        .expect("an unknown member exits");
    assert!(!status.success());
    let log = joiner.log_text();
    assert!(
        log.contains("add this member first"),
        "the error should say what to do: {log}"
    );
}

/// etcd derives member and cluster ids from the peer URLs and the cluster token; the same flags
/// must give the same ids, so tooling that records them keeps working.
#[test]
fn member_and_cluster_ids_are_etcds() {
    let dir = tempfile::tempdir().unwrap();
    let spec = MemberSpec::new("default");
    let initial = common::initial_cluster([&spec]);
    let mut ours = Ferrocd::start_member(spec.clone(), &initial, dir.path());
    ours.wait_ready(Duration::from_secs(30));
    let ours_json: serde_json::Value =
        serde_json::from_str(&ours.ok(&["member", "list", "-w", "json"])).unwrap();
    ours.terminate(Duration::from_secs(10));

    // Real etcd 3.4 with the same flags, on the same ports.
    let etcd_dir = dir.path().join("etcd");
    let mut etcd = Command::new("/usr/bin/etcd")
        .args(["--name", "default"])
        .args(["--data-dir", etcd_dir.to_str().unwrap()])
        .args(["--listen-client-urls", &spec.client_url()])
        .args(["--advertise-client-urls", &spec.client_url()])
        .args(["--listen-peer-urls", &spec.peer_url()])
        .args(["--initial-advertise-peer-urls", &spec.peer_url()])
        .args(["--initial-cluster", &initial])
        .args(["--initial-cluster-token", "test-cluster"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("/usr/bin/etcd (Debian package etcd-server) must be installed");
    let etcd_json: serde_json::Value = eventually(Duration::from_secs(30), || {
        let out = common::etcdctl(&spec.endpoint(), &["member", "list", "-w", "json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    });
    let _ = etcd.kill();
    let _ = etcd.wait();
    assert_eq!(
        ours_json["header"]["cluster_id"], etcd_json["header"]["cluster_id"],
        "cluster ids"
    );
    assert_eq!(
        ours_json["members"][0]["ID"], etcd_json["members"][0]["ID"],
        "member ids"
    );
}

#[test]
fn member_update_changes_peer_urls() {
    let f = Ferrocd::start();
    let id = f
        .ok(&["member", "list"])
        .split(", ")
        .next()
        .unwrap()
        .to_owned();
    let new_url = format!("http://127.0.0.1:{}", common::free_port());
    assert_eq!(
        f.ok(&["member", "update", &id, &format!("--peer-urls={new_url}")]),
        // etcdctl prints both ids with `%16x`: space-padded to 16 characters.
        format!(
            "Member {id:>16} updated in cluster {:>16}\n",
            f.ok(&["member", "list", "-w", "json"])
                .split("\"cluster_id\":")
                .nth(1)
                .and_then(|s| s.split(',').next())
                .map(|s| format!("{:x}", s.parse::<u64>().unwrap()))
                .unwrap()
        )
    );
    assert!(
        f.ok(&["member", "list"]).contains(&new_url),
        "the member list shows the new peer URL"
    );
    let err = f.err(&["member", "update", "1234", "--peer-urls=http://127.0.0.1:1"]);
    assert!(err.contains("etcdserver: member not found"), "{err}");
}
