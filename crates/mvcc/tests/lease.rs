//! The lessor over a real (LMDB) backend, driven by a fake clock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mvcc::lease::{
    LeaseError, LeaseId, LeaseItem, LeaseRecord, Lessor, LessorConfig, MAX_LEASE_TTL, NO_LEASE,
    RevokeError, RevokeTxn, record::lease_key,
};
use proptest::prelude::*;
use storage_api::{Backend, BackendConfig, BatchTx, Bucket, ReadTx};
use storage_lmdb::{LmdbConfig, LmdbEngine};

/// Stands in for the mvcc key space in these tests.
const KEYS: Bucket = Bucket::new("lease_test_keys");

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

fn open_backend(dir: &Path) -> Arc<Backend> {
    let engine = LmdbEngine::open(dir, LmdbConfig::default()).unwrap();
    let backend = Backend::new(Box::new(engine), BackendConfig::default()).unwrap();
    let mut tx = backend.batch_tx().unwrap();
    tx.create_bucket(KEYS).unwrap();
    tx.end().unwrap();
    Arc::new(backend)
}

struct Env {
    dir: tempfile::TempDir,
    backend: Arc<Backend>,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let backend = open_backend(dir.path());
        Env { dir, backend }
    }

    fn lessor(&self, config: LessorConfig) -> Lessor {
        Lessor::new(Arc::clone(&self.backend), config).unwrap()
    }

    fn put_keys(&self, keys: &[&str]) {
        let mut tx = self.backend.batch_tx().unwrap();
        for k in keys {
            tx.put(KEYS, k.as_bytes(), b"v").unwrap();
        }
        tx.end().unwrap();
    }

    fn keys(&self) -> Vec<String> {
        let rows = self
            .backend
            .read_tx()
            .unwrap()
            .range(KEYS, b"", None, 0)
            .unwrap();
        rows.into_iter()
            .map(|(k, _)| String::from_utf8(k).unwrap())
            .collect()
    }

    fn record(&self, id: LeaseId) -> Option<LeaseRecord> {
        let tx = self.backend.read_tx().unwrap();
        let value = tx.get(Bucket::LEASE, &lease_key(id)).unwrap()?;
        Some(LeaseRecord::decode(&value).unwrap())
    }

    /// Closes the backend and opens it again, as a restart does.
    fn reopen(self) -> Env {
        let Env { dir, backend } = self;
        let backend =
            Arc::try_unwrap(backend).unwrap_or_else(|_| panic!("a lessor still holds the backend"));
        backend.close().unwrap();
        drop(backend);
        let backend = open_backend(dir.path());
        Env { dir, backend }
    }
}

/// The store's write transaction, reduced to what a revoke needs.
struct Txn<'a> {
    tx: BatchTx<'a>,
    log: Vec<String>,
    fail_raw: bool,
}

impl<'a> Txn<'a> {
    fn new(backend: &'a Backend) -> Txn<'a> {
        Txn {
            tx: backend.batch_tx().unwrap(),
            log: Vec::new(),
            fail_raw: false,
        }
    }
}

impl RevokeTxn for Txn<'_> {
    fn delete_key(&mut self, key: &[u8]) -> Result<(), RevokeError> {
        self.log.push(String::from_utf8_lossy(key).into_owned());
        self.tx.delete(KEYS, key)?;
        Ok(())
    }

    fn delete_raw(&mut self, bucket: Bucket, key: &[u8]) -> Result<(), RevokeError> {
        if self.fail_raw {
            return Err(RevokeError::Store("injected failure".into()));
        }
        self.log.push(format!("{bucket}:{key:02x?}"));
        self.tx.delete(bucket, key)?;
        Ok(())
    }
}

/// Applies the revokes the leader would propose for `ids`.
fn revoke_all(env: &Env, lessor: &mut Lessor, ids: &[LeaseId]) {
    let mut txn = Txn::new(&env.backend);
    for id in ids {
        lessor.revoke(*id, &mut txn).unwrap();
    }
    txn.tx.end().unwrap();
}

fn items(keys: &[&str]) -> Vec<LeaseItem> {
    keys.iter().map(|k| LeaseItem::new(k.as_bytes())).collect()
}

