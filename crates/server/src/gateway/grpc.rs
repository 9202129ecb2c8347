//! The gateway's gRPC side: a call into this server's own gRPC router, in process, as etcd's
//! gateway is a gRPC client of its own server. Messages travel in gRPC's length-prefixed
//! framing; the status comes in the trailers (or alone, in the headers).

use axum::body::Body;
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use tonic::codegen::http::{HeaderMap, HeaderValue, Method, Request, Version, header};
use tonic::{Code, Status};
use tower::ServiceExt;

/// The length prefix of a gRPC message: a compression flag and a big-endian length.
const PREFIX: usize = 5;

/// `message` framed as one uncompressed gRPC message.
pub fn frame(message: &[u8]) -> Bytes {
    let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
    let mut out = BytesMut::with_capacity(PREFIX + message.len());
    out.extend_from_slice(&[0]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(message);
    out.freeze()
}

/// Calls `path` (`/package.Service/Method`) on `grpc` with `body` (framed messages),
/// `metadata` as request headers and `extensions` (the client connection's, e.g. its TLS
/// identity) as the request's.
pub async fn call(
    grpc: &axum::Router,
    path: &str,
    metadata: HeaderMap,
    extensions: tonic::codegen::http::Extensions,
    body: Body,
) -> Reply {
    let mut request = Request::new(body);
    *request.method_mut() = Method::POST;
    *request.version_mut() = Version::HTTP_2;
    match path.parse() {
        Ok(uri) => *request.uri_mut() = uri,
        Err(e) => return Reply::failed(Status::internal(format!("gateway: bad path {path}: {e}"))),
    }
    *request.extensions_mut() = extensions;
    let headers = request.headers_mut();
    headers.extend(metadata);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    let response = match grpc.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let (parts, body) = response.into_parts();
    // A trailers-only answer carries its status in the headers.
    let status = Status::from_header_map(&parts.headers);
    if status.is_none() && !parts.status.is_success() {
        return Reply::failed(Status::internal(format!(
            "gateway: the gRPC side answered HTTP {}",
            parts.status
        )));
    }
    Reply {
        body,
        buf: BytesMut::new(),
        status,
    }
}

/// A gRPC response being read: its messages, then its status.
pub struct Reply {
    body: Body,
    buf: BytesMut,
    /// The final status, once known.
    status: Option<Status>,
}

impl Reply {
    fn failed(status: Status) -> Reply {
        Reply {
            body: Body::empty(),
            buf: BytesMut::new(),
            status: Some(status),
        }
    }

    /// The next message; `Ok(None)` once the call ended well, or its error status.
    pub async fn next(&mut self) -> Result<Option<Bytes>, Status> {
        loop {
            if self.buf.len() >= PREFIX {
                if self.buf[0] != 0 {
                    return Err(Status::internal("gateway: a compressed gRPC message"));
                }
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                if self.buf.len() - PREFIX >= len {
                    self.buf.advance(PREFIX);
                    return Ok(Some(self.buf.split_to(len).freeze()));
                }
            }
            if let Some(status) = self.status.take() {
                if !self.buf.is_empty() {
                    return Err(Status::internal("gateway: a truncated gRPC message"));
                }
                // Keep it, so that reading again gives the same end.
                self.status = Some(status.clone());
                return match status.code() {
                    Code::Ok => Ok(None),
                    _ => Err(status),
                };
            }
            match self.body.frame().await {
                None => {
                    self.status = Some(Status::internal(
                        "gateway: the gRPC response ended without a status",
                    ));
                }
                Some(Err(e)) => {
                    self.status = Some(Status::internal(format!(
                        "gateway: reading the gRPC response: {e}"
                    )));
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.buf.extend_from_slice(&data),
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            self.status =
                                Some(Status::from_header_map(&trailers).unwrap_or_else(|| {
                                    Status::internal("gateway: gRPC trailers without a status")
                                }));
                        }
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn frames_carry_a_zero_flag_and_the_length() {
        assert_eq!(&frame(b"abc")[..], &[0, 0, 0, 0, 3, b'a', b'b', b'c']);
        assert_eq!(&frame(b"")[..], &[0, 0, 0, 0, 0]);
    }
}
