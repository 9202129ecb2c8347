//! The `quorum` suite: commit indexes and vote results of majority and joint configurations.
//!
//! Commands:
//!
//! - `committed cfg=(ids) [cfgj=(ids)|cfgj=zero] idx=(indexes)`: the [`describe`] picture and
//!   the committed index;
//! - `vote cfg=(ids) [cfgj=(ids)|cfgj=zero] votes=(y|n|_, ...)`: the [`VoteResult`].
//!
//! `cfgj` makes the test joint (`zero`: with an empty second half). `idx` and `votes` give one
//! value per distinct voter, in order of first appearance in `cfg` then `cfgj`; `_` means
//! nothing is known about that voter.
//!
//! The handler cross-checks each result against computations that must agree (a naive
//! committed index, joining with an empty or the same config, swapping the halves, lowering
//! an index that cannot matter) and appends a line for each disagreement.
//!
//! [`describe`]: crate::quorum::MajorityConfig::describe

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::{Fatal, TestData};
use crate::quorum::{
    AckedIndexer, Index, JointConfig, MajorityConfig, VoteResult, committed_index_by_counting,
};

/// Runs one `quorum` directive.
pub fn handle(d: &TestData) -> Result<String, Fatal> {
    let mut joint = false;
    let mut ids: Vec<u64> = Vec::new();
    let mut idsj: Vec<u64> = Vec::new();
    // Acked indexes per voter; 0 stands for `_` (unknown), which is why 0 is not allowed.
    let mut idxs: Vec<Index> = Vec::new();
    // Votes per voter, in the same encoding: 0 unknown, 1 no, 2 yes.
    let mut votes: Vec<Index> = Vec::new();

    for arg in &d.cmd_args {
        for i in 0..arg.vals.len() {
            match arg.key.as_str() {
                "cfg" => ids.push(arg.scan_u64(i)?),
                "cfgj" => {
                    joint = true;
                    if arg.vals[i] == "zero" {
                        if arg.vals.len() != 1 {
                            return Err(Fatal("cannot mix 'zero' into configuration".to_owned()));
                        }
                    } else {
                        idsj.push(arg.scan_u64(i)?);
                    }
                }
                "idx" => {
                    let n = if arg.vals[i] == "_" {
                        0
                    } else {
                        let n = arg.scan_u64(i)?;
                        if n == 0 {
                            return Err(Fatal("cannot use 0 as idx".to_owned()));
                        }
                        n
                    };
                    idxs.push(Index(n));
                }
                "votes" => votes.push(Index(match arg.vals[i].as_str() {
                    "y" => 2,
                    "n" => 1,
                    "_" => 0,
                    other => return Err(Fatal(format!("unknown vote: {other}"))),
                })),
                other => return Err(Fatal(format!("unknown arg {other}"))),
            }
        }
    }

    let c: MajorityConfig = ids.iter().copied().collect();
    let cj: MajorityConfig = idsj.iter().copied().collect();

    let input = if d.cmd == "vote" { &votes } else { &idxs };
    let voters = JointConfig::new(c.clone(), cj.clone()).ids();
    if voters.len() != input.len() {
        return Ok(format!(
            "error: mismatched input (explicit or _) for voters {}: {}",
            go_set(&voters),
            go_slice(input)
        ));
    }

    let mut buf = String::new();
    match d.cmd.as_str() {
        "committed" => {
            let l = lookuper(&idxs, &ids, &idsj);
            if !joint {
                let idx = c.committed_index(&l);
                buf.push_str(&c.describe(&l));
                // Alternative computations that must agree; disagreements are printed.
                let a_idx = committed_index_by_counting(&c, &l);
                if a_idx != idx {
                    let _ = writeln!(buf, "{a_idx} <-- via alternative computation");
                }
                let a_idx = JointConfig::new(c.clone(), MajorityConfig::new()).committed_index(&l);
                if a_idx != idx {
                    let _ = writeln!(buf, "{a_idx} <-- via zero-joint quorum");
                }
                let a_idx = JointConfig::new(c.clone(), c.clone()).committed_index(&l);
                if a_idx != idx {
                    let _ = writeln!(buf, "{a_idx} <-- via self-joint quorum");
                }
                for id in c.iter() {
                    let iidx = l.acked_index(id).unwrap_or_default();
                    if idx > iidx && iidx.0 > 0 {
                        // The committed index is above this voter's: lowering the voter's
                        // index further must not change it. (Like etcd, no newline here.)
                        let lowered = overlay(&c, &l, id, Index(iidx.0 - 1));
                        let a_idx = c.committed_index(&lowered);
                        if a_idx != idx {
                            let _ = write!(buf, "{a_idx} <-- overlaying {id}->{iidx}");
                        }
                        let zeroed = overlay(&c, &l, id, Index(0));
                        let a_idx = c.committed_index(&zeroed);
                        if a_idx != idx {
                            let _ = write!(buf, "{a_idx} <-- overlaying {id}->0");
                        }
                    }
                }
                let _ = writeln!(buf, "{idx}");
            } else {
                let cc = JointConfig::new(c.clone(), cj.clone());
                buf.push_str(&cc.describe(&l));
                let idx = cc.committed_index(&l);
                // Swapping the halves must not matter.
                let a_idx = JointConfig::new(cj, c).committed_index(&l);
                if a_idx != idx {
                    let _ = writeln!(buf, "{a_idx} <-- via symmetry");
                }
                let _ = writeln!(buf, "{idx}");
            }
        }
        "vote" => {
            let l: BTreeMap<u64, bool> = lookuper(&votes, &ids, &idsj)
                .into_iter()
                .map(|(id, v)| (id, v != Index(1)))
                .collect();
            if !joint {
                let _ = writeln!(buf, "{}", c.vote_result(&l));
            } else {
                let r: VoteResult = JointConfig::new(c.clone(), cj.clone()).vote_result(&l);
                // Swapping the halves must not matter.
                let ar = JointConfig::new(cj, c).vote_result(&l);
                if ar != r {
                    let _ = writeln!(buf, "{ar} <-- via symmetry");
                }
                let _ = writeln!(buf, "{r}");
            }
        }
        other => return Err(Fatal(format!("unknown command: {other}"))),
    }
    Ok(buf)
}

