//! The cluster: nodes driven through `RawNode` as an application would, over a faulty network.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt::{self, Write as _};
use std::sync::Arc;

use raft_core::raftpb::{
    AnyConfChange, ConfChange, ConfChangeSingle, ConfChangeTransition, ConfChangeType,
    ConfChangeV2, ConfState, Entry, EntryType, HardState, Message, MessageType,
};
use raft_core::storage::{MemStorage, Storage};
use raft_core::{Config, Level, Logger, RawNode, SnapshotStatus, StateRole};

use super::checker::{Checker, Kind, Violation, violation};
use super::prng::{Prng, fnv, mix64};

/// The bit marking the command proposed after the faults stop.
const FRESH: u64 = 1 << 63;
/// The state machine key the fresh command writes.
const FRESH_KEY: u64 = u64::MAX;
/// How many ticks the cluster gets to recover after the faults stop.
pub const LIVENESS_TICKS: u64 = 600;
/// How many trace events are kept for failure reports.
const TRACE_LEN: usize = 120;

/// What a seed's run looks like: cluster shape, Raft options and fault rates (per mille per
/// step unless noted).
#[derive(Clone, Debug)]
pub struct Params {
    pub nodes: u64,
    pub spare_ids: u64,
    pub steps: u64,
    pub pre_vote: bool,
    pub check_quorum: bool,
    pub step_down_on_removal: bool,
    pub heartbeat_tick: usize,
    pub election_tick: usize,
    pub max_size_per_msg: u64,
    pub max_committed_size_per_ready: u64,
    pub max_inflight_msgs: usize,
    /// Per message.
    pub drop: u32,
    /// Per message.
    pub dup: u32,
    /// Messages take `0..=delay` steps, plus up to 30 with `long_delay` per mille.
    pub delay: u64,
    pub long_delay: u32,
    pub partition: u32,
    pub heal: u32,
    pub crash: u32,
    pub restart: u32,
    pub max_crashed: usize,
    pub propose: u32,
    pub conf_change: u32,
    pub transfer: u32,
    pub campaign: u32,
    pub read: u32,
    /// Per node and step: whether its Ready is handled this step.
    pub ready: u32,
    /// Per node and step: the node misses a tick (clock skew).
    pub skip_tick: u32,
    /// Per node and Ready: take a snapshot at the applied index.
    pub snapshot: u32,
    /// Per node and Ready: compact the log up to the snapshot (minus `keep` entries).
    pub compact: u32,
    pub keep: u64,
    /// Break the application on purpose (forget votes across restarts), to show the checker
    /// catches it.
    pub sabotage: bool,
}

impl Params {
    /// The parameters of `seed`: every seed gets its own mix of options and fault rates.
    pub fn for_seed(seed: u64, steps: u64) -> Self {
        let mut r = Prng::new(seed ^ 0xA5A5_5A5A_0F0F_F0F0);
        let nodes = if r.chance(500) { 3 } else { 5 };
        let chaos = r.below(4); // 0: calm ... 3: very faulty
        let c = chaos as u32;
        Params {
            nodes,
            spare_ids: 4,
            steps,
            pre_vote: r.chance(500),
            check_quorum: r.chance(500),
            step_down_on_removal: r.chance(500),
            heartbeat_tick: 1 + r.below(2) as usize,
            election_tick: 10,
            max_size_per_msg: *[u64::MAX, 64, 0].get(r.below(3) as usize).unwrap_or(&0),
            // etcd panics ("applying entry size (0-0)=0 not positive") with both limits at 0.
            max_committed_size_per_ready: *[0, 1, 200].get(r.below(3) as usize).unwrap_or(&0),
            max_inflight_msgs: *[256, 4, 1].get(r.below(3) as usize).unwrap_or(&1),
            drop: [0, 20, 60, 150][chaos as usize],
            dup: [0, 10, 30, 60][chaos as usize],
            delay: r.below(3),
            long_delay: [0, 5, 20, 50][chaos as usize],
            partition: 5 + 5 * c,
            heal: 40,
            crash: 3 + 4 * c,
            restart: 40,
            max_crashed: if nodes == 3 { 1 } else { 2 },
            propose: 250,
            conf_change: 10 + r.below(20) as u32,
            transfer: 5 + r.below(10) as u32,
            campaign: 3,
            read: 30,
            ready: 850,
            skip_tick: 30,
            snapshot: 20 + r.below(80) as u32,
            compact: 20 + r.below(80) as u32,
            keep: r.below(6),
            sabotage: false,
        }
    }
}

/// A node's application state machine: a small key-value map, the index it reflects, and a
/// hash chain over every entry applied (so equal hashes mean equal applied sequences).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct StateMachine {
    applied: u64,
    hash: u64,
    kv: BTreeMap<u64, u64>,
}

impl StateMachine {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + 16 * self.kv.len());
        out.extend_from_slice(&self.applied.to_le_bytes());
        out.extend_from_slice(&self.hash.to_le_bytes());
        for (k, v) in &self.kv {
            out.extend_from_slice(&k.to_le_bytes());
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    fn decode(data: &[u8]) -> Self {
        let word = |i: usize| u64::from_le_bytes(data[i * 8..i * 8 + 8].try_into().unwrap());
        let mut sm = StateMachine {
            applied: word(0),
            hash: word(1),
            kv: BTreeMap::new(),
        };
        for i in 0..(data.len() / 8 - 2) / 2 {
            sm.kv.insert(word(2 + 2 * i), word(3 + 2 * i));
        }
        sm
    }
}

