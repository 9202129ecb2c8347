//! Thin clients over the `server` crate's tonic stubs: one channel per member, every call
//! bounded by a timeout.

use std::time::Duration;

use server::proto::etcdserverpb as pb;
use server::proto::etcdserverpb::kv_client::KvClient;
use server::proto::etcdserverpb::lease_client::LeaseClient;
use server::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use server::proto::etcdserverpb::watch_client::WatchClient;
use tonic::transport::{Channel, Endpoint};

/// How long one call may take before its outcome counts as unknown.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a call did not answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The server answered with an error status.
    #[error("status {0}")]
    Status(#[from] tonic::Status),
    /// No answer within [`CALL_TIMEOUT`].
    #[error("timed out")]
    Timeout,
    /// The endpoint URL is invalid.
    #[error("endpoint: {0}")]
    Endpoint(#[from] tonic::transport::Error),
}

/// A lazily connected channel to `url`.
pub fn channel(url: &str) -> Result<Channel, CallError> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(1))
        .timeout(CALL_TIMEOUT)
        .connect_lazy())
}

async fn bounded<T>(
    f: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(s)) => Err(CallError::Status(s)),
        Err(_) => Err(CallError::Timeout),
    }
}

fn rev(h: Option<pb::ResponseHeader>) -> i64 {
    h.map_or(0, |h| h.revision)
}

/// A put: the revision it created.
pub async fn put(ch: &Channel, key: &str, value: &str, lease: i64) -> Result<i64, CallError> {
    let r = bounded(KvClient::new(ch.clone()).put(pb::PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        lease,
        ..Default::default()
    }))
    .await?;
    Ok(rev(r.header))
}

/// A read of one key: (header revision, value and mod revision if present).
pub async fn get(
    ch: &Channel,
    key: &str,
    serializable: bool,
) -> Result<(i64, Option<(String, i64)>), CallError> {
    let r = bounded(KvClient::new(ch.clone()).range(pb::RangeRequest {
        key: key.as_bytes().to_vec(),
        serializable,
        ..Default::default()
    }))
    .await?;
    let kv = r.kvs.into_iter().next().map(|kv| {
        (
            String::from_utf8_lossy(&kv.value).into_owned(),
            kv.mod_revision,
        )
    });
    Ok((rev(r.header), kv))
}

/// Every key-value under `prefix` (linearizable): (header revision, [(key, value, mod rev)]).
pub async fn get_prefix(
    ch: &Channel,
    prefix: &str,
) -> Result<(i64, Vec<(String, String, i64)>), CallError> {
    let r = bounded(KvClient::new(ch.clone()).range(pb::RangeRequest {
        key: prefix.as_bytes().to_vec(),
        range_end: prefix_end(prefix.as_bytes()),
        ..Default::default()
    }))
    .await?;
    let kvs = r
        .kvs
        .into_iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                String::from_utf8_lossy(&kv.value).into_owned(),
                kv.mod_revision,
            )
        })
        .collect();
    Ok((rev(r.header), kvs))
}

/// The range end that covers every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A delete of one key: (header revision, whether it existed).
pub async fn delete(ch: &Channel, key: &str) -> Result<(i64, bool), CallError> {
    let r = bounded(
        KvClient::new(ch.clone()).delete_range(pb::DeleteRangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        }),
    )
    .await?;
    Ok((rev(r.header), r.deleted > 0))
}

/// A compare-and-set transaction: if `key`'s value is `expect` (`None`: the key does not
/// exist), put `value`. Returns (header revision, succeeded).
pub async fn cas(
    ch: &Channel,
    key: &str,
    expect: Option<&str>,
    value: &str,
) -> Result<(i64, bool), CallError> {
    use pb::compare::{CompareResult, CompareTarget, TargetUnion};
    let compare = match expect {
        Some(v) => pb::Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Value as i32,
            key: key.as_bytes().to_vec(),
            target_union: Some(TargetUnion::Value(v.as_bytes().to_vec())),
            ..Default::default()
        },
        None => pb::Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Version as i32,
            key: key.as_bytes().to_vec(),
            target_union: Some(TargetUnion::Version(0)),
            ..Default::default()
        },
    };
    let put = pb::RequestOp {
        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            ..Default::default()
        })),
    };
    let r = bounded(KvClient::new(ch.clone()).txn(pb::TxnRequest {
        compare: vec![compare],
        success: vec![put],
        failure: vec![],
    }))
    .await?;
    Ok((rev(r.header), r.succeeded))
}

