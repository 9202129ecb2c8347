//! The `interaction` suite: whole Raft nodes exchanging messages under the test's control (a
//! port of etcd's `rafttest.InteractionEnv`).
//!
//! Each node is a [`RawNode`] over an [`EnvStorage`]; messages wait in a shared queue until a
//! directive delivers or drops them. Raft's log lines and the handlers' output go to one buffer,
//! filtered by the current log level.
//!
//! Besides etcd's directives and `add-nodes` keys, the runner understands a few extensions for
//! features etcd's environment does not reach: the directive `read-index <id> <ctx>`, and the
//! `add-nodes` keys `max-size-per-msg`, `max-inflight-bytes`, `max-uncommitted-size` and
//! `disable-proposal-forwarding`.

use std::sync::{Arc, Mutex, MutexGuard};

use super::{CmdArg, Fatal, TestData, parse_bool, parse_line, parse_uint};
use crate::config::Config;
use crate::describe::{describe_entries, describe_message, describe_ready};
use crate::logger::{Level, Logger};
use crate::raft::is_local_msg_target;
use crate::raftpb::{
    AnyConfChange, ConfChange, ConfChangeTransition, ConfChangeV2, ConfState, Entry, HardState,
    Message, MessageType, Snapshot, SnapshotMetadata, conf_changes_from_string,
};
use crate::raw_node::RawNode;
use crate::read_only::ReadOnlyOption;
use crate::storage::{MemStorage, Storage, StorageError};

const LEVEL_NAMES: [&str; 6] = ["DEBUG", "INFO", "WARN", "ERROR", "FATAL", "NONE"];
const QUIET: usize = 5;

/// The output buffer shared by the handlers and the nodes' loggers.
#[derive(Debug, Default)]
struct Output {
    text: String,
    level: usize,
}

/// A [`Logger`] writing into the environment's output, at or above its level.
#[derive(Debug, Clone)]
struct RedirectLogger(Arc<Mutex<Output>>);

fn lock(out: &Mutex<Output>) -> MutexGuard<'_, Output> {
    out.lock().unwrap_or_else(|e| e.into_inner())
}

impl Logger for RedirectLogger {
    fn log(&self, level: Level, args: std::fmt::Arguments<'_>) {
        let idx = match level {
            Level::Debug => 0,
            Level::Info => 1,
            Level::Warn => 2,
            Level::Error => 3,
            Level::Fatal => 4,
        };
        let mut out = lock(&self.0);
        if out.level <= idx {
            out.text.push_str(LEVEL_NAMES[idx]);
            out.text.push(' ');
            out.text.push_str(&args.to_string());
            out.text.push('\n');
        }
    }
}

/// The storage of a test node: a [`MemStorage`] whose snapshot is always the latest state of
/// the node's "appender" state machine.
#[derive(Debug, Clone)]
pub struct EnvStorage {
    /// The log.
    pub mem: MemStorage,
    /// The state machine after each applied entry (the first is the initial state).
    pub history: Vec<Snapshot>,
}

impl Storage for EnvStorage {
    fn initial_state(&self) -> Result<(HardState, ConfState), StorageError> {
        self.mem.initial_state()
    }
    fn entries(&self, lo: u64, hi: u64, max_size: u64) -> Result<Vec<Entry>, StorageError> {
        self.mem.entries(lo, hi, max_size)
    }
    fn term(&self, index: u64) -> Result<u64, StorageError> {
        self.mem.term(index)
    }
    fn last_index(&self) -> Result<u64, StorageError> {
        self.mem.last_index()
    }
    fn first_index(&self) -> Result<u64, StorageError> {
        self.mem.first_index()
    }
    fn snapshot(&self) -> Result<Snapshot, StorageError> {
        Ok(self.history.last().cloned().unwrap_or_default())
    }
}

struct Node {
    raw: RawNode<EnvStorage>,
    config: Config,
    append_work: Vec<Message>,
    apply_work: Vec<Message>,
}

/// The state of an `interaction` file: the nodes, the messages in flight, the output.
pub struct InteractionEnv {
    nodes: Vec<Node>,
    messages: Vec<Message>,
    output: Arc<Mutex<Output>>,
}

impl Default for InteractionEnv {
    fn default() -> Self {
        Self::new()
    }
}

type HResult = Result<(), String>;

