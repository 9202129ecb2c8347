//! [`RawNode`]: the application's handle on a Raft state machine, through [`Ready`] batches.

use crate::config::Config;
use crate::logger::{SharedLogger, default_logger};
use crate::raft::{
    LOCAL_APPEND_THREAD, LOCAL_APPLY_THREAD, NONE, Raft, RaftError, SoftState, conf_change_to_msg,
    ents_size, is_local_msg_target, payloads_size,
};
use crate::raftpb::{
    AnyConfChange, ConfState, Entry, EntryType, HardState, Message, MessageType, Snapshot,
};
use crate::read_only::ReadState;
use crate::status::{BasicStatus, Status};
use crate::storage::Storage;

/// The outcome of sending a snapshot, reported with [`RawNode::report_snapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotStatus {
    /// The follower received the snapshot.
    Finish,
    /// Sending failed.
    Failure,
}

/// The work the application must do: persist, send, apply. Hand it back with
/// [`RawNode::advance`] (unless storage writes are asynchronous).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// The new soft state, if it changed.
    pub soft_state: Option<SoftState>,
    /// The hard state to persist (empty if unchanged).
    pub hard_state: HardState,
    /// Reads that can be served once applied up to their index.
    pub read_states: Vec<ReadState>,
    /// Entries to persist before sending `messages`.
    pub entries: Vec<Entry>,
    /// The snapshot to persist (empty if none).
    pub snapshot: Snapshot,
    /// Committed entries to apply.
    pub committed_entries: Vec<Entry>,
    /// Messages to send once the entries and hard state are persisted (with asynchronous
    /// storage writes: right away, including those to the local storage threads).
    pub messages: Vec<Message>,
    /// Whether the hard state and entries must be written synchronously.
    pub must_sync: bool,
}

/// Whether persisting this state change needs a synchronous write: new entries, or a new term
/// or vote (a commit index change alone does not).
pub fn must_sync(st: &HardState, prev: &HardState, entries: usize) -> bool {
    entries != 0 || st.vote != prev.vote || st.term != prev.term
}

/// A Raft node without threads: the application calls [`tick`](Self::tick) and
/// [`step`](Self::step), then handles [`ready`](Self::ready) batches.
pub struct RawNode<S: Storage> {
    raft: Raft<S>,
    async_storage_writes: bool,
    prev_soft_state: SoftState,
    prev_hard_state: HardState,
    steps_on_advance: Vec<Message>,
    /// What the `MsgStorageApplyResp` that etcd steps last on advance would carry (with
    /// synchronous storage writes): the last index, encoded size and payload size of the
    /// committed entries handed out. Kept as figures instead of a copy of the entries.
    applied_on_advance: Option<(u64, u64, u64)>,
}

impl<S: Storage> RawNode<S> {
    /// A node configured by `config` over `storage`, logging through `tracing`.
    pub fn new(config: &Config, storage: S) -> Result<Self, RaftError> {
        Self::with_logger(config, storage, default_logger())
    }

    /// A node configured by `config` over `storage`, logging to `logger`.
    pub fn with_logger(
        config: &Config,
        storage: S,
        logger: SharedLogger,
    ) -> Result<Self, RaftError> {
        let raft = Raft::new(config, storage, logger)?;
        let prev_soft_state = raft.soft_state();
        let prev_hard_state = raft.hard_state();
        Ok(RawNode {
            raft,
            async_storage_writes: config.async_storage_writes,
            prev_soft_state,
            prev_hard_state,
            steps_on_advance: Vec::new(),
            applied_on_advance: None,
        })
    }

    /// The state machine.
    pub fn raft(&self) -> &Raft<S> {
        &self.raft
    }

    /// The state machine, mutably (for tests and tools).
    pub fn raft_mut(&mut self) -> &mut Raft<S> {
        &mut self.raft
    }

    /// The storage.
    pub fn store(&self) -> &S {
        &self.raft.raft_log.storage
    }

