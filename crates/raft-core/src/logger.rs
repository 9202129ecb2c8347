//! Where Raft's log lines go.
//!
//! Raft reports what it does (elections, configuration changes, rejections) as log lines whose
//! texts follow etcd's, so that operators and etcd's conformance tests read the same. The
//! [`Logger`] trait lets the embedding application decide where they go; [`TracingLogger`]
//! forwards them to `tracing`.

use std::fmt;
use std::sync::Arc;

/// The severity of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Detailed tracing of replication decisions.
    Debug,
    /// Notable state changes (elections, configuration changes).
    Info,
    /// Unexpected but handled situations.
    Warn,
    /// Errors that Raft can survive.
    Error,
    /// A broken invariant: logged, then Raft panics.
    Fatal,
}

impl Level {
    /// etcd's upper-case name: `DEBUG`, `INFO`, `WARN`, `ERROR`, `FATAL`.
    pub fn name(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
            Level::Fatal => "FATAL",
        }
    }
}

/// A sink for Raft's log lines.
pub trait Logger: Send + Sync {
    /// Records one line (without trailing newline) at `level`.
    fn log(&self, level: Level, args: fmt::Arguments<'_>);
}

/// A logger shared by a node's components.
pub type SharedLogger = Arc<dyn Logger>;

impl dyn Logger {
    /// Logs at [`Level::Debug`].
    pub fn debug(&self, args: fmt::Arguments<'_>) {
        self.log(Level::Debug, args);
    }

    /// Logs at [`Level::Info`].
    pub fn info(&self, args: fmt::Arguments<'_>) {
        self.log(Level::Info, args);
    }

    /// Logs at [`Level::Warn`].
    pub fn warn(&self, args: fmt::Arguments<'_>) {
        self.log(Level::Warn, args);
    }

    /// Logs at [`Level::Error`].
    pub fn error(&self, args: fmt::Arguments<'_>) {
        self.log(Level::Error, args);
    }

    /// Logs at [`Level::Fatal`], then panics with the same message: a Raft invariant is broken.
    pub fn fatal(&self, args: fmt::Arguments<'_>) -> ! {
        self.log(Level::Fatal, args);
        panic!("raft invariant broken: {args}");
    }
}

/// The default logger: forwards every line to `tracing` (target `raft`).
#[derive(Clone, Copy, Debug, Default)]
pub struct TracingLogger;

impl Logger for TracingLogger {
    fn log(&self, level: Level, args: fmt::Arguments<'_>) {
        match level {
            Level::Debug => tracing::debug!(target: "raft", "{args}"),
            Level::Info => tracing::info!(target: "raft", "{args}"),
            Level::Warn => tracing::warn!(target: "raft", "{args}"),
            Level::Error | Level::Fatal => tracing::error!(target: "raft", "{args}"),
        }
    }
}

/// A [`TracingLogger`] behind an [`Arc`].
pub fn default_logger() -> SharedLogger {
    Arc::new(TracingLogger)
}