fn first_as_int(args: &[CmdArg]) -> Result<u64, Fatal> {
    let arg = args
        .first()
        .ok_or_else(|| Fatal("missing node argument".to_owned()))?;
    parse_uint(&arg.key).map_err(Fatal)
}

/// A 1-based node id as a 0-based index.
fn to_idx(id: u64) -> Result<usize, Fatal> {
    usize::try_from(id)
        .ok()
        .and_then(|id| id.checked_sub(1))
        .ok_or_else(|| Fatal(format!("invalid node id {id}")))
}

/// The node index named by the first argument.
fn first_as_idx(args: &[CmdArg]) -> Result<usize, Fatal> {
    to_idx(first_as_int(args)?)
}

fn node_idxs(args: &[CmdArg]) -> Result<Vec<usize>, Fatal> {
    args.iter()
        .filter(|a| a.vals.is_empty())
        .map(|a| parse_uint(&a.key).map_err(Fatal).and_then(to_idx))
        .collect()
}

impl InteractionEnv {
    /// No nodes, log level DEBUG.
    pub fn new() -> Self {
        InteractionEnv {
            nodes: Vec::new(),
            messages: Vec::new(),
            output: Arc::new(Mutex::new(Output::default())),
        }
    }

    fn quiet(&self) -> bool {
        lock(&self.output).level == QUIET
    }

    fn write(&self, s: &str) {
        let mut out = lock(&self.output);
        if out.level != QUIET {
            out.text.push_str(s);
        }
    }

    /// Runs `f`, indenting by two spaces every line it writes.
    fn with_indent<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> T {
        let start = lock(&self.output).text.len();
        let res = f(self);
        let mut out = lock(&self.output);
        let added = out.text.split_off(start);
        for line in added.lines() {
            out.text.push_str("  ");
            out.text.push_str(line);
            out.text.push('\n');
        }
        res
    }

    /// Runs one directive and returns its output.
    pub fn handle(&mut self, d: &TestData) -> Result<String, Fatal> {
        lock(&self.output).text.clear();
        let res = if d.cmd == "propose-conf-change" {
            self.handle_propose_conf_change(d)?
        } else {
            self.handle_multi_command(d)?
        };
        if let Err(e) = res {
            if self.quiet() {
                return Ok(e);
            }
            lock(&self.output).text.push_str(&e);
        }
        let out = std::mem::take(&mut lock(&self.output).text);
        Ok(if out.is_empty() { "ok".to_owned() } else { out })
    }

    fn handle_multi_command(&mut self, d: &TestData) -> Result<HResult, Fatal> {
        let res = self.handle_single(&d.cmd, &d.cmd_args)?;
        if res.is_err() {
            return Ok(res);
        }
        for line in d.input.lines() {
            let (cmd, args) = parse_line(line)
                .map_err(|e| Fatal(format!("could not parse the command line {line:?}: {e}")))?;
            if let Err(e) = self.handle_single(&cmd, &args)? {
                if self.quiet() {
                    return Ok(Err(e));
                }
                self.write(&e);
            }
        }
        Ok(Ok(()))
    }

