//! Real `curl` (Debian's package) against a member's HTTP side: one request, every wait
//! bounded, the reply's status, headers and body.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::wait_output;

/// What curl got: status, headers (lower-cased names) and body.
pub struct Reply {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

/// `curl -i` with `args` (at most 10 s); panics if curl itself fails.
pub fn curl(args: &[&str]) -> Reply {
    let child = Command::new("curl")
        .args(["-s", "-S", "-i", "--max-time", "10"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning curl (Debian package curl)");
    let out = wait_output(child, Duration::from_secs(20));
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse(&String::from_utf8(out.stdout).expect("utf-8 reply"))
}

/// A reply as `curl -i` prints it.
pub fn parse(text: &str) -> Reply {
    let (head, body) = text.split_once("\r\n\r\n").expect("headers and body");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}
