//! Running a sequence on fresh etcd and ferrocd clusters side by side, comparing every outcome
//! and watch item, and shrinking a mismatching sequence to a short reproduction.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::cluster::{Binaries, Cluster, ClusterError, Flavor};
use crate::exec::{CODE_CLIENT_TIMEOUT, Outcome, Side, Tolerate, WatchItem, WatchLog, reconcile};
use crate::ops::{Op, Step};
use crate::pretty::{show, show_pretty};
use server::proto::etcdserverpb::{TxnRequest, request_op};

/// How sequences are run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The binaries.
    pub bins: Binaries,
    /// Members per cluster (1 or 3).
    pub members: usize,
    /// How long a cluster may take to serve its first linearizable read.
    pub ready_timeout: Duration,
    /// A watch stream counts as drained after this long without a message.
    pub quiet: Duration,
    /// How long a watch stream that is behind the other side's may take to catch up.
    pub watch_lag: Duration,
    /// Known differences to overlook.
    pub tolerate: Tolerate,
    /// Print every step with both outcomes.
    pub trace: bool,
}

impl RunConfig {
    /// Defaults for `members` members.
    pub fn new(bins: Binaries, members: usize) -> RunConfig {
        let multi = members > 1;
        RunConfig {
            bins,
            members,
            ready_timeout: Duration::from_secs(30),
            quiet: Duration::from_millis(if multi { 60 } else { 25 }),
            watch_lag: Duration::from_secs(2),
            tolerate: Tolerate::default(),
            trace: false,
        }
    }
}

/// What kind of mismatch: the operation and what differed. Shrinking keeps a candidate only if
/// it mismatches with the same signature, so that it does not drift to another bug.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Signature {
    /// The operation kind (or `Watch` for watch-stream differences).
    pub op: String,
    /// What differed.
    pub what: String,
}

impl std::fmt::Display for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.op, self.what)
    }
}

/// The first difference found in a sequence.
#[derive(Clone, Debug)]
pub struct Mismatch {
    /// The index of the step after which it was seen.
    pub index: usize,
    /// Its kind.
    pub signature: Signature,
    /// The request and both outcomes, readable.
    pub detail: String,
    /// etcd itself failed (a member exited): the reference has no answer, this is not counted
    /// as a ferrocd failure.
    pub etcd_failed: bool,
    /// etcd's outcome of every step up to the mismatching one, readable (the context of a
    /// reproduction).
    pub transcript: Vec<String>,
}

fn code_name(code: i32) -> String {
    if code == CODE_CLIENT_TIMEOUT {
        return "ClientTimeout".to_owned();
    }
    format!("{:?}", tonic::Code::from_i32(code))
}

/// The name of the first field whose pretty rendering differs.
fn first_difference(a: &str, b: &str) -> String {
    let line = a
        .lines()
        .zip(b.lines())
        .find(|(x, y)| x != y)
        .map(|(x, _)| x)
        .or_else(|| a.lines().nth(b.lines().count()))
        .or_else(|| b.lines().nth(a.lines().count()))
        .unwrap_or("");
    let field = line.split(':').next().unwrap_or("").trim();
    let field: String = field.chars().take(40).collect();
    field.trim_end_matches(['{', '(', ',', ' ']).to_owned()
}

fn compare_outcomes(op: &str, etcd: &Outcome, ferrocd: &Outcome) -> Option<Signature> {
    let what = match (etcd, ferrocd) {
        (a, b) if a == b => return None,
        (Outcome::Ok(a), Outcome::Ok(b)) => format!(
            "response differs at `{}`",
            first_difference(&show_pretty(a), &show_pretty(b))
        ),
        (Outcome::Ok(_), Outcome::Err { code, .. }) => {
            format!("etcd succeeds, ferrocd fails with {}", code_name(*code))
        }
        (Outcome::Err { code, .. }, Outcome::Ok(_)) => {
            format!("etcd fails with {}, ferrocd succeeds", code_name(*code))
        }
        (Outcome::Err { code: a, .. }, Outcome::Err { code: b, .. }) if a != b => {
            format!("error code {} vs {}", code_name(*a), code_name(*b))
        }
        (Outcome::Err { code, .. }, Outcome::Err { .. }) => {
            format!("error message differs ({})", code_name(*code))
        }
    };
    Some(Signature {
        op: op.to_owned(),
        what,
    })
}

