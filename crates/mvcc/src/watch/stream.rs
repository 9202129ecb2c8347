//! Watch streams (etcd's `watchStream`): one consumer's watches, sharing a bounded channel of
//! responses; the stream assigns watch IDs and fills in previous key-values on receipt (as etcd's
//! gRPC layer does, reading each at the event's revision - 1).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, TryRecvError};
use parking_lot::Mutex;

use super::channel::ResponseReceiver;
use super::group::{KeyRange, WatcherUid};
use super::hub::Hub;
use super::watchable::Shared;
use super::{WatchError, WatchFilters, WatchId, WatchResponse};
use crate::RangeOptions;

#[derive(Clone, Copy)]
struct Watch {
    uid: WatcherUid,
    prev_kv: bool,
}

#[derive(Default)]
struct Watches {
    next_id: WatchId,
    by_id: HashMap<WatchId, Watch>,
}

/// A set of watches whose responses arrive, in order per watch, on one bounded channel (etcd's
/// `WatchStream`). Dropping the stream cancels its watches. The channel disconnects when the
/// store is dropped.
pub struct WatchStream {
    sid: u64,
    hub: Arc<Hub>,
    shared: Weak<Shared>,
    rx: ResponseReceiver,
    watches: Mutex<Watches>,
}

impl fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchStream")
            .field("id", &self.sid)
            .field("watches", &self.watches.lock().by_id.len())
            .field("pending", &self.rx.len())
            .finish()
    }
}

impl WatchStream {
    pub(crate) fn new(shared: &Arc<Shared>) -> WatchStream {
        let (sid, rx) = shared.hub.open_stream();
        WatchStream {
            sid,
            hub: Arc::clone(&shared.hub),
            shared: Arc::downgrade(shared),
            rx,
            watches: Mutex::new(Watches::default()),
        }
    }

    /// Watches `key`, or `[key, end)` (see [`crate::request`] for `end`: `Some([0])` is every
    /// key from `key` on), from `start_rev` (0: only changes after now; at or below the
    /// current revision, negative included as etcd has it: history is replayed first, or the
    /// watch is cancelled if that history was compacted). `id` `None` picks the lowest free ID.
    /// `prev_kv` asks for each event's previous key-value, filled by the receive methods.
    pub fn watch(
        &self,
        id: Option<WatchId>,
        key: &[u8],
        end: Option<&[u8]>,
        start_rev: i64,
        filters: WatchFilters,
        prev_kv: bool,
    ) -> Result<WatchId, WatchError> {
        let range = KeyRange::new(key, end).ok_or(WatchError::EmptyRange)?;
        let mut watches = self.watches.lock();
        let id = match id {
            Some(id) if id < 0 => return Err(WatchError::InvalidId(id)),
            Some(id) if watches.by_id.contains_key(&id) => return Err(WatchError::DuplicateId(id)),
            Some(id) => id,
            None => {
                while watches.by_id.contains_key(&watches.next_id) {
                    watches.next_id += 1;
                }
                let id = watches.next_id;
                watches.next_id += 1;
                id
            }
        };
        let uid = self
            .hub
            .add_watcher(self.sid, id, range, start_rev, filters)?;
        watches.by_id.insert(id, Watch { uid, prev_kv });
        Ok(id)
    }

    /// Cancels a watch: no response for it is sent after this returns (some may still be
    /// queued). Succeeds for a watch the store already cancelled (compaction).
    pub fn cancel(&self, id: WatchId) -> Result<(), WatchError> {
        let watch = self
            .watches
            .lock()
            .by_id
            .remove(&id)
            .ok_or(WatchError::NotExist(id))?;
        self.hub.cancel(watch.uid);
        Ok(())
    }

    /// Asks for a progress notification of watch `id`: a response without events at the
    /// current revision, sent only if the watch is synced (etcd's `RequestProgress`); a watch
    /// that is catching up will report progress with its events. Returns whether one was sent.
    pub fn request_progress(&self, id: WatchId) -> bool {
        let watch = self.watches.lock().by_id.get(&id).copied();
        watch.is_some_and(|w| self.hub.progress(w.uid))
    }

    /// Asks for one stream-wide progress notification (watch ID [`super::PROGRESS_ALL_ID`]),
    /// sent only if every watch of the stream is synced (etcd's `RequestProgressAll`). Returns
    /// whether one was sent.
    pub fn request_progress_all(&self) -> bool {
        self.hub.progress_all(self.sid)
    }

    /// Whether watch `id` is synced: caught up and told about new revisions as they commit.
    pub fn is_synced(&self, id: WatchId) -> bool {
        let watch = self.watches.lock().by_id.get(&id).copied();
        watch.is_some_and(|w| self.hub.is_synced(w.uid))
    }

    /// The revision the watchers were last told about (etcd's `Rev`).
    pub fn rev(&self) -> i64 {
        self.hub.rev()
    }

    /// Waits for the next response, blocking the thread; `None` once the store is gone.
    pub fn recv(&self) -> Option<WatchResponse> {
        let mut resp = self.rx.recv()?;
        self.fill_prev_kv(&mut resp);
        Some(resp)
    }

    /// Waits for the next response without blocking the thread (for async servers, which
    /// then need no thread per stream); `None` once the store is gone. Cancel safe: no
    /// response is lost when the future is dropped before it completes.
    pub async fn recv_async(&self) -> Option<WatchResponse> {
        let mut resp = self.rx.recv_async().await?;
        self.fill_prev_kv(&mut resp);
        Some(resp)
    }

    /// Waits at most `timeout` for the next response.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<WatchResponse, RecvTimeoutError> {
        let mut resp = self.rx.recv_timeout(timeout)?;
        self.fill_prev_kv(&mut resp);
        Ok(resp)
    }

    /// The next response, if one is queued.
    pub fn try_recv(&self) -> Result<WatchResponse, TryRecvError> {
        let mut resp = self.rx.try_recv()?;
        self.fill_prev_kv(&mut resp);
        Ok(resp)
    }

    /// Fills each event's `prev_kv` if its watch asked for it: the key's value at the event's
    /// revision - 1, left empty for creations and when that revision was compacted.
    pub fn fill_prev_kv(&self, resp: &mut WatchResponse) {
        let wanted = self
            .watches
            .lock()
            .by_id
            .get(&resp.watch_id)
            .is_some_and(|w| w.prev_kv);
        if !wanted || resp.events.is_empty() {
            return;
        }
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let txn = match shared.store.read() {
            Ok(txn) => txn,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read previous key-values");
                return;
            }
        };
        for ev in &mut resp.events {
            if ev.is_create() || ev.prev_kv.is_some() {
                continue;
            }
            let opts = RangeOptions {
                rev: ev.kv.mod_revision - 1,
                ..RangeOptions::default()
            };
            match txn.range(&ev.kv.key, None, &opts) {
                Ok(r) => ev.prev_kv = r.kvs.into_iter().next(),
                Err(e) => tracing::debug!(error = %e, "previous key-value unavailable"),
            }
        }
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        self.hub.close_stream(self.sid);
    }
}
