//! Watch (etcd's `watchableStore`, `watcher`, `watcherGroup`, `watchStream`): streams of the
//! changes to keys or ranges, from now or replayed from a past revision.
//!
//! - [`WatchableStore`] wraps a [`crate::KvStore`] and observes its write transactions. A
//!   watcher whose start revision is in the future (or 0) is *synced*: it is told about each
//!   revision as it commits. One starting at or before the current revision is *unsynced*: a
//!   background loop replays its history from the backend in bounded rounds, then moves it to
//!   the synced group; one starting below the compaction revision is cancelled with a
//!   [`WatchResponse::compact_revision`].
//! - Writers never wait for consumers: every send is non-blocking; a watcher whose channel is
//!   full becomes a *victim*, holding its pending events until the loop can deliver them, and
//!   is then caught up from the backend. No event is lost, duplicated or reordered, and the
//!   events of one revision always travel in one response.
//! - [`WatchStream`]: a consumer's set of watches sharing one bounded channel of
//!   [`WatchResponse`]s, with cancellation and progress notifications.

mod channel;
mod error;
mod event;
mod group;
mod hub;
mod stream;
mod watchable;
mod watcher;

use std::time::Duration;

pub use error::WatchError;
pub use event::{Event, EventKind, WatchResponse};
pub use hub::PROGRESS_ALL_ID;
pub use stream::WatchStream;
pub use watchable::{WatchableStore, WatcherCounts};
pub use watcher::WatchFilters;

/// A watch's ID, unique within its stream (etcd's `WatchID`).
pub type WatchId = i64;

/// How watching behaves; [`WatchConfig::default`] is etcd's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchConfig {
    /// Capacity of each stream's response channel (etcd's `chanBufLen`: 128).
    pub chan_buf_len: usize,
    /// Unsynced watchers caught up per sync round (etcd's `maxWatchersPerSync`: 512).
    pub max_watchers_per_sync: usize,
    /// Distinct revisions sent to one catching-up watcher at a time (etcd's
    /// `watchBatchMaxRevs`: 1 000).
    pub max_revs_per_batch: usize,
    /// Revisions read from the backend per sync round, bounding its memory (etcd reads up to
    /// the current revision at once; 10 000 here).
    pub max_revs_per_sync_read: usize,
    /// The pause between sync rounds when no round is making progress (etcd: 100 ms).
    pub sync_interval: Duration,
    /// The pause between retries of victims (etcd: 10 ms).
    pub victim_retry_interval: Duration,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            chan_buf_len: 128,
            max_watchers_per_sync: 512,
            max_revs_per_batch: 1000,
            max_revs_per_sync_read: 10_000,
            sync_interval: Duration::from_millis(100),
            victim_retry_interval: Duration::from_millis(10),
        }
    }
}
