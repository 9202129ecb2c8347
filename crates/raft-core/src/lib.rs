//! etcd's Raft consensus algorithm as a pure, IO-free state machine.
//!
//! This crate ports the *design* of [etcd-io/raft](https://github.com/etcd-io/raft) (v3.7) to
//! idiomatic Rust. It is a library of deterministic data structures and state transitions:
//!
//! - [`quorum`]: majority and joint quorums (committed index, vote results);
//! - [`tracker`]: the leader's view of its followers ([`tracker::Progress`],
//!   [`tracker::Inflights`], [`tracker::ProgressTracker`]);
//! - [`confchange`]: validated configuration changes, simple and joint
//!   ([`confchange::Changer`]);
//! - [`raftpb`]: the plain-Rust message types shared by the modules above;
//! - [`storage`]: the [`storage::Storage`] the log is read from, and [`storage::MemStorage`];
//! - [`raft_log`] and [`log_unstable`]: the log, stable and unstable parts;
//! - [`raft`]: the state machine ([`Raft`]), and [`raw_node`]: the application's handle on it
//!   ([`RawNode`], [`Ready`]), configured by [`Config`];
//! - [`read_only`]: linearizable reads; [`status`]: state snapshots for the application;
//! - [`logger`]: where log lines go; [`describe`]: etcd's textual forms of the data;
//! - [`datadriven`]: a runner for etcd's datadriven test files, used to check conformance.
//!
//! # The IO-free invariant
//!
//! Nothing in this crate touches the outside world: no files, sockets, threads, clocks, OS
//! randomness or async runtime. Time advances only when the caller says so, randomness comes
//! from the caller, and inputs (including test files) are passed in as values. This keeps every
//! behaviour reproducible and testable; the embedding node owns all IO.

pub mod confchange;
pub mod config;
pub mod datadriven;
pub mod describe;
pub mod log_unstable;
pub mod logger;
pub mod quorum;
pub mod raft;
pub mod raft_log;
pub mod raftpb;
pub mod raw_node;
pub mod read_only;
pub mod status;
pub mod storage;
pub mod tracker;

pub use config::{Config, ConfigError};
pub use logger::{Level, Logger, SharedLogger, TracingLogger};
pub use raft::{
    LOCAL_APPEND_THREAD, LOCAL_APPLY_THREAD, NONE, Raft, RaftError, SoftState, StateRole,
};
pub use raw_node::{RawNode, Ready, SnapshotStatus};
pub use read_only::{ReadOnlyOption, ReadState};
pub use status::{BasicStatus, Status};
