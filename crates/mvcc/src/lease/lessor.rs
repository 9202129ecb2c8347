//! The lessor: grants, revokes, renewals, attachments, expiry and checkpoints.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use storage_api::{Backend, Bucket, ReadTx};

use super::queue::LeaseQueue;
use super::record::{LeaseRecord, lease_id_from_key, lease_key};
use super::{
    CorruptRecord, Lease, LeaseError, LeaseId, LeaseItem, MAX_LEASE_TTL, NO_LEASE, RevokeTxn,
    TimeToLive,
};

/// How the lessor behaves (etcd's `LessorConfig` plus its tunables).
#[derive(Clone, Debug)]
pub struct LessorConfig {
    /// Shorter requested TTLs are raised to this many seconds (etcd derives it from the
    /// election timeout so a lease outlives a leader election).
    pub min_lease_ttl: i64,
    /// Whether the primary checkpoints remaining TTLs (etcd's `--experimental-enable-lease-
    /// checkpoint`); without it a new leader or a restart grants every lease its full TTL.
    pub checkpointing: bool,
    /// How often a long lease's remaining TTL is checkpointed (etcd: 5 minutes). Leases whose
    /// remaining TTL is shorter are not checkpointed.
    pub checkpoint_interval: Duration,
    /// How long before an expired lease is reported again by [`Lessor::expired_leases`] if its
    /// revoke has not been applied meanwhile (etcd: 3 seconds).
    pub expired_leases_retry_interval: Duration,
    /// The revokes per second the caller allows (etcd: 1 000). [`Lessor::promote`] spreads
    /// expiries that would pile up beyond three quarters of it.
    pub revoke_rate: usize,
}

impl Default for LessorConfig {
    fn default() -> Self {
        LessorConfig {
            min_lease_ttl: 0,
            checkpointing: true,
            checkpoint_interval: Duration::from_secs(5 * 60),
            expired_leases_retry_interval: Duration::from_secs(3),
            revoke_rate: 1000,
        }
    }
}

/// etcd's lessor over a backend's `lease` bucket.
///
/// Not synchronised: methods that change state take `&mut self`, so share it behind a lock.
/// Grants and checkpoints write the `lease` bucket through their own short write transaction:
/// do not call them while holding the backend's [`storage_api::BatchTx`].
pub struct Lessor {
    backend: Arc<Backend>,
    config: LessorConfig,
    leases: BTreeMap<LeaseId, Lease>,
    /// Which lease each attached key belongs to.
    items: HashMap<Vec<u8>, LeaseId>,
    /// Expiries, then revoke retry times, of the primary's leases.
    expiries: LeaseQueue,
    /// Next checkpoint times of the primary's long leases.
    checkpoints: LeaseQueue,
    /// Leases whose checkpoint a renew cleared, for [`Lessor::checkpoint_due`] to propose.
    checkpoint_resets: BTreeSet<LeaseId>,
    primary: bool,
}

