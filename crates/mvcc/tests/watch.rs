//! Watch: future events, replay, compaction, filters, prev_kv, cancel, progress, slow consumers,
//! fan-out and a concurrent stress test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mvcc::{
    DeleteRangeRequest, EventKind, PutRequest, RequestOp, StoreConfig, TxnRequest, WatchConfig,
    WatchError, WatchFilters, WatchResponse, WatchStream, WatchableStore,
};

use common::EngineKind;

const WAIT: Duration = Duration::from_secs(20);

fn fast() -> WatchConfig {
    WatchConfig {
        sync_interval: Duration::from_millis(5),
        victim_retry_interval: Duration::from_millis(1),
        ..WatchConfig::default()
    }
}

fn open_with(dir: &Path, config: WatchConfig) -> WatchableStore {
    let backend = EngineKind::Lmdb.open_backend(dir);
    WatchableStore::open(backend, StoreConfig::default(), config).unwrap()
}

fn temp(config: WatchConfig) -> (tempfile::TempDir, WatchableStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), config);
    (dir, store)
}

fn put(store: &WatchableStore, k: &str, v: &str) -> i64 {
    store.put(&PutRequest::new(k, v)).unwrap().revision
}

fn del(store: &WatchableStore, k: &str) -> i64 {
    store
        .delete_range(&DeleteRangeRequest::key(k))
        .unwrap()
        .revision
}

fn watch(s: &WatchStream, key: &str, end: Option<&[u8]>, rev: i64) -> i64 {
    s.watch(
        None,
        key.as_bytes(),
        end,
        rev,
        WatchFilters::default(),
        false,
    )
    .unwrap()
}

/// Receives responses until `n` events arrived (responses without events are skipped).
fn events(s: &WatchStream, n: usize) -> Vec<(i64, EventKind, String, i64)> {
    let deadline = Instant::now() + WAIT;
    let mut out = Vec::new();
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let resp = s
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("got {out:?}, wanted {n}: {e}"));
        for ev in resp.events {
            out.push((
                resp.watch_id,
                ev.kind,
                String::from_utf8(ev.kv.key.clone()).unwrap(),
                ev.kv.mod_revision,
            ));
        }
    }
    out
}

fn assert_quiet(s: &WatchStream) {
    if let Ok(resp) = s.recv_timeout(Duration::from_millis(50)) {
        panic!("unexpected response {resp:?}");
    }
}

fn prefix_end(p: &str) -> Vec<u8> {
    let mut e = p.as_bytes().to_vec();
    *e.last_mut().unwrap() += 1;
    e
}

#[test]
fn future_events_for_keys_prefixes_ranges_and_from_key() {
    let (_dir, store) = temp(fast());
    let s = store.watch_stream();
    let key = watch(&s, "foo", None, 0);
    let pre = watch(&s, "foo", Some(&prefix_end("foo")), 0);
    let range = watch(&s, "a", Some(b"c"), 0);
    let from = watch(&s, "x", Some(&[0]), 0);
    assert!(s.is_synced(key) && s.is_synced(from));
    let r1 = put(&store, "foo", "1");
    let r2 = put(&store, "foobar", "2");
    let r3 = put(&store, "b", "3");
    let r4 = put(&store, "c", "4");
    let r5 = put(&store, "zz", "5");
    let r6 = del(&store, "foo");
    let mut got = events(&s, 7);
    got.sort();
    let mut want = vec![
        (key, EventKind::Put, "foo".to_owned(), r1),
        (pre, EventKind::Put, "foo".to_owned(), r1),
        (pre, EventKind::Put, "foobar".to_owned(), r2),
        (range, EventKind::Put, "b".to_owned(), r3),
        (from, EventKind::Put, "zz".to_owned(), r5),
        (key, EventKind::Delete, "foo".to_owned(), r6),
        (pre, EventKind::Delete, "foo".to_owned(), r6),
    ];
    want.sort();
    assert_eq!(got, want);
    assert!(r4 > r3);
    assert_quiet(&s);
}

