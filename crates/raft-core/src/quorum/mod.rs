//! Quorum arithmetic: which log index a configuration has committed, and how an election went.
//!
//! A [`MajorityConfig`] decides by simple majority; a [`JointConfig`] combines two of them
//! (the incoming and outgoing configurations of a joint-consensus transition) and needs both.

mod joint;
mod majority;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;

pub use joint::JointConfig;
pub use majority::MajorityConfig;
pub(crate) use majority::{committed_index_by_counting, write_id_set};

/// A Raft log index, as acknowledged by a voter or committed by a quorum.
///
/// Displays as the number, except [`Index::INFINITY`] (`u64::MAX`) which displays as `∞`: that is
/// what an empty majority configuration commits, so that it is neutral in a joint quorum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Index(pub u64);

impl Index {
    /// The index committed by an empty configuration: everything.
    pub const INFINITY: Index = Index(u64::MAX);
}

impl fmt::Display for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Index::INFINITY {
            f.write_str("∞")
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl From<u64> for Index {
    fn from(index: u64) -> Self {
        Index(index)
    }
}

/// Looks up the log index a voter has acknowledged (its match index, for a leader).
pub trait AckedIndexer {
    /// The highest index `voter_id` is known to have, or `None` when nothing is known about it.
    fn acked_index(&self, voter_id: u64) -> Option<Index>;
}

impl AckedIndexer for BTreeMap<u64, Index> {
    fn acked_index(&self, voter_id: u64) -> Option<Index> {
        self.get(&voter_id).copied()
    }
}

impl<S: BuildHasher> AckedIndexer for HashMap<u64, Index, S> {
    fn acked_index(&self, voter_id: u64) -> Option<Index> {
        self.get(&voter_id).copied()
    }
}

/// The outcome of an election, as far as the votes received so far tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VoteResult {
    /// Neither a quorum of yes nor a quorum of no votes has been reached yet.
    Pending,
    /// A quorum of no votes has been reached: the election cannot be won.
    Lost,
    /// A quorum of yes votes has been reached.
    Won,
}

impl fmt::Display for VoteResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VoteResult::Pending => "VotePending",
            VoteResult::Lost => "VoteLost",
            VoteResult::Won => "VoteWon",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_displays_infinity() {
        assert_eq!(Index(0).to_string(), "0");
        assert_eq!(Index(42).to_string(), "42");
        assert_eq!(Index::INFINITY.to_string(), "∞");
        assert_eq!(Index(u64::MAX - 1).to_string(), (u64::MAX - 1).to_string());
    }

    #[test]
    fn vote_result_displays_like_etcd() {
        assert_eq!(VoteResult::Pending.to_string(), "VotePending");
        assert_eq!(VoteResult::Lost.to_string(), "VoteLost");
        assert_eq!(VoteResult::Won.to_string(), "VoteWon");
    }
}
