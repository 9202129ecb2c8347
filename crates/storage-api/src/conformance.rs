//! The conformance suite every engine must pass, unchanged: each engine's tests expand
//! [`crate::conformance_suite!`] with a [`Harness`] that opens that engine.
//!
//! Every test opens real engines in a temporary directory; none asserts on time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};

use crate::{
    Backend, BackendConfig, Bucket, Engine, MAX_KEY_LEN, ReadTx, Result as StorageResult,
    StorageError, restore_snapshot,
};

/// How the suite opens the engine under test.
pub struct Harness {
    /// Opens (or creates) the engine in a directory.
    pub open: fn(&Path) -> StorageResult<Box<dyn Engine>>,
    /// The engine's data files in a directory, which the corruption tests overwrite.
    pub data_files: fn(&Path) -> Vec<PathBuf>,
}

/// A failed conformance check, with what was expected.
pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// One conformance test.
pub type Test = fn(&Harness) -> TestResult;

/// Fails the test with `msg` unless `cond` holds.
fn ensure(cond: bool, msg: impl FnOnce() -> String) -> TestResult {
    if cond { Ok(()) } else { Err(msg().into()) }
}

/// Environment variable that turns the kill-9 test into its child half.
pub const KILL9_CHILD_DIR: &str = "FERROCD_CONFORMANCE_KILL9_DIR";

const DATA: Bucket = Bucket::new("conformance_data");
const OTHER: Bucket = Bucket::new("conformance_other");

impl Harness {
    fn backend(&self, dir: &Path, config: BackendConfig) -> StorageResult<Backend> {
        Backend::new((self.open)(dir)?, config)
    }

    /// A backend that commits only when asked (or at the batch limit).
    fn manual(&self, dir: &Path) -> StorageResult<Backend> {
        self.backend(
            dir,
            BackendConfig {
                batch_interval: Duration::from_secs(3600),
                batch_limit: usize::MAX,
            },
        )
    }
}

fn with_buckets(backend: &Backend) -> StorageResult<()> {
    let mut tx = backend.batch_tx()?;
    tx.create_bucket(DATA)?;
    tx.create_bucket(OTHER)?;
    tx.end()
}

fn kv(k: &[u8], v: &[u8]) -> (Vec<u8>, Vec<u8>) {
    (k.to_vec(), v.to_vec())
}

/// Buckets are created once, are listed after a reopen, and unknown ones are typed errors.
pub fn buckets(h: &Harness) -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let b = h.manual(dir.path())?;
        with_buckets(&b)?;
        with_buckets(&b)?; // creating twice is a no-op
        let err = b.read_tx()?.get(Bucket::new("missing"), b"k");
        ensure(matches!(err, Err(StorageError::UnknownBucket(_))), || {
            format!("read of a missing bucket: {err:?}")
        })?;
        let mut tx = b.batch_tx()?;
        let err = tx.put(Bucket::new("missing"), b"k", b"v");
        ensure(matches!(err, Err(StorageError::UnknownBucket(_))), || {
            format!("write to a missing bucket: {err:?}")
        })?;
        let err = tx.create_bucket(Bucket::new("bad/name"));
        ensure(
            matches!(err, Err(StorageError::InvalidBucketName(_))),
            || format!("invalid bucket name: {err:?}"),
        )?;
        tx.end()?;
        b.close()?;
    }
    let b = h.manual(dir.path())?;
    let names: Vec<Bucket> = b.read_tx()?.buckets().collect();
    ensure(names == vec![DATA, OTHER], || {
        format!("buckets after reopen: {names:?}")
    })
}