#[test]
fn delete_events_carry_the_key_and_the_delete_revision() {
    let (_dir, store) = temp(fast());
    let s = store.watch_stream();
    put(&store, "k", "v");
    watch(&s, "k", None, 0);
    let rev = del(&store, "k");
    let resp = s.recv_timeout(WAIT).unwrap();
    assert_eq!(resp.revision, rev);
    let ev = &resp.events[0];
    assert_eq!(ev.kind, EventKind::Delete);
    assert_eq!(ev.kv.key, b"k");
    assert_eq!(ev.kv.mod_revision, rev);
    assert_eq!(ev.kv.value, b"");
    assert_eq!(ev.kv.create_revision, 0);
}

#[test]
fn replays_history_from_a_past_revision_then_follows() {
    let (_dir, store) = temp(fast());
    let r1 = put(&store, "a", "1");
    let r2 = put(&store, "b", "2");
    let r3 = del(&store, "a");
    let r4 = put(&store, "a", "3");
    let s = store.watch_stream();
    let id = watch(&s, "a", Some(b"c"), r1);
    let id2 = watch(&s, "a", None, r3);
    let mut got = events(&s, 6);
    got.sort();
    let mut want = vec![
        (id, EventKind::Put, "a".to_owned(), r1),
        (id, EventKind::Put, "b".to_owned(), r2),
        (id, EventKind::Delete, "a".to_owned(), r3),
        (id, EventKind::Put, "a".to_owned(), r4),
        (id2, EventKind::Delete, "a".to_owned(), r3),
        (id2, EventKind::Put, "a".to_owned(), r4),
    ];
    want.sort();
    assert_eq!(got, want);
    let deadline = Instant::now() + WAIT;
    while !(s.is_synced(id) && s.is_synced(id2)) {
        assert!(Instant::now() < deadline, "never synced");
        std::thread::sleep(Duration::from_millis(1));
    }
    let r5 = put(&store, "b", "4");
    assert_eq!(
        events(&s, 1),
        vec![(id, EventKind::Put, "b".to_owned(), r5)]
    );
    assert_quiet(&s);
}

#[test]
fn replays_history_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let revs: Vec<i64> = {
        let store = open_with(dir.path(), fast());
        (0..5).map(|i| put(&store, "k", &i.to_string())).collect()
    };
    let store = open_with(dir.path(), fast());
    let s = store.watch_stream();
    let id = watch(&s, "k", None, revs[1]);
    let got: Vec<i64> = events(&s, 4).into_iter().map(|e| e.3).collect();
    assert_eq!(got, revs[1..]);
    let next = put(&store, "k", "x");
    assert_eq!(events(&s, 1)[0], (id, EventKind::Put, "k".to_owned(), next));
}

#[test]
fn a_compacted_start_revision_cancels_the_watch() {
    let (_dir, store) = temp(fast());
    let revs: Vec<i64> = (0..5).map(|i| put(&store, &format!("k{i}"), "v")).collect();
    store.compact(revs[3]).unwrap().wait().unwrap();
    let s = store.watch_stream();
    let id = watch(&s, "k", Some(&prefix_end("k")), revs[1]);
    let resp = s.recv_timeout(WAIT).unwrap();
    assert_eq!(resp.watch_id, id);
    assert!(resp.canceled);
    assert_eq!(resp.compact_revision, revs[3]);
    assert!(resp.events.is_empty());
    assert_eq!(store.watcher_counts().unsynced, 0);
    put(&store, "k9", "v");
    assert_quiet(&s);
    s.cancel(id).unwrap();
    // At the compaction revision itself, history is still there.
    let ok = watch(&s, "k", Some(&prefix_end("k")), revs[3]);
    let got: Vec<i64> = events(&s, 3).into_iter().map(|e| e.3).collect();
    assert_eq!(got, vec![revs[3], revs[4], revs[4] + 1]);
    assert!(s.cancel(ok).is_ok());
}