fn checkpointing(interval: u64) -> LessorConfig {
    LessorConfig {
        checkpoint_interval: s(interval),
        ..LessorConfig::default()
    }
}

#[test]
fn grant_floors_and_caps_the_ttl() {
    let env = Env::new();
    let mut lessor = env.lessor(LessorConfig {
        min_lease_ttl: 5,
        ..LessorConfig::default()
    });
    let t0 = Instant::now();
    assert_eq!(lessor.grant(1, 1, t0).unwrap().ttl(), 5);
    assert_eq!(lessor.grant(2, 60, t0).unwrap().ttl(), 60);
    assert_eq!(
        lessor.grant(3, MAX_LEASE_TTL, t0).unwrap().ttl(),
        MAX_LEASE_TTL
    );
    assert!(matches!(
        lessor.grant(4, MAX_LEASE_TTL + 1, t0),
        Err(LeaseError::TtlTooLarge { ttl, max: MAX_LEASE_TTL }) if ttl == MAX_LEASE_TTL + 1
    ));
    assert!(matches!(
        lessor.grant(NO_LEASE, 10, t0),
        Err(LeaseError::InvalidId)
    ));
    assert!(matches!(
        lessor.grant(2, 10, t0),
        Err(LeaseError::LeaseExists(2))
    ));
    assert_eq!(
        lessor.lookup(2).unwrap().ttl(),
        60,
        "a failed grant changes nothing"
    );
    assert!(lessor.lookup(4).is_none());
    // Records are etcd's leasepb.Lease, with the floored TTL.
    assert_eq!(
        env.record(1),
        Some(LeaseRecord {
            id: 1,
            ttl: 5,
            remaining_ttl: 0
        })
    );
    assert_eq!(env.record(4), None);
    // A follower's leases cannot expire.
    assert_eq!(lessor.lookup(1).unwrap().expiry(), None);
}

#[test]
fn leases_are_listed_in_id_order() {
    let env = Env::new();
    let mut lessor = env.lessor(LessorConfig::default());
    let t0 = Instant::now();
    for id in [30, -2, 7, 1] {
        lessor.grant(id, 10, t0).unwrap();
    }
    let ids: Vec<LeaseId> = lessor.leases().map(|l| l.id()).collect();
    assert_eq!(ids, [-2, 1, 7, 30]);
    assert_eq!(lessor.len(), 4);
    assert!(!lessor.is_empty());
}

#[test]
fn revoke_deletes_attached_keys_and_record_in_one_transaction() {
    let env = Env::new();
    let mut lessor = env.lessor(LessorConfig::default());
    let t0 = Instant::now();
    env.put_keys(&["a", "b", "c", "free"]);
    lessor.grant(1, 10, t0).unwrap();
    lessor.grant(2, 10, t0).unwrap();
    lessor.attach(1, &items(&["c", "a", "b"])).unwrap();
    lessor.attach(2, &items(&["other"])).unwrap();

    let before = env.backend.read_tx().unwrap();
    let mut txn = Txn::new(&env.backend);
    lessor.revoke(1, &mut txn).unwrap();
    // Deletes go in key order, then the record: every member changes its backend identically.
    assert_eq!(
        txn.log,
        [
            "a",
            "b",
            "c",
            format!("lease:{:02x?}", lease_key(1)).as_str()
        ]
    );
    // Until the transaction ends, readers see neither the key deletions nor the record's.
    let during = env.backend.read_tx().unwrap();
    assert_eq!(during.range(KEYS, b"", None, 0).unwrap().len(), 4);
    assert!(during.get(Bucket::LEASE, &lease_key(1)).unwrap().is_some());
    txn.tx.end().unwrap();

    assert_eq!(env.keys(), ["free"]);
    assert_eq!(env.record(1), None);
    assert!(env.record(2).is_some());
    assert_eq!(before.range(KEYS, b"", None, 0).unwrap().len(), 4);
    assert!(lessor.lookup(1).is_none());
    assert_eq!(lessor.get_lease(b"a"), NO_LEASE);
    assert_eq!(lessor.get_lease(b"other"), 2);

    // Revoked, or never granted: not found.
    let mut txn = Txn::new(&env.backend);
    assert!(matches!(
        lessor.revoke(1, &mut txn),
        Err(LeaseError::LeaseNotFound(1))
    ));
    assert!(txn.log.is_empty());
}

