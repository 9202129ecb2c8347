//! Crash consistency of one member: heavy concurrent writes, `kill -9` at a random moment,
//! restart on the same data directory, and compare the recovered state with what was
//! acknowledged. Repeated `loops` times on the same data directory, so later loops also
//! recover a larger store with earlier loops' data in it.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::time::sleep;
use tonic::transport::Channel;

use crate::client;
use crate::cluster::{Cluster, DiskFaults};
use crate::history::Violation;
use crate::rng::Rng;

/// Concurrent writers per loop.
const WRITERS: u64 = 8;
/// Keys per writer (each overwritten many times, so a rollback shows as an old value).
const KEYS_PER_WRITER: u64 = 16;

/// What one crash loop found.
#[derive(Debug, Default)]
pub struct CrashReport {
    /// The loop's number.
    pub round: usize,
    /// Writes acknowledged before the kill.
    pub acknowledged: usize,
    /// Writes in flight at the kill (outcome unknown).
    pub in_flight: usize,
    /// Keys compared after the restart.
    pub keys_checked: usize,
    /// How long after the writers started the member was killed.
    pub killed_after: Duration,
    /// The violations found.
    pub violations: Vec<Violation>,
}

/// Per key, in write order: (value, acknowledged with this revision, or `None`: unknown).
type Writes = BTreeMap<String, Vec<(String, Option<i64>)>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `loops` crash loops with `seed`; returns one report per loop (or an error if the member
/// cannot be started at all). The data directory is kept under `work_dir` when a loop fails.
pub async fn run(
    binary: &std::path::Path,
    work_dir: &std::path::Path,
    seed: u64,
    loops: usize,
    mut progress: impl FnMut(&CrashReport),
) -> anyhow::Result<(Vec<CrashReport>, Option<PathBuf>)> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("chaos-crash-seed{seed}-"))
        .tempdir_in(work_dir)?;
    let mut rng = Rng::new(seed);
    let mut cluster = Cluster::start(
        binary,
        dir.path(),
        1,
        false,
        &[],
        &DiskFaults::default(),
        &rng,
    )
    .await?;
    let ch = client::channel(&cluster.members[0].client_url())?;
    let mut reports = Vec::new();
    let mut all: Vec<Writes> = Vec::new();
    for round in 0..loops {
        let mut report = CrashReport {
            round,
            ..Default::default()
        };
        if let Err(e) = wait_ready(&ch).await {
            report.violations.push(Violation {
                check: "recovery",
                detail: format!("{e}; log tail:\n{}", cluster.log_tail(0, 30)),
            });
            reports.push(report);
            break;
        }
        // Heavy writing, then kill -9 at a random moment.
        let writes: Arc<Mutex<Writes>> = Arc::default();
        let killed = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            tasks.push(tokio::spawn(writer(
                ch.clone(),
                round,
                w,
                rng.fork(w),
                writes.clone(),
                killed.clone(),
            )));
        }
        let after = Duration::from_millis(rng.range(100, 1500));
        sleep(after).await;
        cluster.kill9(0);
        killed.store(true, Ordering::SeqCst);
        for t in tasks {
            let _ = t.await;
        }
        report.killed_after = after;
        let writes = std::mem::take(&mut *lock(&writes));
        for versions in writes.values() {
            for (_, rev) in versions {
                if rev.is_some() {
                    report.acknowledged += 1;
                } else {
                    report.in_flight += 1;
                }
            }
        }
        all.push(writes);

        if let Err(e) = cluster.restart(0) {
            report.violations.push(Violation {
                check: "recovery",
                detail: format!("restart failed: {e}"),
            });
            reports.push(report);
            break;
        }
        if let Err(e) = wait_ready(&ch).await {
            report.violations.push(Violation {
                check: "recovery",
                detail: format!("{e}; log tail:\n{}", cluster.log_tail(0, 30)),
            });
            reports.push(report);
            break;
        }
        // This loop's keys, and those of one earlier loop (they must stay recovered too).
        let mut rounds = vec![round];
        if round > 0 {
            rounds.push(rng.below(round as u64) as usize);
        }
        for r in rounds {
            compare(&ch, r, &all[r], &mut report).await;
        }
        progress(&report);
        reports.push(report);
        rng.next_u64();
    }
    // At the end, every loop's keys once more.
    if let Some(last) = reports.last_mut()
        && last.violations.is_empty()
        && wait_ready(&ch).await.is_ok()
    {
        for (r, w) in all.iter().enumerate() {
            compare(&ch, r, w, last).await;
        }
    }
    let failed = reports.iter().any(|r| !r.violations.is_empty());
    drop(cluster);
    let kept = failed.then(|| dir.keep());
    Ok((reports, kept))
}