/// A negative start revision is a past revision, as in etcd: cancelled as compacted when a
/// compaction passed it, otherwise (etcd's read range is then empty) no history, only what
/// follows; and a compaction response carries no revision of its own.
#[test]
fn a_negative_start_revision_is_a_past_one() {
    let (_dir, store) = temp(fast());
    put(&store, "k0", "v");
    let s = store.watch_stream();
    let id = watch(&s, "k", Some(&prefix_end("k")), -1);
    assert_eq!(
        store.watcher_counts().synced + store.watcher_counts().unsynced,
        1
    );
    let next = put(&store, "k1", "v");
    assert_eq!(events(&s, 1), vec![(id, EventKind::Put, "k1".into(), next)]);

    store.compact(next).unwrap().wait().unwrap();
    let gone = watch(&s, "k", Some(&prefix_end("k")), -1);
    let resp = s.recv_timeout(WAIT).unwrap();
    assert_eq!(resp.watch_id, gone);
    assert!(resp.canceled);
    assert_eq!(resp.compact_revision, next);
    assert_eq!(
        resp.revision, 0,
        "etcd's compaction response has no revision"
    );
}

#[test]
fn filters_drop_puts_or_deletes() {
    let (_dir, store) = temp(fast());
    let s = store.watch_stream();
    let r1 = put(&store, "k", "1");
    let r2 = del(&store, "k");
    let no_put = WatchFilters {
        no_put: true,
        no_delete: false,
    };
    let no_del = WatchFilters {
        no_put: false,
        no_delete: true,
    };
    let a = s.watch(None, b"k", None, r1, no_put, false).unwrap();
    let b = s.watch(None, b"k", None, r1, no_del, false).unwrap();
    let c = s.watch(None, b"k", None, 0, no_put, false).unwrap();
    let d = s.watch(None, b"k", None, 0, no_del, false).unwrap();
    let deadline = Instant::now() + WAIT;
    while !(s.is_synced(a) && s.is_synced(b)) {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(1));
    }
    let r3 = put(&store, "k", "3");
    let r4 = del(&store, "k");
    let mut got = events(&s, 6);
    got.sort();
    let mut want = vec![
        (a, EventKind::Delete, "k".to_owned(), r2),
        (a, EventKind::Delete, "k".to_owned(), r4),
        (b, EventKind::Put, "k".to_owned(), r1),
        (b, EventKind::Put, "k".to_owned(), r3),
        (c, EventKind::Delete, "k".to_owned(), r4),
        (d, EventKind::Put, "k".to_owned(), r3),
    ];
    want.sort();
    assert_eq!(got, want);
    assert_quiet(&s);
}

#[test]
fn prev_kv_is_the_value_before_each_event() {
    let (_dir, store) = temp(fast());
    let s = store.watch_stream();
    let live = s
        .watch(None, b"k", None, 0, WatchFilters::default(), true)
        .unwrap();
    let r1 = put(&store, "k", "v1");
    put(&store, "other", "x");
    put(&store, "k", "v2");
    let r4 = del(&store, "k");
    let replay = s
        .watch(None, b"k", None, r1, WatchFilters::default(), true)
        .unwrap();
    let plain = s
        .watch(None, b"k", None, r1, WatchFilters::default(), false)
        .unwrap();
    let mut by_watch = std::collections::BTreeMap::<i64, Vec<_>>::new();
    let deadline = Instant::now() + WAIT;
    while by_watch.values().map(Vec::len).sum::<usize>() < 9 {
        let resp = s
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap();
        by_watch
            .entry(resp.watch_id)
            .or_default()
            .extend(resp.events);
    }
    for id in [live, replay] {
        let evs = &by_watch[&id];
        let prev: Vec<Option<Vec<u8>>> = evs
            .iter()
            .map(|e| e.prev_kv.as_ref().map(|p| p.value.clone()))
            .collect();
        assert_eq!(prev, vec![None, Some(b"v1".to_vec()), Some(b"v2".to_vec())]);
        assert_eq!(evs[2].kv.mod_revision, r4);
        assert_eq!(evs[2].prev_kv.as_ref().unwrap().version, 2);
    }
    assert!(by_watch[&plain].iter().all(|e| e.prev_kv.is_none()));
}

