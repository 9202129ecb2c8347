//! The workloads: `put`, `range`, `txn-put` and `watch`, as etcd's `benchmark` tool runs them.

use std::collections::BTreeMap;
use std::future::Future;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use server::proto::etcdserverpb::kv_client::KvClient;
use server::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use server::proto::etcdserverpb::watch_client::WatchClient;
use server::proto::etcdserverpb::{
    PutRequest, RangeRequest, RequestOp, StatusRequest, TxnRequest, WatchCreateRequest,
    WatchRequest, WatchResponse, request_op, watch_request,
};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

use crate::client::{Pool, connect};
use crate::keys::{self, KeySpace, SplitMix64};
use crate::report::Recorder;
use crate::{BenchError, BenchResult};

/// How long opening one connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a watch reader looks whether the events it still waits for can still come.
const WATCH_POLL: Duration = Duration::from_millis(200);

/// Options every workload shares.
#[derive(Clone, Debug)]
pub struct Common {
    /// `host:port` or URLs of the members.
    pub endpoints: Vec<String>,
    /// gRPC connections (HTTP/2), spread over the endpoints.
    pub conns: usize,
    /// Concurrent clients sharing the connections.
    pub clients: usize,
    /// Requests to send (`watch`: ignored, see [`WatchOptions::puts`]).
    pub total: u64,
    /// How long one request may take before it counts as failed.
    pub request_timeout: Duration,
    /// The run stops early once this many requests failed.
    pub max_errors: u64,
    /// Draw a progress bar on stderr (when it is a terminal).
    pub progress: bool,
    /// TLS for https endpoints.
    pub tls: Option<tonic::transport::ClientTlsConfig>,
}

/// Linearizable or serializable reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// Through the leader's ReadIndex: the latest committed state.
    Linearizable,
    /// From the member's local state, possibly stale.
    Serializable,
}

/// `put`: one key per request.
#[derive(Clone, Debug)]
pub struct PutOptions {
    /// Which keys.
    pub keys: KeySpace,
    /// Bytes per value.
    pub val_size: usize,
}

/// `range`: one read per request.
#[derive(Clone, Debug)]
pub struct RangeOptions {
    /// Read this key (with `range_end`) every time instead of keys of the key space.
    pub key: Option<Vec<u8>>,
    /// The range's end when `key` is given.
    pub range_end: Option<Vec<u8>>,
    /// Which keys, when no `key` is given.
    pub keys: KeySpace,
    /// Linearizable or serializable.
    pub consistency: Consistency,
    /// Write every key of the key space (or `key`) once before measuring.
    pub preload: bool,
    /// Bytes per preloaded value.
    pub val_size: usize,
}

/// `txn-put`: one transaction of `txn_ops` puts per request.
#[derive(Clone, Debug)]
pub struct TxnPutOptions {
    /// Which keys (each transaction writes `txn_ops` consecutive keys from its first).
    pub keys: KeySpace,
    /// Bytes per value.
    pub val_size: usize,
    /// Puts per transaction.
    pub txn_ops: usize,
}

/// `watch`: watchers on one key, puts to it, and the latency from each put to each event.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// Watchers on the key.
    pub watchers: usize,
    /// Watch streams carrying them (spread over the connections).
    pub streams: usize,
    /// Puts to the watched key.
    pub puts: u64,
    /// Puts per second (0: as fast as `clients` closed-loop putters go).
    pub put_rate: u64,
    /// Bytes of the watched key.
    pub key_size: usize,
    /// Bytes per value (at least 8: the put's number is carried in the value).
    pub val_size: usize,
    /// How long a watcher waits for an event before giving up on the ones still missing.
    pub idle: Duration,
}

/// A workload and its options.
#[derive(Clone, Debug)]
pub enum Workload {
    /// `put`.
    Put(PutOptions),
    /// `range`.
    Range(RangeOptions),
    /// `txn-put`.
    TxnPut(TxnPutOptions),
    /// `watch`.
    Watch(WatchOptions),
}

