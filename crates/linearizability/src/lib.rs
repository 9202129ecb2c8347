//! A linearizability checker for histories of key-value operations, the kind a client of an
//! etcd-compatible store records: puts, gets, deletes and compare-and-set transactions on one
//! key, each with the time it was called, the time it returned and what it returned.
//!
//! - A history is **partitioned per key** ([`partition`]): operations on different keys commute
//!   in the model, so the whole history is linearizable iff every key's sub-history is (the
//!   locality of linearizability, Herlihy & Wing).
//! - Each key's sub-history is searched with **Wing & Gong's algorithm** and **Porcupine's
//!   memoization** (a cache of (set of linearized operations, model state) already explored),
//!   bounded by a step budget: past it the answer is [`Verdict::Unknown`], never a hang.
//! - An operation whose outcome the client does not know (a timeout, a dropped connection) may
//!   or may not have taken effect: it is modelled as returning at +infinity with any output
//!   ([`Outcome::Unknown`]). An operation that definitely failed had no effect and is simply
//!   not recorded.
//! - A failing key's sub-history is **minimized** ([`minimize`]) with steps that are sound: a
//!   read is dropped, a write is weakened to an unknown outcome. Each step keeps a linearizable
//!   history linearizable, so the minimized history failing proves the original one fails.
//!
//! The crate does no IO: times are plain numbers (e.g. nanoseconds since a run started).

use std::collections::{BTreeMap, HashSet};
use std::fmt;

/// A value stored under a key. Writers make values unique, so a read identifies its write.
pub type Value = String;

/// What an operation asked of one key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Input {
    /// Read the key's value.
    Get,
    /// Set the key's value.
    Put(Value),
    /// Delete the key.
    Delete,
    /// If the key's value is `expect` (`None`: the key does not exist), set it to `value`.
    Cas {
        /// The value compared with (`None`: the key must be absent).
        expect: Option<Value>,
        /// The value written when the comparison holds.
        value: Value,
    },
}

/// What a completed operation returned.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Output {
    /// A get's answer: the value, or `None` if the key did not exist.
    Get(Option<Value>),
    /// A put was acknowledged.
    Put,
    /// A delete was acknowledged; `deleted` says whether the key existed.
    Delete {
        /// Whether a key was deleted (etcd's `deleted` count was 1).
        deleted: bool,
    },
    /// A compare-and-set was acknowledged; `succeeded` says whether the comparison held.
    Cas {
        /// etcd's `TxnResponse.succeeded`.
        succeeded: bool,
    },
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It returned `Output` at its return time.
    Ok(Output),
    /// The client does not know: it may or may not have taken effect, at any time after its
    /// call. Modelled as returning at +infinity with any output.
    Unknown,
}

/// One operation on one key by one client.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Operation {
    /// The client that issued it (for printing; clients are sequential).
    pub client: u64,
    /// When it was called.
    pub call: u64,
    /// When it returned (ignored when the outcome is unknown).
    pub ret: u64,
    /// What it asked.
    pub input: Input,
    /// How it ended.
    pub outcome: Outcome,
}

impl Operation {
    /// The return time the search uses: +infinity for an unknown outcome.
    fn effective_ret(&self) -> u64 {
        match self.outcome {
            Outcome::Ok(_) => self.ret,
            Outcome::Unknown => u64::MAX,
        }
    }

    /// Whether the operation cannot change the key (a read, a failed compare, a delete of an
    /// absent key), so that dropping it keeps a linearizable history linearizable.
    fn is_read_only(&self) -> bool {
        matches!(
            (&self.input, &self.outcome),
            (Input::Get, _)
                | (
                    Input::Cas { .. },
                    Outcome::Ok(Output::Cas { succeeded: false })
                )
                | (
                    Input::Delete,
                    Outcome::Ok(Output::Delete { deleted: false })
                )
        )
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let input = match &self.input {
            Input::Get => "get".to_owned(),
            Input::Put(v) => format!("put {v:?}"),
            Input::Delete => "delete".to_owned(),
            Input::Cas { expect, value } => format!("cas {expect:?} -> {value:?}"),
        };
        match &self.outcome {
            Outcome::Ok(out) => {
                let out = match out {
                    Output::Get(v) => format!("{v:?}"),
                    Output::Put => "ok".to_owned(),
                    Output::Delete { deleted } => format!("deleted={deleted}"),
                    Output::Cas { succeeded } => format!("succeeded={succeeded}"),
                };
                write!(
                    f,
                    "[{:>12} .. {:>12}] client {:>3}: {input} => {out}",
                    self.call, self.ret, self.client
                )
            }
            Outcome::Unknown => write!(
                f,
                "[{:>12} .. {:>12}] client {:>3}: {input} => unknown (may or may not have taken effect)",
                self.call, "inf", self.client
            ),
        }
    }
}

