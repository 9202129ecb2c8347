//! The revisions of one key (etcd's `keyIndex`): generations of puts, each ended by a tombstone.
//!
//! For example `put(1) put(2) tombstone(3) put(4) tombstone(5)` on `foo` gives the generations
//! `{1, 2, 3t} {4, 5t} {}`: the last generation is empty because the key is deleted. Compaction
//! at `rev` drops every revision `<= rev` except the largest one of each key (a tombstone at
//! exactly `rev` is kept too, so a watcher from `rev` still sees the deletion); a key left with
//! only an empty generation is removed from the index:
//!
//! | compact at | generations left        |
//! |-----------:|-------------------------|
//! | 2          | `{2, 3t} {4, 5t} {}`    |
//! | 4          | `{4, 5t} {}`            |
//! | 5          | `{5t} {}`               |
//! | 6          | `{}`: the key is removed |

use std::collections::HashSet;

use smallvec::SmallVec;

use crate::Revision;

/// A generation's revisions: inline while there is one (most keys), so that the index of a
/// key written once costs no heap allocation beyond its key.
type Revisions = SmallVec<[Revision; 1]>;
/// A key's generations: inline while there is one (a key never deleted).
type Generations = SmallVec<[Generation; 1]>;

/// One life of a key: from the put that created it to the tombstone that deleted it (the last
/// generation of a live key has no tombstone).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Generation {
    ver: i64,
    created: Revision,
    revs: Revisions,
}

impl Generation {
    /// A generation with the given version count, creation revision and revisions (ascending).
    pub fn new(ver: i64, created: Revision, revs: Vec<Revision>) -> Generation {
        Generation {
            ver,
            created,
            revs: revs.into_iter().collect(),
        }
    }

    /// Whether the generation holds no revision (a deleted key's next, unborn generation).
    pub fn is_empty(&self) -> bool {
        self.revs.is_empty()
    }

    /// How many changes the generation has seen (the key's version at its last revision).
    pub fn version(&self) -> i64 {
        self.ver
    }

    /// The revision of the put that created the generation.
    pub fn created(&self) -> Revision {
        self.created
    }

    /// The generation's revisions still held, ascending.
    pub fn revisions(&self) -> &[Revision] {
        &self.revs
    }

    /// The index of the last revision with `main <= at_rev`.
    fn find_revision_index(&self, at_rev: i64) -> Option<usize> {
        self.revs
            .partition_point(|r| r.main <= at_rev)
            .checked_sub(1)
    }
}

/// Where a key stood at some revision: the revision of its value, of the put that created it, and
/// its version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyRevision {
    /// The revision of the change visible at the asked revision.
    pub modified: Revision,
    /// The revision of the put that created the key's generation.
    pub created: Revision,
    /// How many times the key was changed since it was created, that change included.
    pub version: i64,
}

/// A tombstone for a key that is already deleted (etcd's `ErrRevisionNotFound`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("mvcc: revision not found")]
pub struct RevisionNotFound;

/// Every revision of one key still held by the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyIndex {
    key: Vec<u8>,
    modified: Revision,
    generations: Generations,
}

impl KeyIndex {
    /// The index of a key with no revision yet (the first [`KeyIndex::put`] creates it).
    pub fn new(key: impl Into<Vec<u8>>) -> KeyIndex {
        KeyIndex {
            key: key.into(),
            modified: Revision::default(),
            generations: Generations::new(),
        }
    }

    /// A key index built from its parts (for tests and tools).
    pub fn from_parts(
        key: impl Into<Vec<u8>>,
        modified: Revision,
        generations: Vec<Generation>,
    ) -> KeyIndex {
        KeyIndex {
            key: key.into(),
            modified,
            generations: generations.into_iter().collect(),
        }
    }

    /// The key.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The revision of the key's last change.
    pub fn modified(&self) -> Revision {
        self.modified
    }