#[test]
fn cancel_ids_and_ranges() {
    let (_dir, store) = temp(fast());
    let s = store.watch_stream();
    let f = WatchFilters::default();
    assert_eq!(s.watch(Some(1), b"a", None, 0, f, false).unwrap(), 1);
    assert_eq!(s.watch(None, b"a", None, 0, f, false).unwrap(), 0);
    assert_eq!(s.watch(None, b"a", None, 0, f, false).unwrap(), 2);
    assert_eq!(
        s.watch(Some(1), b"a", None, 0, f, false),
        Err(WatchError::DuplicateId(1))
    );
    assert_eq!(
        s.watch(Some(-1), b"a", None, 0, f, false),
        Err(WatchError::InvalidId(-1))
    );
    assert_eq!(
        s.watch(None, b"b", Some(b"a"), 0, f, false),
        Err(WatchError::EmptyRange)
    );
    s.cancel(0).unwrap();
    s.cancel(2).unwrap();
    assert_eq!(s.cancel(2), Err(WatchError::NotExist(2)));
    let r = put(&store, "a", "1");
    assert_eq!(events(&s, 1), vec![(1, EventKind::Put, "a".to_owned(), r)]);
    s.cancel(1).unwrap();
    put(&store, "a", "2");
    assert_quiet(&s);
    assert_eq!(store.watcher_counts().synced, 0);
    // Dropping a stream cancels its watches.
    let s2 = store.watch_stream();
    watch(&s2, "a", None, 0);
    assert_eq!(store.watcher_counts().synced, 1);
    drop(s2);
    assert_eq!(store.watcher_counts().synced, 0);
}

