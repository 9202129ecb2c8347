//! Messages exchanged between Raft nodes (and with the local storage threads).

use std::fmt;

use super::{Entry, Snapshot};

/// The kind of a [`Message`]; names and numbers follow etcd's `raftpb.MessageType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum MessageType {
    /// Local: start an election.
    #[default]
    MsgHup,
    /// Local: the leader should send heartbeats.
    MsgBeat,
    /// A proposal of new entries (local, or forwarded to the leader).
    MsgProp,
    /// Leader to follower: append entries.
    MsgApp,
    /// Follower to leader: the answer to [`MessageType::MsgApp`].
    MsgAppResp,
    /// Candidate to voter: request a vote.
    MsgVote,
    /// Voter to candidate: the answer to [`MessageType::MsgVote`].
    MsgVoteResp,
    /// Leader to follower: install a snapshot.
    MsgSnap,
    /// Leader to follower: heartbeat.
    MsgHeartbeat,
    /// Follower to leader: the answer to [`MessageType::MsgHeartbeat`].
    MsgHeartbeatResp,
    /// Local: a peer could not be reached.
    MsgUnreachable,
    /// Local: the outcome of sending a snapshot.
    MsgSnapStatus,
    /// Local: the leader should check that a quorum is still active.
    MsgCheckQuorum,
    /// Request to transfer leadership to the sender.
    MsgTransferLeader,
    /// Leader to transferee: campaign now.
    MsgTimeoutNow,
    /// A linearizable read request.
    MsgReadIndex,
    /// The answer to [`MessageType::MsgReadIndex`].
    MsgReadIndexResp,
    /// Pre-candidate to voter: would you vote for me?
    MsgPreVote,
    /// Voter to pre-candidate: the answer to [`MessageType::MsgPreVote`].
    MsgPreVoteResp,
    /// To the local append thread: persist entries, hard state and snapshot.
    MsgStorageAppend,
    /// From the local append thread: the write completed.
    MsgStorageAppendResp,
    /// To the local apply thread: apply committed entries.
    MsgStorageApply,
    /// From the local apply thread: the entries were applied.
    MsgStorageApplyResp,
    /// Local: forget the current leader.
    MsgForgetLeader,
}

const MESSAGE_TYPES: [MessageType; 24] = [
    MessageType::MsgHup,
    MessageType::MsgBeat,
    MessageType::MsgProp,
    MessageType::MsgApp,
    MessageType::MsgAppResp,
    MessageType::MsgVote,
    MessageType::MsgVoteResp,
    MessageType::MsgSnap,
    MessageType::MsgHeartbeat,
    MessageType::MsgHeartbeatResp,
    MessageType::MsgUnreachable,
    MessageType::MsgSnapStatus,
    MessageType::MsgCheckQuorum,
    MessageType::MsgTransferLeader,
    MessageType::MsgTimeoutNow,
    MessageType::MsgReadIndex,
    MessageType::MsgReadIndexResp,
    MessageType::MsgPreVote,
    MessageType::MsgPreVoteResp,
    MessageType::MsgStorageAppend,
    MessageType::MsgStorageAppendResp,
    MessageType::MsgStorageApply,
    MessageType::MsgStorageApplyResp,
    MessageType::MsgForgetLeader,
];

