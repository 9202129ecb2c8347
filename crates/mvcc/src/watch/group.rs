//! Watcher groups (etcd's `watcherGroup`): the watchers of one state (synced, or a batch of
//! unsynced ones being caught up), indexed so that finding the watchers of a changed key costs a
//! hash lookup for single-key watchers plus a walk over the distinct ranges starting at or
//! before the key (etcd uses an interval tree there).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;

use crate::tree_index::KeySpan;

/// The internal, store-wide identity of a watcher (distinct from its stream-local watch ID).
pub(crate) type WatcherUid = u64;

/// The `BTreeMap` bounds of every start at or before `key`.
fn up_to(key: &[u8]) -> (Bound<&[u8]>, Bound<&[u8]>) {
    (Bound::Unbounded, Bound::Included(key))
}

/// Where a range ends.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum RangeEnd {
    /// Exclusive end key.
    Before(Vec<u8>),
    /// Every key from the start on (etcd's "from key", `end = [0]`).
    Unbounded,
}

impl RangeEnd {
    fn after(&self, key: &[u8]) -> bool {
        match self {
            RangeEnd::Before(end) => key < end.as_slice(),
            RangeEnd::Unbounded => true,
        }
    }
}

/// What a watcher watches: one key, or a range.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct KeyRange {
    /// The key, or the first key of the range.
    pub(crate) key: Vec<u8>,
    /// `None` for a single key.
    pub(crate) end: Option<RangeEnd>,
}

impl KeyRange {
    /// The watched keys of etcd's `(key, end)` (see [`crate::request`]); `None` for an empty
    /// range.
    pub(crate) fn new(key: &[u8], end: Option<&[u8]>) -> Option<KeyRange> {
        let end = match KeySpan::new(key, end) {
            KeySpan::Single(_) => None,
            KeySpan::From(_) => Some(RangeEnd::Unbounded),
            KeySpan::Bounded(start, end) if start < end => Some(RangeEnd::Before(end.to_vec())),
            KeySpan::Bounded(..) => return None,
        };
        Some(KeyRange {
            key: key.to_vec(),
            end,
        })
    }

    /// Whether `k` is watched.
    #[cfg(test)]
    pub(crate) fn contains(&self, k: &[u8]) -> bool {
        match &self.end {
            None => k == self.key.as_slice(),
            Some(end) => self.key.as_slice() <= k && end.after(k),
        }
    }
}

/// A set of watchers indexed by what they watch.
#[derive(Debug, Default)]
pub(crate) struct Group {
    /// Single-key watchers by key.
    keys: HashMap<Vec<u8>, HashSet<WatcherUid>>,
    /// Range watchers by start, then end: each distinct range once.
    ranges: BTreeMap<Vec<u8>, BTreeMap<RangeEnd, HashSet<WatcherUid>>>,
    len: usize,
}

impl Group {
    /// How many watchers the group holds.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether the group is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `uid` watching `range`; returns false if it was already there.
    pub(crate) fn add(&mut self, uid: WatcherUid, range: &KeyRange) -> bool {
        let added = match &range.end {
            None => self.keys.entry(range.key.clone()).or_default().insert(uid),
            Some(end) => self
                .ranges
                .entry(range.key.clone())
                .or_default()
                .entry(end.clone())
                .or_default()
                .insert(uid),
        };
        if added {
            self.len += 1;
        }
        added
    }

    /// Removes `uid` watching `range`; returns whether it was there.
    pub(crate) fn remove(&mut self, uid: WatcherUid, range: &KeyRange) -> bool {
        let removed = match &range.end {
            None => match self.keys.get_mut(&range.key) {
                Some(set) => {
                    let removed = set.remove(&uid);
                    if set.is_empty() {
                        self.keys.remove(&range.key);
                    }
                    removed
                }
                None => false,
            },
            Some(end) => match self.ranges.get_mut(&range.key) {
                Some(ends) => {
                    let removed = ends.get_mut(end).is_some_and(|set| set.remove(&uid));
                    if ends.get(end).is_some_and(HashSet::is_empty) {
                        ends.remove(end);
                    }
                    if ends.is_empty() {
                        self.ranges.remove(&range.key);
                    }
                    removed
                }
                None => false,
            },
        };
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Calls `visit` once for every watcher of `key`.
    pub(crate) fn for_each_watching(&self, key: &[u8], mut visit: impl FnMut(WatcherUid)) {
        if let Some(set) = self.keys.get(key) {
            set.iter().for_each(|&uid| visit(uid));
        }
        for ends in self
            .ranges
            .range::<[u8], _>(up_to(key))
            .map(|(_, ends)| ends)
        {
            // Ends are sorted: those after `key` form a suffix.
            for (_, set) in ends.iter().rev().take_while(|(end, _)| end.after(key)) {
                set.iter().for_each(|&uid| visit(uid));
            }
        }
    }

    /// Whether some watcher of the group watches `key`.
    pub(crate) fn watches(&self, key: &[u8]) -> bool {
        self.keys.contains_key(key)
            || self
                .ranges
                .range::<[u8], _>(up_to(key))
                .any(|(_, ends)| ends.keys().next_back().is_some_and(|e| e.after(key)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn matches(g: &Group, key: &str) -> Vec<WatcherUid> {
        let mut out = Vec::new();
        g.for_each_watching(key.as_bytes(), |u| out.push(u));
        out.sort_unstable();
        out
    }

    fn range(key: &str, end: Option<&[u8]>) -> KeyRange {
        KeyRange::new(key.as_bytes(), end).unwrap()
    }

    #[test]
    fn keys_ranges_and_from_key_are_found() {
        let mut g = Group::default();
        assert!(g.add(1, &range("foo", None)));
        assert!(g.add(2, &range("fo", Some(b"fp"))));
        assert!(g.add(3, &range("a", Some(&[0]))));
        assert!(g.add(4, &range("g", Some(b"h"))));
        assert!(g.add(5, &range("fo", Some(b"foo"))));
        assert!(!g.add(1, &range("foo", None)));
        assert_eq!(g.len(), 5);
        assert_eq!(matches(&g, "foo"), vec![1, 2, 3]);
        assert_eq!(matches(&g, "fon"), vec![2, 3, 5]);
        assert_eq!(matches(&g, "g"), vec![3, 4]);
        assert_eq!(matches(&g, "0"), Vec::<WatcherUid>::new());
        assert!(g.watches(b"foo") && g.watches(b"zzz") && !g.watches(b"0"));
    }

    #[test]
    fn removal_cleans_up() {
        let mut g = Group::default();
        g.add(1, &range("foo", None));
        g.add(2, &range("a", Some(b"b")));
        g.add(3, &range("a", Some(b"b")));
        assert!(g.remove(2, &range("a", Some(b"b"))));
        assert!(!g.remove(2, &range("a", Some(b"b"))));
        assert_eq!(matches(&g, "a"), vec![3]);
        assert!(g.remove(3, &range("a", Some(b"b"))));
        assert!(g.remove(1, &range("foo", None)));
        assert!(g.is_empty());
        assert!(g.keys.is_empty() && g.ranges.is_empty());
    }

    #[test]
    fn empty_ranges_are_rejected() {
        assert!(KeyRange::new(b"b", Some(b"a")).is_none());
        assert!(KeyRange::new(b"a", Some(b"a")).is_none());
        assert!(KeyRange::new(b"a", Some(b"")).is_some());
        assert!(range("a", Some(b"")).contains(b"zz"));
        assert!(!range("b", Some(b"c")).contains(b"c"));
    }
}
