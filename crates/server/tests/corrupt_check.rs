//! `--experimental-initial-corrupt-check` on real 3-member clusters: a member whose backend was
//! altered offline refuses to start (exit status 1, `… found data inconsistency with peers`),
//! an intact member restarts with the check, and the altered member starts without it (the
//! check, not the alteration, is what stops it).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{MemberSpec, start_cluster};
use node::engine::EngineKind;
use node::snapshot::DataPaths;
use storage_api::{Bucket, ReadTx};

const CHECK: &str = "--experimental-initial-corrupt-check";

/// Rewrites one stored value of the `key` bucket in place: `from` becomes `to` (same length),
/// as etcd's e2e test edits `member/snap/db` with bbolt.
fn alter_backend(data_dir: &std::path::Path, from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let backend = node::snapshot::open_backend(&DataPaths::new(data_dir), EngineKind::Lmdb)
        .expect("opening the stopped member's backend");
    let mut found = None;
    {
        let tx = backend.read_tx().unwrap();
        tx.for_each(Bucket::KEY, &mut |k, v| {
            if let Some(at) = v.windows(from.len()).position(|w| w == from) {
                let mut altered = v.to_vec();
                altered[at..at + to.len()].copy_from_slice(to);
                found = Some((k.to_vec(), altered));
            }
            Ok(())
        })
        .unwrap();
    }
    let (key, value) = found.expect("the value to alter is stored");
    let mut tx = backend.batch_tx().unwrap();
    tx.put(Bucket::KEY, &key, &value).unwrap();
    tx.end().unwrap();
    backend.force_commit().unwrap();
    backend.close().unwrap();
}

#[test]
fn a_member_whose_data_diverged_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let specs: Vec<MemberSpec> = ["c1", "c2", "c3"]
        .iter()
        .map(|n| MemberSpec::new(n))
        .collect();
    let mut members = start_cluster(dir.path(), &specs, &[CHECK], &|_| Vec::new());
    for i in 0..10 {
        members[0].ok(&["put", &format!("foo{i:05}"), &format!("v{i:05}")]);
    }
    // Every member applied every put before one is stopped.
    for m in &members {
        common::eventually(Duration::from_secs(10), || {
            (m.ok(&["get", "foo00009", "--consistency=s"]) == "foo00009\nv00009\n").then_some(())
        });
    }

    // An intact member restarts with the check, compares with both peers, and serves.
    let passed = |log: String| {
        log.matches("initial corruption checking passed; no corruption")
            .count()
    };
    members[1].terminate(Duration::from_secs(10));
    let earlier_runs = members[1].log_text().len();
    members[1].restart();
    members[1].wait_ready(Duration::from_secs(30));
    let log = members[1].log_text()[earlier_runs..].to_owned();
    assert_eq!(passed(log.clone()), 1, "{log}");
    assert!(!log.contains("cannot check"), "{log}");

    // An altered one refuses, naming itself.
    let id = members[0].ok(&["endpoint", "status"]);
    let id = id.split(", ").nth(1).expect("member id").to_owned();
    members[0].terminate(Duration::from_secs(10));
    alter_backend(&members[0].data_dir, b"v00009", b"w00009");
    members[0].restart();
    let status = members[0]
        .wait_exit(Duration::from_secs(30))
        .expect("the altered member stops by itself");
    assert_eq!(status.code(), Some(1), "{}", members[0].log_text());
    let log = members[0].log_text();
    let id = u64::from_str_radix(&id, 16).unwrap();
    let expected = format!("{id:016x} found data inconsistency with peers");
    assert!(log.contains(&expected), "{expected:?} not in:\n{log}");

    // The same data without the check: it starts (the check is what refused it).
    members[0].set_extra(&[]);
    members[0].restart();
    members[0].wait_ready(Duration::from_secs(30));
}
