//! etcd's `Maintenance` service: Alarm, Status, Defragment, Hash, HashKV, Snapshot,
//! MoveLeader. (Downgrade is not supported: the generated stub answers `Unimplemented`.)

use std::io::Read;

use node::request::AlarmType;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

use super::{API_VERSION, Ctx, blocking, header};
use crate::error::{EtcdError, to_status};
use crate::proto::etcdserverpb as pb;
use crate::proto::etcdserverpb::maintenance_server::Maintenance;

/// Bytes per snapshot message (etcd's `snapshotSendBufferSize`).
pub const SNAPSHOT_CHUNK: usize = 32 * 1024;

/// The Maintenance service.
#[derive(Debug, Clone)]
pub struct MaintenanceService {
    ctx: Ctx,
}

impl MaintenanceService {
    /// A Maintenance service over the context's node.
    pub fn new(ctx: Ctx) -> MaintenanceService {
        MaintenanceService { ctx }
    }

    fn current_header(&self) -> pb::ResponseHeader {
        header(self.ctx.node.header())
    }
}

fn alarm_to_pb(a: AlarmType) -> pb::AlarmType {
    match a {
        AlarmType::NoSpace => pb::AlarmType::Nospace,
        AlarmType::Corrupt => pb::AlarmType::Corrupt,
    }
}

fn alarm_members(alarms: Vec<(u64, AlarmType)>, filter: pb::AlarmType) -> Vec<pb::AlarmMember> {
    alarms
        .into_iter()
        .map(|(member_id, a)| (member_id, alarm_to_pb(a)))
        .filter(|(_, a)| filter == pb::AlarmType::None || *a == filter)
        .map(|(member_id, a)| pb::AlarmMember {
            member_id,
            alarm: a as i32,
        })
        .collect()
}

