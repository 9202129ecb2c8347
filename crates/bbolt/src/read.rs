//! Reading and validating a bbolt file: [`Db::open`] checks the meta pages, then
//! [`Db::buckets`] and [`Db::for_each`] walk the B+trees, checking every page id, page type and
//! element bound on the way.
//!
//! Corrupt input gives a [`ReadError`], never a panic or an endless walk: each page is visited
//! at most once per walk (a page reached twice is an error), page runs must lie inside the
//! high-water mark and the file, and keys must ascend.

use std::io::{self, Read, Seek, SeekFrom};

use crate::format::{
    BRANCH_ELEMENT_SIZE, BRANCH_PAGE, BUCKET_HEADER_SIZE, BUCKET_LEAF_FLAG, FREELIST_PAGE,
    LEAF_ELEMENT_SIZE, LEAF_PAGE, MAGIC, MAX_PAGE_SIZE, META_CHECKSUMMED, META_PAGE, META_SIZE,
    MIN_PAGE_SIZE, NO_FREELIST, PAGE_HEADER_SIZE, PAGE_SIZE, VERSION, fnv64a,
};

/// Why a file is not a readable bbolt database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// Reading the file failed.
    #[error("reading the bbolt file: {0}")]
    Io(#[from] io::Error),
    /// The file is shorter than its meta pages.
    #[error("file of {0} bytes is too small to be a bbolt database")]
    TooSmall(u64),
    /// Neither meta page is valid.
    #[error("no valid meta page: page 0: {meta0}; page 1: {meta1}")]
    InvalidMeta {
        /// Why meta page 0 was rejected.
        meta0: String,
        /// Why meta page 1 was rejected.
        meta1: String,
    },
    /// The meta's high-water mark says the file holds more pages than it does.
    #[error("meta says {pages} pages of {page_size} bytes but the file has {file_len} bytes")]
    Truncated {
        /// The meta's page count.
        pages: u64,
        /// The page size.
        page_size: usize,
        /// The file's length.
        file_len: u64,
    },
    /// A page id (or its overflow run) at or past the high-water mark.
    #[error(
        "page {page} (with {overflow} overflow pages) is past the high-water mark {high_water}"
    )]
    PageOutOfBounds {
        /// The page id.
        page: u64,
        /// Its overflow count.
        overflow: u64,
        /// The meta's page count.
        high_water: u64,
    },
    /// A page whose header names another id.
    #[error("page {page} says it is page {found}")]
    PageIdMismatch {
        /// Where it was read.
        page: u64,
        /// The id in its header.
        found: u64,
    },
    /// A page of the wrong type for its place in the file.
    #[error("page {page} has flags {flags:#x}, expected {expected}")]
    UnexpectedPageType {
        /// The page id.
        page: u64,
        /// Its flags.
        flags: u16,
        /// What was expected.
        expected: &'static str,
    },
    /// An element, key or value reaching past its page.
    #[error("page {page}: element {index} lies outside the page")]
    ElementOutOfBounds {
        /// The page id (0 for an inline bucket's page).
        page: u64,
        /// The element's index.
        index: usize,
    },
    /// A page reached twice in one walk (a cycle or a shared subtree).
    #[error("page {0} is referenced more than once")]
    PageReusedInWalk(u64),
    /// Keys that do not ascend within a bucket.
    #[error("bucket {bucket:?}: keys out of order at {key:?}")]
    UnsortedKeys {
        /// The bucket.
        bucket: String,
        /// The first key out of order.
        key: String,
    },
    /// A bucket inside a bucket, which etcd never creates and this reader does not support.
    #[error("bucket {bucket:?} holds a nested bucket {key:?} (nested buckets are not supported)")]
    NestedBucket {
        /// The outer bucket.
        bucket: String,
        /// The nested bucket's name.
        key: String,
    },
    /// A plain key/value at the top level, where bbolt only keeps buckets.
    #[error("top-level key {0:?} is not a bucket")]
    NotABucket(String),
    /// A bucket header shorter than 16 bytes.
    #[error("bucket {0:?} has a damaged header")]
    InvalidBucketHeader(String),
    /// A damaged freelist page.
    #[error("damaged freelist: {0}")]
    InvalidFreelist(String),
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The current meta page's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// The page size of the file.
    pub page_size: usize,
    /// The root bucket's root page.
    pub root: u64,
    /// The freelist page (or [`NO_FREELIST`]).
    pub freelist: u64,
    /// The high-water mark: the number of pages in use.
    pub page_count: u64,
    /// The id of the last committed transaction.
    pub txid: u64,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    let mut a = [0; 2];
    a.copy_from_slice(&b[at..at + 2]);
    u16::from_le_bytes(a)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Parses the meta struct of a meta page (`page` holds at least header + meta).
