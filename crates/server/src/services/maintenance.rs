//! etcd's `Maintenance` service: Alarm, Status, Defragment, Hash, HashKV, Snapshot,
//! MoveLeader. (Downgrade is not supported: the generated stub answers `Unimplemented`.)
//!
//! Snapshot streams what etcd streams, so that `etcdctl snapshot save` / `restore` and real
//! etcd take it: the backend's buckets as a bbolt file (crate `bbolt`), then its SHA-256.

use std::io::Write;

use node::request::AlarmType;
use prost::Message;
use sha2::{Digest, Sha256};
use storage_api::{Bucket, ReadTx, ReadTxn, StorageError};
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
/// The SHA-256 trailer that follows the bbolt file in etcd's snapshot stream.
const SHA256_LEN: u64 = 32;

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

/// The backend's buckets as a bbolt [`bbolt::Source`], all read from one consistent read
/// transaction (so both of the writer's passes see the same data).
pub struct BackendSource {
    tx: ReadTxn,
}

impl BackendSource {
    /// A source over what `tx` sees.
    pub fn new(tx: ReadTxn) -> BackendSource {
        BackendSource { tx }
    }
}

impl BackendSource {
    /// The `alarm` bucket in etcd's encoding (key: the protobuf `AlarmMember`, value empty),
    /// which etcd's alarm store decodes when it starts; ferrocd keys alarms by member id and
    /// type byte (`node::apply`).
    fn for_each_alarm(&self, visit: &mut bbolt::Visitor<'_>) -> Result<(), bbolt::WriteError> {
        let rows = self
            .tx
            .range(Bucket::ALARM, &[], None, 0)
            .map_err(|e| bbolt::WriteError::Source(Box::new(e)))?;
        let mut keys: Vec<Vec<u8>> = rows
            .into_iter()
            .filter_map(|(k, _)| {
                let member_id = u64::from_be_bytes(k.get(..8)?.try_into().ok()?);
                let alarm = match k.get(8)? {
                    1 => pb::AlarmType::Nospace,
                    2 => pb::AlarmType::Corrupt,
                    _ => return None,
                };
                Some(
                    pb::AlarmMember {
                        member_id,
                        alarm: alarm as i32,
                    }
                    .encode_to_vec(),
                )
            })
            .collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            visit(&k, &[])?;
        }
        Ok(())
    }
}

impl bbolt::Source for BackendSource {
    fn bucket_names(&self) -> Result<Vec<Vec<u8>>, bbolt::SourceError> {
        Ok(self
            .tx
            .buckets()
            .map(|b| b.name().as_bytes().to_vec())
            .collect())
    }

    fn for_each(
        &self,
        bucket: &[u8],
        visit: &mut bbolt::Visitor<'_>,
    ) -> Result<(), bbolt::WriteError> {
        let bucket = std::str::from_utf8(bucket)
            .map_err(|e| bbolt::WriteError::Source(Box::new(e)))
            .and_then(|name| {
                Bucket::intern(name).map_err(|e| bbolt::WriteError::Source(Box::new(e)))
            })?;
        if bucket == Bucket::ALARM {
            return self.for_each_alarm(visit);
        }
        let mut failed = None;
        let result = self.tx.for_each(bucket, &mut |k, v| {
            visit(k, v).map_err(|e| {
                failed = Some(e);
                StorageError::Failed("snapshot writer stopped".into())
            })
        });
        match failed {
            Some(e) => Err(e),
            None => result.map_err(|e| bbolt::WriteError::Source(Box::new(e))),
        }
    }
}

/// etcd's snapshot stream as it is produced: the bbolt file's bytes, hashed with SHA-256 and
/// sent in [`SNAPSHOT_CHUNK`]-byte messages, then the hash itself ([`SnapshotSink::finish`]).
struct SnapshotSink {
    tx: mpsc::Sender<Result<pb::SnapshotResponse, Status>>,
    header: pb::ResponseHeader,
    hasher: Sha256,
    buf: Vec<u8>,
    /// Bytes of the whole stream (file and hash) not yet sent.
    remaining: u64,
    first: bool,
}

