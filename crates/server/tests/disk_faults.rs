//! Disk faults on real `ferrocd` processes. A member whose disk fills up, or whose fsync fails,
//! must stop with an error that says so (etcd exits on these errors) rather than stay up and
//! answer nothing; the other members go on; once the fault is undone and the member restarted,
//! it catches up and every acknowledged write is there, on every member.
//!
//! The full disk is a size-limited tmpfs (mounting needs root: without it that test says it is
//! skipped); the fsync failure is an `LD_PRELOAD` shim compiled with the system C compiler.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{Ferrocd, MemberSpec, eventually};
use diskfault::{FsyncShim, SmallDisk};

/// How long a cluster may take to elect a leader, stop a failed member or catch one up.
const WAIT: Duration = Duration::from_secs(30);

fn specs() -> Vec<MemberSpec> {
    ["d1", "d2", "d3"]
        .iter()
        .map(|n| MemberSpec::new(n))
        .collect()
}

/// Puts `count` keys `{prefix}{i}` with 1 KiB values through the members other than `skip`,
/// each through the first that acknowledges it. Returns what was acknowledged.
fn put_many(members: &[Ferrocd], skip: usize, prefix: &str, count: usize) -> Vec<(String, String)> {
    let mut acked = Vec::new();
    for i in 0..count {
        let key = format!("{prefix}{i:04}");
        let value = format!("{key}-{}", "v".repeat(1024));
        for (m, member) in members.iter().enumerate() {
            if m == skip {
                continue;
            }
            let out = common::etcdctl_timeout(&member.endpoint(), &["put", &key, &value], "5s");
            if out.status.success() {
                acked.push((key, value));
                break;
            }
        }
    }
    acked
}

/// Waits until `member` holds every write of `acked` (serializable reads: its own state).
fn wait_holds(member: &Ferrocd, prefix: &str, acked: &[(String, String)]) {
    eventually(WAIT, || {
        let out = common::etcdctl_timeout(
            &member.endpoint(),
            &["get", prefix, "--prefix", "--consistency=s"],
            "5s",
        );
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        let held: std::collections::HashMap<&str, &str> = lines
            .chunks(2)
            .filter_map(|kv| Some((kv[0], *kv.get(1)?)))
            .collect();
        acked
            .iter()
            .all(|(k, v)| held.get(k.as_str()) == Some(&v.as_str()))
            .then_some(())
    });
}

/// Waits until `member` exits by itself and checks that it failed (non-zero status) with a log
/// naming `cause`.
fn assert_failed_with(member: &mut Ferrocd, cause: &str) {
    let status = member
        .wait_exit(WAIT)
        .unwrap_or_else(|| panic!("{} kept running after its disk failed", member.spec.name));
    let log = member.log_text();
    assert!(
        !status.success(),
        "{} exited with {status} after its disk failed; log:\n{log}",
        member.spec.name
    );
    assert!(
        log.contains("the member failed and stopped") && log.contains(cause),
        "{}'s log does not say it stopped because of {cause:?}:\n{log}",
        member.spec.name
    );
}

#[test]
fn a_follower_whose_disk_fills_up_stops_and_recovers_everything_once_freed() {
    let tmp = tempfile::tempdir().unwrap();
    let specs = specs();
    // Every member on its own small disk: which one follows is known only after the election.
    let mut disks = Vec::new();
    for s in &specs {
        match SmallDisk::mount(&tmp.path().join(&s.name), 256) {
            Ok(disk) => disks.push(disk),
            Err(e) => {
                eprintln!(
                    "SKIPPED: a full disk needs a tmpfs, and this machine cannot mount one (it needs root): {e}"
                );
                return;
            }
        }
    }
    let mut members = common::start_cluster(tmp.path(), &specs, &[], &|_| Vec::new());
    let before = put_many(&members, usize::MAX, "full/before/", 20);
    assert_eq!(before.len(), 20, "a healthy cluster acknowledges every put");

    let leader = common::leader(&members).0;
    let victim = (leader + 1) % members.len();
    disks[victim].fill().expect("fill the follower's disk");
    // The others go on; the victim's next backend commit or WAL write fails.
    let during = put_many(&members, victim, "full/during/", 200);
    assert!(
        during.len() >= 190,
        "two healthy members of three acknowledged only {} of 200 puts",
        during.len()
    );
    assert_failed_with(&mut members[victim], "No space left on device");

    disks[victim].free().expect("free the disk");
    members[victim].restart();
    members[victim].wait_ready(Duration::from_secs(60));
    let after = put_many(&members, usize::MAX, "full/after/", 20);
    assert_eq!(after.len(), 20, "the healed cluster acknowledges every put");
    for m in &members {
        wait_holds(m, "full/before/", &before);
        wait_holds(m, "full/during/", &during);
        wait_holds(m, "full/after/", &after);
    }
}

#[test]
fn a_leader_whose_fsync_fails_stops_and_the_cluster_goes_on_without_losing_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let shim = FsyncShim::build(&tmp.path().join("shim")).expect("compile the fsync shim");
    let specs = specs();
    let faults: Vec<_> = specs
        .iter()
        .map(|s| {
            shim.fault(tmp.path().join(format!("{}.fsync-fault", s.name)))
                .expect("fault")
        })
        .collect();
    let env = |spec: &MemberSpec| {
        let i = specs.iter().position(|s| s.name == spec.name).unwrap();
        faults[i].env()
    };
    let mut members = common::start_cluster(tmp.path(), &specs, &[], &env);
    let before = put_many(&members, usize::MAX, "fsync/before/", 20);
    assert_eq!(before.len(), 20, "a healthy cluster acknowledges every put");

    let leader = common::leader(&members).0;
    faults[leader].arm().expect("arm the leader's fsync fault");
    // The leader's next WAL sync fails: it stops, the others elect a leader and go on.
    let _ = common::etcdctl_timeout(
        &members[leader].endpoint(),
        &["put", "fsync/trigger", "x"],
        "3s",
    );
    assert_failed_with(&mut members[leader], "Input/output error");
    let during = put_many(&members, leader, "fsync/during/", 50);
    assert_eq!(
        during.len(),
        50,
        "the two other members acknowledge every put"
    );

    faults[leader].disarm().expect("disarm");
    members[leader].restart();
    members[leader].wait_ready(Duration::from_secs(60));
    for m in &members {
        wait_holds(m, "fsync/before/", &before);
        wait_holds(m, "fsync/during/", &during);
    }
}
