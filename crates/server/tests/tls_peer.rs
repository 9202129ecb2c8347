//! Peer TLS on real 3-process clusters with certificates made in the test: members replicate
//! over mutual TLS, a member killed and restarted catches up, a member added joins over TLS
//! (the members query and the log or snapshot included), and a member whose certificate comes
//! from another CA is refused by the others (logged) and never receives data. Auto TLS too.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use common::pki::{Ca, Issued};
use common::{Ferrocd, MemberSpec, eventually, initial_cluster, leader, start_cluster};

fn peer_flags(ca: &Ca, cert: &Issued) -> Vec<String> {
    [
        "--peer-cert-file",
        cert.cert_str(),
        "--peer-key-file",
        cert.key_str(),
        "--peer-trusted-ca-file",
        ca.cert_str(),
        "--peer-client-cert-auth",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn serializable(f: &Ferrocd, key: &str) -> Option<String> {
    let out = f.ctl(&["get", key, "--consistency=s", "--print-value-only"]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[test]
fn members_replicate_restart_and_grow_over_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "peers");
    let cert = ca.issue("peer", "member", &["127.0.0.1", "localhost"], 2);
    let flags = peer_flags(&ca, &cert);
    let specs: Vec<MemberSpec> = ["a", "b", "c"]
        .iter()
        .map(|n| MemberSpec::new_peer_tls(n))
        .collect();
    let mut members = start_cluster(dir.path(), &specs, &as_strs(&flags), &|_| Vec::new());
    for i in 0..20 {
        members[0].ok(&["put", &format!("k{i}"), &format!("v{i}")]);
    }
    eventually(Duration::from_secs(20), || {
        (serializable(&members[2], "k19").as_deref() == Some("v19")).then_some(())
    });

    // A member killed and restarted catches up over TLS. The killed member is a follower and
    // the writes go to the leader: a put forwarded to a leader that has just been killed is
    // lost with it and times out, on etcd as here (a lost proposal is not retried by etcdctl).
    let (l, _) = leader(&members);
    let victim = (l + 1) % members.len();
    members[victim].kill9();
    for i in 20..40 {
        members[l].ok(&["put", &format!("k{i}"), &format!("v{i}")]);
    }
    members[victim].restart();
    members[victim].wait_ready(Duration::from_secs(30));
    eventually(Duration::from_secs(20), || {
        (serializable(&members[victim], "k39").as_deref() == Some("v39")).then_some(())
    });

    // A member added joins over TLS: the members query, then the log.
    let d = MemberSpec::new_peer_tls("d");
    members[0].ok(&[
        "member",
        "add",
        "d",
        &format!("--peer-urls={}", d.peer_url()),
    ]);
    let all = initial_cluster([&specs[0], &specs[1], &specs[2], &d]);
    let mut extra = as_strs(&flags);
    extra.extend(["--initial-cluster-state", "existing"]);
    let mut joiner = Ferrocd::start_member_with(d, &all, dir.path(), &extra);
    joiner.wait_ready(Duration::from_secs(60));
    assert_eq!(serializable(&joiner, "k39").as_deref(), Some("v39"));
    joiner.ok(&["put", "from-d", "x"]);
    eventually(Duration::from_secs(20), || {
        (serializable(&members[2], "from-d").as_deref() == Some("x")).then_some(())
    });
    for m in members.iter().chain(std::iter::once(&joiner)) {
        assert!(
            !m.log_text().contains("refused the TLS certificate"),
            "{}",
            m.log_text()
        );
    }
}

#[test]
fn a_member_with_a_certificate_from_another_ca_is_refused_and_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "peers");
    let rogue_ca = Ca::new(dir.path(), "rogue");
    let good = ca.issue("peer", "member", &["127.0.0.1"], 2);
    // The rogue member trusts the real CA (so it would accept the others) but presents a
    // certificate the others do not trust.
    let rogue = rogue_ca.issue("peer", "member", &["127.0.0.1"], 2);
    let (a, b, c) = cluster_with_odd_member(dir.path(), &ca, &good, &rogue, &[]);
    assert_refused(&a, &b, &c, "UnknownIssuer", "unknown certificate authority");
}

#[test]
fn peer_auto_tls_encrypts_without_a_ca() {
    let dir = tempfile::tempdir().unwrap();
    let specs: Vec<MemberSpec> = ["a", "b", "c"]
        .iter()
        .map(|n| MemberSpec::new_peer_tls(n))
        .collect();
    let members = start_cluster(dir.path(), &specs, &["--peer-auto-tls"], &|_| Vec::new());
    members[0].ok(&["put", "k", "v"]);
    eventually(Duration::from_secs(20), || {
        (serializable(&members[2], "k").as_deref() == Some("v")).then_some(())
    });
    for m in &members {
        assert!(m.data_dir.join("fixtures/peer/cert.pem").is_file());
    }
}

