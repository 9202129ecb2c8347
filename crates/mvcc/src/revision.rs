//! Revisions and their on-disk key in the `key` bucket (etcd's `revision` / `BucketKey`).

use std::fmt;

/// The bytes of an encoded revision: 8-byte big-endian main, `_`, 8-byte big-endian sub.
pub const REVISION_LEN: usize = 17;
/// An encoded revision followed by the tombstone mark `t`.
pub const TOMBSTONE_LEN: usize = REVISION_LEN + 1;
const SEPARATOR: u8 = b'_';
const TOMBSTONE_MARK: u8 = b't';

/// A point in the store's history: `main` counts write transactions, `sub` the changes inside
/// one. Ordered by `main`, then `sub`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    /// The revision of the write transaction.
    pub main: i64,
    /// The index of the change inside its transaction.
    pub sub: i64,
}

impl Revision {
    /// The revision `{main, sub}`.
    pub const fn new(main: i64, sub: i64) -> Revision {
        Revision { main, sub }
    }

    /// The 17-byte key this revision is stored under; it sorts as the revision does (for the
    /// non-negative revisions the store uses).
    pub fn to_bytes(self) -> [u8; REVISION_LEN] {
        let mut out = [0u8; REVISION_LEN];
        out[..8].copy_from_slice(&self.main.to_be_bytes());
        out[8] = SEPARATOR;
        out[9..].copy_from_slice(&self.sub.to_be_bytes());
        out
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{} {}}}", self.main, self.sub)
    }
}

/// A decoded key of the `key` bucket: a revision, and whether it marks a deletion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RevisionKey {
    /// The revision of the change.
    pub revision: Revision,
    /// Whether the change deleted the key (a tombstone ends a key's generation).
    pub tombstone: bool,
}

/// A `key` bucket key that is not an encoded revision: the backend holds data this version of
/// the store cannot have written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed revision key of {len} bytes: {reason}")]
pub struct MalformedRevision {
    /// The key's length.
    pub len: usize,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl RevisionKey {
    /// The bytes stored in the `key` bucket: the revision, plus `t` for a tombstone.
    pub fn to_bytes(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(TOMBSTONE_LEN);
        out.extend_from_slice(&self.revision.to_bytes());
        if self.tombstone {
            out.push(TOMBSTONE_MARK);
        }
        out
    }

    /// Decodes a `key` bucket key, rejecting anything that is not exactly an encoded revision
    /// with an optional tombstone mark. Negative revisions are refused: the store never writes
    /// them, and their bytes sort after every valid revision, which would break the ascending
    /// order that restoring the index relies on.
    pub fn from_bytes(bytes: &[u8]) -> Result<RevisionKey, MalformedRevision> {
        let malformed = |reason| MalformedRevision {
            len: bytes.len(),
            reason,
        };
        let tombstone = match bytes.len() {
            REVISION_LEN => false,
            TOMBSTONE_LEN if bytes[REVISION_LEN] == TOMBSTONE_MARK => true,
            TOMBSTONE_LEN => return Err(malformed("unknown mark after the revision")),
            _ => return Err(malformed("wrong length")),
        };
        if bytes[8] != SEPARATOR {
            return Err(malformed("missing '_' separator"));
        }
        let word = |range: std::ops::Range<usize>| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[range]);
            i64::from_be_bytes(b)
        };
        let (main, sub) = (word(0..8), word(9..17));
        if main < 0 || sub < 0 {
            return Err(malformed("negative revision"));
        }
        Ok(RevisionKey {
            revision: Revision::new(main, sub),
            tombstone,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn layout_matches_etcd() {
        let key = RevisionKey {
            revision: Revision::new(5, 2),
            tombstone: true,
        };
        assert_eq!(
            key.to_bytes(),
            b"\x00\x00\x00\x00\x00\x00\x00\x05_\x00\x00\x00\x00\x00\x00\x00\x02t"
        );
        assert_eq!(Revision::new(5, 2).to_string(), "{5 2}");
    }

    #[test]
    fn malformed_keys_are_rejected() {
        let good = Revision::new(1, 0).to_bytes();
        assert!(RevisionKey::from_bytes(&good[..16]).is_err());
        let mut bad_sep = good;
        bad_sep[8] = b'-';
        assert!(RevisionKey::from_bytes(&bad_sep).is_err());
        let mut bad_mark = good.to_vec();
        bad_mark.push(b'x');
        assert!(RevisionKey::from_bytes(&bad_mark).is_err());
        assert!(RevisionKey::from_bytes(b"").is_err());
    }

    fn revision() -> impl Strategy<Value = Revision> {
        (0..=i64::MAX, 0..=i64::MAX).prop_map(|(main, sub)| Revision::new(main, sub))
    }

    proptest! {
        #[test]
        fn encoding_round_trips(rev in revision(), tombstone: bool) {
            let key = RevisionKey { revision: rev, tombstone };
            prop_assert_eq!(RevisionKey::from_bytes(&key.to_bytes()), Ok(key));
        }

        #[test]
        fn encoded_order_is_revision_order(a in revision(), b in revision(), ta: bool, tb: bool) {
            let ka = RevisionKey { revision: a, tombstone: ta }.to_bytes();
            let kb = RevisionKey { revision: b, tombstone: tb }.to_bytes();
            if a != b {
                prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
            } else {
                // A revision's tombstone sorts right after it.
                prop_assert_eq!(ka.cmp(&kb), ta.cmp(&tb));
            }
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = RevisionKey::from_bytes(&bytes);
        }
    }
}
