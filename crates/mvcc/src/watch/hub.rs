//! The watch state shared by the store's observer, the sync loop and the streams (the heart of
//! etcd's `watchableStore`): the synced group, the unsynced watchers, the victims, and the
//! revision the watchers were last told about. Everything here runs under one short lock that
//! never waits on a consumer: sends are `try_send`, and a full channel turns its watcher into a
//! victim that the sync loop retries.
//!
//! `notified` plays etcd's `currentRev` under `watchableStore.mu`: the store moves its revision
//! just before telling the observer, so the hub keeps its own, moved in the same critical section
//! that delivers the revision's events. Every decision (synced or not, progress revision,
//! catch-up end) is taken against it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use storage_api::{Bucket, ReadTx};

use super::channel::{self, ResponseReceiver, ResponseSender};
use super::event::EventBatch;
use super::group::{Group, KeyRange, WatcherUid};
use super::watcher::{Place, Sent, WatchFilters, Watcher};
use super::{Event, EventKind, WatchConfig, WatchError, WatchId, WatchResponse};
use crate::{Change, KeyValue, KvStore, Revision, RevisionKey};

/// The watch ID of stream-wide progress notifications (etcd's `InvalidWatchID`).
pub const PROGRESS_ALL_ID: WatchId = -1;

/// A stream's channel and watchers.
struct StreamEntry {
    tx: ResponseSender,
    watchers: HashSet<WatcherUid>,
}

#[derive(Default)]
struct State {
    closed: bool,
    /// The last revision whose events were handed to synced watchers.
    notified: i64,
    next_uid: WatcherUid,
    next_stream: u64,
    streams: HashMap<u64, StreamEntry>,
    watchers: HashMap<WatcherUid, Watcher>,
    synced: Group,
    unsynced: BTreeSet<WatcherUid>,
    /// Victims and the events they could not be sent yet.
    victims: BTreeMap<WatcherUid, Vec<Event>>,
    /// Where the last sync round stopped choosing unsynced watchers (round-robin).
    cursor: WatcherUid,
}

impl State {
    /// Removes a watcher from wherever it is.
    fn detach(&mut self, uid: WatcherUid) -> Option<Watcher> {
        let w = self.watchers.remove(&uid)?;
        match w.place {
            Place::Synced => {
                self.synced.remove(uid, &w.range);
            }
            Place::Unsynced => {
                self.unsynced.remove(&uid);
            }
            Place::Victim => {
                self.victims.remove(&uid);
            }
        }
        if let Some(s) = self.streams.get_mut(&w.stream) {
            s.watchers.remove(&uid);
        }
        Some(w)
    }
}

/// What a sync round did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SyncOutcome {
    /// Unsynced watchers left.
    pub(crate) remaining: usize,
    /// Whether some watcher moved forward (more rounds are worth running soon).
    pub(crate) progressed: bool,
}

/// A watcher chosen for a sync round.
struct Chosen {
    uid: WatcherUid,
    range: Arc<KeyRange>,
    min_rev: i64,
}

/// The shared watch state.
pub(crate) struct Hub {
    state: Mutex<State>,
    config: WatchConfig,
    /// Wakes the sync loop (new unsynced watchers, new victims).
    kick: Sender<()>,
}

impl Hub {
    /// A hub with no watchers; the receiver wakes the sync loop.
    pub(crate) fn new(config: WatchConfig) -> (Hub, Receiver<()>) {
        let (kick, kicked) = crossbeam_channel::bounded(1);
        let hub = Hub {
            state: Mutex::new(State::default()),
            config,
            kick,
        };
        (hub, kicked)
    }

    fn wake(&self) {
        // A full signal already wakes the loop.
        let _ = self.kick.try_send(());
    }

    /// Sets the revision the store opened at.
    pub(crate) fn start_at(&self, rev: i64) {
        let mut st = self.state.lock();
        st.notified = st.notified.max(rev);
    }

    /// The revision every synced watcher was told about.
    pub(crate) fn rev(&self) -> i64 {
        self.state.lock().notified
    }

