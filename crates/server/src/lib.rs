//! The etcd v3 gRPC API over a ferrocd node, and the `ferrocd` binary.
//!
//! So far this crate holds the member configuration taken from etcd's command-line flags; the
//! gRPC services follow (issue #7).

pub mod config;

pub use config::{Config, ConfigError, InitialClusterState, Member};
