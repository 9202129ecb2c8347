//! etcd's client-visible errors (`api/v3rpc/rpctypes/error.go`): each with its gRPC code and
//! exact message, and the one table mapping every [`node::NodeError`] to one of them.

use node::NodeError;
use tonic::{Code, Status};

/// An error etcd's gRPC layer returns, by its `rpctypes` name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EtcdError {
    /// `ErrGRPCEmptyKey`.
    EmptyKey,
    /// `ErrGRPCKeyNotFound`.
    KeyNotFound,
    /// `ErrGRPCValueProvided`.
    ValueProvided,
    /// `ErrGRPCLeaseProvided`.
    LeaseProvided,
    /// `ErrGRPCTooManyOps`.
    TooManyOps,
    /// `ErrGRPCDuplicateKey`.
    DuplicateKey,
    /// `ErrGRPCCompacted`.
    Compacted,
    /// `ErrGRPCFutureRev`.
    FutureRev,
    /// `ErrGRPCNoSpace`.
    NoSpace,
    /// `ErrGRPCLeaseNotFound`.
    LeaseNotFound,
    /// `ErrGRPCLeaseExist`.
    LeaseExist,
    /// `ErrGRPCLeaseTTLTooLarge`.
    LeaseTtlTooLarge,
    /// `ErrGRPCMemberExist`.
    MemberExist,
    /// `ErrGRPCPeerURLExist`.
    PeerUrlExist,
    /// `ErrGRPCMemberNotEnoughStarted`.
    MemberNotEnoughStarted,
    /// `ErrGRPCMemberBadURLs`.
    MemberBadUrls,
    /// `ErrGRPCMemberNotFound`.
    MemberNotFound,
    /// `ErrGRPCMemberNotLearner`.
    MemberNotLearner,
    /// `ErrGRPCLearnerNotReady`.
    LearnerNotReady,
    /// `ErrGRPCTooManyLearners`.
    TooManyLearners,
    /// `ErrGRPCRequestTooLarge`.
    RequestTooLarge,
    /// `ErrGRPCRequestTooManyRequests`.
    TooManyRequests,
    /// `ErrGRPCAuthNotEnabled`.
    AuthNotEnabled,
    /// `ErrGRPCNoLeader`.
    NoLeader,
    /// `ErrGRPCNotLeader`.
    NotLeader,
    /// `ErrGRPCLeaderChanged`.
    LeaderChanged,
    /// `ErrGRPCNotCapable`.
    NotCapable,
    /// `ErrGRPCStopped`.
    Stopped,
    /// `ErrGRPCTimeout`.
    Timeout,
    /// `ErrGRPCTimeoutDueToLeaderFail`.
    TimeoutDueToLeaderFail,
    /// `ErrGRPCTimeoutDueToConnectionLost`.
    TimeoutDueToConnectionLost,
    /// `ErrGRPCUnhealthy`.
    Unhealthy,
    /// `ErrGRPCCorrupt`.
    Corrupt,
    /// `ErrGPRCNotSupportedForLearner`.
    NotSupportedForLearner,
    /// `ErrGRPCBadLeaderTransferee`.
    BadLeaderTransferee,
}

impl EtcdError {
    /// Every error, each once.
    pub const ALL: [EtcdError; 35] = {
        use EtcdError::*;
        [
            EmptyKey,
            KeyNotFound,
            ValueProvided,
            LeaseProvided,
            TooManyOps,
            DuplicateKey,
            Compacted,
            FutureRev,
            NoSpace,
            LeaseNotFound,
            LeaseExist,
            LeaseTtlTooLarge,
            MemberExist,
            PeerUrlExist,
            MemberNotEnoughStarted,
            MemberBadUrls,
            MemberNotFound,
            MemberNotLearner,
            LearnerNotReady,
            TooManyLearners,
            RequestTooLarge,
            TooManyRequests,
            AuthNotEnabled,
            NoLeader,
            NotLeader,
            LeaderChanged,
            NotCapable,
            Stopped,
            Timeout,
            TimeoutDueToLeaderFail,
            TimeoutDueToConnectionLost,
            Unhealthy,
            Corrupt,
            NotSupportedForLearner,
            BadLeaderTransferee,
        ]
    };

    /// The error whose message is `message`, if it is one of these.
    pub fn from_message(message: &str) -> Option<EtcdError> {
        EtcdError::ALL.into_iter().find(|e| e.message() == message)
    }

    /// The gRPC code etcd answers with.
    pub fn code(self) -> Code {
        use EtcdError::*;
        match self {
            EmptyKey | KeyNotFound | ValueProvided | LeaseProvided | TooManyOps | DuplicateKey
            | MemberBadUrls | RequestTooLarge => Code::InvalidArgument,
            Compacted | FutureRev | LeaseTtlTooLarge => Code::OutOfRange,
            NoSpace | TooManyRequests => Code::ResourceExhausted,
            LeaseNotFound | MemberNotFound => Code::NotFound,
            LeaseExist
            | MemberExist
            | PeerUrlExist
            | MemberNotEnoughStarted
            | MemberNotLearner
            | LearnerNotReady
            | TooManyLearners
            | AuthNotEnabled
            | NotLeader
            | BadLeaderTransferee => Code::FailedPrecondition,
            NoLeader
            | LeaderChanged
            | NotCapable
            | Stopped
            | Timeout
            | TimeoutDueToLeaderFail
            | TimeoutDueToConnectionLost
            | Unhealthy
            | NotSupportedForLearner => Code::Unavailable,
            Corrupt => Code::DataLoss,
        }
    }