impl std::fmt::Debug for Lessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lessor")
            .field("primary", &self.primary)
            .field("leases", &self.leases.len())
            .field("attached_keys", &self.items.len())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Lessor {
    /// Opens the lessor over `backend`: creates the `lease` bucket if needed and restores every
    /// lease recorded there, with its checkpointed remaining TTL. Restored leases cannot expire
    /// until [`Lessor::promote`]; the store re-attaches their keys as it restores its index.
    pub fn new(backend: Arc<Backend>, config: LessorConfig) -> Result<Lessor, LeaseError> {
        let mut lessor = Lessor {
            backend,
            config,
            leases: BTreeMap::new(),
            items: HashMap::new(),
            expiries: LeaseQueue::default(),
            checkpoints: LeaseQueue::default(),
            checkpoint_resets: BTreeSet::new(),
            primary: false,
        };
        lessor.load()?;
        Ok(lessor)
    }

    /// Replaces every lease with those recorded in `backend` (etcd's `Recover`, after a
    /// snapshot is installed). The lessor is demoted: promote it again if this member leads.
    pub fn recover(&mut self, backend: Arc<Backend>) -> Result<(), LeaseError> {
        self.backend = backend;
        self.demote();
        self.leases.clear();
        self.items.clear();
        self.load()
    }

    fn load(&mut self) -> Result<(), LeaseError> {
        let mut tx = self.backend.batch_tx()?;
        tx.create_bucket(Bucket::LEASE)?;
        tx.end()?;
        let records = self.backend.read_tx()?.range(Bucket::LEASE, &[], None, 0)?;
        let mut leases = BTreeMap::new();
        for (key, value) in records {
            let record = decode_entry(&key, &value)
                .map_err(|reason| LeaseError::Corrupted { key, reason })?;
            let ttl = record.ttl.max(self.config.min_lease_ttl);
            leases.insert(record.id, Lease::new(record.id, ttl, record.remaining_ttl));
        }
        tracing::debug!(leases = leases.len(), "restored leases");
        self.leases = leases;
        Ok(())
    }

    /// Whether this lessor is the primary (tracks expiries and renews leases).
    pub fn is_primary(&self) -> bool {
        self.primary
    }

    /// How many leases exist.
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    /// Whether no lease exists.
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// Grants lease `id` for `ttl` seconds, raised to the minimum TTL, and records it. On the
    /// primary it expires `ttl` after `now`; elsewhere it cannot expire until a promote.
    pub fn grant(&mut self, id: LeaseId, ttl: i64, now: Instant) -> Result<&Lease, LeaseError> {
        if id == NO_LEASE {
            return Err(LeaseError::InvalidId);
        }
        if ttl > MAX_LEASE_TTL {
            return Err(LeaseError::TtlTooLarge {
                ttl,
                max: MAX_LEASE_TTL,
            });
        }
        if self.leases.contains_key(&id) {
            return Err(LeaseError::LeaseExists(id));
        }
        let mut lease = Lease::new(id, ttl.max(self.config.min_lease_ttl), 0);
        self.persist(&lease)?;
        if self.primary {
            lease.refresh(Duration::ZERO, now);
            self.schedule_expiry(&lease);
            self.schedule_checkpoint(&lease, now);
        }
        tracing::debug!(lease = id, ttl = lease.ttl, "granted lease");
        Ok(self.leases.entry(id).or_insert(lease))
    }

    /// Revokes lease `id`: deletes every attached key (in key order) and the lease's record
    /// through `txn`, the store's single write transaction, then forgets the lease. If `txn`
    /// fails, the lessor's state is unchanged and the transaction must be abandoned.
    pub fn revoke(&mut self, id: LeaseId, txn: &mut dyn RevokeTxn) -> Result<(), LeaseError> {
        let lease = self.leases.get(&id).ok_or(LeaseError::LeaseNotFound(id))?;
        let fail = |source| LeaseError::Revoke { id, source };
        for key in lease.keys() {
            txn.delete_key(key).map_err(fail)?;
        }
        txn.delete_raw(Bucket::LEASE, &lease_key(id))
            .map_err(fail)?;
        if let Some(lease) = self.leases.remove(&id) {
            for key in lease.keys {
                if self.items.get(&key) == Some(&id) {
                    self.items.remove(&key);
                }
            }
        }
        self.expiries.remove(id);
        self.checkpoints.remove(id);
        self.checkpoint_resets.remove(&id);
        tracing::debug!(lease = id, "revoked lease");
        Ok(())
    }

    /// Renews lease `id` (a keep-alive) at `now` and returns its TTL. Only the primary renews.
    ///
    /// A checkpointed remaining TTL is cleared, so the lease gets its full TTL again; with
    /// checkpointing on, the next [`Lessor::checkpoint_due`] includes a `(id, 0)` checkpoint so
    /// every member's record forgets the old remaining TTL too (etcd proposes the same).
    pub fn renew(&mut self, id: LeaseId, now: Instant) -> Result<i64, LeaseError> {
        if !self.primary {
            return Err(LeaseError::NotPrimary);
        }
        let lease = self
            .leases
            .get_mut(&id)
            .ok_or(LeaseError::LeaseNotFound(id))?;
        if lease.is_expired(now) {
            return Err(LeaseError::LeaseExpired(id));
        }
        if lease.remaining_ttl > 0 {
            lease.remaining_ttl = 0;
            if self.config.checkpointing {
                self.checkpoint_resets.insert(id);
            }
        }
        lease.refresh(Duration::ZERO, now);
        let ttl = lease.ttl;
        match lease.expiry {
            Some(at) => self.expiries.schedule(id, at),
            None => self.expiries.remove(id),
        }
        Ok(ttl)
    }

    /// The lease `id`, if it exists.
    pub fn lookup(&self, id: LeaseId) -> Option<&Lease> {
        self.leases.get(&id)
    }

    /// Every lease, in ascending id order.
    pub fn leases(&self) -> impl ExactSizeIterator<Item = &Lease> + '_ {
        self.leases.values()
    }

    /// Lease `id`'s granted and remaining TTL at `now`, with its keys if `with_keys`.
    pub fn time_to_live(
        &self,
        id: LeaseId,
        with_keys: bool,
        now: Instant,
    ) -> Result<TimeToLive, LeaseError> {
        let lease = self.lookup(id).ok_or(LeaseError::LeaseNotFound(id))?;
        let remaining_ttl = match lease.remaining(now) {
            Some(left) => i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            None => lease.remaining_ttl(),
        };
        let keys = if with_keys {
            lease.keys().map(<[u8]>::to_vec).collect()
        } else {
            Vec::new()
        };
        Ok(TimeToLive {
            id,
            granted_ttl: lease.ttl,
            remaining_ttl,
            keys,
        })
    }

    /// Attaches `items` to lease `id`; a key attached to another lease moves to this one.
    pub fn attach(&mut self, id: LeaseId, items: &[LeaseItem]) -> Result<(), LeaseError> {
        if !self.leases.contains_key(&id) {
            return Err(LeaseError::LeaseNotFound(id));
        }
        for item in items {
            if let Some(old) = self.items.insert(item.key.clone(), id)
                && old != id
                && let Some(previous) = self.leases.get_mut(&old)
            {
                previous.keys.remove(&item.key);
            }
            if let Some(lease) = self.leases.get_mut(&id) {
                lease.keys.insert(item.key.clone());
            }
        }
        Ok(())
    }

    /// Detaches `items` from lease `id`; items not attached to it are ignored.
    pub fn detach(&mut self, id: LeaseId, items: &[LeaseItem]) -> Result<(), LeaseError> {
        let lease = self
            .leases
            .get_mut(&id)
            .ok_or(LeaseError::LeaseNotFound(id))?;
        for item in items {
            if lease.keys.remove(&item.key) && self.items.get(&item.key) == Some(&id) {
                self.items.remove(&item.key);
            }
        }
        Ok(())
    }

    /// The lease `key` is attached to, or [`NO_LEASE`].
    pub fn get_lease(&self, key: &[u8]) -> LeaseId {
        self.items.get(key).copied().unwrap_or(NO_LEASE)
    }

    /// Makes this lessor the primary at `now` (this member became the raft leader): every lease
    /// expires `extend` plus its remaining TTL (the checkpointed one if set) after `now`.
    ///
    /// With at least [`LessorConfig::revoke_rate`] leases, expiries that would pile up beyond
    /// three quarters of that rate per second are spread out (etcd's pile-up avoidance).
    pub fn promote(&mut self, extend: Duration, now: Instant) {
        self.primary = true;
        self.expiries.clear();
        self.checkpoints.clear();
        for lease in self.leases.values_mut() {
            lease.refresh(extend, now);
        }
        if self.leases.len() >= self.config.revoke_rate {
            self.spread_expiries(extend, now);
        }
        let leases = std::mem::take(&mut self.leases);
        for lease in leases.values() {
            self.schedule_expiry(lease);
            self.schedule_checkpoint(lease, now);
        }
        self.leases = leases;
        tracing::info!(leases = self.leases.len(), ?extend, "lessor promoted");
    }

    /// etcd's pile-up avoidance: walking leases in expiry order, once more than
    /// `3/4 * revoke_rate` would expire within a window, later ones get pushed back.
    fn spread_expiries(&mut self, extend: Duration, now: Instant) {
        let mut order: Vec<(Instant, LeaseId)> = self
            .leases
            .values()
            .filter_map(|l| l.expiry.map(|e| (e, l.id)))
            .collect();
        order.sort_unstable();
        let Some(&(first, _)) = order.first() else {
            return;
        };
        let target = (3 * self.config.revoke_rate / 4).max(1);
        let mut base = first;
        let mut next_window = base + Duration::from_secs(1);
        let mut expires = 0usize;
        for (expiry, id) in order {
            if expiry > next_window {
                base = expiry;
                next_window = base + Duration::from_secs(1);
                expires = 1;
                continue;
            }
            expires += 1;
            if expires <= target {
                continue;
            }
            // If leases are extended by n seconds, leases n seconds ahead of the base window
            // are extended by only one second.
            let rate_delay = expires as f64 / target as f64 - (expiry - base).as_secs_f64();
            let delay = Duration::from_secs_f64(rate_delay.max(0.0));
            next_window = base + delay;
            if let Some(lease) = self.leases.get_mut(&id) {
                lease.refresh(delay + extend, now);
            }
        }
    }

    /// Stops being the primary (leadership lost): no lease expires until the next promote.
    pub fn demote(&mut self) {
        for lease in self.leases.values_mut() {
            lease.forever();
        }
        self.expiries.clear();
        self.checkpoints.clear();
        self.checkpoint_resets.clear();
        if self.primary {
            tracing::info!("lessor demoted");
        }
        self.primary = false;
    }

    /// The leases expired at `now` for the leader to propose revokes of, earliest expiry first,
    /// at most `limit` (0: no limit). A lease returned is not returned again until
    /// [`LessorConfig::expired_leases_retry_interval`] has passed without its revoke applied.
    /// Empty unless this lessor is the primary.
    pub fn expired_leases(&mut self, now: Instant, limit: usize) -> Vec<LeaseId> {
        let mut out = Vec::new();
        if !self.primary {
            return out;
        }
        while limit == 0 || out.len() < limit {
            let Some((id, _)) = self.expiries.pop_due(now) else {
                break;
            };
            let Some(expiry) = self.leases.get(&id).and_then(Lease::expiry) else {
                continue;
            };
            if expiry <= now {
                out.push(id);
                match now.checked_add(self.config.expired_leases_retry_interval) {
                    Some(retry) => self.expiries.schedule(id, retry),
                    None => tracing::warn!(lease = id, "revoke retry time overflows the clock"),
                }
            } else {
                // Only a queue out of step with the lease gets here; resynchronise it.
                self.expiries.schedule(id, expiry);
            }
        }
        out
    }

    /// The checkpoints for the leader to propose at `now`, at most `limit` (0: no limit):
    /// first the `(id, 0)` resets of leases renewed since their last checkpoint, then the
    /// remaining TTL (whole seconds, rounded up) of each long lease whose checkpoint is due.
    /// Each member applies them with [`Lessor::apply_checkpoint`]. Empty unless this lessor is
    /// the primary with checkpointing on.
    pub fn checkpoint_due(&mut self, now: Instant, limit: usize) -> Vec<(LeaseId, i64)> {
        let mut out = Vec::new();
        if !self.primary || !self.config.checkpointing {
            return out;
        }
        let room = |out: &Vec<(LeaseId, i64)>| limit == 0 || out.len() < limit;
        while room(&out) {
            let Some(id) = self.checkpoint_resets.pop_first() else {
                break;
            };
            if self.leases.contains_key(&id) {
                out.push((id, 0));
            }
        }
        while room(&out) {
            let Some((id, _)) = self.checkpoints.pop_due(now) else {
                break;
            };
            let Some(lease) = self.leases.get(&id) else {
                continue;
            };
            let Some(left) = lease.expiry.and_then(|e| e.checked_duration_since(now)) else {
                continue;
            };
            if left.is_zero() {
                continue;
            }
            let remaining = i64::try_from(left.as_secs() + u64::from(left.subsec_nanos() > 0))
                .unwrap_or(i64::MAX);
            // Keep checkpointing while the lease outlives another interval.
            if remaining > interval_secs(self.config.checkpoint_interval)
                && let Some(next) = now.checked_add(self.config.checkpoint_interval)
            {
                self.checkpoints.schedule(id, next);
            }
            if remaining < lease.ttl {
                out.push((id, remaining));
            }
        }
        out
    }

    /// Applies a checkpoint from the raft log on any member: records `remaining_ttl` seconds as
    /// the lease's remaining TTL, used at the next promote (0 clears it). A lease revoked
    /// meanwhile is ignored.
    pub fn apply_checkpoint(&mut self, id: LeaseId, remaining_ttl: i64) -> Result<(), LeaseError> {
        let Some(lease) = self.leases.get(&id) else {
            tracing::debug!(lease = id, "checkpoint of an unknown lease ignored");
            return Ok(());
        };
        let mut updated = lease.clone();
        updated.remaining_ttl = remaining_ttl;
        self.persist(&updated)?;
        if let Some(lease) = self.leases.get_mut(&id) {
            lease.remaining_ttl = remaining_ttl;
        }
        Ok(())
    }

    /// Writes `lease`'s record to the `lease` bucket.
    fn persist(&self, lease: &Lease) -> Result<(), LeaseError> {
        let record = LeaseRecord {
            id: lease.id,
            ttl: lease.ttl,
            remaining_ttl: lease.remaining_ttl,
        };
        let mut tx = self.backend.batch_tx()?;
        tx.put(Bucket::LEASE, &lease_key(lease.id), &record.encode())?;
        tx.end()?;
        Ok(())
    }

    fn schedule_expiry(&mut self, lease: &Lease) {
        match lease.expiry {
            Some(at) => self.expiries.schedule(lease.id, at),
            None => self.expiries.remove(lease.id),
        }
    }

    /// Schedules `lease`'s next checkpoint if checkpointing is on and the lease outlives an
    /// interval (etcd's `scheduleCheckpointIfNeeded`).
    fn schedule_checkpoint(&mut self, lease: &Lease, now: Instant) {
        if self.config.checkpointing
            && lease.remaining_ttl() > interval_secs(self.config.checkpoint_interval)
            && let Some(at) = now.checked_add(self.config.checkpoint_interval)
        {
            self.checkpoints.schedule(lease.id, at);
        }
    }

    /// How many leases await expiry and checkpoints in the primary's queues.
    #[cfg(test)]
    fn queued(&self) -> (usize, usize) {
        (self.expiries.len(), self.checkpoints.len())
    }
}

