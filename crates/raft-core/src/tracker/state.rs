//! The replication state of a follower, as seen by the leader.

use std::fmt;

/// How the leader currently replicates to a follower (etcd's `StateType`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ProgressState {
    /// The leader does not know where the follower's log ends: it sends at most one append per
    /// heartbeat interval and waits for the answer.
    #[default]
    Probe,
    /// The follower is caught up: the leader streams appends optimistically, bounded by
    /// [`Inflights`](super::Inflights).
    Replicate,
    /// The follower needs a snapshot; appends are paused until it is applied.
    Snapshot,
}

impl fmt::Display for ProgressState {
    /// etcd's names: `StateProbe`, `StateReplicate`, `StateSnapshot`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProgressState::Probe => "StateProbe",
            ProgressState::Replicate => "StateReplicate",
            ProgressState::Snapshot => "StateSnapshot",
        })
    }
}
