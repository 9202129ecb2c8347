//! Majority quorums.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};

use super::{AckedIndexer, Index, VoteResult};

/// A set of voter ids that makes decisions by simple majority.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MajorityConfig {
    voters: BTreeSet<u64>,
}

impl MajorityConfig {
    /// An empty configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a voter; returns whether it was not present yet.
    pub fn insert(&mut self, id: u64) -> bool {
        self.voters.insert(id)
    }

    /// Removes a voter; returns whether it was present.
    pub fn remove(&mut self, id: u64) -> bool {
        self.voters.remove(&id)
    }

    /// Whether `id` is a voter of this configuration.
    pub fn contains(&self, id: u64) -> bool {
        self.voters.contains(&id)
    }

    /// The number of voters.
    pub fn len(&self) -> usize {
        self.voters.len()
    }

    /// Whether there are no voters.
    pub fn is_empty(&self) -> bool {
        self.voters.is_empty()
    }

    /// Removes every voter.
    pub fn clear(&mut self) {
        self.voters.clear();
    }

    /// The voters in ascending id order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.voters.iter().copied()
    }

    /// The voters as a sorted vector (etcd's `Slice`).
    pub fn to_vec(&self) -> Vec<u64> {
        self.iter().collect()
    }

    /// The voters as a set.
    pub fn as_set(&self) -> &BTreeSet<u64> {
        &self.voters
    }

    /// The largest index acknowledged by a majority of the voters.
    ///
    /// Voters `acked` knows nothing about count as having acknowledged index 0. The empty
    /// configuration commits [`Index::INFINITY`], so that in a joint configuration an empty half
    /// defers to the other half.
    pub fn committed_index(&self, acked: &impl AckedIndexer) -> Index {
        let n = self.voters.len();
        if n == 0 {
            return Index::INFINITY;
        }
        // As etcd: a stack buffer for small configurations, the heap only beyond 7 voters.
        let mut stk = [0u64; 7];
        let mut heap = Vec::new();
        let indexes: &mut [u64] = if n <= stk.len() {
            &mut stk[..n]
        } else {
            heap.resize(n, 0);
            &mut heap
        };
        for (slot, &id) in indexes.iter_mut().zip(&self.voters) {
            *slot = acked.acked_index(id).map_or(0, |idx| idx.0);
        }
        indexes.sort_unstable();
        // From the top of the sorted acks, go down `quorum` entries: that index (and all below)
        // is held by at least a quorum of voters.
        let quorum = n / 2 + 1;
        Index(indexes[n - quorum])
    }

    /// Tallies `votes` (voter id to granted or not) among this configuration's voters.
    ///
    /// The empty configuration wins every election, so that in a joint configuration an empty
    /// half defers to the other half.
    pub fn vote_result(&self, votes: &BTreeMap<u64, bool>) -> VoteResult {
        if self.voters.is_empty() {
            return VoteResult::Won;
        }
        let mut granted = 0;
        let mut missing = 0;
        for id in &self.voters {
            match votes.get(id) {
                None => missing += 1,
                Some(true) => granted += 1,
                Some(false) => {}
            }
        }
        let quorum = self.voters.len() / 2 + 1;
        if granted >= quorum {
            VoteResult::Won
        } else if granted + missing >= quorum {
            VoteResult::Pending
        } else {
            VoteResult::Lost
        }
    }

    /// A multi-line picture of the acknowledged indexes, as etcd's `Describe` draws it.
    ///
    /// A header line, then one line per voter in id order: a bar whose length is the rank of
    /// the voter's index among all (equal indexes get equal bars, `?` when unknown), the index
    /// and the id.
    pub fn describe(&self, acked: &impl AckedIndexer) -> String {
        if self.voters.is_empty() {
            return "<empty majority quorum>".to_owned();
        }
        struct Row {
            id: u64,
            idx: u64,
            known: bool,
            bar: usize,
        }
        let n = self.voters.len();
        let mut rows: Vec<Row> = self
            .voters
            .iter()
            .map(|&id| {
                let found = acked.acked_index(id);
                Row {
                    id,
                    idx: found.map_or(0, |idx| idx.0),
                    known: found.is_some(),
                    bar: 0,
                }
            })
            .collect();
        rows.sort_by_key(|row| (row.idx, row.id));
        for i in 1..rows.len() {
            if rows[i - 1].idx < rows[i].idx {
                rows[i].bar = i;
            } else {
                rows[i].bar = rows[i - 1].bar;
            }
        }
        rows.sort_by_key(|row| row.id);

        let mut out = String::new();
        out.push_str(&" ".repeat(n));
        out.push_str("    idx\n");
        for row in &rows {
            if row.known {
                out.push_str(&"x".repeat(row.bar));
                out.push('>');
                out.push_str(&" ".repeat(n - row.bar));
            } else {
                out.push('?');
                out.push_str(&" ".repeat(n));
            }
            // Writing into a String cannot fail.
            let _ = writeln!(out, " {:>5}    (id={})", row.idx, row.id);
        }
        out
    }
}

