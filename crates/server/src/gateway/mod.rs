//! etcd's gRPC gateway: the v3 API as JSON over HTTP, under `/v3/` (and the deprecated
//! `/v3beta/`), on the client listeners, as etcd 3.4 serves it with grpc-gateway.
//!
//! Each path (`/v3/kv/range`, from the `google.api.http` annotations of etcd's protos) maps to
//! one gRPC method. A request body is the JSON form of the request message ([`json`]); it is
//! sent to this server's own gRPC router ([`grpc`]), so that every gRPC rule, limit and metric
//! applies unchanged, and the answer comes back as JSON, or as grpc-gateway's error body
//! ([`error`]). Streams (watch, lease keep-alive, snapshot, election observe) read successive
//! JSON objects from the body and answer one `{"result":…}` line per message.

mod body;
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
use prost_reflect::{MessageDescriptor, MethodDescriptor};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

pub use error::http_status;
pub use json::JsonError;

/// The gateway's paths under `/v3/`, and the gRPC method of each (etcd 3.4's annotations).
/// `maintenance/hash` is `Hash`: etcd annotates both `Hash` and `HashKV` with it, and
/// grpc-gateway v1 serves the first one registered.
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
    ("maintenance/hash", "etcdserverpb.Maintenance", "Hash"),
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
const JSON_EXPANSION: usize = 2;

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
/// `Authorization` header (etcd's auth token) and `Grpc-Metadata-*` without the prefix, except
/// the names gRPC reserves for itself (grpc-go drops those too).
fn metadata(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        let name = name.as_str();
        if name == "authorization" {
            out.insert(axum::http::header::AUTHORIZATION, value.clone());
        } else if let Some(rest) = name.strip_prefix("grpc-metadata-")
            && !is_reserved(rest)
            && let Ok(key) = HeaderName::from_bytes(rest.as_bytes())
        {
            out.append(key, value.clone());
        }
    }
    out
}

/// grpc-go's reserved metadata names (`isReservedHeader`), and HTTP's own.
fn is_reserved(name: &str) -> bool {
    name.starts_with("grpc-")
        || matches!(
            name,
            "content-type" | "user-agent" | "te" | "host" | "content-length" | "connection"
        )
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
    let (parts, body) = request.into_parts();
    let mut body = body::JsonBody::new(body, gateway.max_json);
    // A stream's call (and its stream) starts before its first request is read; a unary call
    // starts once its body is read, so a slow upload holds no stream.
    let mut permit = None;
    if route.client_streaming {
        permit = Some(match Arc::clone(&gateway.streams).acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => return error::unary(&Status::unavailable("gateway: shutting down")),
        });
    }
    // The first request message is read before the call, as grpc-gateway does: a body that
    // is not one is refused, with InvalidArgument for a unary call and, as grpc-gateway
    // passes the decoder's error on unwrapped for a stream, Unknown for a stream. An empty
    // body is the empty message.
    let first = match next_message(&mut body, &route.input).await {
        Ok(first) => first,
        Err(status) if route.client_streaming && status.code() == Code::InvalidArgument => {
            return error::unary(&Status::new(Code::Unknown, status.message()));
        }
        Err(status) => return error::unary(&status),
    };
    let permit = match permit {
        Some(permit) => permit,
        None => match Arc::clone(&gateway.streams).acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => return error::unary(&Status::unavailable("gateway: shutting down")),
        },
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
                    while let Ok(Some(message)) = next_message(&mut body, &input).await {
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

/// The next request message of `body` (protobuf bytes), `None` at its end.
async fn next_message(
    body: &mut body::JsonBody,
    input: &MessageDescriptor,
) -> Result<Option<Vec<u8>>, Status> {
    match body.next_value().await? {
        Some(json) => json::decode_request(input, &json)
            .map(Some)
            .map_err(|e| Status::invalid_argument(e.to_string())),
        None => Ok(None),
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

    #[test]
    fn metadata_passes_the_token_and_grpc_metadata_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "token".parse().unwrap());
        headers.insert("grpc-metadata-hasleader", "true".parse().unwrap());
        headers.insert("grpc-metadata-grpc-timeout", "1S".parse().unwrap());
        headers.insert("grpc-metadata-content-type", "text/plain".parse().unwrap());
        headers.insert("content-type", "application/json".parse().unwrap());
        let md = metadata(&headers);
        assert_eq!(md["authorization"], "token");
        assert_eq!(md["hasleader"], "true");
        assert!(md.get("content-type").is_none());
        assert!(md.get("grpc-timeout").is_none());
    }
}
