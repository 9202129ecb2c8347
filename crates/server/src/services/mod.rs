//! The gRPC services of etcd's v3 API over a [`node::Node`]: KV, Watch, Lease, Cluster and
//! Maintenance, and etcd's Lock and Election services, built on the first three as etcd builds
//! them on clientv3's concurrency recipes.

pub mod cluster;
mod concurrency;
pub mod election;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use node::Node;
use tonic::Status;

use crate::proto::etcdserverpb as pb;

/// The version reported by `Status` (the etcd API version ferrocd speaks).
pub const API_VERSION: &str = "3.6.0";

/// Everything the services share.
#[derive(Debug)]
pub struct Context {
    /// The replica.
    pub node: Node,
    /// This member's name.
    pub name: String,
    /// etcd's `--max-txn-ops`.
    pub max_txn_ops: usize,
    /// etcd's `--max-request-bytes`.
    pub max_request_bytes: usize,
    /// etcd's `--max-concurrent-streams`.
    pub max_concurrent_streams: u32,
    /// The backend quota reported by `Status`.
    pub quota_backend_bytes: i64,
    /// How often watches that asked for progress notifications get one (etcd: 10 minutes).
    pub progress_notify_interval: Duration,
    /// The server's metrics (gRPC calls, health checks), served on `/metrics`.
    pub metrics: Arc<crate::etcdhttp::ServerMetrics>,
    /// How this member dials another member's https client URL (forwarding to the leader):
    /// its client certificate presented, the other's verified against `--trusted-ca-file`
    /// (or not at all with `--auto-tls`). `None` without client TLS, or without a CA to
    /// verify with.
    pub leader_tls: Option<Arc<rustls::ClientConfig>>,
}

/// The shared context.
pub type Ctx = Arc<Context>;

/// A node header as etcd's.
pub fn header(h: node::ResponseHeader) -> pb::ResponseHeader {
    pb::ResponseHeader {
        cluster_id: h.cluster_id,
        member_id: h.member_id,
        revision: h.revision,
        raft_term: h.raft_term,
    }
}

/// Runs `f` on tokio's blocking pool (for node calls that do I/O or wait).
pub async fn blocking<T, F>(f: F) -> Result<T, Status>
where
    F: FnOnce() -> Result<T, Status> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("etcdserver: task failed: {e}")))?
}

/// A gRPC channel to member `leader` at its first published `http://` client URL, or its
/// first `https://` one over TLS ([`Context::leader_tls`]): what a follower forwards
/// leader-only requests over (etcd forwards them over its peer HTTP API instead). Unix socket
/// URLs are not dialed.
pub async fn leader_channel(
    ctx: &Context,
    leader: u64,
) -> Result<tonic::transport::Channel, Status> {
    let members = ctx.node.member_list().body;
    let url = members
        .iter()
        .find(|m| m.id == leader)
        .and_then(|m| {
            let tcp = |scheme: &str| m.client_urls.iter().find(|u| u.starts_with(scheme));
            tcp("http://").or_else(|| tcp("https://")).cloned()
        })
        .ok_or_else(|| Status::unavailable("etcdserver: the leader's client URL is unknown"))?;
    let unreachable = |e: tonic::transport::Error| {
        Status::unavailable(format!("etcdserver: cannot reach leader: {e}"))
    };
    let Some(rest) = url.strip_prefix("https://") else {
        return endpoint(&url)?.connect().await.map_err(unreachable);
    };
    let Some(tls) = ctx.leader_tls.clone() else {
        return Err(Status::unavailable(format!(
            "etcdserver: cannot reach the leader at {url}: dialing an https client URL needs \
             --trusted-ca-file (or --auto-tls)"
        )));
    };
    // The TLS is the connector's; the channel itself speaks HTTP/2 over it.
    endpoint(&format!("http://{rest}"))?
        .connect_with_connector(crate::tls::dialer(tls))
        .await
        .map_err(unreachable)
}

fn endpoint(url: &str) -> Result<tonic::transport::Endpoint, Status> {
    Ok(tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| Status::unavailable(format!("etcdserver: bad leader URL {url}: {e}")))?
        .connect_timeout(Duration::from_secs(2)))
}

/// Refuses a request whose encoding exceeds `--max-request-bytes` (etcd's
/// `ErrRequestTooLarge`, checked before proposing).
pub fn check_size(ctx: &Context, msg: &impl prost::Message) -> Result<(), Status> {
    if msg.encoded_len() > ctx.max_request_bytes {
        return Err(crate::error::EtcdError::RequestTooLarge.status());
    }
    Ok(())
}
