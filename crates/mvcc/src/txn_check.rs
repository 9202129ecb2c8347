//! Static validation of requests before they touch the store (etcd's `v3rpc` checks): keys
//! present, `ignore_*` flags consistent, no key written twice by one transaction.

use std::collections::HashSet;

use crate::error::{MvccError, Result};
use crate::request::{DeleteRangeRequest, PutRequest, RequestOp, TxnRequest};
use crate::tree_index::KeySpan;

/// Checks a put alone (etcd's `checkPutRequest`).
pub(crate) fn check_put(p: &PutRequest) -> Result<()> {
    if p.key.is_empty() {
        return Err(MvccError::EmptyKey);
    }
    if p.ignore_value && !p.value.is_empty() {
        return Err(MvccError::ValueProvided);
    }
    if p.ignore_lease && p.lease != 0 {
        return Err(MvccError::LeaseProvided);
    }
    Ok(())
}

fn check_op(op: &RequestOp) -> Result<()> {
    match op {
        RequestOp::Range(r) if r.key.is_empty() => Err(MvccError::EmptyKey),
        RequestOp::DeleteRange(d) if d.key.is_empty() => Err(MvccError::EmptyKey),
        RequestOp::Range(_) | RequestOp::DeleteRange(_) => Ok(()),
        RequestOp::Put(p) => check_put(p),
        RequestOp::Txn(t) => check_shape(t),
    }
}

/// Keys present and flags consistent, recursively (etcd's `checkTxnRequest`).
fn check_shape(t: &TxnRequest) -> Result<()> {
    if t.compare.iter().any(|c| c.key.is_empty()) {
        return Err(MvccError::EmptyKey);
    }
    t.success.iter().chain(&t.failure).try_for_each(check_op)
}

/// Validates a transaction: its shape, then that no branch puts a key twice or puts a key it
/// also deletes (etcd's `checkIntervals`, on each branch).
pub fn check_txn(t: &TxnRequest) -> Result<()> {
    check_shape(t)?;
    check_intervals(&t.success)?;
    check_intervals(&t.failure)?;
    Ok(())
}

/// A deleted key range, `[start, end)` with `None` as the end of the key space.
#[derive(Clone, Debug)]
struct Deleted {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Deleted {
    fn of(d: &DeleteRangeRequest) -> Deleted {
        match KeySpan::new(&d.key, d.range_end.as_deref()) {
            KeySpan::Single(k) => {
                let mut end = k.to_vec();
                end.push(0);
                Deleted {
                    start: k.to_vec(),
                    end: Some(end),
                }
            }
            KeySpan::Bounded(s, e) => Deleted {
                start: s.to_vec(),
                end: Some(e.to_vec()),
            },
            KeySpan::From(s) => Deleted {
                start: s.to_vec(),
                end: None,
            },
        }
    }

    fn contains(&self, k: &[u8]) -> bool {
        self.start.as_slice() <= k && self.end.as_deref().is_none_or(|e| k < e)
    }
}

fn deleted(dels: &[Deleted], k: &[u8]) -> bool {
    dels.iter().any(|d| d.contains(k))
}

/// etcd's `checkIntervals`: returns the keys put and the ranges deleted by `ops` (nested
/// transactions included) or [`MvccError::DuplicateKey`].
fn check_intervals(ops: &[RequestOp]) -> Result<(HashSet<Vec<u8>>, Vec<Deleted>)> {
    // This level's deletes first, to check lower levels' puts against them.
    let mut dels: Vec<Deleted> = ops
        .iter()
        .filter_map(|op| match op {
            RequestOp::DeleteRange(d) => Some(Deleted::of(d)),
            _ => None,
        })
        .collect();

    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    for op in ops {
        let RequestOp::Txn(t) = op else { continue };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || deleted(&dels, k) {
                return Err(MvccError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        for k in puts_else {
            // A key of both branches is fine: only one of them runs.
            if (puts.contains(&k) && !puts_then.contains(&k)) || deleted(&dels, &k) {
                return Err(MvccError::DuplicateKey);
            }
            puts.insert(k);
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }

    for op in ops {
        let RequestOp::Put(p) = op else { continue };
        if puts.contains(&p.key) || deleted(&dels, &p.key) {
            return Err(MvccError::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::RangeRequest;

    fn put(k: &str) -> RequestOp {
        RequestOp::Put(PutRequest::new(k, "v"))
    }

    fn del(k: &str, end: Option<&str>) -> RequestOp {
        RequestOp::DeleteRange(DeleteRangeRequest {
            key: k.into(),
            range_end: end.map(Into::into),
            prev_kv: false,
        })
    }

    fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
        TxnRequest {
            compare: vec![],
            success,
            failure,
        }
    }

    fn dup(t: &TxnRequest) -> bool {
        matches!(check_txn(t), Err(MvccError::DuplicateKey))
    }

    #[test]
    fn duplicate_puts_and_put_delete_overlaps_are_rejected() {
        assert!(dup(&txn(vec![put("a"), put("a")], vec![])));
        assert!(dup(&txn(vec![put("a"), del("a", None)], vec![])));
        assert!(dup(&txn(vec![del("a", Some("c")), put("b")], vec![])));
        assert!(dup(&txn(vec![del("a", Some("\0")), put("zzz")], vec![])));
        assert!(!dup(&txn(vec![del("a", Some("c")), put("c")], vec![])));
        // The branches are checked separately.
        assert!(check_txn(&txn(vec![put("a")], vec![put("a")])).is_ok());
        // Deletes may overlap each other.
        assert!(check_txn(&txn(vec![del("a", Some("c")), del("b", None)], vec![])).is_ok());
    }

    #[test]
    fn nested_transactions_are_checked_against_their_parent() {
        let nested = |s, f| RequestOp::Txn(txn(s, f));
        // then/else of one nested txn may put the same key.
        assert!(check_txn(&txn(vec![nested(vec![put("a")], vec![put("a")])], vec![])).is_ok());
        // a parent's put and a nested put of the same key collide.
        assert!(dup(&txn(
            vec![put("a"), nested(vec![put("a")], vec![])],
            vec![]
        )));
        // a parent's delete and a nested put collide.
        assert!(dup(&txn(
            vec![del("a", None), nested(vec![], vec![put("a")])],
            vec![]
        )));
        // a nested delete and a parent's put collide.
        assert!(dup(&txn(
            vec![nested(vec![del("a", None)], vec![]), put("a")],
            vec![]
        )));
        // two nested txns putting the same key collide.
        assert!(dup(&txn(
            vec![
                nested(vec![put("a")], vec![]),
                nested(vec![put("a")], vec![])
            ],
            vec![]
        )));
    }

    #[test]
    fn shapes_are_checked() {
        let empty_range = RequestOp::Range(RangeRequest::default());
        assert!(matches!(
            check_txn(&txn(vec![empty_range], vec![])),
            Err(MvccError::EmptyKey)
        ));
        let mut p = PutRequest::new("a", "v");
        p.ignore_value = true;
        assert!(matches!(check_put(&p), Err(MvccError::ValueProvided)));
        let mut p = PutRequest::new("a", "");
        p.ignore_lease = true;
        p.lease = 5;
        assert!(matches!(check_put(&p), Err(MvccError::LeaseProvided)));
        assert!(matches!(
            check_put(&PutRequest::new("", "v")),
            Err(MvccError::EmptyKey)
        ));
    }
}
