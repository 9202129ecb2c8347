//! What etcd's Lock and Election services are built on: clientv3's concurrency recipes
//! (`clientv3/concurrency`) run inside the server, as etcd 3.4 runs them, against this member's
//! own KV and Lease services (etcd's in-process `v3client`), with watches on this member's
//! store.
//!
//! Errors are reported as etcd's servers report them: clientv3 turns each of etcd's own errors
//! into a plain Go error (`rpctypes.EtcdError`), which grpc-go then sends with code Unknown and
//! the same message ([`client_error`]).

use mvcc::{EventKind, WatchFilters, WatchResponse, WatchStream, WatchableStore};
use node::Node;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use tokio::sync::mpsc;
use tonic::{Request, Status};

use super::kv::KvService;
use super::lease::LeaseService;
use super::{Ctx, header};
use crate::error::EtcdError;
use crate::proto::etcdserverpb as pb;
use crate::proto::etcdserverpb::kv_server::Kv;
use crate::proto::etcdserverpb::lease_server::Lease;
use crate::proto::mvccpb;

/// The TTL of the lease a session grants when given none (clientv3's `defaultSessionTTL`).
const SESSION_TTL: i64 = 60;

/// A status as etcd's lock and election servers send it: one of etcd's own errors that
/// clientv3's `rpctypes.Error` knows by its message (every one but `NotSupportedForLearner`)
/// becomes code Unknown with the same message; any other status is kept.
pub(crate) fn client_error(s: Status) -> Status {
    match EtcdError::from_message(s.message()) {
        Some(e) if e != EtcdError::NotSupportedForLearner => Status::unknown(e.message()),
        _ => s,
    }
}

/// This member as clientv3 sees it from inside etcd: the KV and Lease services, called
/// directly, with errors as [`client_error`] reports them.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    ctx: Ctx,
    kv: KvService,
    lease: LeaseService,
}

impl Client {
    /// A client of the context's services.
    pub(crate) fn new(ctx: Ctx) -> Client {
        Client {
            kv: KvService::new(ctx.clone()),
            lease: LeaseService::new(ctx.clone()),
            ctx,
        }
    }

    /// The lease of a session asked for `lease` (clientv3's `NewSession(WithLease(lease))`,
    /// which etcd's servers orphan at once): `lease` itself; for 0, a lease granted for 60
    /// seconds and never renewed.
    pub(crate) async fn session(&self, lease: i64) -> Result<i64, Status> {
        if lease != 0 {
            return Ok(lease);
        }
        let req = pb::LeaseGrantRequest {
            ttl: SESSION_TTL,
            id: 0,
        };
        let resp = self
            .lease
            .lease_grant(Request::new(req))
            .await
            .map_err(client_error)?;
        Ok(resp.into_inner().id)
    }

    /// A linearizable range.
    pub(crate) async fn range(&self, r: pb::RangeRequest) -> Result<pb::RangeResponse, Status> {
        let resp = self.kv.range(Request::new(r)).await.map_err(client_error)?;
        Ok(resp.into_inner())
    }

    /// A transaction.
    pub(crate) async fn txn(&self, t: pb::TxnRequest) -> Result<pb::TxnResponse, Status> {
        let resp = self.kv.txn(Request::new(t)).await.map_err(client_error)?;
        Ok(resp.into_inner())
    }

    /// Deletes `key`.
    pub(crate) async fn delete(&self, key: Vec<u8>) -> Result<pb::DeleteRangeResponse, Status> {
        let req = pb::DeleteRangeRequest {
            key,
            ..Default::default()
        };
        let resp = self
            .kv
            .delete_range(Request::new(req))
            .await
            .map_err(client_error)?;
        Ok(resp.into_inner())
    }

    /// A header as this member's now, at `revision` (a watch response's).
    pub(crate) fn header_at(&self, revision: i64) -> pb::ResponseHeader {
        let mut h = header(self.ctx.node.header());
        h.revision = revision;
        h
    }

    /// Watches `key` (or `[key, end)`) from `start_rev`.
    pub(crate) fn watch(
        &self,
        key: Vec<u8>,
        end: Option<Vec<u8>>,
        start_rev: i64,
    ) -> Result<Watcher, Status> {
        Watcher::start(&self.ctx.node, key, end, start_rev)
    }