    /// Registers a stream and returns its ID and the receiving end of its channel.
    pub(crate) fn open_stream(&self) -> (u64, ResponseReceiver) {
        let mut st = self.state.lock();
        let (tx, rx) = channel::bounded(self.config.chan_buf_len);
        st.next_stream += 1;
        let sid = st.next_stream;
        if !st.closed {
            st.streams.insert(
                sid,
                StreamEntry {
                    tx,
                    watchers: HashSet::new(),
                },
            );
        }
        (sid, rx)
    }

    /// Removes a stream and cancels its watchers; its channel disconnects.
    pub(crate) fn close_stream(&self, sid: u64) {
        let mut st = self.state.lock();
        if let Some(stream) = st.streams.remove(&sid) {
            for uid in stream.watchers {
                st.detach(uid);
            }
        }
    }

    /// Adds a watcher of `range` from `start_rev` (`<= 0`: from the next revision) on stream
    /// `sid` (etcd's `watchableStore.watch`).
    pub(crate) fn add_watcher(
        &self,
        sid: u64,
        id: WatchId,
        range: KeyRange,
        start_rev: i64,
        filters: WatchFilters,
    ) -> Result<WatcherUid, WatchError> {
        let mut st = self.state.lock();
        if st.closed {
            return Err(WatchError::Closed);
        }
        let Some(stream) = st.streams.get(&sid) else {
            return Err(WatchError::Closed);
        };
        let tx = stream.tx.clone();
        let cur = st.notified;
        // 0 is "from now"; a negative start is a past revision, as in etcd (compacted, or
        // read from the beginning).
        let synced = start_rev == 0 || start_rev > cur;
        let min_rev = if synced {
            start_rev.max(cur + 1)
        } else {
            start_rev
        };
        st.next_uid += 1;
        let uid = st.next_uid;
        let range = Arc::new(range);
        if synced {
            st.synced.add(uid, &range);
        } else {
            st.unsynced.insert(uid);
        }
        if let Some(s) = st.streams.get_mut(&sid) {
            s.watchers.insert(uid);
        }
        st.watchers.insert(
            uid,
            Watcher {
                id,
                stream: sid,
                range,
                filters,
                min_rev,
                created_rev: cur,
                place: if synced {
                    Place::Synced
                } else {
                    Place::Unsynced
                },
                tx,
            },
        );
        drop(st);
        if !synced {
            tracing::debug!(
                watch_id = id,
                start_rev,
                current = cur,
                "unsynced watcher added"
            );
            self.wake();
        }
        Ok(uid)
    }

    /// Removes a watcher; false if it was gone already (cancelled, or compacted).
    pub(crate) fn cancel(&self, uid: WatcherUid) -> bool {
        self.state.lock().detach(uid).is_some()
    }

    /// Sends a progress notification to a synced watcher (etcd's `progress`); false if the
    /// watcher is not synced or its channel is full (it is receiving events then).
    pub(crate) fn progress(&self, uid: WatcherUid) -> bool {
        let st = self.state.lock();
        match st.watchers.get(&uid) {
            Some(w) if w.place == Place::Synced => {
                matches!(w.send(Vec::new(), st.notified), Sent::Done)
            }
            _ => false,
        }
    }

    /// Sends one stream-wide progress notification ([`PROGRESS_ALL_ID`]) if every watcher of the
    /// stream is synced (etcd's `progressAll`); false otherwise or if the channel is full.
    pub(crate) fn progress_all(&self, sid: u64) -> bool {
        let st = self.state.lock();
        let Some(stream) = st.streams.get(&sid) else {
            return false;
        };
        let all_synced = stream.watchers.iter().all(|uid| {
            st.watchers
                .get(uid)
                .is_some_and(|w| w.place == Place::Synced)
        });
        all_synced
            && stream
                .tx
                .try_send(WatchResponse {
                    watch_id: PROGRESS_ALL_ID,
                    revision: st.notified,
                    ..WatchResponse::default()
                })
                .is_ok()
    }

