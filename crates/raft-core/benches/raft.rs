//! Throughput of raft-core's replication path: a 3-node in-memory cluster driven through
//! `RawNode` / `Ready` as an application would (see `cluster/mod.rs`), no I/O and no threads.
//!
//! - `raft/commit/inflight_{1,256}/{16B,1KiB}`: proposals committed (and applied on every node)
//!   per second, with 1 or 256 proposals in flight per round and 16-byte or 1-KiB entries.
//! - `raft/ready_advance`: the cost of one `ready` / persist / `advance` cycle on the leader
//!   holding one new proposal (the rest of the round is not timed).
//!
//! `benches/raft-rs-compare` (at the repository root) runs the same workload on tikv/raft-rs
//! under `raft-rs/...`. Run: `cargo bench -p raft-core --bench raft`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod cluster;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use cluster::Cluster;

const SIZES: [(usize, &str); 2] = [(16, "16B"), (1024, "1KiB")];
const INFLIGHT: [usize; 2] = [1, 256];

fn commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("raft/commit");
    for inflight in INFLIGHT {
        for (size, size_name) in SIZES {
            let payload = vec![0xa5u8; size];
            group.throughput(Throughput::Elements(inflight as u64));
            let id = BenchmarkId::new(format!("inflight_{inflight}"), size_name);
            group.bench_function(id, |b| {
                let mut cluster = Cluster::new();
                b.iter(|| {
                    let before = cluster.applied[0];
                    cluster.propose(inflight, &payload);
                    cluster.settle(&mut ());
                    debug_assert_eq!(cluster.applied, [before + inflight as u64; 3]);
                });
                black_box(cluster.applied_bytes);
            });
        }
    }
    group.finish();
}

fn ready_advance(c: &mut Criterion) {
    let payload = vec![0xa5u8; 16];
    c.bench_function("raft/ready_advance", |b| {
        let mut cluster = Cluster::new();
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                cluster.propose(1, &payload);
                let start = Instant::now();
                let had = cluster.handle_ready(0, &mut ());
                timed += start.elapsed();
                assert!(had, "the leader has a Ready after a proposal");
                cluster.settle(&mut ());
            }
            timed
        });
    });
}

criterion_group! {
    name = benches;
    // Short runs: the whole file takes well under a minute (the command line may override).
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = commit, ready_advance
}
criterion_main!(benches);
