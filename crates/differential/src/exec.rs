//! Running steps against one cluster through the gRPC API, and the normalized form of what came
//! back: responses, errors and watch events.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use server::proto::etcdserverpb::{
    CompactionResponse, DeleteRangeResponse, LeaseGrantResponse, LeaseLeasesRequest,
    LeaseLeasesResponse, LeaseRevokeResponse, LeaseTimeToLiveResponse, PutResponse, RangeRequest,
    RangeResponse, ResponseHeader, ResponseOp, TxnResponse, WatchCancelRequest,
    WatchProgressRequest, WatchRequest, WatchResponse, kv_client::KvClient,
    lease_client::LeaseClient, response_op, watch_client::WatchClient, watch_request,
};
use server::proto::mvccpb::Event;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::cluster::{Cluster, MAX_MESSAGE_BYTES};
use crate::ops::{Op, Step};

/// How long one request may take before it counts as a (client-side) timeout.
pub const OP_TIMEOUT: Duration = Duration::from_secs(10);

/// The gRPC code used for a request that timed out on our side (not a real gRPC code).
pub const CODE_CLIENT_TIMEOUT: i32 = -1;

/// A successful response, normalized (see [`normalize_header`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// KV.Range.
    Range(RangeResponse),
    /// KV.Put.
    Put(PutResponse),
    /// KV.DeleteRange.
    DeleteRange(DeleteRangeResponse),
    /// KV.Txn.
    Txn(TxnResponse),
    /// KV.Compact.
    Compact(CompactionResponse),
    /// Lease.LeaseGrant.
    LeaseGrant(LeaseGrantResponse),
    /// Lease.LeaseRevoke.
    LeaseRevoke(LeaseRevokeResponse),
    /// Lease.LeaseTimeToLive.
    LeaseTimeToLive(LeaseTimeToLiveResponse),
    /// Lease.LeaseLeases.
    LeaseLeases(LeaseLeasesResponse),
    /// A watch request was written to the stream; its answers arrive as [`WatchItem`]s.
    WatchSent,
}

/// The outcome of one request.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// A response.
    Ok(Reply),
    /// A gRPC error: its code (as a number, [`CODE_CLIENT_TIMEOUT`] for our own timeout) and
    /// message. Both are compared: etcd's clients match on them.
    Err {
        /// The gRPC status code.
        code: i32,
        /// The status message.
        message: String,
    },
}

impl Outcome {
    fn from_status(s: &tonic::Status) -> Outcome {
        Outcome::Err {
            code: s.code() as i32,
            message: s.message().to_owned(),
        }
    }

    fn timeout() -> Outcome {
        Outcome::Err {
            code: CODE_CLIENT_TIMEOUT,
            message: format!("no answer within {OP_TIMEOUT:?}"),
        }
    }
}

/// What a watch stream delivered, one item per created/canceled/progress response or event.
///
/// Normalization: events are flattened out of their responses and the header of event
/// responses is dropped, because how events of several revisions are batched into responses
/// (and so which revision the header carries) depends on when the server's send loop runs.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchItem {
    /// A `created` response (possibly also `canceled`, when the create failed).
    Created {
        /// The header revision.
        revision: i64,
        /// Whether the create was refused.
        canceled: bool,
        /// Why.
        cancel_reason: String,
        /// The compaction revision, when canceled because of it.
        compact_revision: i64,
    },
    /// A `canceled` response.
    Canceled {
        /// The header revision.
        revision: i64,
        /// The compaction revision, when canceled because of it.
        compact_revision: i64,
        /// Why.
        cancel_reason: String,
    },
    /// One event.
    Event(Event),
    /// A response with no events that is neither created nor canceled: a progress notification.
    Progress {
        /// The header revision.
        revision: i64,
        /// The compaction revision (should be 0).
        compact_revision: i64,
    },
    /// The stream failed.
    StreamError {
        /// The gRPC status code.
        code: i32,
        /// The status message.
        message: String,
    },
}

impl WatchItem {
    /// The item's kind, for signatures.
    pub fn kind(&self) -> &'static str {
        match self {
            WatchItem::Created { .. } => "Created",
            WatchItem::Canceled { .. } => "Canceled",
            WatchItem::Event(_) => "Event",
            WatchItem::Progress { .. } => "Progress",
            WatchItem::StreamError { .. } => "StreamError",
        }
    }
}

