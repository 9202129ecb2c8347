//! The on-disk constants of bbolt's format (`page.go`, `db.go`, `bucket.go`), little-endian as
//! bbolt writes them on every platform etcd ships for.

/// The page size this crate writes (bbolt's default on Linux/amd64).
pub const PAGE_SIZE: usize = 4096;
/// The smallest and largest page sizes the reader accepts.
pub const MIN_PAGE_SIZE: usize = 512;
/// See [`MIN_PAGE_SIZE`].
pub const MAX_PAGE_SIZE: usize = 64 * 1024;

/// `magic` of a meta page.
pub const MAGIC: u32 = 0xED0C_DAED;
/// The data file format version.
pub const VERSION: u32 = 2;

/// A page header: id u64, flags u16, count u16, overflow u32.
pub const PAGE_HEADER_SIZE: usize = 16;
/// A branch element: pos u32, ksize u32, pgid u64.
pub const BRANCH_ELEMENT_SIZE: usize = 16;
/// A leaf element: flags u32, pos u32, ksize u32, vsize u32.
pub const LEAF_ELEMENT_SIZE: usize = 16;
/// A bucket header: root pgid u64, sequence u64.
pub const BUCKET_HEADER_SIZE: usize = 16;
/// The meta struct inside a meta page, checksum included.
pub const META_SIZE: usize = 64;
/// The bytes of the meta struct the checksum covers (everything before it).
pub const META_CHECKSUMMED: usize = 56;

/// Page flag: a branch page.
pub const BRANCH_PAGE: u16 = 0x01;
/// Page flag: a leaf page.
pub const LEAF_PAGE: u16 = 0x02;
/// Page flag: a meta page.
pub const META_PAGE: u16 = 0x04;
/// Page flag: the freelist page.
pub const FREELIST_PAGE: u16 = 0x10;
/// Leaf element flag: the value is a bucket header (a sub-bucket).
pub const BUCKET_LEAF_FLAG: u32 = 0x01;

/// bbolt's largest key.
pub const MAX_KEY_SIZE: usize = 32768;
/// bbolt's largest value.
pub const MAX_VALUE_SIZE: usize = (1 << 31) - 2;

/// The freelist page id meaning "no freelist stored" (bbolt's `NoFreelistSync`).
pub const NO_FREELIST: u64 = u64::MAX;

/// FNV-64a, the meta page checksum.
pub fn fnv64a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Pages needed for `bytes` of page content (at least one).
pub fn pages_for(bytes: usize, page_size: usize) -> usize {
    bytes.div_ceil(page_size).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv64a_matches_the_reference_vectors() {
        assert_eq!(fnv64a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv64a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv64a(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn pages_round_up() {
        assert_eq!(pages_for(0, 4096), 1);
        assert_eq!(pages_for(4096, 4096), 1);
        assert_eq!(pages_for(4097, 4096), 2);
    }
}