fn parse_meta(page: &[u8], id: u64) -> Result<Meta, String> {
    if page.len() < PAGE_HEADER_SIZE + META_SIZE {
        return Err("truncated".into());
    }
    let flags = u16_at(page, 8);
    if flags & META_PAGE == 0 {
        return Err(format!("not a meta page (flags {flags:#x})"));
    }
    if u64_at(page, 0) != id {
        return Err(format!("page header says page {}", u64_at(page, 0)));
    }
    let m = &page[PAGE_HEADER_SIZE..PAGE_HEADER_SIZE + META_SIZE];
    if u32_at(m, 0) != MAGIC {
        return Err("bad magic (not a bbolt file)".into());
    }
    if u32_at(m, 4) != VERSION {
        return Err(format!("unsupported version {}", u32_at(m, 4)));
    }
    if u64_at(m, META_CHECKSUMMED) != fnv64a(&m[..META_CHECKSUMMED]) {
        return Err("checksum mismatch".into());
    }
    let page_size = u32_at(m, 8) as usize;
    if !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(format!("invalid page size {page_size}"));
    }
    Ok(Meta {
        page_size,
        root: u64_at(m, 16),
        freelist: u64_at(m, 32),
        page_count: u64_at(m, 40),
        txid: u64_at(m, 48),
    })
}

/// Where a bucket's tree is: its root page, or its inline leaf page (inside the root bucket).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Root {
    Page(u64),
    Inline(Vec<u8>),
}

/// A top-level bucket found by [`Db::buckets`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketRef {
    /// The bucket's name.
    pub name: Vec<u8>,
    root: Root,
}

impl BucketRef {
    /// Whether the bucket is stored inline in the root bucket.
    pub fn is_inline(&self) -> bool {
        matches!(self.root, Root::Inline(_))
    }
}

/// One leaf element, borrowed from its page.
struct LeafEntry<'a> {
    flags: u32,
    key: &'a [u8],
    value: &'a [u8],
}

/// The elements of a leaf page (`page` is the whole run, or an inline page).
fn leaf_entries(page: &[u8], id: u64) -> Result<Vec<LeafEntry<'_>>, ReadError> {
    let count = usize::from(u16_at(page, 10));
    let mut out = Vec::with_capacity(count);
    for index in 0..count {
        let elem = PAGE_HEADER_SIZE + index * LEAF_ELEMENT_SIZE;
        let oob = || ReadError::ElementOutOfBounds { page: id, index };
        if elem + LEAF_ELEMENT_SIZE > page.len() {
            return Err(oob());
        }
        let flags = u32_at(page, elem);
        let pos = u32_at(page, elem + 4) as usize;
        let ksize = u32_at(page, elem + 8) as usize;
        let vsize = u32_at(page, elem + 12) as usize;
        let kstart = elem.checked_add(pos).ok_or_else(oob)?;
        let kend = kstart.checked_add(ksize).ok_or_else(oob)?;
        let vend = kend.checked_add(vsize).ok_or_else(oob)?;
        if vend > page.len() {
            return Err(oob());
        }
        out.push(LeafEntry {
            flags,
            key: &page[kstart..kend],
            value: &page[kend..vend],
        });
    }
    Ok(out)
}

