//! Every endpoint form etcd accepts reaches ferrocd with every etcdctl command family:
//! `host:port`, `http://` and `unix://` (and `unixs://`, TLS on a unix socket, with curl).
//! etcdctl 3.4 (grpc-go) sends the endpoint string, scheme included, as the HTTP/2
//! `:authority` for the commands that dial endpoint by endpoint, and the patched `h2`
//! (docs/decisions/0003-h2-grpc-go-authority.md) takes it, while other malformed authorities
//! are still refused. Real processes, real etcdctl, and raw HTTP/2 frames for the refusals.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::pki::Ca;
use common::{Ferrocd, MemberSpec, etcdctl, leader, start_cluster, wait_output};

/// Runs etcdctl against `endpoint` with `flags` (TLS), asserting success; stdout and stderr
/// together.
fn ok_with(endpoint: &str, flags: &[&str], args: &[&str]) -> String {
    let all: Vec<&str> = flags.iter().chain(args).copied().collect();
    let out = etcdctl(endpoint, &all);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "etcdctl --endpoints={endpoint} {all:?} failed: {text}"
    );
    text
}

fn ok(endpoint: &str, args: &[&str]) -> String {
    ok_with(endpoint, &[], args)
}

/// Every etcdctl command family through `endpoint` of `f`, with `flags`.
fn every_command_family(f: &Ferrocd, endpoint: &str, flags: &[&str]) {
    let ok = |args: &[&str]| ok_with(endpoint, flags, args);
    assert_eq!(ok(&["put", "k", "v"]).trim(), "OK");
    assert_eq!(ok(&["get", "k"]), "k\nv\n");
    let txn = "value(\"k\") = \"v\"\n\nput t 1\n\n\n";
    let out = Command::new(common::ETCDCTL)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(flags)
        .args(["txn"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(txn.as_bytes())?;
            Ok(wait_output(child, Duration::from_secs(30)))
        })
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("SUCCESS"),
        "{out:?}"
    );
    let lease = ok(&["lease", "grant", "60"]);
    let id = lease.split_whitespace().nth(1).expect("lease id");
    assert!(ok(&["lease", "timetolive", id]).contains("remaining"));
    assert!(ok(&["lease", "list"]).contains(id));
    assert!(ok(&["member", "list"]).contains(&f.client_url()));
    // The commands that dial each endpoint on its own: before the h2 patch, each of these got
    // `RST_STREAM with error code: PROTOCOL_ERROR` with a scheme in the endpoint.
    let status = ok(&["endpoint", "status"]);
    assert!(status.starts_with(&format!("{endpoint}, ")), "{status}");
    let hash = ok(&["endpoint", "hashkv"]);
    assert!(hash.starts_with(&format!("{endpoint}, ")), "{hash}");
    assert!(ok(&["endpoint", "health"]).contains("is healthy"));
    assert!(ok(&["defrag"]).contains("Finished defragmenting etcd member"));
    assert!(ok(&["alarm", "list"]).is_empty());
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("snap.db");
    assert!(ok(&["snapshot", "save", snap.to_str().unwrap()]).contains("Snapshot saved"));
    assert!(ok(&["compaction", "2"]).contains("compacted revision 2"));
    assert_eq!(ok(&["del", "k"]).trim(), "1");
}

#[test]
fn every_command_family_works_with_an_http_scheme_endpoint() {
    let f = Ferrocd::start();
    let endpoint = f.client_url();
    assert!(endpoint.starts_with("http://"), "{endpoint}");
    every_command_family(&f, &endpoint, &[]);
    // And the form without a scheme still works.
    assert!(ok(&f.endpoint(), &["endpoint", "status"]).starts_with(&f.endpoint()));
}

/// `unix://path`: a client listener on a unix socket beside the TCP one, as etcd has them (the
/// socket's path is the URL's host and path); its file is removed when the member stops.
#[test]
fn every_command_family_works_over_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ferrocd.sock");
    let spec = MemberSpec::new("default");
    let listen = format!("{},unix://{}", spec.client_url(), socket.display());
    let mut f = Ferrocd::start_single(spec, &["--listen-client-urls", &listen], &[]);
    let endpoint = format!("unix://{}", socket.display());
    every_command_family(&f, &endpoint, &[]);
    f.terminate(Duration::from_secs(10));
    assert!(!socket.exists(), "the socket file outlived the member");
}

