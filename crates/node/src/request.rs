//! The replicated request envelope: what a normal raft entry carries. A format version byte,
//! then the postcard encoding of [`Envelope`]; a reader refuses versions it does not know.

use mvcc::{DeleteRangeRequest, PutRequest, TxnRequest};
use serde::{Deserialize, Serialize};

/// The envelope format this build writes.
pub const ENVELOPE_VERSION: u8 = 1;

/// An alarm etcd raises (only `NOSPACE` is raised by ferrocd; `CORRUPT` is reserved).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AlarmType {
    /// The backend exceeded its space quota.
    NoSpace,
    /// A member's data was found corrupt.
    Corrupt,
}

/// What an alarm request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlarmAction {
    /// Raise the alarm for the member.
    Activate,
    /// Clear it.
    Deactivate,
}

/// One replicated request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// A put.
    Put(PutRequest),
    /// A delete of a key or range.
    DeleteRange(DeleteRangeRequest),
    /// A transaction.
    Txn(TxnRequest),
    /// A compaction at `revision`.
    Compact {
        /// The revision to compact at.
        revision: i64,
        /// Whether the answer waits for the backend deletion.
        physical: bool,
    },
    /// Grant lease `id` (never 0 here: the proposer picks one) for `ttl` seconds.
    LeaseGrant {
        /// The lease id.
        id: i64,
        /// The TTL in seconds.
        ttl: i64,
    },
    /// Revoke lease `id`.
    LeaseRevoke {
        /// The lease id.
        id: i64,
    },
    /// Record the leases' remaining TTLs `(id, remaining_ttl)`.
    LeaseCheckpoint {
        /// The checkpoints.
        checkpoints: Vec<(i64, i64)>,
    },
    /// Raise or clear an alarm for a member.
    Alarm {
        /// Raise or clear.
        action: AlarmAction,
        /// The member (0 with deactivate: every member).
        member_id: u64,
        /// Which alarm.
        alarm: AlarmType,
    },
    /// Publish a member's name and client URLs (etcd's `publish`).
    MemberAttributes {
        /// The member.
        member_id: u64,
        /// Its name.
        name: String,
        /// Its client URLs.
        client_urls: Vec<String>,
    },
}

/// A request with the id its proposer waits on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The waiter's id (unique per proposing member; 0: nobody waits).
    pub id: u64,
    /// The request.
    pub request: Request,
}

/// An entry that is not an envelope of this build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable request envelope: {0}")]
pub struct EnvelopeError(pub String);

impl Envelope {
    /// The entry data: version byte, then postcard.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_extend(self, vec![ENVELOPE_VERSION])
            .unwrap_or_else(|e| panic!("postcard failed to encode a request envelope: {e}"))
    }

    /// Decodes entry data written by [`Envelope::encode`].
    pub fn decode(data: &[u8]) -> Result<Envelope, EnvelopeError> {
        match data.split_first() {
            Some((&ENVELOPE_VERSION, rest)) => {
                postcard::from_bytes(rest).map_err(|e| EnvelopeError(e.to_string()))
            }
            Some((v, _)) => Err(EnvelopeError(format!("unknown version {v}"))),
            None => Err(EnvelopeError("empty".into())),
        }
    }
}
