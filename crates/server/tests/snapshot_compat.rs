//! Snapshots as a migration path between etcd and ferrocd, with the real binaries: Debian's
//! etcd 3.4 (`/usr/bin/etcd`, package etcd-server) and etcdctl 3.4, and `ferrocdutl`.
//!
//! - etcd → `etcdctl snapshot save` → `ferrocdutl snapshot restore` → ferrocd serves the same
//!   keys, values, revisions and leases;
//! - ferrocd → `etcdctl snapshot save` → `etcdctl snapshot status` and `snapshot restore` →
//!   etcd serves the same;
//! - ferrocd → `ferrocdutl snapshot restore` → ferrocd, and the restore's refusals.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{ETCDCTL, Ferrocd, MemberSpec, etcdctl, etcdctl_timeout, free_port, wait_output};
use etcd_client::{Client, GetOptions, PutOptions, Txn, TxnOp};
use serde_json::Value;

/// Where Debian's etcd-server package installs etcd 3.4.
const ETCD: &str = "/usr/bin/etcd";
const T: Duration = Duration::from_secs(30);

fn require_etcd() {
    assert!(
        Path::new(ETCD).exists(),
        "{ETCD} is missing: these tests run real etcd 3.4 (install Debian's etcd-server package)"
    );
    assert!(
        Path::new(ETCDCTL).exists(),
        "{ETCDCTL} is missing (install Debian's etcd-client package)"
    );
}

/// A real etcd member on free 127.0.0.1 ports, killed when dropped.
struct Etcd {
    child: Option<Child>,
    client_port: u16,
    log: PathBuf,
}

impl Etcd {
    /// Starts etcd on `data_dir` as `name` of the one-member cluster at `peer_port`.
    fn start(data_dir: &Path, name: &str, peer_port: u16) -> Etcd {
        let client_port = free_port();
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = data_dir.with_extension("log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(ETCD)
            .args(["--name", name])
            .args(["--data-dir", data_dir.to_str().unwrap()])
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("{name}={peer}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("spawning etcd");
        let mut etcd = Etcd {
            child: Some(child),
            client_port,
            log,
        };
        etcd.wait_ready();
        etcd
    }

    fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + T;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("etcd exited early: {status}");
            }
            let out = etcdctl_timeout(&self.endpoint(), &["get", "ready-probe"], "2s");
            if out.status.success() {
                return;
            }
            assert!(Instant::now() < deadline, "etcd not ready within {T:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            common::print_log_tail("etcd", &self.log, 30);
        }
    }
}

fn ferrocdutl(args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_ferrocdutl"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning ferrocdutl");
    wait_output(child, Duration::from_secs(120))
}

/// `ferrocdutl snapshot restore FILE` into `data_dir` as the single member `spec` of a new
/// cluster, with `extra` flags.
fn restore_as(spec: &MemberSpec, file: &Path, data_dir: &Path, extra: &[&str]) -> Output {
    let initial = common::initial_cluster([spec]);
    let peer = spec.peer_url();
    let mut args = vec![
        "snapshot",
        "restore",
        file.to_str().unwrap(),
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--name",
        &spec.name,
        "--initial-cluster",
        &initial,
        "--initial-advertise-peer-urls",
        &peer,
    ];
    args.extend_from_slice(extra);
    ferrocdutl(&args)
}

