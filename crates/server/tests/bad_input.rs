//! Bad input against the real `ferrocd` binary: garbage and truncated HTTP/2 on the client
//! port, gRPC bodies that are not protobuf, oversized requests, invalid ranges, negative and
//! huge revisions and limits, unknown lease ids, malformed transactions. Each gets etcd's gRPC
//! code and message (etcd's `api/v3rpc/rpctypes/error.go`), and afterwards the server still
//! serves and every acknowledged write is still there. Then damaged files: a flipped byte in a
//! snapshot file and in the backend's data file at start-up.
//!
//! Already covered elsewhere, not repeated here: duplicate keys and too many ops in a txn, a
//! value over `--max-request-bytes`, a compacted revision, revoking an unknown lease
//! (`client.rs`); a flipped byte in a WAL segment (`faults.rs`, and node's `wal.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Ferrocd;
use prost::bytes::{Buf, BufMut};
use server::proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseKeepAliveRequest,
    LeaseTimeToLiveRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, compare,
    kv_client::KvClient, lease_client::LeaseClient, request_op,
};
use tokio::time::timeout;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Status};

const T: Duration = Duration::from_secs(10);

async fn channel(f: &Ferrocd) -> Channel {
    timeout(T, Channel::from_shared(f.client_url()).unwrap().connect())
        .await
        .expect("connect timed out")
        .expect("connect")
}

fn code_message<T: std::fmt::Debug>(r: Result<T, Status>) -> (Code, String) {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(s) => (s.code(), s.message().to_owned()),
    }
}

/// `InvalidArgument` with `message`, as [`code_message`] returns it.
fn invalid(message: &str) -> (Code, String) {
    (Code::InvalidArgument, message.to_owned())
}

async fn put(kv: &mut KvClient<Channel>, key: &str, value: &str) -> i64 {
    let r = timeout(
        T,
        kv.put(PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        }),
    )
    .await
    .unwrap()
    .unwrap()
    .into_inner();
    r.header.unwrap().revision
}

/// Every acknowledged key still reads back, and a new write is acknowledged.
async fn still_serves(kv: &mut KvClient<Channel>, acked: &[(&str, &str)]) {
    for (k, v) in acked {
        let r = timeout(
            T,
            kv.range(RangeRequest {
                key: k.as_bytes().to_vec(),
                ..Default::default()
            }),
        )
        .await
        .expect("range timed out")
        .expect("range after bad input")
        .into_inner();
        assert_eq!(r.kvs.len(), 1, "{k} is gone");
        assert_eq!(r.kvs[0].value, v.as_bytes(), "{k} changed");
    }
    put(kv, "still-serving", "yes").await;
}

// ---- the client port ---------------------------------------------------------------------------

