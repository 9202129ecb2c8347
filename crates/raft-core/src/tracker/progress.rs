//! A follower's progress, in the leader's view.

use std::collections::BTreeMap;
use std::fmt;

use super::{Inflights, ProgressState};
use crate::quorum::{AckedIndexer, Index};

/// What the leader knows about one follower's log, and how it replicates to it.
///
/// Invariant: `matched < next`. In [`ProgressState::Snapshot`], `next == pending_snapshot + 1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The index up to which the follower's log is known to match the leader's (etcd's `Match`).
    /// It never regresses.
    pub matched: u64,
    /// The index of the next entry to send. Entries in `(matched, next)` are in flight.
    pub next: u64,
    /// The highest commit index sent to the follower (at most `next - 1`).
    sent_commit: u64,
    /// How the leader interacts with the follower.
    pub state: ProgressState,
    /// In [`ProgressState::Snapshot`]: the leader's last index when it decided a snapshot was
    /// needed (the index of the snapshot it sends). 0 otherwise.
    pub pending_snapshot: u64,
    /// Whether the follower was heard from recently (reset each election timeout by the leader
    /// checking its quorum). Always true for the leader itself.
    pub recent_active: bool,
    /// Whether sending appends is throttled: in `Probe` after each probe, in `Replicate` when
    /// the in-flight window is full. A heartbeat response lifts it.
    pub msg_app_flow_paused: bool,
    /// The append messages in flight (meaningful in `Replicate`).
    pub inflights: Inflights,
    /// Whether this follower is a learner (does not vote).
    pub is_learner: bool,
}

impl Progress {
    /// A progress in [`ProgressState::Probe`] starting at `next`, knowing no match yet, inactive,
    /// and using `inflights` for flow control.
    ///
    /// # Panics
    ///
    /// If `next` is 0: the invariant `matched < next` needs `next >= 1`.
    pub fn new(next: u64, inflights: Inflights) -> Self {
        assert!(
            next >= 1,
            "progress invariant broken: next must be at least 1 (match < next)"
        );
        Progress {
            matched: 0,
            next,
            sent_commit: 0,
            state: ProgressState::Probe,
            pending_snapshot: 0,
            recent_active: false,
            msg_app_flow_paused: false,
            inflights,
            is_learner: false,
        }
    }

    /// The highest commit index sent to the follower.
    pub fn sent_commit(&self) -> u64 {
        self.sent_commit
    }

    /// Moves into `state`, unpausing the flow and clearing the pending snapshot and the
    /// in-flight window.
    pub fn reset_state(&mut self, state: ProgressState) {
        self.msg_app_flow_paused = false;
        self.pending_snapshot = 0;
        self.state = state;
        self.inflights.reset();
    }

    /// Moves into [`ProgressState::Probe`]. `next` becomes `matched + 1`, or, coming from a
    /// snapshot, the index after the snapshot if that is larger.
    pub fn become_probe(&mut self) {
        if self.state == ProgressState::Snapshot {
            // The snapshot was delivered: probe from just after it.
            let pending_snapshot = self.pending_snapshot;
            self.reset_state(ProgressState::Probe);
            self.next = (self.matched + 1).max(pending_snapshot + 1);
        } else {
            self.reset_state(ProgressState::Probe);
            self.next = self.matched + 1;
        }
        self.sent_commit = self.sent_commit.min(self.next - 1);
    }

    /// Moves into [`ProgressState::Replicate`], with `next = matched + 1`.
    pub fn become_replicate(&mut self) {
        self.reset_state(ProgressState::Replicate);
        self.next = self.matched + 1;
    }

    /// Moves into [`ProgressState::Snapshot`], waiting for the snapshot at `snapshot_index`.
    pub fn become_snapshot(&mut self, snapshot_index: u64) {
        self.reset_state(ProgressState::Snapshot);
        self.pending_snapshot = snapshot_index;
        self.next = snapshot_index + 1;
        self.sent_commit = snapshot_index;
    }

    /// Records an append of `entries` consecutive entries (`bytes` bytes in total) starting at
    /// `next`.
    ///
    /// # Panics
    ///
    /// In [`ProgressState::Snapshot`], where the leader must not send appends.
    pub fn sent_entries(&mut self, entries: usize, bytes: u64) {
        match self.state {
            ProgressState::Replicate => {
                if entries > 0 {
                    self.next += entries as u64;
                    self.inflights.add(self.next - 1, bytes);
                }
                // A message that fills the window (or one sent while it was full) counts as a
                // probe: the flow pauses.
                self.msg_app_flow_paused = self.inflights.full();
            }
            ProgressState::Probe => {
                if entries > 0 {
                    self.msg_app_flow_paused = true;
                }
            }
            ProgressState::Snapshot => {
                panic!("sending append in unhandled state {}", self.state)
            }
        }
    }

