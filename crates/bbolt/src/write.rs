//! Writing a compact bbolt file from buckets of sorted key/values, streamed into any
//! [`io::Write`] in two passes over a [`Source`].
//!
//! The first pass ([`plan`]) reads only the sizes of keys and values and lays out every page:
//! which entries go in which leaf, the branch levels above them, which buckets are inline, and
//! so the page count and the root bucket's page the meta pages name. The second pass
//! ([`Plan::write_to`]) writes the pages in file order: the two meta pages, an empty freelist,
//! each bucket's leaves then its branch levels bottom-up, and last the root bucket's tree.
//!
//! Memory: the plan holds three words per page of the file, and the second pass holds one
//! page's entries, the first key of every page of the level being built (about one key per
//! 4 KiB page of data), and the inline buckets (at most 1 KiB each). Values larger than a page
//! are held whole while their page is written.
//!
//! The source must give the same data to both passes (for example one read transaction);
//! if it does not, [`WriteError::SourceChanged`] is returned and the output is unusable.

use std::io::{self, Write};

use crate::format::{
    BRANCH_ELEMENT_SIZE, BRANCH_PAGE, BUCKET_HEADER_SIZE, BUCKET_LEAF_FLAG, FREELIST_PAGE,
    LEAF_ELEMENT_SIZE, LEAF_PAGE, MAGIC, MAX_KEY_SIZE, MAX_VALUE_SIZE, META_CHECKSUMMED, META_PAGE,
    PAGE_HEADER_SIZE, PAGE_SIZE, VERSION, fnv64a, pages_for,
};

/// The error type a [`Source`] reports its own failures with.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// Called with each key/value of a bucket; an error stops the iteration.
pub type Visitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), WriteError> + 'a;

/// The data to write: top-level buckets, each of key/values. Both methods may be called twice
/// (once per pass) and must return the same data each time.
pub trait Source {
    /// The bucket names, in strictly ascending byte order.
    fn bucket_names(&self) -> Result<Vec<Vec<u8>>, SourceError>;

    /// Calls `visit` with each key/value of `bucket` in strictly ascending key order, stopping
    /// at (and returning) the first error `visit` returns.
    fn for_each(&self, bucket: &[u8], visit: &mut Visitor<'_>) -> Result<(), WriteError>;
}

/// Why a bbolt file could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The output failed.
    #[error("writing the bbolt file: {0}")]
    Io(#[from] io::Error),
    /// The source failed.
    #[error("reading the data to write: {0}")]
    Source(SourceError),
    /// Bucket names out of order, repeated, empty or longer than a key may be.
    #[error("invalid bucket name {0:?} (names must be 1 to 32768 bytes, strictly ascending)")]
    InvalidBucketName(String),
    /// Keys out of order or repeated within a bucket.
    #[error("bucket {bucket:?}: key {key:?} is not after the previous key")]
    UnsortedKeys {
        /// The bucket.
        bucket: String,
        /// The offending key.
        key: String,
    },
    /// An empty key or one longer than bbolt's `MaxKeySize`.
    #[error("bucket {bucket:?}: key of {len} bytes (bbolt takes 1 to 32768)")]
    InvalidKey {
        /// The bucket.
        bucket: String,
        /// The key's length.
        len: usize,
    },
    /// A value longer than bbolt's `MaxValueSize`.
    #[error("bucket {bucket:?}: value of {len} bytes exceeds bbolt's maximum")]
    ValueTooLarge {
        /// The bucket.
        bucket: String,
        /// The value's length.
        len: usize,
    },
    /// The second pass saw different data from the first.
    #[error("bucket {0:?} changed between the planning and the writing pass")]
    SourceChanged(String),
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The layout of one page: entries, bytes of content (header included), and the length of its
/// first key (which its parent branch element repeats).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PagePlan {
    count: usize,
    size: usize,
    first_key_len: usize,
}

/// Greedy packing of elements into pages of at most [`PAGE_SIZE`] bytes (a single element
/// larger than that gets a page of its own, with overflow pages).
#[derive(Default)]
struct Packer {
    pages: Vec<PagePlan>,
    cur: Option<PagePlan>,
}

impl Packer {
    fn add(&mut self, element: usize, key_len: usize) {
        match &mut self.cur {
            Some(cur) if cur.size + element <= PAGE_SIZE => {
                cur.count += 1;
                cur.size += element;
            }
            cur => {
                if let Some(done) = cur.take() {
                    self.pages.push(done);
                }
                *cur = Some(PagePlan {
                    count: 1,
                    size: PAGE_HEADER_SIZE + element,
                    first_key_len: key_len,
                });
            }
        }
    }

