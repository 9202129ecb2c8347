//! Starting etcd and ferrocd clusters on free 127.0.0.1 ports in temporary data directories,
//! waiting (bounded) until they serve linearizable reads, and killing them on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use server::proto::etcdserverpb::RangeRequest;
use server::proto::etcdserverpb::kv_client::KvClient;
use tonic::transport::{Channel, Endpoint};

/// Largest message either side may send us (responses can hold large values).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Which server implementation a cluster runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// The reference: real etcd.
    Etcd,
    /// The implementation under test.
    Ferrocd,
}

impl Flavor {
    /// A short name for output.
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Etcd => "etcd",
            Flavor::Ferrocd => "ferrocd",
        }
    }
}

/// Errors starting a cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// An I/O error (temp dir, log file, free port, spawn).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A member exited before it was ready.
    #[error("{flavor} member {name} exited early ({status}); log {log}:\n{tail}")]
    Exited {
        /// etcd or ferrocd.
        flavor: &'static str,
        /// The member's name.
        name: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its log file.
        log: String,
        /// The last lines of its log.
        tail: String,
    },
    /// A member did not serve a linearizable read in time.
    #[error("{flavor} member {name} not ready within {timeout:?}; log {log}:\n{tail}")]
    NotReady {
        /// etcd or ferrocd.
        flavor: &'static str,
        /// The member's name.
        name: String,
        /// How long we waited.
        timeout: Duration,
        /// Its log file.
        log: String,
        /// The last lines of its log.
        tail: String,
    },
    /// An endpoint URL did not parse.
    #[error("invalid endpoint: {0}")]
    Endpoint(#[from] tonic::transport::Error),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Io { what, source }
}

/// How to start the two kinds of cluster.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// The etcd binary (3.4).
    pub etcd: PathBuf,
    /// The ferrocd binary.
    pub ferrocd: PathBuf,
}

struct Member {
    name: String,
    client_port: u16,
    child: Option<Child>,
    log: PathBuf,
}

/// A running cluster of one kind, killed (every member) when dropped.
pub struct Cluster {
    flavor: Flavor,
    members: Vec<Member>,
    channels: Vec<Channel>,
    _dir: tempfile::TempDir,
}

/// ferrocd's log filter (`RUST_LOG`) in the clusters; `warn` when unset.
pub const FERROCD_LOG_ENV: &str = "DIFFERENTIAL_FERROCD_LOG";

/// Set to keep every cluster's data directories and logs (their paths are printed) for a
/// post-mortem.
pub const KEEP_DIRS_ENV: &str = "DIFFERENTIAL_KEEP_DIRS";

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::env::var_os(KEEP_DIRS_ENV).is_some() {
            self._dir.disable_cleanup(true);
            eprintln!(
                "kept {} data and logs in {}",
                self.flavor.name(),
                self._dir.path().display()
            );
        }
    }
}

/// `n` distinct free ports ([`testkit::ports`]).
fn free_ports(n: usize) -> Result<Vec<u16>, ClusterError> {
    testkit::free_ports(n).map_err(io("finding free ports"))
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    // A Go panic: its message and the first frames, not the bottom of the stack.
    if let Some(at) = all.iter().position(|l| l.contains("panic")) {
        return all[at..]
            .iter()
            .take(8)
            .copied()
            .collect::<Vec<_>>()
            .join("\n");
    }
    let lines: Vec<&str> = all.iter().rev().take(15).copied().collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
}

impl Cluster {
    /// [`Cluster::start`], tried up to three times (on fresh ports): a free port can be taken
    /// by another process between our probe and the server's bind.
    pub async fn start_retrying(
        flavor: Flavor,
        members: usize,
        bins: &Binaries,
        ready_timeout: Duration,
    ) -> Result<Cluster, ClusterError> {
        let mut tries = 0;
        loop {
            tries += 1;
            match Cluster::start(flavor, members, bins, ready_timeout).await {
                Err(ClusterError::Exited { .. }) if tries < 3 => continue,
                other => return other,
            }
        }
    }

