//! Heap allocations per committed proposal on raft-core's replication path, attributed to the
//! step of the `Ready` loop that made them (same workload as the `raft` benchmark: see
//! `cluster/mod.rs`).
//!
//! Run: `cargo bench -p raft-core --bench alloc_count` (prints a table; takes well under a
//! second, and runs the same way under `cargo test --all-targets`). `ALLOC_COUNT_CASE=inflight_1/16B`
//! restricts it to one case, e.g. to attribute the allocations to call stacks with
//! `heaptrack`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]
// A counting global allocator needs `unsafe impl GlobalAlloc`; it only forwards to `System`.
#![allow(unsafe_code)]

mod cluster;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use cluster::{Cluster, Probe};

/// Counts allocations (including reallocations, which are new blocks as far as the allocator is
/// concerned) and their bytes.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(new_size as u64, Relaxed);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn snapshot() -> (u64, u64) {
    (ALLOCS.load(Relaxed), BYTES.load(Relaxed))
}

/// Allocations per (role, step).
#[derive(Default)]
struct Counter {
    start: (u64, u64),
    by_step: BTreeMap<(&'static str, &'static str), (u64, u64, u64)>,
}

impl Probe for Counter {
    fn enter(&mut self) {
        self.start = snapshot();
    }

    fn exit(&mut self, node: usize, what: &'static str) {
        let (allocs, bytes) = snapshot();
        let role = if node == 0 { "leader" } else { "follower" };
        let e = self.by_step.entry((role, what)).or_default();
        e.0 += allocs - self.start.0;
        e.1 += bytes - self.start.1;
        e.2 += 1;
    }
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (e.g. `cargo test`) gets a shorter run.
    let full = std::env::args().any(|a| a == "--bench");
    let rounds_of_one = if full { 20_000 } else { 2_000 };
    // `ALLOC_COUNT_CASE=inflight_1/16B` runs one case only (e.g. under a heap profiler).
    let only = std::env::var("ALLOC_COUNT_CASE").ok();
    for inflight in [1usize, 256] {
        for (size, size_name) in [(16usize, "16B"), (1024, "1KiB")] {
            if only
                .as_deref()
                .is_some_and(|c| c != format!("inflight_{inflight}/{size_name}"))
            {
                continue;
            }
            let rounds = (rounds_of_one / inflight).max(20);
            let payload = vec![0xa5u8; size];
            let mut cluster = Cluster::new();
            // Warm up: grow every reused buffer to its steady-state capacity, and go through a
            // compaction, so that what is counted is the steady state.
            for _ in 0..rounds.max(5000 / inflight) {
                cluster.propose(inflight, &payload);
                cluster.settle(&mut ());
            }
            let mut counter = Counter::default();
            let (m0, r0) = (cluster.delivered, cluster.readies);
            let (a0, b0) = snapshot();
            let mut propose_allocs = 0;
            let mut propose_bytes = 0;
            for _ in 0..rounds {
                let p0 = snapshot();
                cluster.propose(inflight, &payload);
                let p1 = snapshot();
                propose_allocs += p1.0 - p0.0;
                propose_bytes += p1.1 - p0.1;
                cluster.settle(&mut counter);
            }
            let (a1, b1) = snapshot();
            let proposals = (rounds * inflight) as f64;
            println!(
                "raft-core alloc_count inflight_{inflight}/{size_name}: {:.2} allocations, {:.0} bytes per committed proposal ({} proposals; {:.2} messages, {:.3} Readies per proposal)",
                (a1 - a0) as f64 / proposals,
                (b1 - b0) as f64 / proposals,
                rounds * inflight,
                (cluster.delivered - m0) as f64 / proposals,
                (cluster.readies - r0) as f64 / proposals,
            );
            println!(
                "  {:<9} {:<16} {:>10} {:>12} {:>10}",
                "role", "step", "allocs/p", "bytes/p", "calls/p"
            );
            println!(
                "  {:<9} {:<16} {:>10.2} {:>12.0} {:>10.3}",
                "leader",
                "propose",
                propose_allocs as f64 / proposals,
                propose_bytes as f64 / proposals,
                1.0
            );
            for ((role, what), (allocs, bytes, calls)) in &counter.by_step {
                if *allocs == 0 && !full {
                    continue;
                }
                println!(
                    "  {role:<9} {what:<16} {:>10.2} {:>12.0} {:>10.3}",
                    *allocs as f64 / proposals,
                    *bytes as f64 / proposals,
                    *calls as f64 / proposals
                );
            }
        }
    }
}