/// An operation whose output does not match its input (a programming error of the recorder).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// The output kind does not answer the input kind.
    #[error("operation {index}: output {output:?} does not answer input {input:?}")]
    Mismatch {
        /// The operation's index in the sub-history.
        index: usize,
        /// Its input.
        input: Input,
        /// Its output.
        output: Output,
    },
    /// An operation returned before it was called.
    #[error("operation {index}: returned at {ret} before its call at {call}")]
    ReturnBeforeCall {
        /// The operation's index in the sub-history.
        index: usize,
        /// Its call time.
        call: u64,
        /// Its return time.
        ret: u64,
    },
}

/// The answer of a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A linearization exists.
    Linearizable,
    /// No linearization exists.
    NotLinearizable,
    /// The step budget ran out before an answer.
    Unknown,
}

/// The model: one key's value (`None`: absent). Steps an operation from `state`; `None` when
/// the operation's output is impossible in that state.
fn step(state: &Option<Value>, input: &Input, outcome: &Outcome) -> Option<Option<Value>> {
    match (input, outcome) {
        (Input::Get, Outcome::Unknown) => Some(state.clone()),
        (Input::Get, Outcome::Ok(Output::Get(v))) => (v == state).then(|| state.clone()),
        (Input::Put(v), _) => Some(Some(v.clone())),
        (Input::Delete, Outcome::Unknown) => Some(None),
        (Input::Delete, Outcome::Ok(Output::Delete { deleted })) => {
            (*deleted == state.is_some()).then_some(None)
        }
        (Input::Cas { expect, value }, outcome) => {
            let holds = expect == state;
            match outcome {
                Outcome::Unknown => Some(if holds {
                    Some(value.clone())
                } else {
                    state.clone()
                }),
                Outcome::Ok(Output::Cas { succeeded }) if *succeeded == holds => Some(if holds {
                    Some(value.clone())
                } else {
                    state.clone()
                }),
                _ => None,
            }
        }
        // Kinds that do not match were refused by `validate`.
        _ => None,
    }
}

/// Checks that every operation's output answers its input and that it returns after its call.
pub fn validate(ops: &[Operation]) -> Result<(), CheckError> {
    for (index, op) in ops.iter().enumerate() {
        if let Outcome::Ok(output) = &op.outcome {
            let fits = matches!(
                (&op.input, output),
                (Input::Get, Output::Get(_))
                    | (Input::Put(_), Output::Put)
                    | (Input::Delete, Output::Delete { .. })
                    | (Input::Cas { .. }, Output::Cas { .. })
            );
            if !fits {
                return Err(CheckError::Mismatch {
                    index,
                    input: op.input.clone(),
                    output: output.clone(),
                });
            }
            if op.ret < op.call {
                return Err(CheckError::ReturnBeforeCall {
                    index,
                    call: op.call,
                    ret: op.ret,
                });
            }
        }
    }
    Ok(())
}

/// A fixed-size set of operation indices.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct BitSet(Vec<u64>);