    /// The key's generations, oldest first.
    pub fn generations(&self) -> &[Generation] {
        &self.generations
    }

    /// Records a put at `{main, sub}`, which must be later than every revision recorded so far.
    pub fn put(&mut self, main: i64, sub: i64) {
        let rev = Revision::new(main, sub);
        if rev <= self.modified {
            panic!(
                "invariant violated: key index revisions strictly increase \
                 (put {rev} after {} on key {:?})",
                self.modified,
                String::from_utf8_lossy(&self.key)
            );
        }
        if self.generations.is_empty() {
            self.generations.push(Generation::default());
        }
        let g = self.last_generation_mut();
        if g.revs.is_empty() {
            g.created = rev;
        }
        g.revs.push(rev);
        g.ver += 1;
        self.modified = rev;
    }

    fn last_generation_mut(&mut self) -> &mut Generation {
        let last = self.generations.len() - 1;
        &mut self.generations[last]
    }

    /// Starts the index of a key found on disk with its oldest held revision `modified`, created
    /// at `created`, at version `ver` (rebuilding the index on open).
    pub fn restore(&mut self, created: Revision, modified: Revision, ver: i64) {
        if !self.generations.is_empty() {
            panic!(
                "invariant violated: restore starts an empty key index (key {:?} has {} generations)",
                String::from_utf8_lossy(&self.key),
                self.generations.len()
            );
        }
        self.modified = modified;
        self.generations.push(Generation {
            ver,
            created,
            revs: smallvec::smallvec![modified],
        });
    }

    /// Starts the index of a key whose oldest held revision on disk is a tombstone (compaction
    /// keeps a tombstone at exactly the compaction revision); its creation is unknown.
    pub fn restore_tombstone(&mut self, main: i64, sub: i64) {
        self.restore(Revision::default(), Revision::new(main, sub), 1);
        self.generations.push(Generation::default());
    }

    /// Records a deletion at `{main, sub}`: ends the current generation and starts an empty one.
    /// Fails when the key is already deleted.
    pub fn tombstone(&mut self, main: i64, sub: i64) -> Result<(), RevisionNotFound> {
        if self.generations.last().is_none_or(Generation::is_empty) {
            return Err(RevisionNotFound);
        }
        self.put(main, sub);
        self.generations.push(Generation::default());
        Ok(())
    }

    /// Where the key stood at `at_rev`, or `None` if it did not exist then.
    pub fn get(&self, at_rev: i64) -> Option<KeyRevision> {
        let g = self.find_generation(at_rev)?;
        let n = g.find_revision_index(at_rev)?;
        Some(KeyRevision {
            modified: g.revs[n],
            created: g.created,
            version: g.ver - (g.revs.len() - n - 1) as i64,
        })
    }

    /// The revisions with `main >= rev`, ascending; of several with the same main revision only
    /// the last (largest sub) is returned, as only it is visible outside its transaction.
    pub fn since(&self, rev: i64) -> Vec<Revision> {
        if self.generations.is_empty() {
            return Vec::new();
        }
        let since = Revision::new(rev, 0);
        let mut gi = self.generations.len() - 1;
        while gi > 0 {
            let g = &self.generations[gi];
            if !g.is_empty() && since > g.created {
                break;
            }
            gi -= 1;
        }
        let mut revs: Vec<Revision> = Vec::new();
        let mut last = 0;
        for g in &self.generations[gi..] {
            for &r in &g.revs {
                if since > r {
                    continue;
                }
                if r.main == last
                    && let Some(prev) = revs.last_mut()
                {
                    *prev = r;
                    continue;
                }
                revs.push(r);
                last = r.main;
            }
        }
        revs
    }

    /// Drops the revisions `<= at_rev` except the largest one (kept in `available`), and the
    /// generations that end before `at_rev`. A tombstone at exactly `at_rev` is kept.
    pub fn compact(&mut self, at_rev: i64, available: &mut HashSet<Revision>) {
        if self.is_empty() || self.generations.is_empty() {
            return;
        }
        let (gen_idx, rev_idx) = self.do_compact(at_rev, available);
        let g = &mut self.generations[gen_idx];
        if let Some(i) = rev_idx {
            g.revs.drain(..i);
        }
        self.generations.drain(..gen_idx);
    }

