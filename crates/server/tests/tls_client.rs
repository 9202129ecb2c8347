//! Client TLS with real clients and real certificates made in the test: etcdctl 3.4 with
//! `--cacert/--cert/--key` on every command family, the Rust `etcd-client` crate, and `curl`
//! on the HTTP endpoints; client certificate authentication (no certificate, a foreign CA, a
//! revoked and an expired certificate, each refused during the handshake and logged); auto TLS; http and https listeners side by side;
//! certificate rotation without a restart; cipher suites.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::pki::{Ca, Issued};
use common::{Ferrocd, MemberSpec, eventually, free_port, wait_output};

const LOCAL: [&str; 2] = ["127.0.0.1", "localhost"];

/// curl with `args`: (exit code, stdout, stderr).
fn curl(args: &[&str]) -> (Option<i32>, String, String) {
    let child = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning curl");
    let out = wait_output(child, Duration::from_secs(20));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn server_flags(server: &Issued) -> Vec<&str> {
    vec![
        "--cert-file",
        server.cert_str(),
        "--key-file",
        server.key_str(),
    ]
}

#[test]
fn etcdctl_and_curl_over_tls_on_every_command_family() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "main");
    let server = ca.issue("server", "ferrocd", &LOCAL, 2);
    let cacert = format!("--cacert={}", ca.cert_str());
    let f = Ferrocd::start_tls(&server_flags(&server), &[&cacert]);
    assert!(f.endpoint().starts_with("https://"));
    assert_eq!(f.ok(&["put", "k", "v"]).trim(), "OK");
    assert_eq!(f.ok(&["get", "k"]), "k\nv\n");
    let out = f.ok_stdin(&["txn"], "value(\"k\") = \"v\"\n\nput t 1\n\nput t 2\n\n");
    assert!(out.contains("SUCCESS"), "{out}");
    let lease = f.ok(&["lease", "grant", "60"]);
    let id = lease.split_whitespace().nth(1).unwrap();
    assert!(f.ok(&["lease", "timetolive", id]).contains("remaining"));
    assert!(f.ok(&["member", "list"]).contains(&f.client_url()));
    assert!(f.ok(&["endpoint", "status"]).starts_with(&f.client_url()));
    assert!(f.ok(&["endpoint", "hashkv"]).starts_with(&f.client_url()));
    let health = f.ctl(&["endpoint", "health"]);
    assert!(
        String::from_utf8_lossy(&health.stderr).contains("is healthy"),
        "{health:?}"
    );
    assert!(f.ok(&["defrag"]).contains("Finished defragmenting"));
    let snap = dir.path().join("snap.db");
    assert!(
        f.ok(&["snapshot", "save", snap.to_str().unwrap()])
            .contains("Snapshot saved")
    );
    assert_eq!(f.ok(&["del", "k"]).trim(), "1");
    // curl on the HTTP endpoints, over the same TLS port.
    let base = f.client_url();
    let (code, body, err) = curl(&["--cacert", ca.cert_str(), &format!("{base}/health")]);
    assert_eq!(
        (code, body.as_str()),
        (Some(0), r#"{"health":"true"}"#),
        "{err}"
    );
    let (code, body, _) = curl(&["--cacert", ca.cert_str(), &format!("{base}/metrics")]);
    assert_eq!(code, Some(0));
    assert!(body.contains("etcd_server_has_leader 1"));
    // The JSON gateway too: `t` (dA==) holds "1" (MQ==) after the txn above succeeded.
    let (code, body, err) = curl(&[
        "--cacert",
        ca.cert_str(),
        "-d",
        r#"{"key":"dA=="}"#,
        &format!("{base}/v3/kv/range"),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(body.contains(r#""kvs":[{"key":"dA==""#), "{body}");
    assert!(body.contains(r#""value":"MQ==""#), "{body}");
    // No trust in the CA: refused by curl; plaintext on the TLS port: refused by ferrocd.
    let (code, _, _) = curl(&[&format!("{base}/health")]);
    assert_ne!(code, Some(0));
    let plain = base.replace("https://", "http://");
    let (code, _, _) = curl(&[&format!("{plain}/health")]);
    assert_ne!(
        code,
        Some(0),
        "plaintext must not be served on an https port"
    );
    eventually(Duration::from_secs(5), || {
        f.log_text()
            .contains("rejected a client TLS connection")
            .then_some(())
    });
}

#[test]
fn http_and_https_listeners_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "main");
    let server = ca.issue("server", "ferrocd", &LOCAL, 2);
    let cacert = format!("--cacert={}", ca.cert_str());
    let spec = MemberSpec::new_tls("default");
    let plain_port = free_port();
    // Later flags override earlier ones, as in Go: the member listens on both.
    let urls = format!("{},http://127.0.0.1:{plain_port}", spec.client_url());
    let mut extra = server_flags(&server);
    extra.extend(["--listen-client-urls", &urls]);
    let f = Ferrocd::start_single(spec, &extra, &[&cacert]);
    let out = common::etcdctl(&f.endpoint(), &[&cacert, "put", "a", "1"]);
    assert!(out.status.success(), "{out:?}");
    let out = common::etcdctl(&format!("127.0.0.1:{plain_port}"), &["get", "a"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a\n1\n");
    drop(f);
}

#[test]
fn client_cert_auth_refuses_untrusted_missing_and_revoked_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "main");
    let other = Ca::new(dir.path(), "other");
    let server = ca.issue("server", "ferrocd", &LOCAL, 2);
    let client = ca.issue("client", "root", &[], 3);
    let revoked = ca.issue("revoked", "mallory", &[], 4);
    let expired = ca.issue_expired("expired", "root", 5);
    let foreign = other.issue("client", "root", &[], 3);
    let crl = ca.crl(&[&revoked]);
    let mut extra = server_flags(&server);
    extra.extend([
        "--trusted-ca-file",
        ca.cert_str(),
        "--client-cert-auth",
        "--client-crl-file",
        crl.to_str().unwrap(),
    ]);
    let cacert = format!("--cacert={}", ca.cert_str());
    let cert = format!("--cert={}", client.cert_str());
    let key = format!("--key={}", client.key_str());
    let f = Ferrocd::start_tls(&extra, &[&cacert, &cert, &key]);
    assert_eq!(f.ok(&["put", "k", "v"]).trim(), "OK");
    let endpoint = f.endpoint();
    let refused = |flags: &[&str]| {
        let mut args = vec![cacert.as_str()];
        args.extend_from_slice(flags);
        args.extend(["--dial-timeout=2s", "get", "k"]);
        let out = common::etcdctl_timeout(&endpoint, &args, "3s");
        assert!(!out.status.success(), "{flags:?} was served: {out:?}");
        assert!(out.stdout.is_empty(), "no value may leak: {out:?}");
    };
    refused(&[]);
    refused(&[
        &format!("--cert={}", foreign.cert_str()),
        &format!("--key={}", foreign.key_str()),
    ]);
    refused(&[
        &format!("--cert={}", revoked.cert_str()),
        &format!("--key={}", revoked.key_str()),
    ]);
    refused(&[
        &format!("--cert={}", expired.cert_str()),
        &format!("--key={}", expired.key_str()),
    ]);
    let log = eventually(Duration::from_secs(5), || {
        let log = f.log_text();
        (log.matches("rejected a client TLS connection").count() >= 4).then_some(log)
    });
    let lower = log.to_lowercase();
    for why in ["issuer", "revoked", "expired"] {
        assert!(lower.contains(why), "{why} not logged:\n{log}");
    }
    assert!(log.contains("rejected a client certificate"), "{log}");
    // curl likewise: without a certificate, refused; with one, served.
    let base = f.client_url();
    let (code, _, _) = curl(&["--cacert", ca.cert_str(), &format!("{base}/health")]);
    assert_ne!(code, Some(0));
    let (code, body, err) = curl(&[
        "--cacert",
        ca.cert_str(),
        "--cert",
        client.cert_str(),
        "--key",
        client.key_str(),
        &format!("{base}/health"),
    ]);
    assert_eq!(
        (code, body.as_str()),
        (Some(0), r#"{"health":"true"}"#),
        "{err}"
    );
}

#[test]
fn auto_tls_makes_a_self_signed_certificate_once() {
    let insecure = ["--insecure-transport=false", "--insecure-skip-tls-verify"];
    let mut f = Ferrocd::start_tls(&["--auto-tls"], &insecure);
    assert_eq!(f.ok(&["put", "k", "v"]).trim(), "OK");
    let cert = f.data_dir.join("fixtures/client/cert.pem");
    let first = std::fs::read(&cert).expect("auto TLS writes fixtures/client/cert.pem");
    let (code, body, _) = curl(&["-k", &format!("{}/health", f.client_url())]);
    assert_eq!((code, body.as_str()), (Some(0), r#"{"health":"true"}"#));
    f.terminate(Duration::from_secs(10));
    f.restart();
    f.wait_ready(Duration::from_secs(30));
    assert_eq!(std::fs::read(&cert).unwrap(), first, "reused on restart");
    assert_eq!(f.ok(&["get", "k"]), "k\nv\n");
}

/// The subject curl reports for the server's certificate.
fn served_subject(base: &str, ca: &Ca) -> String {
    let (code, _, err) = curl(&["-v", "--cacert", ca.cert_str(), &format!("{base}/health")]);
    assert_eq!(code, Some(0), "{err}");
    err.lines()
        .find_map(|l| l.split_once("subject:").map(|(_, s)| s.trim().to_owned()))
        .unwrap_or_else(|| panic!("no subject in curl -v output:\n{err}"))
}

#[test]
fn rotated_certificate_files_serve_new_connections_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "main");
    let first = ca.issue("server", "first", &LOCAL, 2);
    let cacert = format!("--cacert={}", ca.cert_str());
    // The member reads the paths below; they are rewritten in place later.
    let cert = dir.path().join("live-cert.pem");
    let key = dir.path().join("live-key.pem");
    std::fs::copy(&first.cert, &cert).unwrap();
    std::fs::copy(&first.key, &key).unwrap();
    let f = Ferrocd::start_tls(
        &[
            "--cert-file",
            cert.to_str().unwrap(),
            "--key-file",
            key.to_str().unwrap(),
        ],
        &[&cacert],
    );
    let base = f.client_url();
    assert!(served_subject(&base, &ca).contains("CN=first"));
    // A client keeps working across the rotation.
    let watcher = common::Background::start(&f.endpoint(), &[&cacert, "watch", "r"]);
    std::thread::sleep(Duration::from_millis(500));
    let second = ca.issue("server2", "second", &LOCAL, 5);
    // Key first, then certificate: each handshake reloads when either changed; a mismatched
    // pair in between keeps the previous one.
    std::fs::copy(&second.key, &key).unwrap();
    std::fs::copy(&second.cert, &cert).unwrap();
    eventually(Duration::from_secs(10), || {
        served_subject(&base, &ca)
            .contains("CN=second")
            .then_some(())
    });
    assert_eq!(f.ok(&["put", "r", "after"]).trim(), "OK");
    let out = watcher.wait(Duration::from_secs(2));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("after"),
        "the watch opened before the rotation still delivers: {out:?}"
    );
}

#[test]
fn cipher_suites_limit_what_tls_1_2_clients_may_use() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "main");
    let server = ca.issue("server", "ferrocd", &LOCAL, 2);
    let cacert = format!("--cacert={}", ca.cert_str());
    let mut extra = server_flags(&server);
    extra.extend([
        "--cipher-suites",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "--tls-max-version",
        "TLS1.2",
    ]);
    let f = Ferrocd::start_tls(&extra, &[&cacert]);
    let url = format!("{}/health", f.client_url());
    let (code, _, err) = curl(&[
        "--cacert",
        ca.cert_str(),
        "--tls-max",
        "1.2",
        "--ciphers",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        &url,
    ]);
    assert_eq!(code, Some(0), "the allowed suite: {err}");
    let (code, _, _) = curl(&[
        "--cacert",
        ca.cert_str(),
        "--tls-max",
        "1.2",
        "--ciphers",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        &url,
    ]);
    assert_ne!(code, Some(0), "a suite not in --cipher-suites is refused");
    // An unknown suite name is a start-up error naming it.
    let bad = Command::new(env!("CARGO_BIN_EXE_ferrocd"))
        .args(["--data-dir", dir.path().join("bad").to_str().unwrap()])
        .args([
            "--listen-client-urls",
            &format!("https://127.0.0.1:{}", free_port()),
            "--cert-file",
            server.cert_str(),
            "--key-file",
            server.key_str(),
            "--cipher-suites",
            "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(bad, Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("unsupported cipher suite \"TLS_RSA_WITH_3DES_EDE_CBC_SHA\""),
        "{out:?}"
    );
}

#[test]
fn the_etcd_client_crate_over_tls_with_a_client_certificate() {
    use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "main");
    let server = ca.issue("server", "ferrocd", &LOCAL, 2);
    let client = ca.issue("client", "root", &[], 3);
    let mut extra = server_flags(&server);
    extra.extend(["--trusted-ca-file", ca.cert_str(), "--client-cert-auth"]);
    let cacert = format!("--cacert={}", ca.cert_str());
    let cert = format!("--cert={}", client.cert_str());
    let key = format!("--key={}", client.key_str());
    let f = Ferrocd::start_tls(&extra, &[&cacert, &cert, &key]);
    let read = |p: &std::path::Path| std::fs::read(p).unwrap();
    let tls = TlsOptions::new()
        .domain_name("localhost")
        .ca_certificate(Certificate::from_pem(read(&ca.cert)))
        .identity(Identity::from_pem(read(&client.cert), read(&client.key)));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let t = Duration::from_secs(10);
        let mut c = tokio::time::timeout(
            t,
            Client::connect([f.client_url()], Some(ConnectOptions::new().with_tls(tls))),
        )
        .await
        .expect("connecting in time")
        .expect("connecting over TLS");
        c.put("rust", "tls", None).await.unwrap();
        let got = c.get("rust", None).await.unwrap();
        assert_eq!(got.kvs()[0].value(), b"tls");
        let mut stream = c.watch("w", None).await.unwrap();
        let created = tokio::time::timeout(t, stream.message())
            .await
            .expect("the watch is created in time")
            .unwrap()
            .expect("a created response");
        assert!(created.created());
        c.put("w", "1", None).await.unwrap();
        let event = tokio::time::timeout(t, stream.message())
            .await
            .expect("a watch event in time")
            .unwrap()
            .expect("a watch response");
        assert_eq!(event.events()[0].kv().unwrap().value(), b"1");
        // Without a client certificate: refused.
        let no_identity = TlsOptions::new()
            .domain_name("localhost")
            .ca_certificate(Certificate::from_pem(read(&ca.cert)));
        let refused = tokio::time::timeout(
            t,
            Client::connect(
                [f.client_url()],
                Some(ConnectOptions::new().with_tls(no_identity)),
            ),
        )
        .await
        .expect("an answer in time");
        match refused {
            Err(_) => {}
            Ok(mut c) => assert!(
                c.get("rust", None).await.is_err(),
                "served without a certificate"
            ),
        }
    });
}

