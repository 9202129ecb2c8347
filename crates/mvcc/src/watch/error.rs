//! The typed errors of watch streams; messages follow etcd's.

use super::WatchId;

/// Every way creating or cancelling a watch can fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// `end` is set and not after `key` (etcd's `ErrEmptyWatcherRange`).
    #[error("mvcc: watcher range is empty")]
    EmptyRange,
    /// The explicit watch ID is already used on the stream (etcd's `ErrWatcherDuplicateID`).
    #[error("mvcc: duplicate watch ID provided on the WatchStream")]
    DuplicateId(WatchId),
    /// An explicit watch ID must not be negative (`-1` marks stream-wide progress responses).
    #[error("mvcc: invalid watch ID {0}")]
    InvalidId(WatchId),
    /// No watch with this ID on the stream (etcd's `ErrWatcherNotExist`).
    #[error("mvcc: watcher does not exist")]
    NotExist(WatchId),
    /// The watchable store was closed (dropped).
    #[error("mvcc: watchable store closed")]
    Closed,
}
