//! Limits every engine honours, so that the contract is the same whichever engine is compiled in.

/// The longest key a bucket accepts, in bytes (LMDB's limit with its default page size).
pub const MAX_KEY_LEN: usize = 511;

/// The largest value a bucket accepts, in bytes (far above etcd's request limits; it bounds
/// what one record of the snapshot format must hold).
pub const MAX_VALUE_LEN: usize = 256 * 1024 * 1024;