/// Writes are visible inside their transaction at once, to other readers only once it ends, and
/// a read transaction keeps its snapshot while later writes end and commit.
pub fn visibility(h: &Harness) -> TestResult {
    let dir = tempfile::tempdir()?;
    let b = h.manual(dir.path())?;
    with_buckets(&b)?;
    let before = b.read_tx()?;
    let mut tx = b.batch_tx()?;
    tx.put(DATA, b"a", b"1")?;
    ensure(tx.get(DATA, b"a")? == Some(b"1".to_vec()), || {
        "own write not visible".into()
    })?;
    let concurrent = std::thread::scope(|s| s.spawn(|| b.read_tx()?.get(DATA, b"a")).join());
    let concurrent = concurrent.map_err(|_| "reader thread panicked")??;
    ensure(concurrent.is_none(), || {
        "a reader saw a write of an open transaction".into()
    })?;
    tx.end()?;
    let after = b.read_tx()?;
    ensure(after.get(DATA, b"a")? == Some(b"1".to_vec()), || {
        "an ended write is not visible before commit".into()
    })?;
    b.force_commit()?;
    let mut tx = b.batch_tx()?;
    tx.delete(DATA, b"a")?;
    ensure(tx.get(DATA, b"a")?.is_none(), || {
        "own delete not visible".into()
    })?;
    tx.end()?;
    ensure(b.read_tx()?.get(DATA, b"a")?.is_none(), || {
        "an ended delete is not visible before commit".into()
    })?;
    ensure(after.get(DATA, b"a")? == Some(b"1".to_vec()), || {
        "an older read transaction lost its snapshot".into()
    })?;
    ensure(before.get(DATA, b"a")?.is_none(), || {
        "a read transaction saw a write that ended after it began".into()
    })?;
    b.force_commit()?;
    ensure(after.get(DATA, b"a")? == Some(b"1".to_vec()), || {
        "a read transaction lost its snapshot after a commit".into()
    })?;
    ensure(b.read_tx()?.get(DATA, b"a")?.is_none(), || {
        "delete lost at commit".into()
    })
}

/// Ranges are in byte order, bounded `[start, end)`, limited, and reject bad bounds.
pub fn ranges(h: &Harness) -> TestResult {
    let dir = tempfile::tempdir()?;
    let b = h.manual(dir.path())?;
    with_buckets(&b)?;
    let keys: [&[u8]; 7] = [b"\x00", b"a", b"a\x00", b"ab", b"b", b"\xff", b"\xff\xff"];
    let mut tx = b.batch_tx()?;
    for (i, k) in keys.iter().rev().enumerate() {
        tx.put(DATA, k, &[u8::try_from(i)?])?;
    }
    tx.put(OTHER, b"a", b"other")?;
    tx.end()?;
    // The same answers from the read buffer and, after a commit, from the engine.
    for stage in ["buffered", "committed"] {
        let r = b.read_tx()?;
        let all: Vec<Vec<u8>> = r
            .range(DATA, b"", None, 0)?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        ensure(
            all == keys.iter().map(|k| k.to_vec()).collect::<Vec<_>>(),
            || format!("{stage}: full range out of order: {all:?}"),
        )?;
        let some = r.range(DATA, b"a", Some(b"b"), 0)?;
        ensure(
            some.len() == 3 && some[0].0 == b"a" && some[2].0 == b"ab",
            || format!("{stage}: [a, b) gave {some:?}"),
        )?;
        let limited = r.range(DATA, b"a", None, 2)?;
        ensure(
            limited
                .iter()
                .map(|(k, _)| k.as_slice())
                .eq([&b"a"[..], b"a\x00"]),
            || format!("{stage}: limit 2 gave {limited:?}"),
        )?;
        ensure(r.range(DATA, b"c", Some(b"c"), 0)?.is_empty(), || {
            format!("{stage}: empty range not empty")
        })?;
        let bad = r.range(DATA, b"z", Some(b"a"), 0);
        ensure(matches!(bad, Err(StorageError::InvalidRange(_))), || {
            format!("{stage}: reversed range gave {bad:?}")
        })?;
        ensure(
            r.range(OTHER, b"", None, 0)? == vec![kv(b"a", b"other")],
            || format!("{stage}: buckets are not separate"),
        )?;
        let mut seen = Vec::new();
        r.for_each(DATA, &mut |k, _| {
            seen.push(k.to_vec());
            Ok(())
        })?;
        ensure(seen.len() == keys.len(), || {
            format!("{stage}: for_each saw {seen:?}")
        })?;
        b.force_commit()?;
    }
    Ok(())
}