fn content_hash(e: &Entry) -> u64 {
    fnv(&[&[e.entry_type.number() as u8], &e.data])
}

fn is_member(cs: &ConfState, id: u64) -> bool {
    cs.voters.contains(&id) || cs.learners.contains(&id) || cs.voters_outgoing.contains(&id)
}

struct Node {
    raw: Option<RawNode<MemStorage>>,
    /// The stable storage while the node is down (while up, the RawNode's storage is it).
    disk: MemStorage,
    sm: StateMachine,
    /// The configuration as of `sm.applied`.
    conf: ConfState,
    last_commit: u64,
    last_term: u64,
    /// Removed from the cluster and shut down for good.
    retired: bool,
    retire_pending: bool,
    incarnation: u64,
}

struct Envelope {
    at: u64,
    msg: Message,
}

/// A trace event; messages are formatted only when a report is printed.
enum Ev {
    Msg {
        step: u64,
        what: &'static str,
        m: Box<MsgSummary>,
    },
    Note {
        step: u64,
        text: String,
    },
}

struct MsgSummary {
    ty: MessageType,
    from: u64,
    to: u64,
    term: u64,
    log_term: u64,
    index: u64,
    commit: u64,
    ents: Vec<(u64, u64)>,
    reject: bool,
    snap: Option<(u64, u64)>,
}

impl MsgSummary {
    fn of(m: &Message) -> Self {
        MsgSummary {
            ty: m.msg_type,
            from: m.from,
            to: m.to,
            term: m.term,
            log_term: m.log_term,
            index: m.index,
            commit: m.commit,
            ents: m.entries.iter().map(|e| (e.index, e.term)).collect(),
            reject: m.reject,
            snap: m
                .snapshot
                .as_ref()
                .map(|s| (s.metadata.index, s.metadata.term)),
        }
    }
}

impl fmt::Display for Ev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ev::Note { step, text } => write!(f, "[{step:>5}] {text}"),
            Ev::Msg { step, what, m } => {
                write!(
                    f,
                    "[{step:>5}] {what} {}->{} {} term:{} logterm:{} index:{} commit:{}",
                    m.from,
                    m.to,
                    m.ty.name(),
                    m.term,
                    m.log_term,
                    m.index,
                    m.commit
                )?;
                if let (Some(first), Some(last)) = (m.ents.first(), m.ents.last()) {
                    write!(
                        f,
                        " ents:{}@{}..{}@{}({})",
                        first.0,
                        first.1,
                        last.0,
                        last.1,
                        m.ents.len()
                    )?;
                }
                if m.reject {
                    f.write_str(" REJECT")?;
                }
                if let Some((i, t)) = m.snap {
                    write!(f, " snap:{i}@{t}")?;
                }
                Ok(())
            }
        }
    }
}

/// Where Raft's log lines go: nowhere, or (when replaying a seed) to stdout.
struct SimLogger {
    print: bool,
}

impl Logger for SimLogger {
    fn log(&self, level: Level, args: fmt::Arguments<'_>) {
        if self.print && level >= Level::Info {
            println!("        raft {}: {args}", level.name());
        }
    }
}

/// Counters for the summary line.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub steps: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub crashes: u64,
    pub conf_changes: u64,
    pub snapshots_applied: u64,
    pub applied: u64,
    pub liveness_ticks: u64,
    pub pre_vote_rescues: u64,
    /// Runs that ended leaderless because a member had not applied the latest configuration
    /// (etcd-io/etcd#12359): tolerated, counted, reported.
    pub apply_time_conf_livelocks: u64,
    pub elections: u64,
}

enum Report {
    Snapshot(u64, u64, SnapshotStatus),
    Unreachable(u64, u64),
}

pub struct Sim {
    pub seed: u64,
    pub p: Params,
    rng: Prng,
    nodes: BTreeMap<u64, Node>,
    net: Vec<Envelope>,
    blocked: HashSet<(u64, u64)>,
    reports: Vec<Report>,
    now: u64,
    pub step: u64,
    next_cmd: u64,
    next_id: u64,
    pub checker: Checker,
    trace: VecDeque<Ev>,
    verbose: bool,
    /// The configuration applied at the highest index by any node.
    latest_conf: (u64, ConfState),
    ever_member: BTreeSet<u64>,
    /// Read requests: context → the highest index applied anywhere when it was made.
    reads: HashMap<Vec<u8>, u64>,
    faults: bool,
    /// Nodes restart with pre-vote on (see `liveness`).
    pre_vote_rescue: bool,
    pub stats: Stats,
    logger: Arc<SimLogger>,
}

type Res<T = ()> = Result<T, Violation>;

