//! What clients recorded, and the checks run over it after a run: linearizability per key,
//! acknowledged writes present in the store's own event history, revisions that only increase,
//! watch streams that deliver every event exactly once in order, and values that carry the
//! revision of the write that made them.

use std::collections::{BTreeMap, HashMap};

use linearizability::{Input, Operation, Outcome, Output, Verdict};

use crate::client::Event;

/// What an operation asked.
#[derive(Clone, Debug)]
pub enum Kind {
    /// A put of a unique value.
    Put(String),
    /// A read; `serializable` reads may be stale and are not checked for linearizability.
    Get {
        /// Served locally by the member, without a ReadIndex round.
        serializable: bool,
    },
    /// A delete of the key.
    Delete,
    /// A compare-and-set transaction.
    Cas {
        /// The value compared with (`None`: key absent).
        expect: Option<String>,
        /// The value written if the comparison holds.
        value: String,
    },
}

/// How it ended.
#[derive(Clone, Debug)]
pub enum Result {
    /// An error or timeout: a write may or may not have happened; a read says nothing.
    Unknown,
    /// A put, at this revision.
    Put {
        /// The header revision (the put's own revision).
        rev: i64,
    },
    /// A read at header revision `rev`: the value and its mod revision, if any.
    Get {
        /// The header revision.
        rev: i64,
        /// The value read and its mod revision.
        kv: Option<(String, i64)>,
    },
    /// A delete at header revision `rev`.
    Delete {
        /// The header revision (the delete's revision when it deleted).
        rev: i64,
        /// Whether the key existed.
        deleted: bool,
    },
    /// A compare-and-set at header revision `rev`.
    Cas {
        /// The header revision.
        rev: i64,
        /// Whether the comparison held (and the put happened).
        succeeded: bool,
    },
}

/// One recorded operation.
#[derive(Clone, Debug)]
pub struct Record {
    /// The client.
    pub client: u64,
    /// The member it was sent to.
    pub member: usize,
    /// The key.
    pub key: String,
    /// Call time (ns since the run started).
    pub call: u64,
    /// Return time (ns since the run started).
    pub ret: u64,
    /// What it asked.
    pub kind: Kind,
    /// How it ended.
    pub result: Result,
}

impl Record {
    /// The header revision of an answered operation.
    pub fn rev(&self) -> Option<i64> {
        match self.result {
            Result::Unknown => None,
            Result::Put { rev }
            | Result::Get { rev, .. }
            | Result::Delete { rev, .. }
            | Result::Cas { rev, .. } => Some(rev),
        }
    }

    fn is_serializable(&self) -> bool {
        matches!(self.kind, Kind::Get { serializable: true })
    }

    /// As an operation for the linearizability checker; `None` for serializable reads and for
    /// reads that did not answer (they constrain nothing).
    pub fn to_operation(&self) -> Option<Operation> {
        let input = match &self.kind {
            Kind::Put(v) => Input::Put(v.clone()),
            Kind::Get { serializable: true } => return None,
            Kind::Get { .. } => Input::Get,
            Kind::Delete => Input::Delete,
            Kind::Cas { expect, value } => Input::Cas {
                expect: expect.clone(),
                value: value.clone(),
            },
        };
        let outcome = match &self.result {
            Result::Unknown if matches!(input, Input::Get) => return None,
            Result::Unknown => Outcome::Unknown,
            Result::Put { .. } => Outcome::Ok(Output::Put),
            Result::Get { kv, .. } => Outcome::Ok(Output::Get(kv.as_ref().map(|(v, _)| v.clone()))),
            Result::Delete { deleted, .. } => Outcome::Ok(Output::Delete { deleted: *deleted }),
            Result::Cas { succeeded, .. } => Outcome::Ok(Output::Cas {
                succeeded: *succeeded,
            }),
        };
        Some(Operation {
            client: self.client,
            call: self.call,
            ret: self.ret,
            input,
            outcome,
        })
    }
}

