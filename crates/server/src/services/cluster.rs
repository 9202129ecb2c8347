//! etcd's `Cluster` service: MemberAdd, MemberRemove, MemberUpdate, MemberList, MemberPromote.

use node::membership::Member;
use tonic::{Request, Response, Status};

use node::NodeError;

use super::{Ctx, blocking, header, leader_channel};
use crate::error::{EtcdError, to_status};
use crate::proto::etcdserverpb as pb;
use crate::proto::etcdserverpb::cluster_client::ClusterClient;
use crate::proto::etcdserverpb::cluster_server::Cluster;

/// The Cluster service.
#[derive(Debug, Clone)]
pub struct ClusterService {
    ctx: Ctx,
}

impl ClusterService {
    /// A Cluster service over the context's node.
    pub fn new(ctx: Ctx) -> ClusterService {
        ClusterService { ctx }
    }
}

/// A member as etcd's protobuf: its name and client URLs are those it published (empty until
/// it has, as in etcd).
pub fn member(m: Member) -> pb::Member {
    pb::Member {
        id: m.id,
        name: m.name,
        peer_ur_ls: m.peer_urls,
        client_ur_ls: m.client_urls,
        is_learner: m.is_learner,
    }
}

fn members(ms: Vec<Member>) -> Vec<pb::Member> {
    ms.into_iter().map(member).collect()
}

/// etcd's `types.NewURLs`: at least one URL, each `scheme://host:port` with an http(s) or
/// unix(s) scheme and no path.
pub fn check_peer_urls(urls: &[String]) -> Result<(), Status> {
    let valid = |u: &String| {
        let Some((scheme, rest)) = u.split_once("://") else {
            return false;
        };
        if !matches!(scheme, "http" | "https" | "unix" | "unixs") {
            return false;
        }
        let hostport = rest.strip_suffix('/').unwrap_or(rest);
        !hostport.contains('/')
            && hostport
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
    };
    if urls.is_empty() || !urls.iter().all(valid) {
        return Err(EtcdError::MemberBadUrls.status());
    }
    Ok(())
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        request: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        let r = request.into_inner();
        check_peer_urls(&r.peer_ur_ls)?;
        let resp = self
            .ctx
            .node
            .member_add(r.peer_ur_ls, r.is_learner)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::MemberAddResponse {
            header: Some(header(resp.header)),
            member: Some(member(resp.body.member)),
            members: members(resp.body.members),
        }))
    }

    async fn member_remove(
        &self,
        request: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        let r = request.into_inner();
        let resp = self.ctx.node.member_remove(r.id).await.map_err(to_status)?;
        Ok(Response::new(pb::MemberRemoveResponse {
            header: Some(header(resp.header)),
            members: members(resp.body),
        }))
    }

    async fn member_update(
        &self,
        request: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        let r = request.into_inner();
        check_peer_urls(&r.peer_ur_ls)?;
        let resp = self
            .ctx
            .node
            .member_update(r.id, r.peer_ur_ls)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::MemberUpdateResponse {
            header: Some(header(resp.header)),
            members: members(resp.body),
        }))
    }

    async fn member_list(
        &self,
        request: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        let resp = if request.into_inner().linearizable {
            self.ctx
                .node
                .member_list_linearizable()
                .await
                .map_err(to_status)?
        } else {
            self.ctx.node.member_list()
        };
        Ok(Response::new(pb::MemberListResponse {
            header: Some(header(resp.header)),
            members: members(resp.body),
        }))
    }

    async fn member_promote(
        &self,
        request: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        let r = request.into_inner();
        // The node checks the learner's progress synchronously: off the async workers.
        let node = self.ctx.node.clone();
        let pending = blocking(move || Ok(node.member_promote(r.id))).await?;
        match pending.await {
            Ok(resp) => Ok(Response::new(pb::MemberPromoteResponse {
                header: Some(header(resp.header)),
                members: members(resp.body),
            })),
            // Only the leader knows whether the learner caught up: a follower asks it (etcd's
            // `promoteMemberHTTP`).
            Err(NodeError::NotLeader { .. }) if self.ctx.node.leader() != 0 => {
                let channel = leader_channel(&self.ctx, self.ctx.node.leader()).await?;
                ClusterClient::new(channel).member_promote(r).await
            }
            Err(e) => Err(to_status(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_urls_are_checked_like_etcd() {
        let ok = |u: &[&str]| {
            check_peer_urls(&u.iter().map(|s| s.to_string()).collect::<Vec<_>>()).is_ok()
        };
        assert!(ok(&["http://127.0.0.1:2380"]));
        assert!(ok(&["https://node1:2380", "http://10.0.0.1:2380/"]));
        assert!(!ok(&[]));
        assert!(!ok(&["127.0.0.1:2380"]));
        assert!(!ok(&["http://127.0.0.1"]));
        assert!(!ok(&["ftp://h:1"]));
        assert!(!ok(&["http://h:1/path"]));
    }
}
