//! go-grpc-prometheus' server metrics (`grpc_server_started_total`,
//! `grpc_server_handled_total`), which etcd exports and dashboards read: a tower layer around
//! the client router that counts each gRPC call when it starts and, with its status code, when
//! it ends.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use http_body::{Body as HttpBody, Frame, SizeHint};
use prometheus::IntCounterVec;
use tonic::codegen::http::{HeaderMap, Request, Response};

use crate::etcdhttp::ServerMetrics;

/// go-grpc-prometheus' name of a gRPC status code.
pub fn code_name(code: &[u8]) -> &'static str {
    match code {
        b"0" => "OK",
        b"1" => "Canceled",
        b"2" => "Unknown",
        b"3" => "InvalidArgument",
        b"4" => "DeadlineExceeded",
        b"5" => "NotFound",
        b"6" => "AlreadyExists",
        b"7" => "PermissionDenied",
        b"8" => "ResourceExhausted",
        b"9" => "FailedPrecondition",
        b"10" => "Aborted",
        b"11" => "OutOfRange",
        b"12" => "Unimplemented",
        b"13" => "Internal",
        b"14" => "Unavailable",
        b"15" => "DataLoss",
        b"16" => "Unauthenticated",
        _ => "Unknown",
    }
}

/// The kind of call a method is (go-grpc-prometheus' `grpc_type`), for etcd's services.
fn call_type(service: &str, method: &str) -> &'static str {
    match (service, method) {
        ("etcdserverpb.Watch", "Watch") | ("etcdserverpb.Lease", "LeaseKeepAlive") => "bidi_stream",
        ("etcdserverpb.Maintenance", "Snapshot")
        | ("v3electionpb.Election", "Observe")
        | ("grpc.health.v1.Health", "Watch") => "server_stream",
        _ => "unary",
    }
}

/// The labels of a call: `/pkg.Service/Method` → (type, service, method).
fn labels(path: &str) -> Option<(&'static str, &str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    if service.is_empty() || method.is_empty() || method.contains('/') {
        return None;
    }
    Some((call_type(service, method), service, method))
}

/// The layer: counts the calls that reach the router.
#[derive(Clone, Debug)]
pub struct GrpcMetricsLayer {
    metrics: Arc<ServerMetrics>,
}

impl GrpcMetricsLayer {
    /// Counts into `metrics`.
    pub fn new(metrics: Arc<ServerMetrics>) -> GrpcMetricsLayer {
        GrpcMetricsLayer { metrics }
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics {
            inner,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

/// The service [`GrpcMetricsLayer`] makes.
#[derive(Clone, Debug)]
pub struct GrpcMetrics<S> {
    inner: S,
    metrics: Arc<ServerMetrics>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> tower::Service<Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<Request<B>, Response = Response<Body>> + Send,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Response<Body>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let is_grpc = req
            .headers()
            .get(tonic::codegen::http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        let handled = if is_grpc {
            labels(req.uri().path()).map(|(kind, service, method)| {
                self.metrics
                    .grpc_started
                    .with_label_values(&[kind, service, method])
                    .inc();
                HandledCounter {
                    counter: self.metrics.grpc_handled.clone(),
                    labels: [kind.to_owned(), service.to_owned(), method.to_owned()],
                    done: false,
                }
            })
        } else {
            None
        };
        let future = self.inner.call(req);
        Box::pin(async move {
            let response = future.await?;
            let Some(mut handled) = handled else {
                return Ok(response);
            };
            // A trailers-only answer (an error, or nothing to send) carries its status in
            // the headers; otherwise it comes in the trailers at the end of the body.
            if let Some(code) = response.headers().get("grpc-status") {
                handled.record(code.as_bytes());
                return Ok(response);
            }
            Ok(response.map(|body| {
                Body::new(CountedBody {
                    inner: body,
                    handled,
                })
            }))
        })
    }
}

/// Counts one call as handled, once, with the code it ended with.
struct HandledCounter {
    counter: IntCounterVec,
    labels: [String; 3],
    done: bool,
}

impl HandledCounter {
    fn record(&mut self, code: &[u8]) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let [kind, service, method] = &self.labels;
        self.counter
            .with_label_values(&[kind.as_str(), service, method, code_name(code)])
            .inc();
    }

    fn record_trailers(&mut self, trailers: &HeaderMap) {
        let code = trailers
            .get("grpc-status")
            .map_or(&b"2"[..], |v| v.as_bytes());
        self.record(code);
    }
}

impl Drop for HandledCounter {
    /// A body dropped before its trailers: the client went away (go-grpc-prometheus counts the
    /// handler's `context canceled` as `Canceled`).
    fn drop(&mut self) {
        self.record(b"1");
    }
}

/// A response body that records the call's status when its trailers pass.
struct CountedBody {
    inner: Body,
    handled: HandledCounter,
}

impl HttpBody for CountedBody {
    type Data = <Body as HttpBody>::Data;
    type Error = <Body as HttpBody>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    this.handled.record_trailers(trailers);
                }
            }
            Poll::Ready(Some(Err(_))) => this.handled.record(b"2"),
            Poll::Ready(None) => this.handled.record(b"0"),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use super::*;

    #[test]
    fn labels_come_from_the_path() {
        assert_eq!(
            labels("/etcdserverpb.KV/Range"),
            Some(("unary", "etcdserverpb.KV", "Range"))
        );
        assert_eq!(
            labels("/etcdserverpb.Watch/Watch"),
            Some(("bidi_stream", "etcdserverpb.Watch", "Watch"))
        );
        assert_eq!(
            labels("/etcdserverpb.Maintenance/Snapshot"),
            Some(("server_stream", "etcdserverpb.Maintenance", "Snapshot"))
        );
        assert_eq!(labels("/health"), None);
        assert_eq!(labels("/a/b/c"), None);
        assert_eq!(labels("//x"), None);
    }

    #[test]
    fn codes_are_named_as_go_grpc_prometheus_names_them() {
        assert_eq!(code_name(b"0"), "OK");
        assert_eq!(code_name(b"1"), "Canceled");
        assert_eq!(code_name(b"14"), "Unavailable");
        assert_eq!(code_name(b"99"), "Unknown");
    }

    #[test]
    fn a_call_is_counted_once() {
        let m = ServerMetrics::new().expect("metrics");
        let mut h = HandledCounter {
            counter: m.grpc_handled.clone(),
            labels: ["unary".into(), "etcdserverpb.KV".into(), "Put".into()],
            done: false,
        };
        h.record(b"0");
        h.record(b"13");
        drop(h);
        let ok = m
            .grpc_handled
            .with_label_values(&["unary", "etcdserverpb.KV", "Put", "OK"])
            .get();
        let other: u64 = ["Internal", "Canceled"]
            .iter()
            .map(|c| {
                m.grpc_handled
                    .with_label_values(&["unary", "etcdserverpb.KV", "Put", c])
                    .get()
            })
            .sum();
        assert_eq!((ok, other), (1, 0));
    }
}