    /// Adds to `available` the revision a compaction at `at_rev` would keep, except a tombstone
    /// (so hashes agree whether or not that tombstone was compacted yet).
    pub fn keep(&self, at_rev: i64, available: &mut HashSet<Revision>) {
        if self.is_empty() || self.generations.is_empty() {
            return;
        }
        let (gen_idx, rev_idx) = self.do_compact(at_rev, available);
        let g = &self.generations[gen_idx];
        if let Some(i) = rev_idx
            && i == g.revs.len() - 1
            && gen_idx != self.generations.len() - 1
        {
            available.remove(&g.revs[i]);
        }
    }

    /// Finds the first generation that is alive at or after `at_rev` and, in it, the last revision
    /// `<= at_rev`, which goes into `available`.
    fn do_compact(&self, at_rev: i64, available: &mut HashSet<Revision>) -> (usize, Option<usize>) {
        let mut gen_idx = 0;
        while gen_idx < self.generations.len() - 1 {
            let g = &self.generations[gen_idx];
            if g.revs.last().is_some_and(|tomb| tomb.main >= at_rev) {
                break;
            }
            gen_idx += 1;
        }
        let g = &self.generations[gen_idx];
        let rev_idx = g.find_revision_index(at_rev);
        if let Some(i) = rev_idx {
            available.insert(g.revs[i]);
        }
        (gen_idx, rev_idx)
    }

    /// Whether the key holds nothing: a single empty generation (remove it from the index).
    pub fn is_empty(&self) -> bool {
        self.generations.len() == 1 && self.generations[0].is_empty()
    }

