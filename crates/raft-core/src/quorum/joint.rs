//! Joint quorums: two majority configurations that must both agree.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::{AckedIndexer, Index, MajorityConfig, VoteResult};

/// The voters of a (possibly) joint configuration: decisions need a majority of `incoming` *and*
/// a majority of `outgoing`.
///
/// Outside of joint consensus `outgoing` is empty, and an empty majority configuration commits
/// everything and wins every vote, so the joint configuration then behaves exactly like
/// `incoming` alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JointConfig {
    /// The new configuration (etcd's `Voters[0]`); all voter changes are made to it.
    pub incoming: MajorityConfig,
    /// The old configuration while in joint consensus (etcd's `Voters[1]`), empty otherwise.
    pub outgoing: MajorityConfig,
}

impl JointConfig {
    /// A joint configuration of the two given halves.
    pub fn new(incoming: MajorityConfig, outgoing: MajorityConfig) -> Self {
        JointConfig { incoming, outgoing }
    }

    /// Whether this is a joint configuration, i.e. its outgoing half is not empty.
    pub fn is_joint(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Every voter of either half, in ascending order.
    pub fn ids(&self) -> BTreeSet<u64> {
        self.incoming.iter().chain(self.outgoing.iter()).collect()
    }

    /// Whether `id` is a voter in either half.
    pub fn contains(&self, id: u64) -> bool {
        self.incoming.contains(id) || self.outgoing.contains(id)
    }

    /// The picture of [`MajorityConfig::describe`] for the union of both halves.
    pub fn describe(&self, acked: &impl AckedIndexer) -> String {
        MajorityConfig::from(self.ids()).describe(acked)
    }

    /// The largest index committed in both halves.
    pub fn committed_index(&self, acked: &impl AckedIndexer) -> Index {
        self.incoming
            .committed_index(acked)
            .min(self.outgoing.committed_index(acked))
    }

    /// The election outcome: won only if won in both halves, lost if lost in either.
    pub fn vote_result(&self, votes: &BTreeMap<u64, bool>) -> VoteResult {
        let incoming = self.incoming.vote_result(votes);
        let outgoing = self.outgoing.vote_result(votes);
        if incoming == outgoing {
            incoming
        } else if incoming == VoteResult::Lost || outgoing == VoteResult::Lost {
            VoteResult::Lost
        } else {
            // One half won, the other is pending.
            VoteResult::Pending
        }
    }
}

impl fmt::Display for JointConfig {
    /// `(1 2 3)` outside of joint consensus, `(1 2 3)&&(1 2)` (incoming, outgoing) inside.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.outgoing.is_empty() {
            write!(f, "{}", self.incoming)
        } else {
            write!(f, "{}&&{}", self.incoming, self.outgoing)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(ids: &[u64]) -> MajorityConfig {
        ids.iter().copied().collect()
    }

    fn acked(pairs: &[(u64, u64)]) -> BTreeMap<u64, Index> {
        pairs.iter().map(|&(id, idx)| (id, Index(idx))).collect()
    }

    #[test]
    fn empty_outgoing_behaves_like_incoming() {
        let j = JointConfig::new(cfg(&[1, 2, 3]), MajorityConfig::new());
        let l = acked(&[(1, 10), (2, 7), (3, 3)]);
        assert!(!j.is_joint());
        assert_eq!(j.committed_index(&l), j.incoming.committed_index(&l));
        assert_eq!(j.to_string(), "(1 2 3)");
    }

    #[test]
    fn committed_index_is_the_minimum_of_both_halves() {
        let j = JointConfig::new(cfg(&[1, 2, 3]), cfg(&[3, 4, 5]));
        let l = acked(&[(1, 10), (2, 9), (3, 8), (4, 2), (5, 1)]);
        assert_eq!(j.committed_index(&l), Index(2));
        let swapped = JointConfig::new(j.outgoing.clone(), j.incoming.clone());
        assert_eq!(swapped.committed_index(&l), Index(2));
        assert_eq!(j.to_string(), "(1 2 3)&&(3 4 5)");
        assert_eq!(j.ids().into_iter().collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn vote_result_combines_halves() {
        let j = JointConfig::new(cfg(&[1, 2, 3]), cfg(&[3, 4, 5]));
        let votes = |v: &[(u64, bool)]| v.iter().copied().collect::<BTreeMap<_, _>>();
        // Won on the left only: pending.
        assert_eq!(
            j.vote_result(&votes(&[(1, true), (2, true)])),
            VoteResult::Pending
        );
        // Won on both.
        assert_eq!(
            j.vote_result(&votes(&[(1, true), (3, true), (4, true)])),
            VoteResult::Won
        );
        // Lost on the right, won on the left: lost.
        assert_eq!(
            j.vote_result(&votes(&[(1, true), (2, true), (4, false), (5, false)])),
            VoteResult::Lost
        );
        // Empty on both sides: won.
        assert_eq!(
            JointConfig::default().vote_result(&votes(&[])),
            VoteResult::Won
        );
    }
}