/// Sends `bytes` on a new connection, half-closes, and reads until the server closes or
/// `limit` passes; returns what the server sent. Never hangs.
fn send_raw(port: u16, bytes: &[u8], close_write: bool) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    // The server may close before taking everything: a failed write is fine.
    let _ = s.write_all(bytes);
    if close_write {
        let _ = s.shutdown(Shutdown::Write);
    }
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if !close_write {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    got
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A tiny deterministic generator for garbage (no OS randomness: the run is reproducible).
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_truncated_http2_leave_the_server_serving() {
    let f = Ferrocd::start();
    let mut kv = KvClient::new(channel(&f).await);
    put(&mut kv, "before", "1").await;
    let port = f.spec.client_port;

    let settings = frame(0x4, 0, 0, &[]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("random bytes", garbage(7, 16 * 1024)),
        (
            "HTTP/1.1 request",
            b"GET /v3/kv/range HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        ("preface only", PREFACE.to_vec()),
        ("truncated preface", PREFACE[..10].to_vec()),
        (
            "preface then garbage",
            [PREFACE, &garbage(9, 4096)].concat(),
        ),
        (
            "SETTINGS frame cut short",
            [PREFACE, &frame(0x4, 0, 0, &[0, 3, 0, 0])[..12]].concat(),
        ),
        (
            "frame announcing 16 MiB, then nothing",
            [
                PREFACE,
                &settings,
                &[0xff, 0xff, 0xff, 0x0, 0x0, 0, 0, 0, 1][..],
            ]
            .concat(),
        ),
        (
            "HEADERS with an undecodable HPACK block",
            [PREFACE, &settings, &frame(0x1, 0x4, 1, &garbage(3, 64))].concat(),
        ),
        (
            "HEADERS for /etcdserverpb.KV/Put, then a DATA frame cut short",
            {
                // HPACK literals without indexing, no Huffman: :method POST, :path, te.
                let mut block = vec![0x83, 0x86]; // :method POST, :scheme http
                let path = b"/etcdserverpb.KV/Put";
                block.push(0x04);
                block.push(path.len() as u8);
                block.extend_from_slice(path);
                block.extend_from_slice(b"\x00\x0ccontent-type\x10application/grpc");
                let data = frame(0x0, 0, 1, &[0, 0, 0, 0, 100, 0x0a, 0x03, b'b', b'a', b'd']);
                [
                    PREFACE,
                    &settings,
                    &frame(0x1, 0x4, 1, &block),
                    &data[..data.len() - 2],
                ]
                .concat()
            },
        ),
    ];
    for (what, bytes) in &cases {
        let (port, bytes) = (port, bytes.clone());
        tokio::task::spawn_blocking(move || {
            send_raw(port, &bytes, true);
            send_raw(port, &bytes, false);
        })
        .await
        .unwrap();
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_ok(),
            "the client port is closed after {what}"
        );
    }
    still_serves(&mut kv, &[("before", "1")]).await;
    // The partial Put above never completed: nothing was written.
    let r = kv
        .range(RangeRequest {
            key: b"bad".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.kvs.is_empty());
}

// ---- gRPC bodies that are not protobuf -----------------------------------------------------

/// Sends and receives message bodies as raw bytes.
#[derive(Clone, Default)]
struct RawCodec;
struct RawEncoder;
struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut v = vec![0; src.remaining()];
        src.copy_to_slice(&mut v);
        Ok(Some(v))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

async fn raw_call(ch: &Channel, path: &'static str, body: Vec<u8>) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    timeout(T, grpc.ready()).await.unwrap().unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    timeout(T, grpc.unary(tonic::Request::new(body), path, RawCodec))
        .await
        .expect("call timed out")
        .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_are_not_protobuf_are_refused() {
    let f = Ferrocd::start();
    let ch = channel(&f).await;
    let mut kv = KvClient::new(ch.clone());
    put(&mut kv, "before", "1").await;

    // Invalid for every message below (field 1 of RangeRequest and PutRequest is bytes, of
    // LeaseGrantRequest an int64: each case is wrong for both).
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("a varint cut short", vec![0xff]),
        ("a length past the end", vec![0x12, 0x05, b'a']),
        ("field 1 as a fixed32", vec![0x0d, 0x01, 0x02, 0x03, 0x04]),
        ("a fixed64 cut short", vec![0x11, 0x01]),
        ("a group start", vec![0x0b]),
        ("field number 0", vec![0x00, 0x01]),
        (
            "an 11-byte varint",
            vec![
                0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
        ),
        ("random bytes", garbage(11, 200)),
    ];
    // etcd (grpc-go) answers an undecodable request with codes.Internal ("grpc: error
    // unmarshalling request: ..."); the message text is the library's own.
    for path in [
        "/etcdserverpb.KV/Range",
        "/etcdserverpb.KV/Put",
        "/etcdserverpb.Lease/LeaseGrant",
    ] {
        for (what, body) in &bodies {
            let r = raw_call(&ch, path, body.clone()).await;
            let Err(status) = r else {
                // Random bytes can happen to be valid protobuf for some message: then the
                // request is judged on its content.
                assert_eq!(*what, "random bytes", "{path} accepted {what}");
                continue;
            };
            if *what == "random bytes" && status.code() != Code::Internal {
                continue;
            }
            assert_eq!(status.code(), Code::Internal, "{path}, {what}: {status:?}");
        }
    }
    // An unknown method of a known service, and an unknown service.
    let (code, _) = code_message(raw_call(&ch, "/etcdserverpb.KV/NoSuchMethod", vec![]).await);
    assert_eq!(code, Code::Unimplemented);
    let (code, _) = code_message(raw_call(&ch, "/nosuch.Service/Range", vec![]).await);
    assert_eq!(code, Code::Unimplemented);
    // A valid empty body is a RangeRequest with an empty key: etcd's check, not a decode error.
    let (code, message) = code_message(raw_call(&ch, "/etcdserverpb.KV/Range", vec![]).await);
    assert_eq!(
        (code, message.as_str()),
        (Code::InvalidArgument, "etcdserver: key is not provided")
    );
    still_serves(&mut kv, &[("before", "1")]).await;
}

// ---- oversized requests --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_max_request_bytes_are_refused() {
    let f = Ferrocd::start_with(&["--max-request-bytes", "4096"]);
    let mut kv = KvClient::new(channel(&f).await);
    put(&mut kv, "before", "1").await;
    let big = |n: usize| PutRequest {
        key: b"big".to_vec(),
        value: vec![b'x'; n],
        ..Default::default()
    };
    // Over --max-request-bytes: etcd's ErrGRPCRequestTooLarge.
    let (code, message) = code_message(kv.put(big(5000)).await);
    assert_eq!(
        (code, message.as_str()),
        (Code::InvalidArgument, "etcdserver: request is too large")
    );
    // The same inside a txn.
    let txn = TxnRequest {
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(big(5000))),
        }],
        ..Default::default()
    };
    let (code, message) = code_message(kv.txn(txn).await);
    assert_eq!(
        (code, message.as_str()),
        (Code::InvalidArgument, "etcdserver: request is too large")
    );
    // Over the gRPC limit (--max-request-bytes + 512 KiB of envelope, as etcd): refused by
    // the transport before decoding (the code: see `over_the_grpc_limit_is_resource_exhausted`).
    let (code, message) = code_message(kv.put(big(4096 + 512 * 1024 + 1)).await);
    assert_ne!(code, Code::Ok, "{message}");
    // A read with a key bigger than the limit is not a raft request: etcd serves it.
    let r = kv
        .range(RangeRequest {
            key: vec![b'k'; 8192],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.kvs.is_empty());
    // Nothing of the refused writes landed.
    let r = kv
        .range(RangeRequest {
            key: b"big".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.kvs.is_empty());
    still_serves(&mut kv, &[("before", "1")]).await;
}

/// Regression: etcd (grpc-go) refuses a message over the gRPC receive limit with
/// codes.ResourceExhausted ("grpc: received message larger than max (N vs. M)"); ferrocd
/// answered tonic's codes.OutOfRange ("Error, decoded message length too large: ...").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_grpc_limit_is_resource_exhausted() {
    let f = Ferrocd::start_with(&["--max-request-bytes", "4096"]);
    let mut kv = KvClient::new(channel(&f).await);
    let p = PutRequest {
        key: b"big".to_vec(),
        value: vec![b'x'; 4096 + 512 * 1024 + 1],
        ..Default::default()
    };
    let (code, message) = code_message(kv.put(p).await);
    assert_eq!(code, Code::ResourceExhausted, "{message}");
}