    /// Whether the watcher is synced (for tests and diagnostics).
    pub(crate) fn is_synced(&self, uid: WatcherUid) -> bool {
        self.state
            .lock()
            .watchers
            .get(&uid)
            .is_some_and(|w| w.place == Place::Synced)
    }

    /// Tells the synced watchers about the changes of revision `rev` (etcd's `notify`); those
    /// whose channel is full become victims.
    pub(crate) fn notify(&self, rev: i64, changes: &[Change]) {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        st.notified = st.notified.max(rev);
        if st.synced.is_empty() {
            return;
        }
        let mut batches: HashMap<WatcherUid, Vec<Event>> = HashMap::new();
        for change in changes {
            let ev = Event::from(change);
            let watchers = &st.watchers;
            st.synced.for_each_watching(&ev.kv.key, |uid| {
                if watchers
                    .get(&uid)
                    .is_some_and(|w| ev.revision() >= w.min_rev)
                {
                    batches.entry(uid).or_default().push(ev.clone());
                }
            });
        }
        let mut new_victims = 0usize;
        for (uid, events) in batches {
            let Some(w) = st.watchers.get_mut(&uid) else {
                continue;
            };
            if let Sent::Full(events) = w.send(events, rev) {
                w.min_rev = rev + 1;
                w.place = Place::Victim;
                st.synced.remove(uid, &w.range);
                st.victims.insert(uid, events);
                new_victims += 1;
            }
        }
        drop(guard);
        if new_victims > 0 {
            tracing::debug!(revision = rev, new_victims, "slow watchers became victims");
            self.wake();
        }
    }

    /// Whether victims wait for a retry.
    pub(crate) fn has_victims(&self) -> bool {
        !self.state.lock().victims.is_empty()
    }

    /// Retries sending the victims' pending events (etcd's `moveVictims`); those delivered
    /// go back to the synced group, or to the unsynced watchers if they missed revisions
    /// meanwhile. Returns how many were delivered.
    pub(crate) fn move_victims(&self) -> usize {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let cur = st.notified;
        let victims = std::mem::take(&mut st.victims);
        let mut moved = 0;
        for (uid, events) in victims {
            let Some(w) = st.watchers.get_mut(&uid) else {
                continue;
            };
            if let Sent::Full(events) = w.send(events, w.min_rev - 1) {
                st.victims.insert(uid, events);
                continue;
            }
            moved += 1;
            if w.min_rev <= cur {
                w.place = Place::Unsynced;
                st.unsynced.insert(uid);
            } else {
                w.place = Place::Synced;
                st.synced.add(uid, &w.range);
            }
        }
        moved
    }

    /// One catch-up round (etcd's `syncWatchers`): chooses up to `max_watchers_per_sync`
    /// unsynced watchers, cancels those whose next revision was compacted, reads the revisions
    /// they miss from the backend (at most `max_revs_per_sync_read` of them, outside the lock),
    /// sends each its events (at most `max_revs_per_batch` revisions) and moves those that
    /// caught up to the synced group.
    pub(crate) fn sync_round(&self, store: &KvStore) -> SyncOutcome {
        let mut outcome = SyncOutcome::default();
        let Some((chosen, cur, compact)) = self.choose(store, &mut outcome) else {
            outcome.remaining = self.state.lock().unsynced.len();
            return outcome;
        };
        let min_rev = chosen.iter().map(|c| c.min_rev).min().unwrap_or(cur + 1);
        let span = i64::try_from(self.config.max_revs_per_sync_read.max(1)).unwrap_or(i64::MAX);
        let up_to = cur.min(min_rev.saturating_add(span - 1));
        let batches = match self.read_events(store, &chosen, min_rev, up_to, compact) {
            Ok(Some(b)) => b,
            Ok(None) => {
                tracing::debug!("compaction during a watch sync round; retrying");
                outcome.remaining = self.state.lock().unsynced.len();
                return outcome;
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading history for unsynced watchers failed");
                outcome.remaining = self.state.lock().unsynced.len();
                return outcome;
            }
        };
        self.deliver(chosen, batches, cur, up_to, &mut outcome);
        outcome
    }

