//! grpc-gateway's (v1) answers to a failed call: the HTTP status its `HTTPStatusFromCode` gives
//! a gRPC code, and its JSON bodies, `{"error":…,"message":…,"code":…}` for a unary call and
//! `{"error":{"grpc_code":…,"http_code":…,"message":…,"http_status":…}}` inside a stream.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Serialize;
use tonic::{Code, Status};

/// grpc-gateway's `HTTPStatusFromCode`.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// grpc-gateway's `errorBody` (marshaled by encoding/json: this field order).
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
    code: i32,
}

/// grpc-gateway's `StreamError`, as jsonpb writes it (zero fields left out).
#[derive(Serialize)]
struct StreamError<'a> {
    #[serde(skip_serializing_if = "is_zero")]
    grpc_code: i32,
    #[serde(skip_serializing_if = "is_zero")]
    http_code: i32,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    http_status: &'a str,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(n: &i32) -> bool {
    *n == 0
}

#[derive(Serialize)]
struct StreamChunk<'a> {
    error: StreamError<'a>,
}

/// A JSON response with `status`.
pub fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The answer to a unary call that failed with `status`.
pub fn unary(status: &Status) -> Response<Body> {
    let body = ErrorBody {
        error: status.message(),
        message: status.message(),
        code: status.code() as i32,
    };
    json_response(
        http_status(status.code()),
        serde_json::to_vec(&body).unwrap_or_default(),
    )
}

/// The chunk that ends a stream that failed with `status` (no delimiter follows it).
pub fn stream_chunk(status: &Status) -> Vec<u8> {
    let http = http_status(status.code());
    let chunk = StreamChunk {
        error: StreamError {
            grpc_code: status.code() as i32,
            http_code: i32::from(http.as_u16()),
            message: status.message(),
            http_status: http.canonical_reason().unwrap_or(""),
        },
    };
    serde_json::to_vec(&chunk).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn unary_errors_are_grpc_gateways_body() {
        // etcd's e2e test expects exactly this for an election call without a leader.
        let status = Status::new(Code::Unknown, "\"leader\" field must be provided");
        let response = unary(&status);
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody {
            error: status.message(),
            message: status.message(),
            code: 2,
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"error":"\"leader\" field must be provided","message":"\"leader\" field must be provided","code":2}"#
        );
    }

    #[test]
    fn stream_errors_name_both_codes() {
        let chunk = stream_chunk(&Status::new(Code::InvalidArgument, "bad"));
        assert_eq!(
            String::from_utf8(chunk).unwrap(),
            r#"{"error":{"grpc_code":3,"http_code":400,"message":"bad","http_status":"Bad Request"}}"#
        );
    }

    #[test]
    fn codes_map_as_grpc_gateway_maps_them() {
        assert_eq!(
            http_status(Code::ResourceExhausted),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            http_status(Code::FailedPrecondition),
            StatusCode::PRECONDITION_FAILED
        );
        assert_eq!(
            http_status(Code::Unavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(http_status(Code::OutOfRange), StatusCode::BAD_REQUEST);
    }
}
