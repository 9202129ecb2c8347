//! The client port's HTTP side, served on the same listeners as gRPC (etcd multiplexes the two
//! by protocol): `/health`, `/version` and `/metrics`, with etcd's paths, bodies and status
//! codes (etcd's `etcdserver/api/etcdhttp`).

mod health;
mod metrics;

use axum::Router;
use axum::routing::any;

use crate::services::Ctx;

pub use health::{HealthCheck, check_health};
pub use metrics::ServerMetrics;

/// etcd's path of the health check.
pub const PATH_HEALTH: &str = "/health";
/// etcd's path of the Prometheus metrics.
pub const PATH_METRICS: &str = "/metrics";
/// etcd's path of the version document.
pub const PATH_VERSION: &str = "/version";

/// The routes every client listener serves beside gRPC.
pub fn router(ctx: &Ctx) -> Router {
    Router::new()
        .merge(metrics_router(ctx))
        .route(PATH_VERSION, any(version::serve))
}

/// `/health` and `/metrics` alone: what a `--listen-metrics-urls` listener serves.
pub fn metrics_router(ctx: &Ctx) -> Router {
    Router::new()
        .route(PATH_HEALTH, any(health::serve).with_state(ctx.clone()))
        .route(PATH_METRICS, any(metrics::serve).with_state(ctx.clone()))
}

/// Go's `http.Error`: the message and a newline, as plain text, with `status`.
pub(crate) fn go_http_error(
    status: axum::http::StatusCode,
    message: &str,
) -> axum::response::Response<axum::body::Body> {
    let mut response =
        axum::response::Response::new(axum::body::Body::from(format!("{message}\n")));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        "x-content-type-options",
        axum::http::HeaderValue::from_static("nosniff"),
    );
    response
}

/// etcd's refusal of a method a path does not serve (`allowMethod`).
fn method_not_allowed(allow: &'static str) -> axum::response::Response<axum::body::Body> {
    let mut response = go_http_error(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "Method Not Allowed",
    );
    response.headers_mut().insert(
        axum::http::header::ALLOW,
        axum::http::HeaderValue::from_static(allow),
    );
    response
}

mod version {
    //! `/version`: `{"etcdserver":"…","etcdcluster":"…"}`.

    use axum::body::Body;
    use axum::http::{HeaderValue, Method, header};
    use axum::response::Response;

    use crate::services::API_VERSION;

    /// The major.minor of a version (etcd's capability version, as in `enabled capabilities
    /// for version 3.4`); a version without a minor part as it is.
    pub fn major_minor(version: &str) -> &str {
        let mut dots = version.match_indices('.').map(|(i, _)| i);
        match (dots.next(), dots.next()) {
            (Some(_), Some(second)) => &version[..second],
            _ => version,
        }
    }

    /// The cluster version etcd derives from a server version: major.minor.0.
    pub fn cluster_version(server: &str) -> String {
        let mm = major_minor(server);
        if mm.contains('.') {
            format!("{mm}.0")
        } else {
            server.to_owned()
        }
    }

    pub(super) async fn serve(method: Method) -> Response<Body> {
        if method != Method::GET {
            return super::method_not_allowed("GET");
        }
        let body = serde_json::json!({
            "etcdserver": API_VERSION,
            "etcdcluster": cluster_version(API_VERSION),
        })
        .to_string();
        let mut response = Response::new(Body::from(body));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn cluster_version_is_major_minor_zero() {
            assert_eq!(super::cluster_version("3.6.2"), "3.6.0");
            assert_eq!(super::cluster_version("3.4.23"), "3.4.0");
            assert_eq!(super::cluster_version("odd"), "odd");
        }

        #[test]
        fn major_minor_drops_the_patch_part() {
            assert_eq!(super::major_minor("3.6.0"), "3.6");
            assert_eq!(super::major_minor("3.0.0"), "3.0");
            assert_eq!(super::major_minor("3.4"), "3.4");
            assert_eq!(super::major_minor("odd"), "odd");
        }
    }
}

pub use version::{cluster_version, major_minor};
