//! `ferrocd-bench`: a load generator speaking etcd's v3 gRPC API, modelled on etcd's own
//! `benchmark` tool, so that ferrocd and etcd can be measured with the very same client.
//!
//! - [`client`]: gRPC connections to the endpoints, shared round-robin by the clients.
//! - [`keys`]: the keys and values of a workload (sequential or random over a key space).
//! - [`workloads`]: `put`, `range`, `txn-put` and `watch`, each returning a [`BenchResult`].
//! - [`report`]: latency histograms and the machine-readable result.
//!
//! Clients are closed loops, as in etcd's tool: `--clients` tasks share `--conns` connections
//! (client `i` uses connection `i % conns`), each sends its next request as soon as the previous
//! one is answered, until `--total` requests have been sent.

pub mod client;
pub mod error;
pub mod keys;
pub mod report;
pub mod workloads;

pub use error::BenchError;
pub use report::{BenchResult, Latency};
