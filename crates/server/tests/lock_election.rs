//! etcd's Lock and Election services (`v3lockpb.Lock`, `v3electionpb.Election`) against
//! `ferrocd`, through the `etcd-client` crate: mutual exclusion, hand-over on unlock and on
//! lease revocation, a cancelled wait giving its place up; campaigns, proclamations,
//! resignations, observation; and etcd's errors with etcd 3.4's codes.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::future::Future;
use std::time::Duration;

use common::Ferrocd;
use etcd_client::{
    Client, Error, GetOptions, LeaderKey, LockOptions, ProclaimOptions, ResignOptions,
};
use tokio::sync::mpsc;
use tokio::time::timeout;

/// The longest any step may take.
const T: Duration = Duration::from_secs(10);

/// How long a blocked call is watched to stay blocked.
const BLOCKED: Duration = Duration::from_millis(800);

async fn client(f: &Ferrocd) -> Client {
    within(Client::connect([f.client_url()], None))
        .await
        .expect("connect")
}

/// `fut`'s output, failing the test if it takes longer than [`T`].
async fn within<F: Future>(fut: F) -> F::Output {
    timeout(T, fut).await.expect("timed out")
}

fn status_of(e: Error) -> (tonic::Code, String) {
    match e {
        Error::GRpcStatus(s) => (s.code(), s.message().to_owned()),
        other => panic!("not a gRPC status: {other:?}"),
    }
}

async fn grant(c: &mut Client, ttl: i64) -> i64 {
    within(c.lease_grant(ttl, None)).await.unwrap().id()
}