/// One broken guarantee.
#[derive(Clone, Debug)]
pub struct Violation {
    /// Which check found it.
    pub check: &'static str,
    /// What exactly (with the minimal sub-history for linearizability).
    pub detail: String,
}

/// Counters of what the checks looked at.
#[derive(Clone, Debug, Default)]
pub struct Checked {
    /// Operations given to the linearizability checker.
    pub linearizability_ops: usize,
    /// Keys whose search ran out of budget (neither proved nor refuted).
    pub inconclusive_keys: usize,
    /// Watch events compared.
    pub watch_events: usize,
}

/// Resolves the outcome of unknown writes from the store's own history (a complete watch from
/// the run's first revision), so the search does not have to consider every place an unknown
/// write might have taken effect. Values are unique, so:
///
/// - an unknown put or compare-and-set whose value is not in the history never took effect:
///   dropped;
/// - one whose value is in the history at revision `r` did: it becomes acknowledged, returning
///   no later than the first answered operation with a revision at or after `r` (or it stays
///   unknown if there is none);
/// - unknown deletes of a key whose every delete event is an acknowledged delete's deleted
///   nothing: dropped.
///
/// If the history is wrong (misses a write that reads saw), the reads become unexplainable and
/// the check fails: the store's history and its reads disagree, itself a violation.
pub fn resolve_unknowns(records: &[Record], reference: &[Event]) -> Vec<Record> {
    let put_rev: HashMap<&str, i64> = reference
        .iter()
        .filter_map(|e| e.2.as_deref().map(|v| (v, e.0)))
        .collect();
    let acked_deletes: std::collections::HashSet<i64> = records
        .iter()
        .filter_map(|r| match (&r.kind, &r.result) {
            (Kind::Delete, Result::Delete { rev, deleted: true }) => Some(*rev),
            _ => None,
        })
        .collect();
    let keys_with_unexplained_deletes: std::collections::HashSet<&str> = reference
        .iter()
        .filter(|e| e.2.is_none() && !acked_deletes.contains(&e.0))
        .map(|e| e.1.as_str())
        .collect();
    // Earliest return among answered linearizable operations with a revision >= r.
    let mut answered: Vec<(i64, u64)> = records
        .iter()
        .filter(|r| !r.is_serializable())
        .filter_map(|r| r.rev().map(|rev| (rev, r.ret)))
        .collect();
    answered.sort_unstable();
    let mut suffix_min = vec![u64::MAX; answered.len() + 1];
    for i in (0..answered.len()).rev() {
        suffix_min[i] = suffix_min[i + 1].min(answered[i].1);
    }
    let returned_by = |rev: i64| -> u64 {
        let i = answered.partition_point(|(r, _)| *r < rev);
        suffix_min[i]
    };
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        if !matches!(r.result, Result::Unknown) {
            out.push(r.clone());
            continue;
        }
        match &r.kind {
            Kind::Put(v) | Kind::Cas { value: v, .. } => {
                let Some(&rev) = put_rev.get(v.as_str()) else {
                    continue;
                };
                let ret = returned_by(rev);
                if ret == u64::MAX || ret < r.call {
                    out.push(r.clone());
                    continue;
                }
                let result = match r.kind {
                    Kind::Put(_) => Result::Put { rev },
                    _ => Result::Cas {
                        rev,
                        succeeded: true,
                    },
                };
                out.push(Record {
                    ret,
                    result,
                    ..r.clone()
                });
            }
            Kind::Delete => {
                if keys_with_unexplained_deletes.contains(r.key.as_str()) {
                    out.push(r.clone());
                }
            }
            Kind::Get { .. } => {}
        }
    }
    out
}

/// Budget of search steps per key.
const BUDGET: u64 = 5_000_000;

