//! etcd's `Election` service (`v3electionpb.Election`): clientv3's `concurrency.Election`, run
//! by the server for its caller as etcd 3.4's `v3election` runs it.
//!
//! The leader of election `name` is the oldest key under `name/`, and its value the leader's
//! proclamation. A campaigner puts `name/<lease in hex>` with its lease and is elected once
//! every older key is deleted.

use mvcc::EventKind;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

use super::Ctx;
use super::concurrency::{
    Client, OnCancel, created_at, delete_op, first_created, first_kv, get_key, get_op, prefix_end,
    prefix_of, put_op, session_key,
};
use crate::convert;
use crate::proto::etcdserverpb as pb;
use crate::proto::v3electionpb::election_server::Election;
use crate::proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};

/// etcd's `ErrMissingLeaderKey`: a Proclaim or Resign without its `leader` (a plain Go error,
/// so code Unknown).
pub fn missing_leader() -> Status {
    Status::unknown("\"leader\" field must be provided")
}

/// clientv3's `ErrElectionNotLeader`: the leader key given is not held any more.
pub fn not_leader() -> Status {
    Status::unknown("election: not leader")
}

/// clientv3's `ErrElectionNoLeader`: nobody was elected.
pub fn no_leader() -> Status {
    Status::unknown("election: no leader")
}

/// The Election service.
#[derive(Debug, Clone)]
pub struct ElectionService {
    client: Client,
}

impl ElectionService {
    /// An Election service over the context's node.
    pub fn new(ctx: Ctx) -> ElectionService {
        ElectionService {
            client: Client::new(ctx),
        }
    }
}

/// Puts `value` at the leader key `key` if it still has create revision `rev`
/// (clientv3's `Election.Proclaim`).
async fn proclaim(
    client: &Client,
    key: &[u8],
    rev: i64,
    lease: i64,
    value: Vec<u8>,
) -> Result<pb::ResponseHeader, Status> {
    let txn = pb::TxnRequest {
        compare: vec![created_at(key, rev)],
        success: vec![put_op(key, value, lease)],
        failure: Vec::new(),
    };
    let resp = client.txn(txn).await?;
    if !resp.succeeded {
        return Err(not_leader());
    }
    Ok(resp.header.unwrap_or_default())
}

/// Deletes the leader key `key` if it still has create revision `rev` (clientv3's
/// `Election.Resign`).
async fn resign(client: &Client, key: &[u8], rev: i64) -> Result<pb::ResponseHeader, Status> {
    let txn = pb::TxnRequest {
        compare: vec![created_at(key, rev)],
        success: vec![delete_op(key)],
        failure: Vec::new(),
    };
    Ok(client.txn(txn).await?.header.unwrap_or_default())
}

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(
        &self,
        request: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        let r = request.into_inner();
        let lease = self.client.session(r.lease).await?;
        let prefix = prefix_of(&r.name);
        let key = session_key(&prefix, lease);
        let txn = pb::TxnRequest {
            compare: vec![created_at(&key, 0)],
            success: vec![put_op(&key, r.value.clone(), lease)],
            failure: vec![get_op(get_key(&key))],
        };
        let resp = self.client.txn(txn).await?;
        let header = resp.header.unwrap_or_default();
        let mut rev = header.revision;
        if !resp.succeeded {
            // This lease campaigns already: keep its place, with the new value.
            let kv = first_kv(&resp, 0)
                .ok_or_else(|| Status::unknown("etcdserver: campaign key not found"))?;
            rev = kv.create_revision;
            if kv.value != r.value
                && let Err(e) = proclaim(&self.client, &key, rev, lease, r.value.clone()).await
            {
                let _ = resign(&self.client, &key, rev).await;
                return Err(e);
            }
        }
        // Wait for the older campaigners; resign if the request is cancelled meanwhile (a
        // failed wait keeps the key, as clientv3 does).
        let client = self.client.clone();
        let mine = key.clone();
        let on_cancel = OnCancel::new(async move {
            if let Err(e) = resign(&client, &mine, rev).await {
                tracing::debug!(error = %e, "cannot resign an abandoned campaign");
            }
        });
        let waited = self.client.wait_deletes(&prefix, rev - 1).await;
        on_cancel.disarm();
        waited?;
        Ok(Response::new(CampaignResponse {
            header: Some(header),
            leader: Some(LeaderKey {
                name: r.name,
                key,
                rev,
                lease,
            }),
        }))
    }

    async fn proclaim(
        &self,
        request: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        let r = request.into_inner();
        let leader = r.leader.ok_or_else(missing_leader)?;
        // etcd resumes the election in a session of the leader's lease (0 grants one).
        let lease = self.client.session(leader.lease).await?;
        let header = proclaim(&self.client, &leader.key, leader.rev, lease, r.value).await?;
        Ok(Response::new(ProclaimResponse {
            header: Some(header),
        }))
    }

    async fn leader(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        let prefix = prefix_of(&request.into_inner().name);
        let resp = self.client.range(first_created(&prefix)).await?;
        let kv = resp.kvs.into_iter().next().ok_or_else(no_leader)?;
        Ok(Response::new(LeaderResponse {
            header: resp.header,
            kv: Some(kv),
        }))
    }

    async fn observe(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<BoxStream<LeaderResponse>>, Status> {
        let prefix = prefix_of(&request.into_inner().name);
        let (tx, mut rx) = mpsc::channel(16);
        let client = self.client.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = observe(&client, &prefix, &tx) => {}
                () = tx.closed() => {}
            }
        });
        // grpc-go sends a stream's headers with its first message: the call is answered once
        // there is a leader (or the observation ended).
        let first = rx.recv().await;
        let rest = ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(
            tokio_stream::iter(first).chain(rest),
        )))
    }

    async fn resign(
        &self,
        request: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        let leader = request.into_inner().leader.ok_or_else(missing_leader)?;
        // etcd resumes the election in a session of the leader's lease (0 grants one).
        self.client.session(leader.lease).await?;
        let header = resign(&self.client, &leader.key, leader.rev).await?;
        Ok(Response::new(ResignResponse {
            header: Some(header),
        }))
    }
}

