//! The etcd v3 gRPC API over a ferrocd node, and the `ferrocd` binary.
//!
//! - [`proto`]: etcd's messages and service stubs, generated from the vendored protos.
//! - [`error`]: etcd's gRPC errors, and the table from [`node::NodeError`] to them.
//! - [`convert`]: protobuf requests to `mvcc`'s and back, with etcd's range post-processing.
//! - [`services`]: KV, Watch, Lease, Cluster and Maintenance over a [`node::Node`].
//! - [`server`]: the tonic server on the client URLs, gRPC and HTTP on each.
//! - [`listener`]: the client listeners, TCP or unix sockets.
//! - [`etcdhttp`]: `/health`, `/version` and `/metrics`.
//! - [`gateway`]: the v3 API as JSON under `/v3/`, as etcd's grpc-gateway serves it.
//! - [`grpc_metrics`]: the gRPC call counters etcd exports.
//! - [`size_limit`]: etcd's answer to a request over gRPC's size limit.
//! - [`tls`]: TLS on the client listeners (etcd's flags, auto TLS, the accept loop).
//! - [`config`]: etcd's command-line flags.
//! - [`corruption`]: the initial corruption check against the peers' hashes.
//! - [`logging`]: the binaries' log output.

pub mod config;
pub mod convert;
pub mod corruption;
pub mod error;
pub mod etcdhttp;
pub mod gateway;
pub mod grpc_metrics;
pub mod listener;
pub mod logging;
pub mod proto;
pub mod server;
pub mod services;
pub mod size_limit;
pub mod tls;

pub use config::{Config, ConfigError, InitialClusterState, Member};