impl Sim {
    pub fn new(seed: u64, p: Params, verbose: bool) -> Self {
        let mut sim = Sim {
            seed,
            rng: Prng::new(seed),
            nodes: BTreeMap::new(),
            net: Vec::new(),
            blocked: HashSet::new(),
            reports: Vec::new(),
            now: 0,
            step: 0,
            next_cmd: 1,
            next_id: p.nodes + 1,
            checker: Checker::default(),
            trace: VecDeque::new(),
            verbose,
            latest_conf: (0, ConfState::default()),
            ever_member: BTreeSet::new(),
            reads: HashMap::new(),
            faults: true,
            pre_vote_rescue: false,
            stats: Stats::default(),
            logger: Arc::new(SimLogger { print: verbose }),
            p,
        };
        let params = format!("params: {:?}", sim.p);
        sim.note(|| params);
        // Bootstrap as etcd's RawNode::bootstrap does: the initial members are added by
        // committed configuration changes at term 1, so that nodes added later can replay the
        // whole configuration history from the log.
        let n = sim.p.nodes;
        let ents: Vec<Entry> = (1..=n)
            .map(|i| {
                let cc = ConfChange {
                    id: 0,
                    change_type: ConfChangeType::AddNode,
                    node_id: i,
                    context: Vec::new(),
                };
                Entry::new(1, i, EntryType::ConfChange, cc.encode())
            })
            .collect();
        for id in 1..=n {
            let mut disk = MemStorage::new();
            disk.append(&ents);
            disk.set_hard_state(HardState {
                term: 1,
                vote: 0,
                commit: n,
            });
            for e in &ents {
                sim.checker
                    .persisted(
                        id,
                        e.index,
                        e.term,
                        content_hash(e),
                        Some(u64::from(e.index > 1)),
                    )
                    .unwrap();
            }
            sim.add_node(id, disk);
        }
        sim
    }

    fn config(&self, id: u64, applied: u64, incarnation: u64) -> Config {
        Config {
            id,
            election_tick: self.p.election_tick,
            heartbeat_tick: self.p.heartbeat_tick,
            applied,
            max_size_per_msg: self.p.max_size_per_msg,
            max_committed_size_per_ready: if self.p.max_size_per_msg == 0
                && self.p.max_committed_size_per_ready == 0
            {
                1
            } else {
                self.p.max_committed_size_per_ready
            },
            max_inflight_msgs: self.p.max_inflight_msgs,
            check_quorum: self.p.check_quorum,
            pre_vote: self.p.pre_vote || self.pre_vote_rescue,
            step_down_on_removal: self.p.step_down_on_removal,
            random_seed: mix64(self.seed ^ id.wrapping_mul(0x1000_0001) ^ (incarnation << 40)) | 1,
            ..Config::default()
        }
    }

    fn add_node(&mut self, id: u64, disk: MemStorage) {
        self.nodes.insert(
            id,
            Node {
                raw: None,
                disk,
                sm: StateMachine::default(),
                conf: ConfState::default(),
                last_commit: 0,
                last_term: 0,
                retired: false,
                retire_pending: false,
                incarnation: 0,
            },
        );
        // Starting is restarting from (possibly empty) stable storage.
        self.start(id).unwrap();
    }

    fn note(&mut self, text: impl FnOnce() -> String) {
        let ev = Ev::Note {
            step: self.step,
            text: text(),
        };
        self.push(ev);
    }

    fn push(&mut self, ev: Ev) {
        if self.verbose {
            println!("{ev}");
        }
        if self.trace.len() == TRACE_LEN {
            self.trace.pop_front();
        }
        self.trace.push_back(ev);
    }

    fn msg_event(&mut self, what: &'static str, m: &Message) {
        let ev = Ev::Msg {
            step: self.step,
            what,
            m: Box::new(MsgSummary::of(m)),
        };
        self.push(ev);
    }