    /// etcd's exact message.
    pub fn message(self) -> &'static str {
        use EtcdError::*;
        match self {
            EmptyKey => "etcdserver: key is not provided",
            KeyNotFound => "etcdserver: key not found",
            ValueProvided => "etcdserver: value is provided",
            LeaseProvided => "etcdserver: lease is provided",
            TooManyOps => "etcdserver: too many operations in txn request",
            DuplicateKey => "etcdserver: duplicate key given in txn request",
            Compacted => "etcdserver: mvcc: required revision has been compacted",
            FutureRev => "etcdserver: mvcc: required revision is a future revision",
            NoSpace => "etcdserver: mvcc: database space exceeded",
            LeaseNotFound => "etcdserver: requested lease not found",
            LeaseExist => "etcdserver: lease already exists",
            LeaseTtlTooLarge => "etcdserver: too large lease TTL",
            MemberExist => "etcdserver: member ID already exist",
            PeerUrlExist => "etcdserver: Peer URLs already exists",
            MemberNotEnoughStarted => {
                "etcdserver: re-configuration failed due to not enough started members"
            }
            MemberBadUrls => "etcdserver: given member URLs are invalid",
            MemberNotFound => "etcdserver: member not found",
            MemberNotLearner => "etcdserver: can only promote a learner member",
            LearnerNotReady => {
                "etcdserver: can only promote a learner member which is in sync with leader"
            }
            TooManyLearners => "etcdserver: too many learner members in cluster",
            RequestTooLarge => "etcdserver: request is too large",
            TooManyRequests => "etcdserver: too many requests",
            AuthNotEnabled => "etcdserver: authentication is not enabled",
            NoLeader => "etcdserver: no leader",
            NotLeader => "etcdserver: not leader",
            LeaderChanged => "etcdserver: leader changed",
            NotCapable => "etcdserver: not capable",
            Stopped => "etcdserver: server stopped",
            Timeout => "etcdserver: request timed out",
            TimeoutDueToLeaderFail => {
                "etcdserver: request timed out, possibly due to previous leader failure"
            }
            TimeoutDueToConnectionLost => {
                "etcdserver: request timed out, possibly due to connection lost"
            }
            Unhealthy => "etcdserver: unhealthy cluster",
            Corrupt => "etcdserver: corrupt cluster",
            NotSupportedForLearner => "etcdserver: rpc not supported for learner",
            BadLeaderTransferee => "etcdserver: bad leader transferee",
        }
    }

    /// The gRPC status etcd sends.
    pub fn status(self) -> Status {
        Status::new(self.code(), self.message())
    }
}

impl From<EtcdError> for Status {
    fn from(e: EtcdError) -> Status {
        e.status()
    }
}

/// The etcd error a node error is, if it is one of etcd's.
pub fn etcd_error(e: &NodeError) -> Option<EtcdError> {
    Some(match e {
        NodeError::Compacted => EtcdError::Compacted,
        NodeError::FutureRev => EtcdError::FutureRev,
        NodeError::EmptyKey => EtcdError::EmptyKey,
        NodeError::KeyNotFound => EtcdError::KeyNotFound,
        NodeError::ValueProvided => EtcdError::ValueProvided,
        NodeError::LeaseProvided => EtcdError::LeaseProvided,
        NodeError::DuplicateKey => EtcdError::DuplicateKey,
        NodeError::LeaseNotFound => EtcdError::LeaseNotFound,
        NodeError::LeaseExists => EtcdError::LeaseExist,
        NodeError::LeaseTtlTooLarge => EtcdError::LeaseTtlTooLarge,
        NodeError::TooManyRequests => EtcdError::TooManyRequests,
        NodeError::NoLeader => EtcdError::NoLeader,
        NodeError::NotLeader { .. } => EtcdError::NotLeader,
        NodeError::Timeout => EtcdError::Timeout,
        NodeError::Stopped => EtcdError::Stopped,
        NodeError::NoSpace => EtcdError::NoSpace,
        NodeError::MemberExists => EtcdError::MemberExist,
        NodeError::MemberNotFound => EtcdError::MemberNotFound,
        NodeError::PeerUrlExists => EtcdError::PeerUrlExist,
        NodeError::NotLearner => EtcdError::MemberNotLearner,
        NodeError::LearnerNotReady => EtcdError::LearnerNotReady,
        NodeError::TooManyLearners => EtcdError::TooManyLearners,
        NodeError::Unhealthy => EtcdError::Unhealthy,
        NodeError::BadLeaderTransferee => EtcdError::BadLeaderTransferee,
        _ => return None,
    })
}

