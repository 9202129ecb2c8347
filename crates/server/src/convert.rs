//! Between etcd's protobuf messages and `mvcc`'s plain-Rust requests and results, plus what etcd's
//! apply layer does to a range result that the store does not: sorting, the mod/create revision
//! filters, the limit with its `more` flag, and `keys_only`.

use mvcc::request as m;

use crate::error::EtcdError;
use crate::proto::etcdserverpb as pb;
use crate::proto::mvccpb;
use tonic::Status;

/// A store key-value as etcd's `mvccpb.KeyValue`.
pub fn kv(kv: mvcc::KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

/// A protobuf `range_end` as the store's: empty is the single key.
pub fn range_end(end: Vec<u8>) -> Option<Vec<u8>> {
    (!end.is_empty()).then_some(end)
}

/// etcd's `checkRangeRequest`.
pub fn check_range(r: &pb::RangeRequest) -> Result<(), Status> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey.status());
    }
    if pb::range_request::SortOrder::try_from(r.sort_order).is_err()
        || pb::range_request::SortTarget::try_from(r.sort_target).is_err()
    {
        return Err(Status::invalid_argument("etcdserver: invalid sort option"));
    }
    Ok(())
}

/// etcd's `checkPutRequest`.
pub fn check_put(r: &pb::PutRequest) -> Result<(), Status> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey.status());
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(EtcdError::ValueProvided.status());
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(EtcdError::LeaseProvided.status());
    }
    Ok(())
}

/// etcd's `checkDeleteRequest`.
pub fn check_delete(r: &pb::DeleteRangeRequest) -> Result<(), Status> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey.status());
    }
    Ok(())
}

/// etcd's `checkTxnRequest`: the widest of compare/success/failure within `max_txn_ops`, keys
/// present, every operation set. (Duplicate keys are refused by the store.)
pub fn check_txn(r: &pb::TxnRequest, max_txn_ops: usize) -> Result<(), Status> {
    let opc = r.compare.len().max(r.success.len()).max(r.failure.len());
    if opc > max_txn_ops {
        return Err(EtcdError::TooManyOps.status());
    }
    if r.compare.iter().any(|c| c.key.is_empty()) {
        return Err(EtcdError::EmptyKey.status());
    }
    for op in r.success.iter().chain(&r.failure) {
        match &op.request {
            Some(pb::request_op::Request::RequestRange(r)) => check_range(r)?,
            Some(pb::request_op::Request::RequestPut(r)) => check_put(r)?,
            Some(pb::request_op::Request::RequestDeleteRange(r)) => check_delete(r)?,
            Some(pb::request_op::Request::RequestTxn(t)) => {
                check_txn(t, max_txn_ops.saturating_sub(opc))?
            }
            None => return Err(EtcdError::KeyNotFound.status()),
        }
    }
    Ok(())
}

/// Whether the range needs every key-value of the store's answer (sorting or filters), so the
/// limit is applied here instead of by the store.
fn needs_all(r: &pb::RangeRequest) -> bool {
    r.sort_order != pb::range_request::SortOrder::None as i32
        || r.min_mod_revision != 0
        || r.max_mod_revision != 0
        || r.min_create_revision != 0
        || r.max_create_revision != 0
}

/// The store's range request for a protobuf one (etcd's `Range` in `apply.go`: one key more
/// than the limit, to tell whether there are more; everything when sorting or filtering).
pub fn range_request(r: &pb::RangeRequest) -> m::RangeRequest {
    let limit = if needs_all(r) {
        0
    } else if r.limit > 0 {
        r.limit.saturating_add(1)
    } else {
        0
    };
    m::RangeRequest {
        key: r.key.clone(),
        range_end: range_end(r.range_end.clone()),
        options: m::RangeOptions {
            limit,
            rev: r.revision,
            count_only: r.count_only,
            // Sorting by value needs the values; `range_response` drops them afterwards.
            keys_only: r.keys_only && r.sort_target != pb::range_request::SortTarget::Value as i32,
        },
    }
}