/// Keys and values the contract rejects give typed errors and change nothing.
pub fn bad_input(h: &Harness) -> TestResult {
    let dir = tempfile::tempdir()?;
    let b = h.manual(dir.path())?;
    with_buckets(&b)?;
    let mut tx = b.batch_tx()?;
    let err = tx.put(DATA, b"", b"v");
    ensure(matches!(err, Err(StorageError::EmptyKey(_))), || {
        format!("empty key: {err:?}")
    })?;
    let long = vec![b'k'; MAX_KEY_LEN + 1];
    let err = tx.put(DATA, &long, b"v");
    ensure(matches!(err, Err(StorageError::KeyTooLarge { .. })), || {
        format!("long key: {err:?}")
    })?;
    let err = tx.delete(DATA, b"");
    ensure(matches!(err, Err(StorageError::EmptyKey(_))), || {
        format!("empty delete: {err:?}")
    })?;
    tx.put(DATA, &vec![b'k'; MAX_KEY_LEN], b"longest")?;
    tx.end()?;
    b.force_commit()?;
    let all = b.read_tx()?.range(DATA, b"", None, 0)?;
    ensure(
        all == vec![kv(&vec![b'k'; MAX_KEY_LEN], b"longest")],
        || format!("rejected writes changed data: {all:?}"),
    )?;
    b.close()?;
    let err = b.batch_tx().map(|_| ());
    ensure(matches!(err, Err(StorageError::Closed)), || {
        format!("closed backend: {err:?}")
    })
}

/// Reopening a database whose files were overwritten with garbage is an error, never a panic.
pub fn corrupted_files(h: &Harness) -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let b = h.manual(dir.path())?;
        with_buckets(&b)?;
        let mut tx = b.batch_tx()?;
        for i in 0..100u32 {
            tx.put(DATA, &i.to_be_bytes(), &[7; 100])?;
        }
        tx.end()?;
        b.close()?;
    }
    let files = (h.data_files)(dir.path());
    ensure(!files.is_empty(), || {
        "the harness names no data file".into()
    })?;
    for file in files {
        let len = std::fs::metadata(&file)?.len();
        let garbage: Vec<u8> = (0..len.max(64)).map(|i| (i * 131 % 251) as u8).collect();
        std::fs::write(&file, garbage)?;
    }
    let reopened = (h.open)(dir.path()).and_then(|e| {
        let b = Backend::new(e, BackendConfig::default())?;
        let r = b.read_tx()?;
        r.range(DATA, b"", None, 0)?;
        Ok(())
    });
    ensure(reopened.is_err(), || {
        "a corrupted database opened and read as valid".into()
    })
}

/// Random puts, deletes, commits and reopens agree with an ordered map, for every range.
pub fn model(h: &Harness) -> TestResult {
    #[derive(Clone, Debug)]
    enum Op {
        Put(u8, u8),
        Delete(u8),
        EndTx,
        Commit,
        Reopen,
        Range(u8, u8, u8),
    }
    let op = prop_oneof![
        6 => (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Op::Put(k % 32, v)),
        3 => any::<u8>().prop_map(|k| Op::Delete(k % 32)),
        2 => Just(Op::EndTx),
        1 => Just(Op::Commit),
        1 => Just(Op::Reopen),
        3 => (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(a, b, l)| Op::Range(a % 34, b % 34, l % 5)),
    ];
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&proptest::collection::vec(op, 1..120), |ops| {
        let fail = |e: &dyn std::fmt::Display| TestCaseError::fail(e.to_string());
        let dir = tempfile::tempdir().map_err(|e| fail(&e))?;
        let mut backend = Some(h.manual(dir.path()).map_err(|e| fail(&e))?);
        with_buckets(backend.as_ref().ok_or_else(|| fail(&"no backend"))?).map_err(|e| fail(&e))?;
        let mut ended: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut open: Option<BTreeMap<Vec<u8>, Vec<u8>>> = None;
        let mut pending: Vec<Op> = Vec::new();
        let key = |k: u8| vec![b'k', k];
        let run_tx = |b: &Backend, ops: &[Op]| -> StorageResult<()> {
            let mut tx = b.batch_tx()?;
            for op in ops {
                match op {
                    Op::Put(k, v) => tx.put(DATA, &key(*k), &[*v])?,
                    Op::Delete(k) => tx.delete(DATA, &key(*k))?,
                    _ => {}
                }
            }
            tx.end()
        };
        for op in ops {
            let b = backend.as_ref().ok_or_else(|| fail(&"no backend"))?;
            match op {
                Op::Put(k, v) => {
                    open.get_or_insert_with(|| ended.clone())
                        .insert(key(k), vec![v]);
                    pending.push(op);
                }
                Op::Delete(k) => {
                    open.get_or_insert_with(|| ended.clone()).remove(&key(k));
                    pending.push(op);
                }
                Op::EndTx | Op::Commit | Op::Reopen => {
                    run_tx(b, &pending).map_err(|e| fail(&e))?;
                    pending.clear();
                    if let Some(state) = open.take() {
                        ended = state;
                    }
                    match op {
                        Op::Commit => b.force_commit().map_err(|e| fail(&e))?,
                        Op::Reopen => {
                            if let Some(b) = backend.take() {
                                b.close().map_err(|e| fail(&e))?;
                            }
                            backend = Some(h.manual(dir.path()).map_err(|e| fail(&e))?);
                        }
                        _ => {}
                    }
                }
                Op::Range(a, z, limit) => {
                    let (start, end) = (key(a.min(z)), key(a.max(z)));
                    let got = b
                        .read_tx()
                        .and_then(|r| r.range(DATA, &start, Some(&end), usize::from(limit)))
                        .map_err(|e| fail(&e))?;
                    let want: Vec<_> = ended
                        .range(start..end)
                        .take(if limit == 0 {
                            usize::MAX
                        } else {
                            usize::from(limit)
                        })
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    prop_assert_eq!(got, want);
                }
            }
        }
        Ok(())
    });
    result.map_err(|e| format!("{e}").into())
}