/// Everything a watch stream delivered so far, by watch id (stream errors under `i64::MIN`).
///
/// Normalization: items are grouped by watch id, because etcd sends the events of one revision
/// to its watchers in map order: only the order within one watch is defined.
pub type WatchLog = BTreeMap<i64, Vec<WatchItem>>;

struct WatchSession {
    requests: mpsc::UnboundedSender<WatchRequest>,
    responses: mpsc::UnboundedReceiver<Result<WatchResponse, tonic::Status>>,
    task: JoinHandle<()>,
}

impl Drop for WatchSession {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Known ferrocd differences to overlook (all off by default), so that a run can look past a
/// reported, not yet fixed mismatch that would otherwise end most sequences early. These are
/// not legitimate differences: each is a finding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tolerate {
    /// Drop the headers of responses nested in a txn (etcd 3.4 leaves a nested txn's header
    /// revision 0).
    pub nested_txn_headers: bool,
    /// Ignore the header revision of a watch canceled by compaction (etcd 3.4 leaves it 0).
    pub compacted_watch_revision: bool,
}

/// One cluster under test, with the state of the sequence's watch stream.
pub struct Side {
    cluster: Cluster,
    watch_member: usize,
    tolerate: Tolerate,
    watch: Option<WatchSession>,
    /// The normalized watch items received so far.
    pub log: WatchLog,
}

impl Side {
    /// Wraps a started cluster; the watch stream (opened by the first watch request) goes to
    /// `watch_member`.
    pub fn new(cluster: Cluster, watch_member: usize, tolerate: Tolerate) -> Side {
        Side {
            cluster,
            watch_member,
            tolerate,
            watch: None,
            log: WatchLog::new(),
        }
    }

    /// The cluster.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The members that have exited (see [`Cluster::exited`]).
    pub fn exited(&mut self) -> Vec<String> {
        self.cluster.exited()
    }

    /// Whether a watch stream is open.
    pub fn watching(&self) -> bool {
        self.watch.is_some()
    }

