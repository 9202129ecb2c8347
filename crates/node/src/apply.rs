//! The apply thread: applies committed entries to mvcc (store, lessor, membership), storing
//! the consistent index in the same write transaction as each entry's data, answers waiters,
//! installs received snapshots and creates snapshots every `snapshot_count` entries.
//!
//! Entries at or below the store's consistent index are skipped: after a restart raft hands
//! out the WAL's entries again and only those the backend does not hold are applied.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, select};
use mvcc::watch::{WatchConfig, WatchableStore};
use mvcc::{DeleteRangeResponse, PutResponse, StoreConfig, TxnResponse};
use raft_core::raftpb::{
    AnyConfChange, ConfChangeType, ConfState, Entry, EntryType, SnapshotMetadata,
};
use storage_api::Bucket;

use crate::engine::EngineKind;
use crate::error::{NodeError, StartError};
use crate::leases;
use crate::membership::{Cluster, ConfChangeContext, Member};
use crate::node::Shared;
use crate::raft_loop::Command;
use crate::request::{AlarmAction, AlarmType, Envelope, Request};
use crate::snapshot::{self, DataPaths};
use crate::transport::Transport;

/// Work for the apply thread, in log order.
pub(crate) enum ApplyTask {
    /// Committed entries, with the configuration after each configuration change in them.
    Entries {
        entries: Vec<Entry>,
        conf_states: Vec<(u64, ConfState)>,
    },
    /// A snapshot received from the leader and persisted by the raft loop.
    Snapshot {
        meta: SnapshotMetadata,
        has_data: bool,
    },
}

/// What applying a request produced (turned into the caller's response by its waiter).
pub(crate) enum ApplyOutput {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compact(Option<mvcc::CompactionHandle>),
    LeaseGrant { id: i64, ttl: i64 },
    Nothing,
    Members(Vec<Member>),
    Alarms(Vec<(u64, AlarmType)>),
}

/// An applied request's output and the store's revision after it.
pub(crate) struct Applied {
    pub(crate) revision: i64,
    pub(crate) output: ApplyOutput,
}

pub(crate) struct Applier {
    pub(crate) shared: Arc<Shared>,
    pub(crate) tasks: Receiver<ApplyTask>,
    pub(crate) stop: Receiver<()>,
    pub(crate) raft: Sender<Command>,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) paths: DataPaths,
    pub(crate) engine: EngineKind,
    pub(crate) snapshot_count: u64,
    pub(crate) conf_state: ConfState,
    pub(crate) snap_index: u64,
    pub(crate) applied: u64,
    pub(crate) applied_term: u64,
    /// A member was added: snapshot after this batch, so that the snapshot raft sends it has
    /// it in its configuration (the bootstrap snapshot does not, and raft refuses a snapshot
    /// that leaves the receiver out).
    pub(crate) snapshot_soon: bool,
}

fn alarm_key(member: u64, alarm: AlarmType) -> Vec<u8> {
    let mut k = member.to_be_bytes().to_vec();
    k.push(match alarm {
        AlarmType::NoSpace => 1,
        AlarmType::Corrupt => 2,
    });
    k
}

/// Reads the `alarm` bucket.
pub(crate) fn load_alarms(
    backend: &storage_api::Backend,
) -> Result<Vec<(u64, AlarmType)>, storage_api::StorageError> {
    use storage_api::ReadTx;
    let tx = backend.read_tx()?;
    if !tx.buckets().any(|b| b == Bucket::ALARM) {
        return Ok(Vec::new());
    }
    Ok(tx
        .range(Bucket::ALARM, &[], None, 0)?
        .into_iter()
        .filter_map(|(k, _)| {
            let id = u64::from_be_bytes(k.get(..8)?.try_into().ok()?);
            let alarm = match k.get(8)? {
                1 => AlarmType::NoSpace,
                2 => AlarmType::Corrupt,
                _ => return None,
            };
            Some((id, alarm))
        })
        .collect())
}

