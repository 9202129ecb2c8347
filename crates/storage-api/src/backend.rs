//! The backend: one writer, many readers, and a committer that batches writes into the engine.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded};
use parking_lot::{Mutex, RwLock};

use crate::read_buffer::ReadBuffer;
use crate::{BatchTx, Bucket, Engine, EngineView, ReadTxn, Result, StorageError};

/// How the backend batches writes into engine commits (etcd's `BackendConfig`).
#[derive(Clone, Debug)]
pub struct BackendConfig {
    /// The longest time ended writes wait before the committer applies them (etcd: 100 ms).
    pub batch_interval: Duration,
    /// Pending writes that trigger a commit at once when a write transaction ends
    /// (etcd: 10 000).
    pub batch_limit: usize,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            batch_interval: Duration::from_millis(100),
            batch_limit: 10_000,
        }
    }
}

/// What readers snapshot: the engine's last commit and everything ended since.
pub(crate) struct ReadState {
    pub(crate) view: Arc<dyn EngineView>,
    pub(crate) buffer: ReadBuffer,
}

/// The writer's side, behind the writer lock.
pub(crate) struct WriterState {
    /// Writes ended since the last commit (they are all in the read buffer).
    pub(crate) pending: usize,
}

pub(crate) struct Shared {
    pub(crate) engine: Box<dyn Engine>,
    pub(crate) config: BackendConfig,
    pub(crate) writer: Mutex<WriterState>,
    pub(crate) read: RwLock<ReadState>,
    pub(crate) buckets: RwLock<Arc<BTreeSet<Bucket>>>,
    failure: Mutex<Option<String>>,
    closed: AtomicBool,
    commits: AtomicU64,
    commit_observer: std::sync::OnceLock<CommitObserver>,
}

/// Told how long each engine commit took (for a latency histogram such as etcd's
/// `etcd_disk_backend_commit_duration_seconds`).
pub type CommitObserver = Arc<dyn Fn(Duration) + Send + Sync>;

impl Shared {
    /// Fails when the backend was closed or an earlier commit failed.
    pub(crate) fn check_usable(&self) -> Result<()> {
        if let Some(reason) = self.failure.lock().as_ref() {
            return Err(StorageError::Failed(reason.clone()));
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(StorageError::Closed);
        }
        Ok(())
    }

    /// Applies every ended write to the engine and starts readers on the new commit.
    /// The caller holds the writer lock, so no write can end meanwhile.
    pub(crate) fn commit_locked(&self, writer: &mut WriterState) -> Result<()> {
        if writer.pending == 0 {
            return Ok(());
        }
        if let Some(reason) = self.failure.lock().as_ref() {
            return Err(StorageError::Failed(reason.clone()));
        }
        let batch = self.read.read().buffer.to_write_batch();
        let started = std::time::Instant::now();
        let mut grown = 0;
        loop {
            match self.engine.apply(&batch) {
                Ok(()) => break,
                Err(StorageError::Full { .. }) if grown < 8 => {
                    grown += 1;
                    self.grow_locked()?;
                }
                Err(e) => {
                    tracing::error!(engine = self.engine.name(), error = %e, "commit failed");
                    *self.failure.lock() = Some(e.to_string());
                    return Err(e);
                }
            }
        }
        if let Some(observe) = self.commit_observer.get() {
            observe(started.elapsed());
        }
        let view: Arc<dyn EngineView> = Arc::from(self.engine.view()?);
        {
            let mut read = self.read.write();
            read.view = view;
            read.buffer = ReadBuffer::default();
        }
        writer.pending = 0;
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Runs an engine operation that needs the backend's own view released (growth, defrag):
    /// readers wait on the read lock meanwhile, then get a view of the result. Failing to reopen
    /// a view leaves the backend unusable, so it is recorded as the backend's failure.
    pub(crate) fn with_view_released(
        &self,
        operation: impl FnOnce(&dyn Engine) -> Result<()>,
    ) -> Result<()> {
        let mut read = self.read.write();
        read.view = Arc::new(NoView);
        let result = operation(&*self.engine);
        match self.engine.view() {
            Ok(v) => read.view = Arc::from(v),
            Err(e) => {
                *self.failure.lock() = Some(e.to_string());
                return Err(e);
            }
        }
        result
    }

    /// Lets the engine grow after it reported `Full`.
    fn grow_locked(&self) -> Result<()> {
        self.with_view_released(|engine| engine.grow())
    }
}

/// Stands in for the engine's view while the engine is rewritten; never visible to readers,
/// who wait on the read lock meanwhile.
struct NoView;

impl EngineView for NoView {
    fn visit(
        &self,
        _bucket: Bucket,
        _start: &[u8],
        _end: Option<&[u8]>,
        _visit: &mut crate::Visitor<'_>,
    ) -> Result<()> {
        Err(StorageError::Closed)
    }
}

/// etcd's backend over a storage engine: batched durable commits, immediate visibility of ended
/// write transactions, consistent concurrent readers, hash, snapshot, defrag and size.
pub struct Backend {
    shared: Arc<Shared>,
    stop: Sender<()>,
    committer: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Backend {
    /// Starts a backend over `engine` with its committer thread.
    pub fn new(engine: Box<dyn Engine>, config: BackendConfig) -> Result<Backend> {
        let mut buckets = BTreeSet::new();
        for name in engine.bucket_names()? {
            buckets.insert(Bucket::intern(&name)?);
        }
        let view: Arc<dyn EngineView> = Arc::from(engine.view()?);
        let config = BackendConfig {
            batch_limit: config.batch_limit.max(1),
            ..config
        };
        let shared = Arc::new(Shared {
            engine,
            config,
            writer: Mutex::new(WriterState { pending: 0 }),
            read: RwLock::new(ReadState {
                view,
                buffer: ReadBuffer::default(),
            }),
            buckets: RwLock::new(Arc::new(buckets)),
            failure: Mutex::new(None),
            closed: AtomicBool::new(false),
            commits: AtomicU64::new(0),
            commit_observer: std::sync::OnceLock::new(),
        });
        let (stop, stopped) = bounded(1);
        let committer = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("backend-committer".into())
                .spawn(move || run_committer(&shared, &stopped))?
        };
        Ok(Backend {
            shared,
            stop,
            committer: std::sync::Mutex::new(Some(committer)),
        })
    }

