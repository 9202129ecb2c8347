//! The Raft state machine: elections, replication, configuration changes, reads and leadership
//! transfer, driven by [`Raft::step`] and [`Raft::tick`].

use std::fmt;

use crate::confchange::{self, Changer};
use crate::config::{Config, ConfigError};
use crate::logger::SharedLogger;
use crate::quorum::VoteResult;
use crate::raft_log::RaftLog;
use crate::raftpb::{
    AnyConfChange, ConfChangeV2, ConfState, Entry, EntryType, HardState, Message, MessageType,
    Snapshot,
};
use crate::read_only::{ReadOnly, ReadOnlyOption, ReadState};
use crate::storage::{Storage, StorageError};
use crate::tracker::{
    Config as TrackerConfig, Progress, ProgressMap, ProgressState, ProgressTracker,
};

/// The placeholder id for "no node" (no leader, no vote).
pub const NONE: u64 = 0;
/// The target of `MsgStorageAppend` messages: the local thread persisting the log.
pub const LOCAL_APPEND_THREAD: u64 = u64::MAX;
/// The target of `MsgStorageApply` messages: the local thread applying committed entries.
pub const LOCAL_APPLY_THREAD: u64 = u64::MAX - 1;

/// Whether `id` is one of the local storage threads.
pub fn is_local_msg_target(id: u64) -> bool {
    id == LOCAL_APPEND_THREAD || id == LOCAL_APPLY_THREAD
}

/// The role of a node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum StateRole {
    /// Follows a leader (or waits for one).
    #[default]
    Follower,
    /// Campaigns for votes in a new term.
    Candidate,
    /// Leads the current term.
    Leader,
    /// Checks with a pre-vote round whether it could win an election.
    PreCandidate,
}

impl fmt::Display for StateRole {
    /// etcd's names: `StateFollower`, `StateCandidate`, `StateLeader`, `StatePreCandidate`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StateRole::Follower => "StateFollower",
            StateRole::Candidate => "StateCandidate",
            StateRole::Leader => "StateLeader",
            StateRole::PreCandidate => "StatePreCandidate",
        })
    }
}

/// Why a step was refused. The messages are etcd's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RaftError {
    /// The proposal was dropped (no leader, transfer in progress, size limit...).
    #[error("raft proposal dropped")]
    ProposalDropped,
    /// A local message arrived from the network.
    #[error("raft: cannot step raft local message")]
    StepLocalMsg,
    /// A response came from a node that is not tracked.
    #[error("raft: cannot step as peer not found")]
    StepPeerNotFound,
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The volatile state worth reporting to the application: who leads, and our role.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SoftState {
    /// The current leader (or [`NONE`]).
    pub lead: u64,
    /// Our role.
    pub raft_state: StateRole,
}

/// Why an election is started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CampaignType {
    PreElection,
    Election,
    Transfer,
}

/// The context that marks a vote request as part of a leadership transfer.
const CAMPAIGN_TRANSFER: &[u8] = b"CampaignTransfer";

/// A small deterministic pseudo-random generator (SplitMix64) for election timeouts.
#[derive(Clone, Debug)]
struct Prng(u64);

impl Prng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `[0, n)`; `n` must be positive.
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// The total payload size of `entries`.
pub(crate) fn payloads_size(entries: &[Entry]) -> u64 {
    entries.iter().map(Entry::payload_size).sum()
}

/// The total encoded size of `entries`.
pub(crate) fn ents_size(entries: &[Entry]) -> u64 {
    entries.iter().map(Entry::encoded_size).sum()
}

/// A proposal message carrying `cc` (or, for `None`, the empty change that leaves a joint
/// configuration).
pub(crate) fn conf_change_to_msg(cc: Option<&AnyConfChange>) -> Message {
    let (entry_type, data) = match cc {
        Some(cc) => cc.to_entry_data(),
        None => (EntryType::ConfChangeV2, Vec::new()),
    };
    let mut m = Message::new(MessageType::MsgProp, NONE, NONE);
    m.entries = vec![Entry::new(0, 0, entry_type, data)];
    m
}

/// One Raft node's state machine.
///
/// All input arrives through [`step`](Self::step) (messages) and [`tick`](Self::tick) (time);
/// output accumulates in `msgs`, `msgs_after_append`, `read_states` and the log, for
/// [`RawNode`](crate::RawNode) to hand out.
pub struct Raft<S: Storage> {
    /// This node's id.
    pub id: u64,
    /// The current term.
    pub term: u64,
    /// The node voted for in this term.
    pub vote: u64,
    /// Reads ready to be served once applied up to their index.
    pub read_states: Vec<ReadState>,
    /// The log.
    pub raft_log: RaftLog<S>,
    max_msg_size: u64,
    max_uncommitted_size: u64,
    /// The configuration and the progress of every member.
    pub trk: ProgressTracker,
    /// Our role.
    pub state: StateRole,
    is_learner: bool,
    /// Messages to send right away (to other nodes).
    pub msgs: Vec<Message>,
    /// Messages to send once the unstable state is persisted (votes and append acks; may be
    /// addressed to this node).
    pub msgs_after_append: Vec<Message>,
    /// The leader (or [`NONE`]).
    pub lead: u64,
    /// The target of a leadership transfer in progress (or [`NONE`]).
    pub lead_transferee: u64,
    pending_conf_index: u64,
    disable_conf_change_validation: bool,
    uncommitted_size: u64,
    read_only: ReadOnly,
    election_elapsed: usize,
    heartbeat_elapsed: usize,
    check_quorum: bool,
    pre_vote: bool,
    heartbeat_timeout: usize,
    election_timeout: usize,
    randomized_election_timeout: usize,
    disable_proposal_forwarding: bool,
    step_down_on_removal: bool,
    logger: SharedLogger,
    pending_read_index_messages: Vec<Message>,
    rng: Prng,
}

macro_rules! info { ($r:expr, $($t:tt)*) => { $r.logger.info(format_args!($($t)*)) } }
macro_rules! debug { ($r:expr, $($t:tt)*) => { $r.logger.debug(format_args!($($t)*)) } }
macro_rules! warn { ($r:expr, $($t:tt)*) => { $r.logger.warn(format_args!($($t)*)) } }
macro_rules! error { ($r:expr, $($t:tt)*) => { $r.logger.error(format_args!($($t)*)) } }
macro_rules! fatal { ($r:expr, $($t:tt)*) => { $r.logger.fatal(format_args!($($t)*)) } }