// ---- ranges, revisions, limits -----------------------------------------------------------------

fn range(key: &str, end: &str) -> RangeRequest {
    RangeRequest {
        key: key.as_bytes().to_vec(),
        range_end: end.as_bytes().to_vec(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_ranges_revisions_and_limits_get_etcds_answers() {
    let f = Ferrocd::start();
    let mut kv = KvClient::new(channel(&f).await);
    let acked = [("a", "1"), ("b", "2"), ("c", "3")];
    let mut rev = 0;
    for (k, v) in acked {
        rev = put(&mut kv, k, v).await;
    }
    let empty_key = invalid("etcdserver: key is not provided");
    let future = (
        Code::OutOfRange,
        "etcdserver: mvcc: required revision is a future revision".to_owned(),
    );
    let compacted = (
        Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted".to_owned(),
    );

    // Empty keys: etcd's checkRangeRequest / checkPutRequest / checkDeleteRequest.
    assert_eq!(code_message(kv.range(range("", "")).await), empty_key);
    assert_eq!(code_message(kv.range(range("", "\0")).await), empty_key);
    assert_eq!(code_message(kv.put(PutRequest::default()).await), empty_key);
    assert_eq!(
        code_message(kv.delete_range(DeleteRangeRequest::default()).await),
        empty_key
    );
    // range_end below key: an empty range, not an error (etcd's index finds nothing).
    let r = kv.range(range("c", "a")).await.unwrap().into_inner();
    assert_eq!((r.kvs.len(), r.count), (0, 0));
    let d = kv
        .delete_range(DeleteRangeRequest {
            key: b"c".to_vec(),
            range_end: b"a".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.deleted, 0);
    // Invalid sort options: etcd's ErrGRPCInvalidSortOption.
    for (order, target) in [(7, 0), (0, 9), (-1, 0)] {
        let mut r = range("a", "\0");
        r.sort_order = order;
        r.sort_target = target;
        assert_eq!(
            code_message(kv.range(r).await),
            invalid("etcdserver: invalid sort option")
        );
    }
    // Negative revisions read at the current one, as 0 does; future ones are refused.
    for r_ in [-1, -5, i64::MIN, 0] {
        let mut r = range("a", "\0");
        r.revision = r_;
        let got = kv.range(r).await.unwrap().into_inner();
        assert_eq!(got.count, 3, "revision {r_}");
        assert_eq!(got.header.unwrap().revision, rev);
    }
    for r_ in [rev + 1, i64::MAX] {
        let mut r = range("a", "\0");
        r.revision = r_;
        assert_eq!(code_message(kv.range(r).await), future, "revision {r_}");
    }
    // Limits: negative and zero mean none; huge ones are fine.
    for (limit, want, more) in [
        (-1, 3, false),
        (i64::MIN, 3, false),
        (0, 3, false),
        (i64::MAX, 3, false),
        (2, 2, true),
    ] {
        let mut r = range("a", "\0");
        r.limit = limit;
        let got = kv.range(r).await.unwrap().into_inner();
        assert_eq!(
            (got.kvs.len(), got.more, got.count),
            (want, more, 3),
            "limit {limit}"
        );
    }
    // Negative and huge revision filters select nothing or everything, never fail.
    let mut r = range("a", "\0");
    r.min_mod_revision = -10;
    r.max_create_revision = i64::MAX;
    assert_eq!(kv.range(r).await.unwrap().into_inner().kvs.len(), 3);
    // Compaction: a future revision is refused; a negative one is at or below etcd's initial
    // compacted revision (-1), so "compacted".
    let compact = |revision| CompactionRequest {
        revision,
        physical: false,
    };
    assert_eq!(code_message(kv.compact(compact(i64::MAX)).await), future);
    assert_eq!(code_message(kv.compact(compact(rev + 1)).await), future);
    assert_eq!(code_message(kv.compact(compact(-5)).await), compacted);
    kv.compact(compact(2)).await.unwrap();
    assert_eq!(code_message(kv.compact(compact(1)).await), compacted);
    let mut r = range("a", "\0");
    r.revision = 1;
    assert_eq!(code_message(kv.range(r).await), compacted);
    still_serves(&mut kv, &acked).await;
}

// ---- leases ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_lease_ids_get_etcds_answers() {
    let f = Ferrocd::start();
    let ch = channel(&f).await;
    let mut kv = KvClient::new(ch.clone());
    let mut lease = LeaseClient::new(ch);
    put(&mut kv, "before", "1").await;
    let not_found = (
        Code::NotFound,
        "etcdserver: requested lease not found".to_owned(),
    );

    for id in [0x1234, -1, i64::MAX, i64::MIN] {
        // A put attached to an unknown lease: etcd's ErrGRPCLeaseNotFound.
        let p = PutRequest {
            key: b"leased".to_vec(),
            value: b"v".to_vec(),
            lease: id,
            ..Default::default()
        };
        assert_eq!(
            code_message(kv.put(p.clone()).await),
            not_found,
            "lease {id:#x}"
        );
        // The same inside a txn.
        let txn = TxnRequest {
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(p)),
            }],
            ..Default::default()
        };
        assert_eq!(
            code_message(kv.txn(txn).await),
            not_found,
            "txn, lease {id:#x}"
        );
        // TimeToLive of an unknown lease: etcd answers TTL -1, not an error.
        let ttl = lease
            .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: true })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((ttl.id, ttl.ttl), (id, -1), "lease {id:#x}");
        // A keep-alive of an unknown lease: etcd answers TTL 0 on the stream.
        let mut stream = lease
            .lease_keep_alive(tokio_stream::iter([LeaseKeepAliveRequest { id }]))
            .await
            .unwrap()
            .into_inner();
        let resp = timeout(T, stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!((resp.id, resp.ttl), (id, 0), "keep-alive, lease {id:#x}");
    }
    // Grants: a TTL over etcd's MaxLeaseTTL (9,000,000,000 s), an id granted twice.
    let (code, message) = code_message(
        lease
            .lease_grant(LeaseGrantRequest {
                ttl: 9_000_000_001,
                id: 0,
            })
            .await,
    );
    assert_eq!(
        (code, message.as_str()),
        (Code::OutOfRange, "etcdserver: too large lease TTL")
    );
    lease
        .lease_grant(LeaseGrantRequest { ttl: 60, id: 77 })
        .await
        .unwrap();
    let (code, message) = code_message(
        lease
            .lease_grant(LeaseGrantRequest { ttl: 60, id: 77 })
            .await,
    );
    assert_eq!(
        (code, message.as_str()),
        (Code::FailedPrecondition, "etcdserver: lease already exists")
    );
    // Nothing was written under the unknown leases.
    let r = kv.range(range("leased", "")).await.unwrap().into_inner();
    assert!(r.kvs.is_empty());
    still_serves(&mut kv, &[("before", "1")]).await;
}

