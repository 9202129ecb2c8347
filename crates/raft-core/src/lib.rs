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
//! - [`datadriven`]: a runner for etcd's datadriven test files, used to check conformance.
//!
//! # The IO-free invariant
//!
//! Nothing in this crate touches the outside world: no files, sockets, threads, clocks, OS
//! randomness or async runtime. Time advances only when the caller says so, randomness comes
//! from the caller, and inputs (including test files) are passed in as values. This keeps every
//! behaviour reproducible and testable; the embedding node owns all IO.

pub mod confchange;
pub mod datadriven;
pub mod quorum;
pub mod raftpb;
pub mod storage;
pub mod tracker;
