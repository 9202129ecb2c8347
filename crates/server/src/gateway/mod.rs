//! etcd's gRPC gateway: the v3 API as JSON over HTTP, under `/v3/` (and the deprecated
//! `/v3beta/`), on the client listeners, as etcd 3.4 serves it with grpc-gateway.
//!
//! Each path (`/v3/kv/range`, from the `google.api.http` annotations of etcd's protos) maps to
//! one gRPC method. A request body is the JSON form of the request message ([`json`]); it is
//! sent to this server's own gRPC router ([`grpc`]), so that every gRPC rule, limit and metric
//! applies unchanged, and the answer comes back as JSON, or as grpc-gateway's error body
//! ([`error`]). Streams (watch, lease keep-alive, snapshot, election observe) read successive
//! JSON objects from the body and answer one `{"result":…}` line per message.

mod error;
mod grpc;
mod json;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode};
use axum::response::Response;
use axum::routing::any;
use bytes::Bytes;
use http_body_util::BodyExt;
use prost_reflect::{MessageDescriptor, MethodDescriptor};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

pub use error::http_status;
pub use json::JsonError;

/// The gateway's paths under `/v3/`, and the gRPC method of each (etcd 3.4's annotations).
/// `maintenance/hash` is `HashKV`: etcd annotates both `Hash` and `HashKV` with it and
/// grpc-gateway serves the last one registered.
pub const ROUTES: &[(&str, &str, &str)] = &[
    ("kv/range", "etcdserverpb.KV", "Range"),
    ("kv/put", "etcdserverpb.KV", "Put"),
    ("kv/deleterange", "etcdserverpb.KV", "DeleteRange"),
    ("kv/txn", "etcdserverpb.KV", "Txn"),
    ("kv/compaction", "etcdserverpb.KV", "Compact"),
    ("watch", "etcdserverpb.Watch", "Watch"),
    ("lease/grant", "etcdserverpb.Lease", "LeaseGrant"),
    ("lease/revoke", "etcdserverpb.Lease", "LeaseRevoke"),
    ("kv/lease/revoke", "etcdserverpb.Lease", "LeaseRevoke"),
    ("lease/keepalive", "etcdserverpb.Lease", "LeaseKeepAlive"),
    ("lease/timetolive", "etcdserverpb.Lease", "LeaseTimeToLive"),
    (
        "kv/lease/timetolive",
        "etcdserverpb.Lease",
        "LeaseTimeToLive",
    ),
    ("lease/leases", "etcdserverpb.Lease", "LeaseLeases"),
    ("kv/lease/leases", "etcdserverpb.Lease", "LeaseLeases"),
    ("cluster/member/add", "etcdserverpb.Cluster", "MemberAdd"),
    (
        "cluster/member/remove",
        "etcdserverpb.Cluster",
        "MemberRemove",
    ),
    (
        "cluster/member/update",
        "etcdserverpb.Cluster",
        "MemberUpdate",
    ),
    ("cluster/member/list", "etcdserverpb.Cluster", "MemberList"),
    (
        "cluster/member/promote",
        "etcdserverpb.Cluster",
        "MemberPromote",
    ),
    ("maintenance/alarm", "etcdserverpb.Maintenance", "Alarm"),
    ("maintenance/status", "etcdserverpb.Maintenance", "Status"),
    (
        "maintenance/defragment",
        "etcdserverpb.Maintenance",
        "Defragment",
    ),
    ("maintenance/hash", "etcdserverpb.Maintenance", "HashKV"),
    (
        "maintenance/snapshot",
        "etcdserverpb.Maintenance",
        "Snapshot",
    ),
    (
        "maintenance/transfer-leadership",
        "etcdserverpb.Maintenance",
        "MoveLeader",
    ),
    ("auth/enable", "etcdserverpb.Auth", "AuthEnable"),
    ("auth/disable", "etcdserverpb.Auth", "AuthDisable"),
    ("auth/status", "etcdserverpb.Auth", "AuthStatus"),
    ("auth/authenticate", "etcdserverpb.Auth", "Authenticate"),
    ("auth/user/add", "etcdserverpb.Auth", "UserAdd"),
    ("auth/user/get", "etcdserverpb.Auth", "UserGet"),
    ("auth/user/list", "etcdserverpb.Auth", "UserList"),
    ("auth/user/delete", "etcdserverpb.Auth", "UserDelete"),
    (
        "auth/user/changepw",
        "etcdserverpb.Auth",
        "UserChangePassword",
    ),
    ("auth/user/grant", "etcdserverpb.Auth", "UserGrantRole"),
    ("auth/user/revoke", "etcdserverpb.Auth", "UserRevokeRole"),
    ("auth/role/add", "etcdserverpb.Auth", "RoleAdd"),
    ("auth/role/get", "etcdserverpb.Auth", "RoleGet"),
    ("auth/role/list", "etcdserverpb.Auth", "RoleList"),
    ("auth/role/delete", "etcdserverpb.Auth", "RoleDelete"),
    (
        "auth/role/grant",
        "etcdserverpb.Auth",
        "RoleGrantPermission",
    ),
    (
        "auth/role/revoke",
        "etcdserverpb.Auth",
        "RoleRevokePermission",
    ),
    ("lock/lock", "v3lockpb.Lock", "Lock"),
    ("lock/unlock", "v3lockpb.Lock", "Unlock"),
    ("election/campaign", "v3electionpb.Election", "Campaign"),
    ("election/proclaim", "v3electionpb.Election", "Proclaim"),
    ("election/leader", "v3electionpb.Election", "Leader"),
    ("election/observe", "v3electionpb.Election", "Observe"),
    ("election/resign", "v3electionpb.Election", "Resign"),
];

