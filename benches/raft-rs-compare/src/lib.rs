//! The workload of ferrocd's `crates/raft-core/benches/cluster/mod.rs` on tikv/raft-rs: a 3-node
//! in-memory cluster driven through `RawNode` / `Ready` as an application would drive it, no
//! I/O and no threads. Keep the two in step so that their figures stay comparable.
//!
//! A round: propose `k` entries on the leader (one `propose` call each), then handle every
//! node's `Ready` (persist entries and hard state to its `MemStorage`, queue its messages,
//! "apply" its committed entries, `advance`, then the same for the `LightReady`) and deliver the
//! queued messages, until no node has anything to do; long logs are then compacted.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::new_without_default
)]

use raft::eraftpb::{ConfState, Entry, Message};
use raft::storage::MemStorage;
use raft::{Config, RawNode, StateRole, Storage};

pub const PEERS: [u64; 3] = [1, 2, 3];
const COMPACT_ABOVE: u64 = 4096;

/// The same limits as raft-core's benchmark (raft-rs' defaults differ: one entry per message,
/// no limit on committed entries per `Ready`).
pub fn config(id: u64) -> Config {
    Config {
        id,
        election_tick: 10,
        heartbeat_tick: 1,
        max_size_per_msg: 1024 * 1024,
        max_inflight_msgs: 256,
        max_committed_size_per_ready: 1024 * 1024,
        ..Config::default()
    }
}

pub struct Cluster {
    pub nodes: Vec<RawNode<MemStorage>>,
    outbox: Vec<Message>,
    delivering: Vec<Message>,
    pub applied: [u64; 3],
    pub applied_bytes: u64,
    /// Messages delivered so far (to check that both implementations do the same work).
    pub delivered: u64,
    /// `Ready`s handled so far.
    pub readies: u64,
}

impl Cluster {
    pub fn new() -> Self {
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let nodes = PEERS
            .iter()
            .map(|&id| {
                let storage =
                    MemStorage::new_with_conf_state(ConfState::from((PEERS.to_vec(), vec![])));
                RawNode::new(&config(id), storage, &logger).expect("valid config")
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
        c.settle();
        assert_eq!(
            c.nodes[0].raft.state,
            StateRole::Leader,
            "node 1 is the leader"
        );
        assert_eq!(c.applied, [1; 3], "the leader's empty entry is applied");
        c
    }

    pub fn propose(&mut self, k: usize, payload: &[u8]) {
        for _ in 0..k {
            self.nodes[0]
                .propose(Vec::new(), payload.to_vec())
                .expect("the leader accepts proposals");
        }
    }

    pub fn handle_ready(&mut self, i: usize) -> bool {
        let Cluster {
            nodes,
            outbox,
            applied,
            applied_bytes,
            readies,
            ..
        } = self;
        let node = &mut nodes[i];
        if !node.has_ready() {
            return false;
        }
        let mut apply = |entries: &[Entry]| {
            if let Some(last) = entries.last() {
                applied[i] = last.index;
                *applied_bytes += entries.iter().map(|e| e.data.len() as u64).sum::<u64>();
            }
        };
        *readies += 1;
        let mut rd = node.ready();
        // The leader's messages may go before persisting; the followers' after.
        outbox.append(&mut rd.take_messages());
        {
            let mut store = node.store().wl();
            if !rd.snapshot().is_empty() {
                store
                    .apply_snapshot(rd.snapshot().clone())
                    .expect("snapshot");
            }
            store.append(rd.entries()).expect("append");
            if let Some(hs) = rd.hs() {
                store.set_hardstate(hs.clone());
            }
        }
        apply(&rd.take_committed_entries());
        outbox.append(&mut rd.take_persisted_messages());

        let mut light = node.advance(rd);
        if let Some(commit) = light.commit_index() {
            node.store().wl().mut_hard_state().commit = commit;
        }
        outbox.append(&mut light.take_messages());
        apply(&light.take_committed_entries());
        node.advance_apply();
        true
    }

    fn deliver(&mut self) -> bool {
        std::mem::swap(&mut self.outbox, &mut self.delivering);
        let any = !self.delivering.is_empty();
        self.delivered += self.delivering.len() as u64;
        let mut batch = std::mem::take(&mut self.delivering);
        for m in batch.drain(..) {
            let i = (m.to - 1) as usize;
            let _ = self.nodes[i].step(m);
        }
        self.delivering = batch;
        any
    }

    pub fn settle(&mut self) {
        loop {
            let mut busy = false;
            for i in 0..self.nodes.len() {
                while self.handle_ready(i) {
                    busy = true;
                }
            }
            busy |= self.deliver();
            if !busy {
                break;
            }
        }
        let applied = self.applied.iter().copied().min().unwrap_or(0);
        for node in &mut self.nodes {
            let first = node.store().first_index().expect("first index");
            if applied >= first + COMPACT_ABOVE {
                node.mut_store().wl().compact(applied).expect("compact");
            }
        }
    }
}