#[test]
fn progress_is_reported_only_for_synced_watches() {
    let config = WatchConfig {
        chan_buf_len: 1,
        ..fast()
    };
    let (_dir, store) = temp(config);
    let s = store.watch_stream();
    let id = watch(&s, "k", None, 0);
    put(&store, "x", "1");
    assert!(s.request_progress(id));
    let resp = s.recv_timeout(WAIT).unwrap();
    assert!(resp.is_progress_notify());
    assert_eq!((resp.watch_id, resp.revision), (id, store.rev()));
    assert!(s.request_progress_all());
    let all = s.recv_timeout(WAIT).unwrap();
    assert_eq!(
        (all.watch_id, all.revision),
        (mvcc::watch::PROGRESS_ALL_ID, store.rev())
    );
    // Fill the channel, then make the watch a victim: no progress while it is behind.
    let r1 = put(&store, "k", "1");
    let r2 = put(&store, "k", "2");
    assert!(!s.is_synced(id));
    assert!(!s.request_progress(id));
    assert!(!s.request_progress_all());
    assert!(!s.request_progress(42));
    let got: Vec<i64> = events(&s, 2).into_iter().map(|e| e.3).collect();
    assert_eq!(got, vec![r1, r2]);
    let deadline = Instant::now() + WAIT;
    while !s.is_synced(id) {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(s.request_progress(id));
    assert_eq!(s.recv_timeout(WAIT).unwrap().revision, r2);
}

#[test]
fn one_revision_is_never_split_across_responses() {
    let config = WatchConfig {
        max_revs_per_batch: 2,
        max_revs_per_sync_read: 3,
        ..fast()
    };
    let (_dir, store) = temp(config);
    let txn = |keys: &[&str]| {
        let req = TxnRequest {
            success: keys
                .iter()
                .map(|k| RequestOp::Put(PutRequest::new(*k, "v")))
                .collect(),
            ..TxnRequest::default()
        };
        store.txn(&req).unwrap().revision
    };
    let live = store.watch_stream();
    watch(&live, "p/", Some(&prefix_end("p/")), 0);
    let first = txn(&["p/a", "p/b", "p/c"]);
    for _ in 0..6 {
        txn(&["p/a", "p/b", "q"]);
    }
    let replay = store.watch_stream();
    watch(&replay, "p/", Some(&prefix_end("p/")), first);
    for s in [&live, &replay] {
        let mut seen = 0;
        let mut last = 0;
        while seen < 15 {
            let resp: WatchResponse = s.recv_timeout(WAIT).unwrap();
            let revs: Vec<i64> = resp.events.iter().map(|e| e.kv.mod_revision).collect();
            assert!(
                revs.first().is_some_and(|&r| r > last),
                "{revs:?} after {last}"
            );
            // Whole revisions only: 3 events for the first, 2 for the others.
            for r in revs
                .iter()
                .copied()
                .collect::<std::collections::BTreeSet<_>>()
            {
                let n = revs.iter().filter(|&&x| x == r).count();
                assert_eq!(n, if r == first { 3 } else { 2 });
            }
            last = *revs.last().unwrap();
            seen += revs.len();
        }
        assert_eq!(seen, 15);
    }
}

#[test]
fn a_slow_consumer_does_not_block_writers_and_gets_everything_in_order() {
    let config = WatchConfig {
        chan_buf_len: 4,
        ..fast()
    };
    let (_dir, store) = temp(config);
    let slow = store.watch_stream();
    let fast_stream = store.watch_stream();
    watch(&slow, "k", None, 0);
    watch(&fast_stream, "k", None, 0);
    let n = 2000;
    let started = Instant::now();
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    let revs: Vec<i64> = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let got: Vec<i64> = events(&fast_stream, n).into_iter().map(|e| e.3).collect();
            done_tx.send(()).unwrap();
            got
        });
        let revs: Vec<i64> = (0..n).map(|i| put(&store, "k", &i.to_string())).collect();
        assert_eq!(reader.join().unwrap(), revs);
        done_rx.recv().unwrap();
        revs
    });
    assert!(started.elapsed() < WAIT);
    assert!(store.watcher_counts().victims + store.watcher_counts().unsynced <= 1);
    // Only now does the slow consumer read: everything, once, in order.
    let got: Vec<i64> = events(&slow, n).into_iter().map(|e| e.3).collect();
    assert_eq!(got, revs);
    assert_quiet(&slow);
}

#[test]
fn a_thousand_watchers_on_one_key_all_get_every_event() {
    let (_dir, store) = temp(fast());
    let streams: Vec<WatchStream> = (0..20).map(|_| store.watch_stream()).collect();
    for s in &streams {
        for _ in 0..50 {
            watch(s, "hot", None, 0);
        }
    }
    assert_eq!(store.watcher_counts().synced, 1000);
    let n = 30;
    let revs: Vec<i64> = (0..n).map(|i| put(&store, "hot", &i.to_string())).collect();
    for s in &streams {
        let mut per = std::collections::BTreeMap::<i64, Vec<i64>>::new();
        for (id, _, _, rev) in events(s, 50 * n) {
            per.entry(id).or_default().push(rev);
        }
        assert_eq!(per.len(), 50);
        assert!(per.values().all(|r| *r == revs));
    }
}