    /// Waits until every key under `prefix` created at or before `max_create_rev` is deleted
    /// (clientv3's `waitDeletes`: the newest such key each time, its delete watched for from
    /// the revision it was read at). Returns the header of the range that found none.
    pub(crate) async fn wait_deletes(
        &self,
        prefix: &[u8],
        max_create_rev: i64,
    ) -> Result<pb::ResponseHeader, Status> {
        loop {
            let resp = self.range(last_created(prefix, max_create_rev)).await?;
            let header = resp.header.unwrap_or_default();
            let Some(kv) = resp.kvs.into_iter().next() else {
                return Ok(header);
            };
            self.wait_delete(kv.key, header.revision).await?;
        }
    }

    /// Waits for a delete of `key` at or after `rev` (clientv3's `waitDelete`).
    async fn wait_delete(&self, key: Vec<u8>, rev: i64) -> Result<(), Status> {
        let mut watch = self.watch(key, None, rev)?;
        while let Some(resp) = watch.recv().await {
            if resp.events.iter().any(|e| e.kind == EventKind::Delete) {
                return Ok(());
            }
            // clientv3's `WatchResponse.Err`: compacted, or else a future revision.
            if resp.compact_revision != 0 {
                return Err(Status::unknown(EtcdError::Compacted.message()));
            }
            if resp.canceled {
                return Err(Status::unknown(EtcdError::FutureRev.message()));
            }
        }
        Err(Status::unknown("lost watcher waiting for delete"))
    }
}

/// clientv3's `WithPrefix` end of `prefix`: its last byte below 0xff incremented, the bytes
/// after it dropped (`[0]`, every key from `prefix` on, if there is none).
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The oldest key under `prefix` (clientv3's `Get(prefix, WithFirstCreate()...)`).
pub(crate) fn first_created(prefix: &[u8]) -> pb::RangeRequest {
    pb::RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: pb::range_request::SortOrder::Ascend as i32,
        sort_target: pb::range_request::SortTarget::Create as i32,
        ..Default::default()
    }
}

/// The newest key under `prefix` created at or before `max_create_rev` (clientv3's
/// `Get(prefix, WithLastCreate(), WithMaxCreateRev(max_create_rev))`).
fn last_created(prefix: &[u8], max_create_rev: i64) -> pb::RangeRequest {
    pb::RangeRequest {
        sort_order: pb::range_request::SortOrder::Descend as i32,
        max_create_revision: max_create_rev,
        ..first_created(prefix)
    }
}

/// The key of a session with `lease` under `prefix`: the prefix and the lease in hex as Go's
/// `%x` prints it (a minus sign before a negative one).
pub(crate) fn session_key(prefix: &[u8], lease: i64) -> Vec<u8> {
    let hex = if lease < 0 {
        format!("-{:x}", lease.unsigned_abs())
    } else {
        format!("{lease:x}")
    };
    [prefix, hex.as_bytes()].concat()
}

/// `name` and a slash: the prefix an election's or a lock's keys share.
pub(crate) fn prefix_of(name: &[u8]) -> Vec<u8> {
    [name, b"/"].concat()
}

/// Compares `key`'s create revision with `rev` (0: the key does not exist).
pub(crate) fn created_at(key: &[u8], rev: i64) -> pb::Compare {
    pb::Compare {
        result: pb::compare::CompareResult::Equal as i32,
        target: pb::compare::CompareTarget::Create as i32,
        key: key.to_vec(),
        range_end: Vec::new(),
        target_union: Some(pb::compare::TargetUnion::CreateRevision(rev)),
    }
}

/// A put of `value` at `key` with `lease`.
pub(crate) fn put_op(key: &[u8], value: Vec<u8>, lease: i64) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
            key: key.to_vec(),
            value,
            lease,
            ..Default::default()
        })),
    }
}

/// A range.
pub(crate) fn get_op(r: pb::RangeRequest) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestRange(r)),
    }
}

/// A get of the single key `key`.
pub(crate) fn get_key(key: &[u8]) -> pb::RangeRequest {
    pb::RangeRequest {
        key: key.to_vec(),
        ..Default::default()
    }
}

/// A delete of `key`.
pub(crate) fn delete_op(key: &[u8]) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestDeleteRange(
            pb::DeleteRangeRequest {
                key: key.to_vec(),
                ..Default::default()
            },
        )),
    }
}

/// The first key-value of a transaction's `i`th response, if it is a range that found one.
pub(crate) fn first_kv(resp: &pb::TxnResponse, i: usize) -> Option<&mvccpb::KeyValue> {
    match resp.responses.get(i)?.response.as_ref()? {
        pb::response_op::Response::ResponseRange(r) => r.kvs.first(),
        _ => None,
    }
}

