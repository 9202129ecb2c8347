//! The workloads against an in-process mock of etcd's KV and Watch services: every request the
//! load generator says it sent arrives, with the keys, values and options it was asked for.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use benchmark::keys::KeySpace;
use benchmark::workloads::{
    self, Common, Consistency, PutOptions, RangeOptions, TxnPutOptions, WatchOptions, Workload,
};
use server::proto::etcdserverpb::kv_server::{Kv, KvServer};
use server::proto::etcdserverpb::watch_server::{Watch, WatchServer};
use server::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse, WatchRequest, WatchResponse,
    request_op, watch_request,
};
use server::proto::mvccpb::{Event, KeyValue};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

#[derive(Default)]
struct Seen {
    puts: Vec<(Vec<u8>, usize)>,
    ranges: Vec<(Vec<u8>, bool)>,
    txns: Vec<Vec<Vec<u8>>>,
}

#[derive(Clone)]
struct Mock {
    seen: Arc<Mutex<Seen>>,
    events: broadcast::Sender<(Vec<u8>, Vec<u8>)>,
}

#[tonic::async_trait]
impl Kv for Mock {
    async fn range(&self, r: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let r = r.into_inner();
        self.seen
            .lock()
            .unwrap()
            .ranges
            .push((r.key, r.serializable));
        Ok(Response::new(RangeResponse::default()))
    }

    async fn put(&self, r: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let r = r.into_inner();
        self.seen
            .lock()
            .unwrap()
            .puts
            .push((r.key.clone(), r.value.len()));
        let _ = self.events.send((r.key, r.value));
        Ok(Response::new(PutResponse::default()))
    }

    async fn delete_range(
        &self,
        _: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        Err(Status::unimplemented("mock"))
    }

    async fn txn(&self, r: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let keys = r
            .into_inner()
            .success
            .into_iter()
            .filter_map(|op| match op.request {
                Some(request_op::Request::RequestPut(p)) => Some(p.key),
                _ => None,
            })
            .collect();
        self.seen.lock().unwrap().txns.push(keys);
        Ok(Response::new(TxnResponse::default()))
    }

    async fn compact(
        &self,
        _: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        Err(Status::unimplemented("mock"))
    }
}

