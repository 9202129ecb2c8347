//! The tonic server: etcd's services with etcd's message size limits, on every
//! `--listen-client-urls` address.

use std::future::Future;
use std::sync::Arc;

use tonic::codegen::http::Response;
use tonic::service::Routes;
use tonic::transport::Server;
use tower::util::MapResponseLayer;

use crate::etcdhttp::ServerMetrics;
use crate::grpc_metrics::GrpcMetricsLayer;
use crate::listener::ClientListener;

use crate::proto::etcdserverpb::cluster_server::ClusterServer;
use crate::proto::etcdserverpb::kv_server::KvServer;
use crate::proto::etcdserverpb::lease_server::LeaseServer;
use crate::proto::etcdserverpb::maintenance_server::MaintenanceServer;
use crate::proto::etcdserverpb::watch_server::WatchServer;
use crate::proto::v3electionpb::election_server::ElectionServer;
use crate::proto::v3lockpb::lock_server::LockServer;
use crate::services::cluster::ClusterService;
use crate::services::election::ElectionService;
use crate::services::kv::KvService;
use crate::services::lease::LeaseService;
use crate::services::lock::LockService;
use crate::services::maintenance::MaintenanceService;
use crate::services::watch::WatchService;
use crate::services::{Context, Ctx};

/// What etcd's gRPC server accepts beyond `--max-request-bytes` for the message envelope
/// (etcd's `grpcOverheadBytes`).
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// The rewrite of tonic's size refusals into etcd's (see [`crate::size_limit`]).
pub type EtcdTooLarge = fn(Response<axum::body::Body>) -> Response<axum::body::Body>;

/// Everything a client listener serves: etcd's gRPC services, decoding at most
/// `--max-request-bytes` plus etcd's overhead, the HTTP endpoints ([`crate::etcdhttp`]) and
/// the JSON gateway ([`crate::gateway`]), told apart by path (gRPC paths are
/// `/package.Service/Method`). Every gRPC call, the gateway's included, is counted
/// ([`crate::grpc_metrics`]) after tonic's size refusals became etcd's.
pub fn routes(ctx: &Ctx) -> axum::Router {
    let max = ctx.max_request_bytes.saturating_add(GRPC_OVERHEAD_BYTES);
    let mut grpc = Routes::builder();
    grpc.add_service(KvServer::new(KvService::new(ctx.clone())).max_decoding_message_size(max))
        .add_service(
            WatchServer::new(WatchService::new(ctx.clone())).max_decoding_message_size(max),
        )
        .add_service(
            LeaseServer::new(LeaseService::new(ctx.clone())).max_decoding_message_size(max),
        )
        .add_service(
            ClusterServer::new(ClusterService::new(ctx.clone())).max_decoding_message_size(max),
        )
        .add_service(
            MaintenanceServer::new(MaintenanceService::new(ctx.clone()))
                .max_decoding_message_size(max),
        )
        .add_service(LockServer::new(LockService::new(ctx.clone())).max_decoding_message_size(max))
        .add_service(
            ElectionServer::new(ElectionService::new(ctx.clone())).max_decoding_message_size(max),
        )
        // grpc.health.v1, as etcd registers it: the server as a whole ("") is SERVING while it
        // serves (load balancers and Kubernetes gRPC probes ask it).
        .add_service(tonic_health::server::health_reporter().1);
    let grpc = grpc
        .routes()
        .into_axum_router()
        .layer(MapResponseLayer::new(
            crate::size_limit::etcd_too_large as EtcdTooLarge,
        ))
        .layer(GrpcMetricsLayer::new(Arc::clone(&ctx.metrics)));
    grpc.clone()
        .merge(crate::etcdhttp::router(ctx))
        .merge(crate::gateway::router(
            grpc,
            max,
            ctx.max_concurrent_streams,
        ))
}

/// What a listener serves: everything (a client URL), or `/health` and `/metrics` alone (a
/// `--listen-metrics-urls` URL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serves {
    /// etcd's gRPC services and every HTTP endpoint.
    Client,
    /// `/health` and `/metrics` only.
    Metrics,
}

/// Serves `what` on `listener` until `shutdown` completes (then stops accepting and lets open
/// calls finish): over TLS with `tls` (an https URL), in plaintext without. HTTP/1.1 is
/// accepted beside HTTP/2, for `curl` and Prometheus.
pub async fn serve(
    ctx: Ctx,
    what: Serves,
    listener: ClientListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let router = match what {
        Serves::Client => routes(&ctx),
        Serves::Metrics => crate::etcdhttp::metrics_router(&ctx),
    };
    let server = Server::builder()
        .tcp_nodelay(true)
        .accept_http1(true)
        .max_concurrent_streams(Some(ctx.max_concurrent_streams));
    match (tls, listener) {
        (Some(config), listener) => {
            let incoming = crate::tls::tls_incoming(listener, config);
            server
                .serve_with_incoming_shutdown(router, incoming, shutdown)
                .await
        }
        (None, ClientListener::Tcp(listener)) => {
            // Requests are small and answered at once: without TCP_NODELAY each answer waits
            // for the client's delayed ACK (~40 ms), which caps one client at ~25 requests a
            // second.
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            server
                .serve_with_incoming_shutdown(router, incoming, shutdown)
                .await
        }
        (None, ClientListener::Unix(listener, _file)) => {
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
            server
                .serve_with_incoming_shutdown(router, incoming, shutdown)
                .await
        }
    }
}

/// The shared context for a node and its configuration; `leader_tls` dials other members'
/// https client URLs ([`crate::tls::leader_dialing`]).
pub fn context(
    node: node::Node,
    config: &crate::Config,
    leader_tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Ctx, prometheus::Error> {
    let metrics = ServerMetrics::new()?;
    let quota = if config.quota_backend_bytes == 0 {
        2 * 1024 * 1024 * 1024
    } else {
        config.quota_backend_bytes
    };
    Ok(Arc::new(Context {
        node,
        name: config.name.clone(),
        max_txn_ops: config.max_txn_ops as usize,
        max_request_bytes: config.max_request_bytes as usize,
        max_concurrent_streams: config.max_concurrent_streams,
        quota_backend_bytes: i64::try_from(quota).unwrap_or(i64::MAX),
        progress_notify_interval: std::time::Duration::from_secs(600),
        metrics: Arc::new(metrics),
        leader_tls,
    }))
}