    /// Phase 1, locked: picks watchers, cancels the compacted ones.
    fn choose(
        &self,
        store: &KvStore,
        outcome: &mut SyncOutcome,
    ) -> Option<(Vec<Chosen>, i64, i64)> {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        if st.unsynced.is_empty() {
            return None;
        }
        let cur = st.notified;
        let compact = store.compact_rev();
        let max = self.config.max_watchers_per_sync.max(1);
        let picked: Vec<WatcherUid> = st
            .unsynced
            .range(st.cursor + 1..)
            .chain(st.unsynced.range(..=st.cursor))
            .take(max)
            .copied()
            .collect();
        if let Some(&last) = picked.last() {
            st.cursor = last;
        }
        let mut chosen = Vec::with_capacity(picked.len());
        for uid in picked {
            let Some(w) = st.watchers.get(&uid) else {
                continue;
            };
            if w.min_rev < compact {
                if w.send_compacted(compact) {
                    tracing::debug!(
                        watch_id = w.id,
                        min_rev = w.min_rev,
                        compact,
                        "watcher start revision compacted; cancelled"
                    );
                    st.detach(uid);
                    outcome.progressed = true;
                }
                continue;
            }
            let min_rev = if w.min_rev <= 0 {
                // A negative start that was not compacted away gets no history in etcd (its
                // read range is empty), only what follows its creation.
                w.created_rev + 1
            } else {
                w.min_rev
            };
            if min_rev > cur {
                // Nothing to catch up on.
                let range = Arc::clone(&w.range);
                if let Some(w) = st.watchers.get_mut(&uid) {
                    w.place = Place::Synced;
                    w.min_rev = min_rev;
                }
                st.unsynced.remove(&uid);
                st.synced.add(uid, &range);
                continue;
            }
            let range = Arc::clone(&w.range);
            if let Some(w) = st.watchers.get_mut(&uid) {
                w.min_rev = min_rev;
            }
            chosen.push(Chosen {
                uid,
                range,
                min_rev,
            });
        }
        if chosen.is_empty() {
            None
        } else {
            Some((chosen, cur, compact))
        }
    }

    /// Phase 2, unlocked: the chosen watchers' events of `[min_rev, up_to]`; `None` if a
    /// compaction started meanwhile (the snapshot may then miss revisions).
    fn read_events(
        &self,
        store: &KvStore,
        chosen: &[Chosen],
        min_rev: i64,
        up_to: i64,
        compact: i64,
    ) -> crate::Result<Option<HashMap<WatcherUid, EventBatch>>> {
        let mut group = Group::default();
        let mut min_revs = HashMap::with_capacity(chosen.len());
        for c in chosen {
            group.add(c.uid, &c.range);
            min_revs.insert(c.uid, c.min_rev);
        }
        let tx = store.backend().read_tx()?;
        let start = Revision::new(min_rev, 0).to_bytes();
        let end = Revision::new(up_to.saturating_add(1), 0).to_bytes();
        let records = tx.range(Bucket::KEY, &start, Some(&end), 0)?;
        if store.compact_rev() != compact {
            return Ok(None);
        }
        let max_revs = self.config.max_revs_per_batch.max(1);
        let mut batches: HashMap<WatcherUid, EventBatch> = HashMap::new();
        for (key, value) in records {
            let rk = RevisionKey::from_bytes(&key)?;
            let mut kv = KeyValue::decode(&value)?;
            if !group.watches(&kv.key) {
                continue;
            }
            let kind = if rk.tombstone {
                // Deletion records carry only the key: patch the revision in (etcd does too).
                kv.mod_revision = rk.revision.main;
                EventKind::Delete
            } else {
                EventKind::Put
            };
            let ev = Event {
                kind,
                kv,
                prev_kv: None,
            };
            group.for_each_watching(&ev.kv.key, |uid| {
                if min_revs.get(&uid).is_some_and(|&m| ev.revision() >= m) {
                    batches.entry(uid).or_default().add(ev.clone(), max_revs);
                }
            });
        }
        Ok(Some(batches))
    }

