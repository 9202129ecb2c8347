//! The storage layer's cost: every workload runs through etcd's batching [`Backend`] and straight
//! on the raw [`Engine`] underneath, on every engine compiled in, so the layer's overhead (or
//! gain) shows as a ratio. `cargo xtask bench storage` runs this and prints the ratios.
//!
//! Workloads (keys 16 bytes, values 128 bytes):
//! - `put_seq` / `put_rand`: 1 000 puts in ascending / pseudo-random key order, made durable.
//!   Through the backend each put is its own write transaction and one `force_commit` ends the
//!   round, as etcd's apply loop does; raw, the same 1 000 puts are one `WriteBatch`.
//! - `commit`: the latency of making one put durable (`force_commit` vs a one-put batch).
//! - `range_1` / `range_1000`: reading 1 and 1 000 consecutive keys out of 100 000.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use node::engine::EngineKind;
use storage_api::{Backend, BackendConfig, Bucket, Engine, ReadTx, WriteBatch, WriteOp};

const VALUE: [u8; 128] = [0x5a; 128];
const PUTS_PER_ROUND: u64 = 1_000;
const RANGE_KEYS: u64 = 100_000;

/// A 16-byte key for `n`: big-endian, so numeric order is key order.
fn key(n: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[8..].copy_from_slice(&n.to_be_bytes());
    k
}

/// SplitMix64: a fixed pseudo-random key order, the same on every run.
fn scramble(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A backend on `kind` in a fresh directory that commits only when told to.
fn open(kind: EngineKind, dir: &tempfile::TempDir) -> Backend {
    let config = BackendConfig {
        batch_interval: Duration::from_secs(3600),
        batch_limit: usize::MAX,
    };
    let backend = kind.open_backend(dir.path(), config).unwrap();
    let mut tx = backend.batch_tx().unwrap();
    tx.create_bucket(Bucket::KEY).unwrap();
    tx.end().unwrap();
    backend.force_commit().unwrap();
    backend
}

/// A raw engine on `kind` in a fresh directory, with the `key` bucket.
fn open_raw(kind: EngineKind, dir: &tempfile::TempDir) -> Box<dyn Engine> {
    let engine = kind.open(dir.path()).unwrap();
    engine.create_bucket(Bucket::KEY).unwrap();
    engine
}

fn puts(c: &mut Criterion, name: &str, order: fn(u64) -> u64) {
    for kind in EngineKind::compiled() {
        let mut group = c.benchmark_group(format!("storage/{kind}/{name}"));
        group.throughput(Throughput::Elements(PUTS_PER_ROUND));
        group.sample_size(20);

        let dir = tempfile::tempdir().unwrap();
        let backend = open(kind, &dir);
        let mut next = 0u64;
        group.bench_function(BenchmarkId::from_parameter("backend"), |b| {
            b.iter(|| {
                for _ in 0..PUTS_PER_ROUND {
                    let mut tx = backend.batch_tx().unwrap();
                    tx.put(Bucket::KEY, &key(order(next)), &VALUE).unwrap();
                    tx.end().unwrap();
                    next += 1;
                }
                backend.force_commit().unwrap();
            });
        });
        backend.close().unwrap();

        let dir = tempfile::tempdir().unwrap();
        let engine = open_raw(kind, &dir);
        let mut next = 0u64;
        group.bench_function(BenchmarkId::from_parameter("engine"), |b| {
            b.iter(|| {
                let mut batch = WriteBatch::default();
                for _ in 0..PUTS_PER_ROUND {
                    batch.ops.push(WriteOp::Put {
                        bucket: Bucket::KEY,
                        key: key(order(next)).to_vec(),
                        value: VALUE.to_vec(),
                    });
                    next += 1;
                }
                engine.apply(&batch).unwrap();
            });
        });
        group.finish();
    }
}

fn put_seq(c: &mut Criterion) {
    puts(c, "put_seq", |n| n);
}

fn put_rand(c: &mut Criterion) {
    puts(c, "put_rand", scramble);
}

fn commit(c: &mut Criterion) {
    for kind in EngineKind::compiled() {
        let mut group = c.benchmark_group(format!("storage/{kind}/commit"));
        group.sample_size(30);

        let dir = tempfile::tempdir().unwrap();
        let backend = open(kind, &dir);
        let mut next = 0u64;
        group.bench_function(BenchmarkId::from_parameter("backend"), |b| {
            b.iter(|| {
                let mut tx = backend.batch_tx().unwrap();
                tx.put(Bucket::KEY, &key(next), &VALUE).unwrap();
                tx.end().unwrap();
                backend.force_commit().unwrap();
                next += 1;
            });
        });
        backend.close().unwrap();

        let dir = tempfile::tempdir().unwrap();
        let engine = open_raw(kind, &dir);
        let mut next = 0u64;
        group.bench_function(BenchmarkId::from_parameter("engine"), |b| {
            b.iter(|| {
                let batch = WriteBatch {
                    ops: vec![WriteOp::Put {
                        bucket: Bucket::KEY,
                        key: key(next).to_vec(),
                        value: VALUE.to_vec(),
                    }],
                };
                engine.apply(&batch).unwrap();
                next += 1;
            });
        });
        group.finish();
    }
}

fn ranges(c: &mut Criterion) {
    for kind in EngineKind::compiled() {
        let dir = tempfile::tempdir().unwrap();
        let backend = open(kind, &dir);
        for chunk in 0..RANGE_KEYS / PUTS_PER_ROUND {
            let mut tx = backend.batch_tx().unwrap();
            for i in 0..PUTS_PER_ROUND {
                tx.put(Bucket::KEY, &key(chunk * PUTS_PER_ROUND + i), &VALUE)
                    .unwrap();
            }
            tx.end().unwrap();
        }
        backend.force_commit().unwrap();

        for len in [1u64, 1_000] {
            let mut group = c.benchmark_group(format!("storage/{kind}/range_{len}"));
            group.throughput(Throughput::Elements(len));
            let mut start = 0u64;
            group.bench_function(BenchmarkId::from_parameter("backend"), |b| {
                b.iter(|| {
                    let read = backend.read_tx().unwrap();
                    let from = key(start);
                    let to = key(start + len);
                    let kvs = read
                        .range(Bucket::KEY, &from, Some(&to), len as usize)
                        .unwrap();
                    assert_eq!(kvs.len() as u64, len);
                    start = (start + 7_919) % (RANGE_KEYS - len);
                    black_box(kvs);
                });
            });
            group.finish();
        }
        backend.close().unwrap();
        drop(backend);

        // The same files, read straight through the engine.
        let engine = kind.open(dir.path()).unwrap();
        for len in [1u64, 1_000] {
            let mut group = c.benchmark_group(format!("storage/{kind}/range_{len}"));
            group.throughput(Throughput::Elements(len));
            let mut start = 0u64;
            group.bench_function(BenchmarkId::from_parameter("engine"), |b| {
                b.iter(|| {
                    let view = engine.view().unwrap();
                    let from = key(start);
                    let to = key(start + len);
                    let mut kvs = Vec::with_capacity(len as usize);
                    view.visit(Bucket::KEY, &from, Some(&to), &mut |k, v| {
                        kvs.push((k.to_vec(), v.to_vec()));
                        true
                    })
                    .unwrap();
                    assert_eq!(kvs.len() as u64, len);
                    start = (start + 7_919) % (RANGE_KEYS - len);
                    black_box(kvs);
                });
            });
            group.finish();
        }
    }
}

criterion_group! {
    name = storage;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = put_seq, put_rand, commit, ranges
}
criterion_main!(storage);