    fn kv(&self, member: usize) -> KvClient<tonic::transport::Channel> {
        KvClient::new(self.cluster.channel(member))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn lease(&self, member: usize) -> LeaseClient<tonic::transport::Channel> {
        LeaseClient::new(self.cluster.channel(member))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// A linearizable read on `member`, so that it has applied everything acknowledged so far
    /// before a request it answers from its local state (lease lists, watch creation). Not
    /// compared: only needed with several members.
    async fn barrier(&self, member: usize) {
        if self.cluster.len() < 2 {
            return;
        }
        let mut kv = self.kv(member);
        let probe = RangeRequest {
            key: b"differential-barrier".to_vec(),
            count_only: true,
            ..RangeRequest::default()
        };
        let _ = tokio::time::timeout(OP_TIMEOUT, kv.range(probe)).await;
    }

    /// Sends one step's request and returns its normalized outcome.
    pub async fn exec(&mut self, step: &Step) -> Outcome {
        match &step.op {
            Op::LeaseTimeToLive(_) | Op::LeaseLeases => self.barrier(step.member).await,
            op if op.is_watch() => self.barrier(self.watch_member).await,
            _ => {}
        }
        let outcome = tokio::time::timeout(OP_TIMEOUT, self.send(step)).await;
        let mut outcome = outcome.unwrap_or_else(|_| Outcome::timeout());
        if let Outcome::Ok(reply) = &mut outcome {
            normalize(reply);
            if self.tolerate.nested_txn_headers
                && let Reply::Txn(t) = reply
            {
                drop_nested_headers(t);
            }
        }
        outcome
    }

    async fn send(&mut self, step: &Step) -> Outcome {
        let m = step.member;
        let result = match &step.op {
            Op::Range(r) => self
                .kv(m)
                .range(r.clone())
                .await
                .map(|x| Reply::Range(x.into_inner())),
            Op::Put(r) => self
                .kv(m)
                .put(r.clone())
                .await
                .map(|x| Reply::Put(x.into_inner())),
            Op::DeleteRange(r) => self
                .kv(m)
                .delete_range(r.clone())
                .await
                .map(|x| Reply::DeleteRange(x.into_inner())),
            Op::Txn(r) => self
                .kv(m)
                .txn(r.clone())
                .await
                .map(|x| Reply::Txn(x.into_inner())),
            Op::Compact(r) => self
                .kv(m)
                .compact(*r)
                .await
                .map(|x| Reply::Compact(x.into_inner())),
            Op::LeaseGrant(r) => self
                .lease(m)
                .lease_grant(*r)
                .await
                .map(|x| Reply::LeaseGrant(x.into_inner())),
            Op::LeaseRevoke(r) => self
                .lease(m)
                .lease_revoke(*r)
                .await
                .map(|x| Reply::LeaseRevoke(x.into_inner())),
            Op::LeaseTimeToLive(r) => self
                .lease(m)
                .lease_time_to_live(*r)
                .await
                .map(|x| Reply::LeaseTimeToLive(x.into_inner())),
            Op::LeaseLeases => self
                .lease(m)
                .lease_leases(LeaseLeasesRequest {})
                .await
                .map(|x| Reply::LeaseLeases(x.into_inner())),
            Op::WatchCreate(c) => {
                return self.watch_send(watch_request::RequestUnion::CreateRequest(c.clone()));
            }
            Op::WatchCancel(id) => {
                return self.watch_send(watch_request::RequestUnion::CancelRequest(
                    WatchCancelRequest { watch_id: *id },
                ));
            }
            Op::WatchProgress => {
                return self.watch_send(watch_request::RequestUnion::ProgressRequest(
                    WatchProgressRequest {},
                ));
            }
        };
        match result {
            Ok(reply) => Outcome::Ok(reply),
            Err(status) => Outcome::from_status(&status),
        }
    }

    /// Writes a request on the watch stream, opening the stream first if needed.
    fn watch_send(&mut self, request: watch_request::RequestUnion) -> Outcome {
        let session = match &mut self.watch {
            Some(s) => s,
            None => self
                .watch
                .insert(open_watch(self.cluster.channel(self.watch_member))),
        };
        let sent = session.requests.send(WatchRequest {
            request_union: Some(request),
        });
        match sent {
            Ok(()) => Outcome::Ok(Reply::WatchSent),
            Err(_) => Outcome::Err {
                code: tonic::Code::Unavailable as i32,
                message: "watch stream closed".to_owned(),
            },
        }
    }

    /// Moves what the watch stream delivered into [`Side::log`]: everything available now, then
    /// whatever arrives until nothing has for `quiet` (at most `max` in all).
    pub async fn drain(&mut self, quiet: Duration, max: Duration) {
        let Some(session) = &mut self.watch else {
            return;
        };
        let deadline = Instant::now() + max;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match tokio::time::timeout(quiet.min(left), session.responses.recv()).await {
                Ok(Some(Ok(resp))) => push_response(&mut self.log, resp, self.tolerate),
                Ok(Some(Err(status))) => {
                    self.log
                        .entry(i64::MIN)
                        .or_default()
                        .push(WatchItem::StreamError {
                            code: status.code() as i32,
                            message: status.message().to_owned(),
                        });
                }
                Ok(None) | Err(_) => return,
            }
        }
    }
}

fn open_watch(channel: tonic::transport::Channel) -> WatchSession {
    let (req_tx, req_rx) = mpsc::unbounded_channel();
    let (resp_tx, resp_rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut client = WatchClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let mut stream = match client.watch(UnboundedReceiverStream::new(req_rx)).await {
            Ok(r) => r.into_inner(),
            Err(status) => {
                let _ = resp_tx.send(Err(status));
                return;
            }
        };
        loop {
            match stream.message().await {
                Ok(Some(m)) => {
                    if resp_tx.send(Ok(m)).is_err() {
                        return;
                    }
                }
                Ok(None) => {
                    let _ = resp_tx.send(Err(tonic::Status::unknown("watch stream ended")));
                    return;
                }
                Err(status) => {
                    let _ = resp_tx.send(Err(status));
                    return;
                }
            }
        }
    });
    WatchSession {
        requests: req_tx,
        responses: resp_rx,
        task,
    }
}