    fn handle_single(&mut self, cmd: &str, args: &[CmdArg]) -> Result<HResult, Fatal> {
        match cmd {
            "_breakpoint" => Ok(Ok(())),
            "add-nodes" => self.handle_add_nodes(args),
            "campaign" => {
                let idx = first_as_idx(args)?;
                Ok(self.node(idx)?.raw.campaign().map_err(|e| e.to_string()))
            }
            "compact" => {
                let idx = first_as_idx(args)?;
                let new_first = args
                    .get(1)
                    .ok_or_else(|| Fatal("missing index".to_owned()))?;
                let new_first = match parse_uint(&new_first.key) {
                    Ok(n) => n,
                    Err(e) => return Ok(Err(e)),
                };
                if let Err(e) = self.node(idx)?.raw.store_mut().mem.compact(new_first) {
                    return Ok(Err(e.to_string()));
                }
                Ok(self.raft_log(idx))
            }
            "deliver-msgs" => self.handle_deliver_msgs(args),
            "process-ready" => self.for_each_node(args, "handling Ready", Self::process_ready),
            "process-append-thread" => self.for_each_node(
                args,
                "processing append thread",
                Self::process_append_thread,
            ),
            "process-apply-thread" => {
                self.for_each_node(args, "processing apply thread", Self::process_apply_thread)
            }
            "log-level" => {
                let name = args.first().map(|a| a.key.as_str()).unwrap_or_default();
                Ok(self.set_log_level(name))
            }
            "raft-log" => {
                let idx = first_as_idx(args)?;
                Ok(self.raft_log(idx))
            }
            "raft-state" => {
                let mut out = String::new();
                for n in &self.nodes {
                    let st = n.raw.status();
                    let voter = if st.config.voters.contains(st.basic.id) {
                        "(Voter)"
                    } else {
                        "(Non-Voter)"
                    };
                    out.push_str(&format!(
                        "{}: {} {voter} Term:{} Lead:{}\n",
                        st.basic.id,
                        st.basic.soft_state.raft_state,
                        st.basic.hard_state.term,
                        st.basic.soft_state.lead
                    ));
                }
                self.write(&out);
                Ok(Ok(()))
            }
            "set-randomized-election-timeout" => {
                let idx = first_as_idx(args)?;
                let timeout = args
                    .iter()
                    .find(|a| a.key == "timeout")
                    .ok_or_else(|| Fatal("missing argument: timeout".to_owned()))?
                    .scan_u64(0)?;
                if timeout == 0 {
                    return Err(Fatal("timeout must not be zero".to_owned()));
                }
                self.node(idx)?
                    .raw
                    .set_randomized_election_timeout(timeout as usize);
                Ok(Ok(()))
            }
            "stabilize" => self.handle_stabilize(args),
            "status" => {
                let idx = first_as_idx(args)?;
                let st = self.node(idx)?.raw.status();
                let mut out = String::new();
                for (id, pr) in &st.progress {
                    out.push_str(&format!("{id}: {pr}\n"));
                }
                self.write(&out);
                Ok(Ok(()))
            }
            "tick-election" | "tick-heartbeat" => {
                let idx = first_as_idx(args)?;
                let n = self.node(idx)?;
                let ticks = if cmd == "tick-election" {
                    n.config.election_tick
                } else {
                    n.config.heartbeat_tick
                };
                for _ in 0..ticks {
                    n.raw.tick();
                }
                Ok(Ok(()))
            }
            "transfer-leadership" => {
                let get = |key: &str| -> Result<u64, Fatal> {
                    args.iter()
                        .find(|a| a.key == key)
                        .ok_or_else(|| Fatal(format!("missing argument: {key}")))?
                        .scan_u64(0)
                };
                let (from, to) = (get("from")?, get("to")?);
                let n = self.nodes.len() as u64;
                if from == 0 || from > n {
                    return Err(Fatal("expected valid \"from\" argument".to_owned()));
                }
                if to == 0 || to > n {
                    return Err(Fatal("expected valid \"to\" argument".to_owned()));
                }
                self.node(from as usize - 1)?.raw.transfer_leader(to);
                Ok(Ok(()))
            }
            "forget-leader" => {
                let idx = first_as_idx(args)?;
                Ok(self
                    .node(idx)?
                    .raw
                    .forget_leader()
                    .map_err(|e| e.to_string()))
            }
            "send-snapshot" => {
                let idxs = node_idxs(args)?;
                let [from, to] = idxs[..] else {
                    return Err(Fatal("send-snapshot takes two nodes".to_owned()));
                };
                let n = self.node(from)?;
                let snap = match n.raw.store().snapshot() {
                    Ok(s) => s,
                    Err(e) => return Ok(Err(e.to_string())),
                };
                let mut m = Message::new(MessageType::MsgSnap, from as u64 + 1, to as u64 + 1);
                m.term = n.raw.basic_status().hard_state.term;
                m.snapshot = Some(snap);
                self.write(&describe_message(&m, None));
                self.messages.push(m);
                Ok(Ok(()))
            }
            "propose" => {
                let idx = first_as_idx(args)?;
                if args.len() != 2 || !args[1].vals.is_empty() {
                    return Err(Fatal(format!(
                        "expected exactly one key with no vals: {:?}",
                        &args[1..]
                    )));
                }
                let data = args[1].key.as_bytes().to_vec();
                Ok(self.node(idx)?.raw.propose(data).map_err(|e| e.to_string()))
            }
            // An extension (etcd's environment has no such command): `read-index <id> <ctx>`
            // requests a linearizable read with context `ctx` on node `id`.
            "read-index" => {
                let idx = first_as_idx(args)?;
                if args.len() != 2 || !args[1].vals.is_empty() {
                    return Err(Fatal(format!(
                        "expected exactly one key with no vals: {:?}",
                        &args[1..]
                    )));
                }
                let ctx = args[1].key.as_bytes().to_vec();
                self.node(idx)?.raw.read_index(ctx);
                Ok(Ok(()))
            }
            "report-unreachable" => {
                let idx = first_as_idx(args)?;
                let target = args
                    .get(1)
                    .ok_or_else(|| Fatal("missing target".to_owned()))?;
                let target = parse_uint(&target.key).map_err(Fatal)?;
                self.node(idx)?.raw.report_unreachable(target);
                Ok(Ok(()))
            }
            _ => Ok(Err("unknown command".to_owned())),
        }
    }