impl Workload {
    /// The workload's name, as on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Workload::Put(_) => "put",
            Workload::Range(_) => "range",
            Workload::TxnPut(_) => "txn-put",
            Workload::Watch(_) => "watch",
        }
    }

    /// The workload's parameters, for the report.
    pub fn params(&self) -> BTreeMap<String, String> {
        let mut p = BTreeMap::new();
        let mut set = |k: &str, v: String| {
            p.insert(k.to_owned(), v);
        };
        let key_space = |set: &mut dyn FnMut(&str, String), ks: &KeySpace| {
            set("key-size", ks.key_size.to_string());
            set("key-space-size", ks.size.to_string());
            set("sequential-keys", ks.sequential.to_string());
        };
        match self {
            Workload::Put(o) => {
                key_space(&mut set, &o.keys);
                set("val-size", o.val_size.to_string());
            }
            Workload::Range(o) => {
                match &o.key {
                    Some(k) => set("key", String::from_utf8_lossy(k).into_owned()),
                    None => key_space(&mut set, &o.keys),
                }
                if let Some(end) = &o.range_end {
                    set("range-end", String::from_utf8_lossy(end).into_owned());
                }
                let c = match o.consistency {
                    Consistency::Linearizable => "l",
                    Consistency::Serializable => "s",
                };
                set("consistency", c.to_owned());
            }
            Workload::TxnPut(o) => {
                key_space(&mut set, &o.keys);
                set("val-size", o.val_size.to_string());
                set("txn-ops", o.txn_ops.to_string());
            }
            Workload::Watch(o) => {
                set("watchers", o.watchers.to_string());
                set("streams", o.streams.to_string());
                set("puts", o.puts.to_string());
                set("put-rate", o.put_rate.to_string());
                set("key-size", o.key_size.to_string());
                set("val-size", o.val_size.to_string());
            }
        }
        p
    }
}

/// Runs `workload` against the endpoints and returns what it measured.
pub async fn run(common: &Common, workload: &Workload) -> Result<BenchResult, BenchError> {
    if common.clients == 0 || common.conns == 0 {
        return Err(BenchError::Invalid(
            "--clients and --conns must be at least 1".into(),
        ));
    }
    let pool = Pool::connect(
        &common.endpoints,
        common.conns,
        CONNECT_TIMEOUT,
        common.tls.as_ref(),
    )
    .await?;
    let clients = common.clients;
    let kv = |c: usize| KvClient::new(pool.channel(c));
    let outcome = match workload {
        Workload::Put(o) => {
            o.keys.validate()?;
            let value = keys::value(o.val_size);
            let ops = (0..clients)
                .map(|c| PutOp::new(kv(c), o.keys, c, value.clone()))
                .collect();
            measure(common, workload, ops).await?
        }
        Workload::Range(o) => {
            if o.key.is_none() {
                o.keys.validate()?;
            }
            if o.preload {
                preload(common, &pool, o).await?;
            }
            let ops = (0..clients)
                .map(|c| RangeOp {
                    kv: kv(c),
                    keys: o.keys,
                    rng: SplitMix64::new(c as u64 + 1),
                    fixed: o.key.clone(),
                    range_end: o.range_end.clone().unwrap_or_default(),
                    serializable: o.consistency == Consistency::Serializable,
                })
                .collect();
            measure(common, workload, ops).await?
        }
        Workload::TxnPut(o) => {
            o.keys.validate()?;
            if o.txn_ops == 0 || o.txn_ops as u64 > o.keys.size {
                return Err(BenchError::Invalid(format!(
                    "--txn-ops must be between 1 and the key space size ({})",
                    o.keys.size
                )));
            }
            let value = keys::value(o.val_size);
            let ops = (0..clients)
                .map(|c| TxnPutOp {
                    kv: kv(c),
                    keys: o.keys,
                    rng: SplitMix64::new(c as u64 + 1),
                    value: value.clone(),
                    txn_ops: o.txn_ops as u64,
                })
                .collect();
            measure(common, workload, ops).await?
        }
        Workload::Watch(o) => return watch(common, &pool, o).await,
    };
    Ok(outcome)
}

