//! One seeded chaos run against a cluster: concurrent clients (puts, deletes, compare-and-set
//! transactions, linearizable and serializable reads), watchers, a lease workload, and a fault
//! schedule (kill -9 and restart, SIGSTOP/SIGCONT, partitions, delay and loss, leader moves,
//! a member removed and replaced by a new one, a full disk, failing fsyncs), all bounded by the
//! run's duration; then the checks of [`crate::history`].

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::time::sleep;
use tonic::transport::Channel;

use crate::client::{self, Event};
use crate::cluster::{Cluster, DiskFaults, ELECTION_MS};
use crate::history::{self, Checked, Kind, Record, Result as Res, Violation};
use crate::proxy::LinkFault;
use crate::rng::Rng;

/// What a run does.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The `ferrocd` binary.
    pub binary: PathBuf,
    /// Members in the cluster (3 or 5).
    pub members: usize,
    /// How long clients and faults run.
    pub duration: Duration,
    /// Concurrent KV clients.
    pub clients: usize,
    /// Keys the KV clients share (few keys: more contention, more to check).
    pub keys: usize,
    /// Where run directories go (kept when a run fails).
    pub work_dir: PathBuf,
    /// `--snapshot-count` of the members: small, so that members snapshot and compact their
    /// log during the run and a restarted or partitioned member is caught up by a snapshot.
    pub snapshot_count: u64,
    /// Keep the run directory even when the run passes.
    pub keep_dirs: bool,
    /// A self-test of the checker: hold serializable reads to linearizability too. They may
    /// legitimately be stale (a paused or partitioned member serves them), so under faults
    /// this is expected to report violations: it shows the checks have teeth.
    pub serializable_as_linearizable: bool,
}

/// What a run found.
#[derive(Debug, Default)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// Members in the cluster.
    pub members: usize,
    /// Client operations recorded (all kinds).
    pub operations: usize,
    /// Counters of what was checked.
    pub checked: Checked,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, usize>,
    /// Leases granted by the lease workload.
    pub leases: usize,
    /// The fault schedule as it happened (for reproduction).
    pub schedule: Vec<String>,
    /// The violations found.
    pub violations: Vec<Violation>,
    /// The run's directory (member logs, data), kept when the run failed.
    pub dir: Option<PathBuf>,
    /// Faults this machine could not inject, and why.
    pub unavailable: Vec<String>,
}

impl RunReport {
    /// Faults injected in all.
    pub fn fault_count(&self) -> usize {
        self.faults.values().sum()
    }
}

type Shared<T> = Arc<Mutex<T>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Nanoseconds since `start`.
fn ns(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Runs one seeded chaos run and checks it.
pub async fn run(cfg: &RunConfig, seed: u64) -> RunReport {
    let mut report = RunReport {
        seed,
        members: cfg.members,
        ..Default::default()
    };
    let dir = match tempfile::Builder::new()
        .prefix(&format!("chaos-{}m-seed{seed}-", cfg.members))
        .tempdir_in(&cfg.work_dir)
    {
        Ok(d) => d,
        Err(e) => {
            report.violations.push(Violation {
                check: "setup",
                detail: format!("cannot create a run directory: {e}"),
            });
            return report;
        }
    };
    if let Err(e) = run_in(cfg, seed, dir.path().to_path_buf(), &mut report).await {
        report.violations.push(Violation {
            check: "setup",
            detail: format!("{e:#}"),
        });
    }
    if cfg.keep_dirs || !report.violations.is_empty() {
        report.dir = Some(dir.keep());
    }
    report
}

/// Polls until every member answers a linearizable read, at most `within`.
async fn wait_ready(chans: &[Channel], within: Duration) -> anyhow::Result<i64> {
    let deadline = Instant::now() + within;
    loop {
        let mut rev = 0;
        let mut all = true;
        for ch in chans {
            match client::get(ch, "chaos-ready", false).await {
                Ok((r, _)) => rev = rev.max(r),
                Err(_) => all = false,
            }
        }
        if all {
            return Ok(rev);
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "the cluster did not serve linearizable reads on every member within {within:?}"
            );
        }
        sleep(Duration::from_millis(200)).await;
    }
}

