//! A time-ordered queue holding at most one entry per lease (etcd's `LeaseQueue` /
//! `LeaseExpiredNotifier`).
//!
//! The lessor keeps two: lease expiries (or revoke retry times) and next checkpoint times.
//! Rescheduling or removing a lease is O(log n): an index from lease to its current time finds
//! the entry to replace, so the queue never holds stale entries and never needs a full scan.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use super::LeaseId;

/// Leases ordered by a time, earliest first; ties in ascending id order.
#[derive(Debug, Default)]
pub(crate) struct LeaseQueue {
    by_time: BTreeSet<(Instant, LeaseId)>,
    at: HashMap<LeaseId, Instant>,
}

impl LeaseQueue {
    /// Schedules `id` at `at`, replacing its previous time if it had one.
    pub(crate) fn schedule(&mut self, id: LeaseId, at: Instant) {
        if let Some(old) = self.at.insert(id, at) {
            self.by_time.remove(&(old, id));
        }
        self.by_time.insert((at, id));
    }

    /// Removes `id`'s entry, if any.
    pub(crate) fn remove(&mut self, id: LeaseId) {
        if let Some(old) = self.at.remove(&id) {
            self.by_time.remove(&(old, id));
        }
    }

    /// The time `id` is scheduled at.
    #[cfg(test)]
    pub(crate) fn scheduled(&self, id: LeaseId) -> Option<Instant> {
        self.at.get(&id).copied()
    }

    /// Removes and returns the earliest entry if its time is `<= now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(LeaseId, Instant)> {
        let &(at, id) = self.by_time.first()?;
        if at > now {
            return None;
        }
        self.by_time.pop_first();
        self.at.remove(&id);
        Some((id, at))
    }

    /// Drops every entry.
    pub(crate) fn clear(&mut self) {
        self.by_time.clear();
        self.at.clear();
    }

    /// How many leases are scheduled.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        debug_assert_eq!(self.by_time.len(), self.at.len());
        self.at.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_in_time_order_only_when_due() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut q = LeaseQueue::default();
        q.schedule(3, t0 + s(3));
        q.schedule(1, t0 + s(1));
        q.schedule(2, t0 + s(2));
        q.schedule(4, t0 + s(1));
        assert_eq!(q.len(), 4);
        assert_eq!(q.pop_due(t0), None);
        assert_eq!(q.pop_due(t0 + s(1)), Some((1, t0 + s(1))));
        assert_eq!(q.pop_due(t0 + s(1)), Some((4, t0 + s(1))));
        assert_eq!(q.pop_due(t0 + s(1)), None);
        assert_eq!(q.pop_due(t0 + s(10)), Some((2, t0 + s(2))));
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn rescheduling_replaces_and_remove_forgets() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut q = LeaseQueue::default();
        q.schedule(1, t0 + s(1));
        q.schedule(2, t0 + s(2));
        q.schedule(1, t0 + s(5));
        assert_eq!(q.len(), 2);
        assert_eq!(q.scheduled(1), Some(t0 + s(5)));
        assert_eq!(q.pop_due(t0 + s(3)), Some((2, t0 + s(2))));
        assert_eq!(q.pop_due(t0 + s(3)), None);
        q.remove(1);
        q.remove(42);
        assert_eq!(q.len(), 0);
        assert_eq!(q.pop_due(t0 + s(100)), None);
        q.schedule(7, t0);
        q.clear();
        assert_eq!(q.len(), 0);
        assert_eq!(q.scheduled(7), None);
    }
}