    fn alive(&self, id: u64) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.raw.is_some())
    }

    fn raw(&mut self, id: u64) -> &mut RawNode<MemStorage> {
        self.nodes.get_mut(&id).unwrap().raw.as_mut().unwrap()
    }

    fn live_ids(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.raw.is_some())
            .map(|(&id, _)| id)
            .collect()
    }

    /// The leader of the highest term among the live nodes.
    fn leader(&self) -> Option<u64> {
        self.nodes
            .iter()
            .filter_map(|(&id, n)| n.raw.as_ref().map(|r| (id, r.raft())))
            .filter(|(_, r)| r.state == StateRole::Leader)
            .max_by_key(|(_, r)| r.term)
            .map(|(id, _)| id)
    }

    // ---------------------------------------------------------------- checks

    /// Checks a node after anything that may have changed it.
    fn observe(&mut self, id: u64) -> Res {
        let Some(node) = self.nodes.get_mut(&id) else {
            return Ok(());
        };
        let Some(raw) = node.raw.as_ref() else {
            return Ok(());
        };
        let r = raw.raft();
        let log = &r.raft_log;
        let commit = log.committed;
        if commit < node.last_commit {
            return Err(violation(
                Kind::Regression,
                format!(
                    "node {id}'s commit index went from {} to {commit}",
                    node.last_commit
                ),
            ));
        }
        if r.term < node.last_term {
            return Err(violation(
                Kind::Regression,
                format!(
                    "node {id}'s term went from {} to {}",
                    node.last_term, r.term
                ),
            ));
        }
        if commit > log.last_index() {
            return Err(violation(
                Kind::Regression,
                format!(
                    "node {id}'s commit index {commit} is beyond its last index {}",
                    log.last_index()
                ),
            ));
        }
        if commit > node.last_commit {
            let lo = (node.last_commit + 1).max(log.first_index());
            for i in lo..=commit {
                if let Ok(t) = log.term(i) {
                    self.checker.committed(id, i, t)?;
                }
            }
        }
        node.last_commit = commit;
        node.last_term = r.term;
        if r.state == StateRole::Leader {
            let before = self.checker.elections;
            self.checker
                .leader(id, r.term, log.first_index(), log.last_index(), |i| {
                    log.term(i).ok()
                })?;
            if self.checker.elections != before {
                let term = r.term;
                self.note(|| format!("node {id} is leader of term {term}"));
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------- network

    fn delay(&mut self) -> u64 {
        if !self.faults {
            return self.rng.below(2);
        }
        let mut d = self.rng.below(self.p.delay + 1);
        if self.rng.chance(self.p.long_delay) {
            d += self.rng.below(30);
        }
        d
    }

    fn send(&mut self, m: Message) {
        if self.faults && self.rng.chance(self.p.drop) {
            self.dropped(m, "LOST");
            return;
        }
        let copies = if self.faults && self.rng.chance(self.p.dup) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = self.now + self.delay();
            self.net.push(Envelope { at, msg: m.clone() });
        }
    }

    fn dropped(&mut self, m: Message, why: &'static str) {
        self.stats.dropped += 1;
        self.msg_event(why, &m);
        if m.msg_type == MessageType::MsgSnap {
            self.reports
                .push(Report::Snapshot(m.from, m.to, SnapshotStatus::Failure));
        } else if why != "LOST" && self.rng.chance(300) {
            self.reports.push(Report::Unreachable(m.from, m.to));
        }
    }

    fn flush_reports(&mut self) -> Res {
        for report in std::mem::take(&mut self.reports) {
            let (from, to) = match report {
                Report::Snapshot(from, to, _) | Report::Unreachable(from, to) => (from, to),
            };
            if !self.alive(from) {
                continue;
            }
            match report {
                Report::Snapshot(_, _, status) => {
                    self.note(|| format!("node {from}: report snapshot to {to}: {status:?}"));
                    self.raw(from).report_snapshot(to, status);
                }
                Report::Unreachable(..) => self.raw(from).report_unreachable(to),
            }
            self.observe(from)?;
        }
        Ok(())
    }

    fn deliver(&mut self) -> Res {
        self.flush_reports()?;
        let now = self.now;
        let (mut due, rest): (Vec<Envelope>, Vec<Envelope>) = std::mem::take(&mut self.net)
            .into_iter()
            .partition(|e| e.at <= now);
        self.net = rest;
        self.rng.shuffle(&mut due);
        for Envelope { msg: m, .. } in due {
            let (from, to) = (m.from, m.to);
            if self.blocked.contains(&(from, to)) {
                self.dropped(m, "CUT");
                continue;
            }
            if !self.alive(to) {
                self.dropped(m, "DOWN");
                continue;
            }
            self.stats.delivered += 1;
            self.msg_event("recv", &m);
            let snap = m.msg_type == MessageType::MsgSnap;
            let _ = self.raw(to).step(m);
            self.observe(to)?;
            if snap {
                self.reports
                    .push(Report::Snapshot(from, to, SnapshotStatus::Finish));
            }
        }
        self.flush_reports()
    }

    // ---------------------------------------------------------------- nodes

    /// Handles one Ready as the application does: persist, send, apply, advance. With
    /// `crash_at`, the node crashes partway: 0 before persisting, 1 before sending, 2 before
    /// applying.
    fn handle_ready(&mut self, id: u64, crash_at: Option<u8>) -> Res {
        let raw = self.raw(id);
        if !raw.has_ready() {
            if crash_at.is_some() {
                self.crash(id, "idle");
            }
            return Ok(());
        }
        let rd = raw.ready();
        if crash_at == Some(0) {
            self.crash(id, "before persisting a Ready");
            return Ok(());
        }

        // 1. Persist: snapshot, then entries, then hard state.
        if !rd.snapshot.is_empty() {
            let meta = &rd.snapshot.metadata;
            if let Some(t) = self.checker.committed_term(meta.index)
                && t != meta.term
            {
                return Err(violation(
                    Kind::StateMachineSafety,
                    format!(
                        "node {id} got a snapshot at ({}, term {}), but term {t} is committed there",
                        meta.index, meta.term
                    ),
                ));
            }
            let (index, term) = (meta.index, meta.term);
            self.note(|| format!("node {id} persists snapshot {index}@{term}"));
            if let Err(e) = self.raw(id).store_mut().apply_snapshot(rd.snapshot.clone()) {
                return Err(violation(
                    Kind::ReadyContract,
                    format!("node {id}: Ready snapshot {index}@{term} not applicable: {e}"),
                ));
            }
        }
        let store = self.raw(id).store_mut();
        store.append(&rd.entries);
        let first = store.first_index().unwrap();
        let prevs: Vec<Option<u64>> = rd
            .entries
            .iter()
            .map(|e| {
                if e.index >= first {
                    store.term(e.index - 1).ok()
                } else {
                    None
                }
            })
            .collect();
        if !rd.hard_state.is_empty() {
            store.set_hard_state(rd.hard_state);
        }
        for (e, prev) in rd.entries.iter().zip(prevs) {
            self.checker
                .persisted(id, e.index, e.term, content_hash(e), prev)?;
        }
        if crash_at == Some(1) {
            self.crash(id, "after persisting, before sending");
            return Ok(());
        }

        // 2. Send.
        for m in rd.messages {
            if m.to == id {
                return Err(violation(
                    Kind::ReadyContract,
                    format!(
                        "node {id}'s Ready has a message to itself: {:?}",
                        m.msg_type
                    ),
                ));
            }
            self.send(m);
        }
        if crash_at == Some(2) {
            self.crash(id, "after sending, before applying");
            return Ok(());
        }

        // Reads: linearizable means at least every write that completed (was applied, so
        // possibly acknowledged) anywhere before the request.
        for rs in &rd.read_states {
            if let Some(&min) = self.reads.get(&rs.request_ctx)
                && rs.index < min
            {
                return Err(violation(
                    Kind::StaleRead,
                    format!(
                        "node {id}: read {:?} got index {}, but index {min} was applied before it \
                         was requested",
                        rs.request_ctx, rs.index
                    ),
                ));
            }
        }

        // 3. Apply the snapshot, then the committed entries.
        if !rd.snapshot.is_empty() {
            let sm = StateMachine::decode(&rd.snapshot.data);
            let index = rd.snapshot.metadata.index;
            if sm.applied != index {
                return Err(violation(
                    Kind::StateMachineSafety,
                    format!(
                        "node {id}: snapshot at {index} holds the state at {}",
                        sm.applied
                    ),
                ));
            }
            self.checker.state(id, index, sm.hash)?;
            let node = self.nodes.get_mut(&id).unwrap();
            if index < node.sm.applied {
                return Err(violation(
                    Kind::ReadyContract,
                    format!(
                        "node {id}: snapshot at {index} would roll back applied index {}",
                        node.sm.applied
                    ),
                ));
            }
            node.sm = sm;
            node.conf = rd.snapshot.metadata.conf_state.clone();
            self.stats.snapshots_applied += 1;
        }
        for e in rd.committed_entries {
            self.apply(id, e)?;
        }
        self.raw(id).advance();
        self.observe(id)?;
        let node = self.nodes.get_mut(&id).unwrap();
        if std::mem::take(&mut node.retire_pending) {
            self.note(|| format!("node {id} applied its own removal"));
        }
        self.maybe_compact(id);
        Ok(())
    }

    fn apply(&mut self, id: u64, e: Entry) -> Res {
        let node = self.nodes.get_mut(&id).unwrap();
        if e.index != node.sm.applied + 1 {
            return Err(violation(
                Kind::ReadyContract,
                format!(
                    "node {id} was handed entry {} to apply after applying {}",
                    e.index, node.sm.applied
                ),
            ));
        }
        let content = content_hash(&e);
        match AnyConfChange::from_entry(e.entry_type, &e.data) {
            None => {
                if e.data.len() == 8 {
                    let cmd = u64::from_le_bytes(e.data[..].try_into().unwrap());
                    let key = if cmd & FRESH != 0 { FRESH_KEY } else { cmd % 8 };
                    node.sm.kv.insert(key, cmd);
                }
            }
            Some(cc) => {
                let cc = cc.map_err(|err| {
                    violation(
                        Kind::ReadyContract,
                        format!("node {id}: undecodable conf change at {}: {err}", e.index),
                    )
                })?;
                let was_member = is_member(&node.conf, id);
                let raw = node.raw.as_mut().unwrap();
                let cs = raw.apply_conf_change(cc.clone());
                if was_member && !is_member(&cs, id) {
                    node.retire_pending = true;
                }
                node.conf = cs.clone();
                self.ever_member.extend(
                    cs.voters
                        .iter()
                        .chain(&cs.learners)
                        .chain(&cs.voters_outgoing),
                );
                if e.index > self.latest_conf.0 {
                    self.stats.conf_changes += 1;
                    self.latest_conf = (e.index, cs.clone());
                    let index = e.index;
                    self.note(|| format!("node {id} applied conf change {cc} at {index}: {cs}"));
                }
            }
        }
        let node = self.nodes.get_mut(&id).unwrap();
        node.sm.hash = mix64(node.sm.hash ^ content);
        node.sm.applied = e.index;
        let state = node.sm.hash;
        self.stats.applied += 1;
        self.checker.applied(id, e.index, e.term, content, state)
    }

    fn maybe_compact(&mut self, id: u64) {
        let (snap_p, compact_p, keep) = (self.p.snapshot, self.p.compact, self.p.keep);
        let take = self.rng.chance(snap_p);
        let compact = self.rng.chance(compact_p);
        let keep = self.rng.below(keep + 1);
        let node = self.nodes.get_mut(&id).unwrap();
        let Some(raw) = node.raw.as_mut() else {
            return;
        };
        let store = raw.store_mut();
        let snap_index = store.snapshot().unwrap().metadata.index;
        if take && node.sm.applied > snap_index {
            store
                .create_snapshot(node.sm.applied, Some(node.conf.clone()), node.sm.encode())
                .unwrap();
        }
        let snap_index = store.snapshot().unwrap().metadata.index;
        let first = store.first_index().unwrap();
        if compact && snap_index >= first + keep {
            let to = snap_index - keep;
            store.compact(to).unwrap();
            self.note(|| format!("node {id} compacted its log up to {to}"));
        }
    }

    fn crash(&mut self, id: u64, when: &str) {
        self.stats.crashes += 1;
        let node = self.nodes.get_mut(&id).unwrap();
        let raw = node.raw.take().unwrap();
        node.disk = raw.store().clone();
        if self.p.sabotage {
            // A broken application that does not fsync its hard state: a crash loses the term
            // and vote it acknowledged (it falls back to the term of its last entry).
            let (mut hs, _) = node.disk.initial_state().unwrap();
            let last = node.disk.last_index().unwrap();
            hs.term = node.disk.term(last).unwrap().max(1);
            hs.vote = 0;
            node.disk.set_hard_state(hs);
        }
        self.note(|| format!("CRASH node {id} ({when})"));
    }

    /// (Re)starts a node from its stable storage, with fresh volatile state.
    fn start(&mut self, id: u64) -> Res {
        let node = self.nodes.get(&id).unwrap();
        let disk = node.disk.clone();
        let incarnation = node.incarnation + 1;
        let snap = disk.snapshot().unwrap();
        let (hs, _) = disk.initial_state().unwrap();
        let cfg = self.config(id, snap.metadata.index, incarnation);
        let raw = RawNode::with_logger(&cfg, disk, self.logger.clone()).unwrap();
        let node = self.nodes.get_mut(&id).unwrap();
        node.raw = Some(raw);
        node.incarnation = incarnation;
        node.sm = if snap.is_empty() {
            StateMachine::default()
        } else {
            StateMachine::decode(&snap.data)
        };
        node.conf = snap.metadata.conf_state.clone();
        node.last_commit = hs.commit;
        node.last_term = hs.term;
        node.retire_pending = false;
        let applied = node.sm.applied;
        self.note(|| {
            format!(
                "START node {id} (incarnation {incarnation}): hard state {hs:?}, snapshot at {applied}"
            )
        });
        self.observe(id)
    }

    // ---------------------------------------------------------------- the application's requests

    fn propose(&mut self) -> Res {
        let live = self.live_ids();
        let target = match self.leader() {
            Some(l) if self.rng.chance(700) => l,
            _ => match self.rng.pick(&live) {
                Some(id) => id,
                None => return Ok(()),
            },
        };
        let cmd = self.next_cmd;
        self.next_cmd += 1;
        let res = self.raw(target).propose(cmd.to_le_bytes().to_vec());
        self.note(|| format!("node {target}: propose cmd {cmd}: {res:?}"));
        self.observe(target)
    }

    fn fresh_id(&mut self) -> Option<u64> {
        (self.next_id <= self.p.nodes + self.p.spare_ids).then_some(self.next_id)
    }

    /// Starts a brand-new (empty) node, as an operator does when adding a member.
    fn use_fresh_id(&mut self, id: u64) {
        if id == self.next_id {
            self.next_id += 1;
            self.add_node(id, MemStorage::new());
        }
    }

    /// Proposes a random, valid configuration change at the leader.
    fn conf_change(&mut self) -> Res {
        use ConfChangeType::{AddLearnerNode, AddNode, RemoveNode};
        let Some(lead) = self.leader() else {
            return Ok(());
        };
        let cs = self.raw(lead).raft().trk.conf_state();
        let mut changes: Vec<ConfChangeSingle> = Vec::new();
        let mut transition = ConfChangeTransition::Auto;
        if !cs.voters_outgoing.is_empty() {
            if cs.auto_leave {
                return Ok(());
            }
            // Explicit joint configuration: leave it.
        } else {
            let fresh = self.fresh_id();
            let voter = self.rng.pick(&cs.voters);
            let learner = self.rng.pick(&cs.learners);
            let nv = cs.voters.len();
            match self.rng.below(8) {
                0 | 1 => changes.push(ConfChangeSingle::new(AddNode, fresh.unwrap_or(0))),
                2 => changes.push(ConfChangeSingle::new(AddLearnerNode, fresh.unwrap_or(0))),
                3 => changes.push(ConfChangeSingle::new(AddNode, learner.unwrap_or(0))),
                4 if nv > 2 => changes.push(ConfChangeSingle::new(RemoveNode, voter.unwrap())),
                5 => changes.push(ConfChangeSingle::new(RemoveNode, learner.unwrap_or(0))),
                6 => {
                    // Replace a voter through joint consensus.
                    changes.push(ConfChangeSingle::new(AddNode, fresh.unwrap_or(0)));
                    changes.push(ConfChangeSingle::new(RemoveNode, voter.unwrap()));
                }
                7 if nv > 2 => {
                    // Demote a voter (and maybe promote a learner) through joint consensus.
                    changes.push(ConfChangeSingle::new(AddLearnerNode, voter.unwrap()));
                    if let Some(l) = learner {
                        changes.push(ConfChangeSingle::new(AddNode, l));
                    }
                }
                _ => return Ok(()),
            }
            if changes.iter().any(|c| c.node_id == 0) {
                return Ok(());
            }
            transition = match self.rng.below(4) {
                0 => ConfChangeTransition::JointImplicit,
                1 => ConfChangeTransition::JointExplicit,
                _ => ConfChangeTransition::Auto,
            };
        }
        let cc: AnyConfChange = if changes.len() == 1
            && transition == ConfChangeTransition::Auto
            && self.rng.chance(400)
        {
            ConfChange {
                id: self.step,
                change_type: changes[0].change_type,
                node_id: changes[0].node_id,
                context: Vec::new(),
            }
            .into()
        } else {
            ConfChangeV2 {
                transition,
                changes: changes.clone(),
                context: Vec::new(),
            }
            .into()
        };
        for c in &changes {
            self.use_fresh_id(c.node_id);
        }
        let res = self.raw(lead).propose_conf_change(cc.clone());
        self.note(|| format!("node {lead}: propose conf change {cc} on {cs}: {res:?}"));
        self.observe(lead)
    }

    fn transfer(&mut self) -> Res {
        let Some(lead) = self.leader() else {
            return Ok(());
        };
        let voters = self.raw(lead).raft().trk.conf_state().voters;
        let Some(to) = self.rng.pick(&voters) else {
            return Ok(());
        };
        self.note(|| format!("node {lead}: transfer leadership to {to}"));
        self.raw(lead).transfer_leader(to);
        self.observe(lead)
    }

    // ---------------------------------------------------------------- faults

    fn faults(&mut self) -> Res {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        if !self.blocked.is_empty() {
            if self.rng.chance(self.p.heal) {
                self.blocked.clear();
                self.note(|| "HEAL all partitions".to_string());
            }
        } else if self.rng.chance(self.p.partition) {
            if self.rng.chance(200) {
                // One-way cuts.
                for _ in 0..1 + self.rng.below(3) {
                    let (a, b) = (self.rng.pick(&ids).unwrap(), self.rng.pick(&ids).unwrap());
                    if a != b {
                        self.blocked.insert((a, b));
                    }
                }
                let mut cuts: Vec<_> = self.blocked.iter().copied().collect();
                cuts.sort_unstable();
                self.note(|| format!("PARTITION one-way cuts {cuts:?}"));
            } else {
                let sides = if self.rng.chance(200) { 3 } else { 2 };
                let groups: Vec<(u64, u64)> =
                    ids.iter().map(|&id| (id, self.rng.below(sides))).collect();
                for &(a, ga) in &groups {
                    for &(b, gb) in &groups {
                        if ga != gb {
                            self.blocked.insert((a, b));
                        }
                    }
                }
                self.note(|| format!("PARTITION (node, side): {groups:?}"));
            }
        }
        let crashed: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.raw.is_none() && !n.retired)
            .map(|(&id, _)| id)
            .collect();
        if crashed.len() < self.p.max_crashed && self.rng.chance(self.p.crash) {
            let live = self.live_ids();
            if let Some(id) = self.rng.pick(&live) {
                match self.rng.below(5) {
                    0 | 1 => self.crash(id, "between Readies"),
                    k => self.handle_ready(id, Some(k as u8 - 2))?,
                }
            }
        }
        if self.rng.chance(self.p.restart)
            && let Some(id) = self.rng.pick(&crashed)
        {
            self.start(id)?;
        }
        Ok(())
    }

    fn requests(&mut self) -> Res {
        if self.rng.chance(self.p.propose) {
            self.propose()?;
        }
        if self.rng.chance(self.p.conf_change) {
            self.conf_change()?;
        }
        if self.rng.chance(self.p.transfer) {
            self.transfer()?;
        }
        if self.rng.chance(self.p.read) {
            let live = self.live_ids();
            if let Some(id) = self.rng.pick(&live) {
                let ctx = format!("read{}", self.step).into_bytes();
                let applied = self.nodes.values().map(|n| n.sm.applied).max().unwrap_or(0);
                self.reads.insert(ctx.clone(), applied);
                self.raw(id).read_index(ctx);
                self.observe(id)?;
            }
        }
        if self.rng.chance(self.p.campaign) {
            let live = self.live_ids();
            if let Some(id) = self.rng.pick(&live) {
                self.note(|| format!("node {id}: campaign"));
                let _ = self.raw(id).campaign();
                self.observe(id)?;
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------- driving

    /// One step: faults and requests, a tick on every node, the network, the Readies.
    pub fn step(&mut self) -> Res {
        self.step += 1;
        self.stats.steps += 1;
        self.now += 1;
        self.retire_removed();
        if self.faults {
            self.faults()?;
            self.requests()?;
        }
        for id in self.live_ids() {
            if self.faults && self.rng.chance(self.p.skip_tick) {
                continue;
            }
            self.raw(id).tick();
            self.observe(id)?;
        }
        self.deliver()?;
        let mut ids = self.live_ids();
        self.rng.shuffle(&mut ids);
        for id in ids {
            if self.alive(id) && self.rng.chance(self.p.ready) {
                self.handle_ready(id, None)?;
            }
        }
        Ok(())
    }

    /// Shuts down the nodes that are no longer needed: removed from the configuration, and
    /// every member has applied the removal. (Shutting a node down as soon as it applies its
    /// own removal, as etcd's server does after a short delay, can leave the others stuck: a
    /// member that has not yet learned that the joint configuration was left still needs the
    /// removed node's vote, and has the longest log, so nobody else can win an election.
    /// That is a liveness hazard of applying configurations at apply time, not a safety one.)
    fn retire_removed(&mut self) {
        let ids: Vec<u64> = self.live_ids();
        for id in ids {
            if self.removed(id) {
                let node = self.nodes.get_mut(&id).unwrap();
                node.disk = node.raw.take().unwrap().store().clone();
                node.retired = true;
                self.note(|| format!("node {id} shuts down: removed, and every member knows"));
            }
        }
    }

    /// Whether a node was a member once, is no longer in the latest configuration, and every
    /// member has applied that configuration (so none needs the node any more).
    fn removed(&self, id: u64) -> bool {
        let (index, cs) = &self.latest_conf;
        self.ever_member.contains(&id)
            && !is_member(cs, id)
            && cs
                .voters
                .iter()
                .chain(&cs.learners)
                .chain(&cs.voters_outgoing)
                .all(|m| {
                    self.nodes
                        .get(m)
                        .is_some_and(|n| n.raw.is_some() && n.sm.applied >= *index)
                })
    }

    /// Stops the faults, repairs the cluster and requires it to elect a leader, commit a fresh
    /// proposal and converge within [`LIVENESS_TICKS`].
    pub fn liveness(&mut self) -> Res {
        self.faults = false;
        self.blocked.clear();
        self.note(|| "---- faults stop: heal, restart, converge ----".to_string());
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for &id in &ids {
            let node = &self.nodes[&id];
            if node.raw.is_none() && !node.retired {
                self.start(id)?;
            }
        }
        let fresh = FRESH | self.seed;
        let mut proposed_at: Option<u64> = None;
        for t in 0..LIVENESS_TICKS {
            if t == LIVENESS_TICKS / 2 && !self.p.pre_vote {
                // Without pre-vote, Raft itself can livelock: a member with a stale
                // configuration (it missed the changes) keeps campaigning at ever higher terms
                // among its old peers, ignores the lower-term vote requests of the up-to-date
                // voters, and never hears of them (they are not in its configuration). This is
                // what pre-vote is for, so the operator restarts the nodes with it.
                self.stats.pre_vote_rescues += 1;
                self.pre_vote_rescue = true;
                self.note(|| "no convergence yet: rolling restart with pre-vote on".to_string());
                for &id in &ids {
                    if self.alive(id) {
                        self.crash(id, "rolling restart");
                        self.start(id)?;
                    }
                }
            }
            self.step()?;
            let Some(lead) = self.leader() else {
                continue;
            };
            let done = self.nodes[&lead].sm.kv.get(&FRESH_KEY) == Some(&fresh);
            if !done && proposed_at.is_none_or(|at| self.now > at + 50) {
                proposed_at = Some(self.now);
                let res = self.raw(lead).propose(fresh.to_le_bytes().to_vec());
                self.note(|| format!("node {lead}: propose the fresh command: {res:?}"));
                self.observe(lead)?;
            }
            if done && self.converged(lead) {
                self.stats.liveness_ticks = t + 1;
                self.note(|| format!("converged after {} ticks", t + 1));
                return Ok(());
            }
        }
        if self.leader().is_none() && self.stale_member_config() {
            // etcd-raft applies configurations when they are applied, not when appended: if the
            // leader that committed a configuration change goes away before the others learn
            // it is committed, no node may be able to win an election any more (e.g. a member
            // still in the joint configuration needs the vote of a removed voter whose log is
            // longer). A known limitation (etcd-io/etcd#12359), not a bug of the port.
            self.stats.apply_time_conf_livelocks += 1;
            let status = self.status();
            self.note(|| {
                format!(
                    "leaderless: members disagree on the configuration (etcd-io/etcd#12359)\n{status}"
                )
            });
            return Ok(());
        }
        Err(violation(
            Kind::Liveness,
            format!(
                "no convergence {LIVENESS_TICKS} ticks after the faults stopped\n{}",
                self.status()
            ),
        ))
    }

    /// Whether a live member of the latest configuration still runs an older one.
    fn stale_member_config(&self) -> bool {
        let (_, cs) = &self.latest_conf;
        self.nodes.iter().any(|(id, n)| {
            is_member(cs, *id)
                && n.raw
                    .as_ref()
                    .is_some_and(|r| !r.raft().trk.conf_state().equivalent(cs))
        })
    }

    fn converged(&self, lead: u64) -> bool {
        let Some(raw) = self.nodes[&lead].raw.as_ref() else {
            return false;
        };
        let log = &raw.raft().raft_log;
        let want = &self.nodes[&lead].sm;
        if log.committed != log.last_index() || want.applied != log.committed {
            return false;
        }
        let cs = raw.raft().trk.conf_state();
        cs.voters
            .iter()
            .chain(&cs.learners)
            .chain(&cs.voters_outgoing)
            .all(|id| {
                self.nodes
                    .get(id)
                    .is_some_and(|n| n.raw.is_some() && n.sm == *want)
            })
    }

    /// Every node's state, for failure reports.
    pub fn status(&self) -> String {
        let mut out = String::new();
        for (id, n) in &self.nodes {
            let _ = write!(out, "  node {id}: ");
            match &n.raw {
                None if n.retired => out.push_str("retired"),
                None => out.push_str("down"),
                Some(raw) => {
                    let r = raw.raft();
                    let _ = write!(
                        out,
                        "{} term:{} vote:{} lead:{} commit:{} applied:{} first:{} last:{} config:{}",
                        r.state,
                        r.term,
                        r.vote,
                        r.lead,
                        r.raft_log.committed,
                        n.sm.applied,
                        r.raft_log.first_index(),
                        r.raft_log.last_index(),
                        r.trk.config
                    );
                    if r.state == StateRole::Leader {
                        for (pid, pr) in r.trk.progress.iter() {
                            let _ = write!(out, "\n      {pid}: {pr}");
                        }
                    }
                }
            }
            out.push('\n');
        }
        let _ = write!(
            out,
            "  latest applied conf: {} at {}\n  in flight: {} messages",
            self.latest_conf.1,
            self.latest_conf.0,
            self.net.len()
        );
        out
    }

    /// The last trace events.
    pub fn trace(&self) -> String {
        let mut out = String::new();
        for ev in &self.trace {
            let _ = writeln!(out, "  {ev}");
        }
        out
    }

    pub fn run(&mut self) -> Res {
        for _ in 0..self.p.steps {
            self.step()?;
        }
        self.liveness()
    }
}
