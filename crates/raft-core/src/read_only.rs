//! Linearizable reads without going through the log (Raft thesis, section 6.4).

use std::collections::{BTreeMap, HashMap, VecDeque};

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

/// A pending read request and the heartbeat acknowledgements it has received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadIndexStatus {
    /// The original request.
    pub req: Message,
    /// The commit index when the request arrived.
    pub index: u64,
    /// The nodes that acknowledged the leader's heartbeat carrying this request's context.
    pub acks: BTreeMap<u64, bool>,
}

/// The leader's pending read-only requests, keyed by their context, in arrival order.
#[derive(Clone, Debug, Default)]
pub struct ReadOnly {
    /// How reads are confirmed.
    pub option: ReadOnlyOption,
    pending: HashMap<Vec<u8>, ReadIndexStatus>,
    queue: VecDeque<Vec<u8>>,
}

fn request_ctx(m: &Message) -> Vec<u8> {
    m.entries
        .first()
        .map(|e| e.data.clone())
        .unwrap_or_default()
}

impl ReadOnly {
    /// No pending requests.
    pub fn new(option: ReadOnlyOption) -> Self {
        ReadOnly {
            option,
            pending: HashMap::new(),
            queue: VecDeque::new(),
        }
    }

    /// Queues request `req`, which arrived at commit index `index` (duplicates are ignored).
    pub fn add_request(&mut self, index: u64, req: Message) {
        let ctx = request_ctx(&req);
        if self.pending.contains_key(&ctx) {
            return;
        }
        self.pending.insert(
            ctx.clone(),
            ReadIndexStatus {
                req,
                index,
                acks: BTreeMap::new(),
            },
        );
        self.queue.push_back(ctx);
    }

    /// Records that `id` acknowledged a heartbeat with `context`; returns the acks of that
    /// request so far (empty if it is unknown).
    pub fn recv_ack(&mut self, id: u64, context: &[u8]) -> BTreeMap<u64, bool> {
        match self.pending.get_mut(context) {
            Some(rs) => {
                rs.acks.insert(id, true);
                rs.acks.clone()
            }
            None => BTreeMap::new(),
        }
    }

    /// Dequeues the requests up to and including the one whose context `m` carries, which a
    /// quorum confirmed; nothing if it is unknown.
    ///
    /// # Panics
    ///
    /// If the queue and the pending map disagree (a broken invariant).
    pub fn advance(&mut self, m: &Message) -> Vec<ReadIndexStatus> {
        let Some(pos) = self.queue.iter().position(|c| *c == m.context) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(pos + 1);
        for ctx in self.queue.drain(..=pos) {
            match self.pending.remove(&ctx) {
                Some(rs) => out.push(rs),
                None => panic!("cannot find corresponding read state from pending map"),
            }
        }
        out
    }

    /// The context of the most recent pending request, if any.
    pub fn last_pending_request_ctx(&self) -> Option<&[u8]> {
        self.queue.back().map(Vec::as_slice)
    }

    /// The number of pending requests.
    pub fn pending_read_count(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raftpb::{Entry, EntryType, MessageType};

    fn req(ctx: &[u8]) -> Message {
        let mut m = Message::new(MessageType::MsgReadIndex, 2, 1);
        m.entries = vec![Entry::new(0, 0, EntryType::Normal, ctx.to_vec())];
        m
    }

    fn hb_resp(ctx: &[u8]) -> Message {
        let mut m = Message::new(MessageType::MsgHeartbeatResp, 2, 1);
        m.context = ctx.to_vec();
        m
    }

    #[test]
    fn requests_are_confirmed_in_order() {
        let mut ro = ReadOnly::new(ReadOnlyOption::Safe);
        ro.add_request(5, req(b"a"));
        ro.add_request(6, req(b"b"));
        ro.add_request(7, req(b"a")); // duplicate
        assert_eq!(ro.pending_read_count(), 2);
        assert_eq!(ro.last_pending_request_ctx(), Some(&b"b"[..]));
        assert_eq!(ro.recv_ack(1, b"a").len(), 1);
        assert_eq!(ro.recv_ack(2, b"a").len(), 2);
        assert!(ro.recv_ack(2, b"zz").is_empty());
        // Confirming "b" confirms "a" too.
        let rss = ro.advance(&hb_resp(b"b"));
        assert_eq!(rss.iter().map(|r| r.index).collect::<Vec<_>>(), vec![5, 6]);
        assert_eq!(ro.pending_read_count(), 0);
        assert!(ro.advance(&hb_resp(b"b")).is_empty());
        assert_eq!(ro.last_pending_request_ctx(), None);
    }
}
