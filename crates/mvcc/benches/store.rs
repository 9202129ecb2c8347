//! The store's hot paths on LMDB: puts (each its own write transaction, as the apply loop makes
//! them), ranges of 1 and 100 keys, and a count-only range over 100 000 keys. Before criterion
//! runs, the benchmark also prints the index's memory per key, measured with a counting
//! allocator over 1 000 000 keys.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group};
use mvcc::{KvStore, PutRequest, RangeOptions, Revision, StoreConfig, TreeIndex};
use storage_api::{Backend, BackendConfig};

/// The system allocator, counting live bytes so the index's footprint can be measured.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: delegates every call to `System` unchanged and only counts sizes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const VALUE: [u8; 128] = [0x5a; 128];
const KEYS: usize = 100_000;

/// A 16-byte key for `n`, in numeric order.
fn key(n: usize) -> Vec<u8> {
    format!("key/{n:012}").into_bytes()
}

fn open(dir: &std::path::Path) -> KvStore {
    let engine = storage_lmdb::LmdbEngine::open(dir, storage_lmdb::LmdbConfig::default()).unwrap();
    let backend = Arc::new(Backend::new(Box::new(engine), BackendConfig::default()).unwrap());
    KvStore::open(backend, StoreConfig::default()).unwrap()
}

/// Bytes the tree index holds per key for `n` keys of one revision each (etcd's 16-byte keys).
fn index_bytes_per_key(n: usize) -> f64 {
    let keys: Vec<Vec<u8>> = (0..n).map(key).collect();
    let before = LIVE.load(Ordering::Relaxed);
    let index = TreeIndex::new();
    for (i, k) in keys.iter().enumerate() {
        index.put(k, Revision::new(i as i64 + 2, 0));
    }
    let after = LIVE.load(Ordering::Relaxed);
    assert_eq!(index.len(), n);
    (after - before) as f64 / n as f64
}

fn puts(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut group = c.benchmark_group("mvcc/put");
    group.throughput(Throughput::Elements(1));
    let mut n = 0usize;
    group.bench_function("128B", |b| {
        b.iter(|| {
            store
                .put(&PutRequest::new(key(n % KEYS), VALUE.to_vec()))
                .unwrap();
            n += 1;
        });
    });
    group.finish();
}

fn ranges(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for i in 0..KEYS {
        store.put(&PutRequest::new(key(i), VALUE.to_vec())).unwrap();
    }
    store.backend().force_commit().unwrap();

    let mut group = c.benchmark_group("mvcc/range");
    for len in [1usize, 100] {
        group.throughput(Throughput::Elements(len as u64));
        let mut start = 0usize;
        group.bench_function(format!("{len}_keys"), |b| {
            b.iter(|| {
                let from = key(start);
                let to = key(start + len);
                let end = (len > 1).then_some(to.as_slice());
                let result = store.range(&from, end, &RangeOptions::default()).unwrap();
                assert_eq!(result.kvs.len(), len);
                start = (start + 7_919) % (KEYS - len);
            });
        });
    }
    group.throughput(Throughput::Elements(KEYS as u64));
    group.bench_function("count_only_100000_keys", |b| {
        let options = RangeOptions {
            count_only: true,
            ..RangeOptions::default()
        };
        b.iter(|| {
            let result = store.range(b"key/", Some(b"key0"), &options).unwrap();
            assert_eq!(result.count, KEYS as i64);
        });
    });
    group.finish();
}

criterion_group! {
    name = store;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = puts, ranges
}

fn main() {
    // Under `cargo test --all-targets` (no `--bench`), a smaller index keeps the run short.
    let keys = if std::env::args().any(|a| a == "--bench") {
        1_000_000
    } else {
        10_000
    };
    println!(
        "mvcc/index_memory: {:.1} bytes per key over {keys} keys",
        index_bytes_per_key(keys)
    );
    store();
    Criterion::default().configure_from_args().final_summary();
}
