//! How many operations the store served, as etcd's mvcc counts them for
//! `etcd_mvcc_{range,put,delete,txn}_total`: every range, every put, every delete of a range
//! (not of each key), and every transaction of more than one of these.

use std::sync::atomic::{AtomicU64, Ordering};

/// The store's running counts (atomic: ranges are counted outside the writer's lock).
#[derive(Debug, Default)]
pub(crate) struct OpCounters {
    ranges: AtomicU64,
    puts: AtomicU64,
    deletes: AtomicU64,
    txns: AtomicU64,
}

/// A reading of the store's operation counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpCounts {
    /// Ranges, in read and write transactions alike.
    pub ranges: u64,
    /// Puts.
    pub puts: u64,
    /// Deletes of a range (each `DeleteRange`, however many keys it deleted).
    pub deletes: u64,
    /// Transactions of more than one operation.
    pub txns: u64,
}

impl OpCounters {
    pub(crate) fn range(&self) {
        self.ranges.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds what a write transaction did (its ranges are counted as they happen).
    pub(crate) fn add_write(&self, ops: &TxnOps) {
        self.puts.fetch_add(ops.puts, Ordering::Relaxed);
        self.deletes.fetch_add(ops.deletes, Ordering::Relaxed);
        if ops.ranges + ops.puts + ops.deletes > 1 {
            self.txns.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A read-only transaction of `ranges` ranges ended (its ranges are counted already).
    pub(crate) fn add_read_txn(&self, ranges: u64) {
        if ranges > 1 {
            self.txns.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn read(&self) -> OpCounts {
        OpCounts {
            ranges: self.ranges.load(Ordering::Relaxed),
            puts: self.puts.load(Ordering::Relaxed),
            deletes: self.deletes.load(Ordering::Relaxed),
            txns: self.txns.load(Ordering::Relaxed),
        }
    }
}

/// What one write transaction did so far.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TxnOps {
    pub(crate) ranges: u64,
    pub(crate) puts: u64,
    pub(crate) deletes: u64,
}
