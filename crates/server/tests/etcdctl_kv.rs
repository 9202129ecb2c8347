//! etcdctl 3.4 against `ferrocd`: put / get / del / txn / compaction, compared with what etcd
//! 3.4 prints for the same commands.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::Ferrocd;

#[test]
fn put_get_and_their_options_print_like_etcd() {
    let f = Ferrocd::start();
    assert_eq!(f.ok(&["put", "foo", "bar"]), "OK\n");
    // A put with --prev-kv prints OK and the previous pair (none yet for a new key).
    assert_eq!(f.ok(&["put", "foo2", "bar2", "--prev-kv"]), "OK\n");
    assert_eq!(
        f.ok(&["put", "foo2", "bar3", "--prev-kv"]),
        "OK\nfoo2\nbar2\n"
    );
    assert_eq!(f.ok(&["get", "foo"]), "foo\nbar\n");
    assert_eq!(f.ok(&["get", "zzz"]), "");
    assert_eq!(f.ok(&["get", "foo", "--prefix"]), "foo\nbar\nfoo2\nbar3\n");
    assert_eq!(
        f.ok(&[
            "get",
            "foo",
            "--prefix",
            "--sort-by=MODIFY",
            "--order=DESCEND"
        ]),
        "foo2\nbar3\nfoo\nbar\n"
    );
    assert_eq!(
        f.ok(&[
            "get",
            "foo",
            "--prefix",
            "--sort-by=VALUE",
            "--order=DESCEND"
        ]),
        "foo2\nbar3\nfoo\nbar\n"
    );
    assert_eq!(
        f.ok(&["get", "foo", "--from-key", "--keys-only"]),
        "foo\n\nfoo2\n\n"
    );
    assert_eq!(
        f.ok(&["get", "a", "--from-key", "--limit", "1"]),
        "foo\nbar\n"
    );
    // Historical reads: foo2 was bar2 at revision 3.
    assert_eq!(f.ok(&["get", "foo2", "--rev=3"]), "foo2\nbar2\n");
    assert_eq!(f.ok(&["get", "foo", "--rev=2"]), "foo\nbar\n");
    assert_eq!(f.ok(&["get", "foo", "--consistency=s"]), "foo\nbar\n");

    // JSON: the header and the limit's `more` flag and count.
    let json = f.ok(&["get", "foo", "--prefix", "--limit", "1", "-w", "json"]);
    assert!(json.contains("\"revision\":4"), "{json}");
    assert!(json.contains("\"raft_term\":"), "{json}");
    assert!(
        json.contains(
            "\"kvs\":[{\"key\":\"Zm9v\",\"create_revision\":2,\"mod_revision\":2,\"version\":1,\"value\":\"YmFy\"}],\"more\":true,\"count\":2}"
        ),
        "{json}"
    );
    // Fields output spells out the same numbers.
    let fields = f.ok(&["get", "foo2", "-w", "fields"]);
    for line in [
        "\"Key\" : \"foo2\"",
        "\"CreateRevision\" : 3",
        "\"ModRevision\" : 4",
        "\"Version\" : 2",
        "\"Value\" : \"bar3\"",
        "\"Count\" : 1",
    ] {
        assert!(fields.contains(line), "missing {line} in {fields}");
    }
}

#[test]
fn errors_carry_etcds_messages() {
    let f = Ferrocd::start();
    f.ok(&["put", "k", "v"]);
    let e = f.err(&["get", ""]);
    assert!(e.contains("Error: etcdserver: key is not provided"), "{e}");
    let e = f.err(&["get", "k", "--rev=100"]);
    assert!(
        e.contains("Error: etcdserver: mvcc: required revision is a future revision"),
        "{e}"
    );
    f.ok(&["put", "k", "v2"]);
    assert_eq!(f.ok(&["compaction", "3"]), "compacted revision 3\n");
    let e = f.err(&["get", "k", "--rev=2"]);
    assert!(
        e.contains("Error: etcdserver: mvcc: required revision has been compacted"),
        "{e}"
    );
    let e = f.err(&["compaction", "2"]);
    assert!(e.contains("required revision has been compacted"), "{e}");
    let e = f.err(&["compaction", "100"]);
    assert!(e.contains("required revision is a future revision"), "{e}");
    // The compacted revision itself is still readable.
    assert_eq!(f.ok(&["get", "k", "--rev=3"]), "k\nv2\n");
}

#[test]
fn del_prints_counts_and_previous_pairs() {
    let f = Ferrocd::start();
    for (k, v) in [("a1", "1"), ("a2", "2"), ("b", "3")] {
        f.ok(&["put", k, v]);
    }
    assert_eq!(f.ok(&["del", "nothing"]), "0\n");
    assert_eq!(
        f.ok(&["del", "a", "--prefix", "--prev-kv"]),
        "2\na1\n1\na2\n2\n"
    );
    assert_eq!(f.ok(&["get", "", "--from-key"]), "b\n3\n");
    assert_eq!(f.ok(&["del", "b"]), "1\n");
    assert_eq!(f.ok(&["get", "", "--from-key"]), "");
}

#[test]
fn interactive_txn_runs_the_right_branch() {
    let f = Ferrocd::start();
    f.ok(&["put", "foo", "bar"]);
    f.ok(&["put", "foo2", "bar3"]);
    let out = f.ok_stdin(
        &["txn"],
        "mod(\"foo\") > \"0\"\n\nput foo newfoo\nget foo\n\nput foo nope\n\n",
    );
    assert_eq!(out, "SUCCESS\n\nOK\n\nfoo\nnewfoo\n");
    let out = f.ok_stdin(
        &["txn", "-w", "json"],
        "value(\"foo\") = \"x\"\n\nput foo newfoo\n\nget foo2\n\n",
    );
    // etcd: the failure branch ran; the inner response header holds only the revision.
    assert!(
        out.contains(
            "\"responses\":[{\"Response\":{\"ResponseRange\":{\"header\":{\"revision\":4},\"kvs\":[{\"key\":\"Zm9vMg==\",\"create_revision\":3,\"mod_revision\":3,\"version\":1,\"value\":\"YmFyMw==\"}],\"count\":1}}}]"
        ),
        "{out}"
    );
    assert!(!out.contains("succeeded"), "{out}");
    let out = f.ok_stdin(
        &["txn"],
        "version(\"foo\") = \"2\"\nvalue(\"foo2\") = \"bar3\"\n\ndel foo2\n\n\n",
    );
    assert_eq!(out, "SUCCESS\n\n1\n");
    assert_eq!(f.ok(&["get", "foo", "--prefix"]), "foo\nnewfoo\n");
}