    /// The pages; an empty input gives one empty page.
    fn finish(mut self) -> Vec<PagePlan> {
        match self.cur.take() {
            Some(cur) => self.pages.push(cur),
            None if self.pages.is_empty() => self.pages.push(PagePlan {
                count: 0,
                size: PAGE_HEADER_SIZE,
                first_key_len: 0,
            }),
            None => {}
        }
        self.pages
    }
}

/// A B+tree's pages by level: `levels[0]` the leaves, the last level a single root page.
#[derive(Clone, Debug)]
struct TreePlan {
    levels: Vec<Vec<PagePlan>>,
}

impl TreePlan {
    fn new(leaves: Vec<PagePlan>) -> TreePlan {
        let mut levels = vec![leaves];
        while let Some(last) = levels.last().filter(|l| l.len() > 1) {
            let mut packer = Packer::default();
            for child in last {
                packer.add(
                    BRANCH_ELEMENT_SIZE + child.first_key_len,
                    child.first_key_len,
                );
            }
            let next = packer.finish();
            levels.push(next);
        }
        TreePlan { levels }
    }

    fn pages(&self) -> u64 {
        self.levels
            .iter()
            .flatten()
            .map(|p| pages_for(p.size, PAGE_SIZE) as u64)
            .sum()
    }

    /// The leaf's size if the tree is one leaf small enough to be inline (bbolt's
    /// `inlineable`: at most a quarter page).
    fn inline_size(&self) -> Option<usize> {
        match self.levels.as_slice() {
            [leaves] if leaves.len() == 1 && leaves[0].size <= PAGE_SIZE / 4 => {
                Some(leaves[0].size)
            }
            _ => None,
        }
    }

    fn root(&self) -> PagePlan {
        self.levels
            .last()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or(PagePlan {
                count: 0,
                size: PAGE_HEADER_SIZE,
                first_key_len: 0,
            })
    }
}

#[derive(Clone, Debug)]
struct BucketPlan {
    name: Vec<u8>,
    tree: TreePlan,
    inline: bool,
    keys: u64,
}

/// The layout of a whole file, from the first pass: write it with [`Plan::write_to`].
#[derive(Clone, Debug)]
pub struct Plan {
    buckets: Vec<BucketPlan>,
    root: TreePlan,
    page_count: u64,
}

impl Plan {
    /// The number of pages of the file (bbolt's high-water mark `pgid`).
    pub fn page_count(&self) -> u64 {
        self.page_count
    }

    /// The size of the file in bytes.
    pub fn file_size(&self) -> u64 {
        self.page_count * PAGE_SIZE as u64
    }

    /// The number of key/values over all buckets.
    pub fn key_count(&self) -> u64 {
        self.buckets.iter().map(|b| b.keys).sum()
    }