#[tonic::async_trait]
impl Watch for Mock {
    async fn watch(
        &self,
        r: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<BoxStream<WatchResponse>>, Status> {
        let mut requests = r.into_inner();
        let mut events = self.events.subscribe();
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(async move {
            let mut watchers: Vec<(i64, Vec<u8>)> = Vec::new();
            loop {
                tokio::select! {
                    req = requests.next() => match req {
                        Some(Ok(WatchRequest {
                            request_union: Some(watch_request::RequestUnion::CreateRequest(c)),
                        })) => {
                            let id = watchers.len() as i64;
                            watchers.push((id, c.key));
                            let created = WatchResponse { watch_id: id, created: true, ..Default::default() };
                            if tx.send(Ok(created)).await.is_err() { return; }
                        }
                        Some(Ok(_)) => {}
                        _ => return,
                    },
                    ev = events.recv() => {
                        let Ok((key, value)) = ev else { return };
                        for (id, watched) in &watchers {
                            if *watched != key { continue; }
                            let event = Event {
                                kv: Some(KeyValue { key: key.clone(), value: value.clone(), ..Default::default() }),
                                ..Default::default()
                            };
                            let resp = WatchResponse { watch_id: *id, events: vec![event], ..Default::default() };
                            if tx.send(Ok(resp)).await.is_err() { return; }
                        }
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Serves the mock on a free port; returns its endpoint and what it sees.
async fn mock() -> (String, Arc<Mutex<Seen>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (events, _) = broadcast::channel(100_000);
    let m = Mock {
        seen: Arc::default(),
        events,
    };
    let seen = m.seen.clone();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(KvServer::new(m.clone()))
            .add_service(WatchServer::new(m))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (addr.to_string(), seen)
}

fn common(endpoint: String, total: u64) -> Common {
    Common {
        endpoints: vec![endpoint],
        conns: 2,
        clients: 8,
        total,
        request_timeout: Duration::from_secs(10),
        max_errors: 10,
        progress: false,
        tls: None,
    }
}

fn keys(size: u64, sequential: bool) -> KeySpace {
    KeySpace {
        key_size: 8,
        size,
        sequential,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_sends_every_request_with_its_key_and_value() {
    let (ep, seen) = mock().await;
    let w = Workload::Put(PutOptions {
        keys: keys(50, true),
        val_size: 256,
    });
    let r = workloads::run(&common(ep, 200), &w).await.unwrap();
    assert_eq!((r.ok, r.errors, r.total), (200, 0, 200), "{r}");
    assert!(r.throughput > 0.0 && r.latency.p50 > 0.0 && r.latency.p999 >= r.latency.p50);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.puts.len(), 200);
    assert!(seen.puts.iter().all(|(k, v)| k.len() == 8 && *v == 256));
    let distinct: HashSet<&Vec<u8>> = seen.puts.iter().map(|(k, _)| k).collect();
    assert_eq!(distinct.len(), 50, "sequential keys cover the key space");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_preloads_then_reads_with_the_asked_consistency() {
    let (ep, seen) = mock().await;
    let w = Workload::Range(RangeOptions {
        key: None,
        range_end: None,
        keys: keys(10, false),
        consistency: Consistency::Serializable,
        preload: true,
        val_size: 16,
    });
    let r = workloads::run(&common(ep, 100), &w).await.unwrap();
    assert_eq!((r.ok, r.errors), (100, 0), "{r}");
    assert_eq!(r.params["consistency"], "s");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.puts.len(), 10, "one preload put per key");
    assert_eq!(seen.ranges.len(), 100);
    assert!(seen.ranges.iter().all(|(_, serializable)| *serializable));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_put_writes_distinct_keys_per_transaction() {
    let (ep, seen) = mock().await;
    let w = Workload::TxnPut(TxnPutOptions {
        keys: keys(5, false),
        val_size: 8,
        txn_ops: 3,
    });
    let r = workloads::run(&common(ep, 60), &w).await.unwrap();
    assert_eq!((r.ok, r.errors), (60, 0), "{r}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.txns.len(), 60);
    for keys in &seen.txns {
        let distinct: HashSet<&Vec<u8>> = keys.iter().collect();
        assert_eq!(distinct.len(), 3, "{keys:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_counts_every_event_of_every_watcher() {
    let (ep, _) = mock().await;
    for put_rate in [0, 500] {
        let w = Workload::Watch(WatchOptions {
            watchers: 6,
            streams: 4,
            puts: 20,
            put_rate,
            key_size: 8,
            val_size: 8,
            idle: Duration::from_secs(10),
        });
        let r = workloads::run(&common(ep.clone(), 0), &w).await.unwrap();
        assert_eq!((r.total, r.ok, r.errors), (120, 120, 0), "{r}");
        assert!(r.put_latency.is_some() && r.latency.max > 0.0, "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_waits_and_gives_up_in_time() {
    let (ep, _) = mock().await;
    workloads::wait_ready(std::slice::from_ref(&ep), Duration::from_secs(5), None)
        .await
        .unwrap();
    // A port nobody listens on: refused until the deadline.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let started = std::time::Instant::now();
    let err = workloads::wait_ready(&[closed], Duration::from_millis(500), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not ready"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_options_are_refused() {
    let (ep, _) = mock().await;
    let w = Workload::Put(PutOptions {
        keys: KeySpace {
            key_size: 1,
            size: 1_000,
            sequential: true,
        },
        val_size: 8,
    });
    assert!(workloads::run(&common(ep, 10), &w).await.is_err());
}
