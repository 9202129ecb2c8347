//! The bbolt database file format (etcd's backend file, and so etcd's snapshot format), read
//! and written without bbolt: ferrocd's snapshots are bbolt files so that etcd's tools restore
//! them and ferrocd restores etcd's.
//!
//! A bbolt file is an array of fixed-size pages (4096 bytes here):
//!
//! ```text
//! page 0, 1   meta: magic, version, page size, root bucket, freelist page, high-water mark
//!             (page count), transaction id, FNV-64a checksum; the valid one with the higher
//!             transaction id is current
//! page 2..    freelist (ids of free pages), branch and leaf pages of B+trees; a page whose
//!             content exceeds the page size runs on over `overflow` following pages
//! ```
//!
//! The root bucket's B+tree maps bucket names to bucket headers (root page, sequence); a small
//! bucket is *inline*: its header is followed by its whole leaf page, inside the root's value.
//!
//! - [`write`]: [`write_db`] streams a compact, valid file from a [`Source`] of buckets;
//! - [`read`]: [`Db`] validates a file and iterates its buckets and key/values;
//! - [`format`]: the on-disk constants.
//!
//! Only what etcd uses is supported: top-level buckets of key/values (no nested buckets).

pub mod format;
pub mod read;
pub mod write;

pub use read::{BucketRef, Db, Meta, ReadError};
pub use write::{MemSource, Plan, Source, SourceError, Visitor, WriteError, plan, write_db};