/// Waits until every endpoint answers a linearizable read (so a leader is elected and the
/// member is serving), or `timeout` passes.
pub async fn wait_ready(
    endpoints: &[String],
    timeout: Duration,
    tls: Option<&tonic::transport::ClientTlsConfig>,
) -> Result<(), BenchError> {
    if endpoints.is_empty() {
        return Err(BenchError::NoEndpoints);
    }
    let deadline = Instant::now() + timeout;
    for ep in endpoints {
        loop {
            let attempt = async {
                let mut kv = KvClient::new(connect(ep, CONNECT_TIMEOUT, tls).await?);
                kv.range(RangeRequest {
                    key: b"ferrocd-bench-health".to_vec(),
                    ..Default::default()
                })
                .await
                .map_err(|status| BenchError::Rpc {
                    what: format!("reading from {ep}"),
                    status: Box::new(status),
                })?;
                Ok::<(), BenchError>(())
            };
            let last = match tokio::time::timeout(Duration::from_secs(2), attempt).await {
                Ok(Ok(())) => break,
                Ok(Err(e)) => e.to_string(),
                Err(_) => "no answer within 2s".to_owned(),
            };
            if Instant::now() >= deadline {
                return Err(BenchError::Timeout(format!(
                    "{ep} not ready within {timeout:?}: {last}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// The endpoint of the current leader among `endpoints` (as etcd's `--target-leader`): the one
/// whose `Status` names itself as the leader.
pub async fn find_leader(
    endpoints: &[String],
    timeout: Duration,
    tls: Option<&tonic::transport::ClientTlsConfig>,
) -> Result<String, BenchError> {
    if endpoints.is_empty() {
        return Err(BenchError::NoEndpoints);
    }
    for ep in endpoints {
        let ask = async {
            let mut m = MaintenanceClient::new(connect(ep, CONNECT_TIMEOUT, tls).await?);
            let status = m
                .status(StatusRequest::default())
                .await
                .map_err(|status| BenchError::Rpc {
                    what: format!("asking {ep} for its status"),
                    status: Box::new(status),
                })?
                .into_inner();
            let me = status.header.map(|h| h.member_id);
            Ok::<bool, BenchError>(me.is_some_and(|id| id != 0 && id == status.leader))
        };
        match tokio::time::timeout(timeout, ask).await {
            Ok(Ok(true)) => return Ok(ep.clone()),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(BenchError::Timeout(format!("asking {ep} for its status"))),
        }
    }
    Err(BenchError::Invalid(format!(
        "no leader among {}",
        endpoints.join(",")
    )))
}

/// One client's request, sent again and again.
trait Op: Send + 'static {
    /// Sends request number `i` and waits for its answer.
    fn call(&mut self, i: u64) -> impl Future<Output = Result<(), tonic::Status>> + Send;
}

struct PutOp {
    kv: KvClient<Channel>,
    keys: KeySpace,
    rng: SplitMix64,
    value: Vec<u8>,
}

impl PutOp {
    fn new(kv: KvClient<Channel>, keys: KeySpace, client: usize, value: Vec<u8>) -> Self {
        Self {
            kv,
            keys,
            rng: SplitMix64::new(client as u64 + 1),
            value,
        }
    }
}

impl Op for PutOp {
    async fn call(&mut self, i: u64) -> Result<(), tonic::Status> {
        let key = self.keys.key(self.keys.index(i, &mut self.rng));
        self.kv
            .put(PutRequest {
                key,
                value: self.value.clone(),
                ..Default::default()
            })
            .await?;
        Ok(())
    }
}

struct RangeOp {
    kv: KvClient<Channel>,
    keys: KeySpace,
    rng: SplitMix64,
    fixed: Option<Vec<u8>>,
    range_end: Vec<u8>,
    serializable: bool,
}

impl Op for RangeOp {
    async fn call(&mut self, i: u64) -> Result<(), tonic::Status> {
        let key = match &self.fixed {
            Some(k) => k.clone(),
            None => self.keys.key(self.keys.index(i, &mut self.rng)),
        };
        self.kv
            .range(RangeRequest {
                key,
                range_end: self.range_end.clone(),
                serializable: self.serializable,
                ..Default::default()
            })
            .await?;
        Ok(())
    }
}

struct TxnPutOp {
    kv: KvClient<Channel>,
    keys: KeySpace,
    rng: SplitMix64,
    value: Vec<u8>,
    txn_ops: u64,
}

impl Op for TxnPutOp {
    async fn call(&mut self, i: u64) -> Result<(), tonic::Status> {
        // Consecutive keys from the first: distinct as long as txn_ops <= key space size.
        let first = self.keys.index(i.wrapping_mul(self.txn_ops), &mut self.rng);
        let success = (0..self.txn_ops)
            .map(|j| RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: self.keys.key((first + j) % self.keys.size),
                    value: self.value.clone(),
                    ..Default::default()
                })),
            })
            .collect();
        self.kv
            .txn(TxnRequest {
                success,
                ..Default::default()
            })
            .await?;
        Ok(())
    }
}

/// What the clients of a closed loop measured.
struct Tally {
    latency: Recorder,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> Result<Self, BenchError> {
        Ok(Self {
            latency: Recorder::new()?,
            ok: 0,
            errors: 0,
            first_error: None,
        })
    }

    fn fail(&mut self, shared: &AtomicU64, error: String) {
        self.errors += 1;
        shared.fetch_add(1, Ordering::Relaxed);
        self.first_error.get_or_insert(error);
    }

    fn record(&mut self, outcome: Result<Duration, String>, shared: &AtomicU64) {
        match outcome {
            Ok(latency) => {
                self.latency.record(latency);
                self.ok += 1;
            }
            Err(e) => self.fail(shared, e),
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latency.merge(&other.latency);
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// A progress bar of `len` steps on stderr, or a hidden one.
fn progress(len: u64, show: bool, message: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style);
    }
    bar.set_message(message.to_owned());
    bar
}

/// `ops.len()` clients send `total` requests between them, each as soon as its previous one is
/// answered; returns what they measured and the wall time it took.
async fn closed_loop<O: Op>(
    ops: Vec<O>,
    total: u64,
    request_timeout: Duration,
    max_errors: u64,
    bar: &ProgressBar,
) -> Result<(Tally, Duration), BenchError> {
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut set = JoinSet::new();
    for mut op in ops {
        let (next, errors, bar) = (next.clone(), errors.clone(), bar.clone());
        let mut tally = Tally::new()?;
        set.spawn(async move {
            while errors.load(Ordering::Relaxed) < max_errors {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let sent = Instant::now();
                match tokio::time::timeout(request_timeout, op.call(i)).await {
                    Ok(Ok(())) => {
                        tally.latency.record(sent.elapsed());
                        tally.ok += 1;
                    }
                    Ok(Err(status)) => tally.fail(&errors, status.to_string()),
                    Err(_) => tally.fail(&errors, format!("no answer within {request_timeout:?}")),
                }
                bar.inc(1);
            }
            tally
        });
    }
    let mut all = Tally::new()?;
    while let Some(tally) = set.join_next().await {
        all.merge(tally?);
    }
    Ok((all, start.elapsed()))
}

/// Runs `ops` as the measured phase of `workload` and makes the result.
async fn measure<O: Op>(
    common: &Common,
    workload: &Workload,
    ops: Vec<O>,
) -> Result<BenchResult, BenchError> {
    let bar = progress(common.total, common.progress, workload.name());
    let (tally, elapsed) = closed_loop(
        ops,
        common.total,
        common.request_timeout,
        common.max_errors,
        &bar,
    )
    .await?;
    bar.finish_and_clear();
    let secs = elapsed.as_secs_f64();
    Ok(BenchResult {
        workload: workload.name().to_owned(),
        params: workload.params(),
        endpoints: common.endpoints.clone(),
        conns: common.conns,
        clients: common.clients,
        total: common.total,
        ok: tally.ok,
        errors: common.total - tally.ok,
        first_error: tally.first_error,
        duration_secs: secs,
        throughput: if secs > 0.0 {
            tally.ok as f64 / secs
        } else {
            0.0
        },
        latency: tally.latency.latency(),
        put_latency: None,
    })
}

/// Writes every key `range` will read once, with the same clients, unmeasured.
async fn preload(common: &Common, pool: &Pool, o: &RangeOptions) -> Result<(), BenchError> {
    let value = keys::value(o.val_size);
    let (ops, total): (Vec<PreloadOp>, u64) = match &o.key {
        Some(k) => (
            vec![PreloadOp {
                kv: KvClient::new(pool.channel(0)),
                key: Some(k.clone()),
                keys: o.keys,
                value,
            }],
            1,
        ),
        None => (
            (0..common.clients)
                .map(|c| PreloadOp {
                    kv: KvClient::new(pool.channel(c)),
                    key: None,
                    keys: o.keys,
                    value: value.clone(),
                })
                .collect(),
            o.keys.size,
        ),
    };
    let bar = progress(total, common.progress, "preload");
    let (tally, _) = closed_loop(ops, total, common.request_timeout, 1, &bar).await?;
    bar.finish_and_clear();
    match tally.first_error {
        Some(e) => Err(BenchError::Rpc {
            what: "preloading the keys to read".into(),
            status: Box::new(tonic::Status::unknown(e)),
        }),
        None => Ok(()),
    }
}

struct PreloadOp {
    kv: KvClient<Channel>,
    key: Option<Vec<u8>>,
    keys: KeySpace,
    value: Vec<u8>,
}

impl Op for PreloadOp {
    async fn call(&mut self, i: u64) -> Result<(), tonic::Status> {
        let key = match &self.key {
            Some(k) => k.clone(),
            None => self.keys.key(i),
        };
        self.kv
            .put(PutRequest {
                key,
                value: self.value.clone(),
                ..Default::default()
            })
            .await?;
        Ok(())
    }
}

/// The number of the put a watched value was written by (its first 8 bytes).
fn put_number(value: &[u8]) -> Option<usize> {
    let bytes: [u8; 8] = value.get(..8)?.try_into().ok()?;
    usize::try_from(u64::from_le_bytes(bytes)).ok()
}

/// Shared state of the watch workload's putters and readers.
struct WatchShared {
    /// When each put was sent, in nanoseconds since `epoch`, plus one (0: not yet sent).
    sent: Vec<AtomicU64>,
    /// Puts that failed: their events will never come.
    failed: AtomicU64,
    /// Puts still to be sent or answered.
    pending: AtomicU64,
    epoch: Instant,
}

impl WatchShared {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// How the watch workload's puts are made.
#[derive(Clone)]
struct PutTemplate {
    key: Vec<u8>,
    /// The value, whose first 8 bytes are replaced by the put's number.
    filler: Vec<u8>,
    shared: Arc<WatchShared>,
    timeout: Duration,
}

impl PutTemplate {
    /// Sends put number `i`, noting when it was sent; returns its latency or why it failed.
    async fn send(&self, mut kv: KvClient<Channel>, i: u64) -> Result<Duration, String> {
        let mut value = self.filler.clone();
        value[..8].copy_from_slice(&i.to_le_bytes());
        let sent = Instant::now();
        if let Some(slot) = usize::try_from(i)
            .ok()
            .and_then(|i| self.shared.sent.get(i))
        {
            slot.store(self.shared.now().saturating_add(1), Ordering::SeqCst);
        }
        let put = kv.put(PutRequest {
            key: self.key.clone(),
            value,
            ..Default::default()
        });
        let outcome = match tokio::time::timeout(self.timeout, put).await {
            Ok(Ok(_)) => Ok(sent.elapsed()),
            Ok(Err(status)) => Err(status.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        };
        self.shared.pending.fetch_sub(1, Ordering::SeqCst);
        outcome
    }
}

/// What one watch stream's reader saw.
struct StreamTally {
    latency: Recorder,
    events: u64,
    error: Option<String>,
    last_event: Option<Instant>,
}

async fn watch(common: &Common, pool: &Pool, o: &WatchOptions) -> Result<BenchResult, BenchError> {
    if o.watchers == 0 || o.streams == 0 || o.puts == 0 {
        return Err(BenchError::Invalid(
            "--watchers, --streams and --puts must be at least 1".into(),
        ));
    }
    if o.key_size == 0 {
        return Err(BenchError::Invalid("--key-size must be at least 1".into()));
    }
    let streams = o.streams.min(o.watchers);
    let key = keys::key(o.key_size, 0);
    let expected = o.watchers as u64 * o.puts;
    let puts =
        usize::try_from(o.puts).map_err(|_| BenchError::Invalid("--puts is too large".into()))?;
    let shared = Arc::new(WatchShared {
        sent: (0..puts).map(|_| AtomicU64::new(0)).collect(),
        failed: AtomicU64::new(0),
        pending: AtomicU64::new(o.puts),
        epoch: Instant::now(),
    });
    let bar = progress(expected, common.progress, "watch events");

    // Every watcher is created before the first put.
    let mut readers = JoinSet::new();
    for s in 0..streams {
        let n = o.watchers / streams + usize::from(s < o.watchers % streams);
        let (stream, requests) =
            open_watch_stream(pool.channel(s), &key, n, common.request_timeout).await?;
        let (shared, bar, idle) = (shared.clone(), bar.clone(), o.idle);
        let latency = Recorder::new()?;
        readers.spawn(read_events(
            stream, requests, n as u64, shared, bar, idle, latency,
        ));
    }

    // Paced: put `i` is sent at start + i / rate whether or not earlier puts were answered
    // (open loop, so the rate holds whatever the latency). Unpaced: `--clients` closed-loop
    // putters.
    let value_size = o.val_size.max(8);
    let put = PutTemplate {
        key: key.clone(),
        filler: keys::value(value_size),
        shared: shared.clone(),
        timeout: common.request_timeout,
    };
    let start = Instant::now();
    let mut puts_tally = Tally::new()?;
    if let Some(rate) = NonZeroU64::new(o.put_rate) {
        let mut inflight = JoinSet::new();
        for i in 0..o.puts {
            let due = start + Duration::from_nanos(i.saturating_mul(1_000_000_000) / rate);
            tokio::time::sleep_until(due.into()).await;
            let kv = KvClient::new(pool.channel(i as usize));
            let put = put.clone();
            inflight.spawn(async move { put.send(kv, i).await });
            // Collect what is already answered, so the set stays small.
            while let Some(done) = inflight.try_join_next() {
                puts_tally.record(done?, &shared.failed);
            }
        }
        while let Some(done) = inflight.join_next().await {
            puts_tally.record(done?, &shared.failed);
        }
    } else {
        let next = Arc::new(AtomicU64::new(0));
        let mut putters = JoinSet::new();
        for c in 0..common.clients {
            let kv = KvClient::new(pool.channel(c));
            let (next, put, total) = (next.clone(), put.clone(), o.puts);
            let mut tally = Tally::new()?;
            putters.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    tally.record(put.send(kv.clone(), i).await, &put.shared.failed);
                }
                tally
            });
        }
        while let Some(tally) = putters.join_next().await {
            puts_tally.merge(tally?);
        }
    }
    let mut latency = Recorder::new()?;
    let mut events = 0;
    let mut first_error = puts_tally.first_error.clone();
    let mut last_event = start;
    while let Some(tally) = readers.join_next().await {
        let tally = tally?;
        latency.merge(&tally.latency);
        events += tally.events;
        if first_error.is_none() {
            first_error = tally.error;
        }
        if let Some(t) = tally.last_event {
            last_event = last_event.max(t);
        }
    }
    bar.finish_and_clear();
    let secs = last_event.duration_since(start).as_secs_f64();
    Ok(BenchResult {
        workload: "watch".into(),
        params: Workload::Watch(o.clone()).params(),
        endpoints: common.endpoints.clone(),
        conns: pool.len(),
        clients: common.clients,
        total: expected,
        ok: events,
        errors: expected.saturating_sub(events),
        first_error,
        duration_secs: secs,
        throughput: if secs > 0.0 {
            events as f64 / secs
        } else {
            0.0
        },
        latency: latency.latency(),
        put_latency: Some(puts_tally.latency.latency()),
    })
}

/// Opens a watch stream with `watchers` watchers on `key` and waits until all are created.
/// Returns the responses and the request sender, which must live as long as the stream.
async fn open_watch_stream(
    channel: Channel,
    key: &[u8],
    watchers: usize,
    timeout: Duration,
) -> Result<(Streaming<WatchResponse>, mpsc::Sender<WatchRequest>), BenchError> {
    let mut client = WatchClient::new(channel);
    let (tx, rx) = mpsc::channel(watchers.max(1));
    let rpc = |status| BenchError::Rpc {
        what: "creating watchers".into(),
        status: Box::new(status),
    };
    let timed_out = || BenchError::Timeout(format!("creating {watchers} watchers"));
    for _ in 0..watchers {
        let create = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: key.to_vec(),
                    ..Default::default()
                },
            )),
        };
        // The channel holds every create request: this never waits.
        tx.send(create)
            .await
            .map_err(|_| BenchError::Invalid("watch request stream closed".into()))?;
    }
    let mut stream = tokio::time::timeout(timeout, client.watch(ReceiverStream::new(rx)))
        .await
        .map_err(|_| timed_out())?
        .map_err(rpc)?
        .into_inner();
    let mut created = 0;
    while created < watchers {
        let message = tokio::time::timeout(timeout, stream.message())
            .await
            .map_err(|_| timed_out())?
            .map_err(rpc)?;
        match message {
            Some(resp) if resp.canceled => {
                return Err(rpc(tonic::Status::aborted(format!(
                    "watch canceled: {}",
                    resp.cancel_reason
                ))));
            }
            Some(resp) if resp.created => created += 1,
            Some(_) => {}
            None => return Err(rpc(tonic::Status::aborted("watch stream ended"))),
        }
    }
    Ok((stream, tx))
}