impl MessageType {
    /// etcd's name of the type, e.g. `MsgApp`.
    pub fn name(self) -> &'static str {
        match self {
            MessageType::MsgHup => "MsgHup",
            MessageType::MsgBeat => "MsgBeat",
            MessageType::MsgProp => "MsgProp",
            MessageType::MsgApp => "MsgApp",
            MessageType::MsgAppResp => "MsgAppResp",
            MessageType::MsgVote => "MsgVote",
            MessageType::MsgVoteResp => "MsgVoteResp",
            MessageType::MsgSnap => "MsgSnap",
            MessageType::MsgHeartbeat => "MsgHeartbeat",
            MessageType::MsgHeartbeatResp => "MsgHeartbeatResp",
            MessageType::MsgUnreachable => "MsgUnreachable",
            MessageType::MsgSnapStatus => "MsgSnapStatus",
            MessageType::MsgCheckQuorum => "MsgCheckQuorum",
            MessageType::MsgTransferLeader => "MsgTransferLeader",
            MessageType::MsgTimeoutNow => "MsgTimeoutNow",
            MessageType::MsgReadIndex => "MsgReadIndex",
            MessageType::MsgReadIndexResp => "MsgReadIndexResp",
            MessageType::MsgPreVote => "MsgPreVote",
            MessageType::MsgPreVoteResp => "MsgPreVoteResp",
            MessageType::MsgStorageAppend => "MsgStorageAppend",
            MessageType::MsgStorageAppendResp => "MsgStorageAppendResp",
            MessageType::MsgStorageApply => "MsgStorageApply",
            MessageType::MsgStorageApplyResp => "MsgStorageApplyResp",
            MessageType::MsgForgetLeader => "MsgForgetLeader",
        }
    }

    /// The type with etcd's name `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        MESSAGE_TYPES.iter().copied().find(|t| t.name() == name)
    }

    /// Whether the message never crosses the network: it is produced and consumed by the node
    /// itself (or its local storage threads).
    pub fn is_local(self) -> bool {
        matches!(
            self,
            MessageType::MsgHup
                | MessageType::MsgBeat
                | MessageType::MsgUnreachable
                | MessageType::MsgSnapStatus
                | MessageType::MsgCheckQuorum
                | MessageType::MsgStorageAppend
                | MessageType::MsgStorageAppendResp
                | MessageType::MsgStorageApply
                | MessageType::MsgStorageApplyResp
        )
    }

    /// Whether the message answers another one (and so needs the sender to be tracked).
    pub fn is_response(self) -> bool {
        matches!(
            self,
            MessageType::MsgAppResp
                | MessageType::MsgVoteResp
                | MessageType::MsgHeartbeatResp
                | MessageType::MsgUnreachable
                | MessageType::MsgReadIndexResp
                | MessageType::MsgPreVoteResp
                | MessageType::MsgStorageAppendResp
                | MessageType::MsgStorageApplyResp
        )
    }

    /// The response type of a vote request.
    ///
    /// # Panics
    ///
    /// If `self` is not `MsgVote` or `MsgPreVote`: callers only ask for vote requests.
    pub fn vote_response(self) -> MessageType {
        match self {
            MessageType::MsgVote => MessageType::MsgVoteResp,
            MessageType::MsgPreVote => MessageType::MsgPreVoteResp,
            other => panic!("not a vote message: {other}"),
        }
    }
}

impl fmt::Display for MessageType {
    /// etcd's name, e.g. `MsgVoteResp`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A message between Raft nodes, or between a node and its local storage threads.
///
/// Fields not used by a message type are left at their defaults.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Message {
    /// What the message is.
    pub msg_type: MessageType,
    /// The recipient.
    pub to: u64,
    /// The sender.
    pub from: u64,
    /// The sender's term (0 for local messages and proposals).
    pub term: u64,
    /// The term of the entry at `index` (appends), or the term hint of a rejection.
    pub log_term: u64,
    /// A log index whose meaning depends on the type.
    pub index: u64,
    /// Entries carried (appends, proposals, storage work).
    pub entries: Vec<Entry>,
    /// The sender's commit index.
    pub commit: u64,
    /// The vote to persist (`MsgStorageAppend`).
    pub vote: u64,
    /// The snapshot carried, if any.
    pub snapshot: Option<Snapshot>,
    /// Whether the request was rejected.
    pub reject: bool,
    /// For a rejected append: the follower's guess of where the logs match.
    pub reject_hint: u64,
    /// Opaque context (read index requests, campaign type).
    pub context: Vec<u8>,
    /// Messages to deliver once a local storage message has been processed. Never serialized:
    /// only local storage messages carry responses and they never leave the process; skipping
    /// them also leaves a peer no way to send a message nested deep enough to overflow a
    /// decoder's stack.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub responses: Vec<Message>,
}

impl Message {
    /// A message of type `msg_type` from `from` to `to`, otherwise empty.
    pub fn new(msg_type: MessageType, from: u64, to: u64) -> Self {
        Message {
            msg_type,
            from,
            to,
            ..Message::default()
        }
    }
}
