//! A 3-node in-memory cluster driven as an application would drive it: no I/O, no threads.
//!
//! Shared by the `raft` (criterion) and `alloc_count` benchmarks. The same workload is
//! implemented on tikv/raft-rs in `benches/raft-rs-compare/benches/raft.rs` (at the repository
//! root); keep the two in step so that their figures stay comparable.
//!
//! One *round* of the workload: propose `k` entries on the leader (one `propose` call each),
//! then [`settle`](Cluster::settle) the cluster: handle every node's `Ready` (persist entries and
//! hard state to its `MemStorage`, queue its messages, "apply" its committed entries, `advance`)
//! and deliver the queued messages, until no node has anything to do. At that point every node
//! has committed and applied the `k` entries.

use raft_core::raftpb::Message;
use raft_core::storage::{MemStorage, Storage};
use raft_core::{Config, RawNode};

/// The node ids; node 1 is elected leader.
pub const PEERS: [u64; 3] = [1, 2, 3];

/// The log is compacted (at a quiescent point) once it holds more entries than this, so that
/// long runs measure a steady state instead of a growing log.
const COMPACT_ABOVE: u64 = 4096;

/// Where time or allocations can be attributed: the driver reports the step it is about to take
/// and the one it just finished. The unit type ignores everything (and compiles away).
pub trait Probe {
    /// A step starts.
    fn enter(&mut self) {}
    /// The step started last finished; `node` is the index in [`PEERS`], `what` names the step.
    fn exit(&mut self, _node: usize, _what: &'static str) {}
}

impl Probe for () {}

/// The configuration shared by both implementations: no ticks happen during the benchmarks, so
/// only the flow-control limits matter.
pub fn config(id: u64) -> Config {
    Config {
        election_tick: 10,
        heartbeat_tick: 1,
        max_size_per_msg: 1024 * 1024,
        max_inflight_msgs: 256,
        ..Config::new(id)
    }
}

/// Three nodes and the messages in flight between them.
pub struct Cluster {
    /// `nodes[i]` has id `PEERS[i]`.
    pub nodes: Vec<RawNode<MemStorage>>,
    /// Messages sent and not yet delivered.
    outbox: Vec<Message>,
    /// The batch being delivered (kept to reuse its buffer).
    delivering: Vec<Message>,
    /// The last index each node applied.
    pub applied: [u64; 3],
    /// What the "application" did with the entries: their total payload size.
    pub applied_bytes: u64,
    /// Messages delivered so far (to check that both implementations do the same work).
    pub delivered: u64,
    /// `Ready`s handled so far.
    pub readies: u64,
}

impl Cluster {
    /// A fresh cluster with node 1 elected and its empty entry applied everywhere.
    pub fn new() -> Self {
        let nodes = PEERS
            .iter()
            .map(|&id| {
                let mut storage = MemStorage::new();
                let mut snap = raft_core::raftpb::Snapshot::default();
                snap.metadata.conf_state.voters = PEERS.to_vec();
                storage.apply_snapshot(snap).expect("bootstrap snapshot");
                RawNode::new(&config(id), storage).expect("valid config")
            })
            .collect();
        let mut c = Cluster {
            nodes,
            outbox: Vec::new(),
            delivering: Vec::new(),
            applied: [0; 3],
            applied_bytes: 0,
            delivered: 0,
            readies: 0,
        };
        c.nodes[0].campaign().expect("campaign");
        c.settle(&mut ());
        assert_eq!(c.nodes[0].raft().lead, PEERS[0], "node 1 is the leader");
        assert_eq!(c.applied, [1; 3], "the leader's empty entry is applied");
        c
    }

    /// Proposes `k` entries carrying `payload` on the leader.
    pub fn propose(&mut self, k: usize, payload: &[u8]) {
        for _ in 0..k {
            self.nodes[0]
                .propose(payload.to_vec())
                .expect("the leader accepts proposals");
        }
    }

    /// Handles node `i`'s `Ready` if it has one, as the application would; returns whether it had
    /// one.
    pub fn handle_ready(&mut self, i: usize, probe: &mut impl Probe) -> bool {
        let node = &mut self.nodes[i];
        if !node.has_ready() {
            return false;
        }
        self.readies += 1;
        probe.enter();
        let mut rd = node.ready();
        probe.exit(i, "ready");

        probe.enter();
        let storage = node.store_mut();
        if !rd.snapshot.is_empty() {
            storage
                .apply_snapshot(rd.snapshot.clone())
                .expect("snapshot");
        }
        storage.append(&rd.entries);
        if !rd.hard_state.is_empty() {
            storage.set_hard_state(rd.hard_state);
        }
        probe.exit(i, "persist");

        probe.enter();
        self.outbox.append(&mut rd.messages);
        if let Some(last) = rd.committed_entries.last() {
            self.applied[i] = last.index;
            self.applied_bytes += rd
                .committed_entries
                .iter()
                .map(|e| e.data.len() as u64)
                .sum::<u64>();
        }
        probe.exit(i, "send+apply");

        probe.enter();
        drop(rd);
        probe.exit(i, "drop Ready");

        probe.enter();
        node.advance();
        probe.exit(i, "advance");
        true
    }

    /// Delivers the messages in flight; returns whether there were any.
    fn deliver(&mut self, probe: &mut impl Probe) -> bool {
        std::mem::swap(&mut self.outbox, &mut self.delivering);
        let any = !self.delivering.is_empty();
        self.delivered += self.delivering.len() as u64;
        let mut batch = std::mem::take(&mut self.delivering);
        for m in batch.drain(..) {
            let i = (m.to - 1) as usize;
            let what = match m.msg_type {
                raft_core::raftpb::MessageType::MsgApp => "step MsgApp",
                raft_core::raftpb::MessageType::MsgAppResp => "step MsgAppResp",
                _ => "step (other)",
            };
            probe.enter();
            // A refused message (e.g. from a stale term) is simply dropped, as a network would.
            let _ = self.nodes[i].step(m);
            probe.exit(i, what);
        }
        self.delivering = batch;
        any
    }

    /// Runs the cluster until no node has a `Ready` and no message is in flight, then compacts
    /// the logs if they grew long.
    pub fn settle(&mut self, probe: &mut impl Probe) {
        loop {
            let mut busy = false;
            for i in 0..self.nodes.len() {
                while self.handle_ready(i, probe) {
                    busy = true;
                }
            }
            busy |= self.deliver(probe);
            if !busy {
                break;
            }
        }
        self.maybe_compact(probe);
    }

    /// Compacts every log up to what every node applied, once it holds more than
    /// `COMPACT_ABOVE` entries (only at a quiescent point: no follower needs the entries).
    fn maybe_compact(&mut self, probe: &mut impl Probe) {
        let applied = self.applied.iter().copied().min().unwrap_or(0);
        for (i, node) in self.nodes.iter_mut().enumerate() {
            let first = node.store().first_index().expect("first index");
            if applied >= first + COMPACT_ABOVE {
                probe.enter();
                node.store_mut().compact(applied).expect("compact");
                probe.exit(i, "compact");
            }
        }
    }
}