/// A deliberately naive [`MajorityConfig::committed_index`]: the highest acknowledged index that
/// at least a quorum of voters acknowledged (at or above). Used to cross-check the real one.
pub(crate) fn committed_index_by_counting(c: &MajorityConfig, acked: &impl AckedIndexer) -> Index {
    if c.is_empty() {
        return Index::INFINITY;
    }
    let acks: Vec<Index> = c.iter().filter_map(|id| acked.acked_index(id)).collect();
    let quorum = c.len() / 2 + 1;
    acks.iter()
        .copied()
        .filter(|&candidate| acks.iter().filter(|&&a| a >= candidate).count() >= quorum)
        .max()
        .unwrap_or(Index(0))
}

impl FromIterator<u64> for MajorityConfig {
    fn from_iter<T: IntoIterator<Item = u64>>(iter: T) -> Self {
        MajorityConfig {
            voters: iter.into_iter().collect(),
        }
    }
}

impl Extend<u64> for MajorityConfig {
    fn extend<T: IntoIterator<Item = u64>>(&mut self, iter: T) {
        self.voters.extend(iter);
    }
}

impl From<BTreeSet<u64>> for MajorityConfig {
    fn from(voters: BTreeSet<u64>) -> Self {
        MajorityConfig { voters }
    }
}

impl fmt::Display for MajorityConfig {
    /// `(1 2 3)`: the voters in ascending order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_id_set(f, self.voters.iter().copied())
    }
}

/// Writes ids as `(1 2 3)`, the way etcd prints a set of node ids.
pub(crate) fn write_id_set(
    w: &mut impl fmt::Write,
    ids: impl IntoIterator<Item = u64>,
) -> fmt::Result {
    w.write_char('(')?;
    for (i, id) in ids.into_iter().enumerate() {
        if i > 0 {
            w.write_char(' ')?;
        }
        write!(w, "{id}")?;
    }
    w.write_char(')')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn acked(pairs: &[(u64, u64)]) -> BTreeMap<u64, Index> {
        pairs.iter().map(|&(id, idx)| (id, Index(idx))).collect()
    }

    #[test]
    fn empty_config_commits_everything_and_wins() {
        let c = MajorityConfig::new();
        assert_eq!(c.committed_index(&acked(&[(1, 5)])), Index::INFINITY);
        assert_eq!(c.vote_result(&BTreeMap::new()), VoteResult::Won);
        assert_eq!(c.describe(&acked(&[])), "<empty majority quorum>");
        assert_eq!(c.to_string(), "()");
    }

    #[test]
    fn committed_index_is_the_quorum_th_highest_ack() {
        let c: MajorityConfig = [1, 2, 3].into_iter().collect();
        assert_eq!(c.committed_index(&acked(&[(1, 12)])), Index(0));
        assert_eq!(c.committed_index(&acked(&[(1, 12), (2, 5)])), Index(5));
        assert_eq!(
            c.committed_index(&acked(&[(1, 12), (2, 5), (3, 8)])),
            Index(8)
        );
        // Acks from non-voters do not count.
        assert_eq!(c.committed_index(&acked(&[(1, 12), (9, 100)])), Index(0));

        let c: MajorityConfig = [1, 2, 3, 4].into_iter().collect();
        assert_eq!(
            c.committed_index(&acked(&[(1, 9), (2, 8), (3, 7), (4, 6)])),
            Index(7)
        );
    }

    #[test]
    fn vote_result_needs_a_majority() {
        let c: MajorityConfig = [1, 2, 3].into_iter().collect();
        let votes = |v: &[(u64, bool)]| v.iter().copied().collect::<BTreeMap<_, _>>();
        assert_eq!(c.vote_result(&votes(&[])), VoteResult::Pending);
        assert_eq!(c.vote_result(&votes(&[(1, true)])), VoteResult::Pending);
        assert_eq!(
            c.vote_result(&votes(&[(1, true), (2, true)])),
            VoteResult::Won
        );
        assert_eq!(
            c.vote_result(&votes(&[(1, true), (2, false)])),
            VoteResult::Pending
        );
        assert_eq!(
            c.vote_result(&votes(&[(1, false), (2, false)])),
            VoteResult::Lost
        );
        // Votes from non-voters are ignored.
        assert_eq!(
            c.vote_result(&votes(&[(1, true), (7, true)])),
            VoteResult::Pending
        );
    }

    #[test]
    fn describe_draws_ranked_bars() {
        let c: MajorityConfig = [1, 2, 3, 4].into_iter().collect();
        let got = c.describe(&acked(&[(1, 7), (2, 9), (4, 7)]));
        let want = [
            "        idx",
            "x>        7    (id=1)",
            "xxx>      9    (id=2)",
            "?         0    (id=3)",
            "x>        7    (id=4)",
        ];
        assert_eq!(got, want.join("\n") + "\n");
    }

    #[test]
    fn display_lists_sorted_ids() {
        let c: MajorityConfig = [3, 1, 2].into_iter().collect();
        assert_eq!(c.to_string(), "(1 2 3)");
        assert_eq!(c.to_vec(), vec![1, 2, 3]);
    }

    proptest! {
        #[test]
        fn committed_index_matches_alternative(
            voters in proptest::collection::btree_set(0u64..20, 0..10),
            acks in proptest::collection::btree_map(0u64..20, 0u64..10, 0..10),
        ) {
            let c: MajorityConfig = voters.into_iter().collect();
            let l: BTreeMap<u64, Index> = acks.into_iter().map(|(id, idx)| (id, Index(idx))).collect();
            prop_assert_eq!(c.committed_index(&l), committed_index_by_counting(&c, &l));
        }
    }
}