impl SnapshotSink {
    fn send(&mut self, blob: Vec<u8>) -> std::io::Result<()> {
        self.remaining = self.remaining.saturating_sub(blob.len() as u64);
        let msg = pb::SnapshotResponse {
            header: Some(self.header),
            remaining_bytes: self.remaining,
            blob,
            version: if std::mem::take(&mut self.first) {
                API_VERSION.to_owned()
            } else {
                String::new()
            },
        };
        self.tx.blocking_send(Ok(msg)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "snapshot client went away")
        })
    }

    fn push(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.buf.extend_from_slice(bytes);
        while self.buf.len() >= SNAPSHOT_CHUNK {
            let rest = self.buf.split_off(SNAPSHOT_CHUNK);
            let chunk = std::mem::replace(&mut self.buf, rest);
            self.send(chunk)?;
        }
        Ok(())
    }

    /// Appends the SHA-256 of everything written and sends what is left.
    fn finish(mut self) -> std::io::Result<()> {
        let digest = std::mem::take(&mut self.hasher).finalize();
        self.push(&digest)?;
        let last = std::mem::take(&mut self.buf);
        if !last.is_empty() {
            self.send(last)?;
        }
        Ok(())
    }
}

impl Write for SnapshotSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(bytes);
        self.push(bytes)?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes the snapshot of `source` into the stream behind `tx` (on a blocking thread).
fn stream_snapshot(
    source: &BackendSource,
    tx: mpsc::Sender<Result<pb::SnapshotResponse, Status>>,
    header: pb::ResponseHeader,
) -> Result<u64, bbolt::WriteError> {
    let plan = bbolt::plan(source)?;
    let mut sink = SnapshotSink {
        tx,
        header,
        hasher: Sha256::new(),
        buf: Vec::with_capacity(2 * SNAPSHOT_CHUNK),
        remaining: plan.file_size() + SHA256_LEN,
        first: true,
    };
    plan.write_to(source, &mut sink)?;
    sink.finish()?;
    Ok(plan.file_size())
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
        // One read transaction for both passes of the writer: a consistent copy while writes
        // go on (etcd's snapshot is a bbolt read transaction's `WriteTo`).
        let store = self.ctx.node.watchable_store();
        let read = store
            .store()
            .backend()
            .read_tx()
            .map_err(|e| Status::internal(format!("etcdserver: snapshot failed: {e}")))?;
        let source = BackendSource::new(read);
        let header = self.current_header();
        let (tx, rx) = mpsc::channel(4);
        std::thread::Builder::new()
            .name("snapshot-send".into())
            .spawn(move || {
                let errors = tx.clone();
                match stream_snapshot(&source, tx, header) {
                    Ok(bytes) => tracing::info!(bytes, "sent a snapshot"),
                    Err(bbolt::WriteError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                        tracing::warn!("snapshot client went away");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "snapshot failed");
                        let _ = errors.blocking_send(Err(Status::internal(format!(
                            "etcdserver: snapshot failed: {e}"
                        ))));
                    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use bbolt::Source;
    use node::engine::EngineKind;
    use storage_api::BackendConfig;

    use super::*;

    #[test]
    fn alarms_are_written_in_etcds_encoding_and_buckets_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let backend = EngineKind::compiled()[0]
            .open_backend(dir.path(), BackendConfig::default())
            .unwrap();
        let mut tx = backend.batch_tx().unwrap();
        tx.create_bucket(Bucket::ALARM).unwrap();
        tx.create_bucket(Bucket::KEY).unwrap();
        let mut key = 0x1234u64.to_be_bytes().to_vec();
        key.push(2);
        tx.put(Bucket::ALARM, &key, b"").unwrap();
        tx.put(Bucket::KEY, b"k", b"v").unwrap();
        tx.end().unwrap();

        let source = BackendSource::new(backend.read_tx().unwrap());
        assert_eq!(
            source.bucket_names().unwrap(),
            vec![b"alarm".to_vec(), b"key".to_vec()]
        );
        let mut seen = Vec::new();
        source
            .for_each(b"alarm", &mut |k, v| {
                seen.push((k.to_vec(), v.to_vec()));
                Ok(())
            })
            .unwrap();
        assert_eq!(seen.len(), 1);
        let member = pb::AlarmMember::decode(seen[0].0.as_slice()).unwrap();
        assert_eq!(member.member_id, 0x1234);
        assert_eq!(member.alarm, pb::AlarmType::Corrupt as i32);
        assert!(seen[0].1.is_empty());
    }
}