/// How much larger than the gRPC message limit one JSON request may be: base64 takes 4/3 of
/// the bytes, and JSON adds names and punctuation.
const JSON_EXPANSION: usize = 4;

/// One path's method.
struct Route {
    /// `/package.Service/Method`.
    grpc_path: String,
    input: MessageDescriptor,
    output: MessageDescriptor,
    client_streaming: bool,
    server_streaming: bool,
}

impl Route {
    fn new(method: &MethodDescriptor) -> Route {
        Route {
            grpc_path: format!("/{}/{}", method.parent_service().full_name(), method.name()),
            input: method.input(),
            output: method.output(),
            client_streaming: method.is_client_streaming(),
            server_streaming: method.is_server_streaming(),
        }
    }
}

#[derive(Clone)]
struct Gateway {
    /// The gRPC side of this server.
    grpc: Router,
    /// Every path of [`ROUTES`], or why its method is unknown.
    routes: Arc<HashMap<&'static str, Result<Route, String>>>,
    /// The largest JSON request object.
    max_json: usize,
    /// One permit per call in progress: etcd's gateway is one gRPC connection per listener,
    /// so `--max-concurrent-streams` bounds its calls together, and a call over the limit
    /// waits for one to end (etcd's e2e `TestV3Curl_MaxStreams_*` pin this).
    streams: Arc<Semaphore>,
}

/// The gateway's routes, calling `grpc` (this server's gRPC router, with its limits and
/// metrics), which decodes at most `max_message` bytes per request message, at most
/// `max_streams` calls at a time.
pub fn router(grpc: Router, max_message: usize, max_streams: u32) -> Router {
    let routes = ROUTES
        .iter()
        .map(|&(path, service, method)| {
            let route = json::method(service, method)
                .map(|m| Route::new(&m))
                .map_err(|e| e.to_string());
            (path, route)
        })
        .collect();
    let gateway = Gateway {
        grpc,
        routes: Arc::new(routes),
        max_json: max_message.saturating_mul(JSON_EXPANSION),
        streams: Arc::new(Semaphore::new(
            usize::try_from(max_streams)
                .unwrap_or(usize::MAX)
                .min(Semaphore::MAX_PERMITS),
        )),
    };
    Router::new()
        .route("/v3/{*path}", any(serve).with_state(gateway.clone()))
        .route("/v3beta/{*path}", any(serve).with_state(gateway))
}