/// `https://host:port` with client certificate authentication: every command family with
/// etcdctl's `--cacert`, `--cert` and `--key`, as Kubernetes' clients connect.
#[test]
fn every_command_family_works_over_https_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "main");
    let server = ca.issue("server", "ferrocd", &["localhost", "127.0.0.1"], 2);
    let client = ca.issue("client", "root", &[], 3);
    let cacert = format!("--cacert={}", ca.cert_str());
    let cert = format!("--cert={}", client.cert_str());
    let key = format!("--key={}", client.key_str());
    let f = Ferrocd::start_tls(
        &[
            "--cert-file",
            server.cert_str(),
            "--key-file",
            server.key_str(),
            "--trusted-ca-file",
            ca.cert_str(),
            "--client-cert-auth",
        ],
        &[&cacert, &cert, &key],
    );
    let endpoint = f.client_url();
    assert!(endpoint.starts_with("https://"), "{endpoint}");
    every_command_family(&f, &endpoint, &[&cacert, &cert, &key]);
}

/// `unixs://path`: TLS over a unix socket, for clients that name a host (curl here), with
/// gRPC, the gateway and the HTTP endpoints behind it. grpc-go clients (etcdctl) send the
/// socket's path as the TLS server name, which is no host name: rustls refuses the handshake
/// (RFC 6066), and the member's log says why.
#[test]
fn tls_on_a_unix_socket_serves_clients_that_name_a_host() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "unixs");
    let server = ca.issue("server", "ferrocd", &["localhost", "127.0.0.1"], 2);
    let socket = dir.path().join("ferrocd.sock");
    let spec = MemberSpec::new("default");
    let listen = format!("{},unixs://{}", spec.client_url(), socket.display());
    let f = Ferrocd::start_single(
        spec,
        &[
            "--listen-client-urls",
            &listen,
            "--cert-file",
            server.cert_str(),
            "--key-file",
            server.key_str(),
        ],
        &[],
    );
    f.ok(&["put", "k", "v"]);
    let curl = |args: &[&str]| {
        Command::new("curl")
            .args(["-sS", "--max-time", "10", "--unix-socket"])
            .arg(&socket)
            .args(["--cacert", ca.cert_str()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running curl")
    };
    let health = curl(&["https://localhost/health"]);
    assert_eq!(
        String::from_utf8_lossy(&health.stdout),
        r#"{"health":"true"}"#,
        "{health:?}"
    );
    let range = curl(&["-d", r#"{"key":"aw=="}"#, "https://localhost/v3/kv/range"]);
    assert!(
        String::from_utf8_lossy(&range.stdout).contains(r#""value":"dg==""#),
        "{range:?}"
    );
    // Plaintext on the TLS socket is refused.
    let plain = Command::new("curl")
        .args(["-sS", "--max-time", "5", "--unix-socket"])
        .arg(&socket)
        .arg("http://localhost/health")
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&plain.stdout).contains("true"),
        "{plain:?}"
    );
    // etcdctl: refused, and the log names the cause.
    let cacert = format!("--cacert={}", ca.cert_str());
    let refused = etcdctl(
        &format!("unixs://{}", socket.display()),
        &[&cacert, "get", "k"],
    );
    assert!(!refused.status.success());
    assert!(
        f.log_text().contains("is not a host name"),
        "{}",
        f.log_text()
    );
}

#[test]
fn move_leader_works_with_http_scheme_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let specs: Vec<MemberSpec> = ["m1", "m2", "m3"]
        .iter()
        .map(|n| MemberSpec::new(n))
        .collect();
    let members = start_cluster(dir.path(), &specs, &[], &|_| Vec::new());
    let (l, _) = leader(&members);
    let target = (l + 1) % members.len();
    let status = ok(&members[target].client_url(), &["endpoint", "status"]);
    let target_id = status.split(", ").nth(1).expect("member id").to_owned();
    // etcdctl move-leader asks each endpoint for its status, then the leader to transfer.
    let endpoints = members
        .iter()
        .map(Ferrocd::client_url)
        .collect::<Vec<_>>()
        .join(",");
    let out = ok(&endpoints, &["move-leader", &target_id]);
    assert!(out.contains("Leadership transferred"), "{out}");
    let (now, _) = leader(&members);
    assert_eq!(now, target);
}

/// One HTTP/2 request with `authority` as its `:authority`, sent as raw frames with literal
/// (uncompressed) HPACK fields; what the server answered on the stream.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// A HEADERS frame: the request was taken.
    Headers,
    /// RST_STREAM with this error code (1: PROTOCOL_ERROR).
    Reset(u32),
}

