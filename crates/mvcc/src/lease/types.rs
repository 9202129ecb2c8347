//! A lease's in-memory state and the values the lessor hands out.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::LeaseId;

/// A key attached to a lease: deleted when the lease is revoked (etcd's `LeaseItem`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaseItem {
    /// The attached key of the key space.
    pub key: Vec<u8>,
}

impl LeaseItem {
    /// The item for `key`.
    pub fn new(key: impl Into<Vec<u8>>) -> LeaseItem {
        LeaseItem { key: key.into() }
    }
}

/// A granted lease as the lessor holds it.
///
/// The TTLs are whole seconds, as in etcd's API; the expiry is an instant of the caller's
/// monotonic clock, or `None` ("forever") while this lessor is not the primary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub(super) id: LeaseId,
    pub(super) ttl: i64,
    pub(super) remaining_ttl: i64,
    pub(super) expiry: Option<Instant>,
    pub(super) keys: BTreeSet<Vec<u8>>,
}

impl Lease {
    pub(super) fn new(id: LeaseId, ttl: i64, remaining_ttl: i64) -> Lease {
        Lease {
            id,
            ttl,
            remaining_ttl,
            expiry: None,
            keys: BTreeSet::new(),
        }
    }

    /// The lease id.
    pub fn id(&self) -> LeaseId {
        self.id
    }

    /// The granted TTL in seconds (after flooring to the minimum TTL).
    pub fn ttl(&self) -> i64 {
        self.ttl
    }

    /// The last checkpointed remaining TTL in seconds as stored, 0 when unset.
    pub fn checkpointed_ttl(&self) -> i64 {
        self.remaining_ttl
    }

    /// The TTL a refresh grants: the checkpointed remaining TTL if set, else the full TTL
    /// (etcd's `Lease.RemainingTTL`).
    pub fn remaining_ttl(&self) -> i64 {
        if self.remaining_ttl > 0 {
            self.remaining_ttl
        } else {
            self.ttl
        }
    }

    /// When the lease expires by the caller's clock; `None` while it cannot expire (this lessor
    /// is not the primary).
    pub fn expiry(&self) -> Option<Instant> {
        self.expiry
    }

    /// The time left at `now`: zero once expired, `None` when the lease cannot expire.
    pub fn remaining(&self, now: Instant) -> Option<Duration> {
        self.expiry.map(|e| e.saturating_duration_since(now))
    }

    /// Whether the lease has expired at `now` (its expiry is not after `now`).
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expiry.is_some_and(|e| e <= now)
    }

    /// The attached keys in ascending order (the order revoke deletes them in, so every
    /// member's backend changes identically).
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.keys.iter().map(Vec::as_slice)
    }

    /// Sets the expiry to `now + extend + remaining_ttl()` (etcd's `refresh`); an instant past
    /// the clock's range means the lease cannot expire.
    pub(super) fn refresh(&mut self, extend: Duration, now: Instant) {
        let ttl = Duration::from_secs(self.remaining_ttl().max(0).unsigned_abs());
        self.expiry = extend.checked_add(ttl).and_then(|d| now.checked_add(d));
    }

    /// Removes the expiry: the lease cannot expire until the next refresh.
    pub(super) fn forever(&mut self) {
        self.expiry = None;
    }
}

/// A lease's time to live, as etcd's `LeaseTimeToLive` answers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeToLive {
    /// The lease id.
    pub id: LeaseId,
    /// The granted TTL in seconds.
    pub granted_ttl: i64,
    /// Whole seconds left (truncated, like etcd; 0 once expired). A lessor that is not the
    /// primary has no expiry and reports the checkpointed remaining TTL instead.
    pub remaining_ttl: i64,
    /// The attached keys in ascending order, when asked for.
    pub keys: Vec<Vec<u8>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_ttl_prefers_the_checkpoint() {
        let mut lease = Lease::new(1, 100, 0);
        assert_eq!(lease.remaining_ttl(), 100);
        lease.remaining_ttl = 40;
        assert_eq!(lease.remaining_ttl(), 40);
        assert_eq!(lease.checkpointed_ttl(), 40);
        lease.remaining_ttl = -1;
        assert_eq!(lease.remaining_ttl(), 100);
    }

    #[test]
    fn refresh_and_expiry() {
        let t0 = Instant::now();
        let mut lease = Lease::new(1, 10, 0);
        assert_eq!(lease.remaining(t0), None);
        assert!(!lease.is_expired(t0 + Duration::from_secs(1_000_000)));
        lease.refresh(Duration::from_secs(5), t0);
        assert_eq!(lease.expiry(), Some(t0 + Duration::from_secs(15)));
        assert_eq!(
            lease.remaining(t0 + Duration::from_secs(4)),
            Some(Duration::from_secs(11))
        );
        assert!(!lease.is_expired(t0 + Duration::from_millis(14_999)));
        assert!(lease.is_expired(t0 + Duration::from_secs(15)));
        assert_eq!(
            lease.remaining(t0 + Duration::from_secs(20)),
            Some(Duration::ZERO)
        );
        lease.forever();
        assert_eq!(lease.expiry(), None);
        // A non-positive TTL expires at once.
        let mut instant = Lease::new(2, -5, 0);
        instant.refresh(Duration::ZERO, t0);
        assert!(instant.is_expired(t0));
    }
}
