//! Plain-Rust equivalents of etcd's `raftpb` messages.
//!
//! These are ordinary structs and enums (no protobuf encoding lives in this crate); their names
//! and `Display` forms follow etcd's so that logs and test output read the same: log entries
//! ([`Entry`]), the persistent state ([`HardState`]), snapshots ([`Snapshot`]) and configuration
//! changes ([`ConfChangeSingle`], [`ConfState`]).

use std::fmt;

mod conf_change;
mod message;

pub use conf_change::{
    AnyConfChange, ConfChange, ConfChangeTransition, ConfChangeV2, DecodeError,
    conf_changes_from_string, conf_changes_to_string,
};
pub use message::{Message, MessageType};

/// The kind of a single configuration change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum ConfChangeType {
    /// Add the node as a voter, or promote a learner to voter.
    #[default]
    AddNode,
    /// Remove the node, voter or learner.
    RemoveNode,
    /// Change nothing in Raft's configuration; carries application data about the node.
    UpdateNode,
    /// Add the node as a learner, or demote a voter to learner.
    AddLearnerNode,
}

impl ConfChangeType {
    /// The protobuf enum number etcd uses on the wire.
    pub fn number(self) -> i32 {
        match self {
            ConfChangeType::AddNode => 0,
            ConfChangeType::RemoveNode => 1,
            ConfChangeType::UpdateNode => 2,
            ConfChangeType::AddLearnerNode => 3,
        }
    }

    /// The type with the given protobuf enum number, if any.
    pub fn from_number(number: i32) -> Option<Self> {
        match number {
            0 => Some(ConfChangeType::AddNode),
            1 => Some(ConfChangeType::RemoveNode),
            2 => Some(ConfChangeType::UpdateNode),
            3 => Some(ConfChangeType::AddLearnerNode),
            _ => None,
        }
    }
}

impl fmt::Display for ConfChangeType {
    /// etcd's enum names, e.g. `ConfChangeAddNode`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConfChangeType::AddNode => "ConfChangeAddNode",
            ConfChangeType::RemoveNode => "ConfChangeRemoveNode",
            ConfChangeType::UpdateNode => "ConfChangeUpdateNode",
            ConfChangeType::AddLearnerNode => "ConfChangeAddLearnerNode",
        })
    }
}

/// One change to the configuration: what to do to which node.
///
/// A `node_id` of 0 marks a change the application decided not to apply; it is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ConfChangeSingle {
    /// What to do.
    pub change_type: ConfChangeType,
    /// To which node.
    pub node_id: u64,
}

impl ConfChangeSingle {
    /// A change of `change_type` for `node_id`.
    pub fn new(change_type: ConfChangeType, node_id: u64) -> Self {
        ConfChangeSingle {
            change_type,
            node_id,
        }
    }
}

impl fmt::Display for ConfChangeSingle {
    /// `ConfChangeAddNode(3)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.change_type, self.node_id)
    }
}

/// A configuration as recorded in snapshots and reported after a change.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ConfState {
    /// The voters of the incoming configuration.
    pub voters: Vec<u64>,
    /// The learners.
    pub learners: Vec<u64>,
    /// The voters of the outgoing configuration; empty unless in joint consensus.
    pub voters_outgoing: Vec<u64>,
    /// Nodes that become learners when the joint configuration is left (they are voters of the
    /// outgoing configuration until then).
    pub learners_next: Vec<u64>,
    /// Whether Raft leaves the joint configuration by itself once it can.
    pub auto_leave: bool,
}

impl ConfState {
    /// Whether both describe the same configuration, ignoring the order of ids.
    pub fn equivalent(&self, other: &ConfState) -> bool {
        fn sorted(ids: &[u64]) -> Vec<u64> {
            let mut ids = ids.to_vec();
            ids.sort_unstable();
            ids
        }
        sorted(&self.voters) == sorted(&other.voters)
            && sorted(&self.learners) == sorted(&other.learners)
            && sorted(&self.voters_outgoing) == sorted(&other.voters_outgoing)
            && sorted(&self.learners_next) == sorted(&other.learners_next)
            && self.auto_leave == other.auto_leave
    }
}

