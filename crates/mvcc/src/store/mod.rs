//! The multi-version key-value store (etcd's `mvcc.store`): the in-memory [`TreeIndex`] over the
//! backend's `key` bucket, which maps encoded revisions to encoded [`KeyValue`](crate::KeyValue)s.
//!
//! - Read transactions ([`KvStore::read`]) see the store at one revision and never block writers.
//! - Write transactions ([`KvStore::write`]) are serialized; every change of one gets the
//!   revision `{current + 1, change index}`, and the current revision moves on when it ends, at
//!   the moment its writes become visible.
//! - Compaction drops history older than a revision: the index synchronously, the `key` bucket
//!   on a background worker in batches (see [`KvStore::compact`]).
//!
//! Locks, outermost first: `compact_gate` (compaction vs. hashing), `writer` (write
//! transactions and compaction scheduling), the backend's write transaction, then the short-lived
//! `revs`, index and `consistent` locks.

mod compaction;
mod counts;
mod hash;
mod meta;
mod range;
mod read;
mod restore;
mod txn;
mod write;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use storage_api::{Backend, Bucket};

pub use compaction::CompactionHandle;
pub use counts::OpCounts;
pub use hash::KeyValueHash;
pub use meta::ConsistentIndex;
pub use read::ReadTxn;
pub use write::{Committed, WriteTxn};

use crate::error::{MvccError, Result};
use crate::request::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeOptions, RangeResult,
    TxnRequest, TxnResponse,
};
use crate::tree_index::TreeIndex;
use crate::{ChangeObserver, LeaseRegistry};

/// How the store behaves; [`StoreConfig::default`] is etcd's.
#[derive(Clone)]
pub struct StoreConfig {
    /// Revisions examined per backend write transaction while compaction deletes (etcd: 1 000).
    pub compaction_batch_limit: usize,
    /// The pause between two compaction batches, letting writers in (etcd: 10 ms).
    pub compaction_pause: Duration,
    /// The lessor's hook: validates leases of puts and is told which keys carry which lease.
    /// Without one, every put with a lease fails with [`MvccError::LeaseNotFound`].
    pub lease_registry: Option<Arc<dyn LeaseRegistry>>,
    /// Told about the changes of every write transaction (the watch layer's feed).
    pub observer: Option<Arc<dyn ChangeObserver>>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            compaction_batch_limit: 1000,
            compaction_pause: Duration::from_millis(10),
            lease_registry: None,
            observer: None,
        }
    }
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig")
            .field("compaction_batch_limit", &self.compaction_batch_limit)
            .field("compaction_pause", &self.compaction_pause)
            .field("lease_registry", &self.lease_registry.is_some())
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

/// The store's current and compaction revisions (etcd's `revMu`-protected pair).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Revs {
    /// The revision of the last write transaction that changed a key (1 for an empty store).
    pub(crate) current: i64,
    /// The revision of the last compaction (-1 before any).
    pub(crate) compact: i64,
}

/// The state shared by the store, its transactions and its read transactions.
pub(crate) struct Inner {
    pub(crate) backend: Arc<Backend>,
    pub(crate) index: TreeIndex,
    pub(crate) revs: Mutex<Revs>,
    /// Serializes write transactions and compaction scheduling.
    pub(crate) writer: Mutex<()>,
    /// Held for writing while a compaction is scheduled, for reading while a hash is set up.
    pub(crate) compact_gate: RwLock<()>,
    pub(crate) consistent: Mutex<ConsistentIndex>,
    pub(crate) leases: Option<Arc<dyn LeaseRegistry>>,
    pub(crate) observer: Option<Arc<dyn ChangeObserver>>,
    pub(crate) compactor: compaction::Compactor,
    /// What the store served, for etcd's `etcd_mvcc_*_total`.
    pub(crate) counts: counts::OpCounters,
    closed: AtomicBool,
}

impl Inner {
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(MvccError::Closed)
        } else {
            Ok(())
        }
    }

    pub(crate) fn revs(&self) -> Revs {
        *self.revs.lock()
    }
}

/// etcd's multi-version key-value store over a [`Backend`].
///
/// Closes (stops its compaction worker) when dropped; the backend stays open and belongs to the
/// caller.
pub struct KvStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for KvStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let revs = self.inner.revs();
        f.debug_struct("KvStore")
            .field("current_rev", &revs.current)
            .field("compact_rev", &revs.compact)
            .field("keys", &self.inner.index.len())
            .finish()
    }
}

