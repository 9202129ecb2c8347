//! Buckets: the named keyspaces of a backend (bolt buckets, LMDB databases, RocksDB column
//! families).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Mutex, OnceLock};

use crate::StorageError;

/// At most this many distinct bucket names are ever interned by one process.
const MAX_INTERNED: usize = 1024;

/// A named keyspace inside a backend. Keys inside a bucket are ordered bytewise.
///
/// Bucket names are static: the set of buckets is part of the program (etcd's are listed as
/// associated constants), not of the data.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bucket(&'static str);

impl Bucket {
    /// etcd's `key` bucket: MVCC revisions to encoded key-values.
    pub const KEY: Bucket = Bucket("key");
    /// etcd's `meta` bucket: consistent index, term, compaction marks.
    pub const META: Bucket = Bucket("meta");
    /// etcd's `lease` bucket.
    pub const LEASE: Bucket = Bucket("lease");
    /// etcd's `alarm` bucket.
    pub const ALARM: Bucket = Bucket("alarm");
    /// etcd's `cluster` bucket.
    pub const CLUSTER: Bucket = Bucket("cluster");
    /// etcd's `members` bucket.
    pub const MEMBERS: Bucket = Bucket("members");
    /// etcd's `members_removed` bucket.
    pub const MEMBERS_REMOVED: Bucket = Bucket("members_removed");
    /// etcd's `auth` bucket.
    pub const AUTH: Bucket = Bucket("auth");
    /// etcd's `authUsers` bucket.
    pub const AUTH_USERS: Bucket = Bucket("authUsers");
    /// etcd's `authRoles` bucket.
    pub const AUTH_ROLES: Bucket = Bucket("authRoles");

    /// Every bucket etcd's server uses, in name order.
    pub const ETCD: [Bucket; 10] = [
        Bucket::ALARM,
        Bucket::AUTH,
        Bucket::AUTH_ROLES,
        Bucket::AUTH_USERS,
        Bucket::CLUSTER,
        Bucket::KEY,
        Bucket::LEASE,
        Bucket::MEMBERS,
        Bucket::MEMBERS_REMOVED,
        Bucket::META,
    ];

    /// A bucket with the given name. Names are 1 to 64 bytes of `[A-Za-z0-9_.-]`, checked when
    /// the bucket is created in a backend.
    pub const fn new(name: &'static str) -> Bucket {
        Bucket(name)
    }

    /// The bucket's name.
    pub const fn name(self) -> &'static str {
        self.0
    }

    /// The bucket named `name` as found on disk or in a snapshot: etcd's buckets map to their
    /// constants, any other valid name is interned once for the life of the process.
    pub fn intern(name: &str) -> Result<Bucket, StorageError> {
        if let Some(b) = Bucket::ETCD.iter().find(|b| b.0 == name) {
            return Ok(*b);
        }
        if !Bucket::is_valid_name(name) {
            return Err(StorageError::InvalidBucketName(name.to_owned()));
        }
        static INTERNED: OnceLock<Mutex<BTreeSet<&'static str>>> = OnceLock::new();
        let mut interned = INTERNED
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(existing) = interned.get(name) {
            return Ok(Bucket(existing));
        }
        if interned.len() >= MAX_INTERNED {
            return Err(StorageError::InvalidBucketName(format!(
                "{name} (more than {MAX_INTERNED} distinct bucket names)"
            )));
        }
        let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
        interned.insert(leaked);
        Ok(Bucket(leaked))
    }

    /// Whether the name is one engines can store under (see [`Bucket::new`]).
    pub fn is_valid_name(name: &str) -> bool {
        (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    }
}

impl fmt::Debug for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bucket({:?})", self.0)
    }
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_buckets_are_valid_and_sorted() {
        for b in Bucket::ETCD {
            assert!(Bucket::is_valid_name(b.name()), "{b}");
        }
        let mut sorted = Bucket::ETCD;
        sorted.sort();
        assert_eq!(sorted, Bucket::ETCD);
    }

    #[test]
    fn interning_returns_constants_and_stable_names() -> Result<(), StorageError> {
        assert_eq!(Bucket::intern("key")?, Bucket::KEY);
        let custom = Bucket::intern("custom_bucket")?;
        assert_eq!(custom, Bucket::intern("custom_bucket")?);
        assert_eq!(custom.name(), "custom_bucket");
        assert!(matches!(
            Bucket::intern("bad/name"),
            Err(StorageError::InvalidBucketName(_))
        ));
        Ok(())
    }

    #[test]
    fn invalid_names_are_rejected() {
        assert!(!Bucket::is_valid_name(""));
        assert!(!Bucket::is_valid_name("a/b"));
        assert!(!Bucket::is_valid_name(&"x".repeat(65)));
        assert!(Bucket::is_valid_name(&"x".repeat(64)));
    }
}