async fn run_in(
    cfg: &RunConfig,
    seed: u64,
    dir: PathBuf,
    report: &mut RunReport,
) -> anyhow::Result<()> {
    let rng = Rng::new(seed);
    let n = cfg.members;
    let extra = [
        "--snapshot-count".to_owned(),
        cfg.snapshot_count.to_string(),
        "--experimental-snapshot-catchup-entries".to_owned(),
        (cfg.snapshot_count / 4).max(1).to_string(),
    ];
    let (disk_faults, unavailable) = DiskFaults::probe(&dir);
    report.unavailable = unavailable;
    let cluster = Cluster::start(&cfg.binary, &dir, n, true, &extra, &disk_faults, &rng).await?;
    let chans: Vec<Channel> = cluster
        .members
        .iter()
        .map(|m| client::channel(&m.client_url()))
        .collect::<Result<_, _>>()?;
    if let Err(e) = wait_ready(&chans, Duration::from_secs(60)).await {
        for i in 0..n {
            eprintln!(
                "--- {} log ---\n{}",
                cluster.members[i].name,
                cluster.log_tail(i, 20)
            );
        }
        return Err(e);
    }
    let ids = client::member_ids(&chans[0]).await?;
    let ids: Vec<u64> = cluster
        .members
        .iter()
        .map(|m| {
            ids.iter()
                .find(|(name, _)| *name == m.name)
                .map(|(_, id)| *id)
                .ok_or_else(|| anyhow::anyhow!("member {} not in the member list", m.name))
        })
        .collect::<anyhow::Result<_>>()?;
    cluster.net.set_ids(&ids);
    let (r0, _) = client::get(&chans[0], "chaos-start", false).await?;

    let prefix = format!("s{seed}/kv/");
    let lease_prefix = format!("s{seed}/lease/");
    let keys: Vec<String> = (0..cfg.keys).map(|k| format!("{prefix}k{k}")).collect();
    let start = Instant::now();
    let deadline = start + cfg.duration;
    let records: Shared<Vec<Record>> = Arc::default();
    let violations: Shared<Vec<Violation>> = Arc::default();

    // Watchers: one per member, each moving to the next member when its stream breaks.
    let stop_at = Arc::new(AtomicI64::new(i64::MAX));
    let hard_stop = Arc::new(AtomicBool::new(false));
    let mut watchers = Vec::new();
    for w in 0..n {
        watchers.push(tokio::spawn(watcher(
            chans.clone(),
            w,
            prefix.clone(),
            r0 + 1,
            stop_at.clone(),
            hard_stop.clone(),
        )));
    }

    let mut clients = Vec::new();
    for c in 0..cfg.clients {
        clients.push(tokio::spawn(kv_client(
            c as u64,
            rng.fork(c as u64),
            chans.clone(),
            keys.clone(),
            seed,
            start,
            deadline,
            records.clone(),
        )));
    }
    let leases = tokio::spawn(lease_client(
        rng.fork(500),
        chans.clone(),
        lease_prefix.clone(),
        deadline,
        violations.clone(),
    ));
    let faults = tokio::spawn(fault_schedule(
        cluster,
        rng.fork(900),
        chans.clone(),
        ids.clone(),
        start,
        deadline,
    ));

    for c in clients {
        let _ = c.await;
    }
    let lease_count = leases.await.unwrap_or(0);
    let (mut cluster, faults_done, schedule, crashed) = faults.await?;
    report.faults = faults_done;
    report.schedule = schedule;
    report.leases = lease_count;
    lock(&violations).extend(crashed);
    cluster.heal_all()?;
    if let Err(e) = wait_ready(&chans, Duration::from_secs(60)).await {
        lock(&violations).push(Violation {
            check: "recovery",
            detail: format!("{e} after healing every fault"),
        });
    }

    // Final reads of every key on every member: the history's last word on acknowledged writes.
    for k in &keys {
        for (m, ch) in chans.iter().enumerate() {
            let call = ns(start);
            let result = match client::get(ch, k, false).await {
                Ok((rev, kv)) => Res::Get { rev, kv },
                Err(_) => Res::Unknown,
            };
            lock(&records).push(Record {
                client: 1000 + m as u64,
                member: m,
                key: k.clone(),
                call,
                ret: ns(start),
                kind: Kind::Get {
                    serializable: false,
                },
                result,
            });
        }
    }
    // A sentinel write ends every watch stream: watchers and the reference stop at it.
    let sentinel_key = format!("{prefix}~end");
    let sentinel_value = format!("s{seed}-end");
    let mut sentinel_rev = None;
    for attempt in 0..50 {
        let ch = &chans[attempt % n];
        let call = ns(start);
        if let Ok(rev) = client::put(ch, &sentinel_key, &sentinel_value, 0).await {
            lock(&records).push(Record {
                client: 999,
                member: attempt % n,
                key: sentinel_key.clone(),
                call,
                ret: ns(start),
                kind: Kind::Put(sentinel_value.clone()),
                result: Res::Put { rev },
            });
            sentinel_rev = Some(rev);
            break;
        }
        sleep(Duration::from_millis(200)).await;
    }
    let Some(sentinel_rev) = sentinel_rev else {
        hard_stop.store(true, Ordering::SeqCst);
        anyhow::bail!("the sentinel write was never acknowledged after healing");
    };
    stop_at.store(sentinel_rev, Ordering::SeqCst);
    let reference = reference_history(&chans, &prefix, r0 + 1, sentinel_rev).await;
    // Watchers get a bounded time to reach the sentinel.
    let watch_deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < watch_deadline && !watchers.iter().all(|w| w.is_finished()) {
        sleep(Duration::from_millis(100)).await;
    }
    hard_stop.store(true, Ordering::SeqCst);
    let mut watched = Vec::new();
    for w in watchers {
        watched.push(w.await.unwrap_or_default());
    }
    lease_final_check(&chans, &lease_prefix, &violations).await;

    let records = std::mem::take(&mut *lock(&records));
    report.operations = records.len();
    let mut out = std::mem::take(&mut *lock(&violations));
    let records: Vec<Record> = if cfg.serializable_as_linearizable {
        records
            .into_iter()
            .map(|mut r| {
                if let Kind::Get { serializable } = &mut r.kind {
                    *serializable = false;
                }
                r
            })
            .collect()
    } else {
        records
    };
    let resolved = match &reference {
        Some(reference) => history::resolve_unknowns(&records, reference),
        None => records.clone(),
    };
    history::check_linearizability(&resolved, &mut report.checked, &mut out);
    history::check_revisions(&records, &mut out);
    history::check_values(&records, &mut out);
    match reference {
        Some(reference) => {
            history::check_reference(&reference, &mut out);
            history::check_acknowledged(&records, &reference, &mut out);
            for (w, events) in watched.iter().enumerate() {
                history::check_watcher(
                    &format!("watcher {w}"),
                    events,
                    &reference,
                    &mut report.checked,
                    &mut out,
                );
            }
        }
        None => out.push(Violation {
            check: "watch",
            detail: "no member delivered the store's history up to the sentinel write".into(),
        }),
    }
    for i in 0..n {
        if let Some(status) = cluster.exited(i) {
            out.push(crash_violation(&cluster, i, status, " after the run"));
        }
    }
    report.violations.extend(out);
    drop(cluster);
    Ok(())
}