    fn node(&mut self, idx: usize) -> Result<&mut Node, Fatal> {
        let n = self.nodes.len();
        self.nodes
            .get_mut(idx)
            .ok_or_else(|| Fatal(format!("node index {idx} out of range [0, {n})")))
    }

    fn for_each_node(
        &mut self,
        args: &[CmdArg],
        what: &str,
        f: fn(&mut Self, usize) -> HResult,
    ) -> Result<HResult, Fatal> {
        let idxs = node_idxs(args)?;
        for &idx in &idxs {
            self.node(idx)?;
            let res = if idxs.len() > 1 {
                self.write(&format!("> {} {what}\n", idx + 1));
                self.with_indent(|env| f(env, idx))
            } else {
                f(self, idx)
            };
            if res.is_err() {
                return Ok(res);
            }
        }
        Ok(Ok(()))
    }

    fn set_log_level(&mut self, name: &str) -> HResult {
        match LEVEL_NAMES
            .iter()
            .position(|l| l.eq_ignore_ascii_case(name))
        {
            Some(i) => {
                lock(&self.output).level = i;
                Ok(())
            }
            None => Err(format!(
                "log levels must be either of [{}]",
                LEVEL_NAMES.join(" ")
            )),
        }
    }

    fn handle_add_nodes(&mut self, args: &[CmdArg]) -> Result<HResult, Fatal> {
        let n = first_as_int(args)?;
        let mut snap = Snapshot::default();
        let mut cfg = Config {
            election_tick: 3,
            heartbeat_tick: 1,
            max_size_per_msg: u64::MAX,
            max_inflight_msgs: i32::MAX as usize,
            ..Config::default()
        };
        for arg in &args[1..] {
            for i in 0..arg.vals.len() {
                match arg.key.as_str() {
                    "voters" => snap.metadata.conf_state.voters.push(arg.scan_u64(i)?),
                    "learners" => snap.metadata.conf_state.learners.push(arg.scan_u64(i)?),
                    "inflight" => cfg.max_inflight_msgs = arg.scan_u64(i)? as usize,
                    "index" => {
                        snap.metadata.index = arg.scan_u64(i)?;
                        cfg.applied = snap.metadata.index;
                    }
                    "content" => snap.data = arg.val(i)?.as_bytes().to_vec(),
                    "async-storage-writes" => cfg.async_storage_writes = arg.scan_bool(i)?,
                    "prevote" => cfg.pre_vote = arg.scan_bool(i)?,
                    "checkquorum" => cfg.check_quorum = arg.scan_bool(i)?,
                    "max-committed-size-per-ready" => {
                        cfg.max_committed_size_per_ready = arg.scan_u64(i)?
                    }
                    "disable-conf-change-validation" => {
                        cfg.disable_conf_change_validation = arg.scan_bool(i)?
                    }
                    "step-down-on-removal" => cfg.step_down_on_removal = arg.scan_bool(i)?,
                    // Extensions (etcd's environment has no key for these settings).
                    "max-size-per-msg" => cfg.max_size_per_msg = arg.scan_u64(i)?,
                    "max-inflight-bytes" => cfg.max_inflight_bytes = arg.scan_u64(i)?,
                    "max-uncommitted-size" => cfg.max_uncommitted_entries_size = arg.scan_u64(i)?,
                    "disable-proposal-forwarding" => {
                        cfg.disable_proposal_forwarding = arg.scan_bool(i)?
                    }
                    "read-only" => match arg.val(i)? {
                        "safe" => cfg.read_only_option = ReadOnlyOption::Safe,
                        "lease-based" => cfg.read_only_option = ReadOnlyOption::LeaseBased,
                        other => {
                            return Ok(Err(format!("invalid read-only option {other:?}")));
                        }
                    },
                    _ => {}
                }
            }
        }
        Ok(self.add_nodes(n, cfg, snap))
    }

