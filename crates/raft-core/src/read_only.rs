//! Linearizable reads without going through the log (Raft thesis, section 6.4).
//!
//! With [`ReadOnlyOption::Safe`], the leader records each read request with its commit index
//! at arrival and confirms its leadership with a round of heartbeats. Reads are numbered in
//! arrival order; a heartbeat carries the position of the newest pending read (little-endian
//! `u64` in the message context), every follower echoes it back, and once a quorum of voters
//! has echoed a position, every read up to it is confirmed. Many reads thus share one round.
//!
//! With [`ReadOnlyOption::LeaseBased`] (which requires check-quorum) the leader answers at once,
//! trusting its lease.

use std::collections::{BTreeMap, VecDeque};

use crate::quorum::{AckedIndexer, Index, JointConfig};
use crate::raftpb::Message;

/// How read-only requests are confirmed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ReadOnlyOption {
    /// The leader confirms its leadership with a quorum (a heartbeat round) for each batch of
    /// reads. Safe, and the default.
    #[default]
    Safe,
    /// The leader relies on its lease (needs check-quorum); affected by clock drift.
    LeaseBased,
}

/// A read that is served once the application has applied up to `index`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadState {
    /// The commit index at the time of the request.
    pub index: u64,
    /// The request's context, as given to `read_index`.
    pub request_ctx: Vec<u8>,
}

/// A read request waiting for the leader to confirm its leadership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadIndexRequest {
    /// The original request (from the local node or a follower).
    pub req: Message,
    /// The leader's commit index when the request arrived.
    pub index: u64,
}

/// The leader's read-only requests that still await confirmation, in arrival order.
#[derive(Clone, Debug, Default)]
pub struct ReadOnly {
    /// How reads are confirmed.
    pub option: ReadOnlyOption,
    /// Per node, the highest read position it acknowledged.
    acks: BTreeMap<u64, u64>,
    unconfirmed: VecDeque<ReadIndexRequest>,
    /// How many requests were confirmed (and removed from the front of `unconfirmed`).
    confirmed: u64,
}

/// The read position carried by a heartbeat context, if it is well formed.
fn decode_ctx(ctx: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = ctx.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

impl AckedIndexer for ReadOnly {
    fn acked_index(&self, voter_id: u64) -> Option<Index> {
        self.acks.get(&voter_id).copied().map(Index)
    }
}

impl ReadOnly {
    /// No pending requests.
    pub fn new(option: ReadOnlyOption) -> Self {
        ReadOnly {
            option,
            ..ReadOnly::default()
        }
    }

    /// Queues request `req`, which arrived when the commit index was `commit_index`.
    pub fn add_request(&mut self, commit_index: u64, req: Message) {
        self.unconfirmed.push_back(ReadIndexRequest {
            req,
            index: commit_index,
        });
    }

    /// Records that `from` acknowledged a heartbeat with context `ctx` (ignored if empty, and,
    /// defensively, if it names a position beyond the requests this leader knows about).
    pub fn recv_ack(&mut self, from: u64, ctx: &[u8]) {
        let end = self.confirmed + self.unconfirmed.len() as u64;
        if let Some(pos) = decode_ctx(ctx).filter(|&p| p <= end) {
            let acked = self.acks.entry(from).or_insert(0);
            *acked = (*acked).max(pos);
        }
    }

    /// Dequeues every request that a quorum of `voters` has now confirmed, oldest first.
    pub fn maybe_advance(&mut self, voters: &JointConfig) -> Vec<ReadIndexRequest> {
        let end = self.confirmed + self.unconfirmed.len() as u64;
        let confirmed = voters.committed_index(self).0.min(end);
        if confirmed <= self.confirmed {
            return Vec::new();
        }
        let n = (confirmed - self.confirmed) as usize;
        self.confirmed = confirmed;
        self.unconfirmed.drain(..n).collect()
    }

    /// The heartbeat context that confirms every pending request: the position of the newest
    /// one, empty if none is pending.
    pub fn heartbeat_ctx(&self) -> Vec<u8> {
        if self.unconfirmed.is_empty() {
            return Vec::new();
        }
        let pos = self.confirmed + self.unconfirmed.len() as u64;
        pos.to_le_bytes().to_vec()
    }

    /// The number of requests awaiting confirmation.
    pub fn pending_read_count(&self) -> usize {
        self.unconfirmed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quorum::MajorityConfig;
    use crate::raftpb::{Entry, EntryType, MessageType};

    fn req(ctx: &[u8]) -> Message {
        let mut m = Message::new(MessageType::MsgReadIndex, 2, 1);
        m.entries = vec![Entry::new(0, 0, EntryType::Normal, ctx.to_vec())];
        m
    }

    fn voters(ids: &[u64]) -> JointConfig {
        let mut c = MajorityConfig::new();
        for &id in ids {
            c.insert(id);
        }
        JointConfig::new(c, MajorityConfig::new())
    }

    #[test]
    fn requests_are_confirmed_in_order() {
        let c = voters(&[1, 2, 3]);
        let mut ro = ReadOnly::new(ReadOnlyOption::Safe);
        assert!(ro.heartbeat_ctx().is_empty());
        ro.add_request(5, req(b"a"));
        let ctx_a = ro.heartbeat_ctx();
        assert_eq!(ctx_a, 1u64.to_le_bytes());
        ro.recv_ack(1, &ctx_a);
        ro.add_request(6, req(b"b"));
        let ctx_b = ro.heartbeat_ctx();
        ro.recv_ack(1, &ctx_b);
        assert_eq!(ro.pending_read_count(), 2);
        // Only the leader acked: nothing confirmed.
        assert!(ro.maybe_advance(&c).is_empty());
        // A quorum acked "a" only.
        ro.recv_ack(3, &ctx_a);
        let rss = ro.maybe_advance(&c);
        assert_eq!(rss.iter().map(|r| r.index).collect::<Vec<_>>(), vec![5]);
        // An old ack does not move anything back; a newer one confirms "b".
        ro.recv_ack(2, &ctx_b);
        ro.recv_ack(2, &ctx_a);
        let rss = ro.maybe_advance(&c);
        assert_eq!(rss.iter().map(|r| r.index).collect::<Vec<_>>(), vec![6]);
        assert_eq!(ro.pending_read_count(), 0);
        assert!(ro.maybe_advance(&c).is_empty());
        assert!(ro.heartbeat_ctx().is_empty());
        // Malformed and out-of-range contexts are harmless.
        ro.recv_ack(3, b"zz");
        ro.recv_ack(3, &99u64.to_le_bytes());
        ro.recv_ack(2, &99u64.to_le_bytes());
        assert!(ro.maybe_advance(&c).is_empty());
        ro.add_request(7, req(b"c"));
        assert!(ro.maybe_advance(&c).is_empty());
    }
}
