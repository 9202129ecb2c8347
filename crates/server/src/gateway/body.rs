//! A request body as successive JSON values (grpc-gateway reads a stream's requests with one
//! JSON decoder over the body), each handed out as its bytes.
//!
//! Values are delimited by a scan that follows strings and nesting over each byte once, and the
//! consumed prefix is dropped only once it is most of the buffer, so that reading costs time
//! linear in the body however it is split or packed (a stream's next request may arrive much
//! later than its first bytes; a body may hold a million tiny values).

use axum::body::Body;
use http_body_util::BodyExt;
use tonic::{Code, Status};

/// The body being read.
pub(super) struct JsonBody {
    body: Body,
    buf: Vec<u8>,
    /// Where the unread part of `buf` starts.
    start: usize,
    ended: bool,
    /// How much of the unread part the scan has looked at, and what it found there.
    scanned: usize,
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// The largest value, in bytes.
    max: usize,
}

impl JsonBody {
    /// Reads `body`, refusing a value larger than `max` bytes.
    pub(super) fn new(body: Body, max: usize) -> JsonBody {
        JsonBody {
            body,
            buf: Vec::new(),
            start: 0,
            ended: false,
            scanned: 0,
            depth: 0,
            in_string: false,
            escaped: false,
            max,
        }
    }

    fn unread(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// The length of the first complete object or array of the unread part, scanning only what
    /// was not scanned yet; `None` while it is incomplete.
    fn complete_len(&mut self) -> Option<usize> {
        let unread = &self.buf[self.start..];
        while self.scanned < unread.len() {
            let b = unread[self.scanned];
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

    /// Marks `n` unread bytes read; drops the read prefix once it is most of the buffer.
    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start > self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }

    /// The bytes of the next JSON value, `None` at the end of the body.
    pub(super) async fn next_value(&mut self) -> Result<Option<Vec<u8>>, Status> {
        loop {
            if self.scanned == 0 {
                let blank = self
                    .unread()
                    .iter()
                    .take_while(|b| b.is_ascii_whitespace())
                    .count();
                self.consume(blank);
            }
            // A value that is not an object or an array (never a message) is handed out, to be
            // refused by its decoding, once the body ends.
            let structured = matches!(self.unread().first(), Some(b'{' | b'['));
            let end = if structured {
                self.complete_len()
            } else if self.ended && !self.unread().is_empty() {
                Some(self.unread().len())
            } else {
                None
            };
            if let Some(end) = end {
                let value = self.unread()[..end].to_vec();
                self.consume(end);
                self.scanned = 0;
                self.depth = 0;
                return Ok(Some(value));
            }
            if self.ended {
                return match self.unread().is_empty() {
                    true => Ok(None),
                    false => Err(Status::invalid_argument("unexpected EOF")),
                };
            }
            if self.unread().len() > self.max {
                return Err(Status::new(
                    Code::ResourceExhausted,
                    format!(
                        "gateway: request body larger than max ({} vs. {})",
                        self.unread().len(),
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

    use std::convert::Infallible;

    use bytes::Bytes;

    use super::*;

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
            out.push(String::from_utf8(v).unwrap());
        }
        Ok(out)
    }

    #[tokio::test]
    async fn the_body_is_read_as_successive_values_split_anywhere() {
        let got = values(&["{\"a\":", "1} {\"b\"", ":2}\n\n{}", "  "], 1024)
            .await
            .unwrap();
        assert_eq!(got, [r#"{"a":1}"#, r#"{"b":2}"#, "{}"]);
        assert!(values(&[""], 1024).await.unwrap().is_empty());
        // Braces and quotes inside strings do not end a value.
        let got = values(&[r#"{"k":"}\"{"#, r#""} [1]"#], 1024).await.unwrap();
        assert_eq!(got, [r#"{"k":"}\"{"}"#, "[1]"]);
        // A scalar is handed out at the end, for its decoding to refuse.
        assert_eq!(values(&["5"], 1024).await.unwrap(), ["5"]);
    }

    #[tokio::test]
    async fn many_tiny_values_in_one_chunk_are_all_read() {
        let body: &'static str = Box::leak("{}".repeat(100_000).into_boxed_str());
        let got = values(&[body], 1024).await.unwrap();
        assert_eq!(got.len(), 100_000);
    }

    #[tokio::test]
    async fn truncated_and_oversized_bodies_are_refused() {
        let truncated = values(&["{\"a\":1} {nope"], 1024).await.unwrap_err();
        assert_eq!(truncated.code(), Code::InvalidArgument);
        let big = values(
            &["{\"a\":\"", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "\"}"],
            16,
        )
        .await
        .unwrap_err();
        assert_eq!(big.code(), Code::ResourceExhausted);
    }
}