/// Maps the voters (first `ids`, then `idsj`, each once) to the values in order; zero values
/// (`_` placeholders) are left out, as "no information".
fn lookuper(values: &[Index], ids: &[u64], idsj: &[u64]) -> BTreeMap<u64, Index> {
    let mut l = BTreeMap::new();
    let mut values = values.iter();
    for &id in ids.iter().chain(idsj) {
        if l.contains_key(&id) {
            continue;
        }
        if let Some(&v) = values.next() {
            l.insert(id, v);
        }
    }
    l.retain(|_, v| v.0 != 0);
    l
}

/// The acked indexes of `c`'s voters from `l`, with `id`'s replaced by `idx`.
fn overlay(c: &MajorityConfig, l: &impl AckedIndexer, id: u64, idx: Index) -> BTreeMap<u64, Index> {
    c.iter()
        .filter_map(|iid| {
            if iid == id {
                Some((iid, idx))
            } else {
                l.acked_index(iid).map(|i| (iid, i))
            }
        })
        .collect()
}

/// A set of ids the way Go prints a `map[uint64]struct{}`: `map[1:{} 2:{}]`.
fn go_set(ids: &BTreeSet<u64>) -> String {
    let items: Vec<String> = ids.iter().map(|id| format!("{id}:{{}}")).collect();
    format!("map[{}]", items.join(" "))
}

/// Indexes the way Go prints a `[]Index`: `[1 2 ∞]`.
fn go_slice(idxs: &[Index]) -> String {
    let items: Vec<String> = idxs.iter().map(ToString::to_string).collect();
    format!("[{}]", items.join(" "))
}