impl fmt::Display for ConfState {
    /// etcd's `Voters:[1 2 3] VotersOutgoing:[] Learners:[] LearnersNext:[] AutoLeave:false`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn ids(f: &mut fmt::Formatter<'_>, name: &str, ids: &[u64]) -> fmt::Result {
            write!(f, "{name}:[")?;
            for (i, id) in ids.iter().enumerate() {
                if i > 0 {
                    f.write_str(" ")?;
                }
                write!(f, "{id}")?;
            }
            f.write_str("] ")
        }
        ids(f, "Voters", &self.voters)?;
        ids(f, "VotersOutgoing", &self.voters_outgoing)?;
        ids(f, "Learners", &self.learners)?;
        ids(f, "LearnersNext", &self.learners_next)?;
        write!(f, "AutoLeave:{}", self.auto_leave)
    }
}

/// What a log entry carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum EntryType {
    /// An application command (or an empty entry a new leader appends).
    #[default]
    Normal,
    /// An encoded `ConfChange` (simple configuration change, etcd's v1 API).
    ConfChange,
    /// An encoded `ConfChangeV2` (joint-capable configuration change).
    ConfChangeV2,
}

impl EntryType {
    /// The protobuf enum number etcd uses on the wire.
    pub fn number(self) -> i32 {
        match self {
            EntryType::Normal => 0,
            EntryType::ConfChange => 1,
            EntryType::ConfChangeV2 => 2,
        }
    }
}

impl fmt::Display for EntryType {
    /// etcd's enum names, e.g. `EntryNormal`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EntryType::Normal => "EntryNormal",
            EntryType::ConfChange => "EntryConfChange",
            EntryType::ConfChangeV2 => "EntryConfChangeV2",
        })
    }
}

/// A Raft log entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Entry {
    /// The term in which the entry was proposed.
    pub term: u64,
    /// The entry's position in the log.
    pub index: u64,
    /// What `data` holds.
    pub entry_type: EntryType,
    /// The payload, opaque to Raft (empty for the entries new leaders append).
    pub data: Vec<u8>,
}

impl Entry {
    /// An entry of `entry_type` at `index` in `term`, with `data`.
    pub fn new(term: u64, index: u64, entry_type: EntryType, data: Vec<u8>) -> Self {
        Entry {
            term,
            index,
            entry_type,
            data,
        }
    }

    /// The size of the entry in etcd's protobuf encoding, which is what etcd's size limits
    /// (e.g. `MaxSizePerMsg`) count. An empty `data` counts as absent.
    pub fn encoded_size(&self) -> u64 {
        let mut size = 1
            + varint_len(self.entry_type.number() as u64)
            + 1
            + varint_len(self.term)
            + 1
            + varint_len(self.index);
        if !self.data.is_empty() {
            let len = self.data.len() as u64;
            size += 1 + varint_len(len) + len;
        }
        size
    }

    /// The size of the payload, which is what etcd's in-flight and uncommitted byte limits count.
    pub fn payload_size(&self) -> u64 {
        self.data.len() as u64
    }
}

/// The number of bytes of `x` as a protobuf varint.
fn varint_len(x: u64) -> u64 {
    let bits = 64 - u64::from((x | 1).leading_zeros());
    bits.div_ceil(7)
}

/// The longest prefix of `entries` whose total [`Entry::encoded_size`] is at most `max_size`,
/// but at least one entry if there is any (so that progress is always possible).
pub fn limit_size(entries: &[Entry], max_size: u64) -> &[Entry] {
    let mut size = 0u64;
    for (i, entry) in entries.iter().enumerate() {
        size = size.saturating_add(entry.encoded_size());
        if i > 0 && size > max_size {
            return &entries[..i];
        }
    }
    entries
}

/// The state a node must persist before it sends messages: its term, its vote in that term,
/// and the highest index it knows to be committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct HardState {
    /// The current term.
    pub term: u64,
    /// The node voted for in `term` (0: none).
    pub vote: u64,
    /// The highest log index known to be committed.
    pub commit: u64,
}