/// The request headers passed on as gRPC metadata, as grpc-gateway passes them: the
/// `Authorization` header (etcd's auth token) and `Grpc-Metadata-*` without the prefix.
fn metadata(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        let name = name.as_str();
        if name == "authorization" {
            out.insert(axum::http::header::AUTHORIZATION, value.clone());
        } else if let Some(rest) = name.strip_prefix("grpc-metadata-")
            && let Ok(key) = HeaderName::from_bytes(rest.as_bytes())
        {
            out.append(key, value.clone());
        }
    }
    out
}

async fn serve(State(gateway): State<Gateway>, request: Request) -> Response {
    let path = request.uri().path();
    let rest = path
        .strip_prefix("/v3/")
        .or_else(|| path.strip_prefix("/v3beta/"));
    let Some(route) = rest.and_then(|r| gateway.routes.get(r)) else {
        return crate::etcdhttp::go_http_error(StatusCode::NOT_FOUND, "Not Found");
    };
    if request.method() != Method::POST {
        return crate::etcdhttp::go_http_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method Not Allowed",
        );
    }
    let route = match route {
        Ok(route) => route,
        Err(why) => return error::unary(&Status::internal(why.clone())),
    };
    let Ok(permit) = Arc::clone(&gateway.streams).acquire_owned().await else {
        return error::unary(&Status::unavailable("gateway: shutting down"));
    };
    let (parts, body) = request.into_parts();
    let mut body = JsonBody::new(body, gateway.max_json);
    // The first request message is read before the call, as grpc-gateway does: a body that
    // is not one is refused with InvalidArgument. An empty body is the empty message.
    let first = match body.next(&route.input).await {
        Ok(first) => first,
        Err(status) => return error::unary(&status),
    };
    let grpc_body = if route.client_streaming {
        match first {
            Some(first) => {
                let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(16);
                let input = route.input.clone();
                tokio::spawn(async move {
                    if tx.send(Ok(grpc::frame(&first))).await.is_err() {
                        return;
                    }
                    // Later messages that do not decode end the request stream (grpc-gateway
                    // closes its sending side then), and so does the body's end.
                    while let Ok(Some(message)) = body.next(&input).await {
                        if tx.send(Ok(grpc::frame(&message))).await.is_err() {
                            return;
                        }
                    }
                });
                Body::from_stream(ReceiverStream::new(rx))
            }
            None => Body::empty(),
        }
    } else {
        Body::from(grpc::frame(&first.unwrap_or_default()))
    };
    let mut reply = grpc::call(
        &gateway.grpc,
        &route.grpc_path,
        metadata(&parts.headers),
        parts.extensions,
        grpc_body,
    )
    .await;
    if route.server_streaming {
        stream_response(reply, route.output.clone(), permit).await
    } else {
        unary_response(&mut reply, &route.output).await
    }
}

async fn unary_response(reply: &mut grpc::Reply, output: &MessageDescriptor) -> Response {
    let message = match reply.next().await {
        Ok(Some(message)) => message,
        Ok(None) => {
            return error::unary(&Status::internal("gateway: the call answered no message"));
        }
        Err(status) => return error::unary(&status),
    };
    if let Err(status) = reply.next().await {
        return error::unary(&status);
    }
    match json::encode_response(output, &message) {
        Ok(json) => error::json_response(StatusCode::OK, json),
        Err(e) => error::unary(&Status::internal(e.to_string())),
    }
}