/// The protobuf range response for the store's result of [`range_request`]`(r)`: filters,
/// sorting, the limit and `keys_only` as etcd applies them. The header is left to the caller
/// (its revision is the result's `rev`).
pub fn range_response(r: &pb::RangeRequest, res: m::RangeResult) -> pb::RangeResponse {
    use pb::range_request::{SortOrder, SortTarget};
    let mut kvs = res.kvs;
    if r.min_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision >= r.min_mod_revision);
    }
    if r.max_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision <= r.max_mod_revision);
    }
    if r.min_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision >= r.min_create_revision);
    }
    if r.max_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision <= r.max_create_revision);
    }
    let target = SortTarget::try_from(r.sort_target).unwrap_or(SortTarget::Key);
    let mut order = SortOrder::try_from(r.sort_order).unwrap_or(SortOrder::None);
    if target != SortTarget::Key && order == SortOrder::None {
        order = SortOrder::Ascend;
    } else if target == SortTarget::Key && order == SortOrder::Ascend {
        // The store returns keys in ascending order already.
        order = SortOrder::None;
    }
    if order != SortOrder::None {
        let cmp = |a: &mvcc::KeyValue, b: &mvcc::KeyValue| match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        };
        if order == SortOrder::Descend {
            kvs.sort_by(|a, b| cmp(b, a));
        } else {
            kvs.sort_by(cmp);
        }
    }
    let mut more = false;
    if let Ok(limit) = usize::try_from(r.limit)
        && limit > 0
        && kvs.len() > limit
    {
        kvs.truncate(limit);
        more = true;
    }
    let kvs = kvs
        .into_iter()
        .map(|mut k| {
            if r.keys_only {
                k.value.clear();
            }
            kv(k)
        })
        .collect();
    pb::RangeResponse {
        header: None,
        kvs,
        more,
        count: res.count,
    }
}

/// The store's put.
pub fn put_request(r: pb::PutRequest) -> m::PutRequest {
    m::PutRequest {
        key: r.key,
        value: r.value,
        lease: r.lease,
        prev_kv: r.prev_kv,
        ignore_value: r.ignore_value,
        ignore_lease: r.ignore_lease,
    }
}

/// The protobuf put response (header left to the caller).
pub fn put_response(res: m::PutResponse) -> pb::PutResponse {
    pb::PutResponse {
        header: None,
        prev_kv: res.prev_kv.map(kv),
    }
}

/// The store's delete.
pub fn delete_request(r: pb::DeleteRangeRequest) -> m::DeleteRangeRequest {
    m::DeleteRangeRequest {
        key: r.key,
        range_end: range_end(r.range_end),
        prev_kv: r.prev_kv,
    }
}

/// The protobuf delete response (header left to the caller).
pub fn delete_response(res: m::DeleteRangeResponse) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header: None,
        deleted: res.deleted,
        prev_kvs: res.prev_kvs.into_iter().map(kv).collect(),
    }
}

fn compare(c: &pb::Compare) -> Result<m::Compare, Status> {
    use pb::compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    let result = match R::try_from(c.result) {
        Ok(R::Equal) => m::CompareResult::Equal,
        Ok(R::Greater) => m::CompareResult::Greater,
        Ok(R::Less) => m::CompareResult::Less,
        Ok(R::NotEqual) => m::CompareResult::NotEqual,
        Err(_) => {
            return Err(Status::invalid_argument(
                "etcdserver: invalid compare result",
            ));
        }
    };
    // etcd reads the operand of the declared target; a missing union is the zero value.
    let target = match T::try_from(c.target) {
        Ok(T::Version) => m::CompareTarget::Version(match c.target_union {
            Some(U::Version(v)) => v,
            _ => 0,
        }),
        Ok(T::Create) => m::CompareTarget::CreateRevision(match c.target_union {
            Some(U::CreateRevision(v)) => v,
            _ => 0,
        }),
        Ok(T::Mod) => m::CompareTarget::ModRevision(match c.target_union {
            Some(U::ModRevision(v)) => v,
            _ => 0,
        }),
        Ok(T::Value) => m::CompareTarget::Value(match &c.target_union {
            Some(U::Value(v)) => v.clone(),
            _ => Vec::new(),
        }),
        Ok(T::Lease) => m::CompareTarget::Lease(match c.target_union {
            Some(U::Lease(v)) => v,
            _ => 0,
        }),
        Err(_) => {
            return Err(Status::invalid_argument(
                "etcdserver: invalid compare target",
            ));
        }
    };
    Ok(m::Compare {
        key: c.key.clone(),
        range_end: range_end(c.range_end.clone()),
        target,
        result,
    })
}