fn ok(out: Output, what: &str) -> String {
    let head = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(2000)]).into_owned();
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        head(&out.stdout),
        head(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn ctl_ok(endpoint: &str, args: &[&str]) -> String {
    ok(etcdctl(endpoint, args), &format!("etcdctl {args:?}"))
}

/// `etcdctl snapshot save` from `endpoint` into `path`.
fn snapshot_save(endpoint: &str, path: &Path) {
    let out = etcdctl_timeout(
        endpoint,
        &["snapshot", "save", path.to_str().unwrap()],
        "60s",
    );
    ok(out, "etcdctl snapshot save");
}

/// `snapshot status -w json` by etcdctl 3.4 (offline: no endpoint involved).
fn etcdctl_status(path: &Path) -> Value {
    let out = Command::new(ETCDCTL)
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "status", path.to_str().unwrap(), "-w", "json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    serde_json::from_str(&ok(wait_output(out, T), "etcdctl snapshot status")).unwrap()
}

fn ferrocdutl_status(path: &Path) -> Value {
    let out = ferrocdutl(&["snapshot", "status", path.to_str().unwrap(), "-w", "json"]);
    serde_json::from_str(&ok(out, "ferrocdutl snapshot status")).unwrap()
}

/// Writes a history worth comparing: 1 200 keys in transactions of 100 (shared main revisions,
/// many leaf pages and a branch level), overwrites, a delete, a value spanning overflow pages,
/// a key under a lease, and a compaction. Returns the lease id and the compacted revision.
fn populate(client_url: &str, endpoint: &str) -> (i64, i64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (lease, compact_at) = rt.block_on(async {
        let mut c = tokio::time::timeout(T, Client::connect([client_url], None))
            .await
            .expect("connect timed out")
            .expect("connect");
        c.put("foo", "bar", None).await.unwrap();
        c.put("foo", "baz", None).await.unwrap();
        let compact_at = c.put("gone", "soon", None).await.unwrap();
        let compact_at = compact_at.header().unwrap().revision();
        c.delete("gone", None).await.unwrap();
        for batch in 0..12 {
            let ops: Vec<TxnOp> = (0..100)
                .map(|i| {
                    let n = batch * 100 + i;
                    TxnOp::put(
                        format!("bulk/{n:05}"),
                        format!("value-{n}-").repeat(1 + n % 9),
                        None,
                    )
                })
                .collect();
            c.txn(Txn::new().and_then(ops)).await.unwrap();
        }
        c.put("big", vec![b'x'; 20_000], None).await.unwrap();
        let lease = c.lease_grant(3600, None).await.unwrap().id();
        c.put("leased", "v", Some(PutOptions::new().with_lease(lease)))
            .await
            .unwrap();
        c.put("foo", "qux", None).await.unwrap();
        (lease, compact_at)
    });
    ctl_ok(
        endpoint,
        &["compact", &compact_at.to_string(), "--physical"],
    );
    (lease, compact_at)
}

/// One key as served: key, value, create and mod revisions, version, lease.
type Kv = (Vec<u8>, Vec<u8>, i64, i64, i64, i64);

/// The header revision and every key at `rev` (0: now), read with `etcd-client` (the listing
/// is too large for etcdctl's piped output).
fn all_kvs(endpoint: &str, rev: i64) -> (i64, Vec<Kv>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = tokio::time::timeout(T, Client::connect([format!("http://{endpoint}")], None))
            .await
            .expect("connect timed out")
            .expect("connect");
        let resp = tokio::time::timeout(
            T,
            c.get(
                "",
                Some(GetOptions::new().with_all_keys().with_revision(rev)),
            ),
        )
        .await
        .expect("get timed out")
        .expect("get");
        let revision = resp.header().unwrap().revision();
        let kvs = resp
            .kvs()
            .iter()
            .map(|kv| {
                (
                    kv.key().to_vec(),
                    kv.value().to_vec(),
                    kv.create_revision(),
                    kv.mod_revision(),
                    kv.version(),
                    kv.lease(),
                )
            })
            .collect();
        (revision, kvs)
    })
}

/// The source and the restored member serve the same data, history and leases.
fn assert_same_data(source: &str, restored: &str, lease: i64, compact_at: i64) {
    let (rev_a, kvs_a) = all_kvs(source, 0);
    let (rev_b, kvs_b) = all_kvs(restored, 0);
    assert_eq!(rev_a, rev_b, "current revision");
    assert_eq!(kvs_a.len(), 1 + 1200 + 2);
    assert!(
        kvs_a == kvs_b,
        "keys, values, revisions, versions or leases differ"
    );
    // History after the compaction, and the compaction itself.
    for rev in [compact_at + 1, compact_at + 5, rev_a - 1] {
        assert!(
            all_kvs(source, rev).1 == all_kvs(restored, rev).1,
            "data differ at {rev}"
        );
    }
    let before = etcdctl(
        restored,
        &["get", "foo", &format!("--rev={}", compact_at - 1)],
    );
    assert!(!before.status.success(), "a compacted revision was served");
    assert!(
        String::from_utf8_lossy(&before.stderr).contains("compacted"),
        "{}",
        String::from_utf8_lossy(&before.stderr)
    );
    let leases = ctl_ok(restored, &["lease", "list"]);
    assert!(leases.contains(&format!("{lease:x}")), "{leases}");
    let ttl = ctl_ok(
        restored,
        &["lease", "timetolive", &format!("{lease:x}"), "--keys"],
    );
    assert!(ttl.contains("granted with TTL(3600s)"), "{ttl}");
    assert!(ttl.contains("leased"), "{ttl}");
    // The restored member takes writes after the restored history.
    let put = ctl_ok(restored, &["put", "after", "restore", "-w", "json"]);
    let put: Value = serde_json::from_str(&put).unwrap();
    assert_eq!(put["header"]["revision"].as_i64().unwrap(), rev_a + 1);
}