/// The gRPC status for a node error: etcd's code and message for etcd's errors;
/// `InvalidArgument` for a request the node found invalid; `Unknown` with the error's text for
/// anything else (as etcd's `togRPCError` does for errors it does not know).
pub fn status(e: &NodeError) -> Status {
    if let Some(etcd) = etcd_error(e) {
        return etcd.status();
    }
    match e {
        NodeError::InvalidArgument(_) => Status::invalid_argument(e.to_string()),
        _ => Status::unknown(e.to_string()),
    }
}

/// [`status`] by value, for `map_err`.
pub fn to_status(e: NodeError) -> Status {
    status(&e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(e: NodeError, code: Code, message: &str) {
        let s = status(&e);
        assert_eq!(s.code(), code, "{e:?}");
        assert_eq!(s.message(), message, "{e:?}");
    }

    #[test]
    fn every_node_error_maps_to_etcds_code_and_message() {
        use NodeError::*;
        let table = [
            (
                Compacted,
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            (
                FutureRev,
                Code::OutOfRange,
                "etcdserver: mvcc: required revision is a future revision",
            ),
            (
                EmptyKey,
                Code::InvalidArgument,
                "etcdserver: key is not provided",
            ),
            (
                KeyNotFound,
                Code::InvalidArgument,
                "etcdserver: key not found",
            ),
            (
                ValueProvided,
                Code::InvalidArgument,
                "etcdserver: value is provided",
            ),
            (
                LeaseProvided,
                Code::InvalidArgument,
                "etcdserver: lease is provided",
            ),
            (
                DuplicateKey,
                Code::InvalidArgument,
                "etcdserver: duplicate key given in txn request",
            ),
            (
                LeaseNotFound,
                Code::NotFound,
                "etcdserver: requested lease not found",
            ),
            (
                LeaseExists,
                Code::FailedPrecondition,
                "etcdserver: lease already exists",
            ),
            (
                LeaseTtlTooLarge,
                Code::OutOfRange,
                "etcdserver: too large lease TTL",
            ),
            (
                TooManyRequests,
                Code::ResourceExhausted,
                "etcdserver: too many requests",
            ),
            (NoLeader, Code::Unavailable, "etcdserver: no leader"),
            (
                NotLeader { leader_id: 7 },
                Code::FailedPrecondition,
                "etcdserver: not leader",
            ),
            (Timeout, Code::Unavailable, "etcdserver: request timed out"),
            (Stopped, Code::Unavailable, "etcdserver: server stopped"),
            (
                NoSpace,
                Code::ResourceExhausted,
                "etcdserver: mvcc: database space exceeded",
            ),
            (
                MemberExists,
                Code::FailedPrecondition,
                "etcdserver: member ID already exist",
            ),
            (
                MemberNotFound,
                Code::NotFound,
                "etcdserver: member not found",
            ),
            (
                PeerUrlExists,
                Code::FailedPrecondition,
                "etcdserver: Peer URLs already exists",
            ),
            (
                NotLearner,
                Code::FailedPrecondition,
                "etcdserver: can only promote a learner member",
            ),
            (
                LearnerNotReady,
                Code::FailedPrecondition,
                "etcdserver: can only promote a learner member which is in sync with leader",
            ),
            (
                TooManyLearners,
                Code::FailedPrecondition,
                "etcdserver: too many learner members in cluster",
            ),
            (
                Unhealthy,
                Code::Unavailable,
                "etcdserver: unhealthy cluster",
            ),
            (
                BadLeaderTransferee,
                Code::FailedPrecondition,
                "etcdserver: bad leader transferee",
            ),
        ];
        for (e, code, message) in table {
            check(e, code, message);
        }
    }

    #[test]
    fn other_node_errors_keep_their_text() {
        let s = status(&NodeError::InvalidArgument("bad".into()));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().contains("bad"));
        let s = status(&NodeError::Internal("disk on fire".into()));
        assert_eq!(s.code(), Code::Unknown);
        assert!(s.message().contains("disk on fire"));
    }

    #[test]
    fn errors_are_found_by_their_message() {
        for e in EtcdError::ALL {
            assert_eq!(EtcdError::from_message(e.message()), Some(e));
        }
        assert_eq!(EtcdError::from_message("election: no leader"), None);
    }

    #[test]
    fn server_side_errors_match_rpctypes() {
        let cases = [
            (
                EtcdError::TooManyOps,
                Code::InvalidArgument,
                "etcdserver: too many operations in txn request",
            ),
            (
                EtcdError::RequestTooLarge,
                Code::InvalidArgument,
                "etcdserver: request is too large",
            ),
            (
                EtcdError::MemberBadUrls,
                Code::InvalidArgument,
                "etcdserver: given member URLs are invalid",
            ),
            (
                EtcdError::Corrupt,
                Code::DataLoss,
                "etcdserver: corrupt cluster",
            ),
            (
                EtcdError::NotSupportedForLearner,
                Code::Unavailable,
                "etcdserver: rpc not supported for learner",
            ),
        ];
        for (e, code, message) in cases {
            let s: Status = e.into();
            assert_eq!((s.code(), s.message()), (code, message));
        }
    }
}