    fn add_nodes(&mut self, n: u64, cfg: Config, mut snap: Snapshot) -> HResult {
        let bootstrap = snap != Snapshot::default();
        for _ in 0..n {
            let id = self.nodes.len() as u64 + 1;
            let mut mem = MemStorage::new();
            if bootstrap {
                if snap.metadata.index <= 1 {
                    return Err("index must be specified as > 1 due to bootstrap".to_owned());
                }
                snap.metadata.term = 1;
                mem.apply_snapshot(snap.clone())
                    .map_err(|e| e.to_string())?;
                let fi = mem.first_index().map_err(|e| e.to_string())?;
                let exp = snap.metadata.index + 1;
                if fi != exp {
                    return Err(format!("failed to establish first index {exp}; got {fi}"));
                }
            }
            let storage = EnvStorage {
                mem,
                history: vec![snap.clone()],
            };
            let cfg = Config {
                id,
                random_seed: id,
                ..cfg.clone()
            };
            let logger = Arc::new(RedirectLogger(self.output.clone()));
            let raw = RawNode::with_logger(&cfg, storage, logger).map_err(|e| e.to_string())?;
            self.nodes.push(Node {
                raw,
                config: cfg,
                append_work: Vec::new(),
                apply_work: Vec::new(),
            });
        }
        Ok(())
    }

    fn raft_log(&mut self, idx: usize) -> HResult {
        let Some(n) = self.nodes.get(idx) else {
            return Err(format!("no node {}", idx + 1));
        };
        let s = &n.raw.store().mem;
        let fi = s.first_index().map_err(|e| e.to_string())?;
        let li = s.last_index().map_err(|e| e.to_string())?;
        if li < fi {
            self.write(&format!("log is empty: first index={fi}, last index={li}"));
            return Ok(());
        }
        let ents = s.entries(fi, li + 1, u64::MAX).map_err(|e| e.to_string())?;
        self.write(&describe_entries(&ents, None));
        Ok(())
    }

    fn process_ready(&mut self, idx: usize) -> HResult {
        let Some(n) = self.nodes.get_mut(idx) else {
            return Err(format!("no node {}", idx + 1));
        };
        let rd = n.raw.ready();
        let text = describe_ready(&rd, None);
        let is_async = n.config.async_storage_writes;
        self.write(&text);
        let n = &mut self.nodes[idx];
        if !is_async {
            process_append(n, &rd.hard_state, &rd.entries, &rd.snapshot)?;
            process_apply(n, &rd.committed_entries)?;
        }
        for m in rd.messages {
            if is_local_msg_target(m.to) {
                if !is_async {
                    panic!("unexpected local msg target without async storage writes");
                }
                match m.msg_type {
                    MessageType::MsgStorageAppend => n.append_work.push(m),
                    MessageType::MsgStorageApply => n.apply_work.push(m),
                    t => panic!("unexpected message type {t} to a local target"),
                }
            } else {
                self.messages.push(m);
            }
        }
        if !is_async {
            self.nodes[idx].raw.advance();
        }
        Ok(())
    }

    fn process_append_thread(&mut self, idx: usize) -> HResult {
        let n = &mut self.nodes[idx];
        if n.append_work.is_empty() {
            self.write("no append work to perform");
            return Ok(());
        }
        let mut m = n.append_work.remove(0);
        let resps = std::mem::take(&mut m.responses);
        let mut out = format!("Processing:\n{}\n", describe_message(&m, None));
        let st = HardState {
            term: m.term,
            vote: m.vote,
            commit: m.commit,
        };
        let snap = m.snapshot.clone().unwrap_or_default();
        process_append(n, &st, &m.entries, &snap)?;
        out.push_str("Responses:\n");
        for r in &resps {
            out.push_str(&describe_message(r, None));
            out.push('\n');
        }
        self.write(&out);
        self.messages.extend(resps);
        Ok(())
    }

    fn process_apply_thread(&mut self, idx: usize) -> HResult {
        let n = &mut self.nodes[idx];
        if n.apply_work.is_empty() {
            self.write("no apply work to perform");
            return Ok(());
        }
        let mut m = n.apply_work.remove(0);
        let resps = std::mem::take(&mut m.responses);
        let mut out = format!("Processing:\n{}\n", describe_message(&m, None));
        process_apply(n, &m.entries)?;
        out.push_str("Responses:\n");
        for r in &resps {
            out.push_str(&describe_message(r, None));
            out.push('\n');
        }
        self.write(&out);
        self.messages.extend(resps);
        Ok(())
    }