/// Starts a, b (accepted certificates) and c (`c_cert`) with the same CA and `extra` flags;
/// returns them once a and b serve, after a put on a.
fn cluster_with_odd_member(
    dir: &std::path::Path,
    ca: &Ca,
    good: &Issued,
    c_cert: &Issued,
    extra: &[&str],
) -> (Ferrocd, Ferrocd, Ferrocd) {
    let specs: Vec<MemberSpec> = ["a", "b", "c"]
        .iter()
        .map(|n| MemberSpec::new_peer_tls(n))
        .collect();
    let initial = initial_cluster(&specs);
    let start = |spec: &MemberSpec, cert: &Issued| {
        let mut flags = peer_flags(ca, cert);
        flags.extend(extra.iter().map(|s| (*s).to_owned()));
        Ferrocd::start_member_with(spec.clone(), &initial, dir, &as_strs(&flags))
    };
    let mut a = start(&specs[0], good);
    let mut b = start(&specs[1], good);
    let c = start(&specs[2], c_cert);
    a.wait_ready(Duration::from_secs(60));
    b.wait_ready(Duration::from_secs(60));
    a.ok(&["put", "secret", "s3cr3t"]);
    (a, b, c)
}

/// a and b refuse c's certificate for the reason `why` (which they log), c logs the refusal
/// in Go's words (`remote error: tls: …`), and c never gets the data.
fn assert_refused(a: &Ferrocd, b: &Ferrocd, c: &Ferrocd, why: &str, go_alert: &str) {
    eventually(Duration::from_secs(20), || {
        let log = a.log_text() + &b.log_text();
        let refused = log
            .lines()
            .any(|l| l.contains("refused the TLS certificate of a peer connection"));
        (refused && log.contains(why)).then_some(())
    });
    eventually(Duration::from_secs(20), || {
        c.log_text()
            .contains(&format!("remote error: tls: {go_alert}"))
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_ne!(serializable(c, "secret").as_deref(), Some("s3cr3t"));
}

#[test]
fn peer_cert_allowed_cn_refuses_other_common_names() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "peers");
    let good = ca.issue("peer", "member", &["127.0.0.1"], 2);
    let other = ca.issue("other", "intruder", &["127.0.0.1"], 3);
    let (a, b, c) = cluster_with_odd_member(
        dir.path(),
        &ca,
        &good,
        &other,
        &["--peer-cert-allowed-cn", "member"],
    );
    assert_refused(
        &a,
        &b,
        &c,
        "CommonName authentication failed",
        "bad certificate",
    );
}

#[test]
fn peer_cert_allowed_hostname_refuses_certificates_for_other_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "peers");
    let good = ca.issue("peer", "member", &["127.0.0.1", "m.infra.example"], 2);
    let other = ca.issue("other", "member", &["127.0.0.1", "elsewhere.example"], 3);
    let (a, b, c) = cluster_with_odd_member(
        dir.path(),
        &ca,
        &good,
        &other,
        &["--peer-cert-allowed-hostname", "m.infra.example"],
    );
    assert_refused(
        &a,
        &b,
        &c,
        "client certificate authentication failed",
        "bad certificate",
    );
}

/// `--peer-crl-file` on both sides of a connection: a member whose certificate is revoked is
/// refused when it dials (the listener's check) and when it is dialed (the dialer's check, so
/// a leader never sends it entries), and it never receives the data.
#[test]
fn a_member_whose_certificate_is_revoked_is_refused_both_ways_and_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "peers");
    let good = ca.issue("peer", "member", &["127.0.0.1"], 2);
    let revoked = ca.issue("revoked", "member", &["127.0.0.1"], 3);
    let crl = ca.crl(&[&revoked]);
    let crl = crl.to_str().unwrap().to_owned();
    let (a, b, c) =
        cluster_with_odd_member(dir.path(), &ca, &good, &revoked, &["--peer-crl-file", &crl]);
    assert_refused(&a, &b, &c, "Revoked", "revoked certificate");
    // The dialing side refused c's certificate too.
    let dialed = a.log_text() + &b.log_text();
    assert!(dialed.contains("its certificate was refused"), "{dialed}");
}