/// Readers never see part of a write transaction, and see every transaction that ended before
/// they began, while one writer commits under them.
pub fn visibility_stress(h: &Harness) -> TestResult {
    const KEYS: usize = 8;
    const TXNS: u64 = 400;
    let dir = tempfile::tempdir()?;
    let b = h.backend(
        dir.path(),
        BackendConfig {
            batch_interval: Duration::from_millis(2),
            batch_limit: 5 * KEYS,
        },
    )?;
    with_buckets(&b)?;
    let ended = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    std::thread::scope(|s| -> TestResult {
        let readers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| -> TestResult {
                    let mut last = 0u64;
                    while !done.load(Ordering::Acquire) {
                        let floor = ended.load(Ordering::Acquire);
                        let r = b.read_tx()?;
                        let rows = r.range(DATA, b"", None, 0)?;
                        let values: Vec<u64> = rows
                            .iter()
                            .map(|(_, v)| v.as_slice().try_into().map(u64::from_be_bytes))
                            .collect::<Result<_, _>>()?;
                        let first = values.first().copied().unwrap_or(0);
                        ensure(values.iter().all(|v| *v == first), || {
                            format!("a reader saw part of a transaction: {values:?}")
                        })?;
                        ensure(rows.is_empty() || rows.len() == KEYS, || {
                            format!("a reader saw {} of {KEYS} keys", rows.len())
                        })?;
                        ensure(first >= floor, || {
                            format!("a reader began after txn {floor} ended but saw {first}")
                        })?;
                        ensure(first >= last, || {
                            format!("went back from {last} to {first}")
                        })?;
                        last = first;
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        let written = (|| -> TestResult {
            for n in 1..=TXNS {
                let mut tx = b.batch_tx()?;
                for k in 0..KEYS {
                    tx.put(DATA, &[b'k', u8::try_from(k)?], &n.to_be_bytes())?;
                }
                tx.end()?;
                ended.store(n, Ordering::Release);
            }
            Ok(())
        })();
        done.store(true, Ordering::Release);
        for r in readers {
            r.join().map_err(|_| "reader panicked")??;
        }
        written
    })?;
    ensure(b.commits() > 0, || "the stress test never committed".into())?;
    ensure(reads.load(Ordering::Relaxed) > 0, || {
        "no read completed".into()
    })
}

/// The batch limit commits at once; the batch interval commits in the background.
pub fn batching(h: &Harness) -> TestResult {
    let dir = tempfile::tempdir()?;
    let b = h.backend(
        dir.path(),
        BackendConfig {
            batch_interval: Duration::from_secs(3600),
            batch_limit: 10,
        },
    )?;
    with_buckets(&b)?;
    let mut tx = b.batch_tx()?;
    for i in 0..9u8 {
        tx.put(DATA, &[i + 1], b"v")?;
    }
    tx.end()?;
    ensure(b.commits() == 0, || {
        "committed below the batch limit".into()
    })?;
    let mut tx = b.batch_tx()?;
    tx.put(DATA, b"\x10", b"v")?;
    tx.end()?;
    ensure(b.commits() == 1, || {
        format!("batch limit: {} commits", b.commits())
    })?;
    drop(b);

    let dir = tempfile::tempdir()?;
    let b = h.backend(
        dir.path(),
        BackendConfig {
            batch_interval: Duration::from_millis(5),
            batch_limit: usize::MAX,
        },
    )?;
    with_buckets(&b)?;
    let mut tx = b.batch_tx()?;
    tx.put(DATA, b"a", b"v")?;
    tx.end()?;
    // Bounded wait for an event, not a timing assertion.
    let deadline = Instant::now() + Duration::from_secs(20);
    while b.commits() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    ensure(b.commits() > 0, || "the committer never committed".into())
}

/// Everything ended before `close` is there after reopening.
pub fn durability(h: &Harness) -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let b = h.backend(dir.path(), BackendConfig::default())?;
        with_buckets(&b)?;
        let mut tx = b.batch_tx()?;
        for i in 0..1000u32 {
            tx.put(DATA, &i.to_be_bytes(), &i.to_le_bytes())?;
        }
        tx.delete(DATA, &7u32.to_be_bytes())?;
        tx.end()?;
        b.close()?;
    }
    let b = h.manual(dir.path())?;
    let r = b.read_tx()?;
    let rows = r.range(DATA, b"", None, 0)?;
    ensure(rows.len() == 999, || {
        format!("{} rows after reopen", rows.len())
    })?;
    ensure(r.get(DATA, &7u32.to_be_bytes())?.is_none(), || {
        "delete lost".into()
    })?;
    ensure(
        r.get(DATA, &999u32.to_be_bytes())? == Some(999u32.to_le_bytes().to_vec()),
        || "value lost".into(),
    )
}