/// Member `i` exited by itself with `status` (`when` qualifies the moment, e.g. " after the
/// run"): a violation carrying its log's tail.
fn crash_violation(
    cluster: &Cluster,
    i: usize,
    status: std::process::ExitStatus,
    when: &str,
) -> Violation {
    Violation {
        check: "crash",
        detail: format!(
            "{} exited by itself ({status}){when}; log tail:\n{}",
            cluster.members[i].name,
            cluster.log_tail(i, 30)
        ),
    }
}

/// A KV client: random operations on the shared keys until `deadline`, each recorded.
#[allow(clippy::too_many_arguments)]
async fn kv_client(
    id: u64,
    mut rng: Rng,
    chans: Vec<Channel>,
    keys: Vec<String>,
    seed: u64,
    start: Instant,
    deadline: Instant,
    records: Shared<Vec<Record>>,
) {
    let n = chans.len();
    let mut member = id as usize % n;
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut count = 0u64;
    while Instant::now() < deadline {
        count += 1;
        let key = keys[rng.below(keys.len() as u64) as usize].clone();
        let value = format!("s{seed}-c{id}-{count}");
        let ch = &chans[member];
        let roll = rng.below(100);
        let call = ns(start);
        let (kind, result) = match roll {
            0..30 => {
                let r = client::put(ch, &key, &value, 0).await;
                if r.is_ok() {
                    seen.insert(key.clone(), value.clone());
                }
                (
                    Kind::Put(value),
                    r.map_or(Res::Unknown, |rev| Res::Put { rev }),
                )
            }
            30..70 => {
                let serializable = roll >= 58;
                let r = client::get(ch, &key, serializable).await;
                if let Ok((_, Some((v, _)))) = &r {
                    seen.insert(key.clone(), v.clone());
                }
                (
                    Kind::Get { serializable },
                    r.map_or(Res::Unknown, |(rev, kv)| Res::Get { rev, kv }),
                )
            }
            70..80 => {
                let r = client::delete(ch, &key).await;
                (
                    Kind::Delete,
                    r.map_or(Res::Unknown, |(rev, deleted)| Res::Delete { rev, deleted }),
                )
            }
            _ => {
                let expect = if rng.chance(0.25) {
                    None
                } else {
                    seen.get(&key).cloned()
                };
                let r = client::cas(ch, &key, expect.as_deref(), &value).await;
                (
                    Kind::Cas { expect, value },
                    r.map_or(Res::Unknown, |(rev, succeeded)| Res::Cas { rev, succeeded }),
                )
            }
        };
        let failed = matches!(result, Res::Unknown);
        lock(&records).push(Record {
            client: id,
            member,
            key,
            call,
            ret: ns(start),
            kind,
            result,
        });
        if failed {
            // Another member may be up; do not spin against a dead one.
            member = (member + 1) % n;
            sleep(Duration::from_millis(50)).await;
        } else if rng.chance(0.02) {
            member = rng.below(n as u64) as usize;
        }
    }
}