/// Linearizability of every key's sub-history.
pub fn check_linearizability(records: &[Record], checked: &mut Checked, out: &mut Vec<Violation>) {
    let ops: Vec<(String, Operation)> = records
        .iter()
        .filter_map(|r| r.to_operation().map(|o| (r.key.clone(), o)))
        .collect();
    checked.linearizability_ops += ops.len();
    match linearizability::check_history(&ops, BUDGET) {
        Err(e) => out.push(Violation {
            check: "history",
            detail: format!("malformed history: {e}"),
        }),
        Ok(reports) => {
            for r in reports {
                match r.verdict {
                    Verdict::Linearizable => {}
                    Verdict::Unknown => checked.inconclusive_keys += 1,
                    Verdict::NotLinearizable => {
                        let lines: Vec<String> =
                            r.minimal.iter().map(|o| format!("    {o}")).collect();
                        out.push(Violation {
                            check: "linearizability",
                            detail: format!(
                                "key {:?} ({} operations) is not linearizable; minimal sub-history \
                                 ({} operations, times in ns since the start):\n{}",
                                r.key,
                                r.operations,
                                r.minimal.len(),
                                lines.join("\n")
                            ),
                        });
                    }
                }
            }
        }
    }
}

/// Revisions only increase in real time: an operation (write, or linearizable read) that
/// starts after another one returned sees at least its revision. Serializable reads only
/// increase per client and member.
pub fn check_revisions(records: &[Record], out: &mut Vec<Violation>) {
    let mut lin: Vec<&Record> = records
        .iter()
        .filter(|r| !r.is_serializable() && r.rev().is_some())
        .collect();
    let mut by_ret = lin.clone();
    by_ret.sort_by_key(|r| r.ret);
    lin.sort_by_key(|r| r.call);
    let mut j = 0;
    let mut max: Option<&Record> = None;
    let mut found = 0;
    for b in lin {
        while j < by_ret.len() && by_ret[j].ret < b.call {
            if max.is_none_or(|m| by_ret[j].rev() > m.rev()) {
                max = Some(by_ret[j]);
            }
            j += 1;
        }
        if let Some(a) = max
            && b.rev() < a.rev()
        {
            found += 1;
            if found <= 5 {
                out.push(Violation {
                    check: "revisions",
                    detail: format!(
                        "revision went back in real time: {a:?} returned revision {:?}, then {b:?} \
                         (called after it returned) revision {:?}",
                        a.rev(),
                        b.rev()
                    ),
                });
            }
        }
    }
    let mut last: HashMap<(u64, usize), &Record> = HashMap::new();
    let mut serial: Vec<&Record> = records
        .iter()
        .filter(|r| r.is_serializable() && r.rev().is_some())
        .collect();
    serial.sort_by_key(|r| r.call);
    for r in serial {
        if let Some(prev) = last.get(&(r.client, r.member))
            && r.rev() < prev.rev()
        {
            out.push(Violation {
                check: "revisions",
                detail: format!(
                    "serializable reads of client {} on member {} went back: {prev:?} then {r:?}",
                    r.client, r.member
                ),
            });
        }
        last.insert((r.client, r.member), r);
    }
}

/// Values and revisions agree: every value read (linearizable or serializable) was written
/// by some put or compare-and-set, and carries the revision its acknowledged write returned.
pub fn check_values(records: &[Record], out: &mut Vec<Violation>) {
    let mut written: HashMap<&str, Option<i64>> = HashMap::new();
    for r in records {
        let (v, succeeded_rev) = match (&r.kind, &r.result) {
            (Kind::Put(v), Result::Put { rev }) => (v, Some(*rev)),
            (Kind::Put(v), _) => (v, None),
            (
                Kind::Cas { value, .. },
                Result::Cas {
                    rev,
                    succeeded: true,
                },
            ) => (value, Some(*rev)),
            (Kind::Cas { value, .. }, Result::Unknown) => (value, None),
            _ => continue,
        };
        let e = written.entry(v.as_str()).or_insert(None);
        if succeeded_rev.is_some() {
            *e = succeeded_rev;
        }
    }
    for r in records {
        if let Result::Get {
            kv: Some((v, mod_rev)),
            ..
        } = &r.result
        {
            match written.get(v.as_str()) {
                None => out.push(Violation {
                    check: "values",
                    detail: format!("read of a value never written: {r:?}"),
                }),
                Some(Some(rev)) if rev != mod_rev => out.push(Violation {
                    check: "values",
                    detail: format!(
                        "value {v:?} was acknowledged at revision {rev} but read with mod revision {mod_rev}: {r:?}"
                    ),
                }),
                _ => {}
            }
        }
    }
}