impl HardState {
    /// Whether nothing was persisted yet (all zero).
    pub fn is_empty(&self) -> bool {
        *self == HardState::default()
    }
}

/// What a snapshot covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SnapshotMetadata {
    /// The configuration as of `index`.
    pub conf_state: ConfState,
    /// The index of the last entry the snapshot includes.
    pub index: u64,
    /// The term of that entry.
    pub term: u64,
}

/// A snapshot of the application state up to some log index.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Snapshot {
    /// The application's state, opaque to Raft.
    pub data: Vec<u8>,
    /// What the snapshot covers.
    pub metadata: SnapshotMetadata,
}

impl Snapshot {
    /// Whether this is the empty snapshot (index 0).
    pub fn is_empty(&self) -> bool {
        self.metadata.index == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_change_type_round_trips_numbers_and_names() {
        for t in [
            ConfChangeType::AddNode,
            ConfChangeType::RemoveNode,
            ConfChangeType::UpdateNode,
            ConfChangeType::AddLearnerNode,
        ] {
            assert_eq!(ConfChangeType::from_number(t.number()), Some(t));
        }
        assert_eq!(ConfChangeType::from_number(4), None);
        assert_eq!(
            ConfChangeSingle::new(ConfChangeType::AddLearnerNode, 4).to_string(),
            "ConfChangeAddLearnerNode(4)"
        );
    }

    #[test]
    fn entry_encoded_size_matches_protobuf() {
        // Three one-byte tags and three one-byte varints.
        assert_eq!(Entry::default().encoded_size(), 6);
        // Term 1, index 1, "foo": + tag, length and 3 bytes.
        let e = Entry::new(1, 1, EntryType::Normal, b"foo".to_vec());
        assert_eq!(e.encoded_size(), 11);
        assert_eq!(e.payload_size(), 3);
        // Varints grow by a byte every 7 bits.
        let e = Entry::new(128, 1 << 14, EntryType::ConfChangeV2, vec![0; 200]);
        assert_eq!(e.encoded_size(), 2 + 1 + 2 + 1 + 3 + 1 + 2 + 200);
        assert_eq!(varint_len(0), 1);
        assert_eq!(varint_len(127), 1);
        assert_eq!(varint_len(u64::MAX), 10);
    }

    #[test]
    fn limit_size_keeps_at_least_one_entry() {
        let ents: Vec<Entry> = (1..=3)
            .map(|i| Entry::new(1, i, EntryType::Normal, b"foo".to_vec()))
            .collect();
        assert_eq!(limit_size(&ents, u64::MAX).len(), 3);
        assert_eq!(limit_size(&ents, 0).len(), 1);
        assert_eq!(limit_size(&ents, 21).len(), 1);
        assert_eq!(limit_size(&ents, 22).len(), 2);
        assert_eq!(limit_size(&ents, 32).len(), 2);
        assert_eq!(limit_size(&ents, 33).len(), 3);
        assert!(limit_size(&[], 0).is_empty());
    }

    #[test]
    fn empty_states() {
        assert!(HardState::default().is_empty());
        assert!(
            !HardState {
                vote: 1,
                ..HardState::default()
            }
            .is_empty()
        );
        assert!(Snapshot::default().is_empty());
        assert_eq!(EntryType::ConfChangeV2.to_string(), "EntryConfChangeV2");
    }

    #[test]
    fn conf_state_display_and_equivalence() {
        let a = ConfState {
            voters: vec![1, 2, 3],
            ..ConfState::default()
        };
        assert_eq!(
            a.to_string(),
            "Voters:[1 2 3] VotersOutgoing:[] Learners:[] LearnersNext:[] AutoLeave:false"
        );
        let b = ConfState {
            voters: vec![3, 1, 2],
            ..ConfState::default()
        };
        assert!(a.equivalent(&b));
        let c = ConfState {
            voters: vec![1, 2],
            learners: vec![3],
            ..ConfState::default()
        };
        assert!(!a.equivalent(&c));
    }
}
