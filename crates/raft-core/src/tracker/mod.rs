//! The leader's bookkeeping: the active configuration and every member's [`Progress`].

mod inflights;
mod progress;
mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

pub use inflights::Inflights;
pub use progress::{Progress, ProgressMap};
pub use state::ProgressState;

use crate::quorum::{JointConfig, VoteResult, write_id_set};
use crate::raftpb::ConfState;

/// A Raft configuration: who votes, who learns.
///
/// Invariants (checked by [`Changer`](crate::confchange::Changer)): learners are not voters in
/// either half of `voters`; every `learners_next` id is an outgoing voter; outside of joint
/// consensus `learners_next` is empty and `auto_leave` is false.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// The voters, as a joint configuration (whose outgoing half is empty unless joint).
    pub voters: JointConfig,
    /// Whether Raft leaves the joint configuration by itself once it can. Only meaningful
    /// while joint.
    pub auto_leave: bool,
    /// The learners: they receive the log but do not vote.
    pub learners: BTreeSet<u64>,
    /// Voters being demoted: they stay outgoing voters until the joint configuration is left
    /// and only then become learners (a node is never voter and learner at once).
    pub learners_next: BTreeSet<u64>,
}

impl Config {
    /// Whether the configuration is joint.
    pub fn is_joint(&self) -> bool {
        self.voters.is_joint()
    }

    /// The configuration as a [`ConfState`].
    pub fn to_conf_state(&self) -> ConfState {
        ConfState {
            voters: self.voters.incoming.to_vec(),
            voters_outgoing: self.voters.outgoing.to_vec(),
            learners: self.learners.iter().copied().collect(),
            learners_next: self.learners_next.iter().copied().collect(),
            auto_leave: self.auto_leave,
        }
    }
}

impl fmt::Display for Config {
    /// etcd's form, e.g. `voters=(1 2)&&(1 2 3) learners=(4) learners_next=(3) autoleave`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "voters={}", self.voters)?;
        if !self.learners.is_empty() {
            f.write_str(" learners=")?;
            write_id_set(f, self.learners.iter().copied())?;
        }
        if !self.learners_next.is_empty() {
            f.write_str(" learners_next=")?;
            write_id_set(f, self.learners_next.iter().copied())?;
        }
        if self.auto_leave {
            f.write_str(" autoleave")?;
        }
        Ok(())
    }
}

/// The active configuration, the progress of each member, and the votes of the current election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgressTracker {
    /// The active configuration.
    pub config: Config,
    /// The progress of every voter and learner.
    pub progress: ProgressMap,
    votes: BTreeMap<u64, bool>,
    /// The in-flight message limit given to new progresses.
    pub max_inflight: usize,
    /// The in-flight byte limit given to new progresses (0: none).
    pub max_inflight_bytes: u64,
}

impl ProgressTracker {
    /// An empty tracker whose progresses use the given flow-control limits.
    pub fn new(max_inflight: usize, max_inflight_bytes: u64) -> Self {
        ProgressTracker {
            config: Config::default(),
            progress: ProgressMap::new(),
            votes: BTreeMap::new(),
            max_inflight,
            max_inflight_bytes,
        }
    }

    /// An empty in-flight window with this tracker's limits.
    pub fn new_inflights(&self) -> Inflights {
        Inflights::new(self.max_inflight, self.max_inflight_bytes)
    }

    /// The active configuration as a [`ConfState`].
    pub fn conf_state(&self) -> ConfState {
        self.config.to_conf_state()
    }

    /// Whether the only voter is a single node (outside of joint consensus).
    pub fn is_singleton(&self) -> bool {
        self.config.voters.incoming.len() == 1 && self.config.voters.outgoing.is_empty()
    }

    /// The largest log index known to be committed, from the voters' match indexes.
    pub fn committed(&self) -> u64 {
        self.config.voters.committed_index(&self.progress).0
    }

    /// Calls `f` for every tracked node in ascending id order.
    pub fn visit(&mut self, mut f: impl FnMut(u64, &mut Progress)) {
        for (id, pr) in self.progress.iter_mut() {
            f(id, pr);
        }
    }

    /// Whether a quorum of voters was recently active (from this node's point of view).
    pub fn quorum_active(&self) -> bool {
        let active: BTreeMap<u64, bool> = self
            .progress
            .iter()
            .filter(|(_, pr)| !pr.is_learner)
            .map(|(id, pr)| (id, pr.recent_active))
            .collect();
        self.config.voters.vote_result(&active) == VoteResult::Won
    }

    /// The voters of both halves, ascending.
    pub fn voter_nodes(&self) -> Vec<u64> {
        self.config.voters.ids().into_iter().collect()
    }

    /// The learners, ascending.
    pub fn learner_nodes(&self) -> Vec<u64> {
        self.config.learners.iter().copied().collect()
    }