/// Reads one stream's events until all `watchers` watchers saw every put that succeeded, or
/// none came for `idle`.
async fn read_events(
    mut stream: Streaming<WatchResponse>,
    _requests: mpsc::Sender<WatchRequest>,
    watchers: u64,
    shared: Arc<WatchShared>,
    bar: ProgressBar,
    idle: Duration,
    latency: Recorder,
) -> StreamTally {
    let mut tally = StreamTally {
        latency,
        events: 0,
        error: None,
        last_event: None,
    };
    let mut last_seen = Instant::now();
    loop {
        let puts = shared.sent.len() as u64;
        let want = watchers * puts.saturating_sub(shared.failed.load(Ordering::SeqCst));
        let all_sent = shared.pending.load(Ordering::SeqCst) == 0;
        if all_sent && tally.events >= want {
            break;
        }
        if last_seen.elapsed() >= idle {
            tally.error = Some(format!(
                "no watch event for {idle:?} ({} of {want} received on one stream)",
                tally.events
            ));
            break;
        }
        // `Streaming::message` is cancel safe: a poll that times out loses nothing.
        let message = match tokio::time::timeout(WATCH_POLL, stream.message()).await {
            Err(_) => continue,
            Ok(m) => m,
        };
        match message {
            Ok(Some(resp)) => {
                let now = shared.now();
                let at = Instant::now();
                for event in &resp.events {
                    let sent = event
                        .kv
                        .as_ref()
                        .and_then(|kv| put_number(&kv.value))
                        .and_then(|i| shared.sent.get(i))
                        .map(|slot| slot.load(Ordering::SeqCst));
                    if let Some(sent) = sent.filter(|&s| s > 0) {
                        tally
                            .latency
                            .record(Duration::from_nanos(now.saturating_sub(sent - 1)));
                    }
                    tally.events += 1;
                    bar.inc(1);
                }
                if !resp.events.is_empty() {
                    last_seen = at;
                    tally.last_event = Some(at);
                }
                if resp.canceled {
                    tally.error = Some(format!("watch canceled: {}", resp.cancel_reason));
                    break;
                }
            }
            Ok(None) => {
                tally.error = Some("watch stream ended".into());
                break;
            }
            Err(status) => {
                tally.error = Some(status.to_string());
                break;
            }
        }
    }
    tally
}