/// The child page ids of a branch page, in key order.
fn branch_children(page: &[u8], id: u64) -> Result<Vec<u64>, ReadError> {
    let count = usize::from(u16_at(page, 10));
    let mut out = Vec::with_capacity(count);
    for index in 0..count {
        let elem = PAGE_HEADER_SIZE + index * BRANCH_ELEMENT_SIZE;
        let oob = || ReadError::ElementOutOfBounds { page: id, index };
        if elem + BRANCH_ELEMENT_SIZE > page.len() {
            return Err(oob());
        }
        let pos = u32_at(page, elem) as usize;
        let ksize = u32_at(page, elem + 4) as usize;
        let end = elem
            .checked_add(pos)
            .and_then(|s| s.checked_add(ksize))
            .ok_or_else(oob)?;
        if end > page.len() {
            return Err(oob());
        }
        out.push(u64_at(page, elem + 8));
    }
    Ok(out)
}

/// An open bbolt file.
#[derive(Debug)]
pub struct Db<R> {
    file: R,
    file_len: u64,
    meta: Meta,
}

impl<R: Read + Seek> Db<R> {
    /// Opens the whole of `file`.
    pub fn open(mut file: R) -> Result<Db<R>, ReadError> {
        let len = file.seek(SeekFrom::End(0))?;
        Db::open_with_len(file, len)
    }

    /// Opens the first `len` bytes of `file` (an etcd snapshot is followed by its SHA-256).
    /// Uses the valid meta page with the higher transaction id, as bbolt does.
    pub fn open_with_len(mut file: R, len: u64) -> Result<Db<R>, ReadError> {
        if len < 2 * MIN_PAGE_SIZE as u64 {
            return Err(ReadError::TooSmall(len));
        }
        let mut head = vec![0; PAGE_HEADER_SIZE + META_SIZE];
        file.seek(SeekFrom::Start(0))?;
        file.read_exact(&mut head)?;
        let meta0 = parse_meta(&head, 0);
        // Page 1 sits one page in: the page size meta 0 states, else bbolt's default.
        let page_size = meta0.as_ref().map_or(PAGE_SIZE, |m| m.page_size);
        let meta1 = if len >= (2 * page_size) as u64 {
            file.seek(SeekFrom::Start(page_size as u64))?;
            file.read_exact(&mut head)?;
            parse_meta(&head, 1).and_then(|m| {
                if m.page_size == page_size {
                    Ok(m)
                } else {
                    Err(format!("page size {} differs from meta 0's", m.page_size))
                }
            })
        } else {
            Err("past the end of the file".into())
        };
        let meta = match (meta0, meta1) {
            (Ok(a), Ok(b)) => {
                if b.txid > a.txid {
                    b
                } else {
                    a
                }
            }
            (Ok(m), Err(_)) | (Err(_), Ok(m)) => m,
            (Err(meta0), Err(meta1)) => return Err(ReadError::InvalidMeta { meta0, meta1 }),
        };
        let needed = meta.page_count.checked_mul(meta.page_size as u64);
        if meta.page_count < 3 || needed.is_none_or(|n| n > len) {
            return Err(ReadError::Truncated {
                pages: meta.page_count,
                page_size: meta.page_size,
                file_len: len,
            });
        }
        Ok(Db {
            file,
            file_len: len,
            meta,
        })
    }

    /// The current meta page.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The database's size as bbolt's `Tx.Size` reports it: page count times page size.
    pub fn size(&self) -> u64 {
        self.meta.page_count * self.meta.page_size as u64
    }

    /// Reads page `id` and its overflow run, checking bounds and the header's id.
    fn read_page(&mut self, id: u64) -> Result<Vec<u8>, ReadError> {
        let high_water = self.meta.page_count;
        let ps = self.meta.page_size as u64;
        if id >= high_water {
            return Err(ReadError::PageOutOfBounds {
                page: id,
                overflow: 0,
                high_water,
            });
        }
        let mut header = [0u8; PAGE_HEADER_SIZE];
        self.file.seek(SeekFrom::Start(id * ps))?;
        self.file.read_exact(&mut header)?;
        let found = u64_at(&header, 0);
        if found != id {
            return Err(ReadError::PageIdMismatch { page: id, found });
        }
        let overflow = u64::from(u32_at(&header, 12));
        let end = id + overflow + 1;
        if end > high_water || end * ps > self.file_len {
            return Err(ReadError::PageOutOfBounds {
                page: id,
                overflow,
                high_water,
            });
        }
        let len = usize::try_from((overflow + 1) * ps).map_err(|_| ReadError::PageOutOfBounds {
            page: id,
            overflow,
            high_water,
        })?;
        let mut page = vec![0; len];
        page[..PAGE_HEADER_SIZE].copy_from_slice(&header);
        self.file.read_exact(&mut page[PAGE_HEADER_SIZE..])?;
        Ok(page)
    }

