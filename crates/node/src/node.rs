//! [`Node`]: a running replica and its client-facing API (decision 0002).
//!
//! Three threads do the work: the raft loop ([`crate::raft_loop`]), the apply thread
//! ([`crate::apply`]) and the linearizable read loop ([`crate::reads`]). `Node` is a cheap,
//! cloneable handle; requests through raft answer with a [`Pending`].
//!
//! A node restarted in the same process must wait until every handle of the stopped one is
//! dropped: the storage engine refuses to open files another live instance holds.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mvcc::lease::{Lessor, LessorConfig, TimeToLive};
use mvcc::watch::{WatchConfig, WatchableStore};
use mvcc::{
    DeleteRangeRequest, DeleteRangeResponse, KeyValueHash, PutRequest, PutResponse, RangeRequest,
    RangeResult, StoreConfig, TxnRequest, TxnResponse,
};
use parking_lot::{Condvar, Mutex, RwLock};
use raft_core::raftpb::{
    ConfChange, ConfChangeType, ConfState, HardState, Snapshot, SnapshotMetadata,
};
use raft_core::storage::MemStorage;
use raft_core::{Config, RawNode};
use storage_api::Backend;

use crate::apply::{self, Applied, Applier, ApplyOutput};
use crate::engine::EngineKind;
use crate::error::{NodeError, StartError};
use crate::leases::{LessorRegistry, SharedLessor};
use crate::membership::{self, Cluster, ClusterInfo, ConfChangeContext, Member};
use crate::metrics::Metrics;
use crate::pending::Pending;
use crate::raft_loop::{Command, RaftLoop};
use crate::reads::{ReadJob, ReadLoop};
use crate::request::{AlarmAction, AlarmType, Envelope, Request};
use crate::snapshot::{self, DataPaths};
use crate::transport::{PeerEvent, Transport};
use crate::wal::{SnapshotMarker, Wal, WalMetadata};

/// Whether the member bootstraps a new cluster or joins an existing one (etcd's
/// `--initial-cluster-state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterState {
    /// Bootstrap with the initial cluster.
    New,
    /// Join a running cluster that already added this member.
    Existing,
}

/// How to start a node.
pub struct NodeConfig {
    /// This member's name: its entry in `initial_cluster`.
    pub name: String,
    /// The URLs clients reach this member at (etcd's `--advertise-client-urls`): published
    /// with the name through raft once the node runs, so every member lists them.
    pub client_urls: Vec<String>,
    /// The data directory (`member/wal`, `member/snap`, `member/backend`).
    pub data_dir: PathBuf,
    /// The WAL's own directory (etcd's `--wal-dir`); `None`: `member/wal` in the data
    /// directory.
    pub wal_dir: Option<PathBuf>,
    /// How many snapshot files to keep (etcd's `--max-snapshots`; 0: all).
    pub max_snapshots: usize,
    /// Every member's name and peer URLs.
    pub initial_cluster: Vec<(String, Vec<String>)>,
    /// Mixed into member and cluster ids (etcd's `--initial-cluster-token`).
    pub cluster_token: String,
    /// New cluster or joining.
    pub cluster_state: ClusterState,
    /// Applied entries between snapshots (etcd: 10 000).
    pub snapshot_count: u64,
    /// Entries kept in the raft log behind a snapshot for slow followers (etcd: 5 000).
    pub snapshot_catchup_entries: u64,
    /// The heartbeat interval (etcd: 100 ms): one raft tick.
    pub heartbeat: Duration,
    /// The election timeout (etcd: 1 000 ms), a multiple of the heartbeat.
    pub election: Duration,
    /// How long a request waits for raft before [`NodeError::Timeout`].
    pub request_timeout: Duration,
    /// The backend size that raises the `NOSPACE` alarm (0: no quota).
    pub quota_backend_bytes: u64,
    /// The storage engine.
    pub engine: EngineKind,
    /// Sends to peers.
    pub transport: Arc<dyn Transport>,
    /// What the transport receives for this member.
    pub peer_events: Receiver<PeerEvent>,
    /// The most learners the cluster may have (etcd: 1).
    pub max_learners: usize,
    /// The id the cluster assigned this member when it was added at runtime (etcd fetches it
    /// from the peers by peer URL); `None`: derived from the initial cluster.
    pub member_id: Option<u64>,
    /// The running cluster this member joins, as its members described it (see
    /// [`crate::transport::tcp::fetch_cluster`]): its id and members replace what
    /// `initial_cluster` would give. Only read when the data directory is new.
    pub existing_cluster: Option<ClusterInfo>,
    /// Where the member reports its metrics (shared with the transport, which counts peer
    /// traffic in the same set); `None`: a set of its own.
    pub metrics: Option<Arc<Metrics>>,
}

impl NodeConfig {
    /// etcd's defaults for everything but the identity, directory and transport.
    pub fn new(
        name: impl Into<String>,
        data_dir: impl Into<PathBuf>,
        initial_cluster: Vec<(String, Vec<String>)>,
        transport: Arc<dyn Transport>,
        peer_events: Receiver<PeerEvent>,
    ) -> NodeConfig {
        NodeConfig {
            name: name.into(),
            client_urls: Vec::new(),
            data_dir: data_dir.into(),
            wal_dir: None,
            max_snapshots: 5,
            initial_cluster,
            cluster_token: "etcd-cluster".into(),
            cluster_state: ClusterState::New,
            snapshot_count: 10_000,
            snapshot_catchup_entries: 5_000,
            heartbeat: Duration::from_millis(100),
            election: Duration::from_millis(1000),
            request_timeout: Duration::from_secs(7),
            quota_backend_bytes: 2 * 1024 * 1024 * 1024,
            engine: EngineKind::Lmdb,
            transport,
            peer_events,
            max_learners: 1,
            member_id: None,
            existing_cluster: None,
            metrics: None,
        }
    }
}

/// The header of every response (etcd's `ResponseHeader`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResponseHeader {
    /// The cluster id.
    pub cluster_id: u64,
    /// The answering member.
    pub member_id: u64,
    /// The store's revision when the response was produced.
    pub revision: i64,
    /// The raft term.
    pub raft_term: u64,
}