#[test]
fn a_failed_revoke_leaves_the_lessor_unchanged() {
    let env = Env::new();
    let mut lessor = env.lessor(LessorConfig::default());
    let t0 = Instant::now();
    lessor.grant(9, 10, t0).unwrap();
    lessor.attach(9, &items(&["k"])).unwrap();
    let mut txn = Txn::new(&env.backend);
    txn.fail_raw = true;
    let err = lessor.revoke(9, &mut txn).unwrap_err();
    assert!(matches!(
        err,
        LeaseError::Revoke {
            id: 9,
            source: RevokeError::Store(_)
        }
    ));
    assert!(lessor.lookup(9).is_some());
    assert_eq!(lessor.get_lease(b"k"), 9);
}

#[test]
fn renew_is_for_the_primary_and_restarts_the_ttl() {
    let env = Env::new();
    let mut lessor = env.lessor(LessorConfig::default());
    let t0 = Instant::now();
    lessor.grant(1, 10, t0).unwrap();
    assert!(matches!(lessor.renew(1, t0), Err(LeaseError::NotPrimary)));

    lessor.promote(Duration::ZERO, t0);
    assert_eq!(lessor.lookup(1).unwrap().expiry(), Some(t0 + s(10)));
    assert_eq!(lessor.renew(1, t0 + s(6)).unwrap(), 10);
    assert_eq!(lessor.lookup(1).unwrap().expiry(), Some(t0 + s(16)));
    assert!(lessor.expired_leases(t0 + s(12), 0).is_empty(), "renewed");
    assert!(matches!(
        lessor.renew(2, t0),
        Err(LeaseError::LeaseNotFound(2))
    ));
    // An expired lease awaits its revoke; renewing cannot bring it back.
    assert!(matches!(
        lessor.renew(1, t0 + s(16)),
        Err(LeaseError::LeaseExpired(1))
    ));
    assert_eq!(lessor.expired_leases(t0 + s(16), 0), [1]);
}

#[test]
fn time_to_live_reports_granted_remaining_and_keys() {
    let env = Env::new();
    let mut lessor = env.lessor(LessorConfig::default());
    let t0 = Instant::now();
    lessor.grant(5, 100, t0).unwrap();
    lessor.attach(5, &items(&["z", "y"])).unwrap();

    // A follower knows no expiry: it reports the (checkpointed) remaining TTL.
    let ttl = lessor.time_to_live(5, false, t0).unwrap();
    assert_eq!((ttl.id, ttl.granted_ttl, ttl.remaining_ttl), (5, 100, 100));
    assert!(ttl.keys.is_empty());

    lessor.promote(Duration::ZERO, t0);
    let ttl = lessor
        .time_to_live(5, true, t0 + Duration::from_millis(30_500))
        .unwrap();
    assert_eq!((ttl.granted_ttl, ttl.remaining_ttl), (100, 69));
    assert_eq!(ttl.keys, [b"y".to_vec(), b"z".to_vec()]);
    let ttl = lessor.time_to_live(5, false, t0 + s(500)).unwrap();
    assert_eq!(ttl.remaining_ttl, 0, "expired, awaiting revoke");
    assert!(matches!(
        lessor.time_to_live(6, true, t0),
        Err(LeaseError::LeaseNotFound(6))
    ));
}