    /// The ids of the free pages the freelist page records (empty when the file keeps no
    /// freelist).
    pub fn free_pages(&mut self) -> Result<Vec<u64>, ReadError> {
        if self.meta.freelist == NO_FREELIST {
            return Ok(Vec::new());
        }
        let id = self.meta.freelist;
        let page = self.read_page(id)?;
        let flags = u16_at(&page, 8);
        if flags & FREELIST_PAGE == 0 {
            return Err(ReadError::UnexpectedPageType {
                page: id,
                flags,
                expected: "freelist",
            });
        }
        let mut count = usize::from(u16_at(&page, 10));
        let mut start = PAGE_HEADER_SIZE;
        if count == 0xFFFF {
            let n = u64_at(&page, PAGE_HEADER_SIZE);
            count =
                usize::try_from(n).map_err(|_| ReadError::InvalidFreelist(format!("count {n}")))?;
            start += 8;
        }
        let end = count
            .checked_mul(8)
            .and_then(|n| n.checked_add(start))
            .filter(|&e| e <= page.len())
            .ok_or_else(|| ReadError::InvalidFreelist(format!("{count} ids overflow the page")))?;
        Ok(page[start..end]
            .chunks_exact(8)
            .map(|c| u64_at(c, 0))
            .collect())
    }