    /// Whether sending commit index `index` may advance the follower's commit index.
    pub fn can_bump_commit(&self, index: u64) -> bool {
        // The follower's commit index can normally be bumped up to next - 1; a commit index
        // sent at or beyond that already did all it could.
        index > self.sent_commit && self.sent_commit < self.next - 1
    }

    /// Records that commit index `commit` was sent to the follower (etcd's `SentCommit`).
    pub fn mark_commit_sent(&mut self, commit: u64) {
        self.sent_commit = commit;
    }

    /// Handles an append acknowledgement up to `n`. Returns false, changing nothing, if it is
    /// outdated (`n <= matched`); otherwise advances `matched` (and `next` if needed) and
    /// unpauses the flow.
    pub fn maybe_update(&mut self, n: u64) -> bool {
        if n <= self.matched {
            return false;
        }
        self.matched = n;
        self.next = self.next.max(n + 1);
        self.msg_app_flow_paused = false;
        true
    }

    /// Handles the rejection of the append at index `rejected`, with the follower's hint that
    /// its log may match up to `match_hint`.
    ///
    /// Returns false, changing nothing, if the rejection is stale (it concerns an index already
    /// known to match, or not the probe in flight). Otherwise lowers `next` and returns true.
    pub fn maybe_decr_to(&mut self, rejected: u64, match_hint: u64) -> bool {
        if self.state == ProgressState::Replicate {
            // Stale if the rejected index is already known to match.
            if rejected <= self.matched {
                return false;
            }
            self.next = self.matched + 1;
            // The commit index sent with the rejected appends was most likely not applied.
            self.sent_commit = self.sent_commit.min(self.next - 1);
            return true;
        }

        // Outside of Replicate only one append (at next - 1) is in flight: a rejection of any
        // other index is stale.
        if self.next - 1 != rejected {
            return false;
        }
        self.next = rejected.min(match_hint + 1).max(self.matched + 1);
        self.sent_commit = self.sent_commit.min(self.next - 1);
        self.msg_app_flow_paused = false;
        true
    }

    /// Whether sending appends to this follower is throttled: it rejected recent appends, waits
    /// for a snapshot, or has a full in-flight window.
    pub fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe | ProgressState::Replicate => self.msg_app_flow_paused,
            ProgressState::Snapshot => true,
        }
    }
}

impl fmt::Display for Progress {
    /// etcd's form, e.g. `StateReplicate match=5 next=8 paused inflight=2[full]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} match={} next={}",
            self.state, self.matched, self.next
        )?;
        if self.is_learner {
            f.write_str(" learner")?;
        }
        if self.is_paused() {
            f.write_str(" paused")?;
        }
        if self.pending_snapshot > 0 {
            write!(f, " pendingSnap={}", self.pending_snapshot)?;
        }
        if !self.recent_active {
            f.write_str(" inactive")?;
        }
        let n = self.inflights.count();
        if n > 0 {
            write!(f, " inflight={n}")?;
            if self.inflights.full() {
                f.write_str("[full]")?;
            }
        }
        Ok(())
    }
}

/// The progress of every tracked node (voters and learners), by node id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgressMap {
    progress: BTreeMap<u64, Progress>,
}

impl ProgressMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// The progress of node `id`.
    pub fn get(&self, id: u64) -> Option<&Progress> {
        self.progress.get(&id)
    }

    /// The progress of node `id`, mutably.
    pub fn get_mut(&mut self, id: u64) -> Option<&mut Progress> {
        self.progress.get_mut(&id)
    }

    /// Whether node `id` is tracked.
    pub fn contains(&self, id: u64) -> bool {
        self.progress.contains_key(&id)
    }

    /// Tracks `progress` for node `id`, returning the progress it replaces.
    pub fn insert(&mut self, id: u64, progress: Progress) -> Option<Progress> {
        self.progress.insert(id, progress)
    }

    /// Stops tracking node `id`, returning its progress.
    pub fn remove(&mut self, id: u64) -> Option<Progress> {
        self.progress.remove(&id)
    }

    /// The number of tracked nodes.
    pub fn len(&self) -> usize {
        self.progress.len()
    }

    /// Whether no node is tracked.
    pub fn is_empty(&self) -> bool {
        self.progress.is_empty()
    }

    /// The tracked nodes and their progress, in ascending id order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Progress)> + '_ {
        self.progress.iter().map(|(&id, pr)| (id, pr))
    }

    /// The tracked nodes and their progress, mutably, in ascending id order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (u64, &mut Progress)> + '_ {
        self.progress.iter_mut().map(|(&id, pr)| (id, pr))
    }

    /// The tracked node ids, ascending.
    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.progress.keys().copied()
    }

    /// The smallest tracked node id above `after`.
    pub(crate) fn next_id_after(&self, after: u64) -> Option<u64> {
        use std::ops::Bound::{Excluded, Unbounded};
        self.progress
            .range((Excluded(after), Unbounded))
            .next()
            .map(|(&id, _)| id)
    }
}