    /// The number of buckets.
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// The second pass: writes the file into `out` (not flushed).
    pub fn write_to(&self, source: &dyn Source, out: &mut dyn Write) -> Result<(), WriteError> {
        let mut pw = PageWriter { out, next: 0 };
        let root_top = self.root.root();
        let meta_root = self.page_count - pages_for(root_top.size, PAGE_SIZE) as u64;
        // bbolt writes transaction `txid`'s meta to page `txid % 2`; page 0 is the newer one.
        pw.write_meta(0, 2, meta_root, self.page_count)?;
        pw.write_meta(1, 1, meta_root, self.page_count)?;
        let mut freelist = vec![0; PAGE_HEADER_SIZE];
        pw.write_page(FREELIST_PAGE, 0, &mut freelist)?;

        let mut root_entries: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(self.buckets.len());
        for bucket in &self.buckets {
            let mut emitter = TreeEmitter::new(&bucket.tree, &bucket.name);
            let mut inline: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            let mut keys = 0u64;
            source.for_each(&bucket.name, &mut |k, v| {
                keys += 1;
                if bucket.inline {
                    inline.push((k.to_vec(), v.to_vec()));
                    if inline.len() > bucket.tree.root().count {
                        return Err(WriteError::SourceChanged(lossy(&bucket.name)));
                    }
                    Ok(())
                } else {
                    emitter.add(&mut pw, 0, k, v)
                }
            })?;
            if keys != bucket.keys {
                return Err(WriteError::SourceChanged(lossy(&bucket.name)));
            }
            let mut value = Vec::new();
            if bucket.inline {
                value.extend_from_slice(&0u64.to_le_bytes());
                value.extend_from_slice(&0u64.to_le_bytes());
                let entries: Vec<(u32, &[u8], &[u8])> = inline
                    .iter()
                    .map(|(k, v)| (0, k.as_slice(), v.as_slice()))
                    .collect();
                let page = leaf_page(&entries);
                if Some(page.len()) != bucket.tree.inline_size() {
                    return Err(WriteError::SourceChanged(lossy(&bucket.name)));
                }
                value.extend_from_slice(&page);
            } else {
                let root = emitter.finish(&mut pw)?;
                value.extend_from_slice(&root.to_le_bytes());
                value.extend_from_slice(&0u64.to_le_bytes());
            }
            root_entries.push((bucket.name.clone(), value));
        }

        let mut emitter = TreeEmitter::new(&self.root, b"<root>");
        for (name, value) in &root_entries {
            emitter.add(&mut pw, BUCKET_LEAF_FLAG, name, value)?;
        }
        let root = emitter.finish(&mut pw)?;
        if root != meta_root || pw.next != self.page_count {
            return Err(WriteError::SourceChanged("<root>".into()));
        }
        Ok(())
    }
}

fn check_entry(bucket: &[u8], prev: Option<&[u8]>, k: &[u8], v: &[u8]) -> Result<(), WriteError> {
    if k.is_empty() || k.len() > MAX_KEY_SIZE {
        return Err(WriteError::InvalidKey {
            bucket: lossy(bucket),
            len: k.len(),
        });
    }
    if v.len() > MAX_VALUE_SIZE {
        return Err(WriteError::ValueTooLarge {
            bucket: lossy(bucket),
            len: v.len(),
        });
    }
    if prev.is_some_and(|p| p >= k) {
        return Err(WriteError::UnsortedKeys {
            bucket: lossy(bucket),
            key: lossy(k),
        });
    }
    Ok(())
}

/// The first pass: validates the source's order and sizes and lays out the file.
pub fn plan(source: &dyn Source) -> Result<Plan, WriteError> {
    let names = source.bucket_names().map_err(WriteError::Source)?;
    let mut buckets: Vec<BucketPlan> = Vec::with_capacity(names.len());
    let mut root = Packer::default();
    for name in names {
        if name.is_empty()
            || name.len() > MAX_KEY_SIZE
            || buckets.last().is_some_and(|b| b.name >= name)
        {
            return Err(WriteError::InvalidBucketName(lossy(&name)));
        }
        let mut packer = Packer::default();
        let mut prev: Option<Vec<u8>> = None;
        let mut keys = 0u64;
        source.for_each(&name, &mut |k, v| {
            check_entry(&name, prev.as_deref(), k, v)?;
            packer.add(LEAF_ELEMENT_SIZE + k.len() + v.len(), k.len());
            keys += 1;
            match &mut prev {
                Some(p) => {
                    p.clear();
                    p.extend_from_slice(k);
                }
                None => prev = Some(k.to_vec()),
            }
            Ok(())
        })?;
        let tree = TreePlan::new(packer.finish());
        let inline = tree.inline_size();
        let value_len = BUCKET_HEADER_SIZE + inline.unwrap_or(0);
        root.add(LEAF_ELEMENT_SIZE + name.len() + value_len, name.len());
        buckets.push(BucketPlan {
            name,
            inline: inline.is_some(),
            tree,
            keys,
        });
    }
    let root = TreePlan::new(root.finish());
    let page_count = 3
        + buckets
            .iter()
            .filter(|b| !b.inline)
            .map(|b| b.tree.pages())
            .sum::<u64>()
        + root.pages();
    Ok(Plan {
        buckets,
        root,
        page_count,
    })
}

/// Plans and writes `source` as a bbolt file into `out` (not flushed); returns the plan (for
/// the page and key counts).
pub fn write_db(source: &dyn Source, out: &mut dyn Write) -> Result<Plan, WriteError> {
    let plan = plan(source)?;
    plan.write_to(source, out)?;
    Ok(plan)
}

/// Pages written so far, in file order.
struct PageWriter<'w> {
    out: &'w mut dyn Write,
    next: u64,
}

