//! Chaos testing of real `ferrocd` clusters (issue #9).
//!
//! - [`cluster`]: N `ferrocd` processes on 127.0.0.1, each behind a [`proxy`] in the peer path;
//!   `kill -9` and restart, SIGSTOP/SIGCONT.
//! - [`proxy`]: the fault-injecting TCP proxy: partitions, delay and message loss per link.
//! - [`run`]: one seeded, time-bounded run: clients, watchers, leases and a fault schedule.
//! - [`history`]: what clients recorded and the checks over it (linearizability per key via
//!   the `linearizability` crate, acknowledged writes, revisions, watches, values).
//! - [`crash`]: crash consistency of one member under heavy writes and `kill -9`.
//! - [`rng`]: the seeded generator every choice comes from.

pub mod client;
pub mod cluster;
pub mod crash;
pub mod history;
pub mod proxy;
pub mod rng;
pub mod run;