    /// Walks the tree rooted at `root` in key order, calling `visit` with each leaf element.
    fn walk(
        &mut self,
        root: &Root,
        visit: &mut dyn FnMut(&LeafEntry<'_>) -> Result<(), ReadError>,
    ) -> Result<(), ReadError> {
        let root_page = match root {
            Root::Inline(page) => {
                if page.len() < PAGE_HEADER_SIZE {
                    return Err(ReadError::ElementOutOfBounds { page: 0, index: 0 });
                }
                let flags = u16_at(page, 8);
                if flags & LEAF_PAGE == 0 {
                    return Err(ReadError::UnexpectedPageType {
                        page: 0,
                        flags,
                        expected: "an inline leaf",
                    });
                }
                for e in leaf_entries(page, 0)? {
                    visit(&e)?;
                }
                return Ok(());
            }
            Root::Page(id) => *id,
        };
        let mut seen = vec![false; usize::try_from(self.meta.page_count).unwrap_or(usize::MAX)];
        let mut stack = vec![root_page];
        while let Some(id) = stack.pop() {
            // Pages 0 and 1 are the metas, never tree pages.
            let slot = usize::try_from(id).ok().filter(|&i| i < seen.len()).ok_or(
                ReadError::PageOutOfBounds {
                    page: id,
                    overflow: 0,
                    high_water: self.meta.page_count,
                },
            )?;
            if id < 2 || seen[slot] {
                return Err(ReadError::PageReusedInWalk(id));
            }
            seen[slot] = true;
            let page = self.read_page(id)?;
            let flags = u16_at(&page, 8);
            if flags & BRANCH_PAGE != 0 {
                let children = branch_children(&page, id)?;
                stack.extend(children.into_iter().rev());
            } else if flags & LEAF_PAGE != 0 {
                for e in leaf_entries(&page, id)? {
                    visit(&e)?;
                }
            } else {
                return Err(ReadError::UnexpectedPageType {
                    page: id,
                    flags,
                    expected: "branch or leaf",
                });
            }
        }
        Ok(())
    }

    /// The top-level buckets in name order.
    pub fn buckets(&mut self) -> Result<Vec<BucketRef>, ReadError> {
        let mut out: Vec<BucketRef> = Vec::new();
        let root = Root::Page(self.meta.root);
        self.walk(&root, &mut |e| {
            if e.flags & BUCKET_LEAF_FLAG == 0 {
                return Err(ReadError::NotABucket(lossy(e.key)));
            }
            if out.last().is_some_and(|b| b.name.as_slice() >= e.key) {
                return Err(ReadError::UnsortedKeys {
                    bucket: String::new(),
                    key: lossy(e.key),
                });
            }
            if e.value.len() < BUCKET_HEADER_SIZE {
                return Err(ReadError::InvalidBucketHeader(lossy(e.key)));
            }
            let root = match u64_at(e.value, 0) {
                0 => Root::Inline(e.value[BUCKET_HEADER_SIZE..].to_vec()),
                page => Root::Page(page),
            };
            out.push(BucketRef {
                name: e.key.to_vec(),
                root,
            });
            Ok(())
        })?;
        Ok(out)
    }

    /// Calls `visit` with every key/value of `bucket` in key order; stops at the first error,
    /// its own or `visit`'s.
    pub fn for_each<E: From<ReadError>>(
        &mut self,
        bucket: &BucketRef,
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut prev: Option<Vec<u8>> = None;
        let mut failed: Option<E> = None;
        let result = self.walk(&bucket.root, &mut |e| {
            if e.flags & BUCKET_LEAF_FLAG != 0 {
                return Err(ReadError::NestedBucket {
                    bucket: lossy(&bucket.name),
                    key: lossy(e.key),
                });
            }
            if prev.as_deref().is_some_and(|p| p >= e.key) {
                return Err(ReadError::UnsortedKeys {
                    bucket: lossy(&bucket.name),
                    key: lossy(e.key),
                });
            }
            match &mut prev {
                Some(p) => {
                    p.clear();
                    p.extend_from_slice(e.key);
                }
                None => prev = Some(e.key.to_vec()),
            }
            visit(e.key, e.value).map_err(|err| {
                failed = Some(err);
                // A marker: the caller's own error is returned below.
                ReadError::PageReusedInWalk(u64::MAX)
            })
        });
        if let Some(err) = failed {
            return Err(err);
        }
        result.map_err(E::from)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Cursor;

    use super::*;
    use crate::write::{MemSource, write_db};

    #[test]
    fn reads_back_what_was_written() {
        let mut src = MemSource::new();
        src.entry(b"a".to_vec())
            .or_default()
            .insert(b"k".to_vec(), b"v".to_vec());
        src.entry(b"empty".to_vec()).or_default();
        let mut out = Vec::new();
        write_db(&src, &mut out).unwrap();
        let mut db = Db::open(Cursor::new(out)).unwrap();
        assert_eq!(db.meta().page_count, 4);
        let buckets = db.buckets().unwrap();
        assert_eq!(buckets.len(), 2);
        assert!(buckets.iter().all(BucketRef::is_inline));
        let mut kvs = Vec::new();
        db.for_each::<ReadError>(&buckets[0], |k, v| {
            kvs.push((k.to_vec(), v.to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(kvs, vec![(b"k".to_vec(), b"v".to_vec())]);
        assert!(db.free_pages().unwrap().is_empty());
    }

    #[test]
    fn a_bad_magic_is_rejected() {
        let mut out = Vec::new();
        write_db(&MemSource::new(), &mut out).unwrap();
        out[16] ^= 1;
        out[4096 + 16] ^= 1;
        let err = Db::open(Cursor::new(out)).unwrap_err();
        assert!(err.to_string().contains("magic"), "{err}");
    }

    #[test]
    fn one_damaged_meta_falls_back_to_the_other() {
        let mut out = Vec::new();
        write_db(&MemSource::new(), &mut out).unwrap();
        out[16 + 20] ^= 1; // meta 0's root page: checksum mismatch
        let db = Db::open(Cursor::new(out)).unwrap();
        assert_eq!(db.meta().txid, 1);
    }
}