/// Rotation under a running cluster: every member's peer certificate, key and trusted CA are
/// replaced in place (a CA rollover: the new bundle trusts the old CA and the new one, the new
/// certificates come from the new CA) while a client writes through the leader; a follower
/// restarted afterwards connects with its new certificate, both ways, and catches up. No
/// request fails and no member restarts to pick the new files up.
#[test]
fn peer_certificates_and_ca_rotate_under_load_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = Ca::new(dir.path(), "old");
    let new_ca = Ca::new(dir.path(), "new");
    let specs: Vec<MemberSpec> = ["a", "b", "c"]
        .iter()
        .map(|n| MemberSpec::new_peer_tls(n))
        .collect();
    let live = |name: &str, what: &str| dir.path().join(format!("{name}-live-{what}.pem"));
    for (i, s) in specs.iter().enumerate() {
        let cert = old_ca.issue(
            &s.name,
            "member",
            &["127.0.0.1", "localhost"],
            10 + i as u64,
        );
        std::fs::copy(&cert.cert, live(&s.name, "cert")).unwrap();
        std::fs::copy(&cert.key, live(&s.name, "key")).unwrap();
        std::fs::copy(old_ca.cert_str(), live(&s.name, "ca")).unwrap();
    }
    let initial = initial_cluster(&specs);
    let mut members: Vec<Ferrocd> = specs
        .iter()
        .map(|s| {
            let (cert, key, ca) = (
                live(&s.name, "cert"),
                live(&s.name, "key"),
                live(&s.name, "ca"),
            );
            Ferrocd::start_member_with(
                s.clone(),
                &initial,
                dir.path(),
                &[
                    "--peer-cert-file",
                    cert.to_str().unwrap(),
                    "--peer-key-file",
                    key.to_str().unwrap(),
                    "--peer-trusted-ca-file",
                    ca.to_str().unwrap(),
                    "--peer-client-cert-auth",
                ],
            )
        })
        .collect();
    for m in &mut members {
        m.wait_ready(Duration::from_secs(60));
    }
    let (l, _) = common::leader(&members);
    let victim = (l + 1) % members.len();

    // A client writing through the leader for the whole rotation.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let endpoint = members[l].endpoint();
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0, Vec::new());
            let deadline = std::time::Instant::now() + Duration::from_secs(90);
            while !stop.load(std::sync::atomic::Ordering::SeqCst)
                && std::time::Instant::now() < deadline
            {
                let out = common::etcdctl(&endpoint, &["put", &format!("w{ok}"), "v"]);
                if out.status.success() {
                    ok += 1;
                } else {
                    failed.push(String::from_utf8_lossy(&out.stderr).into_owned());
                }
            }
            (ok, failed)
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    let bundle = std::fs::read_to_string(old_ca.cert_str()).unwrap()
        + &std::fs::read_to_string(new_ca.cert_str()).unwrap();
    // Every member trusts both CAs before any presents a certificate of the new one.
    for s in &specs {
        std::fs::write(live(&s.name, "ca"), &bundle).unwrap();
    }
    for (i, s) in specs.iter().enumerate() {
        let cert = new_ca.issue(
            &s.name,
            "member",
            &["127.0.0.1", "localhost"],
            20 + i as u64,
        );
        // Key first, then certificate: a mismatched pair in between keeps the previous one.
        std::fs::copy(&cert.key, live(&s.name, "key")).unwrap();
        std::fs::copy(&cert.cert, live(&s.name, "cert")).unwrap();
    }
    // New connections, both ways: the restarted member dials with its new certificate and is
    // dialed by the others, which verify it against their reloaded bundle.
    members[victim].kill9();
    members[victim].restart();
    members[victim].wait_ready(Duration::from_secs(60));
    members[l].ok(&["put", "after-rotation", "yes"]);
    eventually(Duration::from_secs(20), || {
        let out = members[victim].ctl(&[
            "get",
            "after-rotation",
            "--consistency=s",
            "--print-value-only",
        ]);
        (String::from_utf8_lossy(&out.stdout).trim() == "yes").then_some(())
    });
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ok, failed) = writer.join().unwrap();
    assert!(ok > 0);
    assert!(
        failed.is_empty(),
        "{} of {} puts failed: {failed:?}",
        failed.len(),
        ok + failed.len()
    );
    let logs: String = members.iter().map(Ferrocd::log_text).collect();
    assert!(
        logs.contains("reloaded the trusted CA"),
        "no CA reload logged"
    );
    assert!(
        !members[victim]
            .log_text()
            .contains("refused the TLS certificate")
    );
}

/// A member whose certificate has expired is refused, and gets nothing.
#[test]
fn a_member_whose_certificate_expired_is_refused_and_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "peers");
    let good = ca.issue("peer", "member", &["127.0.0.1"], 2);
    let expired = ca.issue_expired("expired", "member", 3);
    let (a, b, c) = cluster_with_odd_member(dir.path(), &ca, &good, &expired, &[]);
    assert_refused(&a, &b, &c, "expired", "expired certificate");
}
