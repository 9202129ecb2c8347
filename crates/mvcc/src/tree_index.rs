//! The in-memory index of every key (etcd's `treeIndex`): key → [`KeyIndex`], ordered by key,
//! behind a reader-writer lock.

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::RwLock;

use crate::Revision;
use crate::key_index::{KeyIndex, KeyRevision, RevisionNotFound};

/// How many keys index compaction handles per hold of the write lock, so writers are not held
/// up for the whole pass.
const COMPACT_CHUNK_KEYS: usize = 10_000;

/// The keys a range covers, from etcd's `(key, end)` convention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySpan<'a> {
    /// Only `key` (`end` is `None`).
    Single(&'a [u8]),
    /// `start <= key < end`.
    Bounded(&'a [u8], &'a [u8]),
    /// Every key `>= start` (`end` is `[0]`, or empty as etcd's mvcc layer receives it).
    From(&'a [u8]),
}

impl<'a> KeySpan<'a> {
    /// The span of etcd's `(key, end)`: `None` is the single key, `[0]` or an empty end every key
    /// from `key` on, anything else `[key, end)`.
    pub fn new(key: &'a [u8], end: Option<&'a [u8]>) -> KeySpan<'a> {
        match end {
            None => KeySpan::Single(key),
            Some(e) if e.is_empty() || e == [0] => KeySpan::From(key),
            Some(e) => KeySpan::Bounded(key, e),
        }
    }

    /// Whether `k` lies in the span.
    pub fn contains(&self, k: &[u8]) -> bool {
        match *self {
            KeySpan::Single(key) => k == key,
            KeySpan::Bounded(start, end) => start <= k && k < end,
            KeySpan::From(start) => start <= k,
        }
    }

    fn bounds(&self) -> Option<KeyBounds<'a>> {
        match *self {
            KeySpan::Single(key) => Some((Bound::Included(key), Bound::Included(key))),
            KeySpan::Bounded(start, end) if start < end => {
                Some((Bound::Included(start), Bound::Excluded(end)))
            }
            KeySpan::Bounded(..) => None,
            KeySpan::From(start) => Some((Bound::Included(start), Bound::Unbounded)),
        }
    }
}

/// The `BTreeMap` bounds of a span.
type KeyBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// Every key's revisions, ordered by key.
#[derive(Debug, Default)]
pub struct TreeIndex {
    tree: RwLock<BTreeMap<Vec<u8>, KeyIndex>>,
    /// How many keys are live (their last generation holds a revision), kept as they change
    /// (etcd's `keysGauge`, which a delete decrements).
    live: AtomicUsize,
}

/// Whether `ki`'s key exists now: its last generation holds a revision.
fn is_live(ki: &KeyIndex) -> bool {
    ki.generations().last().is_some_and(|g| !g.is_empty())
}

impl TreeIndex {
    /// An empty index.
    pub fn new() -> TreeIndex {
        TreeIndex::default()
    }

    /// How many keys the index holds (live or with history).
    pub fn len(&self) -> usize {
        self.tree.read().len()
    }