enum WatchCompare {
    Equal,
    /// One side's log is a strict prefix of the other's, for some watch: maybe it is behind.
    Lagging,
    Differs(Signature, String),
}

fn compare_logs(etcd: &WatchLog, ferrocd: &WatchLog, final_check: bool) -> WatchCompare {
    let mut lagging = false;
    let empty = Vec::new();
    let ids: std::collections::BTreeSet<i64> = etcd.keys().chain(ferrocd.keys()).copied().collect();
    for id in ids {
        let a = etcd.get(&id).unwrap_or(&empty);
        let b = ferrocd.get(&id).unwrap_or(&empty);
        if a == b {
            continue;
        }
        let common = a.iter().zip(b.iter()).take_while(|(x, y)| x == y).count();
        if (common == a.len() || common == b.len()) && !final_check {
            lagging = true;
            continue;
        }
        let ka = a.get(common).map_or("nothing", WatchItem::kind);
        let kb = b.get(common).map_or("nothing", WatchItem::kind);
        let what = match (a.get(common), b.get(common)) {
            (Some(x), Some(y)) if ka == kb => format!(
                "watch {ka} differs at `{}`",
                first_difference(&show_pretty(x), &show_pretty(y))
            ),
            _ => format!("watch item: etcd {ka}, ferrocd {kb}"),
        };
        let mut detail = format!("  watch id {id}, item #{common}:\n");
        for (name, items) in [("etcd", a), ("ferrocd", b)] {
            let _ = writeln!(detail, "    {name}:");
            if common > 0 {
                let _ = writeln!(detail, "      (last common) {}", show(&items[common - 1]));
            }
            for item in items.iter().skip(common).take(4) {
                let _ = writeln!(detail, "      {}", show(item));
            }
            if items.len() <= common {
                let _ = writeln!(detail, "      (nothing)");
            }
        }
        return WatchCompare::Differs(
            Signature {
                op: "Watch".to_owned(),
                what,
            },
            detail,
        );
    }
    if lagging {
        WatchCompare::Lagging
    } else {
        WatchCompare::Equal
    }
}

fn step_header(index: usize, step: &Step) -> String {
    format!(
        "op #{index} (step {}) to member {}: {}",
        step.origin,
        step.member,
        show(&step.op)
    )
}

/// How long to wait for watch traffic after a request whose effect etcd delivers from its
/// background loop (every 100 ms): catch-up of a watch from a past revision, and the
/// cancellation of watches behind a compaction. Without it the next request (a cancel, say)
/// would race that loop on one side only.
const SLOW_QUIET: Duration = Duration::from_millis(300);

/// Drains both watch streams and compares them, giving a lagging side up to `watch_lag`.
async fn sync_watches(
    cfg: &RunConfig,
    etcd: &mut Side,
    ferrocd: &mut Side,
    final_check: bool,
    slow: bool,
) -> Option<(Signature, String)> {
    let deadline = Instant::now() + cfg.watch_lag;
    let quiet = if slow {
        SLOW_QUIET.max(cfg.quiet)
    } else if final_check {
        cfg.quiet * 4
    } else {
        cfg.quiet
    };
    loop {
        tokio::join!(
            etcd.drain(quiet, cfg.watch_lag),
            ferrocd.drain(quiet, cfg.watch_lag)
        );
        let timed_out = Instant::now() >= deadline;
        match compare_logs(&etcd.log, &ferrocd.log, final_check || timed_out) {
            WatchCompare::Equal => return None,
            WatchCompare::Differs(sig, detail) => return Some((sig, detail)),
            WatchCompare::Lagging => {}
        }
    }
}

