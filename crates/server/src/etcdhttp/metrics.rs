//! `/metrics`: the member's metrics ([`node::metrics::Metrics`]) and the server's own (gRPC
//! calls, health checks, versions, the process) in Prometheus' text format.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::services::{API_VERSION, Ctx};

/// The server's metrics, in a registry of their own (one per served member).
#[derive(Clone, Debug)]
pub struct ServerMetrics {
    registry: Registry,
    /// `grpc_server_started_total{grpc_type,grpc_service,grpc_method}`.
    pub grpc_started: IntCounterVec,
    /// `grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}`.
    pub grpc_handled: IntCounterVec,
    /// `etcd_server_health_success`.
    pub health_success: IntCounter,
    /// `etcd_server_health_failures`.
    pub health_failures: IntCounter,
}

impl ServerMetrics {
    /// A fresh set in a new registry, with the process collector (memory, CPU, file
    /// descriptors) and the version gauges etcd reports.
    pub fn new() -> Result<ServerMetrics, prometheus::Error> {
        let registry = Registry::new();
        let grpc_started = IntCounterVec::new(
            Opts::new(
                "grpc_server_started_total",
                "Total number of RPCs started on the server.",
            ),
            &["grpc_type", "grpc_service", "grpc_method"],
        )?;
        registry.register(Box::new(grpc_started.clone()))?;
        let grpc_handled = IntCounterVec::new(
            Opts::new(
                "grpc_server_handled_total",
                "Total number of RPCs completed on the server, regardless of success or failure.",
            ),
            &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
        )?;
        registry.register(Box::new(grpc_handled.clone()))?;
        let health_success = IntCounter::new(
            "etcd_server_health_success",
            "The total number of successful health checks",
        )?;
        registry.register(Box::new(health_success.clone()))?;
        let health_failures = IntCounter::new(
            "etcd_server_health_failures",
            "The total number of failed health checks",
        )?;
        registry.register(Box::new(health_failures.clone()))?;
        let server_version = IntGaugeVec::new(
            Opts::new(
                "etcd_server_version",
                "Which version is running. 1 for 'server_version' label with current version.",
            ),
            &["server_version"],
        )?;
        server_version.with_label_values(&[API_VERSION]).set(1);
        registry.register(Box::new(server_version))?;
        let cluster_version = IntGaugeVec::new(
            Opts::new(
                "etcd_cluster_version",
                "Which version is running. 1 for 'cluster_version' label with current cluster version",
            ),
            &["cluster_version"],
        )?;
        cluster_version
            .with_label_values(&[&super::cluster_version(API_VERSION)])
            .set(1);
        registry.register(Box::new(cluster_version))?;
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(ServerMetrics {
            registry,
            grpc_started,
            grpc_handled,
            health_success,
            health_failures,
        })
    }

    /// The registry of the server's metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// Every metric of the member and the server, in Prometheus' text format.
pub fn render(ctx: &Ctx) -> Result<(String, Vec<u8>), prometheus::Error> {
    ctx.node.refresh_metrics();
    let mut families = ctx.node.metrics().registry().gather();
    families.extend(ctx.metrics.registry().gather());
    families.sort_by(|a, b| a.name().cmp(b.name()));
    let encoder = TextEncoder::new();
    let mut out = Vec::with_capacity(16 * 1024);
    encoder.encode(&families, &mut out)?;
    Ok((encoder.format_type().to_owned(), out))
}

pub(super) async fn serve(State(ctx): State<Ctx>, method: Method) -> Response<Body> {
    if method != Method::GET {
        return super::method_not_allowed("GET");
    }
    match render(&ctx) {
        Ok((content_type, body)) => {
            let mut response = Response::new(Body::from(body));
            if let Ok(value) = HeaderValue::from_str(&content_type) {
                response.headers_mut().insert(header::CONTENT_TYPE, value);
            }
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the metrics");
            super::go_http_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
        }
    }
}