/// Grants a lease of `ttl` seconds: its id.
pub async fn lease_grant(ch: &Channel, ttl: i64) -> Result<i64, CallError> {
    let r = bounded(LeaseClient::new(ch.clone()).lease_grant(pb::LeaseGrantRequest { ttl, id: 0 }))
        .await?;
    Ok(r.id)
}

/// Revokes lease `id`.
pub async fn lease_revoke(ch: &Channel, id: i64) -> Result<(), CallError> {
    bounded(LeaseClient::new(ch.clone()).lease_revoke(pb::LeaseRevokeRequest { id })).await?;
    Ok(())
}

/// `(member id, leader id)` from the member's Status.
pub async fn status(ch: &Channel) -> Result<(u64, u64), CallError> {
    let r = bounded(MaintenanceClient::new(ch.clone()).status(pb::StatusRequest {})).await?;
    Ok((r.header.map_or(0, |h| h.member_id), r.leader))
}

/// Asks the leader behind `ch` to hand leadership to `target`.
pub async fn move_leader(ch: &Channel, target: u64) -> Result<(), CallError> {
    bounded(
        MaintenanceClient::new(ch.clone()).move_leader(pb::MoveLeaderRequest { target_id: target }),
    )
    .await?;
    Ok(())
}

/// The member ids by name, from the member list.
pub async fn member_ids(ch: &Channel) -> Result<Vec<(String, u64)>, CallError> {
    let r = bounded(cluster_client(ch).member_list(pb::MemberListRequest { linearizable: true }))
        .await?;
    Ok(r.members.into_iter().map(|m| (m.name, m.id)).collect())
}

fn cluster_client(
    ch: &Channel,
) -> server::proto::etcdserverpb::cluster_client::ClusterClient<Channel> {
    server::proto::etcdserverpb::cluster_client::ClusterClient::new(ch.clone())
}

/// Removes member `id` from the cluster.
pub async fn member_remove(ch: &Channel, id: u64) -> Result<(), CallError> {
    bounded(cluster_client(ch).member_remove(pb::MemberRemoveRequest { id })).await?;
    Ok(())
}

/// Adds a member with `peer_url` (as a learner if `learner`); returns its new id.
pub async fn member_add(ch: &Channel, peer_url: &str, learner: bool) -> Result<u64, CallError> {
    let r = bounded(cluster_client(ch).member_add(pb::MemberAddRequest {
        peer_ur_ls: vec![peer_url.to_owned()],
        is_learner: learner,
    }))
    .await?;
    Ok(r.member.map_or(0, |m| m.id))
}

/// Promotes learner `id` to a voting member.
pub async fn member_promote(ch: &Channel, id: u64) -> Result<(), CallError> {
    bounded(cluster_client(ch).member_promote(pb::MemberPromoteRequest { id })).await?;
    Ok(())
}

/// One watch event: (revision, key, value; `None` for a delete).
pub type Event = (i64, String, Option<String>);

/// Opens a watch on `prefix` from `start_revision` and returns the stream of responses.
pub async fn watch(
    ch: &Channel,
    prefix: &str,
    start_revision: i64,
) -> Result<
    (
        tokio::sync::mpsc::Sender<pb::WatchRequest>,
        tonic::Streaming<pb::WatchResponse>,
    ),
    CallError,
> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let create = pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
            pb::WatchCreateRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: prefix_end(prefix.as_bytes()),
                start_revision,
                ..Default::default()
            },
        )),
    };
    tx.send(create).await.map_err(|_| CallError::Timeout)?;
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    // The watch stream lives as long as the caller reads it: only its start is bounded.
    let r = match tokio::time::timeout(CALL_TIMEOUT, WatchClient::new(ch.clone()).watch(stream))
        .await
    {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(s)) => return Err(CallError::Status(s)),
        Err(_) => return Err(CallError::Timeout),
    };
    Ok((tx, r))
}

/// The events of a watch response.
pub fn events(r: &pb::WatchResponse) -> Vec<Event> {
    r.events
        .iter()
        .filter_map(|e| {
            let kv = e.kv.as_ref()?;
            let key = String::from_utf8_lossy(&kv.key).into_owned();
            let value = if e.r#type == server::proto::mvccpb::event::EventType::Delete as i32 {
                None
            } else {
                Some(String::from_utf8_lossy(&kv.value).into_owned())
            };
            Some((kv.mod_revision, key, value))
        })
        .collect()
}
