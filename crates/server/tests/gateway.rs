//! The JSON gateway under `/v3/` (and `/v3beta/`) with real `curl`, as etcd's docs and JSON
//! clients use it: KV (put, range, txn, delete, compaction), a watch stream, leases (grant,
//! keep-alive stream, time-to-live, list, revoke), cluster and maintenance; etcd's bodies
//! byte for byte where etcd's own tests pin them. Bad input (malformed JSON, bad base64,
//! unknown fields and paths, other methods, oversized bodies) gets grpc-gateway's status and
//! error JSON, and the member goes on serving.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::curl::{Reply, curl};
use common::{Ferrocd, wait_output};
use serde_json::Value;

/// base64 of the keys and values used here.
const FOO: &str = "Zm9v";
const BAR: &str = "YmFy";
const BAZ: &str = "YmF6";

fn post(f: &Ferrocd, path: &str, body: &str) -> Reply {
    curl(&[
        "-X",
        "POST",
        "-d",
        body,
        &format!("{}{path}", f.client_url()),
    ])
}

fn json(reply: &Reply) -> Value {
    serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", reply.body))
}

/// A streaming POST: every line curl printed before `seconds` ran out (curl then exits 28),
/// each parsed as JSON.
fn stream(f: &Ferrocd, path: &str, body: &str, seconds: u32, during: impl FnOnce()) -> Vec<Value> {
    let child = Command::new("curl")
        .args(["-sS", "-N", "--max-time", &seconds.to_string(), "-d", body])
        .arg(format!("{}{path}", f.client_url()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning curl");
    during();
    let out = wait_output(child, Duration::from_secs(u64::from(seconds) + 10));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("line {l:?}: {e}")))
        .collect()
}