/// Clean-up owed if the request is dropped (its client cancelled it or its deadline passed)
/// before [`OnCancel::disarm`]: what clientv3's recipes do when their context is cancelled,
/// run on a task of its own.
pub(crate) struct OnCancel {
    work: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl OnCancel {
    /// Owes `work`.
    pub(crate) fn new(work: impl Future<Output = ()> + Send + 'static) -> OnCancel {
        OnCancel {
            work: Some(Box::pin(work)),
        }
    }

    /// Does the work now, to its end even if the request is dropped meanwhile.
    pub(crate) async fn run(mut self) {
        if let Some(work) = self.work.take() {
            let _ = tokio::spawn(work).await;
        }
    }

    /// Forgets the work.
    pub(crate) fn disarm(mut self) {
        self.work = None;
    }
}

impl Drop for OnCancel {
    fn drop(&mut self) {
        if let Some(work) = self.work.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(work);
        }
    }
}

/// One watch on this member's store, forwarded by a task of its own (so that a lock or an
/// election waiting on it holds no thread); dropping the watcher ends the watch and the task.
/// A store replaced by a snapshot install is watched again from where the old one left off,
/// as clientv3 resumes a broken watch.
pub(crate) struct Watcher {
    rx: mpsc::Receiver<WatchResponse>,
}

impl Watcher {
    fn start(
        node: &Node,
        key: Vec<u8>,
        end: Option<Vec<u8>>,
        start_rev: i64,
    ) -> Result<Watcher, Status> {
        let store = node.watchable_store();
        let stream = open(&store, &key, end.as_deref(), start_rev)?;
        let (tx, rx) = mpsc::channel(16);
        let forward = Forward {
            node: node.clone(),
            store: Arc::downgrade(&store),
            key,
            end,
            next_rev: start_rev,
            tx,
        };
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| Status::internal(format!("etcdserver: cannot start a watch: {e}")))?;
        runtime.spawn(forward.run(stream));
        Ok(Watcher { rx })
    }

    /// The next response; `None` once the watch ended (the store closed for good).
    pub(crate) async fn recv(&mut self) -> Option<WatchResponse> {
        self.rx.recv().await
    }
}

fn open(
    store: &WatchableStore,
    key: &[u8],
    end: Option<&[u8]>,
    rev: i64,
) -> Result<WatchStream, Status> {
    let stream = store.watch_stream();
    stream
        .watch(None, key, end, rev, WatchFilters::default(), false)
        .map_err(|e| Status::unknown(e.to_string()))?;
    Ok(stream)
}

/// A watcher's task.
struct Forward {
    node: Node,
    /// The store watched (not kept alive: its dropping is what tells it was replaced).
    store: Weak<WatchableStore>,
    key: Vec<u8>,
    end: Option<Vec<u8>>,
    /// The first revision whose events were not forwarded yet.
    next_rev: i64,
    tx: mpsc::Sender<WatchResponse>,
}

impl Forward {
    async fn run(mut self, mut stream: WatchStream) {
        loop {
            let next = tokio::select! {
                resp = stream.recv_async() => resp,
                () = self.tx.closed() => return,
            };
            match next {
                Some(resp) => {
                    if let Some(last) = resp.events.last() {
                        self.next_rev = last.revision() + 1;
                    }
                    let canceled = resp.canceled;
                    if self.tx.send(resp).await.is_err() || canceled {
                        return;
                    }
                }
                None => {
                    let current = self.node.watchable_store();
                    if std::ptr::eq(Arc::as_ptr(&current), self.store.as_ptr()) {
                        return;
                    }
                    match open(&current, &self.key, self.end.as_deref(), self.next_rev) {
                        Ok(s) => {
                            stream = s;
                            self.store = Arc::downgrade(&current);
                        }
                        Err(_) => return,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_follow_clientv3() {
        assert_eq!(prefix_end(b"lock/"), b"lock0");
        assert_eq!(prefix_end(b"a\xff\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), [0]);
    }

    #[test]
    fn session_keys_print_the_lease_as_go_does() {
        assert_eq!(
            session_key(b"l/", 0x694d_a251_1a19_8909),
            b"l/694da2511a198909"
        );
        assert_eq!(session_key(b"l/", -26), b"l/-1a");
        assert_eq!(session_key(b"l/", i64::MIN), b"l/-8000000000000000");
    }

    #[test]
    fn etcd_errors_become_unknown_and_others_keep_their_code() {
        let s = client_error(EtcdError::LeaseNotFound.status());
        assert_eq!(s.code(), tonic::Code::Unknown);
        assert_eq!(s.message(), "etcdserver: requested lease not found");
        let s = client_error(Status::invalid_argument("etcdserver: invalid sort option"));
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
    }
}
