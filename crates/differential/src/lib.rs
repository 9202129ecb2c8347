//! Differential testing of ferrocd against real etcd (3.4) over etcd's v3 gRPC API.
//!
//! Both are started fresh for each sequence ([`cluster`]), driven with the same seeded random
//! requests ([`ops`]), valid and invalid, including a watch stream ([`exec`]); every response,
//! error (gRPC code and message) and watch event is compared after normalizing only what
//! legitimately differs ([`exec::normalize`], [`exec::reconcile`]). A mismatching sequence is
//! shrunk by delta debugging, replaying on fresh clusters ([`runner::shrink`]).

pub mod cluster;
pub mod exec;
pub mod ops;
pub mod pretty;
pub mod runner;