    /// How many keys exist now (deleted keys, kept until compaction, left out).
    pub fn live_len(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Counts a key's change from live `before` to live `after`.
    fn account(&self, before: bool, after: bool) {
        match (before, after) {
            (false, true) => {
                self.live.fetch_add(1, Ordering::Relaxed);
            }
            (true, false) => {
                self.live.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// Whether the index holds no key.
    pub fn is_empty(&self) -> bool {
        self.tree.read().is_empty()
    }

    /// Records a put of `key` at `rev`.
    pub fn put(&self, key: &[u8], rev: Revision) {
        let mut tree = self.tree.write();
        if let Some(ki) = tree.get_mut(key) {
            let before = is_live(ki);
            ki.put(rev.main, rev.sub);
            self.account(before, is_live(ki));
        } else {
            let mut ki = KeyIndex::new(key);
            ki.put(rev.main, rev.sub);
            self.account(false, is_live(&ki));
            tree.insert(key.to_vec(), ki);
        }
    }

    /// Records the deletion of `key` at `rev`; fails when the key is not live.
    pub fn tombstone(&self, key: &[u8], rev: Revision) -> Result<(), RevisionNotFound> {
        let mut tree = self.tree.write();
        let ki = tree.get_mut(key).ok_or(RevisionNotFound)?;
        let before = is_live(ki);
        let done = ki.tombstone(rev.main, rev.sub);
        self.account(before, is_live(ki));
        done
    }

    /// Where `key` stood at `at_rev`, if it existed then.
    pub fn get(&self, key: &[u8], at_rev: i64) -> Option<KeyRevision> {
        self.tree.read().get(key)?.get(at_rev)
    }

    /// A copy of `key`'s index.
    pub fn key_index(&self, key: &[u8]) -> Option<KeyIndex> {
        self.tree.read().get(key).cloned()
    }

    /// Calls `visit` for each key index of the span, in key order, until it returns `false`.
    fn visit(&self, span: KeySpan<'_>, mut visit: impl FnMut(&KeyIndex) -> bool) {
        let Some(bounds) = span.bounds() else {
            return;
        };
        let tree = self.tree.read();
        for (_, ki) in tree.range::<[u8], _>(bounds) {
            if !visit(ki) {
                return;
            }
        }
    }

    /// The keys of the span that existed at `at_rev`, with their revision then.
    pub fn range(&self, span: KeySpan<'_>, at_rev: i64) -> Vec<(Vec<u8>, Revision)> {
        let mut out = Vec::new();
        self.visit(span, |ki| {
            if let Some(kr) = ki.get(at_rev) {
                out.push((ki.key().to_vec(), kr.modified));
            }
            true
        });
        out
    }

    /// The revisions of the span's keys at `at_rev` (at most `limit` of them, 0: all), and how
    /// many keys of the span existed then in total.
    pub fn revisions(
        &self,
        span: KeySpan<'_>,
        at_rev: i64,
        limit: usize,
    ) -> (Vec<Revision>, usize) {
        let mut revs = Vec::new();
        let mut total = 0;
        self.visit(span, |ki| {
            if let Some(kr) = ki.get(at_rev) {
                if limit == 0 || revs.len() < limit {
                    revs.push(kr.modified);
                }
                total += 1;
            }
            true
        });
        (revs, total)
    }

    /// How many keys of the span existed at `at_rev`.
    pub fn count_revisions(&self, span: KeySpan<'_>, at_rev: i64) -> usize {
        let mut total = 0;
        self.visit(span, |ki| {
            if ki.get(at_rev).is_some() {
                total += 1;
            }
            true
        });
        total
    }

    /// Every revision of the span's keys with `main >= rev` (the last of each main revision per
    /// key), sorted by revision: what a watcher from `rev` must see.
    pub fn range_since(&self, span: KeySpan<'_>, rev: i64) -> Vec<Revision> {
        let mut revs = Vec::new();
        self.visit(span, |ki| {
            revs.extend(ki.since(rev));
            true
        });
        revs.sort_unstable();
        revs
    }

    /// Compacts every key at `rev` (removing keys left empty) and returns the revisions
    /// `<= rev` that must stay on disk. Holds the write lock one chunk of keys at a time.
    pub fn compact(&self, rev: i64) -> HashSet<Revision> {
        tracing::info!(revision = rev, "compact tree index");
        let mut available = HashSet::new();
        let mut next: Option<Vec<u8>> = None;
        loop {
            let mut tree = self.tree.write();
            let from = next.take();
            let start = match &from {
                Some(k) => Bound::Included(k.as_slice()),
                None => Bound::Unbounded,
            };
            let mut emptied = Vec::new();
            let keys = tree.range_mut::<[u8], _>((start, Bound::Unbounded));
            for (seen, (key, ki)) in keys.enumerate() {
                if seen == COMPACT_CHUNK_KEYS {
                    next = Some(key.clone());
                    break;
                }
                let before = is_live(ki);
                ki.compact(rev, &mut available);
                self.account(before, is_live(ki));
                if ki.is_empty() {
                    emptied.push(key.clone());
                }
            }
            for key in emptied {
                tree.remove(&key);
            }
            if next.is_none() {
                return available;
            }
        }
    }

    /// The revisions `<= rev` a compaction at `rev` would keep, tombstones excepted.
    pub fn keep(&self, rev: i64) -> HashSet<Revision> {
        let mut available = HashSet::new();
        for ki in self.tree.read().values() {
            ki.keep(rev, &mut available);
        }
        available
    }

    /// Adds one record found on disk while rebuilding the index, in revision order (etcd's
    /// `restoreIntoIndex`): the first record of a key starts its index from the record's
    /// creation revision and version.
    pub fn restore(&self, key: &[u8], rev: Revision, tombstone: bool, created: i64, version: i64) {
        let mut tree = self.tree.write();
        if let Some(ki) = tree.get_mut(key) {
            let before = is_live(ki);
            if tombstone {
                if let Err(e) = ki.tombstone(rev.main, rev.sub) {
                    tracing::warn!(key = ?String::from_utf8_lossy(key), %rev, error = %e,
                        "tombstone of a deleted key while restoring the index");
                }
            } else {
                ki.put(rev.main, rev.sub);
            }
            self.account(before, is_live(ki));
            return;
        }
        let mut ki = KeyIndex::new(key);
        if tombstone {
            ki.restore_tombstone(rev.main, rev.sub);
        } else {
            ki.restore(Revision::new(created, 0), rev, version);
        }
        self.account(false, is_live(&ki));
        tree.insert(key.to_vec(), ki);
    }

    /// Replaces (or adds) a key's whole index.
    pub fn insert(&self, ki: KeyIndex) {
        let after = is_live(&ki);
        let before = self
            .tree
            .write()
            .insert(ki.key().to_vec(), ki)
            .is_some_and(|old| is_live(&old));
        self.account(before, after);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn r(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    #[test]
    fn live_keys_are_counted_through_puts_deletes_compaction_and_restore() {
        let ti = TreeIndex::new();
        ti.put(b"a", r(2));
        ti.put(b"a", r(3));
        ti.put(b"b", r(4));
        assert_eq!((ti.len(), ti.live_len()), (2, 2));
        ti.tombstone(b"a", r(5)).unwrap();
        assert!(ti.tombstone(b"a", r(6)).is_err());
        assert_eq!((ti.len(), ti.live_len()), (2, 1));
        ti.put(b"a", r(7));
        assert_eq!(ti.live_len(), 2);
        ti.tombstone(b"b", r(8)).unwrap();
        ti.compact(9);
        assert_eq!((ti.len(), ti.live_len()), (1, 1));
        let restored = TreeIndex::new();
        restored.restore(b"x", r(2), false, 2, 1);
        restored.restore(b"y", r(3), false, 3, 1);
        restored.restore(b"x", r(4), true, 0, 0);
        restored.restore(b"z", r(5), true, 0, 0);
        assert_eq!(restored.live_len(), 1);
        let mut live = KeyIndex::new(b"y");
        live.put(6, 0);
        restored.insert(live);
        assert_eq!(restored.live_len(), 1);
        let mut fresh = KeyIndex::new(b"w");
        fresh.put(7, 0);
        restored.insert(fresh);
        assert_eq!(restored.live_len(), 2);
    }

    #[test]
    fn get_follows_puts_and_tombstones() {
        let ti = TreeIndex::new();
        ti.put(b"foo", r(2));
        ti.put(b"foo", r(4));
        ti.tombstone(b"foo", r(6)).unwrap();
        assert_eq!(ti.get(b"foo", 1), None);
        assert_eq!(ti.get(b"foo", 3).unwrap().modified, r(2));
        assert_eq!(ti.get(b"foo", 5).unwrap().modified, r(4));
        assert_eq!(ti.get(b"foo", 5).unwrap().version, 2);
        assert_eq!(ti.get(b"foo", 6), None);
        assert_eq!(ti.tombstone(b"foo", r(7)), Err(RevisionNotFound));
        assert_eq!(ti.tombstone(b"bar", r(7)), Err(RevisionNotFound));
    }

    fn abc() -> TreeIndex {
        let ti = TreeIndex::new();
        ti.put(b"foo", r(1));
        ti.put(b"foo1", r(2));
        ti.put(b"foo2", r(3));
        ti.put(b"foo2", r(4));
        ti.put(b"foo1", r(5));
        ti.put(b"foo", r(6));
        ti
    }

    #[test]
    fn range_with_etcd_end_semantics() {
        let ti = abc();
        let keys = |span, rev| -> Vec<(Vec<u8>, Revision)> { ti.range(span, rev) };
        assert_eq!(
            keys(KeySpan::new(b"foo", None), 6),
            vec![(b"foo".to_vec(), r(6))]
        );
        assert_eq!(
            keys(KeySpan::new(b"foo", Some(b"foo1")), 6),
            vec![(b"foo".to_vec(), r(6))]
        );
        assert_eq!(
            keys(KeySpan::new(b"foo", Some(b"foo3")), 6),
            vec![
                (b"foo".to_vec(), r(6)),
                (b"foo1".to_vec(), r(5)),
                (b"foo2".to_vec(), r(4))
            ]
        );
        assert_eq!(keys(KeySpan::new(b"foo1", Some(&[0])), 3).len(), 2);
        assert_eq!(keys(KeySpan::new(b"foo1", Some(b"")), 3).len(), 2);
        assert_eq!(keys(KeySpan::new(&[0], Some(&[0])), 1).len(), 1);
        assert!(keys(KeySpan::new(b"foo3", Some(b"foo")), 6).is_empty());
        assert!(keys(KeySpan::new(b"zzz", None), 6).is_empty());

        let (revs, total) = ti.revisions(KeySpan::new(b"foo", Some(b"foo3")), 6, 2);
        assert_eq!((revs, total), (vec![r(6), r(5)], 3));
        assert_eq!(ti.count_revisions(KeySpan::new(b"foo", Some(&[0])), 2), 2);
    }

    #[test]
    fn range_since_sorts_by_revision() {
        let ti = abc();
        assert_eq!(
            ti.range_since(KeySpan::new(b"foo", Some(b"foo3")), 3),
            vec![r(3), r(4), r(5), r(6)]
        );
        assert_eq!(
            ti.range_since(KeySpan::new(b"foo", None), 1),
            vec![r(1), r(6)]
        );
    }

    #[test]
    fn compact_removes_deleted_keys_and_keep_is_read_only() {
        let ti = TreeIndex::new();
        ti.put(b"a", r(1));
        ti.put(b"a", r(2));
        ti.put(b"b", r(3));
        ti.tombstone(b"b", r(4)).unwrap();
        ti.put(b"c", r(5));

        let keep = ti.keep(4);
        assert_eq!(keep, [r(2)].into_iter().collect());
        assert_eq!(ti.len(), 3);

        let available = ti.compact(4);
        // The tombstone at exactly the compaction revision is kept on disk.
        assert_eq!(available, [r(2), r(4)].into_iter().collect());
        assert_eq!(ti.len(), 3);
        let available = ti.compact(5);
        assert_eq!(available, [r(2), r(5)].into_iter().collect());
        assert_eq!(ti.len(), 2);
        assert!(ti.get(b"b", 5).is_none());
    }

    #[test]
    fn compact_works_across_chunks() {
        let ti = TreeIndex::new();
        let n = COMPACT_CHUNK_KEYS + 5;
        for i in 0..n {
            let rev = i as i64 + 1;
            let key = format!("k{i:06}");
            ti.put(key.as_bytes(), r(rev));
            if i % 2 == 0 {
                ti.tombstone(key.as_bytes(), Revision::new(rev, 1)).unwrap();
            }
        }
        let available = ti.compact(n as i64 + 1);
        assert_eq!(ti.len(), n / 2);
        assert_eq!(available.len(), n / 2);
    }

    #[test]
    fn restore_rebuilds_from_records() {
        let ti = TreeIndex::new();
        ti.restore(b"a", r(5), true, 0, 0);
        ti.restore(b"b", r(6), false, 3, 2);
        ti.restore(b"a", r(7), false, 7, 1);
        ti.restore(b"b", r(8), true, 0, 0);
        assert_eq!(ti.get(b"a", 5), None);
        assert_eq!(ti.get(b"a", 7).unwrap().created, r(7));
        let b = ti.get(b"b", 7).unwrap();
        assert_eq!((b.created, b.modified, b.version), (r(3), r(6), 2));
        assert_eq!(ti.get(b"b", 8), None);
    }
}