#[test]
fn attach_and_detach_need_the_lease() {
    let env = Env::new();
    let mut lessor = env.lessor(LessorConfig::default());
    let t0 = Instant::now();
    lessor.grant(1, 10, t0).unwrap();
    lessor.grant(2, 10, t0).unwrap();
    assert!(matches!(
        lessor.attach(3, &items(&["a"])),
        Err(LeaseError::LeaseNotFound(3))
    ));
    assert!(matches!(
        lessor.detach(3, &items(&["a"])),
        Err(LeaseError::LeaseNotFound(3))
    ));
    assert_eq!(lessor.get_lease(b"a"), NO_LEASE);

    lessor.attach(1, &items(&["a", "b"])).unwrap();
    assert_eq!(lessor.get_lease(b"a"), 1);
    // Re-attaching a key moves it to the new lease.
    lessor.attach(2, &items(&["b"])).unwrap();
    assert_eq!(lessor.get_lease(b"b"), 2);
    let keys: Vec<&[u8]> = lessor.lookup(1).unwrap().keys().collect();
    assert_eq!(keys, [b"a".as_slice()]);
    // Detaching a key of another lease leaves it where it is.
    lessor.detach(1, &items(&["b", "never"])).unwrap();
    assert_eq!(lessor.get_lease(b"b"), 2);
    lessor.detach(1, &items(&["a"])).unwrap();
    assert_eq!(lessor.get_lease(b"a"), NO_LEASE);
    assert_eq!(lessor.lookup(1).unwrap().keys().len(), 0);
}

#[test]
fn expired_leases_come_in_expiry_order_up_to_the_limit() {
    let env = Env::new();
    let mut lessor = env.lessor(LessorConfig::default());
    let t0 = Instant::now();
    for (id, ttl) in [(1, 30), (2, 10), (3, 20), (4, 10), (5, 1000)] {
        lessor.grant(id, ttl, t0).unwrap();
    }
    assert!(
        lessor.expired_leases(t0 + s(10_000), 0).is_empty(),
        "not primary"
    );
    lessor.promote(Duration::ZERO, t0);
    assert!(lessor.expired_leases(t0 + s(9), 0).is_empty());
    assert_eq!(lessor.expired_leases(t0 + s(25), 2), [2, 4]);
    assert_eq!(lessor.expired_leases(t0 + s(25), 2), [3]);
    revoke_all(&env, &mut lessor, &[2, 3, 4]);
    assert_eq!(lessor.expired_leases(t0 + s(30), 0), [1]);
    revoke_all(&env, &mut lessor, &[1]);
    // A lease granted later by the primary expires on its own schedule.
    lessor.grant(6, 5, t0 + s(30)).unwrap();
    assert_eq!(lessor.expired_leases(t0 + s(35), 0), [6]);
    assert!(lessor.lookup(5).is_some_and(|l| !l.is_expired(t0 + s(35))));
}

#[test]
fn an_unrevoked_lease_is_reported_again_after_the_retry_interval() {
    let env = Env::new();
    let mut lessor = env.lessor(LessorConfig {
        expired_leases_retry_interval: s(3),
        ..LessorConfig::default()
    });
    let t0 = Instant::now();
    lessor.grant(1, 10, t0).unwrap();
    lessor.promote(Duration::ZERO, t0);
    let t = t0 + s(10);
    assert_eq!(lessor.expired_leases(t, 0), [1]);
    assert!(lessor.expired_leases(t, 0).is_empty());
    assert!(
        lessor
            .expired_leases(t + Duration::from_millis(2_999), 0)
            .is_empty()
    );
    assert_eq!(lessor.expired_leases(t + s(3), 0), [1]);
    // Once revoked it is gone for good.
    let mut txn = Txn::new(&env.backend);
    lessor.revoke(1, &mut txn).unwrap();
    txn.tx.end().unwrap();
    assert!(lessor.expired_leases(t + s(100), 0).is_empty());
}