/// A mismatch, told apart by whether a process exited: an etcd exit makes it a reference
/// failure; a ferrocd exit becomes the signature (a crash, whatever the response).
async fn crashes(
    index: usize,
    mut signature: Signature,
    detail: &mut String,
    etcd: &mut Side,
    ferrocd: &mut Side,
) -> Mismatch {
    let mut etcd_exits = etcd.exited();
    let mut ferrocd_exits = ferrocd.exited();
    if etcd_exits.is_empty() && ferrocd_exits.is_empty() {
        // A process that just closed its connections may take a moment to be reaped.
        tokio::time::sleep(Duration::from_millis(300)).await;
        etcd_exits = etcd.exited();
        ferrocd_exits = ferrocd.exited();
    }
    for e in etcd_exits.iter().chain(ferrocd_exits.iter()) {
        let _ = writeln!(detail, "  {e}");
    }
    if !ferrocd_exits.is_empty() && etcd_exits.is_empty() {
        signature.what = "ferrocd exited".to_owned();
    }
    Mismatch {
        index,
        signature,
        detail: std::mem::take(detail),
        etcd_failed: !etcd_exits.is_empty(),
        transcript: Vec::new(),
    }
}

/// Whether a server delivers `op`'s effect on watches from a background loop.
fn slow_watch(op: &Op) -> bool {
    match op {
        Op::WatchCreate(c) => c.start_revision != 0,
        Op::Compact(_) => true,
        _ => false,
    }
}

/// Runs `steps` on fresh clusters of both kinds; the first mismatch, if any.
pub async fn run_steps(
    cfg: &RunConfig,
    watch_member: usize,
    steps: &[Step],
) -> Result<Option<Mismatch>, ClusterError> {
    let (etcd, ferrocd) = tokio::join!(
        Cluster::start_retrying(Flavor::Etcd, cfg.members, &cfg.bins, cfg.ready_timeout),
        Cluster::start_retrying(Flavor::Ferrocd, cfg.members, &cfg.bins, cfg.ready_timeout),
    );
    let mut etcd = Side::new(etcd?, watch_member, cfg.tolerate);
    let mut ferrocd = Side::new(ferrocd?, watch_member, cfg.tolerate);
    let mut transcript = Vec::new();
    for (index, step) in steps.iter().enumerate() {
        let (a, mut b) = tokio::join!(etcd.exec(step), ferrocd.exec(step));
        reconcile(&a, &mut b);
        transcript.push(show(&a));
        if cfg.trace {
            println!("{}", step_header(index, step));
            if a == b {
                println!("    both:    {}", show(&a));
            } else {
                println!("    etcd:    {}\n    ferrocd: {}", show(&a), show(&b));
            }
        }
        if let Some(signature) = compare_outcomes(step.op.kind(), &a, &b) {
            let mut detail = format!(
                "{}\n  etcd:    {}\n  ferrocd: {}\n",
                step_header(index, step),
                show(&a),
                show(&b)
            );
            let mut m = crashes(index, signature, &mut detail, &mut etcd, &mut ferrocd).await;
            m.transcript = transcript;
            return Ok(Some(m));
        }
        let watching = etcd.watching() || ferrocd.watching();
        let last = index + 1 == steps.len();
        if watching
            && (step.op.may_notify() || last)
            && let Some((signature, watch_detail)) =
                sync_watches(cfg, &mut etcd, &mut ferrocd, last, slow_watch(&step.op)).await
        {
            let mut detail = format!("after {}\n{watch_detail}", step_header(index, step));
            let mut m = crashes(index, signature, &mut detail, &mut etcd, &mut ferrocd).await;
            m.transcript = transcript;
            return Ok(Some(m));
        }
    }
    // A member may have exited without any answer showing it (a follower, with 3 members).
    let (etcd_exits, ferrocd_exits) = (etcd.exited(), ferrocd.exited());
    if let Some(last) = steps.len().checked_sub(1)
        && (!etcd_exits.is_empty() || !ferrocd_exits.is_empty())
    {
        let mut detail = format!("after {}\n", step_header(last, &steps[last]));
        for e in etcd_exits.iter().chain(ferrocd_exits.iter()) {
            let _ = writeln!(detail, "  {e}");
        }
        return Ok(Some(Mismatch {
            index: last,
            signature: Signature {
                op: "Process".to_owned(),
                what: "a member exited".to_owned(),
            },
            detail,
            etcd_failed: !etcd_exits.is_empty(),
            transcript,
        }));
    }
    Ok(None)
}