    /// Forgets all votes, before a new election.
    pub fn reset_votes(&mut self) {
        self.votes.clear();
    }

    /// Records the vote of node `id` (`granted` or not); only its first vote counts.
    pub fn record_vote(&mut self, id: u64, granted: bool) {
        self.votes.entry(id).or_insert(granted);
    }

    /// The votes recorded so far, by node id.
    pub fn votes(&self) -> &BTreeMap<u64, bool> {
        &self.votes
    }

    /// The number of granted and rejected votes among tracked voters, and the election outcome.
    pub fn tally_votes(&self) -> (usize, usize, VoteResult) {
        let (mut granted, mut rejected) = (0, 0);
        for (id, pr) in self.progress.iter() {
            if pr.is_learner {
                continue;
            }
            match self.votes.get(&id) {
                Some(true) => granted += 1,
                Some(false) => rejected += 1,
                None => {}
            }
        }
        (
            granted,
            rejected,
            self.config.voters.vote_result(&self.votes),
        )
    }

    /// Replaces the configuration and progresses (the result of a
    /// [`Changer`](crate::confchange::Changer) operation).
    pub fn apply_config(&mut self, config: Config, progress: ProgressMap) {
        self.config = config;
        self.progress = progress;
    }
}

impl Default for ProgressTracker {
    /// No in-flight byte limit and etcd's default of 256 in-flight messages.
    fn default() -> Self {
        ProgressTracker::new(256, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(voters: &[u64], learners: &[u64]) -> ProgressTracker {
        let mut t = ProgressTracker::new(10, 0);
        for &id in voters {
            t.config.voters.incoming.insert(id);
            t.progress.insert(id, Progress::new(1, t.new_inflights()));
        }
        for &id in learners {
            t.config.learners.insert(id);
            let mut pr = Progress::new(1, t.new_inflights());
            pr.is_learner = true;
            t.progress.insert(id, pr);
        }
        t
    }

    #[test]
    fn committed_uses_voter_match_indexes_only() {
        let mut t = tracker(&[1, 2, 3], &[4]);
        for (id, m) in [(1, 5), (2, 3), (3, 1), (4, 100)] {
            if let Some(pr) = t.progress.get_mut(id) {
                pr.matched = m;
            }
        }
        assert_eq!(t.committed(), 3);
        t.config.voters.outgoing = [3, 4].into_iter().collect();
        // The outgoing half (3, 4) has committed only min(1, 100) = 1.
        assert_eq!(t.committed(), 1);
    }

    #[test]
    fn votes_count_once_and_ignore_learners() {
        let mut t = tracker(&[1, 2, 3], &[4]);
        t.record_vote(1, true);
        t.record_vote(1, false); // only the first vote counts
        t.record_vote(4, true); // a learner's vote does not count
        assert_eq!(t.tally_votes(), (1, 0, VoteResult::Pending));
        t.record_vote(2, false);
        t.record_vote(3, false);
        assert_eq!(t.tally_votes(), (1, 2, VoteResult::Lost));
        t.reset_votes();
        t.record_vote(2, true);
        t.record_vote(3, true);
        assert_eq!(t.tally_votes(), (2, 0, VoteResult::Won));
    }

    #[test]
    fn quorum_active_needs_a_quorum_of_recent_voters() {
        let mut t = tracker(&[1, 2, 3], &[4]);
        t.visit(|id, pr| pr.recent_active = id == 1 || id == 4);
        assert!(!t.quorum_active());
        t.visit(|id, pr| pr.recent_active = id != 3);
        assert!(t.quorum_active());
    }

    #[test]
    fn visit_is_in_id_order() {
        let mut t = tracker(&[9, 3, 7, 1, 5, 2, 8, 4, 6], &[10]);
        let mut seen = Vec::new();
        t.visit(|id, _| seen.push(id));
        assert_eq!(seen, (1..=10).collect::<Vec<_>>());
    }

    #[test]
    fn config_display_and_conf_state() {
        let mut t = tracker(&[1, 2], &[4]);
        assert!(!t.is_singleton());
        t.config.voters.outgoing = [1, 2, 3].into_iter().collect();
        t.config.learners_next.insert(3);
        t.config.auto_leave = true;
        assert_eq!(
            t.config.to_string(),
            "voters=(1 2)&&(1 2 3) learners=(4) learners_next=(3) autoleave"
        );
        let cs = t.conf_state();
        assert_eq!(cs.voters, vec![1, 2]);
        assert_eq!(cs.voters_outgoing, vec![1, 2, 3]);
        assert_eq!(cs.learners, vec![4]);
        assert_eq!(cs.learners_next, vec![3]);
        assert!(cs.auto_leave);
        assert_eq!(t.voter_nodes(), vec![1, 2, 3]);
        assert_eq!(t.learner_nodes(), vec![4]);
        assert!(tracker(&[1], &[]).is_singleton());
    }
}