#[test]
fn checkpoints_survive_a_restart_and_bound_the_ttl_after_promote() {
    let env = Env::new();
    let t0 = Instant::now();
    {
        let mut lessor = env.lessor(checkpointing(60));
        lessor.promote(Duration::ZERO, t0);
        lessor.grant(1, 600, t0).unwrap();
        lessor.grant(2, 30, t0).unwrap(); // shorter than the interval: never checkpointed
        assert!(lessor.checkpoint_due(t0 + s(59), 0).is_empty());
        let due = lessor.checkpoint_due(t0 + Duration::from_millis(60_500), 0);
        assert_eq!(due, [(1, 540)], "rounded up: 539.5s left");
        for (id, remaining) in due {
            lessor.apply_checkpoint(id, remaining).unwrap();
        }
        assert_eq!(lessor.lookup(1).unwrap().checkpointed_ttl(), 540);
        // The next one comes an interval later.
        assert!(lessor.checkpoint_due(t0 + s(100), 0).is_empty());
        assert_eq!(lessor.checkpoint_due(t0 + s(121), 0), [(1, 479)]);
        // A checkpoint of a lease revoked meanwhile is ignored.
        lessor.apply_checkpoint(77, 5).unwrap();
    }
    assert_eq!(
        env.record(1),
        Some(LeaseRecord {
            id: 1,
            ttl: 600,
            remaining_ttl: 540
        })
    );
    let env = env.reopen();

    let mut lessor = env.lessor(checkpointing(60));
    let restored = lessor.lookup(1).unwrap();
    assert_eq!((restored.ttl(), restored.remaining_ttl()), (600, 540));
    assert_eq!(lessor.lookup(2).unwrap().remaining_ttl(), 30);
    // The new leader's clock has nothing to do with the old one.
    let t1 = Instant::now() + s(1000);
    lessor.promote(s(2), t1);
    assert_eq!(lessor.lookup(1).unwrap().expiry(), Some(t1 + s(542)));
    assert_eq!(lessor.lookup(2).unwrap().expiry(), Some(t1 + s(32)));
}

#[test]
fn renew_clears_the_checkpoint_on_every_member() {
    let env = Env::new();
    let mut lessor = env.lessor(checkpointing(60));
    let t0 = Instant::now();
    lessor.promote(Duration::ZERO, t0);
    lessor.grant(1, 600, t0).unwrap();
    lessor.apply_checkpoint(1, 400).unwrap();
    assert_eq!(lessor.renew(1, t0 + s(10)).unwrap(), 600);
    // The renewal gives the full TTL, not the checkpointed one...
    assert_eq!(lessor.lookup(1).unwrap().expiry(), Some(t0 + s(610)));
    // ...and asks the members to forget the checkpoint, before any due checkpoint.
    assert_eq!(lessor.checkpoint_due(t0 + s(10), 0), [(1, 0)]);
    assert!(lessor.checkpoint_due(t0 + s(10), 0).is_empty());
    assert_eq!(
        env.record(1).unwrap().remaining_ttl,
        400,
        "until the reset is applied"
    );
    lessor.apply_checkpoint(1, 0).unwrap();
    assert_eq!(env.record(1).unwrap().remaining_ttl, 0);
    // Renewing again with nothing checkpointed proposes nothing.
    lessor.renew(1, t0 + s(20)).unwrap();
    assert!(lessor.checkpoint_due(t0 + s(20), 0).is_empty());
}

#[test]
fn checkpoint_due_respects_the_limit_and_the_switch() {
    let env = Env::new();
    let mut lessor = env.lessor(checkpointing(10));
    let t0 = Instant::now();
    lessor.promote(Duration::ZERO, t0);
    for id in 1..=5 {
        lessor.grant(id, 100, t0).unwrap();
    }
    assert_eq!(lessor.checkpoint_due(t0 + s(10), 3).len(), 3);
    assert_eq!(lessor.checkpoint_due(t0 + s(10), 3).len(), 2);
    lessor.demote();
    assert!(
        lessor.checkpoint_due(t0 + s(1000), 0).is_empty(),
        "not primary"
    );

    let env = Env::new();
    let mut off = env.lessor(LessorConfig {
        checkpointing: false,
        checkpoint_interval: s(10),
        ..LessorConfig::default()
    });
    off.promote(Duration::ZERO, t0);
    off.grant(1, 100, t0).unwrap();
    off.apply_checkpoint(1, 50).unwrap();
    off.renew(1, t0 + s(1)).unwrap();
    assert!(off.checkpoint_due(t0 + s(50), 0).is_empty());
}