impl KvStore {
    /// Opens the store on `backend`: creates the `key` and `meta` buckets if needed, rebuilds the
    /// index, the revisions and the consistent index from them, attaches live keys' leases, and
    /// resumes a compaction that was scheduled but did not finish.
    pub fn open(backend: Arc<Backend>, config: StoreConfig) -> Result<KvStore> {
        {
            let mut tx = backend.batch_tx()?;
            tx.create_bucket(Bucket::KEY)?;
            tx.create_bucket(Bucket::META)?;
            tx.end()?;
        }
        let compactor = compaction::Compactor::start(Arc::clone(&backend), &config)?;
        let inner = Arc::new(Inner {
            backend,
            index: TreeIndex::new(),
            revs: Mutex::new(Revs {
                current: 1,
                compact: -1,
            }),
            writer: Mutex::new(()),
            compact_gate: RwLock::new(()),
            consistent: Mutex::new(ConsistentIndex::default()),
            leases: config.lease_registry,
            observer: config.observer,
            compactor,
            counts: counts::OpCounters::default(),
            closed: AtomicBool::new(false),
        });
        let store = KvStore { inner };
        if let Some(scheduled) = restore::restore(&store.inner)? {
            tracing::info!(revision = scheduled, "resuming scheduled compaction");
            if let Err(e) = store.compact(scheduled) {
                tracing::warn!(revision = scheduled, error = %e, "resuming compaction failed");
            }
        }
        Ok(store)
    }

    /// How many ranges, puts, deletes and multi-operation transactions the store served
    /// since it was opened, as etcd's mvcc counts them.
    pub fn op_counts(&self) -> OpCounts {
        self.inner.counts.read()
    }

    /// The backend the store runs on.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.inner.backend
    }

    /// How many keys exist now, deleted ones left out (etcd's
    /// `etcd_debugging_mvcc_keys_total`, which a delete decrements).
    pub fn key_count(&self) -> usize {
        self.inner.index.live_len()
    }

    /// The revision of the last write transaction that changed a key (1 for a new store).
    pub fn rev(&self) -> i64 {
        self.inner.revs().current
    }

    /// The revision of the last compaction (-1 before any): reads below it fail.
    pub fn compact_rev(&self) -> i64 {
        self.inner.revs().compact
    }

    /// The raft position stored with the last write transaction that set one.
    pub fn consistent_index(&self) -> ConsistentIndex {
        *self.inner.consistent.lock()
    }

    /// Begins a read transaction at the current revision.
    pub fn read(&self) -> Result<ReadTxn> {
        self.inner.check_open()?;
        ReadTxn::begin(Arc::clone(&self.inner))
    }

    /// Begins the write transaction, waiting while another one is open.
    pub fn write(&self) -> Result<WriteTxn<'_>> {
        self.inner.check_open()?;
        WriteTxn::begin(&self.inner)
    }

    /// Reads `[key, end)` (see [`crate::request`] for `end`) at `opts.rev` or the current
    /// revision.
    pub fn range(
        &self,
        key: &[u8],
        end: Option<&[u8]>,
        opts: &RangeOptions,
    ) -> Result<RangeResult> {
        self.read()?.range(key, end, opts)
    }

    /// Puts a key in its own write transaction (etcd's `Put` apply).
    pub fn put(&self, req: &PutRequest) -> Result<PutResponse> {
        let mut txn = self.write()?;
        let resp = txn.put_standalone(req);
        txn.end()?;
        resp
    }

    /// Deletes a key or range in its own write transaction (etcd's `DeleteRange` apply).
    pub fn delete_range(&self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        let mut txn = self.write()?;
        let resp = txn.delete_range_request(req);
        txn.end()?;
        resp
    }

    /// Runs a transaction (etcd's `Txn` apply): validated, then its guards evaluated and its
    /// operations run in one write transaction at one revision; a transaction that cannot write
    /// runs in a read transaction and does not move the revision.
    pub fn txn(&self, req: &TxnRequest) -> Result<TxnResponse> {
        crate::txn_check::check_txn(req)?;
        if req.is_read_only() {
            let read = self.read()?;
            let resp = txn::run_read_only(&read, req);
            if let Ok(r) = &resp {
                let ops = req.compare.len() + r.responses.len();
                self.inner.counts.add_read_txn(ops as u64);
            }
            return resp;
        }
        let mut write = self.write()?;
        let resp = write.txn(req);
        write.end()?;
        resp
    }

    /// Waits until every compaction scheduled so far has finished deleting.
    pub fn compaction_barrier(&self) -> CompactionHandle {
        self.inner.compactor.barrier()
    }

    /// Closes the store: stops the compaction worker (an unfinished compaction resumes on the
    /// next open) and refuses further transactions. Idempotent.
    pub fn close(&self) {
        if !self.inner.closed.swap(true, Ordering::AcqRel) {
            self.inner.compactor.stop();
        }
    }
}

impl Drop for KvStore {
    fn drop(&mut self) {
        self.close();
    }
}