    /// Phase 3, locked: sends the batches and moves watchers on.
    fn deliver(
        &self,
        chosen: Vec<Chosen>,
        mut batches: HashMap<WatcherUid, EventBatch>,
        cur: i64,
        up_to: i64,
        outcome: &mut SyncOutcome,
    ) {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let now = st.notified;
        for c in chosen {
            let Some(w) = st.watchers.get_mut(&c.uid) else {
                continue; // cancelled meanwhile
            };
            if w.place != Place::Unsynced {
                continue;
            }
            let before = w.min_rev;
            w.min_rev = w.min_rev.max(up_to + 1);
            if let Some(batch) = batches.remove(&c.uid) {
                if batch.more_rev != 0 {
                    w.min_rev = batch.more_rev;
                }
                if let Sent::Full(events) = w.send(batch.events, cur) {
                    w.place = Place::Victim;
                    st.unsynced.remove(&c.uid);
                    st.victims.insert(c.uid, events);
                    outcome.progressed = true;
                    continue;
                }
            }
            outcome.progressed |= w.min_rev > before;
            if w.min_rev > now {
                w.place = Place::Synced;
                st.unsynced.remove(&c.uid);
                st.synced.add(c.uid, &w.range);
            }
        }
        outcome.remaining = st.unsynced.len();
        let victims = st.victims.len();
        drop(guard);
        if victims > 0 {
            self.wake();
        }
    }

    /// Closes the hub: drops every watcher and stream, disconnecting the streams' channels.
    pub(crate) fn close(&self) {
        let mut st = self.state.lock();
        st.closed = true;
        st.streams.clear();
        st.watchers.clear();
        st.synced = Group::default();
        st.unsynced.clear();
        st.victims.clear();
    }