/// Without `--cipher-suites`, TLS 1.2 clients are served with rustls' default suites (an empty
/// flag once left TLS 1.3 alone), and `--tls-max-version TLS1.2` starts.
#[test]
fn tls_1_2_is_served_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "main");
    let server = ca.issue("server", "ferrocd", &LOCAL, 2);
    let cacert = format!("--cacert={}", ca.cert_str());
    let f = Ferrocd::start_tls(&server_flags(&server), &[&cacert]);
    let health = format!("{}/health", f.client_url());
    let (code, body, err) = curl(&[
        "--tlsv1.2",
        "--tls-max",
        "1.2",
        "--cacert",
        ca.cert_str(),
        &health,
    ]);
    assert_eq!(
        (code, body.as_str()),
        (Some(0), r#"{"health":"true"}"#),
        "{err}"
    );
    let mut flags = server_flags(&server);
    flags.extend(["--tls-max-version", "TLS1.2"]);
    let only_1_2 = Ferrocd::start_tls(&flags, &[&cacert]);
    let health = format!("{}/health", only_1_2.client_url());
    let (code, _, err) = curl(&["--tlsv1.3", "--cacert", ca.cert_str(), &health]);
    assert_ne!(
        code,
        Some(0),
        "TLS 1.3 refused under --tls-max-version TLS1.2: {err}"
    );
    let (code, _, err) = curl(&["--tls-max", "1.2", "--cacert", ca.cert_str(), &health]);
    assert_eq!(code, Some(0), "{err}");
}

/// As in etcd, `--trusted-ca-file` alone requires client certificates signed by that CA.
#[test]
fn a_trusted_ca_alone_requires_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "main");
    let server = ca.issue("server", "ferrocd", &LOCAL, 2);
    let client = ca.issue("client", "root", &[], 3);
    let mut flags = server_flags(&server);
    flags.extend(["--trusted-ca-file", ca.cert_str()]);
    let cacert = format!("--cacert={}", ca.cert_str());
    let cert = format!("--cert={}", client.cert_str());
    let key = format!("--key={}", client.key_str());
    let f = Ferrocd::start_tls(&flags, &[&cacert, &cert, &key]);
    assert_eq!(f.ok(&["put", "k", "v"]).trim(), "OK");
    let without = common::etcdctl_timeout(&f.endpoint(), &[&cacert, "get", "k"], "3s");
    assert!(!without.status.success(), "{without:?}");
    assert!(String::from_utf8_lossy(&without.stdout).is_empty());
    let health = format!("{}/health", f.client_url());
    let (code, _, _) = curl(&["--cacert", ca.cert_str(), &health]);
    assert_ne!(code, Some(0));
}
