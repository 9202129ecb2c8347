//! The raft loop: one thread owning the [`RawNode`], selecting over the ticker, commands
//! (proposals, read-index requests, leader transfers, snapshot notices) and peer events. Each
//! `Ready` is persisted (snapshot files, WAL, raft storage), its messages sent, its committed
//! entries' configuration changes applied to raft and the entries handed to the apply thread,
//! then raft advances.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};
use raft_core::raftpb::{
    AnyConfChange, ConfChange, ConfState, Entry, MessageType, Snapshot, SnapshotMetadata,
};
use raft_core::storage::MemStorage;
use raft_core::{RaftError, RawNode, SnapshotStatus, StateRole};

use crate::apply::ApplyTask;
use crate::error::NodeError;
use crate::node::Shared;
use crate::pending::Completer;
use crate::request::{Envelope, Request};
use crate::snapshot::{self, DataPaths};
use crate::transport::{PeerEvent, Transport};
use crate::wal::{SnapshotMarker, Wal};

/// Leases the leader revokes or checkpoints per tick at most.
const LEASE_BATCH: usize = 100;

/// What the other threads ask of the raft loop.
pub(crate) enum Command {
    /// Propose a normal entry; `id` is the waiter to fail if it cannot be proposed.
    Propose { data: Vec<u8>, id: u64 },
    /// Propose a configuration change; `id` as for `Propose`.
    ProposeConfChange { cc: ConfChange, id: u64 },
    /// Start a ReadIndex round; the read index (or the failure) goes to `reply`.
    ReadIndex {
        ctx: u64,
        reply: Sender<Result<u64, NodeError>>,
    },
    /// Hand leadership to `target`; `reply` when it leads (or the attempt failed).
    TransferLeader { target: u64, reply: Completer<()> },
    /// Whether learner `id` is close enough to the leader's log to be promoted.
    LearnerReady {
        id: u64,
        reply: Sender<Result<(), NodeError>>,
    },
    /// The apply thread wrote a snapshot at this point: record it and compact the log.
    SnapshotCreated(SnapshotMetadata),
}

pub(crate) struct RaftLoop {
    pub(crate) raw: RawNode<MemStorage>,
    pub(crate) wal: Wal,
    pub(crate) paths: DataPaths,
    pub(crate) shared: Arc<Shared>,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) commands: Receiver<Command>,
    pub(crate) peers: Receiver<PeerEvent>,
    pub(crate) stop: Receiver<()>,
    pub(crate) apply: Sender<ApplyTask>,
    pub(crate) heartbeat: Duration,
    pub(crate) election_ticks: usize,
    pub(crate) catchup_entries: u64,
    /// Snapshot files kept (0: all).
    pub(crate) max_snapshots: usize,
    pub(crate) reads: HashMap<u64, (Instant, Sender<Result<u64, NodeError>>)>,
    pub(crate) transfer: Option<(u64, Instant, Completer<()>)>,
    /// When the oldest unanswered heartbeat went to each peer: its response gives the
    /// round trip (`etcd_network_peer_round_trip_time_seconds`).
    pub(crate) heartbeats_sent: HashMap<u64, Instant>,
}

/// Peer events, and separately commands, taken per loop turn before a Ready is handled.
const MAX_BATCH: usize = 256;
/// Readies handled back to back per loop turn (each may produce the next).
const MAX_READY_ROUNDS: usize = 4;