/// Bounds on shrinking.
#[derive(Clone, Copy, Debug)]
pub struct ShrinkBudget {
    /// At most this many replays.
    pub attempts: usize,
    /// For at most this long.
    pub time: Duration,
}

/// The outcome of shrinking.
#[derive(Clone, Debug)]
pub struct Shrunk {
    /// The shortest mismatching sequence found.
    pub steps: Vec<Step>,
    /// Its mismatch (the last step's index or earlier).
    pub mismatch: Mismatch,
    /// Whether the mismatch reproduced at all on a replay (if not, `steps` is the original).
    pub reproduced: bool,
    /// How many replays were made.
    pub attempts: usize,
}

/// One replay for shrinking: the mismatch, if it has `signature`.
async fn attempt(
    cfg: &RunConfig,
    watch_member: usize,
    candidate: &[Step],
    signature: &Signature,
    attempts: &mut usize,
) -> Option<Mismatch> {
    *attempts += 1;
    match run_steps(cfg, watch_member, candidate).await {
        Ok(Some(m)) if &m.signature == signature => Some(m),
        _ => None,
    }
}

/// Delta debugging (ddmin, complements only) over `steps[..=first.index]`, replaying every
/// candidate on fresh clusters and keeping it when it mismatches with `first`'s signature.
pub async fn shrink(
    cfg: &RunConfig,
    watch_member: usize,
    steps: &[Step],
    first: &Mismatch,
    budget: ShrinkBudget,
) -> Shrunk {
    let started = Instant::now();
    let mut attempts = 0;
    let end = (first.index + 1).min(steps.len());
    let mut current: Vec<Step> = steps[..end].to_vec();
    let mut mismatch = first.clone();
    let mut reproduced = false;

    // The truncated sequence first: it must reproduce before anything is removed.
    if let Some(m) = attempt(cfg, watch_member, &current, &first.signature, &mut attempts).await {
        reproduced = true;
        current.truncate(m.index + 1);
        mismatch = m;
    } else {
        return Shrunk {
            steps: steps[..end].to_vec(),
            mismatch,
            reproduced,
            attempts,
        };
    }

    // Alternate the two phases while either makes progress (a simpler txn may make earlier
    // steps unnecessary, and fewer steps make each replay cheaper).
    let mut st = ShrinkState {
        cfg,
        watch_member,
        signature: &first.signature,
        budget,
        started,
        attempts,
        current,
        mismatch,
    };
    st.keep_suffix().await;
    loop {
        let removed = st.remove_steps().await;
        let simplified = st.simplify_txns().await;
        if !(removed || simplified) || st.exhausted() {
            break;
        }
    }
    Shrunk {
        steps: st.current,
        mismatch: st.mismatch,
        reproduced,
        attempts: st.attempts,
    }
}

struct ShrinkState<'a> {
    cfg: &'a RunConfig,
    watch_member: usize,
    signature: &'a Signature,
    budget: ShrinkBudget,
    started: Instant,
    attempts: usize,
    current: Vec<Step>,
    mismatch: Mismatch,
}