fn hpack_literal(out: &mut Vec<u8>, name: &str, value: &str) {
    // Literal header field without indexing, new name (RFC 7541 6.2.2); lengths < 127.
    assert!(name.len() < 127 && value.len() < 127);
    out.push(0x00);
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    out.push(value.len() as u8);
    out.extend_from_slice(value.as_bytes());
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn request_with_authority(addr: &str, authority: &str) -> Answer {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut block = Vec::new();
    hpack_literal(&mut block, ":method", "GET");
    hpack_literal(&mut block, ":scheme", "http");
    hpack_literal(&mut block, ":path", "/version");
    hpack_literal(&mut block, ":authority", authority);
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[])); // SETTINGS
    out.extend(frame(0x1, 0x4 | 0x1, 1, &block)); // HEADERS, END_HEADERS | END_STREAM
    conn.write_all(&out).unwrap();
    for _ in 0..32 {
        let mut head = [0u8; 9];
        conn.read_exact(&mut head)
            .expect("the server closed the connection without answering the stream");
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        conn.read_exact(&mut payload).unwrap();
        match (head[3], stream) {
            (0x1, 1) => return Answer::Headers,
            (0x3, 1) => {
                return Answer::Reset(u32::from_be_bytes(payload[..4].try_into().unwrap()));
            }
            (0x7, _) => panic!("GOAWAY for authority {authority:?}"),
            (0x4, 0) if head[4] & 0x1 == 0 => {
                conn.write_all(&frame(0x4, 0x1, 0, &[])).unwrap(); // SETTINGS ACK
            }
            _ => {}
        }
    }
    panic!("no answer on stream 1 for authority {authority:?}");
}

#[test]
fn grpc_go_endpoint_authorities_are_taken_and_other_malformed_ones_refused() {
    let f = Ferrocd::start();
    let addr = f.endpoint();
    for authority in [
        addr.clone(),
        format!("http://{addr}"),
        format!("https://{addr}"),
        format!("unix://{addr}"),
        "unix:///run/etcd.sock".to_owned(),
        "/run/etcd.sock".to_owned(),
    ] {
        assert_eq!(
            request_with_authority(&addr, &authority),
            Answer::Headers,
            "{authority}"
        );
    }
    for authority in [
        "a/b",
        "ftp://host:1",
        "http://bad host",
        "http:///path",
        "extension/k8s-namespace/auth",
    ] {
        assert_eq!(
            request_with_authority(&addr, authority),
            Answer::Reset(1),
            "{authority}"
        );
    }
    // The member went on serving.
    assert!(f.ok(&["endpoint", "status"]).starts_with(&f.endpoint()));
}

/// `unixs://host:port`, the form etcd 3.4 takes for a TLS unix socket (the file `host:port` in
/// the working directory): grpc-go names the host in TLS, so every etcdctl command family
/// works over it, client certificate required.
#[test]
fn every_command_family_works_over_tls_on_a_unix_socket_in_etcds_form() {
    /// Removes the socket file even when the test fails (the member is then killed).
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "unixs");
    let server = ca.issue("server", "ferrocd", &["localhost", "127.0.0.1"], 2);
    let client = ca.issue("client", "root", &[], 3);
    let spec = MemberSpec::new("default");
    // Relative to the working directory, which ferrocd and etcdctl share with this test.
    let name = format!("localhost:{}", common::free_port());
    let _remove = Remove(std::path::PathBuf::from(&name));
    let listen = format!("{},unixs://{name}", spec.client_url());
    let cacert = format!("--cacert={}", ca.cert_str());
    let cert = format!("--cert={}", client.cert_str());
    let key = format!("--key={}", client.key_str());
    let mut f = Ferrocd::start_single(
        spec,
        &[
            "--listen-client-urls",
            &listen,
            "--cert-file",
            server.cert_str(),
            "--key-file",
            server.key_str(),
            "--trusted-ca-file",
            ca.cert_str(),
        ],
        &[],
    );
    every_command_family(&f, &format!("unixs://{name}"), &[&cacert, &cert, &key]);
    f.terminate(Duration::from_secs(10));
    assert!(
        !std::path::Path::new(&name).exists(),
        "the socket file outlived the member"
    );
}