impl RaftLoop {
    pub(crate) fn run(mut self) {
        // A member that is the only voter needs no one's vote: fast-forward its election clock
        // so it leads within a tick rather than a whole election timeout (etcd's
        // `advanceTicks` for a single-node cluster).
        let r = self.raw.raft();
        if r.trk.is_singleton() && r.trk.voter_nodes() == [self.shared.member_id] {
            for _ in 1..self.election_ticks {
                self.raw.tick();
            }
        }
        let ticker = crossbeam_channel::tick(self.heartbeat);
        loop {
            select! {
                recv(ticker) -> _ => self.on_tick(),
                recv(self.commands) -> cmd => match cmd {
                    Ok(cmd) => self.on_command(cmd),
                    Err(_) => break,
                },
                recv(self.peers) -> ev => match ev {
                    Ok(ev) => self.on_peer_event(ev),
                    Err(_) => break,
                },
                recv(self.stop) -> _ => break,
            }
            // Batch whatever else arrived before handling the Ready: one fsync then covers
            // every proposal and message taken here.
            for _ in 0..MAX_BATCH {
                match self.peers.try_recv() {
                    Ok(ev) => self.on_peer_event(ev),
                    Err(_) => break,
                }
            }
            for _ in 0..MAX_BATCH {
                match self.commands.try_recv() {
                    Ok(cmd) => self.on_command(cmd),
                    Err(_) => break,
                }
            }
            // Handling a Ready can make the next one at once (a lone voter commits what it
            // just persisted): handle those now rather than on the next tick.
            let mut failed = None;
            for _ in 0..MAX_READY_ROUNDS {
                if !self.raw.has_ready() {
                    break;
                }
                if let Err(e) = self.on_ready() {
                    failed = Some(e);
                    break;
                }
            }
            if let Some(e) = failed {
                self.shared
                    .fail("persisting raft state failed; the raft loop stopped", &e);
                break;
            }
            if self.shared.has_failed() {
                break;
            }
        }
        self.fail_all(NodeError::Stopped);
        tracing::debug!(member = self.shared.member_id, "raft loop stopped");
    }

    fn fail_all(&mut self, err: NodeError) {
        for (_, (_, reply)) in self.reads.drain() {
            let _ = reply.send(Err(err.clone()));
        }
        if let Some((_, _, reply)) = self.transfer.take() {
            let _ = reply.send(Err(err));
        }
    }

    fn on_tick(&mut self) {
        self.raw.tick();
        let now = Instant::now();
        let timeout = self.shared.tuning.request_timeout;
        self.reads.retain(|_, (at, reply)| {
            let keep = now.duration_since(*at) < timeout;
            if !keep {
                let _ = reply.send(Err(NodeError::Timeout));
            }
            keep
        });
        if let Some((target, at, _)) = &self.transfer {
            let lead = self.raw.raft().lead;
            let done = lead == *target;
            if (done || now.duration_since(*at) >= timeout)
                && let Some((_, _, reply)) = self.transfer.take()
            {
                let _ = reply.send(if done {
                    Ok(())
                } else {
                    Err(NodeError::Timeout)
                });
            }
        }
        self.shared.expire_waiters(now);
        if self.raw.raft().state == StateRole::Leader {
            self.lease_duties(now);
        }
    }

    /// The primary lessor's periodic work: propose revokes of expired leases and checkpoints.
    fn lease_duties(&mut self, now: Instant) {
        let (expired, checkpoints) = {
            let mut lessor = self.shared.lessor.lock();
            (
                lessor.expired_leases(now, LEASE_BATCH),
                lessor.checkpoint_due(now, LEASE_BATCH),
            )
        };
        for id in expired {
            self.propose_internal(Request::LeaseRevoke { id });
        }
        if !checkpoints.is_empty() {
            self.propose_internal(Request::LeaseCheckpoint { checkpoints });
        }
    }

    fn propose_internal(&mut self, request: Request) {
        let data = Envelope { id: 0, request }.encode();
        if let Err(e) = self.raw.propose(data) {
            tracing::debug!(error = %e, "internal proposal dropped");
        }
    }

