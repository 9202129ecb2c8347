//! The benchmark library's errors.

/// What can stop a benchmark before it measures anything.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// No endpoint to connect to.
    #[error("no endpoints given")]
    NoEndpoints,
    /// An option out of its range (a zero count, a key space larger than the keys can name...).
    #[error("invalid option: {0}")]
    Invalid(String),
    /// An endpoint that is not a URL tonic can connect to.
    #[error("invalid endpoint {endpoint:?}: {source}")]
    Endpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it is invalid.
        #[source]
        source: tonic::transport::Error,
    },
    /// A connection could not be opened.
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// The transport's error.
        #[source]
        source: tonic::transport::Error,
    },
    /// A call that must succeed for the workload to be set up failed (watch creation, preload).
    #[error("{what}: {status}")]
    Rpc {
        /// What was being done.
        what: String,
        /// The server's answer.
        status: Box<tonic::Status>,
    },
    /// Something the benchmark waits for did not happen in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A latency histogram could not be made.
    #[error("histogram: {0}")]
    Histogram(String),
    /// A client task panicked or was cancelled.
    #[error("a client task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}