/// A watcher of `prefix` from `start_rev`: reconnects to the next member (from the revision
/// after the last event it got) whenever its stream breaks; stops at revision `stop_at` or on
/// `hard_stop`. Returns the events it received, in order.
async fn watcher(
    chans: Vec<Channel>,
    first: usize,
    prefix: String,
    start_rev: i64,
    stop_at: Arc<AtomicI64>,
    hard_stop: Arc<AtomicBool>,
) -> Vec<Event> {
    let n = chans.len();
    let mut member = first;
    let mut events: Vec<Event> = Vec::new();
    let mut next = start_rev;
    while !hard_stop.load(Ordering::SeqCst) {
        if next > stop_at.load(Ordering::SeqCst) {
            break;
        }
        let Ok((_tx, mut stream)) = client::watch(&chans[member], &prefix, next).await else {
            member = (member + 1) % n;
            sleep(Duration::from_millis(100)).await;
            continue;
        };
        // Bounded by hard_stop (checked every 200 ms) and by the stream's end.
        loop {
            if hard_stop.load(Ordering::SeqCst) || next > stop_at.load(Ordering::SeqCst) {
                return events;
            }
            match tokio::time::timeout(Duration::from_millis(200), stream.message()).await {
                Err(_) => continue,
                Ok(Ok(Some(resp))) => {
                    for e in client::events(&resp) {
                        next = next.max(e.0 + 1);
                        events.push(e);
                    }
                    if resp.canceled {
                        break;
                    }
                }
                Ok(Ok(None)) | Ok(Err(_)) => break,
            }
        }
        member = (member + 1) % n;
        sleep(Duration::from_millis(50)).await;
    }
    events
}

/// The store's history of `prefix` from `start_rev` to `end_rev`, from a fresh watch on the
/// first member that delivers all of it.
async fn reference_history(
    chans: &[Channel],
    prefix: &str,
    start_rev: i64,
    end_rev: i64,
) -> Option<Vec<Event>> {
    let stop_at = Arc::new(AtomicI64::new(end_rev));
    for (i, _) in chans.iter().enumerate() {
        let hard = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(watcher(
            vec![chans[i].clone()],
            0,
            prefix.to_owned(),
            start_rev,
            stop_at.clone(),
            hard.clone(),
        ));
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && !task.is_finished() {
            sleep(Duration::from_millis(50)).await;
        }
        hard.store(true, Ordering::SeqCst);
        let events = task.await.unwrap_or_default();
        if events.last().is_some_and(|e| e.0 >= end_rev) {
            return Some(events);
        }
    }
    None
}