async fn wait_ready(ch: &Channel) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if client::get(ch, "crash-ready", false).await.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("the member did not serve reads within 60 s of its restart");
        }
        sleep(Duration::from_millis(100)).await;
    }
}

/// One writer: overwrites its keys with unique values until a write fails (the kill).
async fn writer(
    ch: Channel,
    round: usize,
    w: u64,
    mut rng: Rng,
    writes: Arc<Mutex<Writes>>,
    killed: Arc<AtomicBool>,
) {
    // Bounded: stops at the first failed write, and the kill makes every write fail.
    for i in 0u64.. {
        if killed.load(Ordering::SeqCst) {
            return;
        }
        let key = format!("crash/{round:04}/w{w}/k{:02}", rng.below(KEYS_PER_WRITER));
        let value = format!("r{round}-w{w}-{i}");
        lock(&writes)
            .entry(key.clone())
            .or_default()
            .push((value.clone(), None));
        match client::put(&ch, &key, &value, 0).await {
            Ok(rev) => {
                if let Some(last) = lock(&writes).get_mut(&key).and_then(|v| v.last_mut()) {
                    last.1 = Some(rev);
                }
            }
            Err(_) => return,
        }
    }
}

/// Compares round `r`'s keys in the recovered store with what was written: a key holds its
/// last acknowledged value or a later in-flight one; a key never acknowledged is absent or
/// holds an in-flight value; nothing else appears.
async fn compare(ch: &Channel, r: usize, writes: &Writes, report: &mut CrashReport) {
    let prefix = format!("crash/{r:04}/");
    let (rev, kvs) = match client::get_prefix(ch, &prefix).await {
        Ok(x) => x,
        Err(e) => {
            report.violations.push(Violation {
                check: "recovery",
                detail: format!("reading {prefix} after the restart: {e}"),
            });
            return;
        }
    };
    let present: HashMap<&str, (&str, i64)> = kvs
        .iter()
        .map(|(k, v, m)| (k.as_str(), (v.as_str(), *m)))
        .collect();
    for k in present.keys() {
        if !writes.contains_key(*k) {
            report.violations.push(Violation {
                check: "crash consistency",
                detail: format!("key {k:?} was never written but is present after the restart"),
            });
        }
    }
    let max_acked = writes
        .values()
        .flat_map(|v| v.iter().filter_map(|(_, r)| *r))
        .max()
        .unwrap_or(0);
    if rev < max_acked {
        report.violations.push(Violation {
            check: "crash consistency",
            detail: format!(
                "the recovered revision {rev} is below the highest acknowledged one {max_acked} (round {r})"
            ),
        });
    }
    for (key, versions) in writes {
        report.keys_checked += 1;
        let last_acked = versions.iter().rposition(|(_, rev)| rev.is_some());
        let allowed: Vec<&(String, Option<i64>)> = match last_acked {
            Some(i) => versions[i..].iter().collect(),
            None => versions.iter().collect(),
        };
        let ok = match present.get(key.as_str()) {
            None => last_acked.is_none(),
            Some((v, mod_rev)) => allowed
                .iter()
                .any(|(a, arev)| a == v && arev.is_none_or(|x| x == *mod_rev)),
        };
        if !ok {
            report.violations.push(Violation {
                check: "crash consistency",
                detail: format!(
                    "round {r}: key {key:?} recovered as {:?}, but the last acknowledged write was {:?} \
                     (allowed: {:?})",
                    present.get(key.as_str()),
                    last_acked.map(|i| &versions[i]),
                    allowed
                ),
            });
        }
    }
}
