//! Watch fan-out: the time from one write until every watcher concerned received its event, with
//! 10 000 watchers on one key (one put), and 10 000 watchers on distinct keys (one put reaching
//! its single watcher; one transaction writing all 10 000 keys).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use mvcc::{
    PutRequest, RequestOp, StoreConfig, TxnRequest, WatchConfig, WatchFilters, WatchStream,
    WatchableStore,
};
use storage_api::{Backend, BackendConfig};

const WATCHERS: usize = 10_000;
/// Watchers per stream: each stream's channel holds one revision's responses for all of them.
const PER_STREAM: usize = 100;

fn open(dir: &std::path::Path) -> WatchableStore {
    let engine = storage_lmdb::LmdbEngine::open(dir, storage_lmdb::LmdbConfig::default()).unwrap();
    let backend = Arc::new(Backend::new(Box::new(engine), BackendConfig::default()).unwrap());
    let config = WatchConfig {
        chan_buf_len: PER_STREAM * 2,
        ..WatchConfig::default()
    };
    WatchableStore::open(backend, StoreConfig::default(), config).unwrap()
}

/// Streams holding `WATCHERS` watchers, the `i`-th on `key(i)`.
fn watchers(store: &WatchableStore, key: impl Fn(usize) -> Vec<u8>) -> Vec<WatchStream> {
    (0..WATCHERS / PER_STREAM)
        .map(|s| {
            let stream = store.watch_stream();
            for w in 0..PER_STREAM {
                let k = key(s * PER_STREAM + w);
                stream
                    .watch(None, &k, None, 0, WatchFilters::default(), false)
                    .unwrap();
            }
            stream
        })
        .collect()
}

/// Waits until every stream delivered one event per watcher.
fn drain(streams: &[WatchStream]) {
    for s in streams {
        let mut got = 0;
        while got < PER_STREAM {
            let resp = s.recv_timeout(Duration::from_secs(30)).unwrap();
            got += resp.events.len();
        }
    }
}

fn fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("watch_fan_out");
    group.sample_size(20);

    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let streams = watchers(&store, |_| b"hot".to_vec());
    group.bench_function("one_put_10k_watchers_same_key", |b| {
        b.iter(|| {
            store.put(&PutRequest::new("hot", "v")).unwrap();
            drain(&streams);
        });
    });
    drop(streams);
    drop(store);

    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let key = |i: usize| format!("key/{i:05}").into_bytes();
    let streams = watchers(&store, key);
    let mut next = 0usize;
    group.bench_function("one_put_among_10k_watchers_distinct_keys", |b| {
        b.iter(|| {
            let i = next % WATCHERS;
            next += 1;
            store.put(&PutRequest::new(key(i), "v")).unwrap();
            let resp = streams[i / PER_STREAM]
                .recv_timeout(Duration::from_secs(30))
                .unwrap();
            assert_eq!(resp.events.len(), 1);
        });
    });
    let txn = TxnRequest {
        success: (0..WATCHERS)
            .map(|i| RequestOp::Put(PutRequest::new(key(i), "v")))
            .collect(),
        ..TxnRequest::default()
    };
    group.bench_function("one_txn_10k_watchers_distinct_keys", |b| {
        b.iter(|| {
            store.txn(&txn).unwrap();
            drain(&streams);
        });
    });
    group.finish();
}

criterion_group!(benches, fan_out);
criterion_main!(benches);
