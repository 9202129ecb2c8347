//! Helpers shared by every test and harness that runs real `ferrocd` or `etcd` processes.
//!
//! A dependency of test code and of the harness crates (`chaos`, `differential`, `benchmark`,
//! `xtask`) only: no crate that ships in the `ferrocd` binary depends on it.
//!
//! - [`ports`]: TCP ports to hand to a process before it binds them.
//! - [`process`]: a running process's memory and threads, from `/proc`.

pub mod ports;
pub mod process;

pub use ports::{free_port, free_ports};