impl PageWriter<'_> {
    /// Fills in the header of `content` (which starts with room for it), pads it to whole
    /// pages, writes it at the next page id and returns that id.
    fn write_page(&mut self, flags: u16, count: usize, content: &mut Vec<u8>) -> io::Result<u64> {
        let id = self.next;
        let pages = pages_for(content.len(), PAGE_SIZE);
        let count = u16::try_from(count)
            .map_err(|_| io::Error::other(format!("{count} elements in one page")))?;
        let overflow = u32::try_from(pages - 1)
            .map_err(|_| io::Error::other(format!("a page run of {pages} pages")))?;
        content[0..8].copy_from_slice(&id.to_le_bytes());
        content[8..10].copy_from_slice(&flags.to_le_bytes());
        content[10..12].copy_from_slice(&count.to_le_bytes());
        content[12..16].copy_from_slice(&overflow.to_le_bytes());
        content.resize(pages * PAGE_SIZE, 0);
        self.out.write_all(content)?;
        self.next += pages as u64;
        Ok(id)
    }

    fn write_meta(&mut self, id: u64, txid: u64, root: u64, page_count: u64) -> io::Result<()> {
        let mut page = vec![0; PAGE_HEADER_SIZE];
        page.extend_from_slice(&meta_bytes(root, page_count, txid));
        let written = self.write_page(META_PAGE, 0, &mut page)?;
        debug_assert_eq!(written, id);
        Ok(())
    }
}

/// The 64 bytes of a meta struct (checksum included) for a [`PAGE_SIZE`] file whose
/// freelist is page 2.
fn meta_bytes(root: u64, page_count: u64, txid: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&MAGIC.to_le_bytes());
    m.extend_from_slice(&VERSION.to_le_bytes());
    m.extend_from_slice(&(PAGE_SIZE as u32).to_le_bytes());
    m.extend_from_slice(&0u32.to_le_bytes()); // flags
    m.extend_from_slice(&root.to_le_bytes());
    m.extend_from_slice(&0u64.to_le_bytes()); // root bucket sequence
    m.extend_from_slice(&2u64.to_le_bytes()); // freelist page
    m.extend_from_slice(&page_count.to_le_bytes());
    m.extend_from_slice(&txid.to_le_bytes());
    let sum = fnv64a(&m[..META_CHECKSUMMED]);
    m.extend_from_slice(&sum.to_le_bytes());
    m
}

/// A leaf page's content (header zeroed for [`PageWriter::write_page`], or as an inline
/// bucket's page with id 0).
fn leaf_page(entries: &[(u32, &[u8], &[u8])]) -> Vec<u8> {
    let data: usize = entries.iter().map(|(_, k, v)| k.len() + v.len()).sum();
    let mut page = vec![0; PAGE_HEADER_SIZE + entries.len() * LEAF_ELEMENT_SIZE];
    page.reserve(data);
    page[8..10].copy_from_slice(&LEAF_PAGE.to_le_bytes());
    page[10..12].copy_from_slice(&(entries.len().min(usize::from(u16::MAX)) as u16).to_le_bytes());
    for (i, (flags, k, v)) in entries.iter().enumerate() {
        let elem = PAGE_HEADER_SIZE + i * LEAF_ELEMENT_SIZE;
        let pos = (page.len() - elem) as u32;
        page[elem..elem + 4].copy_from_slice(&flags.to_le_bytes());
        page[elem + 4..elem + 8].copy_from_slice(&pos.to_le_bytes());
        page[elem + 8..elem + 12].copy_from_slice(&(k.len() as u32).to_le_bytes());
        page[elem + 12..elem + 16].copy_from_slice(&(v.len() as u32).to_le_bytes());
        page.extend_from_slice(k);
        page.extend_from_slice(v);
    }
    page
}