/// A response body with its header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response<T> {
    /// The header.
    pub header: ResponseHeader,
    /// The body.
    pub body: T,
}

/// A granted lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseGrant {
    /// Its id.
    pub id: i64,
    /// Its TTL in seconds.
    pub ttl: i64,
}

/// A member as added, and the members after.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberAdded {
    /// The new member.
    pub member: Member,
    /// Every member.
    pub members: Vec<Member>,
}

/// A node's status (etcd's `StatusResponse`, minus version and errors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// The header.
    pub header: ResponseHeader,
    /// The leader's id (0: none).
    pub leader: u64,
    /// The raft log's last index.
    pub raft_index: u64,
    /// The raft term.
    pub raft_term: u64,
    /// The index applied to the store.
    pub raft_applied_index: u64,
    /// The backend's size on disk.
    pub db_size: u64,
    /// The backend's bytes in use.
    pub db_size_in_use: u64,
    /// Whether this member is a learner.
    pub is_learner: bool,
}

/// Tunables the threads read.
pub(crate) struct Tuning {
    pub(crate) request_timeout: Duration,
    pub(crate) election: Duration,
    pub(crate) quota: u64,
    pub(crate) max_learners: usize,
}

type Waiter = (Instant, Box<dyn FnOnce(Result<Applied, NodeError>) + Send>);

/// The state the node's threads and handles share.
pub(crate) struct Shared {
    pub(crate) member_id: u64,
    pub(crate) cluster_id: u64,
    pub(crate) cluster_token: String,
    pub(crate) tuning: Tuning,
    pub(crate) store: RwLock<Arc<WatchableStore>>,
    pub(crate) lessor: SharedLessor,
    pub(crate) registry: Arc<LessorRegistry>,
    pub(crate) cluster: RwLock<Cluster>,
    pub(crate) alarms: Mutex<BTreeSet<(u64, AlarmType)>>,
    waiters: Mutex<HashMap<u64, Waiter>>,
    applied: Mutex<u64>,
    applied_cv: Condvar,
    pub(crate) lead: AtomicU64,
    pub(crate) is_leader: AtomicBool,
    pub(crate) term: AtomicU64,
    pub(crate) commit: AtomicU64,
    pub(crate) last_index: AtomicU64,
    pub(crate) is_learner: AtomicBool,
    next_id: AtomicU64,
    stopped: AtomicBool,
    /// Whether this member's attributes were published (etcd's `ReadyNotify`).
    published: AtomicBool,
    /// Set when this member learns it was removed from the cluster (by applying its removal,
    /// or from a peer refusing it): it must stop serving.
    pub(crate) removed: AtomicBool,
    /// The first fatal failure of the raft loop or the apply thread (a WAL or backend write
    /// failed): the member cannot go on safely and must be stopped.
    failure: std::sync::OnceLock<String>,
    /// What the member reports on `/metrics`.
    pub(crate) metrics: Arc<Metrics>,
}

impl Shared {
    /// Records a fatal failure (the first one wins) and logs it. The thread that calls this
    /// stops; [`Node::failure`] tells the embedder, who must stop the member (etcd exits).
    pub(crate) fn fail(&self, what: &str, error: &dyn std::fmt::Display) {
        let reason = format!("{what}: {error}");
        tracing::error!(member = %format_args!("{:x}", self.member_id), "{reason}; this member must stop");
        let _ = self.failure.set(reason);
    }

    /// Whether a fatal failure was recorded ([`Shared::fail`]).
    pub(crate) fn has_failed(&self) -> bool {
        self.failure.get().is_some()
    }

    pub(crate) fn store(&self) -> Arc<WatchableStore> {
        Arc::clone(&self.store.read())
    }

    pub(crate) fn is_leader(&self) -> bool {
        self.is_leader.load(Ordering::Acquire)
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            raft_term: self.term.load(Ordering::Acquire),
        }
    }

    fn register(&self, id: u64, f: Box<dyn FnOnce(Result<Applied, NodeError>) + Send>) {
        self.waiters.lock().insert(id, (Instant::now(), f));
    }

    pub(crate) fn complete_waiter(&self, id: u64, result: Result<Applied, NodeError>) {
        let waiter = self.waiters.lock().remove(&id);
        if let Some((_, f)) = waiter {
            f(result);
        }
    }

    /// Fails a proposal that raft could not take or commit (counted as etcd counts
    /// `proposals_failed`).
    pub(crate) fn fail_waiter(&self, id: u64, err: NodeError) {
        self.metrics.proposals_failed.inc();
        self.complete_waiter(id, Err(err));
    }

    pub(crate) fn fail_all_waiters(&self, err: NodeError) {
        let all: Vec<_> = self.waiters.lock().drain().collect();
        self.metrics.proposals_failed.inc_by(all.len() as u64);
        for (_, (_, f)) in all {
            f(Err(err.clone()));
        }
    }

    /// Fails the waiters older than the request timeout (their proposal was lost).
    pub(crate) fn expire_waiters(&self, now: Instant) {
        let timeout = self.tuning.request_timeout;
        let expired: Vec<_> = {
            let mut waiters = self.waiters.lock();
            let ids: Vec<u64> = waiters
                .iter()
                .filter(|(_, (at, _))| now.duration_since(*at) >= timeout)
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter()
                .filter_map(|id| waiters.remove(&id))
                .collect()
        };
        self.metrics.proposals_failed.inc_by(expired.len() as u64);
        for (_, f) in expired {
            f(Err(NodeError::Timeout));
        }
    }

    pub(crate) fn set_applied(&self, index: u64) {
        let mut applied = self.applied.lock();
        if index > *applied {
            *applied = index;
        }
        self.applied_cv.notify_all();
    }

    pub(crate) fn applied(&self) -> u64 {
        *self.applied.lock()
    }

    /// Waits until `index` is applied; false on timeout or stop.
    pub(crate) fn wait_applied(&self, index: u64, deadline: Instant) -> bool {
        let mut applied = self.applied.lock();
        while *applied < index {
            if self.stopped.load(Ordering::Acquire)
                || self
                    .applied_cv
                    .wait_until(&mut applied, deadline)
                    .timed_out()
            {
                return *applied >= index;
            }
        }
        true
    }
}

