//! etcdctl 3.4 `watch` against `ferrocd` (run in the background, bounded).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{Background, Ferrocd};

#[test]
fn watch_prefix_prints_puts_and_deletes() {
    let f = Ferrocd::start();
    let w = Background::start(&f.endpoint(), &["watch", "w", "--prefix"]);
    // Let the watch be created before writing.
    std::thread::sleep(Duration::from_millis(700));
    f.ok(&["put", "w1", "x"]);
    f.ok(&["put", "other", "y"]);
    f.ok(&["del", "w1"]);
    std::thread::sleep(Duration::from_millis(500));
    let out = w.finish();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "PUT\nw1\nx\nDELETE\nw1\n\n"
    );
}

#[test]
fn watch_from_a_revision_with_prev_kv_replays_history() {
    let f = Ferrocd::start();
    f.ok(&["put", "w1", "x"]); // rev 2
    f.ok(&["del", "w1"]); // rev 3
    let w = Background::start(&f.endpoint(), &["watch", "w1", "--rev=2", "--prev-kv"]);
    std::thread::sleep(Duration::from_millis(700));
    f.ok(&["put", "w1", "y"]);
    std::thread::sleep(Duration::from_millis(500));
    let out = w.finish();
    // What etcd 3.4 prints: for the delete, the previous pair first, then the tombstone.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "PUT\nw1\nx\nDELETE\nw1\nx\nw1\n\nPUT\nw1\ny\n"
    );
}

#[test]
fn watch_from_a_compacted_revision_is_cancelled() {
    let f = Ferrocd::start();
    f.ok(&["put", "k", "1"]);
    f.ok(&["put", "k", "2"]);
    f.ok(&["compaction", "3"]);
    let w = Background::start(&f.endpoint(), &["watch", "k", "--rev=1"]);
    let out = w.wait(Duration::from_secs(10));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(
            "watch was canceled (etcdserver: mvcc: required revision has been compacted)"
        ),
        "{text}"
    );
}
