//! How a real `ferrocd` reads its configuration, as etcd reads it: a YAML config file with every
//! key of etcd's sample (`etcd.conf.yml.sample`), `ETCD_*` environment variables, their
//! precedence and conflicts; and settings a test can see take effect: `--wal-dir`,
//! `--max-snapshots`, zap JSON logs in a `--log-outputs` file.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Ferrocd, MemberSpec, eventually, wait_output};

const READY: Duration = Duration::from_secs(30);

/// Every key of etcd's `etcd.conf.yml.sample`, in its order, with this test's values.
fn sample_config(spec: &MemberSpec, data: &Path, wal: &Path, log: &Path) -> String {
    let peer = spec.peer_url();
    let client = spec.client_url();
    format!(
        "# The keys of etcd's own sample configuration file.\n\
         name: 'infra0'\n\
         data-dir: {data}\n\
         wal-dir: {wal}\n\
         snapshot-count: 10000\n\
         heartbeat-interval: 50\n\
         election-timeout: 500\n\
         quota-backend-bytes: 0\n\
         listen-peer-urls: {peer}\n\
         listen-client-urls: {client}\n\
         max-snapshots: 5\n\
         max-wals: 5\n\
         cors:\n\
         initial-advertise-peer-urls: {peer}\n\
         advertise-client-urls: {client}\n\
         discovery:\n\
         discovery-fallback: 'proxy'\n\
         discovery-proxy:\n\
         discovery-srv:\n\
         initial-cluster: infra0={peer}\n\
         initial-cluster-token: 'etcd-cluster'\n\
         initial-cluster-state: 'new'\n\
         strict-reconfig-check: false\n\
         enable-pprof: true\n\
         proxy: 'off'\n\
         proxy-failure-wait: 5000\n\
         proxy-refresh-interval: 30000\n\
         proxy-dial-timeout: 1000\n\
         proxy-write-timeout: 5000\n\
         proxy-read-timeout: 0\n\
         client-transport-security:\n  cert-file:\n  key-file:\n  client-cert-auth: false\n  \
         trusted-ca-file:\n  auto-tls: false\n\
         peer-transport-security:\n  cert-file:\n  key-file:\n  client-cert-auth: false\n  \
         trusted-ca-file:\n  auto-tls: false\n\
         self-signed-cert-validity: 1\n\
         log-level: debug\n\
         logger: zap\n\
         log-outputs: [{log}]\n\
         force-new-cluster: false\n\
         auto-compaction-mode: periodic\n\
         auto-compaction-retention: \"1\"\n\
         cipher-suites: [\n  TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,\n  \
         TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\n]\n\
         tls-min-version: 'TLS1.2'\n\
         tls-max-version: 'TLS1.3'\n",
        data = data.display(),
        wal = wal.display(),
        log = log.display(),
    )
}

/// Every line of a zap log, parsed; fails on a line that is not one of zap's JSON objects.
fn zap_lines(text: &str) -> Vec<serde_json::Value> {
    // The member is still running: a last line without its newline may be half written.
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .map(|line| {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            for key in ["level", "ts", "caller", "msg"] {
                assert!(v[key].is_string(), "no {key} in {line}");
            }
            v
        })
        .collect()
}

fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn etcds_sample_config_file_starts_a_member_with_its_settings() {
    let dir = tempfile::tempdir().unwrap();
    let spec = MemberSpec::new("infra0");
    let (data, wal, log) = (
        dir.path().join("data"),
        dir.path().join("wal-device"),
        dir.path().join("ferrocd.json.log"),
    );
    let config = dir.path().join("etcd.conf.yml");
    std::fs::write(&config, sample_config(&spec, &data, &wal, &log)).unwrap();
    // The command line is ignored when a config file is given, as etcd ignores it.
    let mut f = Ferrocd::start_bare(
        spec,
        dir.path(),
        &[
            "--config-file",
            config.to_str().unwrap(),
            "--name",
            "ignored",
        ],
        &[],
    );
    f.wait_ready(READY);
    f.ok(&["put", "k", "v"]);
    assert!(f.ok(&["member", "list"]).contains("infra0"));
    assert!(
        files_in(&wal).iter().any(|n| n.ends_with(".wal")),
        "the WAL is in --wal-dir: {:?}",
        files_in(&wal)
    );
    assert!(
        files_in(&data.join("member/wal")).is_empty(),
        "and not in the data directory"
    );
    let lines = zap_lines(&std::fs::read_to_string(&log).unwrap());
    assert!(
        lines.iter().any(|l| l["msg"]
            .as_str()
            .unwrap()
            .starts_with("loaded server configuration")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l["level"] == "debug"),
        "log-level: debug"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "warn" && l["msg"].as_str().unwrap().contains("enable-pprof")),
        "enable-pprof: true is warned about"
    );
}

