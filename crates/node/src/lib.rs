//! A ferrocd replica: the WAL, snapshots, the raft loop, apply and the peer transport that turn
//! `raft-core`, `mvcc` and a storage engine into a running member of a cluster.
//!
//! So far this crate holds the WAL's record framing; the raft loop, apply and transport follow
//! (issue #6).

pub mod wal;