impl Applier {
    pub(crate) fn run(mut self) {
        loop {
            let task = select! {
                recv(self.tasks) -> t => match t { Ok(t) => t, Err(_) => break },
                recv(self.stop) -> _ => break,
            };
            let result = match task {
                ApplyTask::Entries {
                    entries,
                    conf_states,
                } => self.apply_entries(entries, conf_states),
                ApplyTask::Snapshot { meta, has_data } => self.install_snapshot(meta, has_data),
            };
            if let Err(e) = result {
                self.shared.fail(
                    "applying committed entries failed; the apply thread stopped",
                    &e,
                );
                break;
            }
        }
        self.shared.fail_all_waiters(NodeError::Stopped);
        tracing::debug!(member = self.shared.member_id, "apply thread stopped");
    }

    fn apply_entries(
        &mut self,
        entries: Vec<Entry>,
        conf_states: Vec<(u64, ConfState)>,
    ) -> Result<(), StartError> {
        let mut conf_states = conf_states.into_iter().peekable();
        for e in entries {
            while let Some((_, cs)) = conf_states.next_if(|(i, _)| *i <= e.index) {
                self.conf_state = cs;
            }
            if e.index <= self.applied {
                continue;
            }
            let store = self.shared.store();
            if e.index > store.consistent_index().index {
                match e.entry_type {
                    EntryType::Normal => self.apply_normal(&store, &e)?,
                    EntryType::ConfChange | EntryType::ConfChangeV2 => {
                        self.apply_conf_change(&store, &e)?
                    }
                }
            }
            self.applied = e.index;
            self.applied_term = e.term;
        }
        self.shared.set_applied(self.applied);
        if self.applied >= self.snap_index + self.snapshot_count
            || (self.snapshot_soon && self.applied > self.snap_index)
        {
            self.snapshot_soon = false;
            self.create_snapshot()?;
        }
        Ok(())
    }

    /// Stores the consistent index alone (for entries that write nothing else through a
    /// write transaction).
    fn mark(&self, store: &WatchableStore, e: &Entry) -> mvcc::Result<i64> {
        let mut txn = store.write()?;
        txn.set_consistent_index(e.index, e.term);
        Ok(txn.end()?.rev)
    }

    fn apply_normal(&mut self, store: &WatchableStore, e: &Entry) -> Result<(), StartError> {
        if e.data.is_empty() {
            self.mark(store, e)?;
            return Ok(());
        }
        let env = match Envelope::decode(&e.data) {
            Ok(env) => env,
            Err(err) => {
                panic!(
                    "invariant violated: committed entry {} undecodable: {err}",
                    e.index
                )
            }
        };
        let result = self.apply_request(store, e, env.request);
        if env.id != 0 {
            self.shared.complete_waiter(env.id, result);
        }
        Ok(())
    }

    fn no_space(&self) -> bool {
        self.shared
            .alarms
            .lock()
            .iter()
            .any(|(_, a)| *a == AlarmType::NoSpace)
    }