type Out = mpsc::Sender<Result<LeaderResponse, Status>>;

/// Sends the election's leader and every proclamation of it, then the next leader's, and so
/// on (clientv3's `Election.observe`); returns once a read or a watch fails (the stream then
/// ends without an error, as etcd's) or the client is gone.
async fn observe(client: &Client, prefix: &[u8], out: &Out) {
    loop {
        let Ok(resp) = client.range(first_created(prefix)).await else {
            return;
        };
        let header = resp.header.unwrap_or_default();
        let (header, kv) = match resp.kvs.into_iter().next() {
            Some(kv) => (header, kv),
            None => match first_put(client, prefix, header.revision).await {
                Some(leader) => leader,
                None => return,
            },
        };
        let next = header.revision + 1;
        let key = kv.key.clone();
        let leader = LeaderResponse {
            header: Some(header),
            kv: Some(kv),
        };
        if out.send(Ok(leader)).await.is_err() {
            return;
        }
        // Every change of the leader key, until it is deleted.
        let Ok(mut watch) = client.watch(key, None, next) else {
            return;
        };
        'leader: loop {
            let Some(wr) = watch.recv().await else {
                return;
            };
            if wr.canceled {
                return;
            }
            let header = client.header_at(wr.revision);
            for ev in wr.events {
                if ev.kind == EventKind::Delete {
                    break 'leader;
                }
                let update = LeaderResponse {
                    header: Some(header),
                    kv: Some(convert::kv(ev.kv)),
                };
                if out.send(Ok(update)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The first key put under `prefix` from revision `rev` on, with a header at its revision;
/// `None` if the watch fails.
async fn first_put(
    client: &Client,
    prefix: &[u8],
    rev: i64,
) -> Option<(pb::ResponseHeader, crate::proto::mvccpb::KeyValue)> {
    let mut watch = client
        .watch(prefix.to_vec(), Some(prefix_end(prefix)), rev)
        .ok()?;
    loop {
        let wr = watch.recv().await?;
        if wr.canceled {
            return None;
        }
        // Only puts: a delete would make the observer spin.
        if let Some(ev) = wr.events.into_iter().find(|e| e.kind == EventKind::Put) {
            return Some((client.header_at(ev.kv.mod_revision), convert::kv(ev.kv)));
        }
    }
}