impl<S: Storage> Raft<S> {
    /// A node configured by `c`, restarting from the state in `storage`.
    ///
    /// # Panics
    ///
    /// If the storage's configuration or hard state is inconsistent with its log.
    pub fn new(c: &Config, storage: S, logger: SharedLogger) -> Result<Self, RaftError> {
        c.validate()?;
        let (hs, cs) = storage.initial_state()?;
        let raft_log = RaftLog::new(
            storage,
            logger.clone(),
            c.effective_max_committed_size_per_ready(),
        );
        let seed = if c.random_seed == 0 {
            c.id.wrapping_mul(0x2545_F491_4F6C_DD1D)
        } else {
            c.random_seed
        };
        let mut r = Raft {
            id: c.id,
            term: 0,
            vote: NONE,
            read_states: Vec::new(),
            raft_log,
            max_msg_size: c.max_size_per_msg,
            max_uncommitted_size: c.effective_max_uncommitted_size(),
            trk: ProgressTracker::new(c.max_inflight_msgs, c.max_inflight_bytes),
            state: StateRole::Follower,
            is_learner: false,
            msgs: Vec::new(),
            msgs_after_append: Vec::new(),
            lead: NONE,
            lead_transferee: NONE,
            pending_conf_index: 0,
            disable_conf_change_validation: c.disable_conf_change_validation,
            uncommitted_size: 0,
            read_only: ReadOnly::new(c.read_only_option),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            check_quorum: c.check_quorum,
            pre_vote: c.pre_vote,
            heartbeat_timeout: c.heartbeat_tick,
            election_timeout: c.election_tick,
            randomized_election_timeout: c.election_tick,
            disable_proposal_forwarding: c.disable_proposal_forwarding,
            step_down_on_removal: c.step_down_on_removal,
            logger,
            pending_read_index_messages: Vec::new(),
            rng: Prng(seed),
        };
        let last_index = r.raft_log.last_index();
        let (cfg, prs) = match confchange::restore(&r.trk, last_index, &cs) {
            Ok(x) => x,
            Err(e) => fatal!(r, "{e}"),
        };
        let restored = r.switch_to_config(cfg, prs);
        r.assert_conf_states_equivalent(&cs, &restored);
        if !hs.is_empty() {
            r.load_state(hs);
        }
        if c.applied > 0 {
            r.raft_log.applied_to(c.applied, 0);
        }
        r.become_follower(r.term, NONE);
        let peers: Vec<String> = r
            .trk
            .voter_nodes()
            .iter()
            .map(|id| format!("{id:x}"))
            .collect();
        info!(
            r,
            "newRaft {:x} [peers: [{}], term: {}, commit: {}, applied: {}, lastindex: {}, lastterm: {}]",
            r.id,
            peers.join(","),
            r.term,
            r.raft_log.committed,
            r.raft_log.applied,
            r.raft_log.last_index(),
            r.raft_log.last_term()
        );
        Ok(r)
    }

    fn assert_conf_states_equivalent(&self, a: &ConfState, b: &ConfState) {
        if !a.equivalent(b) {
            fatal!(self, "ConfStates not equivalent after sorting:\n{a}\n{b}");
        }
    }

    /// Whether a leader is known.
    pub fn has_leader(&self) -> bool {
        self.lead != NONE
    }

    /// The current soft state.
    pub fn soft_state(&self) -> SoftState {
        SoftState {
            lead: self.lead,
            raft_state: self.state,
        }
    }