impl ShrinkState<'_> {
    fn exhausted(&self) -> bool {
        self.attempts >= self.budget.attempts || self.started.elapsed() >= self.budget.time
    }

    /// Replays `candidate`; keeps it (cut after its mismatch) when it mismatches the same way.
    async fn keep_if_fails(&mut self, mut candidate: Vec<Step>) -> bool {
        let found = attempt(
            self.cfg,
            self.watch_member,
            &candidate,
            self.signature,
            &mut self.attempts,
        )
        .await;
        match found {
            Some(m) => {
                candidate.truncate(m.index + 1);
                self.current = candidate;
                self.mismatch = m;
                true
            }
            None => false,
        }
    }

    /// The shortest suffix of 1, 2, 4, ... steps that still mismatches: often the mismatch
    /// needs only the last few steps, found in a few replays; whether one was kept.
    async fn keep_suffix(&mut self) -> bool {
        let len = self.current.len();
        let mut k = 1;
        while k < len && !self.exhausted() {
            if self.keep_if_fails(self.current[len - k..].to_vec()).await {
                return true;
            }
            k *= 2;
        }
        false
    }

    /// ddmin over the steps (complements only); whether anything was removed.
    async fn remove_steps(&mut self) -> bool {
        let mut progress = false;
        let mut n = 2usize;
        'outer: while self.current.len() > 1 {
            let len = self.current.len();
            let chunk = len.div_ceil(n);
            let mut reduced = false;
            for start in (0..len).step_by(chunk) {
                if self.exhausted() {
                    break 'outer;
                }
                let candidate: Vec<Step> = self.current[..start]
                    .iter()
                    .chain(self.current[(start + chunk).min(len)..].iter())
                    .cloned()
                    .collect();
                if candidate.is_empty() {
                    continue;
                }
                if self.keep_if_fails(candidate).await {
                    n = (n - 1).max(2);
                    reduced = true;
                    progress = true;
                    break;
                }
            }
            if !reduced {
                if n >= len {
                    break;
                }
                n = (n * 2).min(len);
            }
        }
        progress
    }

    /// Drops one compare or operation at a time inside txns; whether anything was dropped.
    async fn simplify_txns(&mut self) -> bool {
        let mut progress = false;
        let mut index = 0;
        'steps: while index < self.current.len() {
            let Op::Txn(txn) = &self.current[index].op else {
                index += 1;
                continue;
            };
            for simpler in txn_simplifications(txn) {
                if self.exhausted() {
                    break 'steps;
                }
                let mut candidate = self.current.clone();
                candidate[index].op = Op::Txn(simpler);
                if self.keep_if_fails(candidate).await {
                    progress = true;
                    continue 'steps; // the same step again, now simpler
                }
            }
            index += 1;
        }
        progress
    }
}

/// Every txn made from `txn` by removing one compare or one operation, at any nesting depth.
fn txn_simplifications(txn: &TxnRequest) -> Vec<TxnRequest> {
    let mut out = Vec::new();
    for i in 0..txn.compare.len() {
        let mut t = txn.clone();
        t.compare.remove(i);
        out.push(t);
    }
    for branch in [0, 1] {
        let ops = if branch == 0 {
            &txn.success
        } else {
            &txn.failure
        };
        for i in 0..ops.len() {
            let mut t = txn.clone();
            let list = if branch == 0 {
                &mut t.success
            } else {
                &mut t.failure
            };
            list.remove(i);
            out.push(t);
        }
        for (i, op) in ops.iter().enumerate() {
            if let Some(request_op::Request::RequestTxn(nested)) = &op.request {
                for simpler in txn_simplifications(nested) {
                    let mut t = txn.clone();
                    let list = if branch == 0 {
                        &mut t.success
                    } else {
                        &mut t.failure
                    };
                    list[i].request = Some(request_op::Request::RequestTxn(simpler));
                    out.push(t);
                }
            }
        }
    }
    out
}