/// Grants short leases, attaches keys, revokes some; after a revoke is acknowledged its key
/// must be gone. Returns how many leases were granted.
async fn lease_client(
    mut rng: Rng,
    chans: Vec<Channel>,
    prefix: String,
    deadline: Instant,
    violations: Shared<Vec<Violation>>,
) -> usize {
    let n = chans.len();
    let mut granted = 0;
    let mut member = 0;
    while Instant::now() < deadline {
        let ch = &chans[member];
        let Ok(id) = client::lease_grant(ch, 2).await else {
            member = (member + 1) % n;
            sleep(Duration::from_millis(100)).await;
            continue;
        };
        granted += 1;
        let key = format!("{prefix}{id:x}");
        // After an acknowledged revoke, a linearizable read must not see the key.
        if client::put(ch, &key, "leased", id).await.is_ok()
            && rng.chance(0.4)
            && client::lease_revoke(ch, id).await.is_ok()
            && let Ok((rev, Some(kv))) = client::get(ch, &key, false).await
        {
            lock(&violations).push(Violation {
                check: "leases",
                detail: format!(
                    "key {key:?} of lease {id:x} still present at revision {rev} after its revoke was acknowledged: {kv:?}"
                ),
            });
        }
        sleep(Duration::from_millis(rng.range(100, 400))).await;
    }
    granted
}

/// After the run: every key attached to a lease of the lease workload (none is kept alive)
/// must disappear once the leases expire (bounded wait: TTL plus leader changes' extensions).
async fn lease_final_check(chans: &[Channel], prefix: &str, violations: &Shared<Vec<Violation>>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = Vec::new();
    while Instant::now() < deadline {
        if let Ok((_, kvs)) = client::get_prefix(&chans[0], prefix).await {
            if kvs.is_empty() {
                return;
            }
            last = kvs;
        }
        sleep(Duration::from_millis(500)).await;
    }
    lock(violations).push(Violation {
        check: "leases",
        detail: format!(
            "{} keys of expired leases (TTL 2 s, never kept alive) still present 30 s after the run: {:?}",
            last.len(),
            last.iter().take(5).collect::<Vec<_>>()
        ),
    });
}

/// The leader's index, if the running, unpaused members agree on one.
async fn leader(cluster: &Cluster, chans: &[Channel], ids: &[u64]) -> Option<usize> {
    let mut lead = None;
    for (i, m) in cluster.members.iter().enumerate() {
        if !m.is_running() || m.is_paused() {
            continue;
        }
        if let Ok((_, l)) = client::status(&chans[i]).await
            && l != 0
        {
            if lead.is_some_and(|x| x != l) {
                return None;
            }
            lead = Some(l);
        }
    }
    ids.iter().position(|id| Some(*id) == lead)
}

type FaultsDone = (
    Cluster,
    BTreeMap<&'static str, usize>,
    Vec<String>,
    Vec<Violation>,
);