/// Every acknowledged write is in the store's event history (a watch from the run's first
/// revision after the run), at the revision it was acknowledged with, and that history holds
/// nothing that was never written.
pub fn check_acknowledged(records: &[Record], reference: &[Event], out: &mut Vec<Violation>) {
    let by_rev: BTreeMap<i64, &Event> = reference.iter().map(|e| (e.0, e)).collect();
    let mut missing = 0;
    for r in records {
        let want: (i64, Option<&str>) = match (&r.kind, &r.result) {
            (Kind::Put(v), Result::Put { rev }) => (*rev, Some(v)),
            (
                Kind::Cas { value, .. },
                Result::Cas {
                    rev,
                    succeeded: true,
                },
            ) => (*rev, Some(value)),
            (Kind::Delete, Result::Delete { rev, deleted: true }) => (*rev, None),
            _ => continue,
        };
        let ok = by_rev
            .get(&want.0)
            .is_some_and(|e| e.1 == r.key && e.2.as_deref() == want.1);
        if !ok {
            missing += 1;
            if missing <= 5 {
                out.push(Violation {
                    check: "acknowledged writes",
                    detail: format!(
                        "acknowledged write not in the store's history at revision {}: {r:?}; the history has {:?}",
                        want.0,
                        by_rev.get(&want.0)
                    ),
                });
            }
        }
    }
    if missing > 5 {
        out.push(Violation {
            check: "acknowledged writes",
            detail: format!("{missing} acknowledged writes missing in all"),
        });
    }
    let mut values: HashMap<&str, ()> = HashMap::new();
    for r in records {
        match &r.kind {
            Kind::Put(v) | Kind::Cas { value: v, .. } => {
                values.insert(v, ());
            }
            _ => {}
        }
    }
    for e in reference {
        if let Some(v) = &e.2
            && !values.contains_key(v.as_str())
        {
            out.push(Violation {
                check: "acknowledged writes",
                detail: format!("the store's history holds a value never written: {e:?}"),
            });
        }
    }
}

/// The store's history itself is in strictly increasing revision order (each revision of the
/// workload changes one key).
pub fn check_reference(reference: &[Event], out: &mut Vec<Violation>) {
    for w in reference.windows(2) {
        if w[1].0 <= w[0].0 {
            out.push(Violation {
                check: "watch",
                detail: format!("reference watch out of order: {:?} then {:?}", w[0], w[1]),
            });
            return;
        }
    }
}

