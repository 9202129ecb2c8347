//! A ferrocd replica: the WAL, snapshots, the raft loop, apply and the peer transport that turn
//! `raft-core`, `mvcc` and a storage engine into a running member of a cluster (etcd's
//! `etcdserver` minus gRPC).
//!
//! - [`node`]: [`Node`], the client-facing handle (decision 0002), and its configuration;
//! - [`raft_loop`], [`apply`], [`reads`]: the raft, apply and linearizable-read threads;
//! - [`snapshot`]: snapshot files and backend generations; [`wal`]: the write-ahead log;
//! - [`request`]: the replicated request envelope; [`membership`]: members and their ids;
//! - [`transport`]: how raft messages reach peers; [`engine`]: the storage engine choice.

pub mod apply;
pub mod engine;
pub mod error;
mod leases;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod pending;
pub mod raft_loop;
pub mod reads;
pub mod request;
pub mod restore;
pub mod snapshot;
pub mod tls;
pub mod transport;
pub mod wal;

pub use error::{NodeError, StartError};
pub use node::{
    ClusterState, LeaseGrant, MemberAdded, Node, NodeConfig, NodeStatus, Response, ResponseHeader,
};
pub use pending::Pending;
