//! The member's configuration, taken from etcd's own flag names and defaults so that a command
//! line, an environment or a config file written for etcd starts ferrocd: [`load`] reads the
//! command line, `ETCD_*` variables ([`env`]) and `--config-file` ([`file`]) with etcd's
//! precedence; [`compat`] holds etcd's flags for features ferrocd lacks.

pub mod compat;
pub mod env;
pub mod file;
mod load;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

pub use compat::CompatFlags;
pub use load::{LoadError, Loaded, load};

use crate::logging::{LogLevel, LogSettings, Logger};

/// Whether the member bootstraps a new cluster or joins an existing one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum InitialClusterState {
    /// Bootstrap a new cluster with the members of `--initial-cluster`.
    New,
    /// Join a cluster that already runs.
    Existing,
}

/// The storage engine a member keeps its data in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// LMDB, the default embedded engine.
    Lmdb,
    /// RocksDB (needs the `rocks` build feature).
    Rocks,
}

/// etcd's flags, parsed. Defaults are etcd's, but for `--data-dir` (`default.ferrocd`).
#[derive(Clone, Debug, Parser)]
#[command(
    name = "ferrocd",
    version,
    about = "A distributed, strongly consistent key-value store speaking etcd's v3 API",
    // Go's flag package lets a flag be given twice (the last wins); etcd's own e2e suite does.
    args_override_self = true
)]
pub struct Config {
    /// Path to etcd's YAML configuration file. When given (or `ETCD_CONFIG_FILE`), the other
    /// flags and `ETCD_*` variables are ignored, as etcd ignores them.
    #[arg(long, default_value = "")]
    pub config_file: String,
    /// Human-readable name of this member.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Path to the data directory.
    #[arg(long, default_value = "default.ferrocd")]
    pub data_dir: String,
    /// Path to a dedicated WAL directory, e.g. on its own device (default: `member/wal` in the
    /// data directory).
    #[arg(long, default_value = "")]
    pub wal_dir: String,
    /// Maximum number of snapshot files to retain (0: unlimited). The backend copy of only the
    /// newest snapshot is kept, as only it can be sent to a follower.
    #[arg(long, default_value_t = 5)]
    pub max_snapshots: u32,
    /// Maximum number of WAL files to retain, as etcd takes it. ferrocd deletes a WAL segment as
    /// soon as a snapshot covers it, so it never retains more than the segments still needed,
    /// whatever this says (0 included).
    #[arg(long, default_value_t = 5)]
    pub max_wals: u32,
    /// URLs to listen on for client traffic.
    #[arg(long, default_value = "http://localhost:2379", value_delimiter = ',', action = clap::ArgAction::Set)]
    pub listen_client_urls: Vec<String>,
    /// Client URLs of this member to advertise to the rest of the cluster.
    #[arg(long, default_value = "http://localhost:2379", value_delimiter = ',', action = clap::ArgAction::Set)]
    pub advertise_client_urls: Vec<String>,
    /// URLs to serve `/metrics` and `/health` on, beside the client URLs (https ones with the
    /// client certificate).
    #[arg(long, default_value = "", value_delimiter = ',', action = clap::ArgAction::Set)]
    pub listen_metrics_urls: Vec<String>,
    /// URLs to listen on for peer traffic.
    #[arg(long, default_value = "http://localhost:2380", value_delimiter = ',', action = clap::ArgAction::Set)]
    pub listen_peer_urls: Vec<String>,
    /// Peer URLs of this member to advertise to the rest of the cluster.
    #[arg(long, default_value = "http://localhost:2380", value_delimiter = ',', action = clap::ArgAction::Set)]
    pub initial_advertise_peer_urls: Vec<String>,
    /// Initial cluster configuration for bootstrapping: `name=peer-url,...`.
    #[arg(long, default_value = "default=http://localhost:2380")]
    pub initial_cluster: String,
    /// Initial cluster state.
    #[arg(long, value_enum, default_value = "new")]
    pub initial_cluster_state: InitialClusterState,
    /// Initial cluster token, so that separate clusters never mix.
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// Number of committed transactions that trigger a snapshot to disk.
    #[arg(long, default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Number of entries kept for a slow follower to catch up after compacting the raft log
    /// (fewer: a lagging follower is sent a snapshot sooner).
    #[arg(
        long = "experimental-snapshot-catchup-entries",
        alias = "snapshot-catchup-entries",
        default_value_t = 5000
    )]
    pub snapshot_catchup_entries: u64,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to time out.
    #[arg(long, default_value_t = 1000)]
    pub election_timeout: u64,
    /// Raise an alarm when the backend size exceeds this many bytes (0: the default, 2 GiB).
    #[arg(long, default_value_t = 0)]
    pub quota_backend_bytes: u64,
    /// Maximum client request size in bytes the server accepts.
    #[arg(long, default_value_t = 1_572_864)]
    pub max_request_bytes: u32,
    /// Maximum number of operations in a transaction.
    #[arg(long, default_value_t = 128)]
    pub max_txn_ops: u32,
    /// Maximum concurrent streams on one client connection (HTTP/2's
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`; etcd's default is 2^32-1). The JSON gateway's calls
    /// on one listener count as one connection's, as etcd's gateway shares one connection.
    #[arg(long, default_value_t = u32::MAX)]
    pub max_concurrent_streams: u32,
    /// Interpret `--auto-compaction-retention` as hours (`periodic`) or revisions (`revision`).
    #[arg(long, default_value = "periodic")]
    pub auto_compaction_mode: String,
    /// Auto compaction retention (0 disables it).
    #[arg(long, default_value = "0")]
    pub auto_compaction_retention: String,
    /// The storage engine.
    #[arg(long, value_enum, default_value = "lmdb")]
    pub backend: BackendKind,
    /// Before serving clients, compare this member's key-value hash with every reachable
    /// peer's at the same revision, and refuse to start on a mismatch (a Go boolean flag:
    /// `--experimental-initial-corrupt-check` or `--experimental-initial-corrupt-check=false`).
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub experimental_initial_corrupt_check: bool,
    /// The log format: `zap` (JSON lines, as etcd's zap logger writes them) or `capnslog`
    /// (human-readable lines, the default as in etcd 3.4).
    #[arg(long, value_enum, default_value = "capnslog")]
    pub logger: Logger,
    /// The least severe level logged: debug, info, warn, error, panic or fatal. `RUST_LOG`,
    /// when set, overrides it with a `tracing` filter.
    #[arg(long, value_enum, default_value = "info")]
    pub log_level: LogLevel,
    /// Where logs go: `default` or `stderr`, `stdout`, or file paths (appended to), separated
    /// by commas.
    #[arg(long, default_value = "default", value_delimiter = ',', action = clap::ArgAction::Set)]
    pub log_outputs: Vec<String>,
    /// Debug-level logging (etcd's deprecated spelling of `--log-level=debug`).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value_t = false, action = clap::ArgAction::Set)]
    pub debug: bool,
    /// Client and peer TLS.
    #[command(flatten)]
    pub tls: TlsFlags,
    /// etcd's flags for features ferrocd lacks, accepted at values that need none of them.
    #[command(flatten)]
    pub compat: CompatFlags,
}

/// etcd's TLS flags, for clients and for peers.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct TlsFlags {
    /// Path to the client server TLS cert file.
    #[arg(long, default_value = "")]
    pub cert_file: String,
    /// Path to the client server TLS key file.
    #[arg(long, default_value = "")]
    pub key_file: String,
    /// Path to the client server TLS trusted CA cert file.
    #[arg(long, default_value = "")]
    pub trusted_ca_file: String,
    /// Enable client cert authentication.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value_t = false, action = clap::ArgAction::Set)]
    pub client_cert_auth: bool,
    /// Path to the client certificate revocation list file.
    #[arg(long, default_value = "")]
    pub client_crl_file: String,
    /// Client TLS using generated certificates.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value_t = false, action = clap::ArgAction::Set)]
    pub auto_tls: bool,
    /// Path to the peer server TLS cert file.
    #[arg(long, default_value = "")]
    pub peer_cert_file: String,
    /// Path to the peer server TLS key file.
    #[arg(long, default_value = "")]
    pub peer_key_file: String,
    /// Path to the peer server TLS trusted CA file.
    #[arg(long, default_value = "")]
    pub peer_trusted_ca_file: String,
    /// Enable peer client cert authentication.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value_t = false, action = clap::ArgAction::Set)]
    pub peer_client_cert_auth: bool,
    /// Path to the peer certificate revocation list file.
    #[arg(long, default_value = "")]
    pub peer_crl_file: String,
    /// Allowed TLS common name for inter-peer authentication.
    #[arg(long, default_value = "")]
    pub peer_cert_allowed_cn: String,
    /// Allowed TLS host name for inter-peer authentication.
    #[arg(long, default_value = "")]
    pub peer_cert_allowed_hostname: String,
    /// Peer TLS using generated certificates.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value_t = false, action = clap::ArgAction::Set)]
    pub peer_auto_tls: bool,
    /// The validity period of the client and peer certificates generated by auto TLS, in years.
    #[arg(long, default_value_t = 1)]
    pub self_signed_cert_validity: u32,
    /// Comma-separated list of supported TLS cipher suites between client/server and peers
    /// (empty: rustls' defaults). TLS 1.3 suites are not configurable.
    #[arg(long, default_value = "", value_delimiter = ',')]
    pub cipher_suites: Vec<String>,
    /// Minimum TLS version supported (TLS1.2 or TLS1.3).
    #[arg(long, default_value = "")]
    pub tls_min_version: String,
    /// Maximum TLS version supported (TLS1.2 or TLS1.3; empty: the highest).
    #[arg(long, default_value = "")]
    pub tls_max_version: String,
}

/// One member of `--initial-cluster`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The member's name.
    pub name: String,
    /// The member's peer URLs.
    pub peer_urls: Vec<String>,
}

/// A configuration etcd would refuse too.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A URL that is not `http://host:port`, `https://host:port`, `unix://path` or
    /// `unixs://path`.
    #[error("invalid URL {url:?} in --{flag}: expected http(s)://host:port or unix(s)://path")]
    InvalidUrl {
        /// The flag it came from.
        flag: &'static str,
        /// The URL.
        url: String,
    },
    /// `--initial-cluster` does not parse.
    #[error("invalid --initial-cluster entry {0:?}: expected name=url")]
    InvalidInitialCluster(String),
    /// This member's name is missing from `--initial-cluster`.
    #[error("couldn't find local name {0:?} in the initial cluster configuration")]
    NameNotInCluster(String),
    /// The election timeout must exceed five heartbeats, like etcd requires.
    #[error(
        "--election-timeout[{election}ms] should be at least as 5 times as --heartbeat-interval[{heartbeat}ms]"
    )]
    ElectionTimeoutTooShort {
        /// The election timeout.
        election: u64,
        /// The heartbeat interval.
        heartbeat: u64,
    },
    /// A value that must be positive is not.
    #[error("--{0} must be greater than 0")]
    NotPositive(&'static str),
    /// An https (or unixs) URL to listen on without a certificate to serve it with: refused
    /// rather than served in plaintext (etcd's message).
    #[error("TLS key/cert ({flags}) must be provided for {side} url {url} with HTTPS scheme")]
    TlsWithoutCertificate {
        /// `client` or `peer`.
        side: &'static str,
        /// The URL.
        url: String,
        /// The flags that provide the certificate.
        flags: &'static str,
    },
    /// `--client-cert-auth` (or its peer twin) without a CA to verify certificates against.
    #[error("--{0} needs --{1}: client certificates are verified against it")]
    CertAuthWithoutCa(&'static str, &'static str),
    /// Two flags that cannot be given together.
    #[error("--{0} and --{1} are mutually exclusive")]
    MutuallyExclusive(&'static str, &'static str),
    /// A combination ferrocd refuses where etcd would accept it, for safety (the message says
    /// why and what to set).
    #[error("{0}")]
    Refused(&'static str),
    /// An auto-compaction setting etcd does not know.
    #[error("invalid auto-compaction setting: {0}")]
    InvalidAutoCompaction(String),
    /// A compatibility flag at a value that needs a feature ferrocd lacks.
    #[error(transparent)]
    Unsupported(#[from] compat::Unsupported),
    /// Log outputs etcd refuses.
    #[error("--log-outputs: {0}")]
    LogOutputs(String),
}

/// A client, metrics or peer URL, as etcd takes them: `http://host:port`, `https://host:port`,
/// or a unix socket, `unix://…` or `unixs://…` (TLS), whose path is the URL's host and path, as
/// in etcd: `unix://localhost:2379` is the file `localhost:2379` in the working directory,
/// `unix:///run/etcd.sock` an absolute path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientUrl {
    /// A TCP address.
    Tcp {
        /// `host:port` (an IPv6 host bracketed).
        host_port: String,
        /// `https`.
        tls: bool,
    },
    /// A unix socket.
    Unix {
        /// The socket file.
        path: String,
        /// `unixs`.
        tls: bool,
    },
}

impl ClientUrl {
    /// Parses `url`; `None` if it is none of etcd's client URL forms.
    pub fn parse(url: &str) -> Option<ClientUrl> {
        let (scheme, rest) = url.split_once("://")?;
        match scheme {
            "http" | "https" => {
                let host_port = rest.split('/').next().unwrap_or_default();
                let (host, port) = host_port.rsplit_once(':')?;
                (!host.is_empty() && port.parse::<u16>().is_ok()).then(|| ClientUrl::Tcp {
                    host_port: host_port.to_owned(),
                    tls: scheme == "https",
                })
            }
            "unix" | "unixs" => (!rest.is_empty()).then(|| ClientUrl::Unix {
                path: rest.to_owned(),
                tls: scheme == "unixs",
            }),
            _ => None,
        }
    }

    /// Whether it is served over TLS (`https`, `unixs`).
    pub fn tls(&self) -> bool {
        match self {
            ClientUrl::Tcp { tls, .. } | ClientUrl::Unix { tls, .. } => *tls,
        }
    }
}

/// Client and peer URLs: every form of [`ClientUrl`].
fn check_urls(flag: &'static str, urls: &[String]) -> Result<(), ConfigError> {
    match urls.iter().find(|u| ClientUrl::parse(u).is_none()) {
        Some(url) => Err(ConfigError::InvalidUrl {
            flag,
            url: url.clone(),
        }),
        None => Ok(()),
    }
}

impl Config {
    /// Never plaintext behind an https URL: each https listen URL needs a certificate and key,
    /// or auto TLS. Client certificate authentication needs a trusted CA.
    fn check_tls(&self) -> Result<(), ConfigError> {
        let t = &self.tls;
        let client_has_cert = !t.cert_file.is_empty() && !t.key_file.is_empty();
        let peer_has_cert = !t.peer_cert_file.is_empty() && !t.peer_key_file.is_empty();
        let metrics = self.metrics_urls();
        for (side, urls, ok, flags) in [
            (
                "client",
                &self.listen_client_urls,
                client_has_cert || t.auto_tls,
                "--cert-file, --key-file",
            ),
            (
                "metrics",
                &metrics,
                client_has_cert || t.auto_tls,
                "--cert-file, --key-file",
            ),
            (
                "peer",
                &self.listen_peer_urls,
                peer_has_cert || t.peer_auto_tls,
                "--peer-cert-file, --peer-key-file",
            ),
        ] {
            if let Some(url) = urls
                .iter()
                .find(|u| ClientUrl::parse(u).is_some_and(|c| c.tls()))
                && !ok
            {
                return Err(ConfigError::TlsWithoutCertificate {
                    side,
                    url: url.clone(),
                    flags,
                });
            }
        }
        if t.client_cert_auth && t.trusted_ca_file.is_empty() {
            return Err(ConfigError::CertAuthWithoutCa(
                "client-cert-auth",
                "trusted-ca-file",
            ));
        }
        if !t.peer_cert_allowed_cn.is_empty() && !t.peer_cert_allowed_hostname.is_empty() {
            return Err(ConfigError::MutuallyExclusive(
                "peer-cert-allowed-cn",
                "peer-cert-allowed-hostname",
            ));
        }
        if t.peer_client_cert_auth && t.peer_trusted_ca_file.is_empty() && !t.peer_auto_tls {
            return Err(ConfigError::CertAuthWithoutCa(
                "peer-client-cert-auth",
                "peer-trusted-ca-file",
            ));
        }
        if peer_has_cert && t.peer_trusted_ca_file.is_empty() && !t.peer_auto_tls {
            // etcd would verify peers against the system's roots; ferrocd has none to use, and
            // never dials a peer it cannot verify.
            return Err(ConfigError::Refused(
                "--peer-cert-file needs --peer-trusted-ca-file to verify the other members' \
                 certificates (or --peer-auto-tls, encryption without authentication)",
            ));
        }
        Ok(())
    }

    /// `--listen-metrics-urls`, without the empty entry its default parses to.
    pub fn metrics_urls(&self) -> Vec<String> {
        self.listen_metrics_urls
            .iter()
            .filter(|u| !u.is_empty())
            .cloned()
            .collect()
    }

    /// Where and how to log.
    pub fn log_settings(&self) -> LogSettings {
        LogSettings {
            logger: self.logger,
            level: if self.debug {
                LogLevel::Debug
            } else {
                self.log_level
            },
            outputs: self.log_outputs.clone(),
        }
    }

    /// The member's files: `member/{wal,snap,backend}` under the data directory, the WAL in
    /// `--wal-dir` when given.
    pub fn data_paths(&self) -> node::snapshot::DataPaths {
        let mut paths = node::snapshot::DataPaths::new(self.data_dir.as_ref());
        if !self.wal_dir.is_empty() {
            paths.wal = PathBuf::from(&self.wal_dir);
        }
        paths
    }

    /// Settings that are accepted but have no effect, to be logged at start-up.
    pub fn warnings(&self) -> Vec<String> {
        self.compat.check().unwrap_or_default()
    }

    /// Checks the configuration as etcd does at start-up.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_urls("listen-client-urls", &self.listen_client_urls)?;
        check_urls("advertise-client-urls", &self.advertise_client_urls)?;
        check_urls("listen-peer-urls", &self.listen_peer_urls)?;
        check_urls("listen-metrics-urls", &self.metrics_urls())?;
        check_urls(
            "initial-advertise-peer-urls",
            &self.initial_advertise_peer_urls,
        )?;
        self.check_tls()?;
        if self.heartbeat_interval == 0 {
            return Err(ConfigError::NotPositive("heartbeat-interval"));
        }
        if self.snapshot_count == 0 {
            return Err(ConfigError::NotPositive("snapshot-count"));
        }
        if self.election_timeout < 5 * self.heartbeat_interval {
            return Err(ConfigError::ElectionTimeoutTooShort {
                election: self.election_timeout,
                heartbeat: self.heartbeat_interval,
            });
        }
        match self.auto_compaction_mode.as_str() {
            "periodic" | "revision" => {}
            other => {
                return Err(ConfigError::InvalidAutoCompaction(format!(
                    "mode {other:?}"
                )));
            }
        }
        self.auto_compaction_retention()?;
        let members = self.initial_members()?;
        if self.initial_cluster_state == InitialClusterState::New
            && !members.iter().any(|m| m.name == self.name)
        {
            return Err(ConfigError::NameNotInCluster(self.name.clone()));
        }
        self.compat.check()?;
        self.log_settings()
            .validate()
            .map_err(|e| ConfigError::LogOutputs(e.to_string()))?;
        Ok(())
    }

    /// The members of `--initial-cluster`, with the URLs of repeated names gathered.
    pub fn initial_members(&self) -> Result<Vec<Member>, ConfigError> {
        let mut members: Vec<Member> = Vec::new();
        for entry in self
            .initial_cluster
            .split(',')
            .filter(|e| !e.trim().is_empty())
        {
            let (name, url) = entry
                .trim()
                .split_once('=')
                .filter(|(n, u)| !n.is_empty() && !u.is_empty())
                .ok_or_else(|| ConfigError::InvalidInitialCluster(entry.to_owned()))?;
            check_urls("initial-cluster", &[url.to_owned()])?;
            match members.iter_mut().find(|m| m.name == name) {
                Some(m) => m.peer_urls.push(url.to_owned()),
                None => members.push(Member {
                    name: name.to_owned(),
                    peer_urls: vec![url.to_owned()],
                }),
            }
        }
        Ok(members)
    }

    /// The auto-compaction retention: a duration (`periodic`; a bare number means hours) or a
    /// number of revisions (`revision`). `None` when disabled.
    pub fn auto_compaction_retention(&self) -> Result<Option<Retention>, ConfigError> {
        let raw = self.auto_compaction_retention.trim();
        let bad = || ConfigError::InvalidAutoCompaction(format!("retention {raw:?}"));
        if self.auto_compaction_mode == "revision" {
            let revisions: i64 = raw.parse().map_err(|_| bad())?;
            return match revisions {
                0 => Ok(None),
                n if n > 0 => Ok(Some(Retention::Revisions(n))),
                _ => Err(bad()),
            };
        }
        let duration = if let Ok(hours) = raw.parse::<u64>() {
            Duration::from_secs(hours.checked_mul(3600).ok_or_else(bad)?)
        } else {
            let (number, unit) = raw.split_at(
                raw.find(|c: char| c.is_ascii_alphabetic())
                    .ok_or_else(bad)?,
            );
            let n: u64 = number.parse().map_err(|_| bad())?;
            let secs = match unit {
                "s" => Some(n),
                "m" => n.checked_mul(60),
                "h" => n.checked_mul(3600),
                _ => None,
            };
            Duration::from_secs(secs.ok_or_else(bad)?)
        };
        Ok((!duration.is_zero()).then_some(Retention::Period(duration)))
    }
}