/// Reads up to `SNAPSHOT_CHUNK` bytes (fewer only at the end).
fn read_chunk(r: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0; SNAPSHOT_CHUNK];
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(n);
    Ok(buf)
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        request: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        use pb::alarm_request::AlarmAction;
        let r = request.into_inner();
        let filter = pb::AlarmType::try_from(r.alarm).unwrap_or(pb::AlarmType::None);
        let kind = match filter {
            pb::AlarmType::Nospace => Some(AlarmType::NoSpace),
            pb::AlarmType::Corrupt => Some(AlarmType::Corrupt),
            pb::AlarmType::None => None,
        };
        let node = &self.ctx.node;
        let (h, alarms) = match AlarmAction::try_from(r.action) {
            Ok(AlarmAction::Get) => (self.current_header(), node.alarms()),
            Ok(AlarmAction::Activate) => {
                let kind = kind.ok_or_else(|| {
                    Status::invalid_argument("etcdserver: cannot activate alarm NONE")
                })?;
                let resp = node
                    .alarm_activate(r.member_id, kind)
                    .await
                    .map_err(to_status)?;
                (header(resp.header), resp.body)
            }
            Ok(AlarmAction::Deactivate) => {
                // Deactivating NONE clears nothing in etcd either.
                let Some(kind) = kind else {
                    return Ok(Response::new(pb::AlarmResponse {
                        header: Some(self.current_header()),
                        alarms: Vec::new(),
                    }));
                };
                let resp = node
                    .alarm_deactivate(r.member_id, kind)
                    .await
                    .map_err(to_status)?;
                (header(resp.header), resp.body)
            }
            Err(_) => return Err(Status::invalid_argument("etcdserver: invalid alarm action")),
        };
        Ok(Response::new(pb::AlarmResponse {
            header: Some(h),
            alarms: alarm_members(alarms, filter),
        }))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let node = self.ctx.node.clone();
        let s = blocking(move || node.status().map_err(to_status)).await?;
        let errors = self
            .ctx
            .node
            .alarms()
            .into_iter()
            .map(|(m, a)| format!("memberID:{m} alarm:{} ", alarm_to_pb(a).as_str_name()))
            .collect();
        Ok(Response::new(pb::StatusResponse {
            header: Some(header(s.header)),
            version: API_VERSION.to_owned(),
            db_size: i64::try_from(s.db_size).unwrap_or(i64::MAX),
            leader: s.leader,
            raft_index: s.raft_index,
            raft_term: s.raft_term,
            raft_applied_index: s.raft_applied_index,
            errors,
            db_size_in_use: i64::try_from(s.db_size_in_use).unwrap_or(i64::MAX),
            is_learner: s.is_learner,
            storage_version: API_VERSION.to_owned(),
            db_size_quota: self.ctx.quota_backend_bytes,
            downgrade_info: Some(pb::DowngradeInfo::default()),
        }))
    }

    async fn defragment(
        &self,
        _request: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        let node = self.ctx.node.clone();
        blocking(move || node.defragment().map_err(to_status)).await?;
        Ok(Response::new(pb::DefragmentResponse {
            header: Some(self.current_header()),
        }))
    }

    async fn hash(
        &self,
        _request: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        let node = self.ctx.node.clone();
        let (hash, rev) = blocking(move || node.hash().map_err(to_status)).await?;
        let mut h = self.current_header();
        h.revision = rev;
        Ok(Response::new(pb::HashResponse {
            header: Some(h),
            hash,
        }))
    }

    async fn hash_kv(
        &self,
        request: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        let rev = request.into_inner().revision;
        let node = self.ctx.node.clone();
        let kvh = blocking(move || node.hash_kv(rev).map_err(to_status)).await?;
        let mut h = self.current_header();
        h.revision = kvh.current_revision;
        Ok(Response::new(pb::HashKvResponse {
            header: Some(h),
            hash: kvh.hash,
            compact_revision: kvh.compact_revision,
            hash_revision: kvh.revision,
        }))
    }

    async fn snapshot(
        &self,
        _request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<BoxStream<pb::SnapshotResponse>>, Status> {
        let node = self.ctx.node.clone();
        let snap = blocking(move || node.snapshot().map_err(to_status)).await?;
        // etcd's stream is whole 512-byte sectors then their SHA-256, which `etcdctl snapshot
        // save` checks; the padding is ignored on restore (the format has a trailer).
        let mut snap = crate::sha256::WithChecksum::new(snap, 512);
        let h = self.current_header();
        let (tx, rx) = mpsc::channel(4);
        std::thread::Builder::new()
            .name("snapshot-send".into())
            .spawn(move || {
                // One chunk read ahead, so each message says whether more follow.
                let mut cur = match read_chunk(&mut snap) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(Status::internal(format!(
                            "etcdserver: snapshot failed: {e}"
                        ))));
                        return;
                    }
                };
                let mut first = true;
                loop {
                    let next = if cur.len() < SNAPSHOT_CHUNK {
                        Vec::new()
                    } else {
                        match read_chunk(&mut snap) {
                            Ok(c) => c,
                            Err(e) => {
                                let _ = tx.blocking_send(Err(Status::internal(format!(
                                    "etcdserver: snapshot failed: {e}"
                                ))));
                                return;
                            }
                        }
                    };
                    let last = next.is_empty();
                    let msg = pb::SnapshotResponse {
                        header: Some(h),
                        remaining_bytes: next.len() as u64,
                        blob: cur,
                        version: if first {
                            API_VERSION.to_owned()
                        } else {
                            String::new()
                        },
                    };
                    first = false;
                    if tx.blocking_send(Ok(msg)).is_err() || last {
                        return;
                    }
                    cur = next;
                }
            })
            .map_err(|e| Status::internal(format!("etcdserver: snapshot failed: {e}")))?;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn move_leader(
        &self,
        request: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        let r = request.into_inner();
        if !self.ctx.node.is_leader() {
            return Err(EtcdError::NotLeader.status());
        }
        self.ctx
            .node
            .move_leader(r.target_id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::MoveLeaderResponse {
            header: Some(self.current_header()),
        }))
    }
}