impl AckedIndexer for ProgressMap {
    /// A node's acknowledged index is its match index.
    fn acked_index(&self, voter_id: u64) -> Option<Index> {
        self.get(voter_id).map(|pr| Index(pr.matched))
    }
}

impl fmt::Display for ProgressMap {
    /// One `id: progress` line per node, in ascending id order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (id, pr) in self.iter() {
            writeln!(f, "{id}: {pr}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(state: ProgressState, matched: u64, next: u64) -> Progress {
        let mut pr = Progress::new(next, Inflights::new(256, 0));
        pr.state = state;
        pr.matched = matched;
        pr.recent_active = true;
        pr
    }

    #[test]
    fn display_matches_etcd() {
        let mut pr = progress(ProgressState::Replicate, 1, 2);
        pr.is_learner = true;
        pr.msg_app_flow_paused = true;
        pr.pending_snapshot = 123;
        pr.recent_active = false;
        pr.inflights = Inflights::new(1, 0);
        pr.inflights.add(123, 1);
        assert_eq!(
            pr.to_string(),
            "StateReplicate match=1 next=2 learner paused pendingSnap=123 inactive inflight=1[full]"
        );
        assert_eq!(
            progress(ProgressState::Probe, 0, 1).to_string(),
            "StateProbe match=0 next=1"
        );
    }

    #[test]
    fn is_paused_depends_on_state() {
        for (state, paused, want) in [
            (ProgressState::Probe, false, false),
            (ProgressState::Probe, true, true),
            (ProgressState::Replicate, false, false),
            (ProgressState::Replicate, true, true),
            (ProgressState::Snapshot, false, true),
            (ProgressState::Snapshot, true, true),
        ] {
            let mut pr = progress(state, 0, 1);
            pr.msg_app_flow_paused = paused;
            assert_eq!(pr.is_paused(), want, "{state} paused={paused}");
        }
    }

    #[test]
    fn resume_on_update_and_pause_on_probe() {
        let mut pr = progress(ProgressState::Probe, 0, 2);
        pr.msg_app_flow_paused = true;
        pr.maybe_update(2);
        assert!(!pr.msg_app_flow_paused);

        pr.sent_entries(1, 0);
        assert!(
            pr.msg_app_flow_paused,
            "a probe with entries pauses the flow"
        );
        pr.msg_app_flow_paused = false;
        pr.sent_entries(0, 0);
        assert!(!pr.msg_app_flow_paused, "an empty probe does not");
    }

    #[test]
    fn become_probe_resets_next() {
        // From Replicate: next = match + 1.
        let mut pr = progress(ProgressState::Replicate, 1, 5);
        pr.become_probe();
        assert_eq!(
            (pr.state, pr.matched, pr.next),
            (ProgressState::Probe, 1, 2)
        );

        // From Snapshot: next = max(match, pending snapshot) + 1.
        let mut pr = progress(ProgressState::Replicate, 1, 5);
        pr.become_snapshot(10);
        assert_eq!(pr.next, 11);
        pr.become_probe();
        assert_eq!(
            (pr.state, pr.matched, pr.next),
            (ProgressState::Probe, 1, 11)
        );
        assert_eq!(pr.pending_snapshot, 0);

        let mut pr = progress(ProgressState::Replicate, 1, 5);
        pr.become_snapshot(10);
        pr.matched = 12;
        pr.become_probe();
        assert_eq!(pr.next, 13);
    }

    #[test]
    fn become_replicate_and_snapshot() {
        let mut pr = progress(ProgressState::Probe, 1, 5);
        pr.become_replicate();
        assert_eq!(
            (pr.state, pr.matched, pr.next),
            (ProgressState::Replicate, 1, 2)
        );

        pr.become_snapshot(10);
        assert_eq!(
            (pr.state, pr.matched, pr.pending_snapshot, pr.sent_commit()),
            (ProgressState::Snapshot, 1, 10, 10)
        );
        assert!(pr.is_paused());
    }

