//! The watchable store (etcd's `watchableStore`): a [`KvStore`] whose write transactions feed
//! the watchers, and the background loop that catches unsynced watchers up and retries victims
//! (etcd's `syncWatchersLoop` and `syncVictimsLoop`, in one thread).

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use storage_api::Backend;

use super::hub::Hub;
use super::{WatchConfig, WatchStream};
use crate::error::Result;
use crate::{Change, ChangeObserver, KvStore, StoreConfig};

/// Victim retry passes per loop iteration: bounds the loop while consumers keep up with it.
const MAX_VICTIM_PASSES: usize = 16;

/// The store and the watch state, shared with the sync loop; streams hold it weakly.
pub(crate) struct Shared {
    pub(crate) store: KvStore,
    pub(crate) hub: Arc<Hub>,
}

/// The store's observer: hands every change set to the hub, then to the observer the caller
/// configured, if any.
struct Notifier {
    hub: Arc<Hub>,
    next: Option<Arc<dyn ChangeObserver>>,
}

impl ChangeObserver for Notifier {
    fn on_changes(&self, rev: i64, changes: &[Change]) {
        self.hub.notify(rev, changes);
        if let Some(next) = &self.next {
            next.on_changes(rev, changes);
        }
    }
}

/// How many watchers are in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatcherCounts {
    /// Told about changes as they commit.
    pub synced: usize,
    /// Waiting to be caught up from the backend.
    pub unsynced: usize,
    /// Waiting for room in their stream's channel.
    pub victims: usize,
}

/// A [`KvStore`] with watches (etcd's `watchableStore`). Dereferences to the store for reads and
/// writes. Dropping it stops the sync loop, disconnects every stream's channel and closes the
/// store.
pub struct WatchableStore {
    shared: Arc<Shared>,
    stop: Option<Sender<()>>,
    worker: Option<JoinHandle<()>>,
}

impl fmt::Debug for WatchableStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchableStore")
            .field("store", &self.shared.store)
            .field("watchers", &self.watcher_counts())
            .finish()
    }
}

impl WatchableStore {
    /// Opens the store on `backend` (see [`KvStore::open`]) and starts the sync loop. An
    /// observer in `config` is still told about every change, after the watchers.
    pub fn open(
        backend: Arc<Backend>,
        mut config: StoreConfig,
        watch: WatchConfig,
    ) -> Result<WatchableStore> {
        let (hub, kicked) = Hub::new(watch.clone());
        let hub = Arc::new(hub);
        config.observer = Some(Arc::new(Notifier {
            hub: Arc::clone(&hub),
            next: config.observer.take(),
        }));
        let store = KvStore::open(backend, config)?;
        hub.start_at(store.rev());
        let shared = Arc::new(Shared { store, hub });
        let (stop, stopped) = crossbeam_channel::bounded(0);
        let worker = std::thread::Builder::new()
            .name("mvcc-watch-sync".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || run(&shared, &kicked, &stopped, &watch)
            })
            .map_err(storage_api::StorageError::from)?;
        Ok(WatchableStore {
            shared,
            stop: Some(stop),
            worker: Some(worker),
        })
    }

    /// The underlying store (also reachable through `Deref`).
    pub fn store(&self) -> &KvStore {
        &self.shared.store
    }

    /// Opens a stream of watches with its own response channel (etcd's `NewWatchStream`).
    pub fn watch_stream(&self) -> WatchStream {
        WatchStream::new(&self.shared)
    }

    /// How many watchers are synced, unsynced and victims.
    pub fn watcher_counts(&self) -> WatcherCounts {
        let (synced, unsynced, victims) = self.shared.hub.counts();
        WatcherCounts {
            synced,
            unsynced,
            victims,
        }
    }
}

impl Deref for WatchableStore {
    type Target = KvStore;

    fn deref(&self) -> &KvStore {
        &self.shared.store
    }
}

impl Drop for WatchableStore {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(worker) = self.worker.take()
            && worker.join().is_err()
        {
            tracing::error!("watch sync loop panicked");
        }
        self.shared.hub.close();
        self.shared.store.close();
    }
}

/// The sync loop: retries victims, runs a sync round, then waits for the next round, a wake-up
/// or the stop.
fn run(shared: &Shared, kicked: &Receiver<()>, stopped: &Receiver<()>, config: &WatchConfig) {
    tracing::debug!("watch sync loop started");
    loop {
        for _ in 0..MAX_VICTIM_PASSES {
            if shared.hub.move_victims() == 0 {
                break;
            }
        }
        let started = Instant::now();
        let outcome = shared.hub.sync_round(&shared.store);
        let mut wait = config.sync_interval;
        if outcome.remaining > 0 && outcome.progressed {
            // More to do: go on soon, yielding as long as the round took (as etcd does).
            wait = wait.min(started.elapsed().max(Duration::from_micros(100)));
        }
        if shared.hub.has_victims() {
            wait = wait.min(config.victim_retry_interval);
        }
        crossbeam_channel::select! {
            recv(stopped) -> _ => break,
            recv(kicked) -> _ => {}
            default(wait) => {}
        }
    }
    tracing::debug!("watch sync loop stopped");
}