/// The fault schedule: until `deadline`, one fault at a time, each held for a while (longer
/// than an election timeout) and then undone.
async fn fault_schedule(
    mut cluster: Cluster,
    mut rng: Rng,
    chans: Vec<Channel>,
    mut ids: Vec<u64>,
    start: Instant,
    deadline: Instant,
) -> FaultsDone {
    let n = cluster.members.len();
    let mut done: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut schedule = Vec::new();
    let mut crashed = Vec::new();
    let t = |start: Instant| format!("{:>6.2}s", start.elapsed().as_secs_f64());
    while Instant::now() < deadline {
        sleep(Duration::from_millis(rng.range(300, 1200))).await;
        if Instant::now() >= deadline {
            break;
        }
        for i in 0..n {
            if let Some(status) = cluster.exited(i) {
                crashed.push(crash_violation(&cluster, i, status, ""));
                let _ = cluster.restart(i);
            }
        }
        let lead = leader(&cluster, &chans, &ids).await;
        let random = rng.below(n as u64) as usize;
        let on_leader = rng.chance(0.5);
        let target = if on_leader {
            lead.unwrap_or(random)
        } else {
            random
        };
        let who = |i: usize| format!("m{i}{}", if Some(i) == lead { " (leader)" } else { "" });
        let hold = Duration::from_millis(rng.range(2 * ELECTION_MS, 5 * ELECTION_MS));
        let kind = match rng.below(100) {
            0..4 => "kill -9 all + restart",
            4..18 => "kill -9 + restart",
            18..29 => "SIGSTOP/SIGCONT",
            29..42 => "partition",
            42..54 => "delay/loss",
            54..64 => "compound",
            64..74 => "move leader",
            74..82 => "replace member",
            82..91 => "disk full",
            _ => "fsync error",
        };
        match kind {
            "kill -9 + restart" => {
                // On 5 members, sometimes a whole minority (two members) at once.
                let mut victims = vec![target];
                if n >= 5 && rng.chance(0.3) {
                    victims.push((target + 1 + rng.below(n as u64 - 1) as usize) % n);
                }
                let names: Vec<String> = victims.iter().map(|&i| who(i)).collect();
                schedule.push(format!(
                    "{} kill -9 {}, down {:?}",
                    t(start),
                    names.join(" and "),
                    hold
                ));
                for &v in &victims {
                    cluster.kill9(v);
                }
                sleep(hold).await;
                for &v in &victims {
                    if let Err(e) = cluster.restart(v) {
                        schedule.push(format!("{} restart of m{v} failed: {e}", t(start)));
                    }
                }
            }
            "kill -9 all + restart" => {
                schedule.push(format!(
                    "{} kill -9 every member, down {:?}",
                    t(start),
                    hold / 2
                ));
                for i in 0..n {
                    cluster.kill9(i);
                }
                sleep(hold / 2).await;
                for i in 0..n {
                    if let Err(e) = cluster.restart(i) {
                        schedule.push(format!("{} restart of m{i} failed: {e}", t(start)));
                    }
                }
            }
            "compound" => {
                // Two faults at once on two members (the first often the leader): on three
                // members this takes the quorum away for the hold.
                let other = (target + 1 + rng.below(n as u64 - 1) as usize) % n;
                let mut undo: Vec<(usize, u64)> = Vec::new();
                let mut what = Vec::new();
                for m in [target, other] {
                    let k = rng.below(3);
                    match k {
                        0 => {
                            cluster.kill9(m);
                            what.push(format!("kill -9 {}", who(m)));
                        }
                        1 => {
                            let _ = cluster.pause(m);
                            what.push(format!("SIGSTOP {}", who(m)));
                        }
                        _ => {
                            let others: Vec<usize> = (0..n).filter(|&i| i != m).collect();
                            cluster.net.partition(&[m], &others);
                            what.push(format!("isolate {}", who(m)));
                        }
                    }
                    undo.push((m, k));
                }
                schedule.push(format!("{} {} for {hold:?}", t(start), what.join(" + ")));
                sleep(hold).await;
                cluster.net.heal();
                for (m, k) in undo {
                    let r = match k {
                        0 => cluster.restart(m),
                        1 => cluster.resume(m),
                        _ => Ok(()),
                    };
                    if let Err(e) = r {
                        schedule.push(format!("{} undoing a fault on m{m} failed: {e}", t(start)));
                    }
                }
            }
            "SIGSTOP/SIGCONT" => {
                schedule.push(format!(
                    "{} SIGSTOP {} for {:?}",
                    t(start),
                    who(target),
                    hold
                ));
                let _ = cluster.pause(target);
                sleep(hold).await;
                let _ = cluster.resume(target);
            }
            "partition" => {
                if rng.chance(0.5) || n < 5 {
                    let others: Vec<usize> = (0..n).filter(|&i| i != target).collect();
                    schedule.push(format!(
                        "{} isolate {} for {:?}",
                        t(start),
                        who(target),
                        hold
                    ));
                    cluster.net.partition(&[target], &others);
                } else {
                    let mut order: Vec<usize> = (0..n).collect();
                    for i in (1..n).rev() {
                        order.swap(i, rng.below(i as u64 + 1) as usize);
                    }
                    let (a, b) = order.split_at(n / 2);
                    schedule.push(format!("{} partition {a:?} | {b:?} for {hold:?}", t(start)));
                    cluster.net.partition(a, b);
                }
                sleep(hold).await;
                cluster.net.heal();
            }
            "delay/loss" => {
                let fault = LinkFault {
                    delay: Duration::from_millis(rng.range(10, 200)),
                    loss: rng.below(30) as f64 / 100.0,
                };
                let all = rng.chance(0.3);
                schedule.push(format!(
                    "{} delay {:?} loss {:.0}% on {} for {hold:?}",
                    t(start),
                    fault.delay,
                    fault.loss * 100.0,
                    if all {
                        "every link".to_owned()
                    } else {
                        format!("the links of {}", who(target))
                    }
                ));
                if all {
                    for i in 0..n {
                        cluster.net.set_fault(i, fault);
                    }
                } else {
                    cluster.net.set_fault(target, fault);
                }
                sleep(hold).await;
                cluster.net.heal();
            }
            "replace member" => {
                let line =
                    replace_member(&mut cluster, &chans, &mut ids, target, &mut crashed).await;
                schedule.push(format!("{} replace {}: {line}", t(start), who(target)));
            }
            "disk full" | "fsync error" => {
                // What the member logs from now on is what it says of the fault.
                let log_from = cluster.log_len(target);
                let armed = if kind == "disk full" {
                    cluster.fill_disk(target)
                } else {
                    cluster.set_fsync_fault(target, true)
                };
                match armed {
                    Ok(true) => {}
                    Ok(false) => {
                        schedule.push(format!("{} {kind} skipped: unavailable here", t(start)));
                        continue;
                    }
                    Err(e) => {
                        schedule.push(format!(
                            "{} {kind} on m{target} not injected: {e}",
                            t(start)
                        ));
                        continue;
                    }
                }
                let outcome =
                    disk_fault_outcome(&mut cluster, target, kind, log_from, &mut crashed).await;
                let undone = if kind == "disk full" {
                    cluster.free_disk(target)
                } else {
                    cluster.set_fsync_fault(target, false).map(|_| ())
                };
                let restarted = match undone {
                    Err(e) => format!("; undoing it failed: {e}"),
                    // A member that stopped is restarted; one that needed no new block goes on.
                    Ok(()) if !cluster.members[target].is_running() => {
                        match cluster.restart(target) {
                            Ok(()) => "; undone, restarted".to_owned(),
                            Err(e) => format!("; undone, restart failed: {e}"),
                        }
                    }
                    Ok(()) => "; undone".to_owned(),
                };
                schedule.push(format!(
                    "{} {kind} on {}: {outcome}{restarted}",
                    t(start),
                    who(target)
                ));
            }
            _ => {
                let Some(l) = lead else {
                    schedule.push(format!("{} move leader skipped: no leader", t(start)));
                    continue;
                };
                let to = (l + 1 + rng.below(n as u64 - 1) as usize) % n;
                let r = client::move_leader(&chans[l], ids[to]).await;
                schedule.push(format!("{} move leader m{l} -> m{to}: {r:?}", t(start)));
            }
        }
        *done.entry(kind).or_default() += 1;
    }
    (cluster, done, schedule, crashed)
}