    /// The storage, mutably: the application persists entries, hard state and snapshots here.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.raft.raft_log.storage
    }

    /// Advances the logical clock by one tick.
    pub fn tick(&mut self) {
        self.raft.tick();
    }

    /// Starts an election.
    pub fn campaign(&mut self) -> Result<(), RaftError> {
        self.raft
            .step(Message::new(MessageType::MsgHup, NONE, NONE))
    }

    /// Proposes `data` to be appended to the log.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<(), RaftError> {
        let mut m = Message::new(MessageType::MsgProp, self.raft.id, NONE);
        m.entries = vec![Entry::new(0, 0, EntryType::Normal, data)];
        self.raft.step(m)
    }

    /// Proposes a configuration change.
    pub fn propose_conf_change(&mut self, cc: impl Into<AnyConfChange>) -> Result<(), RaftError> {
        let cc = cc.into();
        self.raft.step(conf_change_to_msg(Some(&cc)))
    }

    /// Applies a committed configuration change (the application must call this for every
    /// configuration change it applies) and returns the new configuration.
    pub fn apply_conf_change(&mut self, cc: impl Into<AnyConfChange>) -> ConfState {
        self.raft.apply_conf_change(&cc.into().as_v2())
    }

    /// Handles a message from the network (or, with asynchronous storage writes, from the
    /// local storage threads).
    pub fn step(&mut self, m: Message) -> Result<(), RaftError> {
        if m.msg_type.is_local() && !is_local_msg_target(m.from) {
            return Err(RaftError::StepLocalMsg);
        }
        if m.msg_type.is_response()
            && !is_local_msg_target(m.from)
            && !self.raft.trk.progress.contains(m.from)
        {
            return Err(RaftError::StepPeerNotFound);
        }
        self.raft.step(m)
    }

    /// The outstanding work, which the application must handle (and, with synchronous storage
    /// writes, hand back with [`advance`](Self::advance)).
    pub fn ready(&mut self) -> Ready {
        // The pending messages are moved into the Ready rather than copied: accepting it
        // would clear them anyway.
        let msgs = std::mem::take(&mut self.raft.msgs);
        let rd = self.ready_without_accept(msgs);
        self.accept_ready(&rd);
        rd
    }

    fn apply_unstable_entries(&self) -> bool {
        !self.async_storage_writes
    }

    /// The Ready for the current state, whose `messages` start with `msgs` (the pending
    /// messages, taken out of the state machine).
    fn ready_without_accept(&self, msgs: Vec<Message>) -> Ready {
        let r = &self.raft;
        let mut rd = Ready {
            entries: r.raft_log.next_unstable_ents().to_vec(),
            committed_entries: r
                .raft_log
                .next_committed_ents(self.apply_unstable_entries()),
            messages: msgs,
            ..Ready::default()
        };
        let ss = r.soft_state();
        if ss != self.prev_soft_state {
            rd.soft_state = Some(ss);
        }
        let hs = r.hard_state();
        if hs != self.prev_hard_state {
            rd.hard_state = hs;
        }
        if let Some(snap) = r.raft_log.next_unstable_snapshot() {
            rd.snapshot = snap.clone();
        }
        rd.read_states = r.read_states.clone();
        rd.must_sync = must_sync(&hs, &self.prev_hard_state, rd.entries.len());

        if self.async_storage_writes {
            if self.need_storage_append_msg(&rd) {
                let m = self.new_storage_append_msg(&rd);
                rd.messages.push(m);
            }
            if !rd.committed_entries.is_empty() {
                let m = self.new_storage_apply_msg(&rd);
                rd.messages.push(m);
            }
        } else {
            // Messages go out only after the Ready is persisted, so the ones that must wait
            // for persistence can go with them (except those to ourselves).
            rd.messages
                .extend(r.msgs_after_append.iter().filter(|m| m.to != r.id).cloned());
        }
        rd
    }

    fn need_storage_append_msg(&self, rd: &Ready) -> bool {
        !rd.entries.is_empty()
            || !rd.hard_state.is_empty()
            || !rd.snapshot.is_empty()
            || !self.raft.msgs_after_append.is_empty()
    }

    fn need_storage_append_resp_msg(&self, rd: &Ready) -> bool {
        self.raft.raft_log.has_next_or_in_progress_unstable_ents() || !rd.snapshot.is_empty()
    }

    fn new_storage_append_msg(&self, rd: &Ready) -> Message {
        let r = &self.raft;
        let mut m = Message::new(MessageType::MsgStorageAppend, r.id, LOCAL_APPEND_THREAD);
        m.entries = rd.entries.clone();
        if !rd.hard_state.is_empty() {
            m.term = rd.hard_state.term;
            m.vote = rd.hard_state.vote;
            m.commit = rd.hard_state.commit;
        }
        if !rd.snapshot.is_empty() {
            m.snapshot = Some(rd.snapshot.clone());
        }
        // The self-directed acks go first, so that the leader handles its own append ack
        // before the entries leave the unstable log.
        m.responses = r.msgs_after_append.clone();
        if self.need_storage_append_resp_msg(rd) {
            m.responses.push(self.new_storage_append_resp_msg(rd));
        }
        m
    }

    /// The acknowledgement of everything persisted so far. It carries the current term and
    /// last entry, so that it is ignored if the unstable log was overwritten in a later term
    /// meanwhile.
    fn new_storage_append_resp_msg(&self, rd: &Ready) -> Message {
        let r = &self.raft;
        let mut m = Message::new(MessageType::MsgStorageAppendResp, LOCAL_APPEND_THREAD, r.id);
        m.term = r.term;
        if r.raft_log.has_next_or_in_progress_unstable_ents() {
            m.index = r.raft_log.last_index();
            m.log_term = r.raft_log.last_term();
        }
        if !rd.snapshot.is_empty() {
            m.snapshot = Some(rd.snapshot.clone());
        }
        m
    }

    fn new_storage_apply_msg(&self, rd: &Ready) -> Message {
        let r = &self.raft;
        let mut m = Message::new(MessageType::MsgStorageApply, r.id, LOCAL_APPLY_THREAD);
        m.entries = rd.committed_entries.clone();
        m.responses = vec![self.new_storage_apply_resp_msg(rd.committed_entries.clone())];
        m
    }

    fn new_storage_apply_resp_msg(&self, entries: Vec<Entry>) -> Message {
        let mut m = Message::new(
            MessageType::MsgStorageApplyResp,
            LOCAL_APPLY_THREAD,
            self.raft.id,
        );
        m.entries = entries;
        m
    }

    fn accept_ready(&mut self, rd: &Ready) {
        if let Some(ss) = rd.soft_state {
            self.prev_soft_state = ss;
        }
        if !rd.hard_state.is_empty() {
            self.prev_hard_state = rd.hard_state;
        }
        if !rd.read_states.is_empty() {
            self.raft.read_states.clear();
        }
        if !self.async_storage_writes {
            if !self.steps_on_advance.is_empty() || self.applied_on_advance.is_some() {
                self.raft.logger().fatal(format_args!(
                    "two accepted Ready structs without call to Advance"
                ));
            }
            let id = self.raft.id;
            self.steps_on_advance.extend(
                self.raft
                    .msgs_after_append
                    .iter()
                    .filter(|m| m.to == id)
                    .cloned(),
            );
            if self.need_storage_append_resp_msg(rd) {
                let m = self.new_storage_append_resp_msg(rd);
                self.steps_on_advance.push(m);
            }
        }
        self.raft.msgs.clear();
        self.raft.msgs_after_append.clear();
        self.raft.raft_log.accept_unstable();
        if let Some(last) = rd.committed_entries.last() {
            let size = ents_size(&rd.committed_entries);
            if !self.async_storage_writes {
                // Stepping the apply acknowledgement on advance amounts to these figures.
                self.applied_on_advance =
                    Some((last.index, size, payloads_size(&rd.committed_entries)));
            }
            let allow_unstable = self.apply_unstable_entries();
            self.raft
                .raft_log
                .accept_applying(last.index, size, allow_unstable);
        }
    }

    /// Whether there is a [`Ready`] to handle.
    pub fn has_ready(&self) -> bool {
        let r = &self.raft;
        if r.soft_state() != self.prev_soft_state {
            return true;
        }
        let hs = r.hard_state();
        if !hs.is_empty() && hs != self.prev_hard_state {
            return true;
        }
        r.raft_log.has_next_unstable_snapshot()
            || !r.msgs.is_empty()
            || !r.msgs_after_append.is_empty()
            || r.raft_log.has_next_unstable_ents()
            || r.raft_log
                .has_next_committed_ents(self.apply_unstable_entries())
            || !r.read_states.is_empty()
    }

    /// The last [`Ready`] was persisted and applied.
    ///
    /// # Panics
    ///
    /// With asynchronous storage writes, where the storage threads' responses take its place.
    pub fn advance(&mut self) {
        if self.async_storage_writes {
            self.raft.logger().fatal(format_args!(
                "Advance must not be called when using AsyncStorageWrites"
            ));
        }
        // Drained in place, so that the buffer keeps its capacity for the next Ready.
        let mut steps = std::mem::take(&mut self.steps_on_advance);
        for m in steps.drain(..) {
            let _ = self.raft.step(m);
        }
        self.steps_on_advance = steps;
        // Last, as etcd steps the MsgStorageApplyResp last: what stepping it would do.
        if let Some((index, size, payload)) = self.applied_on_advance.take() {
            self.raft.applied_to(index, size);
            self.raft.reduce_uncommitted_size(payload);
        }
    }

    /// The full status (with every member's progress, on the leader).
    pub fn status(&self) -> Status {
        Status::of(&self.raft)
    }

    /// The basic status.
    pub fn basic_status(&self) -> BasicStatus {
        BasicStatus::of(&self.raft)
    }

    /// The last message to `id` was not delivered.
    pub fn report_unreachable(&mut self, id: u64) {
        let _ = self
            .raft
            .step(Message::new(MessageType::MsgUnreachable, id, NONE));
    }

    /// The outcome of sending a snapshot to `id`.
    pub fn report_snapshot(&mut self, id: u64, status: SnapshotStatus) {
        let mut m = Message::new(MessageType::MsgSnapStatus, id, NONE);
        m.reject = status == SnapshotStatus::Failure;
        let _ = self.raft.step(m);
    }

    /// Asks the leader to hand leadership to `transferee`.
    pub fn transfer_leader(&mut self, transferee: u64) {
        let _ = self.raft.step(Message::new(
            MessageType::MsgTransferLeader,
            transferee,
            NONE,
        ));
    }

    /// Forgets the current leader (followers only), e.g. when it is known to be gone.
    pub fn forget_leader(&mut self) -> Result<(), RaftError> {
        self.raft
            .step(Message::new(MessageType::MsgForgetLeader, NONE, NONE))
    }

    /// Requests a linearizable read; the [`ReadState`] carrying `rctx` comes in a later
    /// [`Ready`].
    pub fn read_index(&mut self, rctx: Vec<u8>) {
        let mut m = Message::new(MessageType::MsgReadIndex, NONE, NONE);
        m.entries = vec![Entry::new(0, 0, EntryType::Normal, rctx)];
        let _ = self.raft.step(m);
    }

    /// Sets the randomized election timeout until the next reset (a test hook).
    pub fn set_randomized_election_timeout(&mut self, timeout: usize) {
        self.raft.set_randomized_election_timeout(timeout);
    }
}