#[test]
fn concurrent_writers_and_watchers_see_gap_free_revisions() {
    let config = WatchConfig {
        chan_buf_len: 8,
        max_watchers_per_sync: 4,
        max_revs_per_batch: 50,
        max_revs_per_sync_read: 200,
        ..fast()
    };
    let (_dir, store) = temp(config);
    let store = Arc::new(store);
    let writers = 3;
    let per_writer = 400;
    let watchers = 8usize;
    let first = store.rev() + 1;
    let registered = Arc::new(std::sync::Barrier::new(watchers + 1));
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let store = Arc::clone(&store);
                scope.spawn(move || {
                    for i in 0..per_writer {
                        if i % 5 == 4 {
                            // Deletes the key put just before: every operation makes a revision.
                            let prev = format!("s/{w}/{}", (i - 1) % 17);
                            let resp = store
                                .delete_range(&DeleteRangeRequest::key(prev.as_bytes()))
                                .unwrap();
                            assert_eq!(resp.deleted, 1);
                        } else {
                            let key = format!("s/{w}/{}", i % 17);
                            store.put(&PutRequest::new(key, "v")).unwrap();
                        }
                    }
                })
            })
            .collect();
        for j in 0..watchers {
            let store = Arc::clone(&store);
            let registered = Arc::clone(&registered);
            scope.spawn(move || {
                std::thread::sleep(Duration::from_millis(3 * j as u64));
                let s = store.watch_stream();
                // Even watchers replay from a fixed past (or future) revision, odd ones start now.
                let start = if j % 2 == 0 {
                    first + (j as i64) * 10
                } else {
                    0
                };
                s.watch(
                    None,
                    b"s/",
                    Some(b"s0"),
                    start,
                    WatchFilters::default(),
                    false,
                )
                .unwrap();
                registered.wait();
                let mut expect = start;
                let deadline = Instant::now() + WAIT * 2;
                loop {
                    if j % 3 == 0 {
                        // A lagging consumer.
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    let resp = s.recv_timeout(left).unwrap_or_else(|e| {
                        panic!("watcher {j} stalled at {expect}, from {start}: {e}")
                    });
                    for ev in resp.events {
                        let rev = ev.kv.mod_revision;
                        if expect == 0 {
                            expect = rev;
                        }
                        assert_eq!(rev, expect, "watcher {j}: gap or reorder");
                        expect += 1;
                        if ev.kv.key == b"s/end" {
                            return;
                        }
                    }
                }
            });
        }
        for h in handles {
            h.join().unwrap();
        }
        registered.wait();
        let last = store.put(&PutRequest::new("s/end", "")).unwrap().revision;
        assert_eq!(last, first + (writers * per_writer) as i64);
    });
}

#[test]
fn dropping_the_store_disconnects_streams() {
    let (_dir, store) = temp(fast());
    let s = store.watch_stream();
    watch(&s, "k", None, 0);
    put(&store, "k", "v");
    drop(store);
    // Queued responses are still delivered, then the channel disconnects.
    assert_eq!(s.recv().unwrap().events.len(), 1);
    assert!(s.recv().is_none());
    assert_eq!(
        s.watch(None, b"k", None, 0, WatchFilters::default(), false),
        Err(WatchError::Closed)
    );
}

#[test]
fn an_async_task_receives_events_with_prev_kv_then_the_disconnection() {
    let (_dir, store) = temp(fast());
    let s = store.watch_stream();
    s.watch(None, b"k", None, 0, WatchFilters::default(), true)
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let store = Arc::new(store);
    let writer = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            // Give the task time to wait on an empty channel first.
            std::thread::sleep(Duration::from_millis(50));
            for i in 0..20 {
                put(&store, "k", &format!("v{i}"));
            }
        })
    };
    let values = rt.block_on(async {
        let mut values = Vec::new();
        while values.len() < 20 {
            let resp = tokio::time::timeout(WAIT, s.recv_async())
                .await
                .unwrap()
                .unwrap();
            for ev in resp.events {
                let prev = ev.prev_kv.map(|p| String::from_utf8(p.value).unwrap());
                values.push((String::from_utf8(ev.kv.value).unwrap(), prev));
            }
        }
        values
    });
    writer.join().unwrap();
    let want: Vec<(String, Option<String>)> = (0..20)
        .map(|i| (format!("v{i}"), (i > 0).then(|| format!("v{}", i - 1))))
        .collect();
    assert_eq!(values, want);
    drop(Arc::into_inner(store).unwrap());
    let end = rt.block_on(async { tokio::time::timeout(WAIT, s.recv_async()).await });
    assert!(end.unwrap().is_none(), "the store's end ends the wait");
}