/// The checkpoint interval in whole seconds, comparable with TTLs.
fn interval_secs(interval: Duration) -> i64 {
    i64::try_from(interval.as_secs()).unwrap_or(i64::MAX)
}

/// Decodes one `lease` bucket entry, checking the key names the record's lease.
fn decode_entry(key: &[u8], value: &[u8]) -> Result<LeaseRecord, CorruptRecord> {
    let key_id = lease_id_from_key(key).ok_or(CorruptRecord::KeyLength(key.len()))?;
    let record = LeaseRecord::decode(value)?;
    if record.id != key_id {
        return Err(CorruptRecord::IdMismatch {
            key: key_id,
            record: record.id,
        });
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::lease::RevokeError;
    use storage_api::{BackendConfig, Result as StorageResult};

    const KEYS: Bucket = Bucket::new("lessor_unit_keys");

    struct Fixture {
        _dir: tempfile::TempDir,
        backend: Arc<Backend>,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let engine =
            storage_lmdb::LmdbEngine::open(dir.path(), storage_lmdb::LmdbConfig::default())
                .unwrap();
        let backend = Arc::new(Backend::new(Box::new(engine), BackendConfig::default()).unwrap());
        Fixture { _dir: dir, backend }
    }

    struct Txn<'a>(storage_api::BatchTx<'a>);

    impl RevokeTxn for Txn<'_> {
        fn delete_key(&mut self, key: &[u8]) -> Result<(), RevokeError> {
            Ok(self.0.delete(KEYS, key)?)
        }
        fn delete_raw(&mut self, bucket: Bucket, key: &[u8]) -> Result<(), RevokeError> {
            Ok(self.0.delete(bucket, key)?)
        }
    }

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn queues_follow_promote_renew_revoke_and_demote() -> StorageResult<()> {
        let f = fixture();
        let config = LessorConfig {
            checkpoint_interval: s(10),
            ..LessorConfig::default()
        };
        let mut lessor = Lessor::new(Arc::clone(&f.backend), config).unwrap();
        let t0 = Instant::now();
        lessor.grant(1, 100, t0).unwrap();
        lessor.grant(2, 5, t0).unwrap();
        assert_eq!(lessor.queued(), (0, 0), "a follower queues nothing");
        lessor.promote(Duration::ZERO, t0);
        // Both expire; only the long lease gets checkpoints.
        assert_eq!(lessor.queued(), (2, 1));
        lessor.grant(3, 50, t0).unwrap();
        assert_eq!(lessor.queued(), (3, 2));
        lessor.renew(3, t0 + s(1)).unwrap();
        assert_eq!(lessor.queued(), (3, 2));
        assert_eq!(lessor.expiries.scheduled(3), Some(t0 + s(51)));
        {
            let mut txn = Txn(f.backend.batch_tx()?);
            txn.0.create_bucket(KEYS)?;
            lessor.revoke(3, &mut txn).unwrap();
        }
        assert_eq!(lessor.queued(), (2, 1));
        lessor.demote();
        assert_eq!(lessor.queued(), (0, 0));
        assert!(lessor.leases().all(|l| l.expiry().is_none()));
        Ok(())
    }

    #[test]
    fn pile_up_is_spread_after_promote() {
        let f = fixture();
        let config = LessorConfig {
            revoke_rate: 8,
            ..LessorConfig::default()
        };
        let mut lessor = Lessor::new(Arc::clone(&f.backend), config).unwrap();
        let t0 = Instant::now();
        for id in 1..=24 {
            lessor.grant(id, 10, t0).unwrap();
        }
        lessor.promote(Duration::ZERO, t0);
        // Target: 6 expiries per second. Without spreading, all 24 expire at t0 + 10s.
        let mut per_second = BTreeMap::<u64, usize>::new();
        for lease in lessor.leases() {
            let at = lease.expiry().unwrap() - t0;
            assert!(at >= s(10));
            *per_second.entry(at.as_secs()).or_default() += 1;
        }
        assert!(per_second.len() > 1, "expiries not spread: {per_second:?}");
        assert!(per_second.values().all(|n| *n <= 7), "{per_second:?}");
        // Every lease still gets expired eventually, in order.
        let expired = lessor.expired_leases(t0 + s(60), 0);
        assert_eq!(expired.len(), 24);
    }

    #[test]
    fn corrupted_records_are_reported() -> StorageResult<()> {
        let f = fixture();
        drop(Lessor::new(Arc::clone(&f.backend), LessorConfig::default()).unwrap());
        let mut tx = f.backend.batch_tx()?;
        tx.put(
            Bucket::LEASE,
            &lease_key(7),
            &LeaseRecord {
                id: 8,
                ttl: 1,
                remaining_ttl: 0,
            }
            .encode(),
        )?;
        tx.end()?;
        let err = Lessor::new(Arc::clone(&f.backend), LessorConfig::default())
            .err()
            .unwrap();
        assert!(matches!(
            err,
            LeaseError::Corrupted {
                reason: CorruptRecord::IdMismatch { key: 7, record: 8 },
                ..
            }
        ));
        let mut tx = f.backend.batch_tx()?;
        tx.delete(Bucket::LEASE, &lease_key(7))?;
        tx.put(Bucket::LEASE, b"abc", b"")?;
        tx.end()?;
        let err = Lessor::new(Arc::clone(&f.backend), LessorConfig::default())
            .err()
            .unwrap();
        assert!(matches!(
            err,
            LeaseError::Corrupted {
                reason: CorruptRecord::KeyLength(3),
                ..
            }
        ));
        Ok(())
    }
}
