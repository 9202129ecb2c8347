//! Peer transport: how a node's raft messages reach the other members.
//!
//! The raft loop hands outgoing messages to a [`Transport`] and receives incoming ones, plus
//! delivery failures, as [`PeerEvent`]s on a crossbeam channel it selects over. Implementations
//! never block the raft loop: a full queue drops the message and reports the peer unreachable
//! (raft retries). Snapshots travel inside `MsgSnap`: in memory in `snapshot.data` (in-process
//! transports), or streamed from the sender's snapshot file into the receiver's by a transport
//! that [`Transport::streams_snapshot_files`], so a large backend is never held in memory.
//!
//! [`local`] connects nodes in one process (tests); `tcp` connects processes.

pub mod local;
pub mod tcp;

use raft_core::raftpb::Message;

/// Sends raft messages to peers; never blocks the raft loop.
pub trait Transport: Send + Sync + 'static {
    /// Queues `msgs` for their recipients (`Message::to`). A message that cannot be queued is
    /// dropped and reported as [`PeerEvent::Unreachable`]; the outcome of a `MsgSnap` is
    /// reported as [`PeerEvent::SnapshotStatus`].
    fn send(&self, msgs: Vec<Message>);
    /// Starts talking to member `id` at `peer_urls`.
    fn add_peer(&self, id: u64, peer_urls: &[String]);
    /// Stops talking to member `id`, dropping its queue.
    fn remove_peer(&self, id: u64);
    /// Member `id` moved to `peer_urls`.
    fn update_peer(&self, id: u64, peer_urls: &[String]);
    /// Whether the transport streams snapshot data between the members' snapshot files itself:
    /// an outgoing `MsgSnap` then leaves with empty `snapshot.data` (the sender reads the
    /// `.snap.db` file), and an incoming one arrives with its `.snap.db` file already written
    /// and empty `snapshot.data`. Otherwise the data travels inside the message.
    fn streams_snapshot_files(&self) -> bool {
        false
    }
}

/// What the transport tells the raft loop.
// Messages dominate the traffic; boxing them would cost an allocation each for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum PeerEvent {
    /// A message from a peer, to step into raft.
    Message(Message),
    /// A message to peer `0` could not be delivered (`RawNode::report_unreachable`).
    Unreachable(u64),
    /// A peer refused this member because it was removed from the cluster (etcd's
    /// `410 Gone`): the member must stop.
    Removed,
    /// The snapshot sent to `to` arrived (`failed == false`) or not (`RawNode::report_snapshot`).
    SnapshotStatus {
        /// The recipient of the snapshot.
        to: u64,
        /// Whether sending it failed.
        failed: bool,
    },
}