#[test]
fn etcd_environment_variables_configure_a_member() {
    let dir = tempfile::tempdir().unwrap();
    let spec = MemberSpec::new("env0");
    let data = dir.path().join("data");
    let (peer, client) = (spec.peer_url(), spec.client_url());
    let initial = format!("env0={peer}");
    let mut f = Ferrocd::start_bare(
        spec,
        dir.path(),
        &["--heartbeat-interval", "50", "--election-timeout", "500"],
        &[
            ("ETCD_NAME", "env0"),
            ("ETCD_DATA_DIR", data.to_str().unwrap()),
            ("ETCD_LISTEN_CLIENT_URLS", &client),
            ("ETCD_ADVERTISE_CLIENT_URLS", &client),
            ("ETCD_LISTEN_PEER_URLS", &peer),
            ("ETCD_INITIAL_ADVERTISE_PEER_URLS", &peer),
            ("ETCD_INITIAL_CLUSTER", &initial),
            ("ETCD_LOGGER", "zap"),
            ("ETCD_NOT_A_FLAG", "s3cret"),
        ],
    );
    f.wait_ready(READY);
    assert!(f.ok(&["member", "list"]).contains("env0"));
    assert!(data.join("member/wal").is_dir());
    let text = f.log_text();
    let lines = zap_lines(&text);
    assert!(
        lines
            .iter()
            .any(|l| l["msg"] == "unrecognized environment variable"
                && l["name"] == "ETCD_NOT_A_FLAG"),
        "{text}"
    );
    assert!(
        !text.contains("s3cret"),
        "a variable's value is never logged"
    );
}

/// Runs ferrocd to its exit (it must refuse to start) and returns its exit code and stderr.
fn refused(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_ferrocd"))
        .args(["--data-dir", dir.path().join("data").to_str().unwrap()])
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LIB_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(child, Duration::from_secs(20));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_flag_given_on_the_command_line_and_in_the_environment_is_refused() {
    let (code, stderr) = refused(&["--name", "a"], &[("ETCD_NAME", "b")]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "conflicting environment variable \"ETCD_NAME\" is shadowed by corresponding \
             command-line flag (either unset environment variable or disable flag)"
        ),
        "{stderr}"
    );
}

#[test]
fn bad_settings_are_start_up_errors_that_name_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let typo = file("typo.yml", "listen-client-url: http://127.0.0.1:1\n");
    let bad_value = file("value.yml", "snapshot-count: lots\n");
    for (args, env, wanted) in [
        (
            vec!["--config-file", typo.as_str()],
            vec![],
            "listen-client-url",
        ),
        (
            vec!["--config-file", bad_value.as_str()],
            vec![],
            "--snapshot-count",
        ),
        (
            vec![],
            vec![("ETCD_CONFIG_FILE", typo.as_str())],
            "listen-client-url",
        ),
        (
            vec!["--enable-v2"],
            vec![],
            "--enable-v2=true: the v2 API is not supported",
        ),
        (vec!["--proxy", "on"], vec![], "--proxy=on"),
        (
            vec!["--discovery", "https://discovery.etcd.io/x"],
            vec![],
            "--discovery=https://discovery.etcd.io/x",
        ),
        (
            vec!["--log-outputs", "default,stdout"],
            vec![],
            "multi logoutput for \"default\" is not supported yet",
        ),
        (
            vec!["--log-outputs", "/nonexistent-dir/ferrocd.log"],
            vec![],
            "/nonexistent-dir/ferrocd.log",
        ),
        (
            vec![],
            vec![("ETCD_ELECTION_TIMEOUT", "soon")],
            "--election-timeout",
        ),
    ] {
        let (code, stderr) = refused(&args, &env);
        assert_ne!(code, Some(0), "{args:?} {env:?}: {stderr}");
        assert!(code.is_some(), "{args:?} {env:?}: still running");
        assert!(stderr.contains(wanted), "{args:?} {env:?}: {stderr}");
    }
}

#[test]
fn max_snapshots_bounds_the_snapshot_files_kept() {
    let f = Ferrocd::start_with(&["--snapshot-count", "10", "--max-snapshots", "2"]);
    for i in 0..120 {
        f.ok(&["put", &format!("k{i}"), "v"]);
    }
    let snap = f.data_dir.join("member/snap");
    let metas = || -> Vec<u64> {
        files_in(&snap)
            .iter()
            .filter_map(|n| n.strip_suffix(".snap"))
            .filter_map(|stem| stem.split_once('-'))
            .filter_map(|(_, index)| u64::from_str_radix(index, 16).ok())
            .collect()
    };
    // Snapshots are taken as entries apply, and the older ones purged just after: wait for
    // one past the hundredth put (a dozen snapshots were taken by then) with the purge done.
    // Without the bound, five would be kept (the default).
    let kept = eventually(READY, || {
        let m = metas();
        let dbs = files_in(&snap)
            .iter()
            .filter(|n| n.ends_with(".snap.db"))
            .count();
        (m.iter().max().is_some_and(|&i| i >= 100) && m.len() <= 2 && dbs <= 1).then_some(m)
    });
    assert!(!kept.is_empty() && kept.len() <= 2, "{kept:?}");
}