    fn drop_error(&self) -> NodeError {
        if self.raw.raft().lead == raft_core::NONE {
            NodeError::NoLeader
        } else {
            NodeError::ProposalDropped
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Propose { data, id } => {
                if let Err(e) = self.raw.propose(data) {
                    let err = self.proposal_error(e);
                    self.shared.fail_waiter(id, err);
                }
            }
            Command::ProposeConfChange { cc, id } => {
                if let Err(e) = self.raw.propose_conf_change(cc) {
                    let err = self.proposal_error(e);
                    self.shared.fail_waiter(id, err);
                }
            }
            Command::ReadIndex { ctx, reply } => {
                if self.raw.raft().lead == raft_core::NONE {
                    let _ = reply.send(Err(NodeError::NoLeader));
                    return;
                }
                self.reads.insert(ctx, (Instant::now(), reply));
                self.raw.read_index(ctx.to_be_bytes().to_vec());
            }
            Command::TransferLeader { target, reply } => {
                if self.raw.raft().state != StateRole::Leader {
                    let _ = reply.send(Err(NodeError::NotLeader {
                        leader_id: self.raw.raft().lead,
                    }));
                    return;
                }
                if self.raw.raft().lead == target {
                    let _ = reply.send(Ok(()));
                    return;
                }
                let voters = self.raw.status().config.voters.ids();
                if !voters.contains(&target) {
                    let _ = reply.send(Err(NodeError::BadLeaderTransferee));
                    return;
                }
                self.raw.transfer_leader(target);
                if let Some((_, _, old)) = self.transfer.replace((target, Instant::now(), reply)) {
                    let _ = old.send(Err(NodeError::Timeout));
                }
            }
            Command::LearnerReady { id, reply } => {
                let _ = reply.send(self.learner_ready(id));
            }
            Command::SnapshotCreated(meta) => {
                if let Err(e) = self.compact_log(meta) {
                    self.shared
                        .fail("recording a snapshot in the WAL failed", &e);
                }
            }
        }
    }

    fn proposal_error(&self, e: RaftError) -> NodeError {
        match e {
            RaftError::ProposalDropped => self.drop_error(),
            other => NodeError::Internal(other.to_string()),
        }
    }

    /// etcd's `isLearnerReady`: the learner's match index is at least 90% of the leader's.
    fn learner_ready(&self, id: u64) -> Result<(), NodeError> {
        if self.raw.raft().state != StateRole::Leader {
            return Err(NodeError::NotLeader {
                leader_id: self.raw.raft().lead,
            });
        }
        let status = self.raw.status();
        let leader_match = status
            .progress
            .get(&self.shared.member_id)
            .map_or(0, |p| p.matched);
        match status.progress.get(&id) {
            None => Err(NodeError::MemberNotFound),
            Some(p) if !p.is_learner => Err(NodeError::NotLearner),
            Some(p) if (p.matched as f64) < (leader_match as f64) * 0.9 => {
                Err(NodeError::LearnerNotReady)
            }
            Some(_) => Ok(()),
        }
    }

    fn on_peer_event(&mut self, ev: PeerEvent) {
        match ev {
            PeerEvent::Message(m) => {
                if m.to != self.shared.member_id {
                    return;
                }
                if m.msg_type == MessageType::MsgHeartbeatResp
                    && let Some(sent) = self.heartbeats_sent.remove(&m.from)
                {
                    self.shared.metrics.round_trip(m.from, sent.elapsed());
                }
                if let Err(e) = self.raw.step(m) {
                    tracing::trace!(error = %e, "peer message not stepped");
                }
            }
            PeerEvent::Unreachable(id) => self.raw.report_unreachable(id),
            PeerEvent::Removed => {
                if !self.shared.removed.swap(true, Ordering::AcqRel) {
                    tracing::error!("this member was removed from the cluster");
                }
            }
            PeerEvent::SnapshotStatus { to, failed } => {
                let status = if failed {
                    SnapshotStatus::Failure
                } else {
                    SnapshotStatus::Finish
                };
                self.raw.report_snapshot(to, status);
            }
        }
    }

