//! What watchers receive: events (etcd's `mvccpb.Event`), responses (etcd's `WatchResponse`) and
//! the revision-bounded batches a watcher is sent at once (etcd's `eventBatch`).

use super::WatchId;
use crate::{Change, ChangeKind, KeyValue};

/// Whether an event set or deleted its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// The key was set.
    Put,
    /// The key was deleted.
    Delete,
}

impl From<ChangeKind> for EventKind {
    fn from(kind: ChangeKind) -> Self {
        match kind {
            ChangeKind::Put => EventKind::Put,
            ChangeKind::Delete => EventKind::Delete,
        }
    }
}

/// One change of a watched key, as a watcher sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// For a put, the key-value written; for a delete (etcd's tombstone event), the key with
    /// `mod_revision` set to the deleting revision and every other field zero.
    pub kv: KeyValue,
    /// The key-value before this change, for watches that asked for it and when it exists and
    /// is not compacted (filled by [`super::WatchStream`]'s receive methods).
    pub prev_kv: Option<KeyValue>,
}

impl Event {
    /// The revision of the change.
    pub fn revision(&self) -> i64 {
        self.kv.mod_revision
    }

    /// Whether the event created its key (a put at version 1): it has no previous value.
    pub fn is_create(&self) -> bool {
        self.kind == EventKind::Put && self.kv.version == 1
    }
}

impl From<&Change> for Event {
    fn from(change: &Change) -> Self {
        Event {
            kind: change.kind.into(),
            kv: change.kv.clone(),
            prev_kv: None,
        }
    }
}

/// What a watch stream delivers: events of one watch, a progress notification, or the
/// cancellation of a watch whose start revision was compacted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchResponse {
    /// The watch the response belongs to (`-1` for a stream-wide progress notification).
    pub watch_id: WatchId,
    /// The events, in revision order; the events of one revision are never split across
    /// responses. Empty for progress notifications and cancellations.
    pub events: Vec<Event>,
    /// The store revision the response was generated at.
    pub revision: i64,
    /// Set (with `canceled`) when the watch started below the compaction revision and was
    /// cancelled (etcd's `ErrCompacted` path): the oldest revision still available.
    pub compact_revision: i64,
    /// The watch was cancelled by the store; no more responses will follow for it.
    pub canceled: bool,
}

impl WatchResponse {
    /// Whether this is a progress notification: no events, not a cancellation. Every event
    /// of the watch up to `revision` was delivered before it.
    pub fn is_progress_notify(&self) -> bool {
        self.events.is_empty() && !self.canceled && self.compact_revision == 0
    }
}

/// Events for one watcher, cut at a revision boundary once they span `max_revs` distinct
/// revisions (etcd's `eventBatch` with `watchBatchMaxRevs`).
#[derive(Clone, Debug, Default)]
pub(crate) struct EventBatch {
    /// The events kept, in revision order.
    pub(crate) events: Vec<Event>,
    /// The distinct revisions seen (one past `max_revs` once cut).
    revs: usize,
    /// The first revision left out, 0 if nothing was.
    pub(crate) more_rev: i64,
}

impl EventBatch {
    /// Appends `ev` (revisions must not decrease) unless the batch is full.
    pub(crate) fn add(&mut self, ev: Event, max_revs: usize) {
        if self.revs > max_revs {
            return;
        }
        let Some(last) = self.events.last() else {
            self.revs = 1;
            self.events.push(ev);
            return;
        };
        if ev.revision() > last.revision() {
            self.revs += 1;
            if self.revs > max_revs {
                self.more_rev = ev.revision();
                return;
            }
        }
        self.events.push(ev);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn put(key: &str, rev: i64) -> Event {
        Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key: key.as_bytes().to_vec(),
                mod_revision: rev,
                version: 1,
                ..KeyValue::default()
            },
            prev_kv: None,
        }
    }

    #[test]
    fn batch_is_cut_at_a_revision_boundary() {
        let mut b = EventBatch::default();
        for (k, r) in [("a", 2), ("b", 2), ("a", 3), ("a", 4), ("b", 4), ("c", 5)] {
            b.add(put(k, r), 2);
        }
        let revs: Vec<i64> = b.events.iter().map(Event::revision).collect();
        assert_eq!(revs, vec![2, 2, 3]);
        assert_eq!(b.more_rev, 4);
    }

    #[test]
    fn batch_under_the_limit_keeps_everything() {
        let mut b = EventBatch::default();
        for r in 2..6 {
            b.add(put("a", r), 1000);
        }
        assert_eq!(b.events.len(), 4);
        assert_eq!(b.more_rev, 0);
    }

    #[test]
    fn progress_and_cancel_responses_are_told_apart() {
        let progress = WatchResponse {
            revision: 5,
            ..WatchResponse::default()
        };
        assert!(progress.is_progress_notify());
        let cancel = WatchResponse {
            compact_revision: 3,
            canceled: true,
            ..WatchResponse::default()
        };
        assert!(!cancel.is_progress_notify());
        assert!(put("a", 2).is_create());
    }
}