/// A watcher's events equal the store's history from the same start: every event, exactly
/// once, in revision order, no gaps.
pub fn check_watcher(
    name: &str,
    events: &[Event],
    reference: &[Event],
    checked: &mut Checked,
    out: &mut Vec<Violation>,
) {
    checked.watch_events += events.len();
    for (i, e) in events.iter().enumerate() {
        match reference.get(i) {
            Some(r) if r == e => {}
            other => {
                let before = if i > 0 { Some(&events[i - 1]) } else { None };
                out.push(Violation {
                    check: "watch",
                    detail: format!(
                        "{name}: event {i} is {e:?} (after {before:?}) but the store's history has {other:?} \
                         (duplicate, gap or reorder)"
                    ),
                });
                return;
            }
        }
    }
    if events.len() < reference.len() {
        out.push(Violation {
            check: "watch",
            detail: format!(
                "{name}: received {} events of {}; first missing {:?}",
                events.len(),
                reference.len(),
                reference.get(events.len())
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn rec(client: u64, key: &str, call: u64, ret: u64, kind: Kind, result: Result) -> Record {
        Record {
            client,
            member: 0,
            key: key.to_owned(),
            call,
            ret,
            kind,
            result,
        }
    }

    fn put(client: u64, call: u64, ret: u64, v: &str, rev: i64) -> Record {
        rec(
            client,
            "k",
            call,
            ret,
            Kind::Put(v.into()),
            Result::Put { rev },
        )
    }

    fn get(client: u64, call: u64, ret: u64, v: Option<(&str, i64)>, rev: i64) -> Record {
        rec(
            client,
            "k",
            call,
            ret,
            Kind::Get {
                serializable: false,
            },
            Result::Get {
                rev,
                kv: v.map(|(v, r)| (v.to_owned(), r)),
            },
        )
    }

    fn ev(rev: i64, v: Option<&str>) -> Event {
        (rev, "k".to_owned(), v.map(str::to_owned))
    }

    #[test]
    fn a_clean_history_passes_every_check() {
        let records = vec![
            put(1, 0, 10, "a", 2),
            get(2, 20, 30, Some(("a", 2)), 2),
            put(1, 40, 50, "b", 3),
        ];
        let reference = vec![ev(2, Some("a")), ev(3, Some("b"))];
        let mut out = Vec::new();
        let mut checked = Checked::default();
        check_linearizability(&records, &mut checked, &mut out);
        check_revisions(&records, &mut out);
        check_values(&records, &mut out);
        check_acknowledged(&records, &reference, &mut out);
        check_reference(&reference, &mut out);
        check_watcher("w", &reference, &reference, &mut checked, &mut out);
        assert!(out.is_empty(), "{out:#?}");
        assert_eq!(checked.linearizability_ops, 3);
    }

    #[test]
    fn each_check_catches_its_violation() {
        // A stale read with a revision going back.
        let records = vec![
            put(1, 0, 10, "a", 2),
            put(1, 20, 30, "b", 3),
            get(2, 40, 50, Some(("a", 2)), 2),
        ];
        let mut out = Vec::new();
        check_linearizability(&records, &mut Checked::default(), &mut out);
        assert_eq!(out.len(), 1, "{out:#?}");
        assert_eq!(out[0].check, "linearizability");
        out.clear();
        check_revisions(&records, &mut out);
        assert_eq!(out.len(), 1, "{out:#?}");
        // A value read with the wrong mod revision.
        out.clear();
        check_values(
            &[put(1, 0, 10, "a", 2), get(2, 20, 30, Some(("a", 7)), 7)],
            &mut out,
        );
        assert_eq!(out.len(), 1, "{out:#?}");
        // An acknowledged write missing from the store's history.
        out.clear();
        check_acknowledged(&[put(1, 0, 10, "a", 2)], &[], &mut out);
        assert_eq!(out.len(), 1, "{out:#?}");
        // A watcher with a duplicate, and one with a gap.
        let reference = vec![ev(2, Some("a")), ev(3, Some("b")), ev(4, None)];
        out.clear();
        let dup = vec![ev(2, Some("a")), ev(2, Some("a")), ev(3, Some("b"))];
        check_watcher("dup", &dup, &reference, &mut Checked::default(), &mut out);
        assert_eq!(out.len(), 1, "{out:#?}");
        out.clear();
        let gap = vec![ev(2, Some("a")), ev(4, None)];
        check_watcher("gap", &gap, &reference, &mut Checked::default(), &mut out);
        assert_eq!(out.len(), 1, "{out:#?}");
    }

    #[test]
    fn unknown_writes_are_resolved_from_the_store_history() {
        let records = vec![
            rec(1, "k", 0, 10, Kind::Put("lost".into()), Result::Unknown),
            rec(1, "k", 20, 30, Kind::Put("kept".into()), Result::Unknown),
            get(2, 100, 110, Some(("kept", 5)), 5),
        ];
        let resolved = resolve_unknowns(&records, &[ev(5, Some("kept"))]);
        assert_eq!(resolved.len(), 2);
        assert!(matches!(resolved[0].result, Result::Put { rev: 5 }));
        assert_eq!(resolved[0].ret, 110);
        let mut out = Vec::new();
        check_linearizability(&resolved, &mut Checked::default(), &mut out);
        assert!(out.is_empty(), "{out:#?}");
    }
}