#[test]
fn etcd_snapshot_restores_into_ferrocd() {
    require_etcd();
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(&dir.path().join("etcd"), "e1", free_port());
    let (lease, compact_at) = populate(&etcd.client_url(), &etcd.endpoint());
    let snap = dir.path().join("etcd.snap");
    snapshot_save(&etcd.endpoint(), &snap);

    // ferrocdutl reads etcd's file as etcdctl does.
    assert_eq!(ferrocdutl_status(&snap), etcdctl_status(&snap));

    let spec = MemberSpec::new("f1");
    let initial = format!("f1={}", spec.peer_url());
    let data_dir = dir.path().join("f1");
    ok(
        restore_as(&spec, &snap, &data_dir, &["--backend", "lmdb"]),
        "ferrocdutl snapshot restore",
    );
    let mut ferrocd = Ferrocd::start_member(spec, &initial, dir.path());
    ferrocd.wait_ready(T);
    assert_same_data(&etcd.endpoint(), &ferrocd.endpoint(), lease, compact_at);
    // A member of a new cluster: only itself.
    let members = ferrocd.ok(&["member", "list"]);
    assert_eq!(members.lines().count(), 1, "{members}");
    assert!(members.contains("f1"), "{members}");
}

/// Every key/value of every bucket of a bbolt file, counted by this crate's reader.
fn count_keys(path: &Path) -> u64 {
    let mut db = bbolt::Db::open(std::fs::File::open(path).unwrap()).unwrap();
    let mut n = 0;
    for b in db.buckets().unwrap() {
        db.for_each::<bbolt::ReadError>(&b, |_, _| {
            n += 1;
            Ok(())
        })
        .unwrap();
    }
    n
}

#[test]
fn ferrocd_snapshot_is_read_and_restored_by_etcd() {
    require_etcd();
    let ferrocd = Ferrocd::start();
    let (lease, compact_at) = populate(&ferrocd.client_url(), &ferrocd.endpoint());
    let (rev, _) = all_kvs(&ferrocd.endpoint(), 0);
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("ferrocd.snap");
    snapshot_save(&ferrocd.endpoint(), &snap);

    let status = etcdctl_status(&snap);
    assert_eq!(status["revision"].as_i64(), Some(rev), "{status}");
    assert_eq!(
        status["totalKey"].as_u64(),
        Some(count_keys(&snap)),
        "{status}"
    );
    // More than the 1 204 live keys: history, the lease, meta.
    assert!(status["totalKey"].as_u64().unwrap() > 1204, "{status}");
    let len = std::fs::metadata(&snap).unwrap().len();
    assert_eq!(status["totalSize"].as_u64(), Some(len - 32), "{status}");
    assert_eq!(ferrocdutl_status(&snap), status);

    let etcd_dir = dir.path().join("e1");
    let peer_port = free_port();
    let peer = format!("http://127.0.0.1:{peer_port}");
    let out = Command::new(ETCDCTL)
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "restore", snap.to_str().unwrap()])
        .args(["--data-dir", etcd_dir.to_str().unwrap()])
        .args(["--name", "e1"])
        .args(["--initial-cluster", &format!("e1={peer}")])
        .args(["--initial-advertise-peer-urls", &peer])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    ok(wait_output(out, T), "etcdctl snapshot restore");
    let etcd = Etcd::start(&etcd_dir, "e1", peer_port);
    assert_same_data(&ferrocd.endpoint(), &etcd.endpoint(), lease, compact_at);
}

#[test]
fn ferrocd_snapshot_restores_into_ferrocd_and_restore_refuses_bad_input() {
    let source = Ferrocd::start();
    let (lease, compact_at) = populate(&source.client_url(), &source.endpoint());
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("ferrocd.snap");
    snapshot_save(&source.endpoint(), &snap);

    let spec = MemberSpec::new("r1");
    let initial = format!("r1={}", spec.peer_url());
    let data_dir = dir.path().join("r1");
    let restore =
        |file: &Path, data_dir: &Path, extra: &[&str]| restore_as(&spec, file, data_dir, extra);

    // A damaged file fails the SHA-256 check and leaves nothing behind.
    let mut bytes = std::fs::read(&snap).unwrap();
    let damaged = dir.path().join("damaged.snap");
    bytes[5 * 4096 + 100] ^= 0xff;
    std::fs::write(&damaged, &bytes).unwrap();
    let out = restore(&damaged, &data_dir, &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected sha256"));
    assert!(!data_dir.exists());
    // A file without the trailer (a copied `db`) needs --skip-hash-check.
    let bare = dir.path().join("bare.db");
    std::fs::write(&bare, &bytes[..bytes.len() - 32]).unwrap();
    let out = restore(&bare, &data_dir, &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing hash"));
    assert!(!data_dir.exists());
    // A member name missing from the initial cluster is refused.
    let out = ferrocdutl(&[
        "snapshot",
        "restore",
        snap.to_str().unwrap(),
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--name",
        "nobody",
    ]);
    assert!(!out.status.success());
    assert!(!data_dir.exists());

    ok(
        restore(&snap, &data_dir, &[]),
        "ferrocdutl snapshot restore",
    );
    // An existing data dir is never overwritten.
    let again = restore(&snap, &data_dir, &[]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));

    let mut restored = Ferrocd::start_member(spec, &initial, dir.path());
    restored.wait_ready(T);
    assert_same_data(&source.endpoint(), &restored.endpoint(), lease, compact_at);
}