fn push_response(log: &mut WatchLog, resp: WatchResponse, tolerate: Tolerate) {
    let mut revision = resp.header.as_ref().map_or(0, |h| h.revision);
    if tolerate.compacted_watch_revision && resp.canceled && resp.compact_revision != 0 {
        revision = 0;
    }
    let items = log.entry(resp.watch_id).or_default();
    if resp.created {
        items.push(WatchItem::Created {
            revision,
            canceled: resp.canceled,
            cancel_reason: resp.cancel_reason,
            compact_revision: resp.compact_revision,
        });
    } else if resp.canceled {
        items.extend(resp.events.into_iter().map(WatchItem::Event));
        items.push(WatchItem::Canceled {
            revision,
            compact_revision: resp.compact_revision,
            cancel_reason: resp.cancel_reason,
        });
    } else if resp.events.is_empty() {
        items.push(WatchItem::Progress {
            revision,
            compact_revision: resp.compact_revision,
        });
    } else {
        items.extend(resp.events.into_iter().map(WatchItem::Event));
    }
}

/// Clears what legitimately differs between two clusters in a response header: the cluster and
/// member ids (random per cluster) and the raft term (elections happen at different times).
/// The revision is kept: both run the same sequence from a fresh store.
pub fn normalize_header(h: &mut Option<ResponseHeader>) {
    if let Some(h) = h {
        h.cluster_id = 0;
        h.member_id = 0;
        h.raft_term = 0;
    }
}

/// Normalizes a reply on its own (see [`reconcile`] for what needs both sides).
pub fn normalize(reply: &mut Reply) {
    match reply {
        Reply::Range(r) => normalize_header(&mut r.header),
        Reply::Put(r) => normalize_header(&mut r.header),
        Reply::DeleteRange(r) => normalize_header(&mut r.header),
        Reply::Txn(r) => normalize_txn(r),
        Reply::Compact(r) => normalize_header(&mut r.header),
        Reply::LeaseGrant(r) => normalize_header(&mut r.header),
        Reply::LeaseRevoke(r) => normalize_header(&mut r.header),
        Reply::LeaseTimeToLive(r) => {
            normalize_header(&mut r.header);
            // etcd lists a lease's keys from a Go map: the order is random.
            r.keys.sort();
        }
        Reply::LeaseLeases(r) => {
            normalize_header(&mut r.header);
            // etcd lists leases from a Go map: the order is random.
            r.leases.sort_by_key(|l| l.id);
        }
        Reply::WatchSent => {}
    }
}

fn drop_nested_headers(r: &mut TxnResponse) {
    for ResponseOp { response } in &mut r.responses {
        match response {
            Some(response_op::Response::ResponseRange(x)) => x.header = None,
            Some(response_op::Response::ResponsePut(x)) => x.header = None,
            Some(response_op::Response::ResponseDeleteRange(x)) => x.header = None,
            Some(response_op::Response::ResponseTxn(x)) => {
                x.header = None;
                drop_nested_headers(x);
            }
            None => {}
        }
    }
}

fn normalize_txn(r: &mut TxnResponse) {
    normalize_header(&mut r.header);
    for ResponseOp { response } in &mut r.responses {
        match response {
            Some(response_op::Response::ResponseRange(x)) => normalize_header(&mut x.header),
            Some(response_op::Response::ResponsePut(x)) => normalize_header(&mut x.header),
            Some(response_op::Response::ResponseDeleteRange(x)) => {
                normalize_header(&mut x.header);
            }
            Some(response_op::Response::ResponseTxn(x)) => normalize_txn(x),
            None => {}
        }
    }
}

/// How far the remaining TTL of a lease may differ between the sides: they are asked at slightly
/// different moments, and each rounds to whole seconds.
pub const TTL_TOLERANCE_SECS: i64 = 2;

/// Normalization that needs both outcomes: a lease's remaining TTL within
/// [`TTL_TOLERANCE_SECS`] counts as equal.
pub fn reconcile(reference: &Outcome, tested: &mut Outcome) {
    if let (Outcome::Ok(Reply::LeaseTimeToLive(a)), Outcome::Ok(Reply::LeaseTimeToLive(b))) =
        (reference, tested)
        && a.ttl > 0
        && b.ttl > 0
        && (a.ttl - b.ttl).abs() <= TTL_TOLERANCE_SECS
    {
        b.ttl = a.ttl;
    }
}
