//! The client port's HTTP side with real `curl`: `/health` (healthy, no leader, an alarm and
//! `?exclude=`), `/version`, `/metrics` parsed as Prometheus' text format, and etcd's answers
//! to methods a path does not serve. gRPC keeps working on the same port throughout.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::curl::{Reply, curl};
use common::{Ferrocd, MemberSpec, eventually, start_cluster};

fn get(url: &str) -> Reply {
    curl(&[url])
}

#[test]
fn health_and_version_answer_as_etcd() {
    let f = Ferrocd::start();
    let base = f.client_url();
    let health = get(&format!("{base}/health"));
    assert_eq!(health.status, 200);
    assert_eq!(health.body, r#"{"health":"true"}"#);
    let version = get(&format!("{base}/version"));
    assert_eq!(version.status, 200);
    assert_eq!(version.headers["content-type"], "application/json");
    let v: serde_json::Value = serde_json::from_str(&version.body).unwrap();
    assert_eq!(v["etcdserver"], "3.6.0");
    assert_eq!(v["etcdcluster"], "3.6.0");
    for path in ["/health", "/version", "/metrics"] {
        let refused = curl(&["-X", "POST", &format!("{base}{path}")]);
        assert_eq!(refused.status, 405, "{path}");
        assert_eq!(refused.headers["allow"], "GET", "{path}");
        assert_eq!(refused.body, "Method Not Allowed\n", "{path}");
    }
    // gRPC on the same port, after and between HTTP/1.1 requests.
    assert_eq!(f.ok(&["put", "k", "v"]).trim(), "OK");
    assert_eq!(get(&format!("{base}/health")).status, 200);
}

#[test]
fn health_is_false_without_a_leader() {
    let dir = tempfile::tempdir().unwrap();
    let specs: Vec<MemberSpec> = ["h1", "h2", "h3"]
        .iter()
        .map(|n| MemberSpec::new(n))
        .collect();
    let mut members = start_cluster(dir.path(), &specs, &[], &|_| Vec::new());
    let url = format!("{}/health", members[0].client_url());
    assert_eq!(get(&url).status, 200);
    members[1].kill9();
    members[2].kill9();
    // The survivor loses its leader (check quorum) or cannot read linearizably: either way
    // it is not healthy.
    let reply = eventually(Duration::from_secs(20), || {
        let r = get(&url);
        (r.status == 503).then_some(r)
    });
    assert_eq!(reply.body, "{\"health\":\"false\"}\n");
    assert_eq!(reply.headers["content-type"], "text/plain; charset=utf-8");
}

#[test]
fn an_alarm_makes_health_false_unless_excluded() {
    // etcd's e2e alarm test: a small quota, a large value, the NOSPACE alarm.
    let f = Ferrocd::start_with(&["--quota-backend-bytes", "65536"]);
    let big = "x".repeat(80 * 1024);
    let out = f.ctl(&["put", "big", &big]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let alarms = eventually(Duration::from_secs(20), || {
        let list = f.ok(&["alarm", "list"]);
        list.contains("NOSPACE").then_some(list)
    });
    assert!(alarms.contains("alarm:NOSPACE"), "{alarms} ({stderr})");
    let base = f.client_url();
    let unhealthy = get(&format!("{base}/health"));
    assert_eq!(unhealthy.status, 503);
    assert_eq!(unhealthy.body, "{\"health\":\"false\"}\n");
    let excluded = get(&format!("{base}/health?exclude=NOSPACE"));
    assert_eq!(excluded.status, 200);
    assert_eq!(excluded.body, r#"{"health":"true"}"#);
    f.ok(&["alarm", "disarm"]);
    assert_eq!(get(&format!("{base}/health")).status, 200);
}

/// One sample of Prometheus' text format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// Parses Prometheus' text exposition format strictly enough to catch malformed output:
/// every `# TYPE` names a known type, every sample line is `name{labels} value` with a
/// numeric value, and every sample belongs to a declared family.
fn parse_prometheus(text: &str) -> (HashMap<String, String>, Vec<Sample>) {
    let mut types = HashMap::new();
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line}");
        let (series, value) = line.rsplit_once(' ').expect("sample: series value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), Vec::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("closing brace");
                let labels = body
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once("=\"").expect("label=\"value\"");
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| types.contains_key(*f)))
            .unwrap_or(&name);
        assert!(types.contains_key(family), "sample without # TYPE: {line}");
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    (types, samples)
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|s| s.value)
}