impl BitSet {
    fn new(n: usize) -> BitSet {
        BitSet(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// The result of one search, with the number of steps taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Search {
    /// The answer.
    pub verdict: Verdict,
    /// Steps taken (each tries one operation or backtracks once).
    pub steps: u64,
}

/// Checks one key's sub-history (operations on a single key, in any order), taking at most
/// `budget` steps. The initial state is the key absent.
pub fn check_operations(ops: &[Operation], budget: u64) -> Result<Search, CheckError> {
    validate(ops)?;
    Ok(search(ops, &None, budget))
}

/// Like [`check_operations`] from an initial value of the key.
pub fn check_operations_from(
    ops: &[Operation],
    initial: &Option<Value>,
    budget: u64,
) -> Result<Search, CheckError> {
    validate(ops)?;
    Ok(search(ops, initial, budget))
}

/// Wing & Gong's search over a doubly linked list of call and return events (dancing links on
/// index arrays), with Porcupine's cache of explored (linearized set, state) pairs.
fn search(ops: &[Operation], initial: &Option<Value>, budget: u64) -> Search {
    let n = ops.len();
    if n == 0 {
        return Search {
            verdict: Verdict::Linearizable,
            steps: 0,
        };
    }
    // A read of a value no operation wrote (nor the initial state holds) can never be
    // explained: answer at once rather than after exploring every order of the writes.
    let mut with_initial: Vec<Operation> = Vec::new();
    if let Some(v) = initial {
        with_initial.push(Operation {
            client: u64::MAX,
            call: 0,
            ret: 0,
            input: Input::Put(v.clone()),
            outcome: Outcome::Ok(Output::Put),
        });
    }
    with_initial.extend_from_slice(ops);
    if !self_explaining(&with_initial) {
        return Search {
            verdict: Verdict::NotLinearizable,
            steps: 0,
        };
    }
    // Events: 2*i is the call of op i, 2*i+1 its return. Sorted by time; on equal times calls
    // come first (operations that touch are concurrent: the permissive reading).
    let mut events: Vec<usize> = (0..2 * n).collect();
    let time = |e: usize| -> (u64, u8) {
        let op = &ops[e / 2];
        if e.is_multiple_of(2) {
            (op.call, 0)
        } else {
            (op.effective_ret(), 1)
        }
    };
    events.sort_by_key(|&e| (time(e), e));
    // Linked list over nodes 0..2n (event ids) plus the head sentinel at 2n.
    let head = 2 * n;
    let mut next = vec![usize::MAX; 2 * n + 1];
    let mut prev = vec![usize::MAX; 2 * n + 1];
    let mut last = head;
    for &e in &events {
        next[last] = e;
        prev[e] = last;
        last = e;
    }
    const END: usize = usize::MAX;
    next[last] = END;

    fn unlink(next: &mut [usize], prev: &mut [usize], e: usize) {
        let (p, nx) = (prev[e], next[e]);
        next[p] = nx;
        if nx != END {
            prev[nx] = p;
        }
    }
    fn relink(next: &mut [usize], prev: &mut [usize], e: usize) {
        let (p, nx) = (prev[e], next[e]);
        next[p] = e;
        if nx != END {
            prev[nx] = e;
        }
    }

    let mut state = initial.clone();
    let mut linearized = BitSet::new(n);
    let mut cache: HashSet<(BitSet, Option<Value>)> = HashSet::new();
    let mut calls: Vec<(usize, Option<Value>)> = Vec::new();
    let mut entry = next[head];
    let mut steps = 0u64;
    while next[head] != END {
        steps += 1;
        if steps > budget {
            return Search {
                verdict: Verdict::Unknown,
                steps,
            };
        }
        if entry == END {
            // Cannot happen: a return event always precedes the end of a non-empty list.
            return Search {
                verdict: Verdict::Unknown,
                steps,
            };
        }
        if entry.is_multiple_of(2) {
            let i = entry / 2;
            let op = &ops[i];
            if let Some(new_state) = step(&state, &op.input, &op.outcome) {
                let mut new_lin = linearized.clone();
                new_lin.set(i);
                if cache.len() >= MAX_CACHE {
                    return Search {
                        verdict: Verdict::Unknown,
                        steps,
                    };
                }
                if cache.insert((new_lin.clone(), new_state.clone())) {
                    calls.push((entry, state));
                    state = new_state;
                    linearized = new_lin;
                    // Lift the call and its return out of the list.
                    unlink(&mut next, &mut prev, entry);
                    unlink(&mut next, &mut prev, entry + 1);
                    entry = next[head];
                    continue;
                }
            }
            entry = next[entry];
        } else {
            // A return of an operation not yet linearized: backtrack.
            let Some((call, old_state)) = calls.pop() else {
                return Search {
                    verdict: Verdict::NotLinearizable,
                    steps,
                };
            };
            state = old_state;
            linearized.clear(call / 2);
            relink(&mut next, &mut prev, call + 1);
            relink(&mut next, &mut prev, call);
            entry = next[call];
        }
    }
    Search {
        verdict: Verdict::Linearizable,
        steps,
    }
}

/// Splits a history of `(key, operation)` pairs into one sub-history per key.
pub fn partition<K: Ord + Clone>(ops: &[(K, Operation)]) -> BTreeMap<K, Vec<Operation>> {
    let mut out: BTreeMap<K, Vec<Operation>> = BTreeMap::new();
    for (k, op) in ops {
        out.entry(k.clone()).or_default().push(op.clone());
    }
    out
}

/// One key's result in [`check_history`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyReport<K> {
    /// The key.
    pub key: K,
    /// How many operations its sub-history has.
    pub operations: usize,
    /// The answer for it.
    pub verdict: Verdict,
    /// Steps the search took.
    pub steps: u64,
    /// For a non-linearizable key, its minimized failing sub-history (sorted by call time).
    pub minimal: Vec<Operation>,
}

/// Checks every key's sub-history with `budget` steps each and minimizes the failing ones.
pub fn check_history<K: Ord + Clone>(
    ops: &[(K, Operation)],
    budget: u64,
) -> Result<Vec<KeyReport<K>>, CheckError> {
    let mut reports = Vec::new();
    for (key, sub) in partition(ops) {
        let s = check_operations(&sub, budget)?;
        let minimal = if s.verdict == Verdict::NotLinearizable {
            minimize(&sub, budget)
        } else {
            Vec::new()
        };
        reports.push(KeyReport {
            key,
            operations: sub.len(),
            verdict: s.verdict,
            steps: s.steps,
            minimal,
        });
    }
    Ok(reports)
}

/// Every value a read returns or a compare expects is written by some operation of `ops`.
fn self_explaining(ops: &[Operation]) -> bool {
    let written: HashSet<&str> = ops
        .iter()
        .filter_map(|o| match &o.input {
            Input::Put(v) | Input::Cas { value: v, .. } => Some(v.as_str()),
            _ => None,
        })
        .collect();
    ops.iter().all(|o| {
        let read = match (&o.input, &o.outcome) {
            (_, Outcome::Ok(Output::Get(Some(v)))) => Some(v),
            (
                Input::Cas {
                    expect: Some(v), ..
                },
                Outcome::Ok(Output::Cas { succeeded: true }),
            ) => Some(v),
            _ => None,
        };
        read.is_none_or(|v| written.contains(v.as_str()))
    })
}

/// One delta-debugging pass: drops chunks of the operations `may_drop` allows while `keep`
/// holds, halving the chunk size down to single operations. Bounded: every accepted change
/// removes at least one operation, and every rejected one advances.
fn drop_chunks(
    mut cur: Vec<Operation>,
    may_drop: impl Fn(&Operation) -> bool,
    keep: impl Fn(&[Operation]) -> bool,
) -> Vec<Operation> {
    let mut chunk = cur.len().div_ceil(2).max(1);
    loop {
        let mut changed = false;
        let mut start = 0;
        while start < cur.len() {
            let end = (start + chunk).min(cur.len());
            let candidate: Vec<Operation> = cur
                .iter()
                .enumerate()
                .filter(|(i, op)| !((start..end).contains(i) && may_drop(op)))
                .map(|(_, op)| op.clone())
                .collect();
            if candidate.len() < cur.len() && keep(&candidate) {
                // Later operations moved down into this chunk: stay.
                cur = candidate;
                changed = true;
            } else {
                start = end;
            }
        }
        if !changed {
            if chunk == 1 {
                return cur;
            }
            chunk = chunk.div_ceil(2);
        }
    }
}

/// How many search budgets [`minimize`] may spend in all.
pub const MINIMIZE_BUDGETS: u64 = 20;

/// Most (linearized set, state) pairs one search caches before answering
/// [`Verdict::Unknown`]: bounds its memory as the step budget bounds its time.
pub const MAX_CACHE: usize = 1_000_000;

/// Minimizes a non-linearizable sub-history for a human to read, by delta debugging:
///
/// 1. operations that cannot change the key (reads, failed compares, deletes of an absent
///    key) are dropped while the history stays non-linearizable. This step is **sound**: a
///    linearization of the original orders the smaller history too, so it failing proves the
///    original fails;
/// 2. then writes are dropped while the history stays non-linearizable *and* every value it
///    reads was written within it. This step is a heuristic (a dropped write may have been
///    what a delete's count or a failed compare relied on): the verdict is always that of the
///    whole history, and the result is an illustration of it.
///
/// Returns the history sorted by call time; if `ops` is not (definitely) non-linearizable, it
/// is returned unchanged (sorted).
pub fn minimize(ops: &[Operation], budget: u64) -> Vec<Operation> {
    // All the searches together get a bounded amount of work: once it is spent no further
    // change is accepted and the history minimized so far is returned.
    let spent = std::cell::Cell::new(0u64);
    let total = budget.saturating_mul(MINIMIZE_BUDGETS);
    let fails = |h: &[Operation]| {
        if spent.get() >= total {
            return false;
        }
        let s = search(h, &None, budget);
        spent.set(spent.get().saturating_add(s.steps.max(1)));
        s.verdict == Verdict::NotLinearizable
    };
    let mut cur: Vec<Operation> = ops.to_vec();
    cur.sort_by_key(|o| (o.call, o.effective_ret()));
    if !fails(&cur) {
        return cur;
    }
    let cur = drop_chunks(cur, Operation::is_read_only, fails);
    let explained = self_explaining(&cur);
    drop_chunks(
        cur,
        |op| !op.is_read_only(),
        |h| fails(h) && (!explained || self_explaining(h)),
    )
}

#[cfg(test)]
mod tests;