    fn apply_request(
        &mut self,
        store: &WatchableStore,
        e: &Entry,
        request: Request,
    ) -> Result<Applied, NodeError> {
        let writes = match &request {
            Request::Put(_) | Request::LeaseGrant { .. } => true,
            Request::Txn(t) => !t.is_read_only(),
            _ => false,
        };
        if writes && self.no_space() {
            self.mark(store, e)?;
            return Err(NodeError::NoSpace);
        }
        match request {
            Request::Put(req) => {
                let mut txn = store.write()?;
                let resp = txn.put_standalone(&req);
                txn.set_consistent_index(e.index, e.term);
                let committed = txn.end()?;
                Ok(Applied {
                    revision: committed.rev,
                    output: ApplyOutput::Put(resp?),
                })
            }
            Request::DeleteRange(req) => {
                let mut txn = store.write()?;
                let resp = txn.delete_range_request(&req);
                txn.set_consistent_index(e.index, e.term);
                let committed = txn.end()?;
                Ok(Applied {
                    revision: committed.rev,
                    output: ApplyOutput::DeleteRange(resp?),
                })
            }
            Request::Txn(req) => {
                let mut txn = store.write()?;
                let resp = txn.txn(&req);
                txn.set_consistent_index(e.index, e.term);
                let committed = txn.end()?;
                Ok(Applied {
                    revision: committed.rev,
                    output: ApplyOutput::Txn(resp?),
                })
            }
            Request::Compact { revision, physical } => {
                let handle = store.compact(revision);
                let rev = self.mark(store, e)?;
                let handle = handle?;
                Ok(Applied {
                    revision: rev,
                    output: ApplyOutput::Compact(physical.then_some(handle)),
                })
            }
            Request::LeaseGrant { id, ttl } => {
                let granted = self
                    .shared
                    .lessor
                    .lock()
                    .grant(id, ttl, Instant::now())
                    .map(|l| l.ttl());
                let rev = self.mark(store, e)?;
                Ok(Applied {
                    revision: rev,
                    output: ApplyOutput::LeaseGrant { id, ttl: granted? },
                })
            }
            Request::LeaseRevoke { id } => {
                let mut txn = store.write()?;
                let revoked = leases::revoke(&self.shared.lessor, id, &mut txn);
                txn.set_consistent_index(e.index, e.term);
                let committed = txn.end()?;
                revoked?;
                Ok(Applied {
                    revision: committed.rev,
                    output: ApplyOutput::Nothing,
                })
            }
            Request::LeaseCheckpoint { checkpoints } => {
                {
                    let mut lessor = self.shared.lessor.lock();
                    for (id, remaining) in checkpoints {
                        // A lease revoked meanwhile needs no checkpoint.
                        let _ = lessor.apply_checkpoint(id, remaining);
                    }
                }
                let rev = self.mark(store, e)?;
                Ok(Applied {
                    revision: rev,
                    output: ApplyOutput::Nothing,
                })
            }
            Request::Alarm {
                action,
                member_id,
                alarm,
            } => {
                let mut txn = store.write()?;
                txn.create_bucket(Bucket::ALARM)?;
                let mut alarms = self.shared.alarms.lock();
                // Like etcd, the answer is the alarm raised, or the alarms cleared.
                let list = match action {
                    AlarmAction::Activate => {
                        txn.raw_put(Bucket::ALARM, &alarm_key(member_id, alarm), b"")?;
                        alarms.insert((member_id, alarm));
                        vec![(member_id, alarm)]
                    }
                    AlarmAction::Deactivate => {
                        let gone: Vec<_> = alarms
                            .iter()
                            .copied()
                            .filter(|(m, a)| *a == alarm && (member_id == 0 || *m == member_id))
                            .collect();
                        for &(m, a) in &gone {
                            txn.raw_delete(Bucket::ALARM, &alarm_key(m, a))?;
                            alarms.remove(&(m, a));
                        }
                        gone
                    }
                };
                drop(alarms);
                txn.set_consistent_index(e.index, e.term);
                let committed = txn.end()?;
                Ok(Applied {
                    revision: committed.rev,
                    output: ApplyOutput::Alarms(list),
                })
            }
            Request::MemberAttributes {
                member_id,
                name,
                client_urls,
            } => {
                let mut txn = store.write()?;
                let mut cluster = self.shared.cluster.write();
                if let Some(m) = cluster.members.get_mut(&member_id) {
                    m.name = name;
                    m.client_urls = client_urls;
                    Cluster::save_member(&mut txn, m)?;
                }
                drop(cluster);
                txn.set_consistent_index(e.index, e.term);
                let committed = txn.end()?;
                Ok(Applied {
                    revision: committed.rev,
                    output: ApplyOutput::Nothing,
                })
            }
        }
    }