struct Threads {
    stop: Option<Sender<()>>,
    handles: Vec<JoinHandle<()>>,
}

struct Inner {
    shared: Arc<Shared>,
    commands: Sender<Command>,
    reads: Sender<ReadJob>,
    threads: std::sync::Mutex<Threads>,
}

/// A running replica: a cloneable handle on its threads.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("member_id", &self.inner.shared.member_id)
            .finish_non_exhaustive()
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn open_store(
    backend: Arc<Backend>,
    registry: &Arc<LessorRegistry>,
) -> Result<WatchableStore, StartError> {
    Ok(WatchableStore::open(
        backend,
        StoreConfig {
            lease_registry: Some(registry.clone() as Arc<dyn mvcc::LeaseRegistry>),
            ..StoreConfig::default()
        },
        WatchConfig::default(),
    )?)
}

impl Node {
    /// Starts the member: opens (or creates) its WAL, snapshots and backend, replays what the
    /// backend misses, and starts its threads.
    pub fn start(config: NodeConfig) -> Result<Node, StartError> {
        let NodeConfig {
            name,
            client_urls,
            data_dir,
            wal_dir,
            max_snapshots,
            initial_cluster,
            cluster_token,
            cluster_state,
            snapshot_count,
            snapshot_catchup_entries,
            heartbeat,
            election,
            request_timeout,
            quota_backend_bytes,
            engine,
            transport,
            peer_events,
            max_learners,
            member_id: assigned_id,
            existing_cluster,
            metrics,
        } = config;
        let metrics = match metrics {
            Some(metrics) => metrics,
            None => Metrics::new().map_err(|e| StartError::Config(e.to_string()))?,
        };
        let initial: Vec<Member> = match &existing_cluster {
            Some(info) => info.members.clone(),
            None => initial_cluster
                .iter()
                .map(|(n, urls)| Member {
                    id: match assigned_id {
                        Some(id) if *n == name => id,
                        _ => membership::member_id(urls, &cluster_token, None),
                    },
                    name: n.clone(),
                    peer_urls: urls.clone(),
                    client_urls: Vec::new(),
                    is_learner: false,
                })
                .collect(),
        };
        let mut paths = DataPaths::new(&data_dir);
        if let Some(wal_dir) = wal_dir {
            paths.wal = wal_dir;
        }
        // A member that has run before is who its WAL says, whatever its flags say (as etcd).
        let member_id = if Wal::exists(&paths.wal) {
            Wal::read_metadata(&paths.wal)?.member_id
        } else {
            match (&existing_cluster, assigned_id) {
                (Some(_), Some(id)) => initial.iter().find(|m| m.id == id),
                _ => initial.iter().find(|m| m.name == name),
            }
            .ok_or_else(|| StartError::Config(format!("{name} is not in the initial cluster")))?
            .id
        };
        let heartbeat_ms = heartbeat.as_millis().max(1);
        let election_ticks = usize::try_from(election.as_millis() / heartbeat_ms)
            .unwrap_or(10)
            .max(2);

        // The backend, brought up to the newest snapshot if it fell behind it.
        // The newest snapshot the WAL records: a crash between writing a snapshot's files and
        // its WAL record leaves a newer one the WAL does not know, which must be ignored.
        let latest = if Wal::exists(&paths.wal) {
            let mut found = None;
            for meta in snapshot::metas_newest_first(&paths)? {
                let marker = SnapshotMarker {
                    index: meta.index,
                    term: meta.term,
                };
                match Wal::open(&paths.wal, marker) {
                    Ok(_) => {
                        found = Some(meta);
                        break;
                    }
                    Err(crate::wal::WalError::SnapshotNotFound(_)) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            found
        } else {
            snapshot::latest_meta(&paths)?
        };
        let mut backend = Arc::new(snapshot::open_backend(&paths, engine)?);
        let min_ttl = i64::try_from((election.as_millis() * 3 / 2).div_ceil(1000)).unwrap_or(1);
        let lessor_config = LessorConfig {
            min_lease_ttl: min_ttl,
            ..LessorConfig::default()
        };
        let lessor: SharedLessor = Arc::new(Mutex::new(Lessor::new(
            Arc::clone(&backend),
            lessor_config.clone(),
        )?));
        let registry = Arc::new(LessorRegistry {
            lessor: Arc::clone(&lessor),
        });
        let mut store = open_store(Arc::clone(&backend), &registry)?;
        if let Some(meta) = &latest
            && store.consistent_index().index < meta.index
            && paths.db_file(meta.term, meta.index).exists()
        {
            tracing::info!(
                index = meta.index,
                "backend behind the snapshot; restoring it"
            );
            store.store().close();
            drop(store);
            backend.close()?;
            drop(backend);
            backend = Arc::new(snapshot::install_backend(
                &paths, engine, meta.term, meta.index,
            )?);
            lessor.lock().recover(Arc::clone(&backend))?;
            store = open_store(Arc::clone(&backend), &registry)?;
        }

        backend.set_commit_observer(metrics.backend_commit_observer());

        // The WAL and raft's storage.
        let mut storage = MemStorage::new();
        let cluster_id;
        let mut snap_meta = latest.clone().unwrap_or_default();
        let wal = if Wal::exists(&paths.wal) {
            let marker = SnapshotMarker {
                index: snap_meta.index,
                term: snap_meta.term,
            };
            let (wal, state) = Wal::open(&paths.wal, marker)?;
            cluster_id = state.metadata.cluster_id;
            if snap_meta.index > 0 {
                storage
                    .apply_snapshot(Snapshot {
                        data: Vec::new(),
                        metadata: snap_meta.clone(),
                    })
                    .map_err(|e| StartError::Config(e.to_string()))?;
            }
            storage.append(&state.entries);
            storage.set_hard_state(state.hard_state);
            wal
        } else {
            let ids: Vec<u64> = initial.iter().map(|m| m.id).collect();
            cluster_id = existing_cluster
                .as_ref()
                .map_or_else(|| membership::cluster_id(&ids), |c| c.cluster_id);
            let mut wal = Wal::create(
                &paths.wal,
                WalMetadata {
                    member_id,
                    cluster_id,
                },
            )?;
            {
                let mut txn = store.write()?;
                for m in &initial {
                    Cluster::save_member(&mut txn, m)?;
                }
                txn.end()?;
            }
            for m in &initial {
                transport.add_peer(m.id, &m.peer_urls);
            }
            if cluster_state == ClusterState::New {
                // Bootstrap: a snapshot at index 1 holding the initial voters and an empty
                // state machine, the same on every initial member.
                snap_meta = SnapshotMetadata {
                    conf_state: ConfState {
                        voters: ids.clone(),
                        ..ConfState::default()
                    },
                    index: 1,
                    term: 1,
                };
                snapshot::save_meta(&paths, &snap_meta)
                    .map_err(StartError::io("writing the bootstrap snapshot"))?;
                wal.save_snapshot(SnapshotMarker { index: 1, term: 1 })?;
                let hs = HardState {
                    term: 1,
                    vote: 0,
                    commit: 1,
                };
                wal.save(&hs, &[])?;
                storage
                    .apply_snapshot(Snapshot {
                        data: Vec::new(),
                        metadata: snap_meta.clone(),
                    })
                    .map_err(|e| StartError::Config(e.to_string()))?;
                storage.set_hard_state(hs);
            }
            wal
        };

        let cluster = Cluster::load(&backend)?;
        for m in cluster.members.values() {
            if m.id != member_id {
                transport.add_peer(m.id, &m.peer_urls);
            }
        }
        for &id in &cluster.removed {
            transport.remove_peer(id);
        }
        let removed_already = cluster.removed.contains(&member_id);
        let alarms = apply::load_alarms(&backend)?.into_iter().collect();
        let consistent = store.consistent_index().index;
        let mut raft_config = Config::new(member_id);
        raft_config.election_tick = election_ticks;
        raft_config.heartbeat_tick = 1;
        raft_config.check_quorum = true;
        raft_config.pre_vote = true;
        raft_config.max_size_per_msg = 1024 * 1024;
        raft_config.max_inflight_msgs = 256;
        let raw = RawNode::new(&raft_config, storage)?;

        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let shared = Arc::new(Shared {
            member_id,
            cluster_id,
            cluster_token,
            tuning: Tuning {
                request_timeout,
                election,
                quota: quota_backend_bytes,
                max_learners,
            },
            store: RwLock::new(Arc::new(store)),
            lessor,
            registry,
            cluster: RwLock::new(cluster),
            alarms: Mutex::new(alarms),
            waiters: Mutex::new(HashMap::new()),
            applied: Mutex::new(consistent.max(snap_meta.index)),
            applied_cv: Condvar::new(),
            lead: AtomicU64::new(0),
            is_leader: AtomicBool::new(false),
            term: AtomicU64::new(0),
            commit: AtomicU64::new(0),
            last_index: AtomicU64::new(0),
            is_learner: AtomicBool::new(false),
            next_id: AtomicU64::new(
                ((member_id & 0xffff) << 48) | ((now_ms & 0xff_ffff_ffff) << 8),
            ),
            stopped: AtomicBool::new(false),
            published: AtomicBool::new(false),
            removed: AtomicBool::new(removed_already),
            failure: std::sync::OnceLock::new(),
            metrics: Arc::clone(&metrics),
        });

        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let (cmd_tx, cmd_rx) = crossbeam_channel::bounded(4096);
        let (apply_tx, apply_rx) = crossbeam_channel::unbounded();
        let (read_tx, read_rx) = crossbeam_channel::bounded(4096);
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(format!("{name}-{member_id:x}"))
                .spawn(f)
                .map_err(StartError::io("spawning a node thread"))
        };
        let mut wal = wal;
        let fsync = metrics.wal_fsync.clone();
        wal.set_fsync_observer(Box::new(move |d| fsync.observe(d.as_secs_f64())));
        let raft_loop = RaftLoop {
            raw,
            wal,
            paths: paths.clone(),
            shared: Arc::clone(&shared),
            transport: Arc::clone(&transport),
            commands: cmd_rx,
            peers: peer_events,
            stop: stop_rx.clone(),
            apply: apply_tx,
            heartbeat,
            election_ticks,
            catchup_entries: snapshot_catchup_entries,
            max_snapshots,
            reads: HashMap::new(),
            transfer: None,
            heartbeats_sent: HashMap::new(),
        };
        let applier = Applier {
            shared: Arc::clone(&shared),
            tasks: apply_rx,
            stop: stop_rx.clone(),
            raft: cmd_tx.clone(),
            transport,
            paths,
            engine,
            snapshot_count: snapshot_count.max(1),
            conf_state: snap_meta.conf_state.clone(),
            snap_index: snap_meta.index,
            applied: snap_meta.index,
            applied_term: snap_meta.term,
            snapshot_soon: false,
        };
        let publisher = Publisher {
            shared: Arc::clone(&shared),
            commands: cmd_tx.clone(),
            stop: stop_rx.clone(),
            name,
            client_urls,
        };
        let read_loop = ReadLoop {
            shared: Arc::clone(&shared),
            jobs: read_rx,
            raft: cmd_tx.clone(),
            stop: stop_rx,
            next_ctx: 0,
        };
        let handles = vec![
            spawn("raft", Box::new(move || raft_loop.run()))?,
            spawn("apply", Box::new(move || applier.run()))?,
            spawn("reads", Box::new(move || read_loop.run()))?,
            spawn("publish", Box::new(move || publisher.run()))?,
        ];
        tracing::info!(member = format_args!("{member_id:x}"), "node started");
        Ok(Node {
            inner: Arc::new(Inner {
                shared,
                commands: cmd_tx,
                reads: read_tx,
                threads: std::sync::Mutex::new(Threads {
                    stop: Some(stop_tx),
                    handles,
                }),
            }),
        })
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// Stops the node gracefully: its threads finish and are joined, pending requests fail with
    /// [`NodeError::Stopped`], the store and backend are closed. Idempotent.
    pub fn stop(&self) {
        let shared = self.shared();
        shared.stopped.store(true, Ordering::Release);
        shared.applied_cv.notify_all();
        let handles = {
            let mut threads = self
                .inner
                .threads
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            threads.stop.take();
            std::mem::take(&mut threads.handles)
        };
        for h in handles {
            if h.join().is_err() {
                tracing::error!("a node thread panicked");
            }
        }
        shared.fail_all_waiters(NodeError::Stopped);
        let store = shared.store();
        store.store().close();
        if let Err(e) = store.backend().close() {
            tracing::error!(error = %e, "closing the backend failed");
        }
    }

    /// Whether this member has published its name and client URLs through raft since it
    /// started (etcd's `ReadyNotify`: etcd serves clients only from then on).
    pub fn published(&self) -> bool {
        self.shared().published.load(Ordering::Acquire)
    }

    /// Whether this member was removed from the cluster (etcd then stops with "the member has
    /// been permanently removed from the cluster"). The node keeps its threads; the embedder
    /// stops it.
    pub fn removed(&self) -> bool {
        self.shared().removed.load(Ordering::Acquire)
    }

    /// Why this member can no longer go on, if it cannot: writing the WAL or committing the
    /// backend failed (a full disk, an fsync error). Nothing acknowledged is lost (an answer
    /// waits for the WAL's fsync), but the member's state on disk may lag what it holds in
    /// memory, so it must not serve on: the embedder stops it and an operator restarts it once
    /// the disk is fixed, as etcd exits on these errors.
    pub fn failure(&self) -> Option<String> {
        let shared = self.shared();
        if let Some(reason) = shared.failure.get() {
            return Some(reason.clone());
        }
        let backend = shared.store().backend().failure()?;
        Some(format!("committing the backend: {backend}"))
    }

    /// This member's id.
    pub fn member_id(&self) -> u64 {
        self.shared().member_id
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> u64 {
        self.shared().cluster_id
    }

    /// The current leader (0: none known).
    pub fn leader(&self) -> u64 {
        self.shared().lead.load(Ordering::Acquire)
    }

    /// Whether this member leads.
    pub fn is_leader(&self) -> bool {
        self.shared().is_leader()
    }

    /// The index applied to the store.
    pub fn applied_index(&self) -> u64 {
        self.shared().applied()
    }

    /// The watchable store (watches do not go through raft). It is replaced when a snapshot
    /// from the leader is installed: take it again rather than keeping it.
    pub fn watchable_store(&self) -> Arc<WatchableStore> {
        self.shared().store()
    }

    fn header_at(&self, revision: i64) -> ResponseHeader {
        self.shared().header(revision)
    }

    /// The header of a response produced now: cluster and member ids, the store's current
    /// revision and the raft term (cheap: clones nothing).
    pub fn header(&self) -> ResponseHeader {
        let shared = self.shared();
        shared.header(shared.store().rev())
    }

    fn send(&self, cmd: Command, id: u64) {
        let err = match self.inner.commands.try_send(cmd) {
            Ok(()) => return,
            Err(TrySendError::Full(_)) => NodeError::TooManyRequests,
            Err(TrySendError::Disconnected(_)) => NodeError::Stopped,
        };
        self.shared().fail_waiter(id, err);
    }

    /// Proposes `request`; `map` turns the applied output into the caller's body.
    fn propose<T: Send + 'static>(
        &self,
        request: Request,
        map: fn(ApplyOutput) -> Option<T>,
    ) -> Pending<Response<T>> {
        let shared = Arc::clone(self.shared());
        if shared.stopped.load(Ordering::Acquire) {
            return Pending::ready(Err(NodeError::Stopped));
        }
        let (tx, pending) = Pending::new();
        let id = shared.next_id();
        let header_src = Arc::clone(&shared);
        shared.register(
            id,
            Box::new(move |result: Result<Applied, NodeError>| {
                let result = result.and_then(|applied| {
                    let header = header_src.header(applied.revision);
                    match map(applied.output) {
                        Some(body) => Ok(Response { header, body }),
                        None => Err(NodeError::Internal("unexpected apply output".into())),
                    }
                });
                let _ = tx.send(result);
            }),
        );
        let data = Envelope { id, request }.encode();
        self.send(Command::Propose { data, id }, id);
        pending
    }

    /// Fails with [`NodeError::NoSpace`] (raising the alarm) when the backend is over quota.
    fn check_quota(&self, request_bytes: usize) -> Result<(), NodeError> {
        let shared = self.shared();
        if shared
            .alarms
            .lock()
            .iter()
            .any(|(_, a)| *a == AlarmType::NoSpace)
        {
            return Err(NodeError::NoSpace);
        }
        let quota = shared.tuning.quota;
        if quota == 0 {
            return Ok(());
        }
        let size = shared.store().backend().size().unwrap_or(0);
        if size.saturating_add(request_bytes as u64) > quota {
            drop(self.alarm(AlarmAction::Activate, shared.member_id, AlarmType::NoSpace));
            return Err(NodeError::NoSpace);
        }
        Ok(())
    }

    /// Runs `serve` after a ReadIndex round (linearizable) or at once (serializable).
    fn read<T: Send + 'static>(
        &self,
        serializable: bool,
        serve: impl Fn(&WatchableStore) -> Result<T, NodeError> + Send + 'static,
    ) -> Pending<Response<T>> {
        let shared = Arc::clone(self.shared());
        let run = move |shared: &Shared| {
            let mut attempts = 0;
            loop {
                let store = shared.store();
                match serve(&store) {
                    Ok(body) => {
                        return Ok(Response {
                            header: shared.header(store.rev()),
                            body,
                        });
                    }
                    // The store was replaced by a snapshot install meanwhile: read the new one.
                    Err(NodeError::Stopped)
                        if attempts < 3 && !shared.stopped.load(Ordering::Acquire) =>
                    {
                        attempts += 1;
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        if serializable {
            return Pending::ready(run(&shared));
        }
        let (tx, pending) = Pending::new();
        let job: ReadJob = Box::new(move |ready: Result<(), NodeError>| {
            let _ = tx.send(ready.and_then(|()| run(&shared)));
        });
        match self.inner.reads.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(job)) => job(Err(NodeError::TooManyRequests)),
            Err(TrySendError::Disconnected(job)) => job(Err(NodeError::Stopped)),
        }
        pending
    }

    /// Reads a range: linearizable (through ReadIndex) unless `serializable`.
    pub fn range(&self, req: RangeRequest, serializable: bool) -> Pending<Response<RangeResult>> {
        self.read(serializable, move |store| {
            Ok(store.range(&req.key, req.range_end.as_deref(), &req.options)?)
        })
    }

    /// Puts a key.
    pub fn put(&self, req: PutRequest) -> Pending<Response<PutResponse>> {
        if let Err(e) = self.check_quota(req.key.len() + req.value.len()) {
            return Pending::ready(Err(e));
        }
        self.propose(Request::Put(req), |o| match o {
            ApplyOutput::Put(r) => Some(r),
            _ => None,
        })
    }

    /// Deletes a key or range.
    pub fn delete_range(&self, req: DeleteRangeRequest) -> Pending<Response<DeleteRangeResponse>> {
        self.propose(Request::DeleteRange(req), |o| match o {
            ApplyOutput::DeleteRange(r) => Some(r),
            _ => None,
        })
    }

    /// Runs a transaction: a read-only one as a linearizable read, others through raft.
    pub fn txn(&self, req: TxnRequest) -> Pending<Response<TxnResponse>> {
        if req.is_read_only() {
            return self.read(false, move |store| Ok(store.txn(&req)?));
        }
        if let Err(e) = self.check_quota(0) {
            return Pending::ready(Err(e));
        }
        self.propose(Request::Txn(req), |o| match o {
            ApplyOutput::Txn(r) => Some(r),
            _ => None,
        })
    }

    /// Compacts at `revision`; with `physical` the answer waits for the backend deletion.
    pub fn compact(&self, revision: i64, physical: bool) -> Pending<Response<()>> {
        let pending = self.propose(Request::Compact { revision, physical }, |o| match o {
            ApplyOutput::Compact(h) => Some(h),
            _ => None,
        });
        if !physical {
            let (tx, out) = Pending::new();
            std::thread::spawn(move || {
                let _ = tx.send(futures_map(pending, |r| r.map(unit)));
            });
            return out;
        }
        let (tx, out) = Pending::new();
        std::thread::spawn(move || {
            let r = futures_map(pending, |r| {
                r.and_then(|resp| {
                    if let Some(h) = resp.body {
                        h.wait()?;
                    }
                    Ok(Response {
                        header: resp.header,
                        body: (),
                    })
                })
            });
            let _ = tx.send(r);
        });
        out
    }

    /// Grants a lease (`id` 0: the node picks one).
    pub fn lease_grant(&self, id: i64, ttl: i64) -> Pending<Response<LeaseGrant>> {
        if let Err(e) = self.check_quota(0) {
            return Pending::ready(Err(e));
        }
        let id = if id == 0 {
            (self.shared().next_id() & (u64::MAX >> 1)) as i64
        } else {
            id
        };
        self.propose(Request::LeaseGrant { id, ttl }, |o| match o {
            ApplyOutput::LeaseGrant { id, ttl } => Some(LeaseGrant { id, ttl }),
            _ => None,
        })
    }

    /// Revokes a lease and deletes its keys.
    pub fn lease_revoke(&self, id: i64) -> Pending<Response<()>> {
        self.propose(Request::LeaseRevoke { id }, |o| match o {
            ApplyOutput::Nothing => Some(()),
            _ => None,
        })
    }

    /// Renews a lease (a keep-alive) and returns its TTL; only the leader renews.
    pub fn lease_renew(&self, id: i64) -> Result<Response<i64>, NodeError> {
        let shared = self.shared();
        if !shared.is_leader() {
            return Err(NodeError::NotLeader {
                leader_id: self.leader(),
            });
        }
        let ttl = shared.lessor.lock().renew(id, Instant::now())?;
        Ok(Response {
            header: self.header(),
            body: ttl,
        })
    }

    /// A lease's granted and remaining TTL, with its keys if `keys`.
    pub fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> Result<Response<TimeToLive>, NodeError> {
        let shared = self.shared();
        let ttl = shared
            .lessor
            .lock()
            .time_to_live(id, keys, Instant::now())?;
        Ok(Response {
            header: self.header(),
            body: ttl,
        })
    }

    /// Every lease id.
    pub fn leases(&self) -> Response<Vec<i64>> {
        let shared = self.shared();
        let ids = shared.lessor.lock().leases().map(|l| l.id()).collect();
        Response {
            header: self.header(),
            body: ids,
        }
    }

    fn propose_conf_change(
        &self,
        change_type: ConfChangeType,
        member: Member,
    ) -> Pending<Response<Vec<Member>>> {
        let shared = Arc::clone(self.shared());
        let (tx, pending) = Pending::new();
        let id = shared.next_id();
        let header_src = Arc::clone(&shared);
        shared.register(
            id,
            Box::new(move |result: Result<Applied, NodeError>| {
                let _ = tx.send(result.and_then(|a| match a.output {
                    ApplyOutput::Members(m) => Ok(Response {
                        header: header_src.header(a.revision),
                        body: m,
                    }),
                    _ => Err(NodeError::Internal("unexpected apply output".into())),
                }));
            }),
        );
        let cc = ConfChange {
            id,
            change_type,
            node_id: member.id,
            context: ConfChangeContext {
                request_id: id,
                member,
            }
            .encode(),
        };
        self.send(Command::ProposeConfChange { cc, id }, id);
        pending
    }

    /// Adds a member (a learner if `is_learner`).
    pub fn member_add(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Pending<Response<MemberAdded>> {
        let shared = self.shared();
        let id = membership::member_id(&peer_urls, &shared.cluster_token, Some(unix_secs()));
        {
            let cluster = shared.cluster.read();
            if cluster.members.contains_key(&id) || cluster.removed.contains(&id) {
                return Pending::ready(Err(NodeError::MemberExists));
            }
            if cluster.peer_url_taken(&peer_urls, 0) {
                return Pending::ready(Err(NodeError::PeerUrlExists));
            }
            let learners = cluster.members.values().filter(|m| m.is_learner).count();
            if is_learner && learners >= shared.tuning.max_learners {
                return Pending::ready(Err(NodeError::TooManyLearners));
            }
        }
        let member = Member {
            id,
            name: String::new(),
            peer_urls,
            client_urls: Vec::new(),
            is_learner,
        };
        let change = if is_learner {
            ConfChangeType::AddLearnerNode
        } else {
            ConfChangeType::AddNode
        };
        let pending = self.propose_conf_change(change, member.clone());
        let (tx, out) = Pending::new();
        std::thread::spawn(move || {
            let _ = tx.send(futures_map(pending, |r| {
                r.map(|resp| Response {
                    header: resp.header,
                    body: MemberAdded {
                        member,
                        members: resp.body,
                    },
                })
            }));
        });
        out
    }

    fn existing_member(&self, id: u64) -> Result<Member, NodeError> {
        self.shared()
            .cluster
            .read()
            .members
            .get(&id)
            .cloned()
            .ok_or(NodeError::MemberNotFound)
    }

    /// Removes a member.
    pub fn member_remove(&self, id: u64) -> Pending<Response<Vec<Member>>> {
        match self.existing_member(id) {
            Ok(m) => self.propose_conf_change(ConfChangeType::RemoveNode, m),
            Err(e) => Pending::ready(Err(e)),
        }
    }

    /// Changes a member's peer URLs.
    pub fn member_update(&self, id: u64, peer_urls: Vec<String>) -> Pending<Response<Vec<Member>>> {
        let m = match self.existing_member(id) {
            Ok(m) => m,
            Err(e) => return Pending::ready(Err(e)),
        };
        if self.shared().cluster.read().peer_url_taken(&peer_urls, id) {
            return Pending::ready(Err(NodeError::PeerUrlExists));
        }
        self.propose_conf_change(ConfChangeType::UpdateNode, Member { peer_urls, ..m })
    }

    /// Promotes a learner that caught up with the leader to a voter (on the leader only).
    pub fn member_promote(&self, id: u64) -> Pending<Response<Vec<Member>>> {
        let m = match self.existing_member(id) {
            Ok(m) => m,
            Err(e) => return Pending::ready(Err(e)),
        };
        if !m.is_learner {
            return Pending::ready(Err(NodeError::NotLearner));
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        if self
            .inner
            .commands
            .send(Command::LearnerReady { id, reply: tx })
            .is_err()
        {
            return Pending::ready(Err(NodeError::Stopped));
        }
        match rx.recv_timeout(self.shared().tuning.request_timeout) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Pending::ready(Err(e)),
            Err(_) => return Pending::ready(Err(NodeError::Timeout)),
        }
        self.propose_conf_change(
            ConfChangeType::AddNode,
            Member {
                is_learner: false,
                ..m
            },
        )
    }

    /// Every member, once this member applied everything committed when it asked (a ReadIndex
    /// round): no member added or removed before the call is missing (etcd 3.5's
    /// `MemberList` with `linearizable`).
    pub fn member_list_linearizable(&self) -> Pending<Response<Vec<Member>>> {
        let shared = Arc::clone(self.shared());
        self.read(false, move |_| {
            Ok(shared.cluster.read().members.values().cloned().collect())
        })
    }

    /// Every member.
    pub fn member_list(&self) -> Response<Vec<Member>> {
        let shared = self.shared();
        let members = shared.cluster.read().members.values().cloned().collect();
        Response {
            header: self.header(),
            body: members,
        }
    }

    /// The member's status.
    pub fn status(&self) -> Result<NodeStatus, NodeError> {
        let shared = self.shared();
        let store = shared.store();
        let backend = store.backend();
        Ok(NodeStatus {
            header: self.header_at(store.rev()),
            leader: self.leader(),
            raft_index: shared.last_index.load(Ordering::Acquire),
            raft_term: shared.term.load(Ordering::Acquire),
            raft_applied_index: shared.applied(),
            db_size: backend.size()?,
            db_size_in_use: backend.size_in_use()?,
            is_learner: shared.is_learner.load(Ordering::Acquire),
        })
    }

    /// The member's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared().metrics
    }

    /// Sets the gauges that mirror the member's state (indices, pending proposals, sizes,
    /// keys): call before the metrics are read. The leader gauges are set by the raft loop
    /// when the leader changes.
    pub fn refresh_metrics(&self) {
        let shared = self.shared();
        let m = &shared.metrics;
        let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        m.proposals_committed
            .set(to_i64(shared.commit.load(Ordering::Acquire)));
        m.proposals_applied.set(to_i64(shared.applied()));
        m.proposals_pending
            .set(i64::try_from(shared.waiters.lock().len()).unwrap_or(i64::MAX));
        let store = shared.store();
        m.keys_total
            .set(i64::try_from(store.store().key_count()).unwrap_or(i64::MAX));
        m.observe_mvcc(store.store().op_counts());
        let backend = store.backend();
        if let Ok(size) = backend.size() {
            m.db_total_size.set(to_i64(size));
        }
        if let Ok(size) = backend.size_in_use() {
            m.db_in_use_size.set(to_i64(size));
        }
    }

    /// Rewrites the backend compactly.
    pub fn defragment(&self) -> Result<(), NodeError> {
        Ok(self.shared().store().backend().defrag()?)
    }

    /// The hash of the whole backend (minus raft positions) and the current revision.
    pub fn hash(&self) -> Result<(u32, i64), NodeError> {
        Ok(self.shared().store().hash()?)
    }

    /// The hash of the key history up to `revision` (etcd's `HashKV`).
    pub fn hash_kv(&self, revision: i64) -> Result<KeyValueHash, NodeError> {
        Ok(self.shared().store().hash_by_rev(revision)?)
    }

    /// A consistent copy of the backend in the portable snapshot format.
    pub fn snapshot(&self) -> Result<storage_api::Snapshot, NodeError> {
        Ok(self.shared().store().backend().snapshot()?)
    }

    /// Hands leadership to `target` (on the leader); completes once `target` leads.
    pub fn move_leader(&self, target: u64) -> Pending<()> {
        let (tx, pending) = Pending::new();
        if let Err(e) = self
            .inner
            .commands
            .try_send(Command::TransferLeader { target, reply: tx })
        {
            let reply = match e {
                TrySendError::Full(Command::TransferLeader { reply, .. })
                | TrySendError::Disconnected(Command::TransferLeader { reply, .. }) => reply,
                _ => return Pending::ready(Err(NodeError::Stopped)),
            };
            let _ = reply.send(Err(NodeError::TooManyRequests));
        }
        pending
    }

    fn alarm(
        &self,
        action: AlarmAction,
        member_id: u64,
        alarm: AlarmType,
    ) -> Pending<Response<Vec<(u64, AlarmType)>>> {
        self.propose(
            Request::Alarm {
                action,
                member_id,
                alarm,
            },
            |o| match o {
                ApplyOutput::Alarms(a) => Some(a),
                _ => None,
            },
        )
    }

    /// The active alarms `(member, alarm)`.
    pub fn alarms(&self) -> Vec<(u64, AlarmType)> {
        self.shared().alarms.lock().iter().copied().collect()
    }

    /// Clears `alarm` for `member_id` (0: every member); returns the alarms cleared (etcd's answer).
    pub fn alarm_deactivate(
        &self,
        member_id: u64,
        alarm: AlarmType,
    ) -> Pending<Response<Vec<(u64, AlarmType)>>> {
        self.alarm(AlarmAction::Deactivate, member_id, alarm)
    }

    /// Raises `alarm` for `member_id`; returns it (etcd's answer).
    pub fn alarm_activate(
        &self,
        member_id: u64,
        alarm: AlarmType,
    ) -> Pending<Response<Vec<(u64, AlarmType)>>> {
        self.alarm(AlarmAction::Activate, member_id, alarm)
    }
}

fn unit<T>(resp: Response<T>) -> Response<()> {
    Response {
        header: resp.header,
        body: (),
    }
}

/// Waits for `pending` on the calling (helper) thread and maps its result.
fn futures_map<T, U>(
    pending: Pending<T>,
    f: impl FnOnce(Result<T, NodeError>) -> Result<U, NodeError>,
) -> Result<U, NodeError> {
    f(pending.wait(Duration::from_secs(3600)))
}

/// The first pause between attempts to publish the member's attributes.
const PUBLISH_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// How often a retry waiting for a leader looks for one.
const PUBLISH_POLL: Duration = Duration::from_millis(10);
/// The longest pause between attempts.
const PUBLISH_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// etcd's `publishV3`: proposes this member's name and client URLs through raft, retrying
/// (with backoff) until they are applied or the node stops. Runs on its own thread, so start-up
/// does not wait for it.
struct Publisher {
    shared: Arc<Shared>,
    commands: Sender<Command>,
    stop: Receiver<()>,
    name: String,
    client_urls: Vec<String>,
}

impl Publisher {
    fn run(self) {
        let member = format!("{:x}", self.shared.member_id);
        let mut backoff = PUBLISH_BACKOFF_MIN;
        loop {
            if self.shared.stopped.load(Ordering::Acquire) {
                return;
            }
            match self.attempt() {
                Ok(()) => {
                    self.shared.published.store(true, Ordering::Release);
                    tracing::info!(
                        member = %member,
                        name = %self.name,
                        client_urls = ?self.client_urls,
                        "published the member's attributes to the cluster"
                    );
                    return;
                }
                Err(NodeError::Stopped) => return,
                Err(e) => {
                    tracing::debug!(member = %member, error = %e, "publishing the member's attributes failed; retrying");
                }
            }
            // Retry after the backoff, or as soon as a leader appears if there was none.
            let until = Instant::now() + backoff;
            let had_leader = self.shared.lead.load(Ordering::Acquire) != 0;
            while Instant::now() < until {
                crossbeam_channel::select! {
                    recv(self.stop) -> _ => return,
                    default(PUBLISH_POLL) => {}
                }
                if !had_leader && self.shared.lead.load(Ordering::Acquire) != 0 {
                    break;
                }
            }
            backoff = (backoff * 2).min(PUBLISH_BACKOFF_MAX);
        }
    }

    /// One proposal, waited for until applied, failed, timed out or the node stops.
    fn attempt(&self) -> Result<(), NodeError> {
        let shared = &self.shared;
        let id = shared.next_id();
        let (tx, rx) = crossbeam_channel::bounded(1);
        shared.register(
            id,
            Box::new(move |result: Result<Applied, NodeError>| {
                let _ = tx.send(result.map(|_| ()));
            }),
        );
        let data = Envelope {
            id,
            request: Request::MemberAttributes {
                member_id: shared.member_id,
                name: self.name.clone(),
                client_urls: self.client_urls.clone(),
            },
        }
        .encode();
        match self.commands.try_send(Command::Propose { data, id }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => shared.fail_waiter(id, NodeError::TooManyRequests),
            Err(TrySendError::Disconnected(_)) => shared.fail_waiter(id, NodeError::Stopped),
        }
        // The raft loop expires a lost proposal after the request timeout; wait a little longer.
        let limit = shared.tuning.request_timeout + Duration::from_secs(1);
        crossbeam_channel::select! {
            recv(rx) -> result => result.unwrap_or(Err(NodeError::Stopped)),
            recv(self.stop) -> _ => Err(NodeError::Stopped),
            default(limit) => {
                shared.fail_waiter(id, NodeError::Timeout);
                Err(NodeError::Timeout)
            }
        }
    }
}
