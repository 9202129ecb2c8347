//! The workload of `crates/raft-core/benches/raft.rs` (see `crates/raft-core/benches/cluster/`)
//! run on tikv/raft-rs, under the same names prefixed `raft-rs/` instead of `raft/`:
//!
//! - `raft-rs/commit/inflight_{1,256}/{16B,1KiB}`: proposals committed (and applied on every
//!   node) per second through a 3-node in-memory cluster;
//! - `raft-rs/ready_advance`: one `ready` / persist / `advance` cycle on the leader holding one
//!   new proposal (the rest of the round is not timed).
//!
//! The workload is in `src/lib.rs`. Run: `cargo bench --bench raft` in this directory.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use raft_rs_compare::Cluster;

const SIZES: [(usize, &str); 2] = [(16, "16B"), (1024, "1KiB")];
const INFLIGHT: [usize; 2] = [1, 256];

fn commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("raft-rs/commit");
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
                    cluster.settle();
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
    c.bench_function("raft-rs/ready_advance", |b| {
        let mut cluster = Cluster::new();
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                cluster.propose(1, &payload);
                let start = Instant::now();
                let had = cluster.handle_ready(0);
                timed += start.elapsed();
                assert!(had, "the leader has a Ready after a proposal");
                cluster.settle();
            }
            timed
        });
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = commit, ready_advance
}
criterion_main!(benches);