/// How much history auto-compaction keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    /// Keep this much time of history.
    Period(Duration),
    /// Keep this many revisions.
    Revisions(i64),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use super::*;

    fn parse(args: &[&str]) -> Config {
        let mut argv = vec!["ferrocd"];
        argv.extend_from_slice(args);
        match Config::try_parse_from(argv) {
            Ok(c) => c,
            Err(e) => panic!("test arguments do not parse: {e}"),
        }
    }

    #[test]
    fn defaults_are_etcds_and_valid() {
        let c = parse(&[]);
        assert_eq!(c.name, "default");
        assert_eq!(c.data_dir, "default.ferrocd");
        assert_eq!(c.listen_client_urls, vec!["http://localhost:2379"]);
        assert_eq!(c.heartbeat_interval, 100);
        assert_eq!(c.election_timeout, 1000);
        assert_eq!(c.max_request_bytes, 1_572_864);
        assert_eq!(c.max_concurrent_streams, u32::MAX);
        assert_eq!(c.backend, BackendKind::Lmdb);
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.auto_compaction_retention(), Ok(None));
    }

    #[test]
    fn client_urls_are_etcds_forms_unix_sockets_included() {
        let tcp = |hp: &str, tls| ClientUrl::Tcp {
            host_port: hp.to_owned(),
            tls,
        };
        let unix = |p: &str, tls| ClientUrl::Unix {
            path: p.to_owned(),
            tls,
        };
        assert_eq!(
            ClientUrl::parse("http://127.0.0.1:2379"),
            Some(tcp("127.0.0.1:2379", false))
        );
        assert_eq!(
            ClientUrl::parse("https://[::1]:2379/"),
            Some(tcp("[::1]:2379", true))
        );
        // etcd's: the socket is the URL's host and path.
        assert_eq!(
            ClientUrl::parse("unix://localhost:2379"),
            Some(unix("localhost:2379", false))
        );
        assert_eq!(
            ClientUrl::parse("unixs:///run/etcd.sock"),
            Some(unix("/run/etcd.sock", true))
        );
        for bad in [
            "127.0.0.1:2379",
            "http://127.0.0.1",
            "ftp://h:1",
            "unix://",
            "http://:1",
        ] {
            assert_eq!(ClientUrl::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn unix_socket_urls_are_taken_for_clients_and_peers() {
        let ok = parse(&[
            "--listen-client-urls",
            "http://127.0.0.1:2379,unix:///tmp/ferrocd.sock",
            "--listen-peer-urls",
            "unix://etcd.unix:1",
            "--initial-advertise-peer-urls",
            "unix://etcd.unix:1",
            "--initial-cluster",
            "default=unix://etcd.unix:1",
        ]);
        assert!(ok.validate().is_ok(), "{:?}", ok.validate());
        // unixs is TLS: never plaintext behind it.
        let unixs = parse(&["--listen-client-urls", "unixs:///tmp/ferrocd.sock"]);
        assert!(matches!(
            unixs.validate(),
            Err(ConfigError::TlsWithoutCertificate { .. })
        ));
        let peer = parse(&[
            "--listen-peer-urls",
            "unixs://etcd.unix:1",
            "--initial-advertise-peer-urls",
            "unixs://etcd.unix:1",
            "--initial-cluster",
            "default=unixs://etcd.unix:1",
        ]);
        assert!(matches!(
            peer.validate(),
            Err(ConfigError::TlsWithoutCertificate { side: "peer", .. })
        ));
        let bad = parse(&["--listen-peer-urls", "unix://"]);
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn an_https_url_without_a_certificate_is_refused_naming_the_flags() {
        let client = parse(&[
            "--listen-client-urls",
            "https://127.0.0.1:2379",
            "--advertise-client-urls",
            "https://127.0.0.1:2379",
        ]);
        let err = client.validate().expect_err("https without a certificate");
        assert_eq!(
            err.to_string(),
            "TLS key/cert (--cert-file, --key-file) must be provided for client url \
             https://127.0.0.1:2379 with HTTPS scheme"
        );
        let peer = parse(&[
            "--listen-peer-urls",
            "https://127.0.0.1:2380",
            "--initial-advertise-peer-urls",
            "https://127.0.0.1:2380",
            "--initial-cluster",
            "default=https://127.0.0.1:2380",
        ]);
        let err = peer.validate().expect_err("https without a certificate");
        assert!(
            err.to_string()
                .contains("(--peer-cert-file, --peer-key-file)"),
            "{err}"
        );
        // Mixed: http beside https is refused too, for the https one.
        let mixed = parse(&[
            "--listen-client-urls",
            "http://127.0.0.1:2379,https://127.0.0.1:2381",
        ]);
        assert!(mixed.validate().is_err());
    }

    #[test]
    fn an_https_client_url_is_served_with_a_certificate_or_auto_tls() {
        let https = [
            "--listen-client-urls",
            "https://127.0.0.1:2379",
            "--advertise-client-urls",
            "https://127.0.0.1:2379",
        ];
        let with = |extra: &[&str]| {
            let mut args = https.to_vec();
            args.extend_from_slice(extra);
            parse(&args).validate()
        };
        assert_eq!(
            with(&["--cert-file", "c.pem", "--key-file", "k.pem"]),
            Ok(())
        );
        assert_eq!(with(&["--auto-tls"]), Ok(()));
        assert!(
            with(&["--cert-file", "c.pem"]).is_err(),
            "a key is needed too"
        );
        assert_eq!(
            with(&["--auto-tls", "--client-cert-auth"]),
            Err(ConfigError::CertAuthWithoutCa(
                "client-cert-auth",
                "trusted-ca-file"
            ))
        );
        // A list flag given twice: the last wins, as Go's flags do.
        let urls = parse(&[
            "--listen-client-urls",
            "http://127.0.0.1:1",
            "--listen-client-urls",
            "http://127.0.0.1:2,http://127.0.0.1:3",
        ]);
        assert_eq!(
            urls.listen_client_urls,
            vec!["http://127.0.0.1:2", "http://127.0.0.1:3"]
        );
        // Given twice, as etcd's e2e suite does: the last wins, no error.
        let twice = with(&[
            "--cert-file",
            "c.pem",
            "--key-file",
            "k.pem",
            "--trusted-ca-file",
            "ca.pem",
            "--client-cert-auth",
            "--client-cert-auth",
        ]);
        assert_eq!(twice, Ok(()));
    }

    #[test]
    fn peer_certificates_need_a_ca_to_verify_the_others() {
        let https_peer = [
            "--listen-peer-urls",
            "https://127.0.0.1:2380",
            "--initial-advertise-peer-urls",
            "https://127.0.0.1:2380",
            "--initial-cluster",
            "default=https://127.0.0.1:2380",
        ];
        let with = |extra: &[&str]| {
            let mut args = https_peer.to_vec();
            args.extend_from_slice(extra);
            parse(&args).validate()
        };
        let files = ["--peer-cert-file", "c.pem", "--peer-key-file", "k.pem"];
        let err = with(&files).expect_err("no CA to verify the others");
        assert!(err.to_string().contains("--peer-trusted-ca-file"), "{err}");
        let mut with_ca = files.to_vec();
        with_ca.extend(["--peer-trusted-ca-file", "ca.pem"]);
        assert_eq!(with(&with_ca), Ok(()));
        assert_eq!(with(&["--peer-auto-tls"]), Ok(()));
        let mut both = with_ca.clone();
        both.extend([
            "--peer-cert-allowed-cn",
            "a",
            "--peer-cert-allowed-hostname",
            "b",
        ]);
        assert_eq!(
            with(&both),
            Err(ConfigError::MutuallyExclusive(
                "peer-cert-allowed-cn",
                "peer-cert-allowed-hostname"
            ))
        );
    }

    #[test]
    fn go_boolean_flags_take_no_value_or_an_equals_value() {
        assert!(!parse(&[]).experimental_initial_corrupt_check);
        assert!(
            parse(&["--experimental-initial-corrupt-check"]).experimental_initial_corrupt_check
        );
        assert!(
            parse(&["--experimental-initial-corrupt-check=true"])
                .experimental_initial_corrupt_check
        );
        assert!(
            !parse(&["--experimental-initial-corrupt-check=false"])
                .experimental_initial_corrupt_check
        );
        let bad = Config::try_parse_from(["ferrocd", "--experimental-initial-corrupt-check=maybe"]);
        assert!(bad.is_err());
    }

    #[test]
    fn an_etcd_three_member_command_line_parses() {
        let c = parse(&[
            "--name",
            "infra1",
            "--listen-client-urls",
            "http://127.0.0.1:2379",
            "--advertise-client-urls",
            "http://127.0.0.1:2379",
            "--listen-peer-urls",
            "http://127.0.0.1:12380",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:12380",
            "--initial-cluster-token",
            "etcd-cluster-1",
            "--initial-cluster",
            "infra1=http://127.0.0.1:12380,infra2=http://127.0.0.1:22380,infra3=http://127.0.0.1:32380",
            "--initial-cluster-state",
            "new",
        ]);
        assert_eq!(c.validate(), Ok(()));
        let members = c.initial_members().unwrap_or_default();
        assert_eq!(members.len(), 3);
        assert_eq!(members[1].peer_urls, vec!["http://127.0.0.1:22380"]);
    }

    #[test]
    fn bad_configurations_are_refused_with_etcds_reasons() {
        let c = parse(&["--election-timeout", "400"]);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::ElectionTimeoutTooShort { .. })
        ));
        let c = parse(&["--name", "x"]);
        assert_eq!(c.validate(), Err(ConfigError::NameNotInCluster("x".into())));
        let c = parse(&["--listen-client-urls", "localhost:2379"]);
        assert!(matches!(c.validate(), Err(ConfigError::InvalidUrl { .. })));
        let c = parse(&["--initial-cluster", "default"]);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::InvalidInitialCluster(_))
        ));
        let c = parse(&["--auto-compaction-retention", "5x"]);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::InvalidAutoCompaction(_))
        ));
    }

    #[test]
    fn retention_units_follow_etcd() {
        let c = parse(&["--auto-compaction-retention", "1"]);
        assert_eq!(
            c.auto_compaction_retention(),
            Ok(Some(Retention::Period(Duration::from_secs(3600))))
        );
        let c = parse(&["--auto-compaction-retention", "30m"]);
        assert_eq!(
            c.auto_compaction_retention(),
            Ok(Some(Retention::Period(Duration::from_secs(1800))))
        );
        let c = parse(&[
            "--auto-compaction-mode",
            "revision",
            "--auto-compaction-retention",
            "1000",
        ]);
        assert_eq!(
            c.auto_compaction_retention(),
            Ok(Some(Retention::Revisions(1000)))
        );
    }
}