fn request_op(op: &pb::RequestOp) -> Result<m::RequestOp, Status> {
    use pb::request_op::Request as R;
    Ok(match &op.request {
        Some(R::RequestRange(r)) => m::RequestOp::Range(range_request(r)),
        Some(R::RequestPut(p)) => m::RequestOp::Put(put_request(p.clone())),
        Some(R::RequestDeleteRange(d)) => m::RequestOp::DeleteRange(delete_request(d.clone())),
        Some(R::RequestTxn(t)) => m::RequestOp::Txn(txn_request(t)?),
        None => return Err(EtcdError::KeyNotFound.status()),
    })
}

/// The store's transaction (the protobuf request is kept to shape the response).
pub fn txn_request(t: &pb::TxnRequest) -> Result<m::TxnRequest, Status> {
    Ok(m::TxnRequest {
        compare: t.compare.iter().map(compare).collect::<Result<_, _>>()?,
        success: t.success.iter().map(request_op).collect::<Result<_, _>>()?,
        failure: t.failure.iter().map(request_op).collect::<Result<_, _>>()?,
    })
}

/// The protobuf transaction response for the store's result of `t`, under `header`; inner
/// responses carry only a revision in their headers (the transaction's revision as it stood
/// after each operation) and nested transactions an empty header, as etcd's do.
pub fn txn_response(
    t: &pb::TxnRequest,
    res: m::TxnResponse,
    header: &pb::ResponseHeader,
) -> pb::TxnResponse {
    use pb::request_op::Request as Rq;
    use pb::response_op::Response as Rs;
    let ops = if res.succeeded {
        &t.success
    } else {
        &t.failure
    };
    let responses = res
        .responses
        .into_iter()
        .zip(ops)
        .map(|(r, op)| {
            let at = |revision| {
                Some(pb::ResponseHeader {
                    revision,
                    ..Default::default()
                })
            };
            let response = match (r, &op.request) {
                (m::ResponseOp::Range(rr), req) => {
                    // etcd: the revision the range read at, which is the transaction's revision
                    // only once one of its operations before the range has written.
                    let read_at = at(rr.rev);
                    let mut resp = match req {
                        Some(Rq::RequestRange(req)) => range_response(req, rr),
                        _ => range_response(&pb::RangeRequest::default(), rr),
                    };
                    resp.header = read_at;
                    Rs::ResponseRange(resp)
                }
                (m::ResponseOp::Put(p), _) => Rs::ResponsePut(pb::PutResponse {
                    header: at(p.revision),
                    ..put_response(p)
                }),
                (m::ResponseOp::DeleteRange(d), _) => {
                    // The transaction's revision after the delete: unchanged by a delete that
                    // found nothing, as etcd's.
                    Rs::ResponseDeleteRange(pb::DeleteRangeResponse {
                        header: at(d.revision),
                        ..delete_response(d)
                    })
                }
                (m::ResponseOp::Txn(inner), req) => {
                    let default = pb::TxnRequest::default();
                    let req = match req {
                        Some(Rq::RequestTxn(req)) => req,
                        _ => &default,
                    };
                    // etcd leaves a nested transaction's own header empty (all zero), while
                    // the responses inside it carry their revisions.
                    Rs::ResponseTxn(txn_response(req, inner, &pb::ResponseHeader::default()))
                }
            };
            pb::ResponseOp {
                response: Some(response),
            }
        })
        .collect();
    pb::TxnResponse {
        header: Some(*header),
        succeeded: res.succeeded,
        responses,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv_at(key: &str, value: &str, create: i64, modr: i64, version: i64) -> mvcc::KeyValue {
        mvcc::KeyValue {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            create_revision: create,
            mod_revision: modr,
            version,
            lease: 0,
        }
    }

    fn store() -> Vec<mvcc::KeyValue> {
        vec![
            kv_at("a", "3", 2, 6, 3),
            kv_at("b", "1", 3, 3, 1),
            kv_at("c", "2", 4, 5, 2),
        ]
    }

    fn result(kvs: Vec<mvcc::KeyValue>) -> m::RangeResult {
        m::RangeResult {
            count: kvs.len() as i64,
            kvs,
            rev: 6,
            more: false,
        }
    }

    fn keys(resp: &pb::RangeResponse) -> Vec<String> {
        resp.kvs
            .iter()
            .map(|k| String::from_utf8_lossy(&k.key).into_owned())
            .collect()
    }

    #[test]
    fn limit_asks_the_store_for_one_more_and_sets_more() {
        let req = pb::RangeRequest {
            key: b"a".to_vec(),
            range_end: vec![0],
            limit: 2,
            ..Default::default()
        };
        assert_eq!(range_request(&req).options.limit, 3);
        let resp = range_response(&req, result(store()));
        assert_eq!(keys(&resp), ["a", "b"]);
        assert!(resp.more);
        assert_eq!(resp.count, 3);
    }

    #[test]
    fn sorting_and_filters_follow_etcd() {
        let req = pb::RangeRequest {
            key: b"a".to_vec(),
            range_end: vec![0],
            limit: 2,
            sort_target: pb::range_request::SortTarget::Mod as i32,
            ..Default::default()
        };
        // Only an explicit order fetches everything (etcd's rule); a non-key target with no
        // order still sorts ascending.
        assert_eq!(range_request(&req).options.limit, 3);
        let resp = range_response(&req, result(store()));
        assert_eq!(keys(&resp), ["b", "c"]);
        let req = pb::RangeRequest {
            sort_order: pb::range_request::SortOrder::Descend as i32,
            sort_target: pb::range_request::SortTarget::Value as i32,
            ..req
        };
        assert_eq!(range_request(&req).options.limit, 0);
        assert_eq!(keys(&range_response(&req, result(store()))), ["a", "c"]);
        let req = pb::RangeRequest {
            key: b"a".to_vec(),
            range_end: vec![0],
            min_create_revision: 3,
            max_mod_revision: 5,
            keys_only: true,
            ..Default::default()
        };
        let resp = range_response(&req, result(store()));
        assert_eq!(keys(&resp), ["b", "c"]);
        assert!(resp.kvs.iter().all(|k| k.value.is_empty()));
    }

    #[test]
    fn txn_checks_follow_etcd() {
        let put = |k: &[u8]| pb::RequestOp {
            request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                key: k.to_vec(),
                ..Default::default()
            })),
        };
        let t = pb::TxnRequest {
            success: vec![put(b"a"), put(b"b"), put(b"c")],
            ..Default::default()
        };
        assert!(check_txn(&t, 3).is_ok());
        let err = check_txn(&t, 2).err().map(|s| s.message().to_owned());
        assert_eq!(
            err.as_deref(),
            Some("etcdserver: too many operations in txn request")
        );
        let t = pb::TxnRequest {
            failure: vec![put(b"")],
            ..Default::default()
        };
        let err = check_txn(&t, 128).err().map(|s| s.message().to_owned());
        assert_eq!(err.as_deref(), Some("etcdserver: key is not provided"));
        let t = pb::TxnRequest {
            success: vec![pb::RequestOp { request: None }],
            ..Default::default()
        };
        assert!(check_txn(&t, 128).is_err());
    }

    #[test]
    fn compare_targets_convert() {
        let c = pb::Compare {
            result: pb::compare::CompareResult::Greater as i32,
            target: pb::compare::CompareTarget::Mod as i32,
            key: b"k".to_vec(),
            range_end: vec![],
            target_union: Some(pb::compare::TargetUnion::ModRevision(4)),
        };
        let m = compare(&c).ok();
        assert_eq!(
            m,
            Some(m::Compare::new(
                "k",
                m::CompareResult::Greater,
                m::CompareTarget::ModRevision(4)
            ))
        );
    }
}
