//! Never plaintext behind an https URL: the real binary refuses to start when asked to listen
//! on an https client or peer URL without a certificate, names the flags to set, and serves
//! nothing meanwhile.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, wait_output};

fn ferrocd(args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_ferrocd"))
        .args(["--data-dir", dir.path().join("data").to_str().unwrap()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_output(child, Duration::from_secs(20))
}

#[test]
fn an_https_client_url_without_a_certificate_is_a_start_up_error() {
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let out = ferrocd(&[
        "--listen-client-urls",
        &url,
        "--advertise-client-urls",
        &url,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "TLS key/cert (--cert-file, --key-file) must be provided for client url {url} with HTTPS scheme"
        )),
        "{stderr}"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing may listen"
    );
}

#[test]
fn an_https_peer_url_without_a_certificate_is_a_start_up_error() {
    let client = free_port();
    let peer = free_port();
    let peer_url = format!("https://127.0.0.1:{peer}");
    let client_url = format!("http://127.0.0.1:{client}");
    let out = ferrocd(&[
        "--listen-client-urls",
        &client_url,
        "--advertise-client-urls",
        &client_url,
        "--listen-peer-urls",
        &peer_url,
        "--initial-advertise-peer-urls",
        &peer_url,
        "--initial-cluster",
        &format!("default={peer_url}"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for peer url"
        ),
        "{stderr}"
    );
    assert!(TcpStream::connect(("127.0.0.1", peer)).is_err());
    assert!(TcpStream::connect(("127.0.0.1", client)).is_err());
}
