//! Compaction (etcd's `Compact` / `scheduleCompaction`): the index is compacted synchronously;
//! the revisions it no longer needs are deleted from the `key` bucket by a background worker, in
//! batches of [`StoreConfig::compaction_batch_limit`] revisions per backend write transaction
//! with a pause between batches, so writers are never held up for long. `scheduledCompactRev` is
//! written (durably) before and `finishedCompactRev` after, so an interrupted compaction resumes
//! on the next open.

use std::collections::HashSet;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use parking_lot::Mutex;
use storage_api::{Backend, Bucket, ReadTx};

use super::meta::{FINISHED_COMPACT, SCHEDULED_COMPACT, encode_compact_rev};
use super::{KvStore, StoreConfig};
use crate::error::{MvccError, Result};
use crate::{Revision, RevisionKey};

/// Waits for a compaction (or a barrier) to finish deleting from the backend.
#[derive(Debug)]
#[must_use = "a compaction runs on in the background; wait on the handle to know it finished"]
pub struct CompactionHandle {
    done: Receiver<Result<()>>,
}

impl CompactionHandle {
    /// Blocks until the compaction finished; fails if it failed or the store closed first (it
    /// then resumes on the next open).
    pub fn wait(self) -> Result<()> {
        self.done.recv().unwrap_or(Err(MvccError::Closed))
    }

    /// Like [`CompactionHandle::wait`], giving up after `timeout` (`None`: still running).
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<()>> {
        match self.done.recv_timeout(timeout) {
            Ok(r) => Some(r),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(Err(MvccError::Closed)),
        }
    }
}

enum Job {
    Compact {
        rev: i64,
        keep: HashSet<Revision>,
        done: Sender<Result<()>>,
    },
    Barrier(Sender<Result<()>>),
}

/// The background worker and its queue (etcd's FIFO scheduler).
pub(crate) struct Compactor {
    jobs: Mutex<Option<Sender<Job>>>,
    stop: Mutex<Option<Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Compactor {
    pub(crate) fn start(backend: Arc<Backend>, config: &StoreConfig) -> Result<Compactor> {
        let (jobs, queue) = crossbeam_channel::unbounded();
        let (stop, stopped) = crossbeam_channel::bounded(0);
        let batch_limit = config.compaction_batch_limit.max(1);
        let pause = config.compaction_pause;
        let thread = std::thread::Builder::new()
            .name("mvcc-compactor".into())
            .spawn(move || run(&backend, &queue, &stopped, batch_limit, pause))
            .map_err(storage_api::StorageError::from)?;
        Ok(Compactor {
            jobs: Mutex::new(Some(jobs)),
            stop: Mutex::new(Some(stop)),
            thread: Mutex::new(Some(thread)),
        })
    }

    fn submit(&self, job: impl FnOnce(Sender<Result<()>>) -> Job) -> CompactionHandle {
        let (done, wait) = crossbeam_channel::bounded(1);
        if let Some(jobs) = self.jobs.lock().as_ref() {
            // A send fails only once the worker is gone: the handle then reports Closed.
            let _ = jobs.send(job(done));
        }
        CompactionHandle { done: wait }
    }

    fn schedule(&self, rev: i64, keep: HashSet<Revision>) -> CompactionHandle {
        self.submit(|done| Job::Compact { rev, keep, done })
    }

    pub(crate) fn barrier(&self) -> CompactionHandle {
        self.submit(Job::Barrier)
    }

    /// Stops the worker after its current batch and waits for it.
    pub(crate) fn stop(&self) {
        self.jobs.lock().take();
        self.stop.lock().take();
        if let Some(thread) = self.thread.lock().take()
            && thread.join().is_err()
        {
            tracing::error!("mvcc compaction worker panicked");
        }
    }
}

fn run(
    backend: &Backend,
    queue: &Receiver<Job>,
    stopped: &Receiver<()>,
    limit: usize,
    pause: Duration,
) {
    for job in queue.iter() {
        let stopping = matches!(stopped.try_recv(), Err(TryRecvError::Disconnected));
        match job {
            Job::Barrier(done) => {
                let _ = done.send(if stopping {
                    Err(MvccError::Closed)
                } else {
                    Ok(())
                });
            }
            Job::Compact { rev, keep, done } => {
                let result = if stopping {
                    Err(MvccError::Closed)
                } else {
                    delete_compacted(backend, rev, &keep, stopped, limit, pause)
                };
                if let Err(e) = &result {
                    tracing::warn!(revision = rev, error = %e, "compaction did not finish");
                }
                let _ = done.send(result);
            }
        }
    }
}

/// Deletes the revisions `<= rev` that are not in `keep`, then marks the compaction finished.
fn delete_compacted(
    backend: &Backend,
    rev: i64,
    keep: &HashSet<Revision>,
    stopped: &Receiver<()>,
    limit: usize,
    pause: Duration,
) -> Result<()> {
    let started = std::time::Instant::now();
    let end = (rev.saturating_add(1)).to_be_bytes();
    let mut last = Revision::new(0, 0).to_bytes().to_vec();
    let mut deleted = 0usize;
    loop {
        let mut tx = backend.batch_tx()?;
        let keys = tx.range(Bucket::KEY, &last, Some(&end), limit)?;
        let mut seen = Revision::default();
        for (key, _) in &keys {
            seen = RevisionKey::from_bytes(key)?.revision;
            if !keep.contains(&seen) {
                tx.delete(Bucket::KEY, key)?;
                deleted += 1;
            }
        }
        if keys.len() < limit {
            tx.put(Bucket::META, FINISHED_COMPACT, &encode_compact_rev(rev))?;
            tx.end()?;
            tracing::info!(revision = rev, deleted, took = ?started.elapsed(), "finished scheduled compaction");
            return Ok(());
        }
        last = Revision::new(seen.main, seen.sub.saturating_add(1))
            .to_bytes()
            .to_vec();
        tx.end()?;
        // Commit the deletes now rather than let them pile up in the write buffer.
        backend.force_commit()?;
        match stopped.recv_timeout(pause) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return Err(MvccError::Closed),
        }
    }
}

impl KvStore {
    /// Compacts the store at `rev` (etcd's `Compact`): reads below `rev` fail from now on with
    /// [`MvccError::Compacted`]. Fails if `rev` is not above the last compaction or is above the
    /// current revision. The index is compacted before this returns; the returned handle waits
    /// for the background deletion of the superseded revisions from the backend.
    pub fn compact(&self, rev: i64) -> Result<CompactionHandle> {
        let inner = &self.inner;
        inner.check_open()?;
        let _gate = inner.compact_gate.write();
        {
            let _writer = inner.writer.lock();
            let mut tx = inner.backend.batch_tx()?;
            let revs = inner.revs();
            if rev <= revs.compact {
                return Err(MvccError::Compacted {
                    requested: rev,
                    compacted: revs.compact,
                });
            }
            if rev > revs.current {
                return Err(MvccError::FutureRev {
                    requested: rev,
                    current: revs.current,
                });
            }
            tx.put(Bucket::META, SCHEDULED_COMPACT, &encode_compact_rev(rev))?;
            // The schedule must be durable before anything is deleted.
            tx.commit()?;
            tx.end()?;
            inner.revs.lock().compact = rev;
        }
        let keep = inner.index.compact(rev);
        Ok(inner.compactor.schedule(rev, keep))
    }
}