    fn handle_deliver_msgs(&mut self, args: &[CmdArg]) -> Result<HResult, Fatal> {
        let mut typ = None;
        let mut rs: Vec<(u64, bool)> = Vec::new();
        for arg in args {
            if arg.vals.is_empty() {
                rs.push((parse_uint(&arg.key).map_err(Fatal)?, false));
            }
            for i in 0..arg.vals.len() {
                match arg.key.as_str() {
                    "drop" => {
                        let id = arg.scan_u64(i)?;
                        if rs.iter().any(|&(r, _)| r == id) {
                            return Err(Fatal(format!("can't both deliver and drop msgs to {id}")));
                        }
                        rs.push((id, true));
                    }
                    "type" => {
                        let s = arg.val(i)?;
                        typ = Some(
                            MessageType::from_name(s)
                                .ok_or_else(|| Fatal(format!("unknown message type {s}")))?,
                        );
                    }
                    _ => {}
                }
            }
        }
        if self.deliver_msgs(typ, &rs) == 0 {
            self.write("no messages\n");
        }
        Ok(Ok(()))
    }

    /// Delivers (or drops) the queued messages to each recipient; returns how many were handled.
    fn deliver_msgs(&mut self, typ: Option<MessageType>, rs: &[(u64, bool)]) -> usize {
        let mut n = 0;
        for &(id, drop) in rs {
            let msgs = self.split_msgs(id, typ, drop);
            n += msgs.len();
            for m in msgs {
                if drop {
                    self.write("dropped: ");
                }
                self.write(&describe_message(&m, None));
                self.write("\n");
                if drop {
                    continue;
                }
                let Ok(to) = to_idx(m.to) else {
                    continue;
                };
                let res = match self.nodes.get_mut(to) {
                    Some(node) => node.raw.step(m),
                    None => continue,
                };
                if let Err(e) = res {
                    self.write(&format!("{e}\n"));
                }
            }
        }
        n
    }

    /// Takes the queued messages to `to` (of type `typ`, if given), keeping the others in order.
    /// Dropping never takes local messages, which must be delivered reliably.
    fn split_msgs(&mut self, to: u64, typ: Option<MessageType>, drop: bool) -> Vec<Message> {
        let (take, keep): (Vec<Message>, Vec<Message>) = std::mem::take(&mut self.messages)
            .into_iter()
            .partition(|m| {
                m.to == to && !(drop && is_local_msg(m)) && typ.is_none_or(|t| m.msg_type == t)
            });
        self.messages = keep;
        take
    }

    fn handle_stabilize(&mut self, args: &[CmdArg]) -> Result<HResult, Fatal> {
        let idxs = node_idxs(args)?;
        let mut restore = None;
        for arg in args {
            if arg.key == "log-level" {
                for i in 0..arg.vals.len() {
                    restore.get_or_insert(lock(&self.output).level);
                    if let Err(e) = self.set_log_level(arg.val(i)?) {
                        if let Some(l) = restore {
                            lock(&self.output).level = l;
                        }
                        return Ok(Err(e));
                    }
                }
            }
        }
        let res = self.stabilize(&idxs);
        if let Some(l) = restore {
            lock(&self.output).level = l;
        }
        Ok(res)
    }

