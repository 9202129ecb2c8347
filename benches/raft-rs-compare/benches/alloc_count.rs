//! Heap allocations per committed proposal on raft-rs, for comparison with raft-core's
//! `crates/raft-core/benches/alloc_count.rs` (same workload, same counting: every `alloc`,
//! `alloc_zeroed` and `realloc`). Run: `cargo bench --bench alloc_count` in this directory.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use raft_rs_compare::Cluster;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(new_size as u64, Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() {
    let rounds_of_one = 20_000;
    for inflight in [1usize, 256] {
        for (size, size_name) in [(16usize, "16B"), (1024, "1KiB")] {
            let rounds = (rounds_of_one / inflight).max(20);
            let payload = vec![0xa5u8; size];
            let mut cluster = Cluster::new();
            for _ in 0..rounds.max(5000 / inflight) {
                cluster.propose(inflight, &payload);
                cluster.settle();
            }
            let (m0, r0) = (cluster.delivered, cluster.readies);
            let (a0, b0) = (ALLOCS.load(Relaxed), BYTES.load(Relaxed));
            for _ in 0..rounds {
                cluster.propose(inflight, &payload);
                cluster.settle();
            }
            let (a1, b1) = (ALLOCS.load(Relaxed), BYTES.load(Relaxed));
            let proposals = (rounds * inflight) as f64;
            println!(
                "raft-rs alloc_count inflight_{inflight}/{size_name}: {:.2} allocations, {:.0} bytes per committed proposal ({} proposals; {:.2} messages, {:.3} Readies per proposal)",
                (a1 - a0) as f64 / proposals,
                (b1 - b0) as f64 / proposals,
                rounds * inflight,
                (cluster.delivered - m0) as f64 / proposals,
                (cluster.readies - r0) as f64 / proposals,
            );
        }
    }
}