/// How long a member with a full disk or failing fsyncs gets to stop by itself. A full disk
/// only stops a member that needs a new block (its WAL and backend may reuse allocated space),
/// so still running then is no violation; failing silently, or staying up while unable to
/// write, is (the final checks read every member).
const DISK_FAULT_WAIT: Duration = Duration::from_secs(10);

/// What a member did after a disk fault was armed: stopped with an error that names its
/// failure (etcd exits on these), or kept running. Stopping any other way is a violation.
async fn disk_fault_outcome(
    cluster: &mut Cluster,
    i: usize,
    kind: &str,
    log_from: u64,
    violations: &mut Vec<Violation>,
) -> String {
    match cluster.wait_exit(i, DISK_FAULT_WAIT).await {
        None => format!("kept running for {DISK_FAULT_WAIT:?}"),
        Some(status) => {
            // The whole log since the fault, not its tail: with RUST_BACKTRACE set, the error
            // line is followed by a backtrace longer than any fixed tail.
            let said = cluster.log_since(i, log_from);
            if status.success() || !said.contains("the member failed and stopped") {
                let log = cluster.log_tail(i, 40);
                violations.push(Violation {
                    check: "disk fault",
                    detail: format!(
                        "{} stopped ({status}) on a {kind} without saying why; log tail:\n{log}",
                        cluster.members[i].name
                    ),
                });
            }
            format!("stopped ({status})")
        }
    }
}