/// Rows the kill-9 child commits, in transactions of `KILL9_TX` puts.
const KILL9_TX: u32 = 50;

/// The kill-9 test, both halves. Run by the engine's test binary: the parent re-runs the same
/// test (named `test_name`) as a child with [`KILL9_CHILD_DIR`] set, waits until the child says
/// it committed, kills it with SIGKILL, and checks every committed row is there.
pub fn kill9(h: &Harness, test_name: &str) -> TestResult {
    if let Ok(dir) = std::env::var(KILL9_CHILD_DIR) {
        return kill9_child(h, Path::new(&dir));
    }
    let dir = tempfile::tempdir()?;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(KILL9_CHILD_DIR, dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let marker = dir.path().join("committed");
    let deadline = Instant::now() + Duration::from_secs(60);
    let committed = loop {
        if let Ok(text) = std::fs::read_to_string(&marker)
            && let Ok(n) = text.trim().parse::<u32>()
            && n >= 5
        {
            break n;
        }
        if Instant::now() > deadline || child.try_wait()?.is_some() {
            let _ = child.kill();
            return Err("the kill-9 child never reported a commit".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    child.kill()?; // SIGKILL
    child.wait()?;
    let b = h.manual(&dir.path().join("db"))?;
    let rows = b.read_tx()?.range(DATA, b"", None, 0)?;
    let present = u32::try_from(rows.len())?;
    ensure(present >= committed * KILL9_TX, || {
        format!(
            "{} rows survived, {} were committed",
            present,
            committed * KILL9_TX
        )
    })?;
    ensure(present % KILL9_TX == 0, || {
        format!("a torn transaction: {present} rows")
    })?;
    for (i, (k, v)) in rows.iter().enumerate() {
        ensure(k == &u32::try_from(i)?.to_be_bytes() && v == k, || {
            format!("row {i} is wrong")
        })?;
    }
    Ok(())
}

fn kill9_child(h: &Harness, dir: &Path) -> TestResult {
    let b = h.manual(&dir.join("db"))?;
    with_buckets(&b)?;
    let mut n = 0u32;
    loop {
        let mut tx = b.batch_tx()?;
        for i in n * KILL9_TX..(n + 1) * KILL9_TX {
            tx.put(DATA, &i.to_be_bytes(), &i.to_be_bytes())?;
        }
        tx.end()?;
        b.force_commit()?;
        n += 1;
        // Written after the commit returned: the parent may count on every row so far.
        let tmp = dir.join("committed.tmp");
        std::fs::write(&tmp, n.to_string())?;
        std::fs::rename(&tmp, dir.join("committed"))?;
        if n > 100_000 {
            return Err("the parent never killed the kill-9 child".into());
        }
    }
}

fn fill(b: &Backend, rows: u32, value_len: usize) -> StorageResult<()> {
    for chunk in (0..rows).collect::<Vec<_>>().chunks(1000) {
        let mut tx = b.batch_tx()?;
        for i in chunk {
            tx.put(DATA, &i.to_be_bytes(), &vec![(i % 251) as u8; value_len])?;
            if i % 3 == 0 {
                tx.put(OTHER, &i.to_le_bytes(), b"x")?;
            }
        }
        tx.end()?;
    }
    Ok(())
}

/// A snapshot taken while writes go on restores, on a new backend, to exactly the content it was
/// taken at (same hash); damaged snapshots are refused.
pub fn snapshot_restore(h: &Harness) -> TestResult {
    let dir = tempfile::tempdir()?;
    let b = h.backend(dir.path(), BackendConfig::default())?;
    with_buckets(&b)?;
    fill(&b, 3000, 300)?;
    let expected = b.hash(&|_, _| false)?;
    let mut snapshot = b.snapshot()?;
    // Writes after the snapshot began must not be in it.
    fill(&b, 4000, 10)?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut snapshot, &mut bytes)?;
    ensure(b.hash(&|_, _| false)? != expected, || {
        "later writes changed nothing".into()
    })?;

    let restored_dir = tempfile::tempdir()?;
    let restored = h.manual(restored_dir.path())?;
    let records = restore_snapshot(&restored, bytes.as_slice())?;
    ensure(records == 3000 + 1000, || {
        format!("{records} records restored")
    })?;
    let got = restored.hash(&|_, _| false)?;
    ensure(got == expected, || {
        format!("restored hash {got:#x} != {expected:#x}")
    })?;

    for (what, damaged) in [
        ("flipped byte", {
            let mut d = bytes.clone();
            let mid = d.len() / 2;
            d[mid] ^= 0x40;
            d
        }),
        ("truncated", bytes[..bytes.len() - 3].to_vec()),
        ("bad magic", {
            let mut d = bytes.clone();
            d[0] = b'X';
            d
        }),
    ] {
        let target = tempfile::tempdir()?;
        let fresh = h.manual(target.path())?;
        let err = restore_snapshot(&fresh, damaged.as_slice());
        ensure(matches!(err, Err(StorageError::Corrupted(_))), || {
            format!("{what} snapshot: {err:?}")
        })?;
    }
    Ok(())
}

/// The hash is CRC-32C over bucket names and key-values in order, the same on every engine, and
/// honours the ignore filter.
pub fn hash(h: &Harness) -> TestResult {
    let dir = tempfile::tempdir()?;
    let b = h.manual(dir.path())?;
    with_buckets(&b)?;
    let mut tx = b.batch_tx()?;
    tx.put(DATA, b"k1", b"v1")?;
    tx.put(DATA, b"k2", b"v2")?;
    tx.put(OTHER, b"o", b"w")?;
    tx.end()?;
    let mut want = 0;
    for part in [
        &b"conformance_data"[..],
        b"k1",
        b"v1",
        b"k2",
        b"v2",
        b"conformance_other",
        b"o",
        b"w",
    ] {
        want = crc32c::crc32c_append(want, part);
    }
    let buffered = b.hash(&|_, _| false)?;
    b.force_commit()?;
    let committed = b.hash(&|_, _| false)?;
    ensure(buffered == want && committed == want, || {
        format!("hash {buffered:#x}/{committed:#x}, expected {want:#x}")
    })?;
    let ignoring = b.hash(&|bucket, key| bucket == DATA && key == b"k2")?;
    ensure(ignoring != want, || {
        "the ignore filter had no effect".into()
    })
}

/// Defrag after mass deletion returns space to the file system and keeps the live data.
pub fn defrag(h: &Harness) -> TestResult {
    let dir = tempfile::tempdir()?;
    let b = h.manual(dir.path())?;
    with_buckets(&b)?;
    fill(&b, 20_000, 1024)?;
    b.force_commit()?;
    let mut tx = b.batch_tx()?;
    for i in 100..20_000u32 {
        tx.delete(DATA, &i.to_be_bytes())?;
    }
    tx.end()?;
    b.force_commit()?;
    let before = b.size()?;
    let reader = b.read_tx()?;
    let live_before = reader.range(DATA, b"", None, 0)?;
    drop(reader);
    b.defrag()?;
    let after = b.size()?;
    ensure(after < before / 2, || {
        format!("defrag: {before} bytes before, {after} after")
    })?;
    ensure(b.size_in_use()? <= after, || {
        "more in use than on disk".into()
    })?;
    let live_after = b.read_tx()?.range(DATA, b"", None, 0)?;
    ensure(live_after == live_before && live_after.len() == 100, || {
        format!("defrag changed the data: {} rows", live_after.len())
    })?;
    let mut tx = b.batch_tx()?;
    tx.put(DATA, b"after-defrag", b"ok")?;
    tx.end()?;
    b.force_commit()?;
    ensure(
        b.read_tx()?.get(DATA, b"after-defrag")? == Some(b"ok".to_vec()),
        || "writes after defrag failed".into(),
    )
}

/// Many readers and a writer share the backend across threads through an `Arc`.
pub fn shared_across_threads(h: &Harness) -> TestResult {
    let dir = tempfile::tempdir()?;
    let b = Arc::new(h.manual(dir.path())?);
    with_buckets(&b)?;
    let handles: Vec<_> = (0..4u8)
        .map(|t| {
            let b = Arc::clone(&b);
            std::thread::spawn(move || -> StorageResult<()> {
                for i in 0..50u8 {
                    let mut tx = b.batch_tx()?;
                    tx.put(DATA, &[t, i], &[i])?;
                    tx.end()?;
                    b.read_tx()?.range(DATA, &[t], Some(&[t + 1]), 0)?;
                }
                Ok(())
            })
        })
        .collect();
    for handle in handles {
        handle.join().map_err(|_| "writer panicked")??;
    }
    let rows = b.read_tx()?.range(DATA, b"", None, 0)?.len();
    ensure(rows == 200, || format!("{rows} rows"))
}

/// Every test of the suite but kill-9 (which needs the test binary's name), by name.
pub const TESTS: &[(&str, Test)] = &[
    ("buckets", buckets),
    ("visibility", visibility),
    ("ranges", ranges),
    ("bad_input", bad_input),
    ("corrupted_files", corrupted_files),
    ("model", model),
    ("visibility_stress", visibility_stress),
    ("batching", batching),
    ("durability", durability),
    ("snapshot_restore", snapshot_restore),
    ("hash", hash),
    ("defrag", defrag),
    ("shared_across_threads", shared_across_threads),
];

/// Expands, in an engine's integration test, to a module `$engine` with one rstest case per
/// conformance test plus the kill-9 test, all run against the engine `$harness` opens. The test
/// file must depend on `rstest`.
#[macro_export]
macro_rules! conformance_suite {
    ($engine:ident, $harness:expr) => {
        mod $engine {
            use super::*;

            #[rstest::rstest]
            #[case::buckets($crate::conformance::buckets)]
            #[case::visibility($crate::conformance::visibility)]
            #[case::ranges($crate::conformance::ranges)]
            #[case::bad_input($crate::conformance::bad_input)]
            #[case::corrupted_files($crate::conformance::corrupted_files)]
            #[case::model($crate::conformance::model)]
            #[case::visibility_stress($crate::conformance::visibility_stress)]
            #[case::batching($crate::conformance::batching)]
            #[case::durability($crate::conformance::durability)]
            #[case::snapshot_restore($crate::conformance::snapshot_restore)]
            #[case::hash($crate::conformance::hash)]
            #[case::defrag($crate::conformance::defrag)]
            #[case::shared_across_threads($crate::conformance::shared_across_threads)]
            fn conformance(#[case] test: $crate::conformance::Test) {
                if let Err(e) = test(&$harness) {
                    panic!("conformance failure: {e}");
                }
            }

            #[test]
            fn kill9_durability() {
                let name = concat!(stringify!($engine), "::kill9_durability");
                if let Err(e) = $crate::conformance::kill9(&$harness, name) {
                    panic!("conformance failure: {e}");
                }
            }

            #[test]
            fn suite_is_complete() {
                // The rstest cases above must list every test of the suite.
                assert_eq!($crate::conformance::TESTS.len(), 13);
            }
        }
    };
}