#[test]
fn metrics_are_prometheus_text_with_etcds_names() {
    let dir = tempfile::tempdir().unwrap();
    let specs: Vec<MemberSpec> = ["p1", "p2", "p3"]
        .iter()
        .map(|n| MemberSpec::new(n))
        .collect();
    let members = start_cluster(dir.path(), &specs, &[], &|_| Vec::new());
    let f = &members[0];
    for i in 0..5 {
        f.ok(&["put", &format!("k{i}"), "v"]);
    }
    f.ok(&["get", "k0"]);
    // A delete of a range counts once, even when it deletes nothing.
    f.ok(&["del", "absent"]);
    let reply = get(&format!("{}/metrics", f.client_url()));
    assert_eq!(reply.status, 200);
    assert!(
        reply.headers["content-type"].starts_with("text/plain; version=0.0.4"),
        "{:?}",
        reply.headers
    );
    let (types, samples) = parse_prometheus(&reply.body);
    for (name, kind) in [
        ("etcd_server_has_leader", "gauge"),
        ("etcd_server_is_leader", "gauge"),
        ("etcd_server_leader_changes_seen_total", "counter"),
        ("etcd_server_proposals_committed_total", "gauge"),
        ("etcd_server_proposals_applied_total", "gauge"),
        ("etcd_server_proposals_pending", "gauge"),
        ("etcd_server_proposals_failed_total", "counter"),
        ("etcd_disk_wal_fsync_duration_seconds", "histogram"),
        ("etcd_disk_backend_commit_duration_seconds", "histogram"),
        ("etcd_mvcc_db_total_size_in_bytes", "gauge"),
        ("etcd_mvcc_db_total_size_in_use_in_bytes", "gauge"),
        ("etcd_debugging_mvcc_keys_total", "gauge"),
        ("etcd_network_peer_sent_bytes_total", "counter"),
        ("etcd_network_peer_received_bytes_total", "counter"),
        ("grpc_server_started_total", "counter"),
        ("grpc_server_handled_total", "counter"),
        ("etcd_server_version", "gauge"),
        ("etcd_mvcc_put_total", "counter"),
        ("etcd_mvcc_delete_total", "counter"),
        ("etcd_mvcc_range_total", "counter"),
        ("etcd_mvcc_txn_total", "counter"),
        ("process_resident_memory_bytes", "gauge"),
    ] {
        assert_eq!(types.get(name).map(String::as_str), Some(kind), "{name}");
    }
    assert_eq!(value(&samples, "etcd_server_has_leader", &[]), Some(1.0));
    assert_eq!(
        value(&samples, "etcd_debugging_mvcc_keys_total", &[]),
        Some(5.0)
    );
    // Five puts and one delete, applied on this member (etcd counts what each member applies).
    assert_eq!(value(&samples, "etcd_mvcc_put_total", &[]), Some(5.0));
    assert_eq!(value(&samples, "etcd_mvcc_delete_total", &[]), Some(1.0));
    assert!(value(&samples, "etcd_mvcc_range_total", &[]) >= Some(1.0));
    assert!(value(&samples, "etcd_server_leader_changes_seen_total", &[]) >= Some(1.0));
    let applied = value(&samples, "etcd_server_proposals_applied_total", &[]).unwrap();
    assert!(applied >= 5.0, "applied index {applied}");
    assert!(value(&samples, "etcd_disk_wal_fsync_duration_seconds_count", &[]) >= Some(5.0));
    assert!(value(&samples, "etcd_mvcc_db_total_size_in_bytes", &[]) > Some(0.0));
    // The leader times its heartbeats' round trips to each follower.
    let leader_samples = members
        .iter()
        .map(|m| parse_prometheus(&get(&format!("{}/metrics", m.client_url())).body))
        .find(|(_, samples)| value(samples, "etcd_server_is_leader", &[]) == Some(1.0))
        .expect("one member leads");
    assert_eq!(
        leader_samples
            .0
            .get("etcd_network_peer_round_trip_time_seconds")
            .map(String::as_str),
        Some("histogram")
    );
    let timed = leader_samples
        .1
        .iter()
        .filter(|s| s.name == "etcd_network_peer_round_trip_time_seconds_count" && s.value > 0.0)
        .count();
    assert_eq!(timed, 2, "round trips to both followers");
    // The leader's traffic to and from each follower, under their hex member ids.
    for family in [
        "etcd_network_peer_sent_bytes_total",
        "etcd_network_peer_received_bytes_total",
    ] {
        let peers: Vec<&Sample> = leader_samples
            .1
            .iter()
            .filter(|s| s.name == family && s.value > 0.0)
            .collect();
        assert_eq!(peers.len(), 2, "{family}: {peers:?}");
        for p in peers {
            let (_, id) = &p.labels[0];
            assert!(u64::from_str_radix(id, 16).is_ok(), "{p:?}");
        }
    }
    let put = [
        ("grpc_type", "unary"),
        ("grpc_service", "etcdserverpb.KV"),
        ("grpc_method", "Put"),
    ];
    assert_eq!(
        value(&samples, "grpc_server_started_total", &put),
        Some(5.0)
    );
    let put_ok = [put.as_slice(), &[("grpc_code", "OK")]].concat();
    assert_eq!(
        value(&samples, "grpc_server_handled_total", &put_ok),
        Some(5.0)
    );
    // A failing call is counted with its code.
    let _ = f.ctl(&["get", "k0", "--rev", "1000"]);
    let (_, samples) = parse_prometheus(&get(&format!("{}/metrics", f.client_url())).body);
    let range_out_of_range = [("grpc_method", "Range"), ("grpc_code", "OutOfRange")];
    assert_eq!(
        value(&samples, "grpc_server_handled_total", &range_out_of_range),
        Some(1.0)
    );
}

#[test]
fn listen_metrics_urls_serve_health_and_metrics_alone() {
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let f = Ferrocd::start_with(&["--listen-metrics-urls", &url]);
    f.ok(&["put", "k", "v"]);
    let health = get(&format!("{url}/health"));
    assert_eq!(
        (health.status, health.body.as_str()),
        (200, r#"{"health":"true"}"#)
    );
    let metrics = get(&format!("{url}/metrics"));
    assert_eq!(metrics.status, 200);
    let (_, samples) = parse_prometheus(&metrics.body);
    assert_eq!(
        value(&samples, "etcd_debugging_mvcc_keys_total", &[]),
        Some(1.0)
    );
    // Nothing else is served there: not /version, not gRPC.
    assert_eq!(get(&format!("{url}/version")).status, 404);
    let out = common::etcdctl(&format!("127.0.0.1:{port}"), &["get", "k"]);
    assert!(!out.status.success());
    // The client URL still serves everything.
    assert_eq!(get(&format!("{}/version", f.client_url())).status, 200);
}
