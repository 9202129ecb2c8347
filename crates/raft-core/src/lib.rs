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
//! - [`read_only`]: linearizable reads (ReadIndex, safe or lease-based), surfacing as
//!   [`ReadState`]s in [`Ready`]; [`status`]: state snapshots for the application;
//! - [`logger`]: where log lines go; [`describe`]: etcd's textual forms of the data;
//! - [`datadriven`]: a runner for etcd's datadriven test files (the `quorum`, `confchange` and
//!   `interaction` suites), used to check conformance with etcd and the crate's own scenarios.
//!
//! # The basic loop
//!
//! The application owns storage, transport and time. It ticks the node, steps incoming
//! messages into it, and handles each [`Ready`]: persist the entries and hard state, send the
//! messages, apply the committed entries, then call [`RawNode::advance`]. A single-node group:
//!
//! ```
//! use raft_core::raftpb::{ConfState, Snapshot, SnapshotMetadata};
//! use raft_core::storage::MemStorage;
//! use raft_core::{Config, RawNode, StateRole};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Bootstrap the storage with the initial membership: node 1 alone.
//! let mut storage = MemStorage::new();
//! storage.apply_snapshot(Snapshot {
//!     data: Vec::new(),
//!     metadata: SnapshotMetadata {
//!         conf_state: ConfState { voters: vec![1], ..ConfState::default() },
//!         index: 1,
//!         term: 1,
//!     },
//! })?;
//! let mut node = RawNode::new(&Config::new(1), storage)?;
//!
//! // Handles every pending Ready: persist, (send), apply, advance.
//! fn drive(node: &mut RawNode<MemStorage>, applied: &mut Vec<Vec<u8>>) {
//!     while node.has_ready() {
//!         let rd = node.ready();
//!         let store = node.store_mut();
//!         store.append(&rd.entries);
//!         if !rd.hard_state.is_empty() {
//!             store.set_hard_state(rd.hard_state);
//!         }
//!         // rd.messages would go to the other nodes; there are none here.
//!         for entry in rd.committed_entries {
//!             if !entry.data.is_empty() {
//!                 applied.push(entry.data);
//!             }
//!         }
//!         node.advance();
//!     }
//! }
//!
//! let mut applied = Vec::new();
//! node.campaign()?;
//! drive(&mut node, &mut applied); // The persisted self-vote makes node 1 leader.
//! node.propose(b"hello".to_vec())?;
//! drive(&mut node, &mut applied);
//! assert_eq!(node.basic_status().soft_state.raft_state, StateRole::Leader);
//! assert_eq!(applied, vec![b"hello".to_vec()]);
//! # Ok(())
//! # }
//! ```
//!
//! `examples/replicated_map.rs` runs a three-node group the same way, with a message queue.
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
