//! [`NodeError`]: every error a client of the node can see, one variant per etcd error
//! (`rpctypes/error.go`), so the server maps each to its gRPC code and message in one table.

use mvcc::MvccError;
use mvcc::lease::LeaseError;

/// Why a request to the node failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The revision asked for was compacted (etcd's `ErrCompacted`).
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    /// The revision asked for is in the future (etcd's `ErrFutureRev`).
    #[error("mvcc: required revision is a future revision")]
    FutureRev,
    /// No key given (etcd's `ErrGRPCEmptyKey`).
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// `ignore_value`/`ignore_lease` on a missing key (etcd's `ErrKeyNotFound`).
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// `ignore_value` with a value (etcd's `ErrGRPCValueProvided`).
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// `ignore_lease` with a lease (etcd's `ErrGRPCLeaseProvided`).
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// A txn touches a key twice (etcd's `ErrGRPCDuplicateKey`).
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// No such lease (etcd's `ErrLeaseNotFound`).
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// The lease id is taken (etcd's `ErrLeaseExist`).
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    /// The TTL is too large (etcd's `ErrLeaseTTLTooLarge`).
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    /// Too many requests are in flight (etcd's `ErrTooManyRequests`).
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    /// There is no leader (etcd's `ErrNoLeader`).
    #[error("etcdserver: no leader")]
    NoLeader,
    /// Only the leader serves this; `leader_id` is the leader's id (0 if unknown)
    /// (etcd's `ErrNotLeader`).
    #[error("etcdserver: not leader")]
    NotLeader {
        /// The current leader, 0 if unknown.
        leader_id: u64,
    },
    /// The request timed out (etcd's `ErrTimeout`).
    #[error("etcdserver: request timed out")]
    Timeout,
    /// The node is stopping or stopped (etcd's `ErrStopped`).
    #[error("etcdserver: server stopped")]
    Stopped,
    /// The space quota is exhausted (etcd's `ErrNoSpace`).
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// The member id exists (etcd's `ErrMemberExist`).
    #[error("etcdserver: member ID already exist")]
    MemberExists,
    /// No such member (etcd's `ErrMemberNotFound`).
    #[error("etcdserver: member not found")]
    MemberNotFound,
    /// A peer URL is taken (etcd's `ErrPeerURLExist`).
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    /// Only learners can be promoted (etcd's `ErrMemberNotLearner`).
    #[error("etcdserver: can only promote a learner member")]
    NotLearner,
    /// The learner lags too far behind to be promoted (etcd's `ErrLearnerNotReady`).
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    /// Too many learners (etcd's `ErrTooManyLearners`).
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    /// The change would leave the cluster unhealthy (etcd's `ErrUnhealthy`).
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
    /// The leader transfer target is not a voter (etcd's `ErrBadLeaderTransferee`).
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    /// Raft dropped the proposal (a leader transfer is in progress, or it could not be
    /// forwarded) (etcd's `ErrProposalDropped`).
    #[error("raft proposal dropped")]
    ProposalDropped,
    /// A request that makes no sense.
    #[error("etcdserver: invalid argument: {0}")]
    InvalidArgument(String),
    /// Corruption or another internal failure (etcd's `ErrCorrupt` and friends).
    #[error("etcdserver: internal error: {0}")]
    Internal(String),
}

impl From<MvccError> for NodeError {
    fn from(e: MvccError) -> Self {
        match e {
            MvccError::Compacted { .. } => NodeError::Compacted,
            MvccError::FutureRev { .. } => NodeError::FutureRev,
            MvccError::EmptyKey => NodeError::EmptyKey,
            MvccError::KeyNotFound => NodeError::KeyNotFound,
            MvccError::ValueProvided => NodeError::ValueProvided,
            MvccError::LeaseProvided => NodeError::LeaseProvided,
            MvccError::DuplicateKey => NodeError::DuplicateKey,
            MvccError::LeaseNotFound(_) => NodeError::LeaseNotFound,
            MvccError::Closed => NodeError::Stopped,
            other => NodeError::Internal(other.to_string()),
        }
    }
}

impl From<LeaseError> for NodeError {
    fn from(e: LeaseError) -> Self {
        match e {
            LeaseError::LeaseExists(_) => NodeError::LeaseExists,
            LeaseError::LeaseNotFound(_) | LeaseError::LeaseExpired(_) => NodeError::LeaseNotFound,
            LeaseError::TtlTooLarge { .. } => NodeError::LeaseTtlTooLarge,
            LeaseError::NotPrimary => NodeError::NotLeader { leader_id: 0 },
            LeaseError::InvalidId => NodeError::InvalidArgument("lease id 0".into()),
            other => NodeError::Internal(other.to_string()),
        }
    }
}

impl From<storage_api::StorageError> for NodeError {
    fn from(e: storage_api::StorageError) -> Self {
        NodeError::Internal(e.to_string())
    }
}

/// Why a node could not start (or a background step failed fatally).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is inconsistent.
    #[error("invalid node configuration: {0}")]
    Config(String),
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The WAL failed.
    #[error(transparent)]
    Wal(#[from] crate::wal::WalError),
    /// The storage engine failed to open.
    #[error(transparent)]
    Engine(#[from] crate::engine::OpenEngineError),
    /// The backend in `dir` failed to open (damaged or unreadable files).
    #[error("opening the backend in {dir}: {source}")]
    Backend {
        /// The engine's directory.
        dir: String,
        /// Why.
        source: crate::engine::OpenEngineError,
    },
    /// The backend failed.
    #[error(transparent)]
    Storage(#[from] storage_api::StorageError),
    /// The mvcc store failed to open.
    #[error(transparent)]
    Mvcc(#[from] MvccError),
    /// The lessor failed to open.
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// Raft refused its configuration or storage.
    #[error(transparent)]
    Raft(#[from] raft_core::RaftError),
    /// A snapshot file is damaged.
    #[error("snapshot {path}: {reason}")]
    Snapshot {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl StartError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
        let context = context.into();
        move |source| StartError::Io { context, source }
    }
}
