//! The write-ahead log: every raft entry and hard state is appended here and synced before it
//! is acknowledged.

pub mod record;

pub use record::{Frame, RecordError, RecordReader, encode_record};