    fn stabilize(&mut self, idxs: &[usize]) -> HResult {
        let idxs: Vec<usize> = if idxs.is_empty() {
            (0..self.nodes.len()).collect()
        } else {
            idxs.to_vec()
        };
        for &idx in &idxs {
            if idx >= self.nodes.len() {
                return Err(format!("no node {}", idx + 1));
            }
        }
        loop {
            let mut done = true;
            for &idx in &idxs {
                if self.nodes[idx].raw.has_ready() {
                    self.write(&format!("> {} handling Ready\n", idx + 1));
                    self.with_indent(|env| env.process_ready(idx))?;
                    done = false;
                }
            }
            for &idx in &idxs {
                let id = idx as u64 + 1;
                if self.messages.iter().any(|m| m.to == id) {
                    self.write(&format!("> {id} receiving messages\n"));
                    self.with_indent(|env| env.deliver_msgs(None, &[(id, false)]));
                    done = false;
                }
            }
            for &idx in &idxs {
                if !self.nodes[idx].append_work.is_empty() {
                    self.write(&format!("> {} processing append thread\n", idx + 1));
                    while !self.nodes[idx].append_work.is_empty() {
                        self.with_indent(|env| env.process_append_thread(idx))?;
                    }
                    done = false;
                }
            }
            for &idx in &idxs {
                if !self.nodes[idx].apply_work.is_empty() {
                    self.write(&format!("> {} processing apply thread\n", idx + 1));
                    while !self.nodes[idx].apply_work.is_empty() {
                        self.with_indent(|env| env.process_apply_thread(idx))?;
                    }
                    done = false;
                }
            }
            if done {
                return Ok(());
            }
        }
    }

    fn handle_propose_conf_change(&mut self, d: &TestData) -> Result<HResult, Fatal> {
        let idx = first_as_idx(&d.cmd_args)?;
        let mut v1 = false;
        let mut transition = ConfChangeTransition::Auto;
        for arg in &d.cmd_args[1..] {
            for val in &arg.vals {
                match arg.key.as_str() {
                    "v1" => match parse_bool(val) {
                        Ok(b) => v1 = b,
                        Err(e) => return Ok(Err(e)),
                    },
                    "transition" => {
                        transition = match val.as_str() {
                            "auto" => ConfChangeTransition::Auto,
                            "implicit" => ConfChangeTransition::JointImplicit,
                            "explicit" => ConfChangeTransition::JointExplicit,
                            _ => return Ok(Err(format!("unknown transition {val}"))),
                        }
                    }
                    other => return Ok(Err(format!("unknown command {other}"))),
                }
            }
        }
        let ccs = match conf_changes_from_string(&d.input) {
            Ok(ccs) => ccs,
            Err(e) => return Ok(Err(e)),
        };
        let cc: AnyConfChange = if v1 {
            if ccs.len() > 1 || transition != ConfChangeTransition::Auto {
                return Ok(Err(
                    "v1 conf change can only have one operation and no transition".to_owned(),
                ));
            }
            let first = ccs.first().copied().unwrap_or_default();
            ConfChange {
                change_type: first.change_type,
                node_id: first.node_id,
                ..ConfChange::default()
            }
            .into()
        } else {
            ConfChangeV2 {
                transition,
                changes: ccs,
                context: Vec::new(),
            }
            .into()
        };
        Ok(self
            .node(idx)?
            .raw
            .propose_conf_change(cc)
            .map_err(|e| e.to_string()))
    }
}

/// Whether a message is local to a node (and so must not be dropped).
fn is_local_msg(m: &Message) -> bool {
    m.from == m.to || is_local_msg_target(m.from) || is_local_msg_target(m.to)
}

fn process_append(n: &mut Node, hs: &HardState, ents: &[Entry], snap: &Snapshot) -> HResult {
    let s = &mut n.raw.store_mut().mem;
    if !hs.is_empty() {
        s.set_hard_state(*hs);
    }
    if !snap.is_empty() {
        if !ents.is_empty() {
            return Err("can't apply snapshot and entries at the same time".to_owned());
        }
        return s.apply_snapshot(snap.clone()).map_err(|e| e.to_string());
    }
    s.append(ents);
    Ok(())
}

fn process_apply(n: &mut Node, ents: &[Entry]) -> HResult {
    for e in ents {
        let (update, cs) = match AnyConfChange::from_entry(e.entry_type, &e.data) {
            None => (e.data.clone(), None),
            Some(Err(err)) => return Err(err.to_string()),
            Some(Ok(cc)) => {
                let context = match &cc {
                    AnyConfChange::V1(c) => c.context.clone(),
                    AnyConfChange::V2(c) => c.context.clone(),
                };
                let cs = n.raw.apply_conf_change(cc);
                (context, Some(cs))
            }
        };
        let history = &mut n.raw.store_mut().history;
        let last = history.last().cloned().unwrap_or_default();
        let mut data = last.data;
        data.extend_from_slice(&update);
        let snap = Snapshot {
            data,
            metadata: SnapshotMetadata {
                index: e.index,
                term: e.term,
                conf_state: cs.unwrap_or(last.metadata.conf_state),
            },
        };
        history.push(snap);
    }
    Ok(())
}
