//! Snapshots of a node's state for the application.

use std::collections::BTreeMap;

use crate::raft::{Raft, SoftState, StateRole};
use crate::raftpb::HardState;
use crate::storage::Storage;
use crate::tracker::{Config as TrackerConfig, Progress};

/// The basic state of a node: no allocation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BasicStatus {
    /// The node's id.
    pub id: u64,
    /// Term, vote and commit index.
    pub hard_state: HardState,
    /// Leader and role.
    pub soft_state: SoftState,
    /// The applied index.
    pub applied: u64,
    /// The target of a leadership transfer in progress (0: none).
    pub lead_transferee: u64,
}

/// The full state of a node, including (on the leader) every member's progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The basic state.
    pub basic: BasicStatus,
    /// The active configuration.
    pub config: TrackerConfig,
    /// The members' progress; only populated on the leader.
    pub progress: BTreeMap<u64, Progress>,
}

impl BasicStatus {
    /// The basic state of `r`.
    pub fn of<S: Storage>(r: &Raft<S>) -> Self {
        BasicStatus {
            id: r.id,
            hard_state: r.hard_state(),
            soft_state: r.soft_state(),
            applied: r.raft_log.applied,
            lead_transferee: r.lead_transferee,
        }
    }
}

impl Status {
    /// The full state of `r`.
    pub fn of<S: Storage>(r: &Raft<S>) -> Self {
        let basic = BasicStatus::of(r);
        let progress = if basic.soft_state.raft_state == StateRole::Leader {
            r.trk
                .progress
                .iter()
                .map(|(id, pr)| (id, pr.clone()))
                .collect()
        } else {
            BTreeMap::new()
        };
        Status {
            basic,
            config: r.trk.config.clone(),
            progress,
        }
    }
}
