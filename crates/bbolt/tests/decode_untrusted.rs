//! The bbolt reader (`ferrocdutl snapshot restore`'s input) on damage the existing round-trip
//! tests do not reach: meta pages rewritten with arbitrary fields under a *valid* checksum
//! (so the damage gets past `Db::open` into the tree walks), and page headers (id, flags,
//! count, overflow) rewritten anywhere. Every walk ends with the data or an error, never a
//! panic, an endless walk or an allocation the file does not back. (Also under `cargo fuzz`:
//! see `fuzz/`.)

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::io::Cursor;

use bbolt::format::{META_CHECKSUMMED, PAGE_HEADER_SIZE, PAGE_SIZE, fnv64a};
use bbolt::{Db, MemSource, ReadError, write_db};
use proptest::prelude::*;

fn source() -> MemSource {
    let mut src = MemSource::new();
    for b in 0..4u8 {
        let mut kvs = BTreeMap::new();
        for i in 0..(40 * usize::from(b) + 3) {
            let value = vec![b; if i % 17 == 0 { 5000 } else { i % 50 }];
            kvs.insert(format!("key-{i:05}").into_bytes(), value);
        }
        src.insert(format!("bucket-{b}").into_bytes(), kvs);
    }
    src
}

fn file() -> Vec<u8> {
    let mut out = Vec::new();
    write_db(&source(), &mut out).unwrap();
    out
}

fn read_all(bytes: Vec<u8>) -> Result<MemSource, ReadError> {
    let len = bytes.len();
    let mut db = Db::open(Cursor::new(bytes))?;
    let _ = db.free_pages();
    let mut out = MemSource::new();
    let mut entries = 0usize;
    for bucket in db.buckets()? {
        let mut kvs = BTreeMap::new();
        db.for_each::<ReadError>(&bucket, |k, v| {
            entries += 1;
            assert!(entries <= len, "more entries than the file has bytes");
            kvs.insert(k.to_vec(), v.to_vec());
            Ok(())
        })?;
        out.insert(bucket.name.clone(), kvs);
    }
    Ok(out)
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Rewrites meta page `id`'s checksum to match its (possibly damaged) fields.
fn reseal_meta(bytes: &mut [u8], id: usize) {
    let m = id * PAGE_SIZE + PAGE_HEADER_SIZE;
    let sum = fnv64a(&bytes[m..m + META_CHECKSUMMED]);
    put_u64(bytes, m + META_CHECKSUMMED, sum);
}

#[test]
fn the_undamaged_file_reads_back() {
    assert_eq!(read_all(file()).unwrap(), source());
}

/// A meta field: root (16), freelist (32), page count (40), txid (48).
fn meta_field() -> impl Strategy<Value = usize> {
    prop_oneof![Just(16usize), Just(32), Just(40), Just(48)]
}

/// An interesting page id or count: small ones point into the file.
fn page_number() -> impl Strategy<Value = u64> {
    prop_oneof![0..64u64, any::<u64>(), Just(u64::MAX), Just(u64::MAX - 1)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Meta fields set to anything, checksum kept valid: the reader must not trust them.
    #[test]
    fn resealed_meta_fields_give_data_or_errors(
        edits in proptest::collection::vec((0..2usize, meta_field(), page_number()), 1..4),
    ) {
        let mut bytes = file();
        for (id, field, value) in &edits {
            put_u64(&mut bytes, id * PAGE_SIZE + PAGE_HEADER_SIZE + field, *value);
            reseal_meta(&mut bytes, *id);
        }
        let _ = read_all(bytes);
    }

    /// Page headers rewritten anywhere: id (0), flags (8), count (10), overflow (12).
    #[test]
    fn rewritten_page_headers_give_data_or_errors(
        edits in proptest::collection::vec((2..40usize, 0..4usize, any::<u64>()), 1..6),
    ) {
        let mut bytes = file();
        let pages = bytes.len() / PAGE_SIZE;
        for (page, field, value) in &edits {
            let at = (page % pages) * PAGE_SIZE;
            match field {
                0 => put_u64(&mut bytes, at, *value % 64),
                1 => bytes[at + 8..at + 10].copy_from_slice(&(*value as u16).to_le_bytes()),
                2 => bytes[at + 10..at + 12].copy_from_slice(&(*value as u16).to_le_bytes()),
                _ => bytes[at + 12..at + 16].copy_from_slice(&(*value as u32).to_le_bytes()),
            }
        }
        let _ = read_all(bytes);
    }

    /// Element headers of leaf and branch pages (position, flags, sizes) rewritten, so keys and
    /// values point anywhere, including past the page and the file.
    #[test]
    fn rewritten_elements_give_data_or_errors(
        edits in proptest::collection::vec((2..40usize, 0..8usize, any::<u32>()), 1..6),
    ) {
        let mut bytes = file();
        let pages = bytes.len() / PAGE_SIZE;
        for (page, element, value) in &edits {
            let at = (page % pages) * PAGE_SIZE + PAGE_HEADER_SIZE + (element / 4) * 16 + (element % 4) * 4;
            bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
        }
        let _ = read_all(bytes);
    }
}