// ---- transactions ------------------------------------------------------------------------------

fn put_op(key: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.as_bytes().to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        })),
    }
}

fn txn_op(t: TxnRequest) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestTxn(t)),
    }
}

fn compare_version(key: &str) -> Compare {
    Compare {
        key: key.as_bytes().to_vec(),
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Version as i32,
        target_union: Some(compare::TargetUnion::Version(0)),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_transactions_get_etcds_answers() {
    let f = Ferrocd::start();
    let mut kv = KvClient::new(channel(&f).await);
    put(&mut kv, "before", "1").await;
    let too_many = invalid("etcdserver: too many operations in txn request");

    // Too many compares (etcd counts the widest of compare, success and failure).
    let t = TxnRequest {
        compare: (0..129)
            .map(|i| compare_version(&format!("c{i}")))
            .collect(),
        ..Default::default()
    };
    assert_eq!(code_message(kv.txn(t).await), too_many);
    // Too many in the failure branch.
    let t = TxnRequest {
        failure: (0..129).map(|i| put_op(&format!("f{i}"))).collect(),
        ..Default::default()
    };
    assert_eq!(code_message(kv.txn(t).await), too_many);
    // A nested txn shares the budget: 100 outer + 29 inner > 128.
    let inner = TxnRequest {
        success: (0..29).map(|i| put_op(&format!("i{i}"))).collect(),
        ..Default::default()
    };
    let mut ops: Vec<RequestOp> = (0..99).map(|i| put_op(&format!("o{i}"))).collect();
    ops.push(txn_op(inner));
    let t = TxnRequest {
        success: ops,
        ..Default::default()
    };
    assert_eq!(code_message(kv.txn(t).await), too_many);
    // An operation with no request: etcd's checkRequestOp gives ErrGRPCKeyNotFound.
    let t = TxnRequest {
        success: vec![RequestOp { request: None }],
        ..Default::default()
    };
    assert_eq!(
        code_message(kv.txn(t).await),
        invalid("etcdserver: key not found")
    );
    // A compare on an empty key, a put of an empty key inside a txn.
    let t = TxnRequest {
        compare: vec![compare_version("")],
        ..Default::default()
    };
    assert_eq!(
        code_message(kv.txn(t).await),
        invalid("etcdserver: key is not provided")
    );
    let t = TxnRequest {
        success: vec![put_op("")],
        ..Default::default()
    };
    assert_eq!(
        code_message(kv.txn(t).await),
        invalid("etcdserver: key is not provided")
    );
    // A put in a nested txn and a delete covering it in the outer one: duplicate keys.
    let t = TxnRequest {
        success: vec![
            txn_op(TxnRequest {
                success: vec![put_op("dup")],
                ..Default::default()
            }),
            RequestOp {
                request: Some(request_op::Request::RequestDeleteRange(
                    DeleteRangeRequest {
                        key: b"d".to_vec(),
                        range_end: b"e".to_vec(),
                        ..Default::default()
                    },
                )),
            },
        ],
        ..Default::default()
    };
    assert_eq!(
        code_message(kv.txn(t).await),
        invalid("etcdserver: duplicate key given in txn request")
    );
    // An invalid compare result or target.
    let mut c = compare_version("a");
    c.result = 9;
    let t = TxnRequest {
        compare: vec![c],
        ..Default::default()
    };
    let (code, _) = code_message(kv.txn(t).await);
    assert_eq!(code, Code::InvalidArgument);
    // Nothing of the refused transactions landed.
    for key in ["f0", "o0", "i0", "dup"] {
        let r = kv.range(range(key, "")).await.unwrap().into_inner();
        assert!(r.kvs.is_empty(), "{key} was written");
    }
    still_serves(&mut kv, &[("before", "1")]).await;
}

fn nested_txn(depth: usize) -> TxnRequest {
    let mut t = TxnRequest {
        success: vec![put_op("deep")],
        ..Default::default()
    };
    for _ in 0..depth {
        t = TxnRequest {
            success: vec![txn_op(t)],
            ..Default::default()
        };
    }
    t
}

/// Nested transactions: within the limits they run; far over etcd's op budget (one op per
/// level, 128 in all) they are refused, and the server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_transactions_are_answered() {
    let f = Ferrocd::start();
    let mut kv = KvClient::new(channel(&f).await);
    put(&mut kv, "before", "1").await;
    let r = kv.txn(nested_txn(20)).await.unwrap().into_inner();
    assert!(r.succeeded);
    let (code, message) = code_message(kv.txn(nested_txn(300)).await);
    assert_ne!(code, Code::Ok, "{message}");
    still_serves(&mut kv, &[("before", "1"), ("deep", "v")]).await;
}

/// Known deviation: etcd accepts transactions nested up to its op budget (128 levels of one op);
/// ferrocd's protobuf decoder (prost, recursion limit 100: two levels per nested txn) refuses
/// from about 50 levels with codes.Internal and a message repeating the field path per level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "known deviation (docs/reliability.md): prost refuses txns nested 50+ deep; etcd accepts up to 128"]
async fn nested_transactions_within_etcds_budget_are_accepted() {
    let f = Ferrocd::start();
    let mut kv = KvClient::new(channel(&f).await);
    let r = kv.txn(nested_txn(100)).await;
    assert!(
        r.is_ok(),
        "{:?}",
        r.map(|_| ()).map_err(|s| (s.code(), s.message().len()))
    );
}

// ---- damaged files at start-up -----------------------------------------------------------------

const WAIT: Duration = Duration::from_secs(30);

fn files_with(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    assert!(
        at < bytes.len(),
        "{} has {} bytes",
        path.display(),
        bytes.len()
    );
    bytes[at] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

fn ctl_put(f: &Ferrocd, n: usize) -> Vec<(String, String)> {
    let mut acked = Vec::new();
    for i in 0..n {
        let (k, v) = (format!("k{i:03}"), format!("v{i}"));
        f.ok(&["put", &k, &v]);
        acked.push((k, v));
    }
    acked
}

fn assert_reads(f: &Ferrocd, acked: &[(String, String)]) {
    let out = f.ok(&["get", "k", "--prefix"]);
    let want: String = acked.iter().map(|(k, v)| format!("{k}\n{v}\n")).collect();
    assert_eq!(out, want);
}

/// The newest snapshot file damaged: skipped with a warning naming it (as etcd's
/// snapshotter does); the member starts from an older snapshot or the WAL, and nothing is lost.
#[test]
fn a_damaged_snapshot_file_is_skipped_and_nothing_is_lost() {
    let mut f = Ferrocd::start_with(&["--snapshot-count", "10"]);
    let acked = ctl_put(&f, 45);
    assert_eq!(f.terminate(WAIT).code(), Some(0));
    let snaps: Vec<PathBuf> = files_with(&f.data_dir, ".snap")
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect();
    assert!(!snaps.is_empty(), "no snapshot was taken");
    let newest = snaps.last().unwrap().clone();
    let len = std::fs::metadata(&newest).unwrap().len() as usize;
    flip(&newest, len / 2);

    let before = f.log_text().len();
    f.restart();
    f.wait_ready(WAIT);
    let log = f.log_text()[before..].to_owned();
    let name = newest.file_name().unwrap().to_string_lossy().into_owned();
    assert!(log.contains(&name), "the log does not name {name}:\n{log}");
    assert_reads(&f, &acked);
}

/// Damages the backend's data file in both LMDB meta pages, restarts, and returns the exit
/// status, the new log lines and the file.
fn restart_with_damaged_backend() -> (std::process::ExitStatus, String, PathBuf) {
    let mut f = Ferrocd::start();
    ctl_put(&f, 5);
    assert_eq!(f.terminate(WAIT).code(), Some(0));
    let dbs = files_with(&f.data_dir.join("member"), "data.mdb");
    assert_eq!(dbs.len(), 1, "{dbs:?}");
    let db = &dbs[0];
    // LMDB's two meta pages (4 KiB pages): the magic after each 16-byte page header.
    flip(db, 16);
    flip(db, 4096 + 16);

    let before = f.log_text().len();
    f.restart();
    let status = f
        .wait_exit(WAIT)
        .expect("ferrocd kept running on a damaged backend");
    (status, f.log_text()[before..].to_owned(), db.clone())
}

/// The backend's data file damaged in both meta pages: start-up fails with a corruption
/// error (LMDB refuses the file).
#[test]
fn a_damaged_backend_file_refuses_to_start() {
    let (status, log, _) = restart_with_damaged_backend();
    assert!(!status.success(), "{status}");
    assert!(
        log.contains("corrupted data"),
        "no corruption error in:\n{log}"
    );
}

/// Regression: the start-up error for a damaged backend did not say where the damage is
/// ("starting the node: corrupted data: lmdb: MDB_INVALID: File is not an LMDB file").
#[test]
fn a_damaged_backend_file_is_named_in_the_error() {
    let (status, log, db) = restart_with_damaged_backend();
    assert!(!status.success(), "{status}");
    let dir = db
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(log.contains(&dir), "the error does not name {dir}:\n{log}");
}

// ---- the peer port ---------------------------------------------------------------------------

/// Regression: a `raftpb::Message` nested through `responses` was decoded recursively without
/// a depth limit, so one ~1 MiB frame on a peer message stream overflowed the reader thread's
/// stack and aborted ferrocd. The handshake needs only the cluster id and the member id, which
/// every client response header (and the peer port's own members query) gives away; `from`
/// may be any id but 0 and the member's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deeply_nested_peer_message_does_not_crash_the_member() {
    use node::transport::tcp::wire::{
        Handshake, HandshakeReply, HandshakeStatus, PROTOCOL_VERSION, REPLY_LEN, StreamKind,
        write_frame,
    };
    let f = Ferrocd::start();
    let mut kv = KvClient::new(channel(&f).await);
    let header = kv
        .put(PutRequest {
            key: b"before".to_vec(),
            value: b"1".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .header
        .unwrap();
    // The postcard bytes of a Message whose `responses` nest 75,000 deep. A default Message
    // is 14 zero bytes (every field 0, empty or None), the last one `responses`' length
    // (node's decode_untrusted.rs checks this layout); each level says "1 response".
    let leaf = [0u8; 14];
    let level = &leaf[..13];
    let mut payload = Vec::new();
    for _ in 0..75_000 {
        payload.extend_from_slice(level);
        payload.push(1);
    }
    payload.extend_from_slice(&leaf);

    let port = f.spec.peer_port;
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let hs = Handshake {
            version: PROTOCOL_VERSION,
            kind: StreamKind::Message,
            cluster_id: header.cluster_id,
            from: 0x42,
            to: header.member_id,
        };
        s.write_all(&hs.encode()).unwrap();
        let mut reply = [0u8; REPLY_LEN];
        s.read_exact(&mut reply).unwrap();
        let reply = HandshakeReply::decode(&reply).unwrap();
        assert_eq!(reply.status, HandshakeStatus::Accepted);
        write_frame(&mut s, &payload).unwrap();
        s.flush().unwrap();
        // Wait (bounded) for the member to read it and close or keep the stream.
        let mut b = [0u8; 1];
        let _ = s.read(&mut b);
    })
    .await
    .unwrap();
    still_serves(&mut kv, &[("before", "1")]).await;
}
