//! The safety checker: a history-independent record of what the cluster has done, fed by the
//! simulator (or by hand, to prove it can fail), that reports the first violation of Raft's
//! safety properties (Raft paper, figure 3).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// Which property was violated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Two leaders in one term.
    ElectionSafety,
    /// Two logs with an entry of the same index and term that differ at or before it.
    LogMatching,
    /// A leader whose log lacks an entry committed before its term.
    LeaderCompleteness,
    /// Two nodes applied different entries (or reached different states) at one index.
    StateMachineSafety,
    /// A node's commit index or term went backwards within a lifetime, or below its stable state.
    Regression,
    /// A linearizable read (ReadIndex) returned an index below a write that had completed
    /// before the read was requested.
    StaleRead,
    /// Entries applied out of order, or the Ready contract was broken.
    ReadyContract,
    /// The cluster did not recover after the faults stopped.
    Liveness,
    /// Raft (or the simulator) panicked.
    Panic,
}

/// A violated property, with the details needed to understand it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub kind: Kind,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.detail)
    }
}

pub fn violation(kind: Kind, detail: impl Into<String>) -> Violation {
    Violation {
        kind,
        detail: detail.into(),
    }
}

/// Everything observed so far, across all nodes, crashes and restarts.
#[derive(Default, Debug)]
pub struct Checker {
    /// term → the node that led it.
    leaders: HashMap<u64, u64>,
    /// (index, term) → (content hash, term of the previous entry, first node seen with it).
    /// Raft creates each (index, term) exactly once, with one predecessor, so any log that
    /// agrees with this map entry by entry satisfies log matching with every other log.
    entries: HashMap<(u64, u64), (u64, u64, u64)>,
    /// index → term of the entry known committed there.
    committed: BTreeMap<u64, (u64, u64)>,
    /// index → (term, content, node) of the entry applied there.
    applied: HashMap<u64, (u64, u64, u64)>,
    /// index → hash of the state machine after applying up to it.
    states: HashMap<u64, (u64, u64)>,
    /// How many leaders were seen (for statistics).
    pub elections: u64,
}

impl Checker {
    /// Node `id` is leader of `term`; `log_term(i)` is its log's term at `i` (None if compacted
    /// or beyond its log), and `last_index` its last index. Checks election safety and, the
    /// first time, leader completeness.
    pub fn leader(
        &mut self,
        id: u64,
        term: u64,
        first_index: u64,
        last_index: u64,
        log_term: impl Fn(u64) -> Option<u64>,
    ) -> Result<(), Violation> {
        match self.leaders.get(&term) {
            Some(&other) if other == id => return Ok(()),
            Some(&other) => {
                return Err(violation(
                    Kind::ElectionSafety,
                    format!("nodes {other} and {id} are both leaders of term {term}"),
                ));
            }
            None => {}
        }
        self.leaders.insert(term, id);
        self.elections += 1;
        if let Some((&max, _)) = self.committed.last_key_value()
            && max > last_index
        {
            return Err(violation(
                Kind::LeaderCompleteness,
                format!(
                    "leader {id} of term {term} has last index {last_index}, but index {max} is committed"
                ),
            ));
        }
        for (&index, &(t, by)) in self.committed.range(first_index..) {
            let have = log_term(index);
            if have != Some(t) {
                return Err(violation(
                    Kind::LeaderCompleteness,
                    format!(
                        "leader {id} of term {term} has term {have:?} at index {index}, \
                         but the entry of term {t} there was committed (seen on node {by})"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Node `id` persisted the entry (`index`, `term`) with `content`, after an entry of term
    /// `prev_term` (None: unknown, e.g. compacted).
    pub fn persisted(
        &mut self,
        id: u64,
        index: u64,
        term: u64,
        content: u64,
        prev_term: Option<u64>,
    ) -> Result<(), Violation> {
        match self.entries.get(&(index, term)) {
            None => {
                if let Some(prev) = prev_term {
                    self.entries.insert((index, term), (content, prev, id));
                }
                Ok(())
            }
            Some(&(c, p, by)) => {
                if c != content {
                    return Err(violation(
                        Kind::LogMatching,
                        format!(
                            "entry ({index}, term {term}) on node {id} has content {content:x}, \
                             node {by} had {c:x}"
                        ),
                    ));
                }
                if let Some(prev) = prev_term
                    && prev != p
                {
                    return Err(violation(
                        Kind::LogMatching,
                        format!(
                            "entry ({index}, term {term}) on node {id} follows term {prev}, \
                             on node {by} it followed term {p}: the logs differ before it"
                        ),
                    ));
                }
                Ok(())
            }
        }
    }

    /// Node `id` knows the entry at `index` of `term` to be committed.
    pub fn committed(&mut self, id: u64, index: u64, term: u64) -> Result<(), Violation> {
        match self.committed.get(&index) {
            None => {
                self.committed.insert(index, (term, id));
                Ok(())
            }
            Some(&(t, _)) if t == term => Ok(()),
            Some(&(t, by)) => Err(violation(
                Kind::StateMachineSafety,
                format!(
                    "node {id} committed term {term} at index {index}, node {by} committed term {t}"
                ),
            )),
        }
    }

    /// Node `id` applied the entry (`index`, `term`, `content`), reaching state `state`.
    pub fn applied(
        &mut self,
        id: u64,
        index: u64,
        term: u64,
        content: u64,
        state: u64,
    ) -> Result<(), Violation> {
        match self.applied.get(&index) {
            None => {
                self.applied.insert(index, (term, content, id));
            }
            Some(&(t, c, by)) => {
                if (t, c) != (term, content) {
                    return Err(violation(
                        Kind::StateMachineSafety,
                        format!(
                            "node {id} applied (term {term}, content {content:x}) at index \
                             {index}, node {by} applied (term {t}, content {c:x})"
                        ),
                    ));
                }
            }
        }
        self.committed(id, index, term)?;
        self.state(id, index, state)
    }

    /// Node `id`'s state machine after applying up to `index` is `state` (e.g. restored from
    /// a snapshot): it must be everybody's state at that index.
    pub fn state(&mut self, id: u64, index: u64, state: u64) -> Result<(), Violation> {
        match self.states.get(&index) {
            None => {
                self.states.insert(index, (state, id));
                Ok(())
            }
            Some(&(s, _)) if s == state => Ok(()),
            Some(&(s, by)) => Err(violation(
                Kind::StateMachineSafety,
                format!(
                    "node {id} has state {state:x} after index {index}, node {by} had {s:x}: \
                     the applied sequences diverge"
                ),
            )),
        }
    }

    /// The term of the entry known committed at `index`.
    pub fn committed_term(&self, index: u64) -> Option<u64> {
        self.committed.get(&index).map(|&(t, _)| t)
    }
}