/// A branch page's content (header zeroed).
fn branch_page(children: &[(Vec<u8>, u64)]) -> Vec<u8> {
    let mut page = vec![0; PAGE_HEADER_SIZE + children.len() * BRANCH_ELEMENT_SIZE];
    for (i, (k, pgid)) in children.iter().enumerate() {
        let elem = PAGE_HEADER_SIZE + i * BRANCH_ELEMENT_SIZE;
        let pos = (page.len() - elem) as u32;
        page[elem..elem + 4].copy_from_slice(&pos.to_le_bytes());
        page[elem + 4..elem + 8].copy_from_slice(&(k.len() as u32).to_le_bytes());
        page[elem + 8..elem + 16].copy_from_slice(&pgid.to_le_bytes());
        page.extend_from_slice(k);
    }
    page
}

/// Writes one B+tree following its plan: leaves as their entries arrive, then the branch
/// levels bottom-up.
struct TreeEmitter<'p> {
    plan: &'p TreePlan,
    name: &'p [u8],
    leaf: usize,
    cur: Vec<(u32, Vec<u8>, Vec<u8>)>,
    cur_size: usize,
    children: Vec<(Vec<u8>, u64)>,
}

impl<'p> TreeEmitter<'p> {
    fn new(plan: &'p TreePlan, name: &'p [u8]) -> TreeEmitter<'p> {
        TreeEmitter {
            plan,
            name,
            leaf: 0,
            cur: Vec::new(),
            cur_size: PAGE_HEADER_SIZE,
            children: Vec::new(),
        }
    }

    fn changed(&self) -> WriteError {
        WriteError::SourceChanged(lossy(self.name))
    }

    fn add(
        &mut self,
        pw: &mut PageWriter<'_>,
        flags: u32,
        k: &[u8],
        v: &[u8],
    ) -> Result<(), WriteError> {
        let Some(page) = self.plan.levels[0].get(self.leaf).copied() else {
            return Err(self.changed());
        };
        if self.cur.len() >= page.count {
            return Err(self.changed());
        }
        self.cur.push((flags, k.to_vec(), v.to_vec()));
        self.cur_size += LEAF_ELEMENT_SIZE + k.len() + v.len();
        if self.cur.len() == page.count {
            if self.cur_size != page.size {
                return Err(self.changed());
            }
            self.flush_leaf(pw)?;
        }
        Ok(())
    }

    fn flush_leaf(&mut self, pw: &mut PageWriter<'_>) -> Result<(), WriteError> {
        let entries: Vec<(u32, &[u8], &[u8])> = self
            .cur
            .iter()
            .map(|(f, k, v)| (*f, k.as_slice(), v.as_slice()))
            .collect();
        let mut content = leaf_page(&entries);
        let id = pw.write_page(LEAF_PAGE, entries.len(), &mut content)?;
        let first = self.cur.first().map(|e| e.1.clone()).unwrap_or_default();
        self.children.push((first, id));
        self.cur.clear();
        self.cur_size = PAGE_HEADER_SIZE;
        self.leaf += 1;
        Ok(())
    }

    /// Writes what remains (an empty tree's empty leaf, the branch levels) and returns the
    /// root page id.
    fn finish(mut self, pw: &mut PageWriter<'_>) -> Result<u64, WriteError> {
        let leaves = &self.plan.levels[0];
        if self.leaf + 1 == leaves.len() && leaves[self.leaf].count == 0 && self.cur.is_empty() {
            self.flush_leaf(pw)?;
        }
        if self.leaf != leaves.len() || !self.cur.is_empty() {
            return Err(self.changed());
        }
        let mut children = std::mem::take(&mut self.children);
        for level in &self.plan.levels[1..] {
            let mut rest = children.as_slice();
            let mut parents = Vec::with_capacity(level.len());
            for page in level {
                if rest.len() < page.count {
                    return Err(self.changed());
                }
                let (these, tail) = rest.split_at(page.count);
                rest = tail;
                let mut content = branch_page(these);
                if content.len() != page.size {
                    return Err(self.changed());
                }
                let id = pw.write_page(BRANCH_PAGE, these.len(), &mut content)?;
                let first = these.first().map(|c| c.0.clone()).unwrap_or_default();
                parents.push((first, id));
            }
            if !rest.is_empty() {
                return Err(self.changed());
            }
            children = parents;
        }
        match children.as_slice() {
            [(_, root)] => Ok(*root),
            _ => Err(self.changed()),
        }
    }
}