    /// The generation the key was in at `rev`, or `None` if it did not exist then (before its
    /// creation, or between a tombstone and the next put).
    pub fn find_generation(&self, rev: i64) -> Option<&Generation> {
        let last = self.generations.len().checked_sub(1)?;
        for (cg, g) in self.generations.iter().enumerate().rev() {
            let (Some(first), Some(tomb)) = (g.revs.first(), g.revs.last()) else {
                continue;
            };
            if cg != last && tomb.main <= rev {
                return None;
            }
            if first.main <= rev {
                return Some(g);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn r(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    fn g(ver: i64, created: Revision, revs: &[Revision]) -> Generation {
        Generation::new(ver, created, revs.to_vec())
    }

    /// etcd's `newTestKeyIndex`: `{2, 4, 6t} {8, 10, 12t} {14, 14.1, 16t} {}`.
    fn test_key_index() -> KeyIndex {
        let mut ki = KeyIndex::new("foo");
        ki.put(2, 0);
        ki.put(4, 0);
        ki.tombstone(6, 0).unwrap();
        ki.put(8, 0);
        ki.put(10, 0);
        ki.tombstone(12, 0).unwrap();
        ki.put(14, 0);
        ki.put(14, 1);
        ki.tombstone(16, 0).unwrap();
        ki
    }

    fn set(revs: &[Revision]) -> HashSet<Revision> {
        revs.iter().copied().collect()
    }

    #[test]
    fn get_matches_etcd() {
        let mut ki = test_key_index();
        ki.compact(4, &mut HashSet::new());
        let found = |m, c, v| {
            Some(KeyRevision {
                modified: m,
                created: c,
                version: v,
            })
        };
        let cases = [
            (17, None),
            (16, None),
            (15, found(Revision::new(14, 1), r(14), 2)),
            (14, found(Revision::new(14, 1), r(14), 2)),
            (13, None),
            (12, None),
            (11, found(r(10), r(8), 2)),
            (10, found(r(10), r(8), 2)),
            (9, found(r(8), r(8), 1)),
            (8, found(r(8), r(8), 1)),
            (7, None),
            (6, None),
            (5, found(r(4), r(2), 2)),
            (4, found(r(4), r(2), 2)),
            (3, None),
            (2, None),
            (1, None),
            (0, None),
        ];
        for (rev, want) in cases {
            assert_eq!(ki.get(rev), want, "get({rev})");
        }
    }

    #[test]
    fn since_matches_etcd() {
        let mut ki = test_key_index();
        ki.compact(4, &mut HashSet::new());
        let all = [r(4), r(6), r(8), r(10), r(12), Revision::new(14, 1), r(16)];
        let cases: [(i64, &[Revision]); 18] = [
            (17, &[]),
            (16, &all[6..]),
            (15, &all[6..]),
            (14, &all[5..]),
            (13, &all[5..]),
            (12, &all[4..]),
            (11, &all[4..]),
            (10, &all[3..]),
            (9, &all[3..]),
            (8, &all[2..]),
            (7, &all[2..]),
            (6, &all[1..]),
            (5, &all[1..]),
            (4, &all),
            (3, &all),
            (2, &all),
            (1, &all),
            (0, &all),
        ];
        for (rev, want) in cases {
            assert_eq!(ki.since(rev), want, "since({rev})");
        }
    }

    #[test]
    fn put_restore_and_tombstone() {
        let mut ki = KeyIndex::new("foo");
        ki.put(5, 0);
        assert_eq!(
            ki,
            KeyIndex::from_parts("foo", r(5), vec![g(1, r(5), &[r(5)])])
        );
        ki.put(7, 0);
        assert_eq!(
            ki,
            KeyIndex::from_parts("foo", r(7), vec![g(2, r(5), &[r(5), r(7)])])
        );

        let mut restored = KeyIndex::new("foo");
        restored.restore(r(5), r(7), 2);
        assert_eq!(
            restored,
            KeyIndex::from_parts("foo", r(7), vec![g(2, r(5), &[r(7)])])
        );

        let mut ki = KeyIndex::new("foo");
        ki.put(5, 0);
        ki.tombstone(7, 0).unwrap();
        assert_eq!(
            ki,
            KeyIndex::from_parts(
                "foo",
                r(7),
                vec![g(2, r(5), &[r(5), r(7)]), Generation::default()]
            )
        );
        ki.put(8, 0);
        ki.put(9, 0);
        ki.tombstone(15, 0).unwrap();
        assert_eq!(
            ki,
            KeyIndex::from_parts(
                "foo",
                r(15),
                vec![
                    g(2, r(5), &[r(5), r(7)]),
                    g(3, r(8), &[r(8), r(9), r(15)]),
                    Generation::default()
                ]
            )
        );
        assert_eq!(ki.tombstone(16, 0), Err(RevisionNotFound));
    }

    #[test]
    #[should_panic(expected = "strictly increase")]
    fn put_with_an_older_revision_panics() {
        let mut ki = KeyIndex::new("foo");
        ki.put(5, 0);
        ki.put(4, 0);
    }

    /// etcd's `TestKeyIndexCompactAndKeep` table (with tombstones at the compaction revision
    /// kept, as etcd does since 3.5.10 / 3.6).
    fn compact_cases() -> Vec<(i64, KeyIndex, HashSet<Revision>)> {
        let g0 = g(3, r(2), &[r(2), r(4), r(6)]);
        let g0_4 = g(3, r(2), &[r(4), r(6)]);
        let g0_6 = g(3, r(2), &[r(6)]);
        let g1 = g(3, r(8), &[r(8), r(10), r(12)]);
        let g1_10 = g(3, r(8), &[r(10), r(12)]);
        let g1_12 = g(3, r(8), &[r(12)]);
        let g2 = g(3, r(14), &[r(14), Revision::new(14, 1), r(16)]);
        let g2_14 = g(3, r(14), &[Revision::new(14, 1), r(16)]);
        let g2_16 = g(3, r(14), &[r(16)]);
        let e = Generation::default();
        let ki = |gens: Vec<Generation>| KeyIndex::from_parts("foo", r(16), gens);
        vec![
            (
                1,
                ki(vec![g0.clone(), g1.clone(), g2.clone(), e.clone()]),
                set(&[]),
            ),
            (
                2,
                ki(vec![g0.clone(), g1.clone(), g2.clone(), e.clone()]),
                set(&[r(2)]),
            ),
            (
                3,
                ki(vec![g0.clone(), g1.clone(), g2.clone(), e.clone()]),
                set(&[r(2)]),
            ),
            (
                4,
                ki(vec![g0_4.clone(), g1.clone(), g2.clone(), e.clone()]),
                set(&[r(4)]),
            ),
            (
                5,
                ki(vec![g0_4.clone(), g1.clone(), g2.clone(), e.clone()]),
                set(&[r(4)]),
            ),
            (
                6,
                ki(vec![g0_6, g1.clone(), g2.clone(), e.clone()]),
                set(&[r(6)]),
            ),
            (7, ki(vec![g1.clone(), g2.clone(), e.clone()]), set(&[])),
            (8, ki(vec![g1.clone(), g2.clone(), e.clone()]), set(&[r(8)])),
            (9, ki(vec![g1.clone(), g2.clone(), e.clone()]), set(&[r(8)])),
            (
                10,
                ki(vec![g1_10.clone(), g2.clone(), e.clone()]),
                set(&[r(10)]),
            ),
            (
                11,
                ki(vec![g1_10.clone(), g2.clone(), e.clone()]),
                set(&[r(10)]),
            ),
            (12, ki(vec![g1_12, g2.clone(), e.clone()]), set(&[r(12)])),
            (13, ki(vec![g2.clone(), e.clone()]), set(&[])),
            (
                14,
                ki(vec![g2_14.clone(), e.clone()]),
                set(&[Revision::new(14, 1)]),
            ),
            (
                15,
                ki(vec![g2_14.clone(), e.clone()]),
                set(&[Revision::new(14, 1)]),
            ),
            (16, ki(vec![g2_16, e.clone()]), set(&[r(16)])),
            (17, ki(vec![e]), set(&[])),
        ]
    }

    /// What `keep` reports: the compaction's set without a tombstone.
    fn keep_of(at: i64, want: &HashSet<Revision>) -> HashSet<Revision> {
        let tombstones = [r(6), r(12), r(16)];
        let _ = at;
        want.iter()
            .copied()
            .filter(|rev| !tombstones.contains(rev))
            .collect()
    }

    #[test]
    fn compact_and_keep_continuously() {
        let mut ki = test_key_index();
        for (at, want_ki, want) in compact_cases() {
            let before = ki.clone();
            let mut kept = HashSet::new();
            ki.keep(at, &mut kept);
            assert_eq!(ki, before, "keep({at}) changed the index");
            assert_eq!(kept, keep_of(at, &want), "keep({at})");
            let mut available = HashSet::new();
            ki.compact(at, &mut available);
            assert_eq!(ki, want_ki, "compact({at})");
            assert_eq!(available, want, "compact({at}) available");
        }
    }

    #[test]
    fn compact_and_keep_with_jumps() {
        let mut ki = test_key_index();
        for (i, (at, want_ki, want)) in compact_cases().into_iter().enumerate() {
            if (i % 2 == 0 && i < 6) || (i % 2 == 1 && i > 6) {
                let mut kept = HashSet::new();
                ki.keep(at, &mut kept);
                assert_eq!(kept, keep_of(at, &want), "keep({at})");
                let mut available = HashSet::new();
                ki.compact(at, &mut available);
                assert_eq!(ki, want_ki, "compact({at})");
                assert_eq!(available, want, "compact({at}) available");
            }
        }
    }

    #[test]
    fn compact_and_keep_once() {
        for (at, want_ki, want) in compact_cases() {
            let mut ki = test_key_index();
            let mut kept = HashSet::new();
            ki.keep(at, &mut kept);
            assert_eq!(ki, test_key_index());
            assert_eq!(kept, keep_of(at, &want), "keep({at})");
            let mut available = HashSet::new();
            ki.compact(at, &mut available);
            assert_eq!(ki, want_ki, "compact({at})");
            assert_eq!(available, want, "compact({at}) available");
        }
    }

    #[test]
    fn compaction_at_tombstones() {
        // put(1) put(2) tomb(3) put(4) tomb(5)
        let build = || {
            let mut ki = KeyIndex::new("foo");
            ki.put(1, 0);
            ki.put(2, 0);
            ki.tombstone(3, 0).unwrap();
            ki.put(4, 0);
            ki.tombstone(5, 0).unwrap();
            ki
        };
        let e = Generation::default();
        let ki = build();
        assert_eq!(
            ki.generations(),
            [
                g(3, r(1), &[r(1), r(2), r(3)]),
                g(2, r(4), &[r(4), r(5)]),
                e.clone()
            ]
        );
        let cases = [
            (
                2,
                vec![
                    g(3, r(1), &[r(2), r(3)]),
                    g(2, r(4), &[r(4), r(5)]),
                    e.clone(),
                ],
            ),
            (4, vec![g(2, r(4), &[r(4), r(5)]), e.clone()]),
            (5, vec![g(2, r(4), &[r(5)]), e.clone()]),
            (6, vec![e.clone()]),
        ];
        for (at, want) in cases {
            let mut ki = build();
            ki.compact(at, &mut HashSet::new());
            assert_eq!(ki.generations(), want, "compact({at})");
            assert_eq!(ki.is_empty(), at == 6);
        }
    }

    #[test]
    fn compact_beyond_the_last_revision_keeps_it() {
        let mut ki = KeyIndex::new("foo");
        ki.put(1, 0);
        ki.put(2, 0);
        let mut available = HashSet::new();
        ki.compact(3, &mut available);
        assert_eq!(
            ki,
            KeyIndex::from_parts("foo", r(2), vec![g(2, r(1), &[r(2)])])
        );
        assert_eq!(available, set(&[r(2)]));
    }

    #[test]
    fn is_empty_and_find_generation() {
        let empty = KeyIndex::from_parts("foo", Revision::default(), vec![Generation::default()]);
        assert!(empty.is_empty());
        let live = KeyIndex::from_parts("foo", r(2), vec![g(2, r(1), &[r(2)])]);
        assert!(!live.is_empty());

        let ki = test_key_index();
        let gens = ki.generations();
        let cases = [
            (0, None),
            (1, None),
            (2, Some(&gens[0])),
            (3, Some(&gens[0])),
            (4, Some(&gens[0])),
            (5, Some(&gens[0])),
            (6, None),
            (7, None),
            (8, Some(&gens[1])),
            (9, Some(&gens[1])),
            (10, Some(&gens[1])),
            (11, Some(&gens[1])),
            (12, None),
            (13, None),
        ];
        for (rev, want) in cases {
            assert_eq!(ki.find_generation(rev), want, "find_generation({rev})");
        }
    }

    #[test]
    fn restore_tombstone_starts_deleted() {
        let mut ki = KeyIndex::new("foo");
        ki.restore_tombstone(5, 0);
        assert_eq!(ki.get(5), None);
        assert_eq!(ki.get(4), None);
        assert!(!ki.is_empty());
        ki.put(7, 0);
        assert_eq!(
            ki.get(7),
            Some(KeyRevision {
                modified: r(7),
                created: r(7),
                version: 1
            })
        );
        let mut available = HashSet::new();
        ki.compact(6, &mut available);
        assert!(available.is_empty());
        assert_eq!(ki.generations(), [g(1, r(7), &[r(7)])]);
    }
}