/// How long membership steps (a removed member stopping, a learner catching up) may take.
const MEMBERSHIP_WAIT: Duration = Duration::from_secs(30);

/// Tries `call` on each member in turn (a few rounds) until one succeeds.
async fn on_any<T, F, Fut>(chans: &[Channel], skip: usize, mut call: F) -> Result<T, String>
where
    F: FnMut(Channel) -> Fut,
    Fut: std::future::Future<Output = Result<T, client::CallError>>,
{
    let mut last = String::from("no member to ask");
    for round in 0..5 {
        for (i, ch) in chans.iter().enumerate() {
            if i == skip {
                continue;
            }
            match call(ch.clone()).await {
                Ok(v) => return Ok(v),
                Err(e) => last = e.to_string(),
            }
        }
        sleep(Duration::from_millis(200 * (round + 1))).await;
    }
    Err(last)
}

/// etcd's way of replacing a member: remove it (it must stop by itself), add a new member with
/// the same peer URL as a learner, start it on an empty data directory to join, and promote it
/// once it has caught up. Updates `ids`; returns the schedule's line.
async fn replace_member(
    cluster: &mut Cluster,
    chans: &[Channel],
    ids: &mut [u64],
    i: usize,
    violations: &mut Vec<Violation>,
) -> String {
    let old = ids[i];
    if let Err(e) = on_any(chans, i, |ch| async move {
        client::member_remove(&ch, old).await
    })
    .await
    {
        return format!("skipped: removing {old:x} failed: {e}");
    }
    let name = cluster.members[i].name.clone();
    match cluster.wait_exit(i, MEMBERSHIP_WAIT).await {
        Some(status) if status.success() => {}
        Some(status) => violations.push(Violation {
            check: "membership",
            detail: format!(
                "removed member {name} exited with {status}; log tail:\n{}",
                cluster.log_tail(i, 30)
            ),
        }),
        None if !cluster.members[i].is_running() => {}
        None => {
            violations.push(Violation {
                check: "membership",
                detail: format!("removed member {name} still running {MEMBERSHIP_WAIT:?} later"),
            });
            cluster.kill9(i);
        }
    }
    let peer_url = cluster.members[i].peer_url();
    let new = match on_any(chans, i, |ch| {
        let url = peer_url.clone();
        async move { client::member_add(&ch, &url, true).await }
    })
    .await
    {
        Ok(id) => id,
        Err(e) => {
            violations.push(Violation {
                check: "membership",
                detail: format!(
                    "adding a member with {peer_url} after removing {old:x} failed: {e}"
                ),
            });
            return format!("removed {old:x}; adding its replacement failed: {e}");
        }
    };
    ids[i] = new;
    cluster.net.set_ids(ids);
    if let Err(e) = cluster.start_replacement(i) {
        return format!("removed {old:x}, added learner {new:x}; starting it failed: {e}");
    }
    let deadline = Instant::now() + MEMBERSHIP_WAIT;
    let mut last = String::new();
    while Instant::now() < deadline {
        match on_any(chans, i, |ch| async move {
            client::member_promote(&ch, new).await
        })
        .await
        {
            Ok(()) => return format!("removed {old:x}, added learner {new:x}, promoted it"),
            Err(e) => last = e,
        }
        sleep(Duration::from_millis(500)).await;
    }
    violations.push(Violation {
        check: "membership",
        detail: format!(
            "learner {new:x} ({name}) not promoted within {MEMBERSHIP_WAIT:?}: {last}; log tail:\n{}",
            cluster.log_tail(i, 30)
        ),
    });
    format!("removed {old:x}, added learner {new:x}; promotion failed: {last}")
}
