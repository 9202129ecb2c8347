//! Faults on real `ferrocd` processes: the leader is SIGKILLed, a follower is killed and
//! restarted behind a compacted log (snapshot catch-up), the whole cluster is killed and
//! restarted, and a corrupted WAL is refused. Every wait is bounded; nothing asserts timing.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Ferrocd, MemberSpec, eventually};

/// How long a cluster may take to elect a leader or catch a member up.
const WAIT: Duration = Duration::from_secs(30);

/// Small snapshots and a short catch-up tail, so a member that misses a hundred writes is
/// sent a snapshot rather than log entries.
const SNAPSHOTS: &[&str] = &[
    "--snapshot-count",
    "20",
    "--experimental-snapshot-catchup-entries",
    "5",
];

/// Starts three members with `extra` flags and waits until each serves linearizable reads.
fn start_three(dir: &Path, extra: &[&str]) -> Vec<Ferrocd> {
    let specs: Vec<MemberSpec> = ["f1", "f2", "f3"]
        .iter()
        .map(|n| MemberSpec::new(n))
        .collect();
    common::start_cluster(dir, &specs, extra, &|_| Vec::new())
}

/// The unsigned number after `"key":` in etcdctl's JSON output.
fn json_u64(json: &str, key: &str) -> Option<u64> {
    let pat = format!("\"{key}\":");
    let rest = &json[json.find(&pat)? + pat.len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// `(member id, leader id)` from `endpoint status`, or `None` if the member does not answer.
fn status(m: &Ferrocd) -> Option<(u64, u64)> {
    let out = common::etcdctl_timeout(&m.endpoint(), &["endpoint", "status", "-w", "json"], "2s");
    if !out.status.success() {
        return None;
    }
    let json = String::from_utf8_lossy(&out.stdout);
    Some((json_u64(&json, "member_id")?, json_u64(&json, "leader")?))
}

/// The index (in `members`, among those running) of the member every running member agrees
/// leads, once they do.
fn leader(members: &[Ferrocd]) -> usize {
    eventually(WAIT, || {
        let running: Vec<usize> = (0..members.len())
            .filter(|&i| members[i].child.is_some())
            .collect();
        let statuses: Vec<(u64, u64)> = running
            .iter()
            .map(|&i| status(&members[i]))
            .collect::<Option<_>>()?;
        let lead = statuses[0].1;
        if lead == 0 || statuses.iter().any(|s| s.1 != lead) {
            return None;
        }
        statuses
            .iter()
            .position(|s| s.0 == lead)
            .map(|p| running[p])
    })
}

/// Puts `key` through `m`, retrying failures (e.g. no leader yet) until acknowledged.
fn put_acknowledged(m: &Ferrocd, key: &str, value: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = common::etcdctl_timeout(&m.endpoint(), &["put", key, value], "3s");
        if out.status.success() {
            assert_eq!(String::from_utf8_lossy(&out.stdout), "OK\n");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "put {key} through {} never acknowledged: {}",
            m.spec.name,
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `prefix`-keys and values as `etcdctl get --prefix` prints them.
fn expected(keys: &[(String, String)]) -> String {
    let mut sorted = keys.to_vec();
    sorted.sort();
    sorted.iter().map(|(k, v)| format!("{k}\n{v}\n")).collect()
}

/// Waits until a `get --prefix` (with `extra` flags) on `m` prints exactly `keys`.
fn eventually_reads(m: &Ferrocd, prefix: &str, keys: &[(String, String)], extra: &[&str]) {
    let want = expected(keys);
    let mut args = vec!["get", prefix, "--prefix"];
    args.extend_from_slice(extra);
    let deadline = Instant::now() + WAIT;
    loop {
        let out = common::etcdctl_timeout(&m.endpoint(), &args, "3s");
        let last = if out.status.success() {
            String::from_utf8_lossy(&out.stdout).into_owned()
        } else {
            String::from_utf8_lossy(&out.stderr).into_owned()
        };
        if out.status.success() && last == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} never read the {} acknowledged keys under {prefix:?} with {extra:?}; \
             last answer has {} lines: {}",
            m.spec.name,
            keys.len(),
            last.lines().count(),
            last.chars().take(400).collect::<String>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Writes `n` keys `prefix-NNN` through `m`, each acknowledged, and records them in `acked`.
fn write_keys(
    m: &Ferrocd,
    prefix: &str,
    range: std::ops::Range<usize>,
    acked: &mut Vec<(String, String)>,
) {
    for i in range {
        let (k, v) = (format!("{prefix}-{i:03}"), format!("v{i}"));
        put_acknowledged(m, &k, &v);
        acked.push((k, v));
    }
}

#[test]
fn leader_killed_new_leader_and_writes_continue() {
    let dir = tempfile::tempdir().unwrap();
    let mut members = start_three(dir.path(), &[]);
    let old = leader(&members);
    let old_id = status(&members[old]).unwrap().0;
    let mut acked = Vec::new();
    // Before the kill: through the leader and through a follower.
    write_keys(&members[old], "lk", 0..10, &mut acked);
    write_keys(&members[(old + 1) % 3], "lk", 10..20, &mut acked);

    members[old].kill9();

    let new = leader(&members);
    assert_ne!(new, old);
    let (new_id, _) = status(&members[new]).unwrap();
    assert_ne!(new_id, old_id);
    let survivors: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    // After the kill: through both survivors, leader and follower.
    write_keys(&members[survivors[0]], "lk", 20..30, &mut acked);
    write_keys(&members[survivors[1]], "lk", 30..40, &mut acked);
    for &i in &survivors {
        eventually_reads(&members[i], "lk", &acked, &[]);
    }
}

#[test]
fn killed_member_restarts_and_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut members = start_three(dir.path(), SNAPSHOTS);
    let mut acked = Vec::new();
    // Enough for every member to have taken a snapshot of its own before the kill.
    write_keys(&members[0], "ck", 0..30, &mut acked);
    let l = leader(&members);
    let follower = (l + 1) % 3;
    eventually_reads(&members[follower], "ck", &acked, &["--consistency=s"]);

    members[follower].kill9();
    let others: Vec<usize> = (0..3).filter(|&i| i != follower).collect();
    for (n, i) in (30..130).enumerate() {
        let through = &members[others[n % 2]];
        write_keys(through, "ck", i..i + 1, &mut acked);
    }

    let before = members[follower].log_text().len();
    members[follower].restart();
    members[follower].wait_ready(WAIT);
    // Served from the restarted member's own state, without asking the leader.
    eventually_reads(&members[follower], "ck", &acked, &["--consistency=s"]);
    // And it keeps up with new writes too.
    write_keys(&members[others[0]], "ck", 130..135, &mut acked);
    eventually_reads(&members[follower], "ck", &acked, &["--consistency=s"]);
    // The leader kept only 5 entries behind its last snapshot: the member caught up from a
    // snapshot, not from the log.
    let log = members[follower].log_text()[before..].to_owned();
    assert!(
        log.contains("snapshot received") && log.contains("installing snapshot from the leader"),
        "the restarted member was not sent a snapshot:\n{log}"
    );
}

#[test]
fn every_acknowledged_write_survives_a_full_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut members = start_three(dir.path(), &[]);
    let mut acked = Vec::new();
    for (i, m) in members.iter().enumerate() {
        write_keys(m, "rk", i * 20..(i + 1) * 20, &mut acked);
    }
    for m in &mut members {
        m.kill9();
    }
    for m in &mut members {
        m.restart();
    }
    for m in &mut members {
        m.wait_ready(Duration::from_secs(60));
    }
    for m in &members {
        eventually_reads(m, "rk", &acked, &[]);
    }
    // The restarted cluster takes writes.
    write_keys(&members[2], "rk", 60..61, &mut acked);
    for m in &members {
        eventually_reads(m, "rk", &acked, &[]);
    }
}

/// The `.wal` segment files under `<data-dir>/member/wal/`.
fn wal_segments(data_dir: &Path) -> Vec<PathBuf> {
    let dir = data_dir.join("member").join("wal");
    let mut wals: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    wals.sort();
    wals
}

#[test]
fn corrupted_wal_refuses_to_start() {
    let mut f = Ferrocd::start();
    let mut acked = Vec::new();
    write_keys(&f, "wk", 0..20, &mut acked);
    let status = f.terminate(WAIT);
    assert_eq!(status.code(), Some(0), "{status}");

    let wals = wal_segments(&f.data_dir);
    assert_eq!(wals.len(), 1, "{wals:?}");
    let wal = &wals[0];
    let mut bytes = std::fs::read(wal).unwrap();
    // The written part ends where the pre-allocated trailing zeros start.
    let written = bytes.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1);
    assert!(
        written > 100,
        "only {written} bytes written to {}",
        wal.display()
    );
    let mid = written / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(wal, &bytes).unwrap();

    let before = f.log_text().len();
    f.restart();
    let status = f
        .wait_exit(WAIT)
        .expect("ferrocd kept running on a corrupted WAL");
    assert!(!status.success(), "{status}");
    let log = f.log_text()[before..].to_owned();
    let name = wal.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        log.contains(&name) && log.to_lowercase().contains("corrupt"),
        "the log does not name {name} as corrupted:\n{log}"
    );
}
