//! One watcher (etcd's `watcher`): what it watches, where it is in history, its filters, and
//! the non-blocking send to its stream's channel.

use std::sync::Arc;

use crossbeam_channel::TrySendError;

use super::channel::ResponseSender;
use super::group::KeyRange;
use super::{Event, EventKind, WatchId, WatchResponse};

/// Which events a watch does not want (etcd's `WatchCreateRequest.filters`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct WatchFilters {
    /// Drop put events (etcd's `NOPUT`).
    pub no_put: bool,
    /// Drop delete events (etcd's `NODELETE`).
    pub no_delete: bool,
}

impl WatchFilters {
    /// Whether `ev` passes the filters.
    pub fn accepts(&self, ev: &Event) -> bool {
        match ev.kind {
            EventKind::Put => !self.no_put,
            EventKind::Delete => !self.no_delete,
        }
    }

    fn any(&self) -> bool {
        self.no_put || self.no_delete
    }
}

/// Where a watcher is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// In the synced group: told about new changes as they happen.
    Synced,
    /// Waiting to be caught up from the backend by the sync loop.
    Unsynced,
    /// Its channel was full: holds a pending batch the sync loop retries.
    Victim,
}

/// What happened to a send.
pub(crate) enum Sent {
    /// Delivered, or nothing to deliver after filtering.
    Done,
    /// The channel is full: the (filtered) events to retry later.
    Full(Vec<Event>),
    /// The stream is gone: nobody will read.
    Gone,
}

/// A watcher's state, owned by the hub and changed under its lock.
#[derive(Debug)]
pub(crate) struct Watcher {
    /// The stream-local watch ID.
    pub(crate) id: WatchId,
    /// The stream the watcher belongs to.
    pub(crate) stream: u64,
    /// What it watches.
    pub(crate) range: Arc<KeyRange>,
    /// Which events it drops.
    pub(crate) filters: WatchFilters,
    /// The lowest revision it still has to be told about: it has seen everything before.
    pub(crate) min_rev: i64,
    /// The revision the store was at when the watcher was created: where a watcher with a
    /// negative start revision (no history, as in etcd) picks up.
    pub(crate) created_rev: i64,
    /// Which state it is in.
    pub(crate) place: Place,
    /// Its stream's channel (shared with the stream's other watchers).
    pub(crate) tx: ResponseSender,
}

impl Watcher {
    /// Sends `events` (after filtering) at `revision` without blocking. A batch that filtering
    /// empties is not sent; an empty batch is a progress notification and is sent as is.
    pub(crate) fn send(&self, mut events: Vec<Event>, revision: i64) -> Sent {
        if !events.is_empty() && self.filters.any() {
            events.retain(|ev| self.filters.accepts(ev));
            if events.is_empty() {
                return Sent::Done;
            }
        }
        let resp = WatchResponse {
            watch_id: self.id,
            events,
            revision,
            ..WatchResponse::default()
        };
        match self.tx.try_send(resp) {
            Ok(()) => Sent::Done,
            Err(TrySendError::Full(resp)) => Sent::Full(resp.events),
            Err(TrySendError::Disconnected(_)) => Sent::Gone,
        }
    }

    /// Sends the cancellation of a watch whose next revision was compacted; false if the
    /// channel is full. Like etcd's, it carries no revision (0): only the compaction's.
    pub(crate) fn send_compacted(&self, compact_rev: i64) -> bool {
        let resp = WatchResponse {
            watch_id: self.id,
            revision: 0,
            compact_revision: compact_rev,
            canceled: true,
            ..WatchResponse::default()
        };
        !matches!(self.tx.try_send(resp), Err(TrySendError::Full(_)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::KeyValue;

    fn ev(kind: EventKind) -> Event {
        Event {
            kind,
            kv: KeyValue {
                key: b"k".to_vec(),
                mod_revision: 2,
                ..KeyValue::default()
            },
            prev_kv: None,
        }
    }

    fn watcher(
        filters: WatchFilters,
        cap: usize,
    ) -> (Watcher, super::super::channel::ResponseReceiver) {
        let (tx, rx) = super::super::channel::bounded(cap);
        let w = Watcher {
            id: 7,
            stream: 1,
            range: Arc::new(KeyRange::new(b"k", None).unwrap()),
            filters,
            min_rev: 2,
            created_rev: 1,
            place: Place::Synced,
            tx,
        };
        (w, rx)
    }

    #[test]
    fn filtered_out_batches_are_not_sent_but_progress_is() {
        let (w, rx) = watcher(
            WatchFilters {
                no_put: true,
                no_delete: false,
            },
            4,
        );
        assert!(matches!(w.send(vec![ev(EventKind::Put)], 2), Sent::Done));
        assert!(rx.try_recv().is_err());
        assert!(matches!(w.send(Vec::new(), 2), Sent::Done));
        assert!(rx.try_recv().unwrap().is_progress_notify());
        assert!(matches!(
            w.send(vec![ev(EventKind::Put), ev(EventKind::Delete)], 2),
            Sent::Done
        ));
        let resp = rx.try_recv().unwrap();
        assert_eq!(resp.events.len(), 1);
        assert_eq!(resp.events[0].kind, EventKind::Delete);
        assert_eq!(resp.watch_id, 7);
    }

    #[test]
    fn a_full_channel_hands_the_events_back() {
        let (w, rx) = watcher(WatchFilters::default(), 1);
        assert!(matches!(w.send(vec![ev(EventKind::Put)], 2), Sent::Done));
        match w.send(vec![ev(EventKind::Delete)], 2) {
            Sent::Full(evs) => assert_eq!(evs.len(), 1),
            _ => panic!("expected a full channel"),
        }
        assert!(!w.send_compacted(1));
        drop(rx);
        assert!(matches!(w.send(vec![ev(EventKind::Put)], 2), Sent::Gone));
    }
}