    /// Starts `members` members of `flavor` and waits until each serves a linearizable read.
    pub async fn start(
        flavor: Flavor,
        members: usize,
        bins: &Binaries,
        ready_timeout: Duration,
    ) -> Result<Cluster, ClusterError> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("differential-{}-", flavor.name()))
            .tempdir()
            .map_err(io("creating a temp dir"))?;
        let ports = free_ports(members * 2)?;
        let names: Vec<String> = (0..members).map(|i| format!("m{i}")).collect();
        let initial_cluster = names
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{n}=http://127.0.0.1:{}", ports[2 * i + 1]))
            .collect::<Vec<_>>()
            .join(",");
        let binary = match flavor {
            Flavor::Etcd => &bins.etcd,
            Flavor::Ferrocd => &bins.ferrocd,
        };
        let mut cluster = Cluster {
            flavor,
            members: Vec::new(),
            channels: Vec::new(),
            _dir: dir,
        };
        for (i, name) in names.iter().enumerate() {
            let client = format!("http://127.0.0.1:{}", ports[2 * i]);
            let peer = format!("http://127.0.0.1:{}", ports[2 * i + 1]);
            let data_dir = cluster._dir.path().join(name);
            let log = cluster._dir.path().join(format!("{name}.log"));
            let out = std::fs::File::create(&log).map_err(io("creating a log file"))?;
            let mut cmd = Command::new(binary);
            cmd.arg("--name")
                .arg(name)
                .arg("--data-dir")
                .arg(&data_dir)
                .args(["--listen-client-urls", &client])
                .args(["--advertise-client-urls", &client])
                .args(["--listen-peer-urls", &peer])
                .args(["--initial-advertise-peer-urls", &peer])
                .args(["--initial-cluster", &initial_cluster])
                .args(["--initial-cluster-token", "differential"])
                .args(["--initial-cluster-state", "new"])
                // Fast elections so that clusters are ready quickly; the same for both.
                .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(out);
            if flavor == Flavor::Ferrocd {
                // Warnings only, unless a post-mortem asks for more (e.g. `info,mvcc=debug`).
                let filter = std::env::var(FERROCD_LOG_ENV).unwrap_or_else(|_| "warn".into());
                cmd.env("RUST_LOG", filter);
            }
            let child = cmd
                .spawn()
                .map_err(io(format!("starting {}", binary.display())))?;
            cluster.members.push(Member {
                name: name.clone(),
                client_port: ports[2 * i],
                child: Some(child),
                log,
            });
            let endpoint = Endpoint::from_shared(client)?
                .connect_timeout(Duration::from_secs(2))
                .tcp_nodelay(true);
            cluster.channels.push(endpoint.connect_lazy());
        }
        cluster.wait_ready(ready_timeout).await?;
        Ok(cluster)
    }

    /// Waits until every member answers a linearizable Range, bounded by `timeout`.
    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), ClusterError> {
        let deadline = Instant::now() + timeout;
        for i in 0..self.members.len() {
            loop {
                let m = &mut self.members[i];
                if let Some(child) = &mut m.child
                    && let Ok(Some(status)) = child.try_wait()
                {
                    return Err(ClusterError::Exited {
                        flavor: self.flavor.name(),
                        name: m.name.clone(),
                        status,
                        log: m.log.display().to_string(),
                        tail: log_tail(&m.log),
                    });
                }
                let mut kv = KvClient::new(self.channels[i].clone());
                let probe = RangeRequest {
                    key: b"differential-ready-probe".to_vec(),
                    ..RangeRequest::default()
                };
                let attempt = tokio::time::timeout(Duration::from_secs(2), kv.range(probe)).await;
                if matches!(attempt, Ok(Ok(_))) {
                    break;
                }
                if Instant::now() >= deadline {
                    let m = &self.members[i];
                    return Err(ClusterError::NotReady {
                        flavor: self.flavor.name(),
                        name: m.name.clone(),
                        timeout,
                        log: m.log.display().to_string(),
                        tail: log_tail(&m.log),
                    });
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// The members that have exited, with their exit status and the end of their log.
    pub fn exited(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for m in &mut self.members {
            if let Some(child) = &mut m.child
                && let Ok(Some(status)) = child.try_wait()
            {
                out.push(format!(
                    "{} member {} exited ({status}); its log ends:\n{}",
                    self.flavor.name(),
                    m.name,
                    log_tail(&m.log)
                ));
            }
        }
        out
    }

    /// Which implementation this is.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no members (never, once started).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// A gRPC channel to member `i` (modulo the member count).
    pub fn channel(&self, i: usize) -> Channel {
        self.channels[i % self.channels.len()].clone()
    }

    /// Member `i`'s client port (modulo the member count).
    pub fn client_port(&self, i: usize) -> u16 {
        self.members[i % self.members.len()].client_port
    }
}
