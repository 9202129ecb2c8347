//! etcdctl 3.4 cluster and maintenance commands against `ferrocd`: member list, endpoint
//! status / health / hashkv, defrag, snapshot save, alarm list.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::Ferrocd;

#[test]
fn member_list_shows_this_member() {
    let f = Ferrocd::start();
    let out = f.ok(&["member", "list"]);
    let fields: Vec<&str> = out.trim_end().split(", ").collect();
    assert_eq!(fields.len(), 6, "{out}");
    // etcd prints ids with `%x`: hexadecimal without leading zeros.
    let id = u64::from_str_radix(fields[0], 16);
    assert!(
        matches!(id, Ok(id) if id != 0) && !fields[0].starts_with('0'),
        "a hex member id: {out}"
    );
    assert_eq!(
        &fields[1..],
        &[
            "started",
            "default",
            f.spec.peer_url().as_str(),
            f.client_url().as_str(),
            "false"
        ]
    );
}

#[test]
fn endpoint_status_health_and_hashkv() {
    let f = Ferrocd::start();
    f.ok(&["put", "a", "1"]);
    // etcdctl 3.4 prints the health line on stderr.
    let out = f.ctl(&["endpoint", "health"]);
    assert!(out.status.success());
    let health = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        health.starts_with(&format!(
            "{} is healthy: successfully committed proposal: took = ",
            f.endpoint()
        )),
        "{health}"
    );
    let status = f.ok(&["endpoint", "status"]);
    let fields: Vec<&str> = status.trim_end().split(", ").collect();
    // endpoint, id, version, db size, is leader, is learner, term, index, applied, errors
    assert_eq!(fields[0], f.endpoint(), "{status}");
    assert_eq!(fields[2], "3.6.0", "{status}");
    assert_eq!(fields[4], "true", "{status}");
    assert_eq!(fields[5], "false", "{status}");
    let json = f.ok(&["endpoint", "status", "-w", "json"]);
    assert!(json.contains("\"leader\":"), "{json}");
    assert!(json.contains("\"raftAppliedIndex\":"), "{json}");
    assert!(json.contains("\"version\":\"3.6.0\""), "{json}");
    let hash = f.ok(&["endpoint", "hashkv"]);
    let (ep, h) = hash.trim_end().split_once(", ").expect("endpoint, hash");
    assert_eq!(ep, f.endpoint());
    assert!(h.parse::<u32>().is_ok(), "{hash}");
    // Same history, same hash.
    assert_eq!(f.ok(&["endpoint", "hashkv"]), hash);
    let json = f.ok(&["endpoint", "hashkv", "-w", "json"]);
    assert!(json.contains("\"revision\":2"), "{json}");
    assert!(
        json.contains("\"compact_revision\":-1") || !json.contains("compact_revision"),
        "{json}"
    );
}

#[test]
fn defrag_snapshot_and_alarms() {
    let f = Ferrocd::start();
    for i in 0..50 {
        f.ok(&["put", &format!("k{i:03}"), &"v".repeat(1000)]);
    }
    assert_eq!(
        f.ok(&["defrag"]),
        format!("Finished defragmenting etcd member[{}]\n", f.endpoint())
    );
    assert_eq!(
        f.ok(&["get", "k049", "--print-value-only"]),
        format!("{}\n", "v".repeat(1000))
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap.db");
    let path = path.to_str().unwrap();
    assert_eq!(
        f.ok(&["snapshot", "save", path]),
        format!("Snapshot saved at {path}\n")
    );
    let size = std::fs::metadata(path).unwrap().len();
    assert!(size > 50_000, "snapshot of {size} bytes");
    assert_eq!(f.ok(&["alarm", "list"]), "");
    assert_eq!(f.ok(&["alarm", "disarm"]), "");
}

/// etcd's documented way out of a full backend: writes fail with NOSPACE and the alarm is
/// raised; compact, defrag and disarm, and writes are accepted again. Nothing written before
/// is lost, and reads and deletes keep working while the alarm is on.
#[test]
fn quota_exceeded_raises_nospace_until_compact_defrag_disarm() {
    let f = Ferrocd::start_with(&["--quota-backend-bytes", "2000000"]);
    let value = "x".repeat(60_000);
    let mut failed = None;
    for i in 0..200 {
        let out = f.ctl(&["put", &format!("k{}", i % 5), &value]);
        if !out.status.success() {
            failed = Some(String::from_utf8_lossy(&out.stderr).into_owned());
            break;
        }
    }
    let err = failed.expect("a 2 MB quota is exceeded by 200 puts of 60 kB");
    assert!(
        err.contains("etcdserver: mvcc: database space exceeded"),
        "{err}"
    );
    let id = f
        .ok(&["endpoint", "status"])
        .split(", ")
        .nth(1)
        .unwrap()
        .to_owned();
    let id = u64::from_str_radix(&id, 16).unwrap();
    let alarm = format!("memberID:{id} alarm:NOSPACE \n");
    common::eventually(std::time::Duration::from_secs(10), || {
        (f.ok(&["alarm", "list"]) == alarm).then_some(())
    });
    // Reads and deletes still work; writes do not.
    assert_eq!(f.ok(&["get", "k1", "--print-value-only"]).trim(), value);
    assert_eq!(f.ok(&["del", "k4"]), "1\n");
    assert!(
        f.err(&["put", "small", "v"])
            .contains("database space exceeded")
    );

    let rev = f.ok(&["get", "k1", "-w", "json"]);
    let rev: serde_json::Value = serde_json::from_str(&rev).unwrap();
    let rev = rev["header"]["revision"].as_i64().unwrap();
    f.ok(&["compaction", &rev.to_string(), "--physical"]);
    f.ok(&["defrag"]);
    assert_eq!(f.ok(&["alarm", "disarm"]), alarm);
    assert_eq!(f.ok(&["alarm", "list"]), "");
    f.ok(&["put", "small", "v"]);
    assert_eq!(f.ok(&["get", "k1", "--print-value-only"]).trim(), value);
}