#[test]
fn demote_stops_expiry_and_promote_extends_every_lease() {
    let env = Env::new();
    let mut lessor = env.lessor(LessorConfig::default());
    let t0 = Instant::now();
    lessor.promote(Duration::ZERO, t0);
    assert!(lessor.is_primary());
    lessor.grant(1, 10, t0).unwrap();
    lessor.grant(2, 20, t0).unwrap();

    lessor.demote();
    assert!(!lessor.is_primary());
    assert!(lessor.leases().all(|l| l.expiry().is_none()));
    assert!(lessor.expired_leases(t0 + s(1000), 0).is_empty());
    assert!(matches!(lessor.renew(1, t0), Err(LeaseError::NotPrimary)));

    let t1 = t0 + s(1000);
    lessor.promote(s(5), t1);
    assert_eq!(lessor.lookup(1).unwrap().expiry(), Some(t1 + s(15)));
    assert_eq!(lessor.lookup(2).unwrap().expiry(), Some(t1 + s(25)));
    assert!(lessor.expired_leases(t1 + s(14), 0).is_empty());
    assert_eq!(lessor.expired_leases(t1 + s(25), 0), [1, 2]);
}

#[test]
fn recover_reloads_from_a_backend() {
    let env = Env::new();
    let t0 = Instant::now();
    let mut lessor = env.lessor(LessorConfig::default());
    lessor.grant(1, 10, t0).unwrap();
    lessor.attach(1, &items(&["a"])).unwrap();
    lessor.promote(Duration::ZERO, t0);

    let other = Env::new();
    let mut donor = other.lessor(LessorConfig::default());
    donor.grant(7, 70, t0).unwrap();
    donor.apply_checkpoint(7, 35).unwrap();
    drop(donor);

    lessor.recover(Arc::clone(&other.backend)).unwrap();
    assert!(!lessor.is_primary());
    let ids: Vec<LeaseId> = lessor.leases().map(|l| l.id()).collect();
    assert_eq!(ids, [7]);
    assert_eq!(lessor.lookup(7).unwrap().remaining_ttl(), 35);
    assert_eq!(lessor.get_lease(b"a"), NO_LEASE);
}

#[test]
fn restore_applies_the_current_minimum_ttl() {
    let env = Env::new();
    let t0 = Instant::now();
    env.lessor(LessorConfig::default()).grant(1, 2, t0).unwrap();
    let env = env.reopen();
    let lessor = env.lessor(LessorConfig {
        min_lease_ttl: 10,
        ..LessorConfig::default()
    });
    assert_eq!(lessor.lookup(1).unwrap().ttl(), 10);
}

/// `protoc --encode=leasepb.Lease` output for etcd's message definition.
#[test]
fn records_match_protobuf_wire_format() {
    let cases: [(LeaseRecord, &[u8]); 3] = [
        (
            LeaseRecord {
                id: 1,
                ttl: 10,
                remaining_ttl: 0,
            },
            &[0x08, 0x01, 0x10, 0x0a],
        ),
        (
            LeaseRecord {
                id: 74565,
                ttl: 300,
                remaining_ttl: 150,
            },
            &[0x08, 0xc5, 0xc6, 0x04, 0x10, 0xac, 0x02, 0x18, 0x96, 0x01],
        ),
        (
            LeaseRecord {
                id: i64::MAX,
                ttl: 5,
                remaining_ttl: 0,
            },
            &[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x10, 0x05,
            ],
        ),
    ];
    for (record, bytes) in cases {
        assert_eq!(record.encode(), bytes);
        assert_eq!(LeaseRecord::decode(bytes), Ok(record));
    }
}

proptest! {
    #[test]
    fn records_round_trip(id: i64, ttl: i64, remaining_ttl: i64) {
        let record = LeaseRecord { id, ttl, remaining_ttl };
        prop_assert_eq!(LeaseRecord::decode(&record.encode()), Ok(record));
    }

    /// Fields may come in any order and repeat (last wins), as protobuf allows.
    #[test]
    fn decoding_accepts_any_field_order(id: i64, ttl: i64, stale: i64) {
        let mut bytes = LeaseRecord { id: stale, ttl, remaining_ttl: 0 }.encode();
        bytes.extend(LeaseRecord { id, ttl: 0, remaining_ttl: 0 }.encode());
        let decoded = LeaseRecord::decode(&bytes).unwrap();
        prop_assert_eq!(decoded.ttl, ttl);
        prop_assert_eq!(decoded.id, if id != 0 { id } else { stale });
    }
}

#[test]
fn the_lessor_can_be_shared_behind_a_lock() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Lessor>();
    shareable::<LeaseError>();
}