/// An in-memory [`Source`]: bucket name to sorted key/values (for tests and tools).
pub type MemSource =
    std::collections::BTreeMap<Vec<u8>, std::collections::BTreeMap<Vec<u8>, Vec<u8>>>;

impl Source for MemSource {
    fn bucket_names(&self) -> Result<Vec<Vec<u8>>, SourceError> {
        Ok(self.keys().cloned().collect())
    }

    fn for_each(&self, bucket: &[u8], visit: &mut Visitor<'_>) -> Result<(), WriteError> {
        if let Some(kvs) = self.get(bucket) {
            for (k, v) in kvs {
                visit(k, v)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn an_empty_database_is_four_pages() {
        let mut out = Vec::new();
        let plan = write_db(&MemSource::new(), &mut out).unwrap();
        assert_eq!(plan.page_count(), 4);
        assert_eq!(out.len(), 4 * PAGE_SIZE);
    }

    #[test]
    fn small_buckets_are_inline_and_large_ones_are_not() {
        let mut src = MemSource::new();
        src.entry(b"small".to_vec())
            .or_default()
            .insert(b"k".to_vec(), b"v".to_vec());
        let big = src.entry(b"big".to_vec()).or_default();
        for i in 0..1000u32 {
            big.insert(i.to_be_bytes().to_vec(), vec![7; 50]);
        }
        let plan = plan(&src).unwrap();
        let inline: Vec<bool> = plan.buckets.iter().map(|b| b.inline).collect();
        assert_eq!(inline, vec![false, true]);
        assert!(plan.buckets[0].tree.levels.len() >= 2);
    }

    #[test]
    fn long_keys_give_several_branch_levels() {
        let mut src = MemSource::new();
        let big = src.entry(b"key".to_vec()).or_default();
        for i in 0..20_000u32 {
            let mut k = vec![b'k'; 200];
            k.extend_from_slice(&i.to_be_bytes());
            big.insert(k, Vec::new());
        }
        let plan = plan(&src).unwrap();
        let levels = &plan.buckets[0].tree.levels;
        assert!(levels.len() >= 4, "{} levels", levels.len());
        assert_eq!(levels.last().map(Vec::len), Some(1));
        let mut out = Vec::new();
        plan.write_to(&src, &mut out).unwrap();
        assert_eq!(out.len() as u64, plan.file_size());
    }

    #[test]
    fn a_source_that_changes_between_passes_is_detected() {
        struct Growing(std::cell::Cell<u32>);
        impl Source for Growing {
            fn bucket_names(&self) -> Result<Vec<Vec<u8>>, SourceError> {
                Ok(vec![b"b".to_vec()])
            }
            fn for_each(&self, _: &[u8], visit: &mut Visitor<'_>) -> Result<(), WriteError> {
                let n = self.0.get();
                self.0.set(n + 500);
                for i in 0..n + 500 {
                    visit(&i.to_be_bytes(), b"value")?;
                }
                Ok(())
            }
        }
        let src = Growing(std::cell::Cell::new(0));
        let err = write_db(&src, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, WriteError::SourceChanged(_)), "{err}");
    }

    #[test]
    fn unsorted_buckets_are_rejected() {
        struct Bad;
        impl Source for Bad {
            fn bucket_names(&self) -> Result<Vec<Vec<u8>>, SourceError> {
                Ok(vec![b"b".to_vec(), b"a".to_vec()])
            }
            fn for_each(&self, _: &[u8], _: &mut Visitor<'_>) -> Result<(), WriteError> {
                Ok(())
            }
        }
        assert!(matches!(plan(&Bad), Err(WriteError::InvalidBucketName(_))));
    }
}