    /// The current hard state.
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.raft_log.committed,
        }
    }

    /// Whether this node is a learner.
    pub fn is_learner(&self) -> bool {
        self.is_learner
    }

    /// The logger.
    pub fn logger(&self) -> &SharedLogger {
        &self.logger
    }

    /// Sets the randomized election timeout (until the next reset); a test hook.
    pub fn set_randomized_election_timeout(&mut self, timeout: usize) {
        self.randomized_election_timeout = timeout;
    }

    /// The current randomized election timeout.
    pub fn randomized_election_timeout(&self) -> usize {
        self.randomized_election_timeout
    }

    /// Queues `m` for sending: votes and append acks after the unstable state is persisted,
    /// everything else right away.
    fn send(&mut self, mut m: Message) {
        if m.from == NONE {
            m.from = self.id;
        }
        match m.msg_type {
            MessageType::MsgVote
            | MessageType::MsgVoteResp
            | MessageType::MsgPreVote
            | MessageType::MsgPreVoteResp => {
                if m.term == 0 {
                    fatal!(self, "term should be set when sending {}", m.msg_type);
                }
            }
            _ => {
                if m.term != 0 {
                    fatal!(
                        self,
                        "term should not be set when sending {} (was {})",
                        m.msg_type,
                        m.term
                    );
                }
                // Proposals and read requests are forwarded to the leader as if local.
                if m.msg_type != MessageType::MsgProp && m.msg_type != MessageType::MsgReadIndex {
                    m.term = self.term;
                }
            }
        }
        if matches!(
            m.msg_type,
            MessageType::MsgAppResp | MessageType::MsgVoteResp | MessageType::MsgPreVoteResp
        ) {
            self.msgs_after_append.push(m);
        } else {
            if m.to == self.id {
                fatal!(
                    self,
                    "message should not be self-addressed when sending {}",
                    m.msg_type
                );
            }
            self.msgs.push(m);
        }
    }

    /// Sends an append (possibly empty, to convey the commit index) to `to`.
    fn send_append(&mut self, to: u64) {
        self.maybe_send_append(to, true);
    }

    /// Sends an append with new entries to `to` if flow control allows; empty appends only if
    /// `send_if_empty`. Returns whether a message was sent.
    fn maybe_send_append(&mut self, to: u64, send_if_empty: bool) -> bool {
        let Some(pr) = self.trk.progress.get(to) else {
            return false;
        };
        if pr.is_paused() {
            return false;
        }
        let next = pr.next;
        let prev_index = next - 1;
        let Ok(prev_term) = self.raft_log.term(prev_index) else {
            // The log was compacted past what the follower needs: send a snapshot.
            return self.maybe_send_snapshot(to);
        };
        let ents = if pr.state != ProgressState::Replicate || !pr.inflights.full() {
            self.raft_log.entries(next, self.max_msg_size)
        } else {
            Ok(Vec::new())
        };
        let ents = match ents {
            Ok(e) => e,
            Err(_) => {
                if !send_if_empty {
                    return false;
                }
                return self.maybe_send_snapshot(to);
            }
        };
        if ents.is_empty() && !send_if_empty {
            return false;
        }
        let committed = self.raft_log.committed;
        let (n, bytes) = (ents.len(), payloads_size(&ents));
        let mut m = Message::new(MessageType::MsgApp, NONE, to);
        m.index = prev_index;
        m.log_term = prev_term;
        m.entries = ents;
        m.commit = committed;
        self.send(m);
        if let Some(pr) = self.trk.progress.get_mut(to) {
            pr.sent_entries(n, bytes);
            pr.mark_commit_sent(committed);
        }
        true
    }

    /// Sends the latest snapshot to `to` if it is recently active.
    fn maybe_send_snapshot(&mut self, to: u64) -> bool {
        let Some(pr) = self.trk.progress.get(to) else {
            return false;
        };
        if !pr.recent_active {
            debug!(
                self,
                "ignore sending snapshot to {to:x} since it is not recently active"
            );
            return false;
        }
        let snapshot = match self.raft_log.snapshot() {
            Ok(s) => s,
            Err(StorageError::SnapshotTemporarilyUnavailable) => {
                debug!(
                    self,
                    "{:x} failed to send snapshot to {to:x} because snapshot is temporarily unavailable",
                    self.id
                );
                return false;
            }
            Err(e) => fatal!(self, "{e}"),
        };
        if snapshot.is_empty() {
            fatal!(self, "need non-empty snapshot");
        }
        let (sindex, sterm) = (snapshot.metadata.index, snapshot.metadata.term);
        debug!(
            self,
            "{:x} [firstindex: {}, commit: {}] sent snapshot[index: {sindex}, term: {sterm}] to {to:x} [{pr}]",
            self.id,
            self.raft_log.first_index(),
            self.raft_log.committed
        );
        if let Some(pr) = self.trk.progress.get_mut(to) {
            pr.become_snapshot(sindex);
        }
        if let Some(pr) = self.trk.progress.get(to) {
            debug!(
                self,
                "{:x} paused sending replication messages to {to:x} [{pr}]", self.id
            );
        }
        let mut m = Message::new(MessageType::MsgSnap, NONE, to);
        m.snapshot = Some(snapshot);
        self.send(m);
        true
    }

    /// Sends a heartbeat to `to`, with the commit index it can safely apply.
    fn send_heartbeat(&mut self, to: u64, ctx: Vec<u8>) {
        let Some(pr) = self.trk.progress.get(to) else {
            return;
        };
        let commit = pr.matched.min(self.raft_log.committed);
        let mut m = Message::new(MessageType::MsgHeartbeat, NONE, to);
        m.commit = commit;
        m.context = ctx;
        self.send(m);
        if let Some(pr) = self.trk.progress.get_mut(to) {
            pr.mark_commit_sent(commit);
        }
    }

    /// The tracked peer (other than this node) with the smallest id above `after`: walks the
    /// peers in ascending id order without collecting their ids, while the caller sends.
    fn next_peer_after(&self, after: u64) -> Option<u64> {
        let next = self.trk.progress.next_id_after(after)?;
        if next == self.id {
            return self.trk.progress.next_id_after(next);
        }
        Some(next)
    }

    /// Sends appends to every peer that is not up to date.
    fn bcast_append(&mut self) {
        let mut id = NONE;
        while let Some(next) = self.next_peer_after(id) {
            id = next;
            self.send_append(id);
        }
    }

    /// Sends heartbeats to every peer, carrying the position of the newest pending read (so
    /// that the answers confirm every pending read).
    fn bcast_heartbeat(&mut self) {
        let ctx = self.read_only.heartbeat_ctx();
        self.bcast_heartbeat_with_ctx(&ctx);
    }

    fn bcast_heartbeat_with_ctx(&mut self, ctx: &[u8]) {
        let mut id = NONE;
        while let Some(next) = self.next_peer_after(id) {
            id = next;
            self.send_heartbeat(id, ctx.to_vec());
        }
    }

    /// The application applied up to `index` (`size` bytes of entries acknowledged); a leader
    /// in an auto-leave joint configuration then proposes to leave it.
    pub fn applied_to(&mut self, index: u64, size: u64) {
        let new_applied = index.max(self.raft_log.applied);
        self.raft_log.applied_to(new_applied, size);
        if self.trk.config.auto_leave
            && new_applied >= self.pending_conf_index
            && self.state == StateRole::Leader
        {
            // The empty change cannot be refused for its size, but it can be dropped during a
            // leadership transfer; it is retried on the next application.
            let m = conf_change_to_msg(None);
            match self.step(m) {
                Err(e) => debug!(
                    self,
                    "not initiating automatic transition out of joint configuration {}: {e}",
                    self.trk.config
                ),
                Ok(()) => info!(
                    self,
                    "initiating automatic transition out of joint configuration {}",
                    self.trk.config
                ),
            }
        }
    }

    /// The snapshot was persisted and applied.
    pub fn applied_snap(&mut self, snap: &Snapshot) {
        let index = snap.metadata.index;
        self.raft_log.stable_snap_to(index);
        self.applied_to(index, 0);
    }

    /// Advances the commit index from the quorum's match indexes; true if it moved.
    fn maybe_commit(&mut self) -> bool {
        let committed = self.trk.committed();
        self.raft_log.maybe_commit(committed, self.term)
    }

    fn reset(&mut self, term: u64) {
        if self.term != term {
            self.term = term;
            self.vote = NONE;
        }
        self.lead = NONE;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.reset_randomized_election_timeout();
        self.abort_leader_transfer();
        self.trk.reset_votes();
        let last = self.raft_log.last_index();
        let (id, inflights) = (self.id, self.trk.new_inflights());
        self.trk.visit(|pid, pr| {
            let mut fresh = Progress::new(last + 1, inflights.clone());
            fresh.is_learner = pr.is_learner;
            if pid == id {
                fresh.matched = last;
            }
            *pr = fresh;
        });
        self.pending_conf_index = 0;
        self.uncommitted_size = 0;
        self.read_only = ReadOnly::new(self.read_only.option);
    }

    /// Appends proposals to the leader's log; false if the uncommitted size limit drops them.
    fn append_entry(&mut self, mut es: Vec<Entry>) -> bool {
        let li = self.raft_log.last_index();
        for (i, e) in es.iter_mut().enumerate() {
            e.term = self.term;
            e.index = li + 1 + i as u64;
        }
        if !self.increase_uncommitted_size(&es) {
            warn!(
                self,
                "{:x} appending new entries to log would exceed uncommitted entry size limit; dropping proposal",
                self.id
            );
            return false;
        }
        let li = self.raft_log.append_owned(es);
        // The leader acknowledges its own entries once they are persisted.
        let mut m = Message::new(MessageType::MsgAppResp, NONE, self.id);
        m.index = li;
        self.send(m);
        true
    }

    /// Advances the logical clock by one tick.
    pub fn tick(&mut self) {
        match self.state {
            StateRole::Leader => self.tick_heartbeat(),
            _ => self.tick_election(),
        }
    }

    fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.promotable() && self.past_election_timeout() {
            self.election_elapsed = 0;
            let m = Message::new(MessageType::MsgHup, self.id, NONE);
            if let Err(e) = self.step(m) {
                debug!(self, "error occurred during election: {e}");
            }
        }
    }

    fn tick_heartbeat(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.election_elapsed >= self.election_timeout {
            self.election_elapsed = 0;
            if self.check_quorum {
                let m = Message::new(MessageType::MsgCheckQuorum, self.id, NONE);
                if let Err(e) = self.step(m) {
                    debug!(
                        self,
                        "error occurred during checking sending heartbeat: {e}"
                    );
                }
            }
            // A transfer not done within an election timeout is abandoned.
            if self.state == StateRole::Leader && self.lead_transferee != NONE {
                self.abort_leader_transfer();
            }
        }
        if self.state != StateRole::Leader {
            return;
        }
        if self.heartbeat_elapsed >= self.heartbeat_timeout {
            self.heartbeat_elapsed = 0;
            let m = Message::new(MessageType::MsgBeat, self.id, NONE);
            if let Err(e) = self.step(m) {
                debug!(
                    self,
                    "error occurred during checking sending heartbeat: {e}"
                );
            }
        }
    }

    /// Becomes a follower of `lead` (possibly [`NONE`]) in `term`.
    pub fn become_follower(&mut self, term: u64, lead: u64) {
        self.reset(term);
        self.lead = lead;
        self.state = StateRole::Follower;
        info!(self, "{:x} became follower at term {}", self.id, self.term);
    }

    /// Becomes a candidate in the next term, voting for itself.
    ///
    /// # Panics
    ///
    /// If called on a leader.
    pub fn become_candidate(&mut self) {
        if self.state == StateRole::Leader {
            fatal!(self, "invalid transition [leader -> candidate]");
        }
        self.reset(self.term + 1);
        self.vote = self.id;
        self.state = StateRole::Candidate;
        info!(self, "{:x} became candidate at term {}", self.id, self.term);
    }

    /// Becomes a pre-candidate: term and vote stay as they are.
    ///
    /// # Panics
    ///
    /// If called on a leader.
    pub fn become_pre_candidate(&mut self) {
        if self.state == StateRole::Leader {
            fatal!(self, "invalid transition [leader -> pre-candidate]");
        }
        self.trk.reset_votes();
        self.lead = NONE;
        self.state = StateRole::PreCandidate;
        info!(
            self,
            "{:x} became pre-candidate at term {}", self.id, self.term
        );
    }

    /// Becomes the leader of the current term and appends an empty entry.
    ///
    /// # Panics
    ///
    /// If called on a follower.
    pub fn become_leader(&mut self) {
        if self.state == StateRole::Follower {
            fatal!(self, "invalid transition [follower -> leader]");
        }
        self.reset(self.term);
        self.lead = self.id;
        self.state = StateRole::Leader;
        if let Some(pr) = self.trk.progress.get_mut(self.id) {
            pr.become_replicate();
            pr.recent_active = true;
        }
        // Any pending configuration change may still be in the log: delay new ones until
        // everything up to here is applied.
        self.pending_conf_index = self.raft_log.last_index();
        if !self.append_entry(vec![Entry::default()]) {
            fatal!(self, "empty entry was dropped");
        }
        info!(self, "{:x} became leader at term {}", self.id, self.term);
    }

    fn hup(&mut self, t: CampaignType) {
        if self.state == StateRole::Leader {
            debug!(self, "{:x} ignoring MsgHup because already leader", self.id);
            return;
        }
        if !self.promotable() {
            warn!(self, "{:x} is unpromotable and can not campaign", self.id);
            return;
        }
        if self.has_unapplied_conf_changes() {
            warn!(
                self,
                "{:x} cannot campaign at term {} since there are still pending configuration changes to apply",
                self.id,
                self.term
            );
            return;
        }
        info!(
            self,
            "{:x} is starting a new election at term {}", self.id, self.term
        );
        self.campaign(t);
    }

    fn has_unapplied_conf_changes(&self) -> bool {
        if self.raft_log.applied >= self.raft_log.committed {
            return false;
        }
        let (lo, hi) = (self.raft_log.applied + 1, self.raft_log.committed + 1);
        let mut found = false;
        let res = self
            .raft_log
            .scan(lo, hi, self.raft_log.max_applying_ents_size, |ents| {
                found = ents.iter().any(|e| {
                    matches!(
                        e.entry_type,
                        EntryType::ConfChange | EntryType::ConfChangeV2
                    )
                });
                !found
            });
        if let Err(e) = res {
            fatal!(self, "error scanning unapplied entries [{lo}, {hi}): {e}");
        }
        found
    }

    fn campaign(&mut self, t: CampaignType) {
        if !self.promotable() {
            warn!(
                self,
                "{:x} is unpromotable; campaign() should have been called", self.id
            );
        }
        let (term, vote_msg) = if t == CampaignType::PreElection {
            self.become_pre_candidate();
            (self.term + 1, MessageType::MsgPreVote)
        } else {
            self.become_candidate();
            (self.term, MessageType::MsgVote)
        };
        let ids: Vec<u64> = self.trk.config.voters.ids().into_iter().collect();
        for id in ids {
            if id == self.id {
                // Our own vote counts once it is persisted.
                let mut m = Message::new(vote_msg.vote_response(), NONE, id);
                m.term = term;
                self.send(m);
                continue;
            }
            let (last_index, last_term) = (self.raft_log.last_index(), self.raft_log.last_term());
            info!(
                self,
                "{:x} [logterm: {last_term}, index: {last_index}] sent {vote_msg} request to {id:x} at term {}",
                self.id,
                self.term
            );
            let mut m = Message::new(vote_msg, NONE, id);
            m.term = term;
            m.index = last_index;
            m.log_term = last_term;
            if t == CampaignType::Transfer {
                m.context = CAMPAIGN_TRANSFER.to_vec();
            }
            self.send(m);
        }
    }

    fn poll(&mut self, id: u64, t: MessageType, granted: bool) -> (usize, usize, VoteResult) {
        if granted {
            info!(
                self,
                "{:x} received {t} from {id:x} at term {}", self.id, self.term
            );
        } else {
            info!(
                self,
                "{:x} received {t} rejection from {id:x} at term {}", self.id, self.term
            );
        }
        self.trk.record_vote(id, granted);
        self.trk.tally_votes()
    }

    /// Handles one message: the term checks shared by every role, then the role's handler.
    pub fn step(&mut self, m: Message) -> Result<(), RaftError> {
        if m.term == 0 {
            // Local message.
        } else if m.term > self.term {
            if matches!(m.msg_type, MessageType::MsgVote | MessageType::MsgPreVote) {
                let force = m.context == CAMPAIGN_TRANSFER;
                let in_lease = self.check_quorum
                    && self.lead != NONE
                    && self.election_elapsed < self.election_timeout;
                if !force && in_lease {
                    // Within the lease of a current leader, neither the term nor the vote
                    // changes.
                    info!(
                        self,
                        "{:x} [logterm: {}, index: {}, vote: {:x}] ignored {} from {:x} [logterm: {}, index: {}] at term {}: lease is not expired (remaining ticks: {})",
                        self.id,
                        self.raft_log.last_term(),
                        self.raft_log.last_index(),
                        self.vote,
                        m.msg_type,
                        m.from,
                        m.log_term,
                        m.index,
                        self.term,
                        self.election_timeout - self.election_elapsed
                    );
                    return Ok(());
                }
            }
            let keep_term = m.msg_type == MessageType::MsgPreVote
                || (m.msg_type == MessageType::MsgPreVoteResp && !m.reject);
            if !keep_term {
                info!(
                    self,
                    "{:x} [term: {}] received a {} message with higher term from {:x} [term: {}]",
                    self.id,
                    self.term,
                    m.msg_type,
                    m.from,
                    m.term
                );
                if matches!(
                    m.msg_type,
                    MessageType::MsgApp | MessageType::MsgHeartbeat | MessageType::MsgSnap
                ) {
                    self.become_follower(m.term, m.from);
                } else {
                    self.become_follower(m.term, NONE);
                }
            }
        } else if m.term < self.term {
            if (self.check_quorum || self.pre_vote)
                && matches!(m.msg_type, MessageType::MsgHeartbeat | MessageType::MsgApp)
            {
                // A leader of an older term: tell it about ours, so that a node stuck at a
                // higher term can rejoin (via a fresh election).
                self.send(Message::new(MessageType::MsgAppResp, NONE, m.from));
            } else if m.msg_type == MessageType::MsgPreVote {
                info!(
                    self,
                    "{:x} [logterm: {}, index: {}, vote: {:x}] rejected {} from {:x} [logterm: {}, index: {}] at term {}",
                    self.id,
                    self.raft_log.last_term(),
                    self.raft_log.last_index(),
                    self.vote,
                    m.msg_type,
                    m.from,
                    m.log_term,
                    m.index,
                    self.term
                );
                let mut resp = Message::new(MessageType::MsgPreVoteResp, NONE, m.from);
                resp.term = self.term;
                resp.reject = true;
                self.send(resp);
            } else if m.msg_type == MessageType::MsgStorageAppendResp {
                if m.index != 0 {
                    // The entries may have been overwritten in a later term: not stable.
                    info!(
                        self,
                        "{:x} [term: {}] ignored entry appends from a {} message with lower term [term: {}]",
                        self.id,
                        self.term,
                        m.msg_type,
                        m.term
                    );
                }
                if let Some(snap) = &m.snapshot {
                    // Snapshots hold committed state: still valid in a later term.
                    self.applied_snap(snap);
                }
            } else {
                info!(
                    self,
                    "{:x} [term: {}] ignored a {} message with lower term from {:x} [term: {}]",
                    self.id,
                    self.term,
                    m.msg_type,
                    m.from,
                    m.term
                );
            }
            return Ok(());
        }

        match m.msg_type {
            MessageType::MsgHup => {
                if self.pre_vote {
                    self.hup(CampaignType::PreElection);
                } else {
                    self.hup(CampaignType::Election);
                }
            }
            MessageType::MsgStorageAppendResp => {
                if m.index != 0 {
                    self.raft_log.stable_to(m.index, m.log_term);
                }
                if let Some(snap) = &m.snapshot {
                    self.applied_snap(snap);
                }
            }
            MessageType::MsgStorageApplyResp => {
                if let Some(last) = m.entries.last() {
                    let index = last.index;
                    self.applied_to(index, ents_size(&m.entries));
                    self.reduce_uncommitted_size(payloads_size(&m.entries));
                }
            }
            MessageType::MsgVote | MessageType::MsgPreVote => self.handle_vote_request(&m),
            _ => match self.state {
                StateRole::Leader => return self.step_leader(m),
                StateRole::Candidate | StateRole::PreCandidate => return self.step_candidate(m),
                StateRole::Follower => return self.step_follower(m),
            },
        }
        Ok(())
    }

    fn handle_vote_request(&mut self, m: &Message) {
        let can_vote = self.vote == m.from
            || (self.vote == NONE && self.lead == NONE)
            || (m.msg_type == MessageType::MsgPreVote && m.term > self.term);
        let (last_index, last_term) = (self.raft_log.last_index(), self.raft_log.last_term());
        // Learners vote too: they may have been promoted without knowing it yet.
        if can_vote && self.raft_log.is_up_to_date(m.index, m.log_term) {
            info!(
                self,
                "{:x} [logterm: {last_term}, index: {last_index}, vote: {:x}] cast {} for {:x} [logterm: {}, index: {}] at term {}",
                self.id,
                self.vote,
                m.msg_type,
                m.from,
                m.log_term,
                m.index,
                self.term
            );
            // The response carries the request's term, so that a pre-candidate with a future
            // term does not ignore it.
            let mut resp = Message::new(m.msg_type.vote_response(), NONE, m.from);
            resp.term = m.term;
            self.send(resp);
            if m.msg_type == MessageType::MsgVote {
                self.election_elapsed = 0;
                self.vote = m.from;
            }
        } else {
            info!(
                self,
                "{:x} [logterm: {last_term}, index: {last_index}, vote: {:x}] rejected {} from {:x} [logterm: {}, index: {}] at term {}",
                self.id,
                self.vote,
                m.msg_type,
                m.from,
                m.log_term,
                m.index,
                self.term
            );
            let mut resp = Message::new(m.msg_type.vote_response(), NONE, m.from);
            resp.term = self.term;
            resp.reject = true;
            self.send(resp);
        }
    }

    fn step_leader(&mut self, mut m: Message) -> Result<(), RaftError> {
        match m.msg_type {
            MessageType::MsgBeat => {
                self.bcast_heartbeat();
                return Ok(());
            }
            MessageType::MsgCheckQuorum => {
                if !self.trk.quorum_active() {
                    warn!(
                        self,
                        "{:x} stepped down to follower since quorum is not active", self.id
                    );
                    self.become_follower(self.term, NONE);
                }
                let id = self.id;
                self.trk.visit(|pid, pr| {
                    if pid != id {
                        pr.recent_active = false;
                    }
                });
                return Ok(());
            }
            MessageType::MsgProp => {
                if m.entries.is_empty() {
                    fatal!(self, "{:x} stepped empty MsgProp", self.id);
                }
                if !self.trk.progress.contains(self.id) {
                    // Removed from the configuration while leading.
                    return Err(RaftError::ProposalDropped);
                }
                if self.lead_transferee != NONE {
                    debug!(
                        self,
                        "{:x} [term {}] transfer leadership to {:x} is in progress; dropping proposal",
                        self.id,
                        self.term,
                        self.lead_transferee
                    );
                    return Err(RaftError::ProposalDropped);
                }
                let last_index = self.raft_log.last_index();
                for i in 0..m.entries.len() {
                    let e = &m.entries[i];
                    let Some(cc) = AnyConfChange::from_entry(e.entry_type, &e.data) else {
                        continue;
                    };
                    let cc = match cc {
                        Ok(cc) => cc,
                        Err(err) => fatal!(self, "{err}"),
                    };
                    let already_pending = self.pending_conf_index > self.raft_log.applied;
                    let already_joint = self.trk.config.is_joint();
                    let wants_leave_joint = cc.as_v2().changes.is_empty();
                    let failed_check = if already_pending {
                        Some(format!(
                            "possible unapplied conf change at index {} (applied to {})",
                            self.pending_conf_index, self.raft_log.applied
                        ))
                    } else if already_joint && !wants_leave_joint {
                        Some("must transition out of joint config first".to_owned())
                    } else if !already_joint && wants_leave_joint {
                        Some("not in joint state; refusing empty conf change".to_owned())
                    } else {
                        None
                    };
                    match failed_check {
                        Some(reason) if !self.disable_conf_change_validation => {
                            info!(
                                self,
                                "{:x} ignoring conf change {cc} at config {}: {reason}",
                                self.id,
                                self.trk.config
                            );
                            m.entries[i] = Entry::default();
                        }
                        _ => self.pending_conf_index = last_index + i as u64 + 1,
                    }
                }
                if !self.append_entry(m.entries) {
                    return Err(RaftError::ProposalDropped);
                }
                self.bcast_append();
                return Ok(());
            }
            MessageType::MsgReadIndex => {
                if self.trk.is_singleton() {
                    let committed = self.raft_log.committed;
                    if let Some(resp) = self.response_to_read_index_req(m, committed) {
                        self.send(resp);
                    }
                    return Ok(());
                }
                // Not before the leader committed an entry of its term.
                if !self.committed_entry_in_current_term() {
                    self.pending_read_index_messages.push(m);
                    return Ok(());
                }
                self.send_msg_read_index_response(m);
                return Ok(());
            }
            MessageType::MsgForgetLeader => return Ok(()),
            _ => {}
        }

        // Everything else needs the sender's progress.
        let from = m.from;
        if !self.trk.progress.contains(from) {
            debug!(self, "{:x} no progress available for {from:x}", self.id);
            return Ok(());
        }
        match m.msg_type {
            MessageType::MsgAppResp => self.handle_append_response(&m),
            MessageType::MsgHeartbeatResp => self.handle_heartbeat_response(&m),
            MessageType::MsgSnapStatus => {
                let Some(pr) = self.trk.progress.get_mut(from) else {
                    return Ok(());
                };
                if pr.state != ProgressState::Snapshot {
                    return Ok(());
                }
                if !m.reject {
                    pr.become_probe();
                    debug!(
                        self,
                        "{:x} snapshot succeeded, resumed sending replication messages to {from:x} [{pr}]",
                        self.id
                    );
                } else {
                    // Forget the snapshot first, or probing would start after it.
                    pr.pending_snapshot = 0;
                    pr.become_probe();
                    debug!(
                        self,
                        "{:x} snapshot failed, resumed sending replication messages to {from:x} [{pr}]",
                        self.id
                    );
                }
                // Wait for the follower's answer (or a heartbeat) before the next append.
                pr.msg_app_flow_paused = true;
            }
            MessageType::MsgUnreachable => {
                let Some(pr) = self.trk.progress.get_mut(from) else {
                    return Ok(());
                };
                // An append was probably lost: back to probing.
                if pr.state == ProgressState::Replicate {
                    pr.become_probe();
                }
                debug!(
                    self,
                    "{:x} failed to send message to {from:x} because it is unreachable [{pr}]",
                    self.id
                );
            }
            MessageType::MsgTransferLeader => {
                let Some(pr) = self.trk.progress.get(from) else {
                    return Ok(());
                };
                if pr.is_learner {
                    debug!(
                        self,
                        "{:x} is learner. Ignored transferring leadership", self.id
                    );
                    return Ok(());
                }
                let transferee = from;
                let last_transferee = self.lead_transferee;
                if last_transferee != NONE {
                    if last_transferee == transferee {
                        info!(
                            self,
                            "{:x} [term {}] transfer leadership to {transferee:x} is in progress, ignores request to same node {transferee:x}",
                            self.id,
                            self.term
                        );
                        return Ok(());
                    }
                    self.abort_leader_transfer();
                    info!(
                        self,
                        "{:x} [term {}] abort previous transferring leadership to {last_transferee:x}",
                        self.id,
                        self.term
                    );
                }
                if transferee == self.id {
                    debug!(
                        self,
                        "{:x} is already leader. Ignored transferring leadership to self", self.id
                    );
                    return Ok(());
                }
                info!(
                    self,
                    "{:x} [term {}] starts to transfer leadership to {transferee:x}",
                    self.id,
                    self.term
                );
                // The transfer must complete within an election timeout.
                self.election_elapsed = 0;
                self.lead_transferee = transferee;
                let up_to_date = self
                    .trk
                    .progress
                    .get(transferee)
                    .is_some_and(|pr| pr.matched == self.raft_log.last_index());
                if up_to_date {
                    self.send_timeout_now(transferee);
                    info!(
                        self,
                        "{:x} sends MsgTimeoutNow to {transferee:x} immediately as {transferee:x} already has up-to-date log",
                        self.id
                    );
                } else {
                    self.send_append(transferee);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn handle_append_response(&mut self, m: &Message) {
        let from = m.from;
        let first_index = self.raft_log.first_index();
        let Some(pr) = self.trk.progress.get_mut(from) else {
            return;
        };
        pr.recent_active = true;
        if m.reject {
            debug!(
                self,
                "{:x} received MsgAppResp(rejected, hint: (index {}, term {})) from {from:x} for index {}",
                self.id,
                m.reject_hint,
                m.log_term,
                m.index
            );
            let mut next_probe_idx = m.reject_hint;
            if m.log_term > 0 {
                // Skip every index whose term in our log exceeds the follower's term at the
                // hint: a probe there must fail too.
                next_probe_idx = self
                    .raft_log
                    .find_conflict_by_term(m.reject_hint, m.log_term)
                    .0;
            }
            let Some(pr) = self.trk.progress.get_mut(from) else {
                return;
            };
            if pr.maybe_decr_to(m.index, next_probe_idx) {
                debug!(
                    self,
                    "{:x} decreased progress of {from:x} to [{pr}]", self.id
                );
                if pr.state == ProgressState::Replicate {
                    pr.become_probe();
                }
                self.send_append(from);
            }
            return;
        }

        let updated = pr.maybe_update(m.index);
        if !(updated || (pr.matched == m.index && pr.state == ProgressState::Probe)) {
            return;
        }
        match pr.state {
            ProgressState::Probe => pr.become_replicate(),
            ProgressState::Snapshot if pr.matched + 1 >= first_index => {
                // The follower can be caught up from the log now, wherever the snapshot
                // actually left it.
                debug!(
                    self,
                    "{:x} recovered from needing snapshot, resumed sending replication messages to {from:x} [{pr}]",
                    self.id
                );
                pr.become_probe();
                pr.become_replicate();
            }
            ProgressState::Replicate => pr.inflights.free_le(m.index),
            ProgressState::Snapshot => {}
        }

        if self.maybe_commit() {
            // Reads waiting for a commit in this term can be served now.
            self.release_pending_read_index_messages();
            self.bcast_append();
        } else if self.id != from
            && self
                .trk
                .progress
                .get(from)
                .is_some_and(|pr| pr.can_bump_commit(self.raft_log.committed))
        {
            // The follower may be missing the latest commit index.
            self.send_append(from);
        }
        // Flow control may now allow more (size-limited) appends.
        if self.id != from {
            while self.maybe_send_append(from, false) {}
        }
        if from == self.lead_transferee
            && self
                .trk
                .progress
                .get(from)
                .is_some_and(|pr| pr.matched == self.raft_log.last_index())
        {
            info!(
                self,
                "{:x} sent MsgTimeoutNow to {from:x} after received MsgAppResp", self.id
            );
            self.send_timeout_now(from);
        }
    }

    fn handle_heartbeat_response(&mut self, m: &Message) {
        let from = m.from;
        let last_index = self.raft_log.last_index();
        let Some(pr) = self.trk.progress.get_mut(from) else {
            return;
        };
        pr.recent_active = true;
        pr.msg_app_flow_paused = false;
        // Even a throttled follower gets an (empty) append, so that lost appends cannot stall
        // it; a caught-up prober gets one to move back to replicating.
        if pr.matched < last_index || pr.state == ProgressState::Probe {
            self.send_append(from);
        }
        if self.read_only.option != ReadOnlyOption::Safe || m.context.is_empty() {
            return;
        }
        self.read_only.recv_ack(from, &m.context);
        for rs in self.read_only.maybe_advance(&self.trk.config.voters) {
            if let Some(resp) = self.response_to_read_index_req(rs.req, rs.index) {
                self.send(resp);
            }
        }
    }

    fn step_candidate(&mut self, m: Message) -> Result<(), RaftError> {
        // Only answers to our own kind of campaign count (a candidate may still get stale
        // pre-vote answers).
        let my_vote_resp = if self.state == StateRole::PreCandidate {
            MessageType::MsgPreVoteResp
        } else {
            MessageType::MsgVoteResp
        };
        match m.msg_type {
            MessageType::MsgProp => {
                info!(
                    self,
                    "{:x} no leader at term {}; dropping proposal", self.id, self.term
                );
                return Err(RaftError::ProposalDropped);
            }
            MessageType::MsgApp => {
                self.become_follower(m.term, m.from);
                self.handle_append_entries(m);
            }
            MessageType::MsgHeartbeat => {
                self.become_follower(m.term, m.from);
                self.handle_heartbeat(m);
            }
            MessageType::MsgSnap => {
                self.become_follower(m.term, m.from);
                self.handle_snapshot(m);
            }
            t if t == my_vote_resp => {
                let (granted, rejected, res) = self.poll(m.from, m.msg_type, !m.reject);
                info!(
                    self,
                    "{:x} has received {granted} {} votes and {rejected} vote rejections",
                    self.id,
                    m.msg_type
                );
                match res {
                    VoteResult::Won => {
                        if self.state == StateRole::PreCandidate {
                            self.campaign(CampaignType::Election);
                        } else {
                            self.become_leader();
                            self.bcast_append();
                        }
                    }
                    VoteResult::Lost => {
                        // A rejected pre-vote carries a future term: keep ours.
                        self.become_follower(self.term, NONE);
                    }
                    VoteResult::Pending => {}
                }
            }
            MessageType::MsgTimeoutNow => {
                debug!(
                    self,
                    "{:x} [term {} state {}] ignored MsgTimeoutNow from {:x}",
                    self.id,
                    self.term,
                    self.state,
                    m.from
                );
            }
            _ => {}
        }
        Ok(())
    }

    fn step_follower(&mut self, mut m: Message) -> Result<(), RaftError> {
        match m.msg_type {
            MessageType::MsgProp => {
                if self.lead == NONE {
                    info!(
                        self,
                        "{:x} no leader at term {}; dropping proposal", self.id, self.term
                    );
                    return Err(RaftError::ProposalDropped);
                } else if self.disable_proposal_forwarding {
                    info!(
                        self,
                        "{:x} not forwarding to leader {:x} at term {}; dropping proposal",
                        self.id,
                        self.lead,
                        self.term
                    );
                    return Err(RaftError::ProposalDropped);
                }
                m.to = self.lead;
                self.send(m);
            }
            MessageType::MsgApp => {
                self.election_elapsed = 0;
                self.lead = m.from;
                self.handle_append_entries(m);
            }
            MessageType::MsgHeartbeat => {
                self.election_elapsed = 0;
                self.lead = m.from;
                self.handle_heartbeat(m);
            }
            MessageType::MsgSnap => {
                self.election_elapsed = 0;
                self.lead = m.from;
                self.handle_snapshot(m);
            }
            MessageType::MsgTransferLeader => {
                if self.lead == NONE {
                    info!(
                        self,
                        "{:x} no leader at term {}; dropping leader transfer msg",
                        self.id,
                        self.term
                    );
                    return Ok(());
                }
                m.to = self.lead;
                self.send(m);
            }
            MessageType::MsgForgetLeader => {
                if self.read_only.option == ReadOnlyOption::LeaseBased {
                    error!(self, "ignoring MsgForgetLeader due to ReadOnlyLeaseBased");
                    return Ok(());
                }
                if self.lead != NONE {
                    info!(
                        self,
                        "{:x} forgetting leader {:x} at term {}", self.id, self.lead, self.term
                    );
                    self.lead = NONE;
                }
            }
            MessageType::MsgTimeoutNow => {
                info!(
                    self,
                    "{:x} [term {}] received MsgTimeoutNow from {:x} and starts an election to get leadership.",
                    self.id,
                    self.term,
                    m.from
                );
                // Transfers skip pre-vote: there is no partition to recover from.
                self.hup(CampaignType::Transfer);
            }
            MessageType::MsgReadIndex => {
                if self.lead == NONE {
                    info!(
                        self,
                        "{:x} no leader at term {}; dropping index reading msg", self.id, self.term
                    );
                    return Ok(());
                }
                m.to = self.lead;
                self.send(m);
            }
            MessageType::MsgReadIndexResp => {
                if m.entries.len() != 1 {
                    error!(
                        self,
                        "{:x} invalid format of MsgReadIndexResp from {:x}, entries count: {}",
                        self.id,
                        m.from,
                        m.entries.len()
                    );
                    return Ok(());
                }
                let request_ctx = m.entries.swap_remove(0).data;
                self.read_states.push(ReadState {
                    index: m.index,
                    request_ctx,
                });
            }
            _ => {}
        }
        Ok(())
    }

    fn handle_append_entries(&mut self, mut m: Message) {
        if m.index < self.raft_log.committed {
            let mut resp = Message::new(MessageType::MsgAppResp, NONE, m.from);
            resp.index = self.raft_log.committed;
            self.send(resp);
            return;
        }
        if let Some(last_new) = self.raft_log.maybe_append_owned(
            m.index,
            m.log_term,
            m.commit,
            std::mem::take(&mut m.entries),
        ) {
            let mut resp = Message::new(MessageType::MsgAppResp, NONE, m.from);
            resp.index = last_new;
            self.send(resp);
            return;
        }
        debug!(
            self,
            "{:x} [logterm: {}, index: {}] rejected MsgApp [logterm: {}, index: {}] from {:x}",
            self.id,
            self.raft_log.term(m.index).unwrap_or(0),
            m.index,
            m.log_term,
            m.index,
            m.from
        );
        // Hint the leader at the largest (index, term) that may match: skips our uncommitted
        // entries of terms above the leader's.
        let hint_index = m.index.min(self.raft_log.last_index());
        let (hint_index, hint_term) = self.raft_log.find_conflict_by_term(hint_index, m.log_term);
        let mut resp = Message::new(MessageType::MsgAppResp, NONE, m.from);
        resp.index = m.index;
        resp.reject = true;
        resp.reject_hint = hint_index;
        resp.log_term = hint_term;
        self.send(resp);
    }

    fn handle_heartbeat(&mut self, m: Message) {
        self.raft_log.commit_to(m.commit);
        let mut resp = Message::new(MessageType::MsgHeartbeatResp, NONE, m.from);
        resp.context = m.context;
        self.send(resp);
    }

    fn handle_snapshot(&mut self, m: Message) {
        let s = m.snapshot.unwrap_or_default();
        let (sindex, sterm) = (s.metadata.index, s.metadata.term);
        let mut resp = Message::new(MessageType::MsgAppResp, NONE, m.from);
        if self.restore(s) {
            info!(
                self,
                "{:x} [commit: {}] restored snapshot [index: {sindex}, term: {sterm}]",
                self.id,
                self.raft_log.committed
            );
            resp.index = self.raft_log.last_index();
        } else {
            info!(
                self,
                "{:x} [commit: {}] ignored snapshot [index: {sindex}, term: {sterm}]",
                self.id,
                self.raft_log.committed
            );
            resp.index = self.raft_log.committed;
        }
        self.send(resp);
    }

    /// Restores the log and configuration from snapshot `s`; false if it was ignored (stale,
    /// or not for us).
    pub fn restore(&mut self, s: Snapshot) -> bool {
        if s.metadata.index <= self.raft_log.committed {
            return false;
        }
        if self.state != StateRole::Follower {
            // Defense in depth: never happens, since only followers get here.
            warn!(
                self,
                "{:x} attempted to restore snapshot as leader; should never happen", self.id
            );
            self.become_follower(self.term + 1, NONE);
            return false;
        }
        let cs = s.metadata.conf_state.clone();
        let found = cs
            .voters
            .iter()
            .chain(&cs.learners)
            .chain(&cs.voters_outgoing)
            .any(|&id| id == self.id);
        if !found {
            warn!(
                self,
                "{:x} attempted to restore snapshot but it is not in the ConfState {}; should never happen",
                self.id,
                describe_conf_state_go(&cs)
            );
            return false;
        }
        let (index, term) = (s.metadata.index, s.metadata.term);
        if self.raft_log.match_term(index, term) {
            info!(
                self,
                "{:x} [commit: {}, lastindex: {}, lastterm: {}] fast-forwarded commit to snapshot [index: {index}, term: {term}]",
                self.id,
                self.raft_log.committed,
                self.raft_log.last_index(),
                self.raft_log.last_term()
            );
            self.raft_log.commit_to(index);
            return false;
        }
        self.raft_log.restore(s);
        self.trk = ProgressTracker::new(self.trk.max_inflight, self.trk.max_inflight_bytes);
        let last_index = self.raft_log.last_index();
        let (cfg, prs) = match confchange::restore(&self.trk, last_index, &cs) {
            Ok(x) => x,
            Err(e) => fatal!(self, "unable to restore config {cs}: {e}"),
        };
        let restored = self.switch_to_config(cfg, prs);
        self.assert_conf_states_equivalent(&cs, &restored);
        info!(
            self,
            "{:x} [commit: {}, lastindex: {}, lastterm: {}] restored snapshot [index: {index}, term: {term}]",
            self.id,
            self.raft_log.committed,
            self.raft_log.last_index(),
            self.raft_log.last_term()
        );
        true
    }

    /// Whether this node can become leader: it is a voter and not applying a snapshot.
    pub fn promotable(&self) -> bool {
        self.trk
            .progress
            .get(self.id)
            .is_some_and(|pr| !pr.is_learner)
            && !self.raft_log.has_next_or_in_progress_snapshot()
    }

    /// Applies a committed configuration change and returns the new configuration.
    ///
    /// # Panics
    ///
    /// If the change is invalid for the current configuration.
    pub fn apply_conf_change(&mut self, cc: &ConfChangeV2) -> ConfState {
        let changer = Changer::new(&self.trk, self.raft_log.last_index());
        let res = if cc.leave_joint() {
            changer.leave_joint()
        } else if let Some(auto_leave) = cc.enter_joint() {
            changer.enter_joint(auto_leave, &cc.changes)
        } else {
            changer.simple(&cc.changes)
        };
        match res {
            Ok((cfg, prs)) => self.switch_to_config(cfg, prs),
            Err(e) => fatal!(self, "{e}"),
        }
    }

    /// Installs a new configuration and reacts to it (stepping down if removed, committing
    /// and probing as a leader).
    fn switch_to_config(&mut self, cfg: TrackerConfig, prs: ProgressMap) -> ConfState {
        self.trk.apply_config(cfg, prs);
        info!(
            self,
            "{:x} switched to configuration {}", self.id, self.trk.config
        );
        let cs = self.trk.conf_state();
        let pr = self.trk.progress.get(self.id);
        let present = pr.is_some();
        self.is_learner = pr.is_some_and(|pr| pr.is_learner);
        if (!present || self.is_learner) && self.state == StateRole::Leader {
            // Removed or demoted while leading.
            if self.step_down_on_removal {
                self.become_follower(self.term, NONE);
            }
            return cs;
        }
        if self.state != StateRole::Leader || cs.voters.is_empty() {
            return cs;
        }
        if self.maybe_commit() {
            // The new quorum may commit more entries.
            self.bcast_append();
        } else {
            // Probe new members right away.
            let mut id = NONE;
            while let Some(next) = self.next_peer_after(id) {
                id = next;
                self.maybe_send_append(id, false);
            }
        }
        if self.lead_transferee != NONE && !self.trk.config.voters.contains(self.lead_transferee) {
            self.abort_leader_transfer();
        }
        cs
    }

    fn load_state(&mut self, hs: HardState) {
        if hs.commit < self.raft_log.committed || hs.commit > self.raft_log.last_index() {
            fatal!(
                self,
                "{:x} state.commit {} is out of range [{}, {}]",
                self.id,
                hs.commit,
                self.raft_log.committed,
                self.raft_log.last_index()
            );
        }
        self.raft_log.committed = hs.commit;
        self.term = hs.term;
        self.vote = hs.vote;
    }

    fn past_election_timeout(&self) -> bool {
        self.election_elapsed >= self.randomized_election_timeout
    }

    fn reset_randomized_election_timeout(&mut self) {
        self.randomized_election_timeout =
            self.election_timeout + self.rng.below(self.election_timeout);
    }

    fn send_timeout_now(&mut self, to: u64) {
        self.send(Message::new(MessageType::MsgTimeoutNow, NONE, to));
    }

    fn abort_leader_transfer(&mut self) {
        self.lead_transferee = NONE;
    }

    fn committed_entry_in_current_term(&self) -> bool {
        self.raft_log.term(self.raft_log.committed).unwrap_or(0) == self.term
    }

    /// The answer to read request `req` at `read_index`: `None` if the request is our own (the
    /// read state is recorded directly).
    fn response_to_read_index_req(&mut self, req: Message, read_index: u64) -> Option<Message> {
        if req.from == NONE || req.from == self.id {
            let request_ctx = req
                .entries
                .first()
                .map(|e| e.data.clone())
                .unwrap_or_default();
            self.read_states.push(ReadState {
                index: read_index,
                request_ctx,
            });
            return None;
        }
        let mut m = Message::new(MessageType::MsgReadIndexResp, NONE, req.from);
        m.index = read_index;
        m.entries = req.entries;
        Some(m)
    }

    fn increase_uncommitted_size(&mut self, ents: &[Entry]) -> bool {
        let s = payloads_size(ents);
        // An empty tail accepts anything; empty entries are always accepted.
        if self.uncommitted_size > 0
            && s > 0
            && self.uncommitted_size.saturating_add(s) > self.max_uncommitted_size
        {
            return false;
        }
        self.uncommitted_size += s;
        true
    }

    pub(crate) fn reduce_uncommitted_size(&mut self, s: u64) {
        self.uncommitted_size = self.uncommitted_size.saturating_sub(s);
    }

    /// The payload size of the uncommitted tail, as tracked by the leader.
    pub fn uncommitted_size(&self) -> u64 {
        self.uncommitted_size
    }

    fn release_pending_read_index_messages(&mut self) {
        if self.pending_read_index_messages.is_empty() {
            return;
        }
        if !self.committed_entry_in_current_term() {
            error!(
                self,
                "pending MsgReadIndex should be released only after first commit in current term"
            );
            return;
        }
        for m in std::mem::take(&mut self.pending_read_index_messages) {
            self.send_msg_read_index_response(m);
        }
    }

    fn send_msg_read_index_response(&mut self, m: Message) {
        let committed = self.raft_log.committed;
        match self.read_only.option {
            ReadOnlyOption::Safe => {
                self.read_only.add_request(committed, m);
                // The leader acknowledges its own heartbeat round.
                let ctx = self.read_only.heartbeat_ctx();
                self.read_only.recv_ack(self.id, &ctx);
                self.bcast_heartbeat();
            }
            ReadOnlyOption::LeaseBased => {
                if let Some(resp) = self.response_to_read_index_req(m, committed) {
                    self.send(resp);
                }
            }
        }
    }
}

/// Go's `%v` of a `ConfState` pointer (used in a warning).
fn describe_conf_state_go(cs: &ConfState) -> String {
    format!("&{cs}")
}

#[cfg(test)]
mod tests;