    fn apply_conf_change(&mut self, store: &WatchableStore, e: &Entry) -> Result<(), StartError> {
        let cc = match AnyConfChange::from_entry(e.entry_type, &e.data) {
            Some(Ok(AnyConfChange::V1(cc))) => cc,
            other => {
                tracing::warn!(index = e.index, ?other, "unsupported conf change; skipped");
                self.mark(store, e)?;
                return Ok(());
            }
        };
        let ctx = ConfChangeContext::decode(&cc.context);
        let mut txn = store.write()?;
        {
            let mut cluster = self.shared.cluster.write();
            match cc.change_type {
                ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                    let learner = cc.change_type == ConfChangeType::AddLearnerNode;
                    let member = match (cluster.members.get(&cc.node_id), &ctx) {
                        // Promotion of an existing learner.
                        (Some(m), _) => Member {
                            is_learner: learner,
                            ..m.clone()
                        },
                        (None, Some(ctx)) => Member {
                            is_learner: learner,
                            ..ctx.member.clone()
                        },
                        (None, None) => Member {
                            id: cc.node_id,
                            name: String::new(),
                            peer_urls: Vec::new(),
                            client_urls: Vec::new(),
                            is_learner: learner,
                        },
                    };
                    Cluster::save_member(&mut txn, &member)?;
                    if member.id != self.shared.member_id {
                        self.transport.add_peer(member.id, &member.peer_urls);
                        self.snapshot_soon = true;
                    }
                    cluster.members.insert(member.id, member);
                }
                ConfChangeType::RemoveNode => {
                    Cluster::remove_member(&mut txn, cc.node_id)?;
                    cluster.members.remove(&cc.node_id);
                    cluster.removed.push(cc.node_id);
                    if cc.node_id == self.shared.member_id {
                        tracing::error!("this member was removed from the cluster");
                        self.shared.removed.store(true, Ordering::Release);
                    } else {
                        self.transport.remove_peer(cc.node_id);
                    }
                }
                ConfChangeType::UpdateNode => {
                    if let (Some(m), Some(ctx)) = (cluster.members.get_mut(&cc.node_id), &ctx) {
                        m.peer_urls = ctx.member.peer_urls.clone();
                        Cluster::save_member(&mut txn, m)?;
                        if m.id != self.shared.member_id {
                            self.transport.update_peer(m.id, &m.peer_urls);
                        }
                    }
                }
            }
        }
        txn.set_consistent_index(e.index, e.term);
        let committed = txn.end()?;
        if let Some(ctx) = ctx {
            let members = self
                .shared
                .cluster
                .read()
                .members
                .values()
                .cloned()
                .collect();
            self.shared.complete_waiter(
                ctx.request_id,
                Ok(Applied {
                    revision: committed.rev,
                    output: ApplyOutput::Members(members),
                }),
            );
        }
        Ok(())
    }

    /// Writes the backend as a snapshot at the applied index and tells the raft loop.
    fn create_snapshot(&mut self) -> Result<(), StartError> {
        let store = self.shared.store();
        let backend = store.backend();
        backend.force_commit()?;
        let meta = SnapshotMetadata {
            conf_state: self.conf_state.clone(),
            index: self.applied,
            term: self.applied_term,
        };
        snapshot::save_db(&self.paths, meta.term, meta.index, backend.snapshot()?)
            .map_err(StartError::io("writing a snapshot"))?;
        snapshot::save_meta(&self.paths, &meta).map_err(StartError::io("writing a snapshot"))?;
        self.snap_index = meta.index;
        tracing::info!(index = meta.index, "created snapshot");
        let _ = self.raft.send(Command::SnapshotCreated(meta));
        Ok(())
    }

    /// Replaces the backend with a received snapshot's and reopens the store and lessor on it.
    fn install_snapshot(
        &mut self,
        meta: SnapshotMetadata,
        has_data: bool,
    ) -> Result<(), StartError> {
        if meta.index <= self.applied {
            return Ok(());
        }
        if has_data {
            tracing::info!(index = meta.index, "installing snapshot from the leader");
            let old = self.shared.store();
            old.store().close();
            let _ = old.backend().close();
            drop(old);
            let backend = Arc::new(snapshot::install_backend(
                &self.paths,
                self.engine,
                meta.term,
                meta.index,
            )?);
            backend.set_commit_observer(self.shared.metrics.backend_commit_observer());
            self.shared.lessor.lock().recover(Arc::clone(&backend))?;
            let store = WatchableStore::open(
                Arc::clone(&backend),
                StoreConfig {
                    lease_registry: Some(self.shared.registry.clone()),
                    ..StoreConfig::default()
                },
                WatchConfig::default(),
            )?;
            if self.shared.is_leader() {
                let extend = self.shared.tuning.election;
                self.shared.lessor.lock().promote(extend, Instant::now());
            }
            *self.shared.store.write() = Arc::new(store);
            let cluster = Cluster::load(&backend)?;
            for m in cluster.members.values() {
                if m.id != self.shared.member_id {
                    self.transport.add_peer(m.id, &m.peer_urls);
                }
            }
            *self.shared.cluster.write() = cluster;
            *self.shared.alarms.lock() = load_alarms(&backend)?.into_iter().collect();
        }
        self.applied = meta.index;
        self.applied_term = meta.term;
        self.snap_index = meta.index;
        self.conf_state = meta.conf_state;
        self.shared.set_applied(self.applied);
        Ok(())
    }
}