    /// How many watchers are synced, unsynced and victims (diagnostics, tests).
    pub(crate) fn counts(&self) -> (usize, usize, usize) {
        let st = self.state.lock();
        (st.synced.len(), st.unsynced.len(), st.victims.len())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::{ChangeObserver, PutRequest, StoreConfig};

    struct Forward(Arc<Hub>);

    impl ChangeObserver for Forward {
        fn on_changes(&self, rev: i64, changes: &[Change]) {
            self.0.notify(rev, changes);
        }
    }

    fn setup(config: WatchConfig) -> (tempfile::TempDir, Arc<Hub>, KvStore) {
        let dir = tempfile::tempdir().unwrap();
        let engine =
            storage_lmdb::LmdbEngine::open(dir.path(), storage_lmdb::LmdbConfig::default())
                .unwrap();
        let backend = Arc::new(
            storage_api::Backend::new(Box::new(engine), storage_api::BackendConfig::default())
                .unwrap(),
        );
        let hub = Arc::new(Hub::new(config).0);
        let store = KvStore::open(
            backend,
            StoreConfig {
                observer: Some(Arc::new(Forward(Arc::clone(&hub)))),
                ..StoreConfig::default()
            },
        )
        .unwrap();
        hub.start_at(store.rev());
        (dir, hub, store)
    }

    fn put(store: &KvStore, k: &str) -> i64 {
        store.put(&PutRequest::new(k, "v")).unwrap().revision
    }

    fn revs(rx: &ResponseReceiver) -> Vec<i64> {
        rx.try_iter()
            .flat_map(|r| r.events)
            .map(|e| e.kv.mod_revision)
            .collect()
    }

    fn key(k: &str) -> KeyRange {
        KeyRange::new(k.as_bytes(), None).unwrap()
    }

    #[test]
    fn victims_wait_for_room_then_catch_up() {
        let config = WatchConfig {
            chan_buf_len: 1,
            ..WatchConfig::default()
        };
        let (_dir, hub, store) = setup(config);
        let (sid, rx) = hub.open_stream();
        let uid = hub
            .add_watcher(sid, 0, key("k"), 0, WatchFilters::default())
            .unwrap();
        let r1 = put(&store, "k");
        let r2 = put(&store, "k");
        assert_eq!(hub.counts(), (0, 0, 1));
        assert!(!hub.progress(uid));
        let r3 = put(&store, "k"); // missed while a victim
        assert_eq!(hub.move_victims(), 0, "the channel is still full");
        assert_eq!(revs(&rx), vec![r1]);
        assert_eq!(hub.move_victims(), 1);
        assert_eq!(hub.counts(), (0, 1, 0), "it missed r3: unsynced");
        assert_eq!(revs(&rx), vec![r2]);
        let outcome = hub.sync_round(&store);
        assert_eq!(outcome.remaining, 0);
        assert!(outcome.progressed);
        assert_eq!(revs(&rx), vec![r3]);
        assert!(hub.is_synced(uid));
        let r4 = put(&store, "k");
        assert_eq!(revs(&rx), vec![r4]);
    }

    #[test]
    fn sync_rounds_are_bounded_and_resume() {
        let config = WatchConfig {
            max_revs_per_sync_read: 3,
            max_revs_per_batch: 2,
            ..WatchConfig::default()
        };
        let (_dir, hub, store) = setup(config);
        let all: Vec<i64> = (0..10)
            .map(|i| put(&store, &format!("k{}", i % 2)))
            .collect();
        let (sid, rx) = hub.open_stream();
        let range = KeyRange::new(b"k", Some(&[0])).unwrap();
        let uid = hub
            .add_watcher(sid, 0, range, all[0], WatchFilters::default())
            .unwrap();
        let other = hub
            .add_watcher(sid, 1, key("k1"), all[8], WatchFilters::default())
            .unwrap();
        let mut got = Vec::new();
        let mut rounds = 0;
        while !(hub.is_synced(uid) && hub.is_synced(other)) {
            let outcome = hub.sync_round(&store);
            assert!(outcome.progressed);
            for resp in rx.try_iter() {
                assert!(resp.events.len() <= 2, "at most 2 revisions per batch");
                got.extend(
                    resp.events
                        .iter()
                        .map(|e| (resp.watch_id, e.kv.mod_revision)),
                );
            }
            rounds += 1;
            assert!(rounds < 20);
        }
        assert!(
            rounds >= 4,
            "3 revisions per read: several rounds ({rounds})"
        );
        let mine: Vec<i64> = got.iter().filter(|g| g.0 == 0).map(|g| g.1).collect();
        assert_eq!(mine, all);
        let others: Vec<i64> = got.iter().filter(|g| g.0 == 1).map(|g| g.1).collect();
        assert_eq!(others, vec![all[9]]);
    }

    #[test]
    fn compacted_watchers_are_cancelled_once_there_is_room() {
        let config = WatchConfig {
            chan_buf_len: 1,
            ..WatchConfig::default()
        };
        let (_dir, hub, store) = setup(config);
        let all: Vec<i64> = (0..4).map(|i| put(&store, &format!("k{i}"))).collect();
        store.compact(all[2]).unwrap().wait().unwrap();
        let (sid, rx) = hub.open_stream();
        // Fill the channel first.
        let synced = hub
            .add_watcher(sid, 0, key("x"), 0, WatchFilters::default())
            .unwrap();
        assert!(hub.progress(synced));
        let uid = hub
            .add_watcher(sid, 1, key("k0"), all[0], WatchFilters::default())
            .unwrap();
        hub.sync_round(&store);
        assert_eq!(hub.counts(), (1, 1, 0), "retried when there is room");
        assert!(rx.try_recv().unwrap().is_progress_notify());
        let outcome = hub.sync_round(&store);
        assert_eq!(outcome.remaining, 0);
        let resp = rx.try_recv().unwrap();
        assert!(resp.canceled);
        assert_eq!((resp.watch_id, resp.compact_revision), (1, all[2]));
        assert!(!hub.cancel(uid), "already removed");
        assert!(hub.cancel(synced));
    }
}