    #[test]
    fn maybe_update_ignores_outdated_acks() {
        let (prev_m, prev_n) = (3, 5);
        for (update, want_ok, want_m, want_n) in [
            (prev_m - 1, false, prev_m, prev_n),        // old ack
            (prev_m, false, prev_m, prev_n),            // same ack
            (prev_m + 1, true, prev_m + 1, prev_n),     // new ack below next
            (prev_m + 2, true, prev_m + 2, prev_n + 1), // ack beyond next pushes next
        ] {
            let mut pr = progress(ProgressState::Probe, prev_m, prev_n);
            assert_eq!(pr.maybe_update(update), want_ok, "update {update}");
            assert_eq!((pr.matched, pr.next), (want_m, want_n), "update {update}");
        }
    }

    #[test]
    fn maybe_decr_to() {
        // (state, match, next, rejected, hint) -> (ok, next)
        for (state, m, n, rejected, hint, want_ok, want_n) in [
            // Replicate: stale rejection below match.
            (ProgressState::Replicate, 5, 10, 5, 5, false, 10),
            (ProgressState::Replicate, 5, 10, 4, 4, false, 10),
            // Replicate: genuine rejection goes back to match + 1.
            (ProgressState::Replicate, 5, 10, 9, 9, true, 6),
            // Probe: rejection not of next - 1 is stale.
            (ProgressState::Probe, 0, 1, 0, 0, true, 1),
            (ProgressState::Probe, 0, 10, 5, 5, false, 10),
            // Probe: next goes to min(rejected, hint + 1), at least match + 1.
            (ProgressState::Probe, 0, 10, 9, 9, true, 9),
            (ProgressState::Probe, 0, 2, 1, 1, true, 1),
            (ProgressState::Probe, 0, 10, 9, 2, true, 3),
            (ProgressState::Probe, 2, 10, 9, 0, true, 3),
        ] {
            let mut pr = progress(state, m, n);
            pr.msg_app_flow_paused = true;
            assert_eq!(
                pr.maybe_decr_to(rejected, hint),
                want_ok,
                "{state} {m}/{n} rej {rejected}"
            );
            assert_eq!(pr.next, want_n, "{state} {m}/{n} rej {rejected}");
            if want_ok && state == ProgressState::Probe {
                assert!(
                    !pr.msg_app_flow_paused,
                    "a genuine rejection unpauses the probe"
                );
            }
        }
    }

    #[test]
    fn replicate_pauses_when_the_window_fills() {
        let mut pr = progress(ProgressState::Replicate, 0, 1);
        pr.inflights = Inflights::new(2, 0);
        pr.sent_entries(3, 30);
        assert_eq!(pr.next, 4);
        assert!(!pr.is_paused());
        pr.sent_entries(1, 10);
        assert_eq!(pr.next, 5);
        assert!(pr.is_paused());
        assert_eq!(
            pr.to_string(),
            "StateReplicate match=0 next=5 paused inflight=2[full]"
        );
        pr.inflights.free_le(3);
        assert!(pr.maybe_update(3));
        assert!(!pr.is_paused());
    }

    #[test]
    fn sent_commit_tracks_what_can_still_be_bumped() {
        let mut pr = progress(ProgressState::Replicate, 5, 10);
        assert!(pr.can_bump_commit(3));
        pr.mark_commit_sent(9);
        assert!(
            !pr.can_bump_commit(12),
            "commit already sent up to next - 1"
        );
        // A rejection regresses what was sent.
        assert!(pr.maybe_decr_to(8, 8));
        assert_eq!(pr.sent_commit(), 5);
        assert!(!pr.can_bump_commit(5));
        pr.next = 8;
        assert!(pr.can_bump_commit(6));
    }

    #[test]
    #[should_panic(expected = "sending append in unhandled state StateSnapshot")]
    fn appending_in_snapshot_state_is_a_bug() {
        let mut pr = progress(ProgressState::Replicate, 0, 1);
        pr.become_snapshot(5);
        pr.sent_entries(1, 0);
    }

    #[test]
    fn progress_map_displays_sorted_lines() {
        let mut m = ProgressMap::new();
        m.insert(3, progress(ProgressState::Probe, 0, 1));
        m.insert(1, progress(ProgressState::Replicate, 4, 5));
        assert_eq!(
            m.to_string(),
            "1: StateReplicate match=4 next=5\n3: StateProbe match=0 next=1\n"
        );
        assert_eq!(m.acked_index(1), Some(Index(4)));
        assert_eq!(m.acked_index(2), None);
    }
}
