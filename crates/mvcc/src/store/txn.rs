//! Transactions (etcd's `applierV3backend.Txn`): every guard, nested ones included, is evaluated
//! against the store before any operation runs; then the requests on the chosen path are
//! checked (keys for `ignore_*`, leases, range revisions); then the operations run in order.

use super::read::ReadTxn;
use super::write::WriteTxn;
use crate::compare::compare_found;
use crate::error::{MvccError, Result};
use crate::request::{
    Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeOptions,
    RangeResult, RequestOp, ResponseOp, TxnRequest, TxnResponse,
};

/// What a transaction runs on: a read transaction for read-only transactions, else the write
/// transaction.
trait View {
    fn rev(&self) -> i64;
    fn first_rev(&self) -> i64;
    fn range(&self, key: &[u8], end: Option<&[u8]>, opts: &RangeOptions) -> Result<RangeResult>;
    fn lease_exists(&self, lease: i64) -> bool;
    fn put(&mut self, req: &PutRequest) -> Result<PutResponse>;
    fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse>;
}

impl View for WriteTxn<'_> {
    fn rev(&self) -> i64 {
        WriteTxn::rev(self)
    }
    fn first_rev(&self) -> i64 {
        WriteTxn::first_rev(self)
    }
    fn range(&self, key: &[u8], end: Option<&[u8]>, opts: &RangeOptions) -> Result<RangeResult> {
        WriteTxn::range(self, key, end, opts)
    }
    fn lease_exists(&self, lease: i64) -> bool {
        self.lease_known(lease)
    }
    fn put(&mut self, req: &PutRequest) -> Result<PutResponse> {
        self.put_request(req)
    }
    fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        self.delete_range_request(req)
    }
}

/// A read-only view: reached only for transactions without writes.
struct ReadOnly<'r>(&'r ReadTxn);

impl View for ReadOnly<'_> {
    fn rev(&self) -> i64 {
        self.0.rev()
    }
    fn first_rev(&self) -> i64 {
        self.0.first_rev()
    }
    fn range(&self, key: &[u8], end: Option<&[u8]>, opts: &RangeOptions) -> Result<RangeResult> {
        self.0.range(key, end, opts)
    }
    fn lease_exists(&self, _lease: i64) -> bool {
        false
    }
    fn put(&mut self, _req: &PutRequest) -> Result<PutResponse> {
        panic!("invariant violated: a read-only transaction runs no put");
    }
    fn delete_range(&mut self, _req: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        panic!("invariant violated: a read-only transaction runs no delete");
    }
}

/// The branch each (nested) transaction takes, decided before anything runs.
struct Path {
    succeeded: bool,
    /// The paths of the nested transactions of the chosen branch, in order.
    nested: Vec<Path>,
}

fn branch(req: &TxnRequest, succeeded: bool) -> &[RequestOp] {
    if succeeded {
        &req.success
    } else {
        &req.failure
    }
}

fn apply_compare(view: &dyn View, c: &Compare) -> bool {
    match view.range(&c.key, c.range_end.as_deref(), &RangeOptions::default()) {
        Ok(rr) => compare_found(c, &rr.kvs),
        Err(_) => false,
    }
}

fn compare_to_path(view: &dyn View, req: &TxnRequest) -> Path {
    let succeeded = req.compare.iter().all(|c| apply_compare(view, c));
    let nested = branch(req, succeeded)
        .iter()
        .filter_map(|op| match op {
            RequestOp::Txn(t) => Some(compare_to_path(view, t)),
            _ => None,
        })
        .collect();
    Path { succeeded, nested }
}

/// etcd's `checkRequestPut` / `checkRequestRange` along the path.
fn check_requests(view: &dyn View, req: &TxnRequest, path: &Path, writes: bool) -> Result<()> {
    let mut nested = path.nested.iter();
    for op in branch(req, path.succeeded) {
        match op {
            RequestOp::Txn(t) => {
                let Some(p) = nested.next() else {
                    panic!("invariant violated: a txn path has one entry per nested txn");
                };
                check_requests(view, t, p, writes)?;
            }
            RequestOp::Put(p) if writes => {
                if p.ignore_value || p.ignore_lease {
                    let rr = view.range(&p.key, None, &RangeOptions::default())?;
                    if rr.kvs.is_empty() {
                        return Err(MvccError::KeyNotFound);
                    }
                }
                if p.lease != 0 && !view.lease_exists(p.lease) {
                    return Err(MvccError::LeaseNotFound(p.lease));
                }
            }
            RequestOp::Range(r) => {
                let rev = r.options.rev;
                if rev == 0 {
                    continue;
                }
                if rev > view.rev() {
                    return Err(MvccError::FutureRev {
                        requested: rev,
                        current: view.rev(),
                    });
                }
                if rev < view.first_rev() {
                    return Err(MvccError::Compacted {
                        requested: rev,
                        compacted: view.first_rev(),
                    });
                }
            }
            RequestOp::Put(_) | RequestOp::DeleteRange(_) => {}
        }
    }
    Ok(())
}

fn apply(view: &mut dyn View, req: &TxnRequest, path: &Path) -> Result<TxnResponse> {
    let mut nested = path.nested.iter();
    let mut responses = Vec::new();
    for op in branch(req, path.succeeded) {
        let resp = match op {
            RequestOp::Range(r) => {
                ResponseOp::Range(view.range(&r.key, r.range_end.as_deref(), &r.options)?)
            }
            RequestOp::Put(p) => ResponseOp::Put(view.put(p)?),
            RequestOp::DeleteRange(d) => ResponseOp::DeleteRange(view.delete_range(d)?),
            RequestOp::Txn(t) => {
                let Some(p) = nested.next() else {
                    panic!("invariant violated: a txn path has one entry per nested txn");
                };
                ResponseOp::Txn(apply(view, t, p)?)
            }
        };
        responses.push(resp);
    }
    Ok(TxnResponse {
        revision: 0,
        succeeded: path.succeeded,
        responses,
    })
}

/// Runs a validated transaction in `txn` (the caller sets the revision).
pub(crate) fn run(txn: &mut WriteTxn<'_>, req: &TxnRequest) -> Result<TxnResponse> {
    let path = compare_to_path(txn, req);
    check_requests(txn, req, &path, true)?;
    apply(txn, req, &path)
}

/// Runs a validated transaction without writes in `read`.
pub(crate) fn run_read_only(read: &ReadTxn, req: &TxnRequest) -> Result<TxnResponse> {
    let mut view = ReadOnly(read);
    let path = compare_to_path(&view, req);
    check_requests(&view, req, &path, false)?;
    let mut resp = apply(&mut view, req, &path)?;
    resp.revision = read.rev();
    Ok(resp)
}
