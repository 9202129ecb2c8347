//! etcd's answer to a request larger than gRPC's receive limit.
//!
//! etcd's gRPC server (grpc-go) refuses a request message over `--max-request-bytes` plus
//! 512 KiB with `ResourceExhausted` and `grpc: received message larger than max (N vs. M)`;
//! tonic refuses it with `OutOfRange` and a message of its own. Clients match on etcd's code
//! (and people on its message), so the refusal is rewritten into etcd's on the way out.

use tonic::codegen::http::{HeaderValue, Response};

/// tonic's message for a request over the decoding limit, up to its numbers.
const TONIC_TOO_LARGE: &str = "Error, decoded message length too large: found ";

/// Rewrites tonic's over-the-limit refusal of a request into etcd's; other responses pass.
pub fn etcd_too_large<B>(mut resp: Response<B>) -> Response<B> {
    let headers = resp.headers_mut();
    let out_of_range = headers
        .get("grpc-status")
        .is_some_and(|s| s.as_bytes() == b"11");
    if !out_of_range {
        return resp;
    }
    let Some(message) = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .and_then(etcd_message)
    else {
        return resp;
    };
    if let Ok(message) = HeaderValue::from_str(&message) {
        headers.insert("grpc-status", HeaderValue::from_static("8"));
        headers.insert("grpc-message", message);
    }
    resp
}

/// etcd's message for tonic's (percent-encoded) `grpc-message`, if it is the size refusal.
fn etcd_message(tonic: &str) -> Option<String> {
    let decoded = tonic
        .replace("%20", " ")
        .replace("%3A", ":")
        .replace("%2C", ",");
    let rest = decoded.strip_prefix(TONIC_TOO_LARGE)?;
    let numbers: Vec<u64> = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    match numbers[..] {
        [found, limit] => Some(format!(
            "grpc: received message larger than max ({found} vs. {limit})"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn response(status: &'static str, message: &'static str) -> Response<()> {
        let mut r = Response::new(());
        r.headers_mut()
            .insert("grpc-status", HeaderValue::from_static(status));
        r.headers_mut()
            .insert("grpc-message", HeaderValue::from_static(message));
        r
    }

    #[test]
    fn tonics_size_refusal_becomes_etcds() {
        let r = etcd_too_large(response(
            "11",
            "Error, decoded message length too large: found 2187274 bytes, the limit is: 2097152 bytes",
        ));
        assert_eq!(r.headers()["grpc-status"], "8");
        assert_eq!(
            r.headers()["grpc-message"],
            "grpc: received message larger than max (2187274 vs. 2097152)"
        );
        let encoded = etcd_too_large(response(
            "11",
            "Error,%20decoded%20message%20length%20too%20large:%20found%2010%20bytes,%20the%20limit%20is:%205%20bytes",
        ));
        assert_eq!(encoded.headers()["grpc-status"], "8");
    }

    #[test]
    fn other_responses_pass_unchanged() {
        // etcd's own OutOfRange (compacted revision) keeps its code and message.
        let compacted = etcd_too_large(response(
            "11",
            "etcdserver: mvcc: required revision has been compacted",
        ));
        assert_eq!(compacted.headers()["grpc-status"], "11");
        let ok = etcd_too_large(Response::new(()));
        assert!(ok.headers().get("grpc-status").is_none());
    }
}