/// `{"result":<json>}`, one stream line without its delimiter.
fn result_chunk(output: &MessageDescriptor, message: &[u8]) -> Result<Vec<u8>, Status> {
    let json =
        json::encode_response(output, message).map_err(|e| Status::internal(e.to_string()))?;
    let mut chunk = Vec::with_capacity(json.len() + 12);
    chunk.extend_from_slice(b"{\"result\":");
    chunk.extend_from_slice(&json);
    chunk.push(b'}');
    Ok(chunk)
}

/// A streamed answer: nothing is sent before the first message or the error (as Go sends
/// its headers with the first write); then one line per message, and an error chunk if the
/// call fails.
async fn stream_response(
    mut reply: grpc::Reply,
    output: MessageDescriptor,
    permit: OwnedSemaphorePermit,
) -> Response {
    let first = match reply.next().await {
        Ok(Some(message)) => message,
        Ok(None) => return error::json_response(StatusCode::OK, Vec::new()),
        Err(status) => {
            return error::json_response(http_status(status.code()), error::stream_chunk(&status));
        }
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(16);
    tokio::spawn(async move {
        // The call holds its stream until it ends.
        let _permit = permit;
        let mut next = Ok(Some(first));
        loop {
            let chunk = match next {
                Ok(Some(message)) => match result_chunk(&output, &message) {
                    Ok(mut chunk) => {
                        chunk.push(b'\n');
                        chunk
                    }
                    Err(status) => error::stream_chunk(&status),
                },
                Ok(None) => return,
                Err(status) => error::stream_chunk(&status),
            };
            let ended = !chunk.ends_with(b"\n");
            // The client went away: dropping `reply` cancels the call, and frees its stream.
            if tx.send(Ok(Bytes::from(chunk))).await.is_err() || ended {
                return;
            }
            next = tokio::select! {
                next = reply.next() => next,
                () = tx.closed() => return,
            };
        }
    });
    error::json_response(StatusCode::OK, Vec::new())
        .map(|_| Body::from_stream(ReceiverStream::new(rx)))
}

/// The request body as successive JSON values, each encoded as a request message.
///
/// Values are delimited by a scan that follows strings and nesting over each byte once, so
/// that a value is parsed once, when its last byte arrives, however the body is split (a
/// stream's next request may arrive much later than its first bytes).
struct JsonBody {
    body: Body,
    buf: Vec<u8>,
    ended: bool,
    /// How much of `buf` the scan has looked at, and what it found there.
    scanned: usize,
    depth: usize,
    in_string: bool,
    escaped: bool,
    max: usize,
}

impl JsonBody {
    fn new(body: Body, max: usize) -> JsonBody {
        JsonBody {
            body,
            buf: Vec::new(),
            ended: false,
            scanned: 0,
            depth: 0,
            in_string: false,
            escaped: false,
            max,
        }
    }

    /// The next message of the body (protobuf bytes), `None` at its end.
    async fn next(&mut self, input: &MessageDescriptor) -> Result<Option<Vec<u8>>, Status> {
        match self.next_value().await? {
            Some(value) => json::decode_request(input, value)
                .map(Some)
                .map_err(|e| Status::invalid_argument(e.to_string())),
            None => Ok(None),
        }
    }

    /// The length of the first complete object or array in `buf`, scanning only what was not
    /// scanned yet; `None` while it is incomplete.
    fn complete_len(&mut self) -> Option<usize> {
        while self.scanned < self.buf.len() {
            let b = self.buf[self.scanned];
            self.scanned += 1;
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        return Some(self.scanned);
                    }
                }
                _ => {}
            }
        }
        None
    }

    async fn next_value(&mut self) -> Result<Option<serde_json::Value>, Status> {
        loop {
            if self.scanned == 0 {
                let start = self
                    .buf
                    .iter()
                    .position(|b| !b.is_ascii_whitespace())
                    .unwrap_or(self.buf.len());
                self.buf.drain(..start);
            }
            // A value that is not an object or an array (never a message) is parsed, and
            // refused, once the body ends.
            let structured = matches!(self.buf.first(), Some(b'{' | b'['));
            let end = if structured {
                self.complete_len()
            } else if self.ended && !self.buf.is_empty() {
                Some(self.buf.len())
            } else {
                None
            };
            if let Some(end) = end {
                let parsed = serde_json::from_slice(&self.buf[..end]);
                self.buf.drain(..end);
                self.scanned = 0;
                self.depth = 0;
                return parsed
                    .map(Some)
                    .map_err(|e| Status::invalid_argument(e.to_string()));
            }
            if self.ended {
                return match self.buf.is_empty() {
                    true => Ok(None),
                    false => Err(Status::invalid_argument("unexpected EOF")),
                };
            }
            if self.buf.len() > self.max {
                return Err(Status::new(
                    Code::ResourceExhausted,
                    format!(
                        "gateway: request body larger than max ({} vs. {})",
                        self.buf.len(),
                        self.max
                    ),
                ));
            }
            match self.body.frame().await {
                None => self.ended = true,
                Some(Err(e)) => {
                    return Err(Status::invalid_argument(format!(
                        "reading the request body: {e}"
                    )));
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn every_route_names_a_method_of_etcds_protos() {
        for &(path, service, method) in ROUTES {
            let m = json::method(service, method).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(m.name(), method);
        }
    }

    #[test]
    fn streams_are_the_streaming_methods() {
        let streaming: Vec<&str> = ROUTES
            .iter()
            .filter(|(_, s, m)| {
                let m = json::method(s, m).unwrap();
                m.is_client_streaming() || m.is_server_streaming()
            })
            .map(|(p, _, _)| *p)
            .collect();
        assert_eq!(
            streaming,
            [
                "watch",
                "lease/keepalive",
                "maintenance/snapshot",
                "election/observe"
            ]
        );
    }

    fn body_of(chunks: &[&'static str]) -> Body {
        let chunks: Vec<Result<Bytes, Infallible>> = chunks
            .iter()
            .map(|c| Ok(Bytes::from_static(c.as_bytes())))
            .collect();
        Body::from_stream(tokio_stream::iter(chunks))
    }

    async fn values(chunks: &[&'static str], max: usize) -> Result<Vec<String>, Status> {
        let mut body = JsonBody::new(body_of(chunks), max);
        let mut out = Vec::new();
        while let Some(v) = body.next_value().await? {
            out.push(v.to_string());
        }
        Ok(out)
    }

    #[tokio::test]
    async fn the_body_is_read_as_successive_values_split_anywhere() {
        let got = values(&["{\"a\":", "1} {\"b\"", ":2}\n\n{}", "  "], 1024)
            .await
            .unwrap();
        assert_eq!(got, [r#"{"a":1}"#, r#"{"b":2}"#, "{}"]);
        // Braces and quotes inside strings do not end a value.
        let got = values(&[r#"{"k":"}\"{"#, r#""} [1]"#], 1024).await.unwrap();
        assert_eq!(got, [r#"{"k":"}\"{"}"#, "[1]"]);
        assert!(values(&[""], 1024).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn malformed_and_oversized_bodies_are_refused() {
        let bad = values(&["{\"a\":1} {nope"], 1024).await.unwrap_err();
        assert_eq!(bad.code(), Code::InvalidArgument);
        let truncated = values(&["{\"a\":"], 1024).await.unwrap_err();
        assert_eq!(truncated.code(), Code::InvalidArgument);
        let big = values(
            &["{\"a\":\"", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "\"}"],
            16,
        )
        .await
        .unwrap_err();
        assert_eq!(big.code(), Code::ResourceExhausted);
    }

    #[test]
    fn metadata_passes_the_token_and_grpc_metadata_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "token".parse().unwrap());
        headers.insert("grpc-metadata-hasleader", "true".parse().unwrap());
        headers.insert("content-type", "application/json".parse().unwrap());
        let md = metadata(&headers);
        assert_eq!(md["authorization"], "token");
        assert_eq!(md["hasleader"], "true");
        assert!(md.get("content-type").is_none());
    }
}
