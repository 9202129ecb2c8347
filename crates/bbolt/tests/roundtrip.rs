//! Write → read round trips of the bbolt format, and corrupted files giving errors, not panics.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::io::Cursor;

use bbolt::format::PAGE_SIZE;
use bbolt::{Db, MemSource, ReadError, write_db};
use proptest::prelude::*;

fn read_all(bytes: Vec<u8>) -> Result<MemSource, ReadError> {
    let mut db = Db::open(Cursor::new(bytes))?;
    let mut out = MemSource::new();
    for bucket in db.buckets()? {
        let mut kvs = BTreeMap::new();
        db.for_each::<ReadError>(&bucket, |k, v| {
            kvs.insert(k.to_vec(), v.to_vec());
            Ok(())
        })?;
        out.insert(bucket.name.clone(), kvs);
    }
    Ok(out)
}

fn write(src: &MemSource) -> Vec<u8> {
    let mut out = Vec::new();
    let plan = write_db(src, &mut out).unwrap();
    assert_eq!(out.len() as u64, plan.file_size());
    out
}

/// Every page below the high-water mark is reachable exactly once or free (bbolt's `Tx.Check`).
fn assert_all_pages_accounted(bytes: &[u8]) {
    let pages = bytes.len() / PAGE_SIZE;
    let mut db = Db::open(Cursor::new(bytes.to_vec())).unwrap();
    assert_eq!(db.meta().page_count as usize, pages);
    assert!(db.free_pages().unwrap().is_empty());
    // Walks succeed with each page visited once; counting happens in the reader.
    for b in db.buckets().unwrap() {
        db.for_each::<ReadError>(&b, |_, _| Ok(())).unwrap();
    }
}

#[test]
fn values_larger_than_a_page_use_overflow_pages() {
    let mut src = MemSource::new();
    let b = src.entry(b"key".to_vec()).or_default();
    b.insert(b"big".to_vec(), vec![0xAB; 3 * PAGE_SIZE + 17]);
    b.insert(b"huge".to_vec(), vec![0xCD; 100_000]);
    b.insert(b"small".to_vec(), b"x".to_vec());
    let bytes = write(&src);
    assert_eq!(read_all(bytes.clone()).unwrap(), src);
    assert_all_pages_accounted(&bytes);
}

#[test]
fn many_keys_make_a_multi_level_tree() {
    let mut src = MemSource::new();
    let b = src.entry(b"key".to_vec()).or_default();
    // Long keys: few per branch page, so three or more levels.
    for i in 0..20_000u32 {
        let mut k = vec![b'k'; 200];
        k.extend_from_slice(&i.to_be_bytes());
        b.insert(k, i.to_le_bytes().to_vec());
    }
    let bytes = write(&src);
    assert!(bytes.len() > 1000 * PAGE_SIZE);
    assert_eq!(read_all(bytes.clone()).unwrap(), src);
    assert_all_pages_accounted(&bytes);
}

#[test]
fn empty_buckets_and_an_empty_file() {
    let mut src = MemSource::new();
    src.entry(b"alarm".to_vec()).or_default();
    src.entry(b"members".to_vec()).or_default();
    assert_eq!(read_all(write(&src)).unwrap(), src);
    assert_eq!(
        read_all(write(&MemSource::new())).unwrap(),
        MemSource::new()
    );
}

#[test]
fn many_buckets_give_the_root_bucket_branch_pages() {
    let mut src = MemSource::new();
    for i in 0..500u32 {
        let kvs = src.entry(format!("bucket{i:05}").into_bytes()).or_default();
        kvs.insert(b"k".to_vec(), vec![1; (i % 40) as usize * 30]);
    }
    let bytes = write(&src);
    assert_eq!(read_all(bytes).unwrap(), src);
}

#[test]
fn a_truncated_file_is_an_error() {
    let mut src = MemSource::new();
    src.entry(b"key".to_vec())
        .or_default()
        .insert(b"k".to_vec(), vec![1; 10_000]);
    let bytes = write(&src);
    let cut = bytes[..bytes.len() - PAGE_SIZE].to_vec();
    assert!(matches!(
        Db::open(Cursor::new(cut)),
        Err(ReadError::Truncated { .. })
    ));
}

#[test]
fn a_page_pointing_at_itself_is_an_error_not_a_loop() {
    let mut src = MemSource::new();
    let b = src.entry(b"key".to_vec()).or_default();
    for i in 0..2000u32 {
        b.insert(i.to_be_bytes().to_vec(), vec![0; 20]);
    }
    let mut bytes = write(&src);
    // The bucket's root is the last branch page before the root bucket's leaf (the last page);
    // point its first child at itself.
    let pages = bytes.len() / PAGE_SIZE;
    let branch = pages - 2;
    let at = branch * PAGE_SIZE;
    assert_eq!(bytes[at + 8], 0x01, "expected a branch page");
    bytes[at + 16 + 8..at + 16 + 16].copy_from_slice(&(branch as u64).to_le_bytes());
    assert!(matches!(
        read_all(bytes),
        Err(ReadError::PageReusedInWalk(_))
    ));
}

#[test]
fn a_nested_bucket_is_rejected() {
    let mut src = MemSource::new();
    src.entry(b"key".to_vec())
        .or_default()
        .insert(b"k".to_vec(), b"v".to_vec());
    let mut bytes = write(&src);
    // The inline bucket's page is inside the root leaf (page 3): find its element's flags.
    let root = 3 * PAGE_SIZE;
    let value = root + 16 + 16 + 3; // after the root element and the name "key"
    let inline_page = value + 16;
    bytes[inline_page + 16] = 1; // element 0 flags = bucket
    let err = read_all(bytes).unwrap_err();
    assert!(matches!(err, ReadError::NestedBucket { .. }), "{err}");
}

fn source() -> impl Strategy<Value = MemSource> {
    let value = prop_oneof![
        8 => proptest::collection::vec(any::<u8>(), 0..64),
        1 => proptest::collection::vec(any::<u8>(), 0..3 * PAGE_SIZE),
    ];
    let kvs = proptest::collection::btree_map(
        proptest::collection::vec(any::<u8>(), 1..40),
        value,
        0..300,
    );
    proptest::collection::btree_map(proptest::collection::vec(any::<u8>(), 1..12), kvs, 0..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn write_then_read_gives_the_same_data(src in source()) {
        let bytes = write(&src);
        prop_assert_eq!(read_all(bytes).unwrap(), src);
    }

    #[test]
    fn corrupted_bytes_give_errors_not_panics(
        src in source(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = write(&src);
        for (at, x) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= x | 1;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        // Any outcome but a panic or a hang is fine: damage in values is not detectable.
        let _ = read_all(bytes);
    }

    #[test]
    fn damage_to_structure_is_detected(src in source(), page in any::<prop::sample::Index>(), at in 0usize..8, x in 1u8..) {
        // Damaging a page header (id, flags, count, overflow) of a tree page is reported.
        let mut bytes = write(&src);
        let pages = bytes.len() / PAGE_SIZE;
        let p = 3 + page.index(pages - 3);
        let id_at = p * PAGE_SIZE;
        // Only pages that start a run carry a header.
        prop_assume!(u64::from_le_bytes(bytes[id_at..id_at + 8].try_into().unwrap()) == p as u64);
        bytes[id_at + at] ^= x;
        prop_assert!(read_all(bytes).is_err());
    }
}