/// The keys under `prefix`, oldest first.
async fn keys_under(c: &mut Client, prefix: &str) -> Vec<String> {
    let opts = GetOptions::new().with_prefix().with_sort(
        etcd_client::SortTarget::Create,
        etcd_client::SortOrder::Ascend,
    );
    let resp = within(c.get(prefix, Some(opts))).await.unwrap();
    resp.kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_is_exclusive_and_passes_on_at_unlock() {
    let f = Ferrocd::start();
    let mut c = client(&f).await;
    let a = grant(&mut c, 60).await;
    let b = grant(&mut c, 60).await;

    let held = within(c.lock("job", Some(LockOptions::new().with_lease(a))))
        .await
        .unwrap();
    let key_a = format!("job/{a:x}");
    assert_eq!(held.key(), key_a.as_bytes());
    let get = within(c.get(key_a.as_str(), None)).await.unwrap();
    assert_eq!(get.kvs().len(), 1);
    assert_eq!(get.kvs()[0].lease(), a);
    assert_eq!(get.kvs()[0].value(), b"");
    // The header is the put's: the key was created at its revision.
    assert_eq!(
        held.header().unwrap().revision(),
        get.kvs()[0].create_revision()
    );
    // Locking again with the same lease is the same acquisition, at once.
    let again = within(c.lock("job", Some(LockOptions::new().with_lease(a))))
        .await
        .unwrap();
    assert_eq!(again.key(), key_a.as_bytes());

    // A second locker waits, its key queued behind the holder's.
    let mut c2 = c.clone();
    let waiter =
        tokio::spawn(async move { c2.lock("job", Some(LockOptions::new().with_lease(b))).await });
    tokio::time::sleep(BLOCKED).await;
    assert!(!waiter.is_finished(), "the second locker did not wait");
    let key_b = format!("job/{b:x}");
    assert_eq!(
        keys_under(&mut c, "job/").await,
        [key_a.clone(), key_b.clone()]
    );

    // Unlocking hands the lock over.
    let unlocked = within(c.unlock(key_a.as_str())).await.unwrap();
    let unlock_rev = unlocked.header().unwrap().revision();
    let got = within(waiter).await.unwrap().unwrap();
    assert_eq!(got.key(), key_b.as_bytes());
    assert!(got.header().unwrap().revision() >= unlock_rev);
    assert_eq!(keys_under(&mut c, "job/").await, [key_b.as_str()]);

    // Unlock of a key that is gone succeeds, with the current revision.
    within(c.unlock(key_b.as_str())).await.unwrap();
    let gone = within(c.unlock(key_b.as_str())).await.unwrap();
    let now = within(c.get("job/", None)).await.unwrap();
    assert_eq!(
        gone.header().unwrap().revision(),
        now.header().unwrap().revision()
    );
    assert!(keys_under(&mut c, "job/").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_is_released_when_its_lease_is_revoked() {
    let f = Ferrocd::start();
    let mut c = client(&f).await;
    let a = grant(&mut c, 60).await;
    let b = grant(&mut c, 60).await;
    within(c.lock("res", Some(LockOptions::new().with_lease(a))))
        .await
        .unwrap();
    let mut c2 = c.clone();
    let waiter =
        tokio::spawn(async move { c2.lock("res", Some(LockOptions::new().with_lease(b))).await });
    tokio::time::sleep(BLOCKED).await;
    assert!(!waiter.is_finished(), "the second locker did not wait");
    within(c.lease_revoke(a)).await.unwrap();
    let got = within(waiter).await.unwrap().unwrap();
    assert_eq!(got.key(), format!("res/{b:x}").as_bytes());
    assert_eq!(keys_under(&mut c, "res/").await, [format!("res/{b:x}")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_lock_wait_gives_its_place_up() {
    let f = Ferrocd::start();
    let mut c = client(&f).await;
    let a = grant(&mut c, 60).await;
    let b = grant(&mut c, 60).await;
    let d = grant(&mut c, 60).await;
    within(c.lock("q", Some(LockOptions::new().with_lease(a))))
        .await
        .unwrap();
    // The client gives up: the RPC is cancelled while the server waits.
    let mut c2 = c.clone();
    let gave_up = timeout(
        BLOCKED,
        c2.lock("q", Some(LockOptions::new().with_lease(b))),
    )
    .await;
    assert!(gave_up.is_err(), "the second locker did not wait");
    // Its key is deleted, bounded by T.
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let keys = keys_under(&mut c, "q/").await;
        if keys == [format!("q/{a:x}")] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the abandoned key stayed: {keys:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // So the next locker after the holder does not wait for it.
    within(c.unlock(format!("q/{a:x}"))).await.unwrap();
    let got = within(c.lock("q", Some(LockOptions::new().with_lease(d))))
        .await
        .unwrap();
    assert_eq!(got.key(), format!("q/{d:x}").as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_leases_follow_etcd() {
    let f = Ferrocd::start();
    let mut c = client(&f).await;
    // An unknown lease: the put's error, sent as etcd 3.4 sends it (code Unknown).
    let err = within(c.lock("l", Some(LockOptions::new().with_lease(0x1234))))
        .await
        .unwrap_err();
    assert_eq!(
        status_of(err),
        (
            tonic::Code::Unknown,
            "etcdserver: requested lease not found".to_owned()
        )
    );
    assert!(keys_under(&mut c, "l/").await.is_empty());
    // No lease: etcd's session grants one of 60 seconds, which holds the key.
    let held = within(c.lock("l", None)).await.unwrap();
    let key = String::from_utf8(held.key().to_vec()).unwrap();
    let hex = key
        .strip_prefix("l/")
        .expect("the key is under the lock's name");
    let lease = i64::from_str_radix(hex, 16).unwrap();
    let ttl = within(c.lease_time_to_live(lease, None)).await.unwrap();
    assert_eq!(ttl.granted_ttl(), 60);
    assert!(ttl.ttl() > 0);
    let get = within(c.get(key.as_str(), None)).await.unwrap();
    assert_eq!(get.kvs()[0].lease(), lease);
    // Unlock of no key: the delete's check, as etcd 3.4 sends it.
    let err = within(c.unlock("")).await.unwrap_err();
    assert_eq!(
        status_of(err),
        (
            tonic::Code::Unknown,
            "etcdserver: key is not provided".to_owned()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_campaign_leader_proclaim_resign() {
    let f = Ferrocd::start();
    let mut c = client(&f).await;
    let a = grant(&mut c, 60).await;
    let b = grant(&mut c, 60).await;

    let won = within(c.campaign("el", "a1", a)).await.unwrap();
    let leader_a = won.leader().unwrap().clone();
    assert_eq!(leader_a.name(), b"el");
    assert_eq!(leader_a.key(), format!("el/{a:x}").as_bytes());
    assert_eq!(leader_a.lease(), a);
    assert_eq!(leader_a.rev(), won.header().unwrap().revision());

    let l = within(c.leader("el")).await.unwrap();
    let kv = l.kv().unwrap();
    assert_eq!(kv.key(), leader_a.key());
    assert_eq!(kv.value(), b"a1");
    assert_eq!(kv.create_revision(), leader_a.rev());
    assert_eq!(kv.lease(), a);

    let proclaimed = within(c.proclaim(
        "a2",
        Some(ProclaimOptions::new().with_leader(leader_a.clone())),
    ))
    .await
    .unwrap();
    let l = within(c.leader("el")).await.unwrap();
    assert_eq!(l.kv().unwrap().value(), b"a2");
    assert_eq!(
        l.kv().unwrap().mod_revision(),
        proclaimed.header().unwrap().revision()
    );

    // A second campaigner waits behind the leader.
    let mut c2 = c.clone();
    let second = tokio::spawn(async move { c2.campaign("el", "b1", b).await });
    tokio::time::sleep(BLOCKED).await;
    assert!(!second.is_finished(), "the second campaigner did not wait");
    assert_eq!(
        within(c.leader("el")).await.unwrap().kv().unwrap().value(),
        b"a2"
    );

    // Campaigning again with the leader's lease keeps its place and proclaims the new value.
    let again = within(c.campaign("el", "a3", a)).await.unwrap();
    assert_eq!(again.leader().unwrap().rev(), leader_a.rev());
    assert_eq!(
        within(c.leader("el")).await.unwrap().kv().unwrap().value(),
        b"a3"
    );

    // Resigning elects the second.
    within(c.resign(Some(ResignOptions::new().with_leader(leader_a.clone()))))
        .await
        .unwrap();
    let won_b = within(second).await.unwrap().unwrap();
    let leader_b = won_b.leader().unwrap().clone();
    assert_eq!(leader_b.key(), format!("el/{b:x}").as_bytes());
    let l = within(c.leader("el")).await.unwrap();
    assert_eq!(l.kv().unwrap().key(), leader_b.key());
    assert_eq!(l.kv().unwrap().value(), b"b1");

    // The old leader key is no leader any more.
    let err = within(c.proclaim(
        "stale",
        Some(ProclaimOptions::new().with_leader(leader_a.clone())),
    ))
    .await
    .unwrap_err();
    assert_eq!(
        status_of(err),
        (tonic::Code::Unknown, "election: not leader".to_owned())
    );
    assert_eq!(
        within(c.leader("el")).await.unwrap().kv().unwrap().value(),
        b"b1"
    );
    // Resigning with it changes nothing either (and is no error, as in etcd).
    within(c.resign(Some(ResignOptions::new().with_leader(leader_a))))
        .await
        .unwrap();
    assert_eq!(keys_under(&mut c, "el/").await, [format!("el/{b:x}")]);
}

/// Observes election `name` on a task of its own: each leader response as (key, value,
/// header revision).
fn observe(c: &Client, name: &str) -> mpsc::UnboundedReceiver<(String, String, i64)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut c = c.clone();
    let name = name.to_owned();
    tokio::spawn(async move {
        let mut obs = c.observe(name).await.unwrap();
        while let Some(resp) = obs.message().await.unwrap() {
            let kv = resp.kv().unwrap();
            let seen = (
                String::from_utf8_lossy(kv.key()).into_owned(),
                String::from_utf8_lossy(kv.value()).into_owned(),
                resp.header().unwrap().revision(),
            );
            if tx.send(seen).is_err() {
                return;
            }
        }
    });
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_streams_leaders_and_their_proclamations() {
    let f = Ferrocd::start();
    let mut c = client(&f).await;
    let a = grant(&mut c, 60).await;
    let b = grant(&mut c, 60).await;

    // Observing an election nobody has won yet waits for the first leader. (etcd sends the
    // stream's headers with its first message, so the observer opens it on a task.)
    let mut rx = observe(&c, "ob");
    let mut next = async || within(rx.recv()).await.expect("the observation ended");
    let won = within(c.campaign("ob", "a1", a)).await.unwrap();
    let leader_a = won.leader().unwrap().clone();
    let key_a = format!("ob/{a:x}");
    assert_eq!(
        next().await,
        (key_a.clone(), "a1".to_owned(), leader_a.rev())
    );

    let p = within(c.proclaim(
        "a2",
        Some(ProclaimOptions::new().with_leader(leader_a.clone())),
    ))
    .await
    .unwrap();
    let rev = p.header().unwrap().revision();
    assert_eq!(next().await, (key_a.clone(), "a2".to_owned(), rev));

    let mut c2 = c.clone();
    let second = tokio::spawn(async move { c2.campaign("ob", "b1", b).await });
    tokio::time::sleep(BLOCKED).await;
    within(c.resign(Some(ResignOptions::new().with_leader(leader_a))))
        .await
        .unwrap();
    let won_b = within(second).await.unwrap().unwrap();
    let (key, value, _) = next().await;
    assert_eq!((key, value), (format!("ob/{b:x}"), "b1".to_owned()));

    // A new observer starts from the current leader.
    let mut late = within(c.observe("ob")).await.unwrap();
    let first = within(late.message()).await.unwrap().unwrap();
    assert_eq!(first.kv().unwrap().value(), b"b1");
    assert_eq!(
        first.kv().unwrap().create_revision(),
        won_b.leader().unwrap().rev()
    );
    // Nothing else was observed.
    assert!(rx.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_errors_follow_etcd() {
    let f = Ferrocd::start();
    let mut c = client(&f).await;
    let err = within(c.leader("nobody")).await.unwrap_err();
    assert_eq!(
        status_of(err),
        (tonic::Code::Unknown, "election: no leader".to_owned())
    );
    // etcd-client sends Proclaim and Resign without a leader when given no options.
    let missing = (
        tonic::Code::Unknown,
        "\"leader\" field must be provided".to_owned(),
    );
    let err = within(c.proclaim("v", None)).await.unwrap_err();
    assert_eq!(status_of(err), missing);
    let err = within(c.resign(None)).await.unwrap_err();
    assert_eq!(status_of(err), missing);
    // A campaign on an unknown lease fails with the put's error, as etcd 3.4 sends it.
    let err = within(c.campaign("e", "v", 0x77)).await.unwrap_err();
    assert_eq!(
        status_of(err),
        (
            tonic::Code::Unknown,
            "etcdserver: requested lease not found".to_owned()
        )
    );
    // A leader key that never existed is no leader.
    let ghost = LeaderKey::new()
        .with_name("e")
        .with_key("e/1")
        .with_rev(1)
        .with_lease(1);
    let err = within(c.proclaim("v", Some(ProclaimOptions::new().with_leader(ghost))))
        .await
        .unwrap_err();
    assert_eq!(
        status_of(err),
        (tonic::Code::Unknown, "election: not leader".to_owned())
    );
}

/// A Lock call waiting for its turn waits on a task, not a thread: two hundred waiters leave
/// the member's thread count where it was, and unlocking hands the lock to the oldest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_lock_calls_hold_no_thread_each() {
    const WAITERS: usize = 200;
    let f = Ferrocd::start();
    let mut c = client(&f).await;
    let holder = grant(&mut c, 60).await;
    let held = within(c.lock("busy", Some(LockOptions::new().with_lease(holder))))
        .await
        .unwrap();
    let before = f.threads();
    let (won_tx, mut won_rx) = mpsc::unbounded_channel();
    let mut waiters = Vec::with_capacity(WAITERS);
    for i in 0..WAITERS {
        let lease = grant(&mut c, 60).await;
        let mut waiter = c.clone();
        let won = won_tx.clone();
        waiters.push(tokio::spawn(async move {
            if let Ok(r) = waiter
                .lock("busy", Some(LockOptions::new().with_lease(lease)))
                .await
            {
                let _ = won.send((i, r.key().to_vec()));
            }
        }));
        // One at a time, so that the oldest waiter is the first spawned.
        let deadline = tokio::time::Instant::now() + T;
        while keys_under(&mut c, "busy/").await.len() < i + 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "waiter {i} not queued"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let during = f.threads();
    assert!(
        during <= before + 16,
        "{during} threads with {WAITERS} waiting locks, {before} before"
    );
    within(c.unlock(held.key())).await.unwrap();
    let (first, key) = within(won_rx.recv()).await.unwrap();
    assert_eq!(first, 0, "the oldest waiter gets the lock");
    assert_eq!(
        keys_under(&mut c, "busy/").await[0].as_bytes(),
        key.as_slice()
    );
    for w in waiters {
        w.abort();
    }
}