    fn on_ready(&mut self) -> Result<(), crate::error::StartError> {
        let mut rd = self.raw.ready();
        if let Some(ss) = rd.soft_state {
            self.on_soft_state(ss.lead, ss.raft_state);
        }
        // A leader sends before it persists, so its fsync overlaps the followers' (the raft
        // thesis, 10.2.1; etcd does the same): it counts its own entries toward a commit only
        // once they are persisted (its self-acknowledgement waits for `advance`). Not when the
        // term or vote changes in this Ready: nothing may leave before those are durable.
        let stored = *self.raw.store().hard_state();
        let send_early = self.shared.is_leader()
            && rd.snapshot.is_empty()
            && (rd.hard_state.is_empty()
                || (rd.hard_state.term == stored.term && rd.hard_state.vote == stored.vote));
        if send_early {
            self.send_messages(std::mem::take(&mut rd.messages));
        }
        if !rd.snapshot.is_empty() {
            self.persist_snapshot(std::mem::take(&mut rd.snapshot))?;
        }
        if !rd.entries.is_empty() || !rd.hard_state.is_empty() {
            self.wal.save(&rd.hard_state, &rd.entries)?;
        }
        self.raw.store_mut().append(&rd.entries);
        if !rd.hard_state.is_empty() {
            self.raw.store_mut().set_hard_state(rd.hard_state);
        }
        self.send_messages(std::mem::take(&mut rd.messages));
        for rs in rd.read_states.drain(..) {
            let Ok(ctx) = <[u8; 8]>::try_from(rs.request_ctx.as_slice()) else {
                continue;
            };
            if let Some((_, reply)) = self.reads.remove(&u64::from_be_bytes(ctx)) {
                let _ = reply.send(Ok(rs.index));
            }
        }
        if !rd.committed_entries.is_empty() {
            let entries = std::mem::take(&mut rd.committed_entries);
            let conf_states = self.apply_conf_changes(&entries);
            if self
                .apply
                .send(ApplyTask::Entries {
                    entries,
                    conf_states,
                })
                .is_err()
            {
                tracing::debug!("apply thread gone");
            }
        }
        self.raw.advance();
        self.publish_status();
        Ok(())
    }

    fn send_messages(&mut self, mut msgs: Vec<raft_core::raftpb::Message>) {
        if msgs.is_empty() {
            return;
        }
        let now = Instant::now();
        for m in msgs
            .iter()
            .filter(|m| m.msg_type == MessageType::MsgHeartbeat)
        {
            // The first heartbeat not yet answered is the one timed.
            self.heartbeats_sent.entry(m.to).or_insert(now);
        }
        if !self.transport.streams_snapshot_files() {
            let mut unsent = Vec::new();
            msgs.retain_mut(|m| {
                let ok = m.msg_type != MessageType::MsgSnap || self.fill_snapshot(m);
                if !ok {
                    unsent.push(m.to);
                }
                ok
            });
            for to in unsent {
                self.raw.report_snapshot(to, SnapshotStatus::Failure);
            }
        }
        self.transport.send(msgs);
    }

    fn on_soft_state(&mut self, lead: u64, role: StateRole) {
        let was_leader = self.shared.is_leader.load(Ordering::Acquire);
        let is_leader = role == StateRole::Leader;
        let metrics = &self.shared.metrics;
        let previous = self.shared.lead.swap(lead, Ordering::AcqRel);
        if lead != previous && lead != raft_core::NONE {
            metrics.leader_changes.inc();
        }
        metrics.has_leader.set(i64::from(lead != raft_core::NONE));
        metrics.is_leader.set(i64::from(is_leader));
        self.shared.is_leader.store(is_leader, Ordering::Release);
        if is_leader && !was_leader {
            tracing::info!(member = self.shared.member_id, "became leader");
            let extend = self.heartbeat * u32::try_from(self.election_ticks).unwrap_or(10);
            self.shared.lessor.lock().promote(extend, Instant::now());
        } else if !is_leader && was_leader {
            tracing::info!(member = self.shared.member_id, lead, "lost leadership");
            self.shared.lessor.lock().demote();
        }
    }

