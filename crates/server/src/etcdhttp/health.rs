//! `/health`, as etcd 3.4 answers it: `{"health":"true"}` with 200 when the member has a
//! leader, no alarm is raised (but those named by `?exclude=NAME`) and a linearizable read
//! succeeds within a second; `{"health":"false"}` with 503 otherwise.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::Response;
use mvcc::RangeRequest;
use node::request::AlarmType;

use crate::services::{Context, Ctx};

/// How long the health check's read may take (etcd: one second).
const READ_TIMEOUT: Duration = Duration::from_secs(1);

/// The outcome of a health check, and why it failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HealthCheck {
    /// Healthy.
    Healthy,
    /// An alarm is raised (its etcd name).
    Alarm(&'static str),
    /// No leader is known.
    NoLeader,
    /// The linearizable read failed (why).
    ReadFailed(String),
}

/// etcd's name of an alarm (`etcdserverpb.AlarmType`).
pub fn alarm_name(alarm: AlarmType) -> &'static str {
    match alarm {
        AlarmType::NoSpace => "NOSPACE",
        AlarmType::Corrupt => "CORRUPT",
    }
}

/// The alarms `?exclude=…` names (repeatable, as in etcd).
fn excluded_alarms(uri: &Uri) -> Vec<String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.strip_prefix("exclude="))
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Runs etcd's checks in etcd's order: alarms, leader, a linearizable read.
pub async fn check_health(ctx: &Context, excluded: &[String]) -> HealthCheck {
    for (member, alarm) in ctx.node.alarms() {
        let name = alarm_name(alarm);
        if excluded.iter().any(|e| e == name) {
            tracing::debug!(member = %format_args!("{member:x}"), alarm = name, "/health excluded alarm");
            continue;
        }
        return HealthCheck::Alarm(name);
    }
    if ctx.node.leader() == 0 {
        return HealthCheck::NoLeader;
    }
    let read = ctx.node.range(
        RangeRequest {
            key: b"health".to_vec(),
            ..RangeRequest::default()
        },
        false,
    );
    match tokio::time::timeout(READ_TIMEOUT, read).await {
        Ok(Ok(_)) => HealthCheck::Healthy,
        Ok(Err(e)) => HealthCheck::ReadFailed(e.to_string()),
        Err(_) => HealthCheck::ReadFailed("timed out".into()),
    }
}

pub(super) async fn serve(State(ctx): State<Ctx>, method: Method, uri: Uri) -> Response<Body> {
    if method != Method::GET {
        tracing::warn!(status = 405, "/health error");
        return super::method_not_allowed("GET");
    }
    let check = check_health(&ctx, &excluded_alarms(&uri)).await;
    let metrics = &ctx.metrics;
    if check == HealthCheck::Healthy {
        metrics.health_success.inc();
        // Go sniffs the JSON etcd writes without a content type as plain text.
        let mut response = Response::new(Body::from(r#"{"health":"true"}"#));
        response.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        return response;
    }
    metrics.health_failures.inc();
    tracing::warn!(reason = ?check, status = 503, "/health error");
    super::go_http_error(StatusCode::SERVICE_UNAVAILABLE, r#"{"health":"false"}"#)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use super::*;

    #[test]
    fn exclude_is_repeatable_and_ignores_other_parameters() {
        let uri: Uri = "/health?exclude=NOSPACE&x=1&exclude=CORRUPT&exclude="
            .parse()
            .expect("uri");
        assert_eq!(excluded_alarms(&uri), vec!["NOSPACE", "CORRUPT"]);
        let none: Uri = "/health".parse().expect("uri");
        assert!(excluded_alarms(&none).is_empty());
    }
}
