//! etcd's `Lease` service: Grant, Revoke, KeepAlive, TimeToLive, Leases.
//!
//! Only the leader renews leases and knows their remaining TTLs. A keep-alive or TimeToLive
//! that reaches a follower is forwarded to the leader over gRPC, at the leader's client URL from the member list (etcd forwards over the
//! peer HTTP API instead).

use std::time::{Duration, Instant};

use node::NodeError;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

use super::{Ctx, header};
use crate::error::{EtcdError, to_status};
use crate::proto::etcdserverpb as pb;
use crate::proto::etcdserverpb::lease_client::LeaseClient;
use crate::proto::etcdserverpb::lease_server::Lease;

/// How long a keep-alive waits for a leader to appear before failing.
const LEADER_WAIT: Duration = Duration::from_secs(3);

/// The Lease service.
#[derive(Debug, Clone)]
pub struct LeaseService {
    ctx: Ctx,
}

impl LeaseService {
    /// A Lease service over the context's node.
    pub fn new(ctx: Ctx) -> LeaseService {
        LeaseService { ctx }
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let r = request.into_inner();
        let resp = self
            .ctx
            .node
            .lease_grant(r.id, r.ttl)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::LeaseGrantResponse {
            header: Some(header(resp.header)),
            id: resp.body.id,
            ttl: resp.body.ttl,
            error: String::new(),
        }))
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let r = request.into_inner();
        let resp = self.ctx.node.lease_revoke(r.id).await.map_err(to_status)?;
        Ok(Response::new(pb::LeaseRevokeResponse {
            header: Some(header(resp.header)),
        }))
    }

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<BoxStream<pb::LeaseKeepAliveResponse>>, Status> {
        let mut incoming = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            let mut forwarder = Forwarder::default();
            loop {
                let req = match incoming.message().await {
                    Ok(Some(req)) => req,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "lease keep-alive stream receive failed");
                        break;
                    }
                };
                let resp = keep_alive(&ctx, &mut forwarder, req.id).await;
                let stop = resp.is_err();
                if tx.send(resp).await.is_err() || stop {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let r = request.into_inner();
        // Only the leader knows the remaining TTL: a follower asks it, like etcd.
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            let node = &self.ctx.node;
            if node.is_leader() {
                return time_to_live_here(&self.ctx, r.id, r.keys).map(Response::new);
            }
            let leader = node.leader();
            if leader != 0 && leader != node.member_id() {
                let mut forwarder = Forwarder::default();
                return forwarder
                    .time_to_live(&self.ctx, leader, r)
                    .await
                    .map(Response::new);
            }
            if Instant::now() >= deadline {
                return Err(EtcdError::NoLeader.status());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn lease_leases(
        &self,
        _request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        let resp = self.ctx.node.leases();
        Ok(Response::new(pb::LeaseLeasesResponse {
            header: Some(header(resp.header)),
            leases: resp
                .body
                .into_iter()
                .map(|id| pb::LeaseStatus { id })
                .collect(),
        }))
    }
}

/// A lease's TTL as this member's lessor knows it. A missing lease is answered with TTL -1,
/// not an error, like etcd.
fn time_to_live_here(
    ctx: &Ctx,
    id: i64,
    keys: bool,
) -> Result<pb::LeaseTimeToLiveResponse, Status> {
    match ctx.node.lease_time_to_live(id, keys) {
        Ok(resp) => Ok(pb::LeaseTimeToLiveResponse {
            header: Some(header(resp.header)),
            id: resp.body.id,
            ttl: resp.body.remaining_ttl,
            granted_ttl: resp.body.granted_ttl,
            keys: resp.body.keys,
        }),
        Err(NodeError::LeaseNotFound) => Ok(pb::LeaseTimeToLiveResponse {
            header: Some(header(ctx.node.header())),
            id,
            ttl: -1,
            granted_ttl: 0,
            keys: Vec::new(),
        }),
        Err(e) => Err(to_status(e)),
    }
}

/// A connection to the leader, kept while it leads.
#[derive(Default)]
struct Forwarder {
    leader: Option<(u64, LeaseClient<Channel>)>,
}

impl Forwarder {
    async fn client(&mut self, ctx: &Ctx, leader: u64) -> Result<LeaseClient<Channel>, Status> {
        if let Some((id, client)) = &self.leader
            && *id == leader
        {
            return Ok(client.clone());
        }
        let channel = super::leader_channel(ctx, leader).await?;
        let client = LeaseClient::new(channel);
        self.leader = Some((leader, client.clone()));
        Ok(client)
    }

    async fn forward(
        &mut self,
        ctx: &Ctx,
        leader: u64,
        id: i64,
    ) -> Result<pb::LeaseKeepAliveResponse, Status> {
        let mut client = self.client(ctx, leader).await?;
        let result = async {
            let mut stream = client
                .lease_keep_alive(tokio_stream::once(pb::LeaseKeepAliveRequest { id }))
                .await?
                .into_inner();
            stream
                .message()
                .await?
                .ok_or_else(|| EtcdError::NotLeader.status())
        }
        .await;
        if result.is_err() {
            self.leader = None;
        }
        result
    }
}

impl Forwarder {
    /// Asks the leader for a lease's TTL.
    async fn time_to_live(
        &mut self,
        ctx: &Ctx,
        leader: u64,
        req: pb::LeaseTimeToLiveRequest,
    ) -> Result<pb::LeaseTimeToLiveResponse, Status> {
        let mut client = self.client(ctx, leader).await?;
        let result = client
            .lease_time_to_live(req)
            .await
            .map(Response::into_inner);
        if result.is_err() {
            self.leader = None;
        }
        result
    }
}

/// One keep-alive: renewed here on the leader, forwarded from a follower. A missing lease is
/// answered with TTL 0, like etcd.
async fn keep_alive(
    ctx: &Ctx,
    forwarder: &mut Forwarder,
    id: i64,
) -> Result<pb::LeaseKeepAliveResponse, Status> {
    let deadline = Instant::now() + LEADER_WAIT;
    loop {
        match ctx.node.lease_renew(id) {
            Ok(resp) => {
                return Ok(pb::LeaseKeepAliveResponse {
                    header: Some(header(resp.header)),
                    id,
                    ttl: resp.body,
                });
            }
            Err(NodeError::LeaseNotFound) => {
                let h = header(ctx.node.header());
                return Ok(pb::LeaseKeepAliveResponse {
                    header: Some(h),
                    id,
                    ttl: 0,
                });
            }
            Err(NodeError::NotLeader { leader_id }) if leader_id != 0 => {
                if leader_id == ctx.node.member_id() {
                    // Leadership is changing hands: ask again.
                } else {
                    return forwarder.forward(ctx, leader_id, id).await;
                }
            }
            Err(NodeError::NotLeader { .. } | NodeError::NoLeader) => {}
            Err(e) => return Err(to_status(e)),
        }
        if Instant::now() >= deadline {
            return Err(EtcdError::NoLeader.status());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