    /// The engine's name (`lmdb`, `rocks`).
    pub fn engine_name(&self) -> &'static str {
        self.shared.engine.name()
    }

    /// Begins a consistent read transaction: it sees every write transaction that ended before
    /// this call, committed to the engine or not, and nothing that ends later.
    pub fn read_tx(&self) -> Result<ReadTxn> {
        self.shared.check_usable()?;
        let buckets = Arc::clone(&self.shared.buckets.read());
        let read = self.shared.read.read();
        Ok(ReadTxn {
            buckets,
            view: Arc::clone(&read.view),
            buffer: read.buffer.clone(),
        })
    }

    /// Begins the write transaction, waiting while another one is open. Its writes become visible
    /// to readers when it ends (dropped or [`BatchTx::end`]).
    pub fn batch_tx(&self) -> Result<BatchTx<'_>> {
        self.shared.check_usable()?;
        Ok(BatchTx::begin(&self.shared))
    }

    /// Commits every ended write to the engine now.
    pub fn force_commit(&self) -> Result<()> {
        self.shared.check_usable()?;
        let mut writer = self.shared.writer.lock();
        self.shared.commit_locked(&mut writer)
    }

    /// Why the backend refuses all further work (an engine commit failed: disk full, I/O
    /// error), if it does. A failed backend never recovers in place; its owner must stop and
    /// reopen it, as etcd exits when bbolt cannot commit.
    pub fn failure(&self) -> Option<String> {
        self.shared.failure.lock().clone()
    }

    /// Sets what is told the duration of every engine commit from now on (once: a second
    /// observer is ignored).
    pub fn set_commit_observer(&self, observer: CommitObserver) {
        let _ = self.shared.commit_observer.set(observer);
    }

    /// How many engine commits this backend made.
    pub fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Relaxed)
    }

    /// CRC-32C of every bucket's name and key-values, in bucket-name then key order, skipping the
    /// pairs `ignore` selects. Engine-independent: the same content hashes the same everywhere.
    pub fn hash(&self, ignore: &dyn Fn(Bucket, &[u8]) -> bool) -> Result<u32> {
        crate::hash::hash(&self.read_tx()?, ignore)
    }

    /// A consistent copy of the whole database in the portable snapshot format, produced while
    /// writes go on (see [`crate::Snapshot`]).
    pub fn snapshot(&self) -> Result<crate::Snapshot> {
        Ok(crate::Snapshot::new(self.read_tx()?))
    }

    /// Bytes the database takes on disk.
    pub fn size(&self) -> Result<u64> {
        self.shared.engine.size()
    }

    /// Bytes of the database holding live data.
    pub fn size_in_use(&self) -> Result<u64> {
        self.shared.engine.size_in_use()
    }

    /// Commits, then rewrites the database compactly and returns free space to the file system.
    /// Writers and new readers wait meanwhile; read transactions already open are waited for.
    pub fn defrag(&self) -> Result<()> {
        self.shared.check_usable()?;
        let mut writer = self.shared.writer.lock();
        self.shared.commit_locked(&mut writer)?;
        self.shared.with_view_released(|engine| engine.defrag())
    }

    /// Commits everything pending, stops the committer and refuses further work.
    pub fn close(&self) -> Result<()> {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let _ = self.stop.try_send(());
        let handle = self
            .committer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            tracing::error!("backend committer thread panicked");
        }
        let mut writer = self.shared.writer.lock();
        self.shared.commit_locked(&mut writer)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(error = %e, "closing the backend failed");
        }
    }
}

fn run_committer(shared: &Shared, stop: &Receiver<()>) {
    loop {
        match stop.recv_timeout(shared.config.batch_interval) {
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        }
        let mut writer = shared.writer.lock();
        if let Err(e) = shared.commit_locked(&mut writer) {
            tracing::error!(error = %e, "background commit failed");
            if shared.failure.lock().is_some() {
                // A failed backend refuses all work from now on: nothing left to commit.
                return;
            }
        }
    }
}
