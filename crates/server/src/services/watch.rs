//! etcd's `Watch` service: one bidirectional stream carries many watches.
//!
//! Each gRPC stream gets one [`mvcc::WatchStream`] and one async task that owns it (no thread:
//! a member serves tens of thousands of streams on a few runtime threads, as etcd serves them on
//! goroutines). The task serves the client's create / cancel / progress requests and forwards
//! the store's responses, in order, so a watch's `created` response always precedes its events
//! (as in etcd's `serverWatchStream`). The store never waits for the client: its channel is
//! bounded and a slow watcher is caught up from the backend later.

use std::collections::HashMap;
use std::time::Duration;

use mvcc::watch::{EventKind, PROGRESS_ALL_ID, WatchFilters, WatchStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

use super::Ctx;
use crate::convert;
use crate::proto::etcdserverpb as pb;
use crate::proto::etcdserverpb::watch_request::RequestUnion;
use crate::proto::etcdserverpb::watch_server::Watch;
use crate::proto::mvccpb;

/// How often a stream-wide progress request that found an unsynced watch is retried.
const PROGRESS_RETRY: Duration = Duration::from_millis(100);

/// The Watch service.
#[derive(Debug, Clone)]
pub struct WatchService {
    ctx: Ctx,
}

impl WatchService {
    /// A Watch service over the context's node.
    pub fn new(ctx: Ctx) -> WatchService {
        WatchService { ctx }
    }
}

type Out = mpsc::Sender<Result<pb::WatchResponse, Status>>;

#[tonic::async_trait]
impl Watch for WatchService {
    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<BoxStream<pb::WatchResponse>>, Status> {
        let mut incoming = request.into_inner();
        let (out_tx, out_rx) = mpsc::channel(128);
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel::<RequestUnion>();
        let stream = self.ctx.node.watchable_store().watch_stream();
        tokio::spawn(StreamTask::new(self.ctx.clone(), stream, out_tx.clone()).run(ctl_rx));
        tokio::spawn(async move {
            loop {
                match incoming.message().await {
                    Ok(Some(req)) => {
                        if let Some(u) = req.request_union
                            && ctl_tx.send(u).is_err()
                        {
                            break;
                        }
                    }
                    // The client closed its sending side: etcd's `recvLoop` returns without an
                    // error then, and its watches go on until the stream itself ends (the JSON
                    // gateway's watch depends on it: curl's body ends after one request). The
                    // stream ends when the client drops it; dropping `ctl_tx` then stops the
                    // task.
                    Ok(None) => {
                        out_tx.closed().await;
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "watch stream receive failed");
                        break;
                    }
                }
            }
            drop(out_tx);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }
}

/// Per-watch options the server applies (the store knows the rest).
#[derive(Clone, Copy, Debug, Default)]
struct WatchOpts {
    progress_notify: bool,
    fragment: bool,
    /// Whether events were sent since the last progress tick (etcd's `progress[id] = false`).
    active: bool,
}

/// The task serving one gRPC watch stream.
struct StreamTask {
    ctx: Ctx,
    stream: WatchStream,
    out: Out,
    watches: HashMap<i64, WatchOpts>,
    progress_all_pending: bool,
    next_progress: Instant,
}

impl StreamTask {
    fn new(ctx: Ctx, stream: WatchStream, out: Out) -> StreamTask {
        let next_progress = Instant::now() + ctx.progress_notify_interval;
        StreamTask {
            ctx,
            stream,
            out,
            watches: HashMap::new(),
            progress_all_pending: false,
            next_progress,
        }
    }

    fn header(&self, revision: i64) -> pb::ResponseHeader {
        let mut h = super::header(self.ctx.node.header());
        h.revision = revision;
        h
    }

    /// Sends to the client (waiting while its window is full); false once it is gone.
    async fn send(&self, resp: pb::WatchResponse) -> bool {
        self.out.send(Ok(resp)).await.is_ok()
    }

    /// When the timers next need a look.
    fn next_tick(&self) -> Instant {
        if self.progress_all_pending {
            self.next_progress.min(Instant::now() + PROGRESS_RETRY)
        } else {
            self.next_progress
        }
    }

    async fn run(mut self, mut ctl: mpsc::UnboundedReceiver<RequestUnion>) {
        loop {
            let tick = self.next_tick();
            // Every branch's future is cancel safe, and all are dropped before a handler
            // runs: a response is either forwarded or still queued in the store's channel.
            let keep_going = tokio::select! {
                msg = ctl.recv() => match msg {
                    Some(u) => self.control(u).await,
                    None => false,
                },
                resp = self.stream.recv_async() => match resp {
                    Some(r) => self.forward(r).await,
                    None => {
                        // The store was closed or replaced (snapshot install): the client
                        // must watch again.
                        let _ = self.out.send(Err(Status::unavailable(
                            "etcdserver: watch store closed, retry the watch",
                        ))).await;
                        false
                    }
                },
                () = self.out.closed() => false,
                () = tokio::time::sleep_until(tick) => true,
            };
            if !keep_going {
                return;
            }
            self.timers();
        }
    }

    fn timers(&mut self) {
        if self.progress_all_pending && self.stream.request_progress_all() {
            self.progress_all_pending = false;
        }
        let now = Instant::now();
        if now < self.next_progress {
            return;
        }
        self.next_progress = now + self.ctx.progress_notify_interval;
        for (id, opts) in &mut self.watches {
            if opts.progress_notify {
                if !opts.active {
                    self.stream.request_progress(*id);
                }
                opts.active = false;
            }
        }
    }

    async fn control(&mut self, u: RequestUnion) -> bool {
        match u {
            RequestUnion::CreateRequest(c) => self.create(c).await,
            RequestUnion::CancelRequest(c) => {
                if self.stream.cancel(c.watch_id).is_ok() {
                    self.watches.remove(&c.watch_id);
                    let h = self.header(self.stream.rev());
                    return self
                        .send(pb::WatchResponse {
                            header: Some(h),
                            watch_id: c.watch_id,
                            canceled: true,
                            ..Default::default()
                        })
                        .await;
                }
                true
            }
            RequestUnion::ProgressRequest(_) => {
                // Sent once every watch of the stream is synced (etcd 3.5's deferral).
                if !self.stream.request_progress_all() {
                    self.progress_all_pending = true;
                }
                true
            }
        }
    }

    async fn create(&mut self, c: pb::WatchCreateRequest) -> bool {
        // etcd: an empty key is "\x00", the smallest key; an end of "\x00" is every key from
        // `key` on.
        let key = if c.key.is_empty() { vec![0] } else { c.key };
        let end = convert::range_end(c.range_end);
        let filters = WatchFilters {
            no_put: c
                .filters
                .contains(&(pb::watch_create_request::FilterType::Noput as i32)),
            no_delete: c
                .filters
                .contains(&(pb::watch_create_request::FilterType::Nodelete as i32)),
        };
        let id = (c.watch_id != 0).then_some(c.watch_id);
        let result = self.stream.watch(
            id,
            &key,
            end.as_deref(),
            c.start_revision,
            filters,
            c.prev_kv,
        );
        let h = self.header(self.stream.rev());
        let resp = match result {
            Ok(id) => {
                self.watches.insert(
                    id,
                    WatchOpts {
                        progress_notify: c.progress_notify,
                        fragment: c.fragment,
                        active: false,
                    },
                );
                pb::WatchResponse {
                    header: Some(h),
                    watch_id: id,
                    created: true,
                    ..Default::default()
                }
            }
            Err(e) => pb::WatchResponse {
                header: Some(h),
                watch_id: -1,
                created: true,
                canceled: true,
                cancel_reason: e.to_string(),
                ..Default::default()
            },
        };
        self.send(resp).await
    }

    async fn forward(&mut self, r: mvcc::WatchResponse) -> bool {
        let opts = if r.watch_id == PROGRESS_ALL_ID {
            WatchOpts::default()
        } else {
            match self.watches.get_mut(&r.watch_id) {
                Some(o) => {
                    if !r.events.is_empty() {
                        o.active = true;
                    }
                    *o
                }
                // Cancelled by the client: responses still queued for it are dropped.
                None => return true,
            }
        };
        let canceled = r.compact_revision != 0 || r.canceled;
        if canceled {
            self.watches.remove(&r.watch_id);
        }
        let resp = pb::WatchResponse {
            header: Some(self.header(r.revision)),
            watch_id: r.watch_id,
            created: false,
            canceled,
            compact_revision: r.compact_revision,
            cancel_reason: String::new(),
            fragment: false,
            events: r.events.into_iter().map(event).collect(),
        };
        if opts.fragment {
            for f in fragments(resp, self.ctx.max_request_bytes) {
                if !self.send(f).await {
                    return false;
                }
            }
            true
        } else {
            self.send(resp).await
        }
    }
}

fn event(e: mvcc::Event) -> mvccpb::Event {
    mvccpb::Event {
        r#type: match e.kind {
            EventKind::Put => mvccpb::event::EventType::Put as i32,
            EventKind::Delete => mvccpb::event::EventType::Delete as i32,
        },
        kv: Some(convert::kv(e.kv)),
        prev_kv: e.prev_kv.map(convert::kv),
    }
}

/// Splits a response larger than `max` bytes into fragments of whole events, each marked
/// `fragment` but the last (etcd's `sendFragments`).
pub fn fragments(resp: pb::WatchResponse, max: usize) -> Vec<pb::WatchResponse> {
    use prost::Message;
    if resp.encoded_len() < max || resp.events.len() < 2 {
        return vec![resp];
    }
    let mut template = resp;
    let events = std::mem::take(&mut template.events);
    template.fragment = true;
    let base = template.encoded_len();
    let field_len = |e: &mvccpb::Event| {
        let n = e.encoded_len();
        1 + prost::encoding::encoded_len_varint(n as u64) + n
    };
    let mut out = Vec::new();
    let mut cur = template.clone();
    let mut size = base;
    for ev in events {
        let n = field_len(&ev);
        if !cur.events.is_empty() && size + n >= max {
            out.push(std::mem::replace(&mut cur, template.clone()));
            size = base;
        }
        size += n;
        cur.events.push(ev);
    }
    cur.fragment = false;
    out.push(cur);
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn ids(f: &[pb::WatchResponse]) -> HashSet<i64> {
        f.iter().map(|r| r.watch_id).collect()
    }

    fn ev(i: usize) -> mvccpb::Event {
        mvccpb::Event {
            r#type: 0,
            kv: Some(mvccpb::KeyValue {
                key: format!("key{i}").into_bytes(),
                value: vec![b'x'; 100],
                ..Default::default()
            }),
            prev_kv: None,
        }
    }

    #[test]
    fn large_responses_are_fragmented_at_event_boundaries() {
        let resp = pb::WatchResponse {
            watch_id: 3,
            events: (0..10).map(ev).collect(),
            ..Default::default()
        };
        let small = fragments(resp.clone(), 1 << 20);
        assert_eq!(small.len(), 1);
        assert!(!small[0].fragment);
        let parts = fragments(resp, 300);
        assert!(parts.len() > 1);
        assert_eq!(parts.iter().map(|p| p.events.len()).sum::<usize>(), 10);
        let (last, rest) = parts.split_last().unwrap_or_else(|| unreachable!());
        assert!(!last.fragment);
        assert!(rest.iter().all(|p| p.fragment));
        assert_eq!(ids(&parts), HashSet::from([3]));
    }

    #[test]
    fn a_single_large_event_is_not_split() {
        let resp = pb::WatchResponse {
            events: vec![ev(0)],
            ..Default::default()
        };
        assert_eq!(fragments(resp, 10).len(), 1);
    }
}
