//! The `etcd-client` crate (tonic 0.14) against `ferrocd`: put/get, txn, watch (create, events,
//! progress, cancel, compacted start), lease keep-alive, and etcd's error codes.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use common::Ferrocd;
use etcd_client::{
    Client, Compare, CompareOp, Error, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions,
};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(10);

async fn client(f: &Ferrocd) -> Client {
    timeout(T, Client::connect([f.client_url()], None))
        .await
        .expect("connect timed out")
        .expect("connect")
}

/// The next response of a watch stream, failing the test if it takes longer than [`T`], errs
/// or ends.
async fn next(stream: &mut etcd_client::WatchStream) -> etcd_client::WatchResponse {
    timeout(T, stream.message())
        .await
        .expect("watch response timed out")
        .expect("watch stream failed")
        .expect("watch stream ended")
}

fn status_of(e: Error) -> (tonic::Code, String) {
    match e {
        Error::GRpcStatus(s) => (s.code(), s.message().to_owned()),
        other => panic!("not a gRPC status: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_txn() {
    let f = Ferrocd::start();
    let mut c = client(&f).await;
    let put = c.put("a", "1", None).await.unwrap();
    let h = put.header().unwrap();
    assert_eq!(h.revision(), 2);
    assert_ne!(h.cluster_id(), 0);
    assert_ne!(h.member_id(), 0);
    assert!(h.raft_term() >= 1);
    let put = c
        .put("a", "2", Some(PutOptions::new().with_prev_key()))
        .await
        .unwrap();
    assert_eq!(put.prev_key().unwrap().value(), b"1");
    c.put("b", "3", None).await.unwrap();
    let get = c
        .get("", Some(GetOptions::new().with_all_keys()))
        .await
        .unwrap();
    assert_eq!(get.count(), 2);
    assert_eq!(get.kvs()[0].key(), b"a");
    assert_eq!(get.kvs()[0].version(), 2);
    assert_eq!(get.header().unwrap().revision(), 4);

    let txn = Txn::new()
        .when([Compare::value("a", CompareOp::Equal, "2")])
        .and_then([TxnOp::put("c", "4", None), TxnOp::get("a", None)])
        .or_else([TxnOp::delete("a", None)]);
    let resp = c.txn(txn).await.unwrap();
    assert!(resp.succeeded());
    assert_eq!(resp.op_responses().len(), 2);
    assert_eq!(resp.header().unwrap().revision(), 5);

    // Duplicate keys and too many operations are refused with etcd's errors.
    let dup = Txn::new().and_then([TxnOp::put("x", "1", None), TxnOp::put("x", "2", None)]);
    let (c1, m1) = status_of(c.txn(dup).await.unwrap_err());
    assert_eq!(c1, tonic::Code::InvalidArgument);
    assert_eq!(m1, "etcdserver: duplicate key given in txn request");
    let many: Vec<TxnOp> = (0..129)
        .map(|i| TxnOp::put(format!("k{i}"), "v", None))
        .collect();
    let (c2, m2) = status_of(c.txn(Txn::new().and_then(many)).await.unwrap_err());
    assert_eq!(c2, tonic::Code::InvalidArgument);
    assert_eq!(m2, "etcdserver: too many operations in txn request");

    // A value over --max-request-bytes (1.5 MiB) is refused.
    let big = vec![b'x'; 1_600_000];
    let (c3, m3) = status_of(c.put("big", big, None).await.unwrap_err());
    assert_eq!(c3, tonic::Code::InvalidArgument);
    assert_eq!(m3, "etcdserver: request is too large");

    c.compact(5, None).await.unwrap();
    let (c4, m4) = status_of(
        c.get("a", Some(GetOptions::new().with_revision(3)))
            .await
            .unwrap_err(),
    );
    assert_eq!(c4, tonic::Code::OutOfRange);
    assert_eq!(m4, "etcdserver: mvcc: required revision has been compacted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_events_progress_and_cancel() {
    let f = Ferrocd::start();
    let mut c = client(&f).await;
    c.put("w/0", "old", None).await.unwrap(); // rev 2
    let mut stream = c
        .watch(
            "w/",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(2)
                    .with_prev_key(),
            ),
        )
        .await
        .unwrap();
    let created = next(&mut stream).await;
    assert!(created.created());
    let id = created.watch_id();
    // History first (rev 2), then live changes.
    let first = next(&mut stream).await;
    assert_eq!(first.events().len(), 1);
    assert_eq!(first.events()[0].kv().unwrap().value(), b"old");
    c.put("w/0", "new", None).await.unwrap(); // rev 3
    c.delete("w/0", None).await.unwrap(); // rev 4
    c.put("other", "x", None).await.unwrap(); // rev 5, not watched
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let resp = next(&mut stream).await;
        assert_eq!(resp.watch_id(), id);
        for ev in resp.events() {
            seen.push((
                ev.event_type(),
                ev.kv().unwrap().mod_revision(),
                ev.prev_kv().map(|p| p.value().to_vec()),
            ));
        }
    }
    assert_eq!(
        seen,
        vec![
            (EventType::Put, 3, Some(b"old".to_vec())),
            (EventType::Delete, 4, Some(b"new".to_vec())),
        ]
    );
    stream.request_progress().await.unwrap();
    let progress = next(&mut stream).await;
    assert!(progress.events().is_empty());
    assert_eq!(progress.header().unwrap().revision(), 5);
    stream.cancel(id).await.unwrap();
    let cancelled = next(&mut stream).await;
    assert!(cancelled.canceled());
    assert_eq!(cancelled.watch_id(), id);

    // Starting below the compaction revision: created, then cancelled with the revision.
    c.compact(4, None).await.unwrap();
    let mut old = c
        .watch(
            "w/",
            Some(WatchOptions::new().with_prefix().with_start_revision(2)),
        )
        .await
        .unwrap();
    let created = next(&mut old).await;
    assert!(created.created());
    let resp = next(&mut old).await;
    assert!(resp.canceled());
    assert_eq!(resp.compact_revision(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_keep_alive_stream() {
    let f = Ferrocd::start();
    let mut c = client(&f).await;
    let lease = c.lease_grant(5, None).await.unwrap();
    assert_eq!(lease.ttl(), 5);
    c.put("l", "v", Some(PutOptions::new().with_lease(lease.id())))
        .await
        .unwrap();
    let (mut keeper, mut responses) = c.lease_keep_alive(lease.id()).await.unwrap();
    // Keep it alive past its TTL.
    for _ in 0..4 {
        keeper.keep_alive().await.unwrap();
        let resp = timeout(T, responses.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(resp.id(), lease.id());
        assert_eq!(resp.ttl(), 5);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert_eq!(c.get("l", None).await.unwrap().count(), 1);
    let ttl = c.lease_time_to_live(lease.id(), None).await.unwrap();
    assert_eq!(ttl.granted_ttl(), 5);
    assert!(ttl.ttl() > 0 && ttl.ttl() <= 5);
    c.lease_revoke(lease.id()).await.unwrap();
    assert_eq!(c.get("l", None).await.unwrap().count(), 0);
    // A keep-alive for a revoked lease answers TTL 0.
    keeper.keep_alive().await.unwrap();
    let resp = timeout(T, responses.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(resp.ttl(), 0);
    let (code, message) = status_of(c.lease_revoke(lease.id()).await.unwrap_err());
    assert_eq!(code, tonic::Code::NotFound);
    assert_eq!(message, "etcdserver: requested lease not found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_and_maintenance() {
    let f = Ferrocd::start();
    let mut c = client(&f).await;
    let members = c.member_list().await.unwrap();
    assert_eq!(members.members().len(), 1);
    let me = &members.members()[0];
    assert_eq!(me.name(), "default");
    assert_eq!(me.client_urls(), [f.client_url()]);
    let status = c.status().await.unwrap();
    assert_eq!(status.leader(), me.id());
    assert!(status.db_size() > 0);
    let hkv = c.hash_kv(0).await.unwrap();
    assert_eq!(hkv.header().unwrap().revision(), 1);
    let (code, message) = status_of(c.member_remove(0x1234).await.unwrap_err());
    assert_eq!(code, tonic::Code::NotFound);
    assert_eq!(message, "etcdserver: member not found");
    let (code, message) = status_of(c.member_add(["not a url"], None).await.unwrap_err());
    assert_eq!(code, tonic::Code::InvalidArgument);
    assert_eq!(message, "etcdserver: given member URLs are invalid");
}

/// A client that closes its sending side after creating a watch keeps receiving its events,
/// as from etcd (whose `recvLoop` returns without an error at the end of the requests): the
/// JSON gateway's watch and clients that drop their request sender rely on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_outlives_the_end_of_its_requests() {
    use server::proto::etcdserverpb::watch_client::WatchClient;
    use server::proto::etcdserverpb::{WatchCreateRequest, WatchRequest, watch_request};

    let f = Ferrocd::start();
    let mut watch = timeout(T, WatchClient::connect(f.client_url()))
        .await
        .unwrap()
        .unwrap();
    let create = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: b"k".to_vec(),
                ..Default::default()
            },
        )),
    };
    // One request, then the request stream ends.
    let mut responses = timeout(T, watch.watch(tokio_stream::iter([create])))
        .await
        .unwrap()
        .unwrap()
        .into_inner();
    let created = timeout(T, responses.message()).await.unwrap().unwrap();
    assert!(created.unwrap().created);
    let mut c = client(&f).await;
    c.put("k", "after", None).await.unwrap();
    let event = timeout(T, responses.message())
        .await
        .expect("the watch still delivers after the requests ended")
        .unwrap()
        .expect("the stream is still open");
    assert_eq!(event.events.len(), 1);
    assert_eq!(event.events[0].kv.as_ref().unwrap().value, b"after");
}

/// Watch streams are tasks, not threads: a thousand of them (each on its own gRPC stream, as
/// kube-apiserver opens them) leave the member's thread count where it was, and every one gets
/// the event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_watch_streams_hold_no_thread_each() {
    const STREAMS: usize = 1000;
    let f = Ferrocd::start();
    let mut c = client(&f).await;
    let before = f.threads();
    let mut streams = Vec::with_capacity(STREAMS);
    for _ in 0..STREAMS {
        let mut stream = timeout(T, c.watch("hot", None)).await.unwrap().unwrap();
        let created = next(&mut stream).await;
        assert!(created.created());
        streams.push(stream);
    }
    let during = f.threads();
    // A constant margin for threads the member may start on its own (a compaction, a
    // snapshot), nowhere near one per stream.
    assert!(
        during <= before + 16,
        "{during} threads with {STREAMS} watch streams, {before} before"
    );
    let put = c.put("hot", "v", None).await.unwrap();
    let rev = put.header().unwrap().revision();
    for stream in &mut streams {
        let resp = next(stream).await;
        assert_eq!(resp.events().len(), 1);
        assert_eq!(resp.events()[0].kv().unwrap().mod_revision(), rev);
    }
}