#[test]
fn kv_requests_answer_etcds_json() {
    let f = Ferrocd::start();
    let put = post(
        &f,
        "/v3/kv/put",
        &format!(r#"{{"key":"{FOO}","value":"{BAR}"}}"#),
    );
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(put.headers["content-type"], "application/json");
    let put = json(&put);
    // 64-bit integers are strings, fields are proto names.
    assert_eq!(put["header"]["revision"], "2");
    assert!(put["header"]["cluster_id"].is_string());

    let range = json(&post(&f, "/v3/kv/range", &format!(r#"{{"key":"{FOO}"}}"#)));
    assert_eq!(range["count"], "1");
    let kv = &range["kvs"][0];
    assert_eq!(
        (
            &kv["key"],
            &kv["value"],
            &kv["create_revision"],
            &kv["version"]
        ),
        (
            &Value::from(FOO),
            &Value::from(BAR),
            &Value::from("2"),
            &Value::from("1")
        )
    );
    // Fields at their zero value are left out, as jsonpb leaves them out.
    assert!(kv.get("lease").is_none(), "{kv}");
    assert!(range.get("more").is_none(), "{range}");

    // etcd's e2e txn, as jsonpb writes it (lowerCamel names, enums and int64 as strings).
    let txn = post(
        &f,
        "/v3/kv/txn",
        r#"{"compare":[{"result":"EQUAL","target":"CREATE","key":"dA==","createRevision":"0"}],
            "success":[{"requestPut":{"key":"dA==","value":"YmFy"}}]}"#,
    );
    assert_eq!(txn.status, 200, "{}", txn.body);
    assert!(
        txn.body.contains(
            r#""succeeded":true,"responses":[{"response_put":{"header":{"revision":"3"}}}]"#
        ),
        "{}",
        txn.body
    );
    // The same write seen through gRPC.
    assert_eq!(f.ok(&["get", "t"]), "t\nbar\n");

    // The deprecated /v3beta prefix serves the same API.
    let beta = json(&post(&f, "/v3beta/kv/range", r#"{"key":"dA=="}"#));
    assert_eq!(beta["kvs"][0]["value"], BAR);

    let del = json(&post(
        &f,
        "/v3/kv/deleterange",
        &format!(r#"{{"key":"{FOO}","prev_kv":true}}"#),
    ));
    assert_eq!(del["deleted"], "1");
    assert_eq!(del["prev_kvs"][0]["value"], BAR);
    let compact = post(&f, "/v3/kv/compaction", r#"{"revision":3}"#);
    assert_eq!(compact.status, 200, "{}", compact.body);
    // A compacted revision: etcd's OutOfRange, HTTP 400, in grpc-gateway's error body.
    let old = post(&f, "/v3/kv/range", r#"{"key":"dA==","revision":"2"}"#);
    assert_eq!(old.status, 400);
    assert_eq!(
        old.body,
        r#"{"error":"etcdserver: mvcc: required revision has been compacted","message":"etcdserver: mvcc: required revision has been compacted","code":11}"#
    );
}

#[test]
fn a_watch_streams_its_events_as_json_lines() {
    let f = Ferrocd::start();
    f.ok(&["put", "foo", "bar"]);
    // etcd's e2e watch: its body ends after one request, and the watch goes on.
    let lines = stream(
        &f,
        "/v3/watch",
        &format!(r#"{{"create_request":{{"key":"{FOO}","start_revision":1}}}}"#),
        4,
        || {
            std::thread::sleep(Duration::from_secs(1));
            f.ok(&["put", "foo", "baz"]);
        },
    );
    assert!(lines.len() >= 2, "{lines:?}");
    assert_eq!(lines[0]["result"]["created"], true, "{lines:?}");
    let values: Vec<&Value> = lines
        .iter()
        .filter_map(|l| l["result"]["events"].as_array())
        .flatten()
        .map(|e| &e["kv"]["value"])
        .collect();
    assert_eq!(values, [BAR, BAZ], "{lines:?}");
}

#[test]
fn leases_are_granted_kept_alive_listed_and_revoked() {
    let f = Ferrocd::start();
    let grant = json(&post(&f, "/v3/lease/grant", r#"{"TTL":20}"#));
    assert_eq!(grant["TTL"], "20");
    let id = grant["ID"].as_str().expect("a lease ID").to_owned();
    post(
        &f,
        "/v3/kv/put",
        &format!(r#"{{"key":"{FOO}","value":"{BAR}","lease":"{id}"}}"#),
    );

    let alive = stream(
        &f,
        "/v3/lease/keepalive",
        &format!(r#"{{"ID":"{id}"}}"#),
        2,
        || {},
    );
    assert!(!alive.is_empty());
    assert_eq!(alive[0]["result"]["ID"], id.as_str(), "{alive:?}");
    assert_eq!(alive[0]["result"]["TTL"], "20", "{alive:?}");

    for path in ["/v3/lease/timetolive", "/v3/kv/lease/timetolive"] {
        let ttl = json(&post(&f, path, &format!(r#"{{"ID":"{id}","keys":true}}"#)));
        assert_eq!(ttl["grantedTTL"], "20", "{ttl}");
        assert_eq!(ttl["keys"][0], FOO, "{ttl}");
    }
    for path in ["/v3/lease/leases", "/v3/kv/lease/leases"] {
        let leases = json(&post(&f, path, "{}"));
        assert_eq!(leases["leases"][0]["ID"], id.as_str(), "{leases}");
    }
    let revoke = post(&f, "/v3/lease/revoke", &format!(r#"{{"ID":"{id}"}}"#));
    assert_eq!(revoke.status, 200, "{}", revoke.body);
    assert!(f.ok(&["get", "foo"]).is_empty());
    // etcd's NotFound: HTTP 404.
    let again = post(&f, "/v3/kv/lease/revoke", &format!(r#"{{"ID":"{id}"}}"#));
    assert_eq!(again.status, 404);
    assert_eq!(
        json(&again)["error"],
        "etcdserver: requested lease not found"
    );
    assert_eq!(json(&again)["code"], 5);
}

#[test]
fn cluster_and_maintenance_answer_over_json() {
    let f = Ferrocd::start();
    let members = json(&post(&f, "/v3/cluster/member/list", "{}"));
    assert_eq!(
        members["members"][0]["clientURLs"][0],
        f.client_url().as_str()
    );
    let status = json(&post(&f, "/v3/maintenance/status", ""));
    assert!(status["version"].is_string(), "{status}");
    assert_eq!(status["leader"], status["header"]["member_id"], "{status}");
    // etcd's gateway serves Hash here (HashKV shares the path, registered after it).
    let hash = json(&post(&f, "/v3/maintenance/hash", "{}"));
    assert!(hash["hash"].is_number(), "{hash}");
    assert!(hash.get("compact_revision").is_none(), "{hash}");
    let alarms = post(&f, "/v3/maintenance/alarm", r#"{"action":"GET"}"#);
    assert_eq!(alarms.status, 200, "{}", alarms.body);
}

#[test]
fn bad_requests_get_grpc_gateways_errors_and_lose_nothing() {
    let f = Ferrocd::start_with(&["--max-request-bytes", "1024"]);
    f.ok(&["put", "kept", "v"]);
    let bad = |body: &str| {
        let r = post(&f, "/v3/kv/put", body);
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        let e = json(&r);
        assert_eq!(e["code"], 3, "{body}: {e}");
        assert_eq!(e["error"], e["message"]);
    };
    bad(r#"{"key":"#);
    bad(r#"{"key":"not base64!"}"#);
    bad(r#"{"key":5}"#);
    // Unknown fields are ignored, as grpc-gateway ignores them: this put has no key.
    let no_key = post(&f, "/v3/kv/put", r#"{"kee":"Zm9v"}"#);
    assert_eq!(json(&no_key)["error"], "etcdserver: key is not provided");
    let extra = post(
        &f,
        "/v3/kv/put",
        &format!(r#"{{"key":"{FOO}","value":"{BAR}","extra":1}}"#),
    );
    assert_eq!(extra.status, 200, "{}", extra.body);
    f.ok(&["del", "foo"]);
    // etcd's e2e "malformed" txn, which once crashed etcd.
    let txn = post(
        &f,
        "/v3/kv/txn",
        r#"{"compare":[{"result":0,"target":1,"key":"Zm9v","TargetUnion":null}],"success":[{"Request":{"RequestPut":{"key":"Zm9v","value":"YmFy"}}}]}"#,
    );
    assert_eq!(txn.status, 400, "{}", txn.body);
    assert!(json(&txn)["error"].is_string(), "{}", txn.body);
    // A stream's first request that is not JSON: grpc-gateway passes the decoder's error on
    // unwrapped, hence Unknown (HTTP 500).
    let watch = post(&f, "/v3/watch", "{nope");
    assert_eq!(
        (watch.status, json(&watch)["code"].as_i64()),
        (500, Some(2))
    );

    let unknown = post(&f, "/v3/kv/nope", "{}");
    assert_eq!(
        (unknown.status, unknown.body.as_str()),
        (404, "Not Found\n")
    );
    let get = curl(&[&format!("{}/v3/kv/range", f.client_url())]);
    assert_eq!(
        (get.status, get.body.as_str()),
        (405, "Method Not Allowed\n")
    );

    // Over --max-request-bytes: etcd's own refusal.
    let value = "QUFB".repeat(600); // 1 800 bytes
    let big = post(
        &f,
        "/v3/kv/put",
        &format!(r#"{{"key":"{FOO}","value":"{value}"}}"#),
    );
    assert_eq!(big.status, 400, "{}", big.body);
    assert_eq!(json(&big)["error"], "etcdserver: request is too large");
    // Over gRPC's limit (1 024 bytes + 512 KiB): gRPC's ResourceExhausted, HTTP 429.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body.json");
    let huge = "QUFB".repeat(200_000); // 600 000 bytes
    std::fs::write(&file, format!(r#"{{"key":"{FOO}","value":"{huge}"}}"#)).unwrap();
    let r = curl(&[
        "-X",
        "POST",
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("{}/v3/kv/put", f.client_url()),
    ]);
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(
        json(&r)["error"]
            .as_str()
            .unwrap()
            .starts_with("grpc: received message larger than max"),
        "{}",
        r.body
    );

    // Nothing was written, nothing was lost, and the member serves on.
    assert_eq!(f.ok(&["get", "foo"]), "");
    assert_eq!(f.ok(&["get", "kept", "--print-value-only"]), "v\n");
    let ok = post(
        &f,
        "/v3/kv/put",
        &format!(r#"{{"key":"{FOO}","value":"{BAR}"}}"#),
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
}

/// `--max-concurrent-streams` bounds the gateway's calls on a listener together, as etcd's
/// gateway shares one gRPC connection: with every stream held by a watch, a range waits
/// (curl gives up), and it is served once a watch ends.
#[test]
fn max_concurrent_streams_bounds_the_gateways_calls() {
    let f = Ferrocd::start_with(&["--max-concurrent-streams", "2"]);
    let watch = || {
        Command::new("curl")
            .args(["-sS", "-N", "--max-time", "30", "-d"])
            .arg(format!(r#"{{"create_request":{{"key":"{FOO}"}}}}"#))
            .arg(format!("{}/v3/watch", f.client_url()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning curl")
    };
    let range = |seconds: &str| {
        Command::new("curl")
            .args(["-sS", "--max-time", seconds, "-d", r#"{"key":"Zm9v"}"#])
            .arg(format!("{}/v3/kv/range", f.client_url()))
            .output()
            .expect("running curl")
    };
    let mut first = watch();
    let mut second = watch();
    // Both watches hold their stream once each has answered its first line.
    for w in [&mut first, &mut second] {
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(w.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        assert!(line.contains(r#""created":true"#), "{line}");
    }
    let waited = range("2");
    assert_eq!(waited.status.code(), Some(28), "curl timed out: {waited:?}");
    // gRPC clients have connections of their own, with their own streams.
    assert_eq!(f.ok(&["get", "foo"]), "");
    first.kill().unwrap();
    first.wait().unwrap();
    let served = common::eventually(Duration::from_secs(10), || {
        let out = range("5");
        out.status.success().then_some(out)
    });
    assert!(String::from_utf8_lossy(&served.stdout).contains(r#""revision":""#));
    second.kill().unwrap();
    second.wait().unwrap();
}

/// etcd's e2e election over JSON: campaign, proclaim with the leader key it answered, and the
/// missing-leader errors byte for byte (code Unknown, HTTP 500).
#[test]
fn elections_and_locks_over_json() {
    let f = Ferrocd::start();
    // "/election-prefix" and "v1".
    let campaign = json(&post(
        &f,
        "/v3/election/campaign",
        r#"{"name":"L2VsZWN0aW9uLXByZWZpeA==","value":"djE="}"#,
    ));
    let leader = &campaign["leader"];
    assert_eq!(leader["name"], "L2VsZWN0aW9uLXByZWZpeA==", "{campaign}");
    let proclaim = post(
        &f,
        "/v3/election/proclaim",
        &format!(r#"{{"leader":{leader},"value":"djI="}}"#),
    );
    assert_eq!(proclaim.status, 200, "{}", proclaim.body);
    assert!(
        proclaim.body.contains(r#""revision":"#),
        "{}",
        proclaim.body
    );
    let now = json(&post(
        &f,
        "/v3/election/leader",
        r#"{"name":"L2VsZWN0aW9uLXByZWZpeA=="}"#,
    ));
    assert_eq!(now["kv"]["value"], "djI=", "{now}");
    let missing = r#"{"error":"\"leader\" field must be provided","message":"\"leader\" field must be provided","code":2}"#;
    for (path, body) in [
        ("/v3/election/proclaim", r#"{"value":"djI="}"#),
        ("/v3/election/resign", "{}"),
    ] {
        let r = post(&f, path, body);
        assert_eq!((r.status, r.body.as_str()), (500, missing), "{path}");
    }
    let lock = json(&post(&f, "/v3/lock/lock", r#"{"name":"bG9jaw=="}"#));
    let key = lock["key"].as_str().expect("the lock's key").to_owned();
    let unlock = post(&f, "/v3/lock/unlock", &format!(r#"{{"key":"{key}"}}"#));
    assert_eq!(unlock.status, 200, "{}", unlock.body);
}