    /// Applies the committed configuration changes to raft, returning the configuration after
    /// each (by entry index) for the apply thread's snapshots.
    fn apply_conf_changes(&mut self, entries: &[Entry]) -> Vec<(u64, ConfState)> {
        let mut out = Vec::new();
        for e in entries {
            match AnyConfChange::from_entry(e.entry_type, &e.data) {
                None => {}
                Some(Ok(cc)) => {
                    let cs = self.raw.apply_conf_change(cc);
                    out.push((e.index, cs));
                }
                Some(Err(err)) => {
                    panic!(
                        "invariant violated: committed conf change at {} undecodable: {err}",
                        e.index
                    )
                }
            }
        }
        out
    }

    /// A received snapshot: its backend file and metadata, the WAL marker, raft storage; then
    /// the apply thread installs it.
    fn persist_snapshot(&mut self, mut snap: Snapshot) -> Result<(), crate::error::StartError> {
        let meta = snap.metadata.clone();
        let data = std::mem::take(&mut snap.data);
        if !data.is_empty() {
            snapshot::save_db(&self.paths, meta.term, meta.index, data.as_slice())
                .map_err(crate::error::StartError::io("saving a received snapshot"))?;
        }
        // A transport that streams snapshot files wrote the data there already; the bootstrap
        // snapshot has none.
        let has_data = !data.is_empty() || self.paths.db_file(meta.term, meta.index).exists();
        snapshot::save_meta(&self.paths, &meta)
            .map_err(crate::error::StartError::io("saving snapshot metadata"))?;
        self.wal.save_snapshot(SnapshotMarker {
            index: meta.index,
            term: meta.term,
        })?;
        if let Err(e) = self.raw.store_mut().apply_snapshot(snap) {
            tracing::warn!(error = %e, "raft storage refused the snapshot");
        }
        let _ = self.apply.send(ApplyTask::Snapshot { meta, has_data });
        Ok(())
    }

    /// Puts the backend snapshot file into an outgoing `MsgSnap`; false if it cannot be read
    /// (then the message must not leave: without its data it would wipe the receiver).
    fn fill_snapshot(&self, m: &mut raft_core::raftpb::Message) -> bool {
        let Some(snap) = m.snapshot.as_mut() else {
            return true;
        };
        let read = snapshot::open_db(&self.paths, snap.metadata.term, snap.metadata.index)
            .and_then(|file| {
                let mut data = Vec::new();
                if let Some(mut file) = file {
                    std::io::Read::read_to_end(&mut file, &mut data)?;
                }
                Ok(data)
            });
        match read {
            // The bootstrap snapshot has no backend file: the state machine was empty.
            Ok(data) => {
                snap.data = data;
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "reading snapshot; not sending it");
                false
            }
        }
    }

    /// The apply thread wrote a snapshot: record it, compact raft storage keeping the
    /// catch-up entries, release WAL segments.
    fn compact_log(&mut self, meta: SnapshotMetadata) -> Result<(), crate::error::StartError> {
        let store = self.raw.store_mut();
        if let Err(e) = store.create_snapshot(meta.index, Some(meta.conf_state.clone()), Vec::new())
        {
            tracing::debug!(error = %e, index = meta.index, "snapshot not newer; ignored");
            return Ok(());
        }
        self.wal.save_snapshot(SnapshotMarker {
            index: meta.index,
            term: meta.term,
        })?;
        let compact_to = meta.index.saturating_sub(self.catchup_entries);
        if compact_to > 1
            && let Err(e) = self.raw.store_mut().compact(compact_to)
        {
            tracing::debug!(error = %e, "raft log compaction skipped");
        }
        self.wal.release_to(meta.index)?;
        snapshot::purge(&self.paths, self.max_snapshots);
        tracing::info!(index = meta.index, term = meta.term, "snapshot recorded");
        Ok(())
    }

    fn publish_status(&self) {
        let r = self.raw.raft();
        self.shared.term.store(r.term, Ordering::Release);
        self.shared
            .commit
            .store(r.raft_log.committed, Ordering::Release);
        self.shared
            .last_index
            .store(r.raft_log.last_index(), Ordering::Release);
        self.shared
            .is_learner
            .store(r.is_learner(), Ordering::Release);
    }
}
