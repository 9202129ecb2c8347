//! Clusters of etcd or ferrocd members on free 127.0.0.1 ports, for `cargo xtask bench`:
//! started with the same flags (etcd's), watched for readiness, measured (RSS, on-disk size)
//! and always killed (on drop).

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The storage engine of a ferrocd target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Engine {
    /// LMDB, ferrocd's default.
    Lmdb,
    /// RocksDB (needs a ferrocd built with `--features rocks`).
    Rocks,
}

/// A server under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// etcd (bbolt).
    Etcd,
    /// ferrocd on an engine.
    Ferrocd(Engine),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Etcd => f.write_str("etcd"),
            Target::Ferrocd(Engine::Lmdb) => f.write_str("ferrocd-lmdb"),
            Target::Ferrocd(Engine::Rocks) => f.write_str("ferrocd-rocks"),
        }
    }
}

/// How long a cluster may take to elect a leader and serve.
const READY_TIMEOUT_SECS: u64 = 60;
/// How long a member may take to exit once killed.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// A running cluster; its members are killed and its data removed when it is dropped.
pub(crate) struct Cluster {
    members: Vec<Member>,
    /// Client endpoints (`127.0.0.1:port`), one per member.
    pub(crate) endpoints: Vec<String>,
    /// Kept for its drop, which removes the data directories.
    _dir: tempfile::TempDir,
}

struct Member {
    name: String,
    child: Child,
    data_dir: PathBuf,
    log: PathBuf,
}

/// Memory and disk of a cluster's members (the largest member's figures).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Footprint {
    /// Resident set size now, in bytes.
    pub(crate) rss: u64,
    /// Peak resident set size, in bytes.
    pub(crate) hwm: u64,
    /// Bytes allocated on disk by the data directory.
    pub(crate) disk: u64,
    /// The most threads seen while the workload ran ([`Cluster::sample_threads`]).
    pub(crate) threads: u64,
}

/// `n` distinct free ports on 127.0.0.1 ([`testkit::ports`]).
fn free_ports(n: usize) -> Result<Vec<u16>> {
    testkit::free_ports(n).context("finding free ports")
}

/// A CA and a server certificate for 127.0.0.1, made for a benchmark with client TLS: both
/// etcd and ferrocd serve it (`--cert-file`, `--key-file`), and the benchmark trusts the CA.
#[derive(Clone, Debug)]
pub(crate) struct ClientTls {
    /// The CA certificate (PEM), given to the benchmark as `--cacert`.
    pub(crate) ca: PathBuf,
    /// The server certificate (PEM).
    pub(crate) cert: PathBuf,
    /// Its key (PEM).
    pub(crate) key: PathBuf,
}

impl ClientTls {
    /// Makes the CA and the server certificate (ECDSA P-256, as etcd's and Kubernetes'
    /// tooling make them by default) in `dir`.
    pub(crate) fn generate(dir: &Path) -> Result<ClientTls> {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        let tls = ClientTls {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server-key.pem"),
        };
        std::fs::write(&tls.ca, ca_cert.pem())?;
        std::fs::write(&tls.cert, cert.pem())?;
        std::fs::write(&tls.key, key.serialize_pem())?;
        Ok(tls)
    }
}

impl Cluster {
    /// Starts `members` members of `target` from `bin` under a new directory in `data_root`,
    /// serving clients over TLS with `tls`, and waits (with `bench`, the benchmark binary)
    /// until every member serves.
    pub(crate) fn start(
        target: Target,
        bin: &Path,
        bench: &Path,
        members: usize,
        data_root: &Path,
        tls: Option<&ClientTls>,
    ) -> Result<Cluster> {
        std::fs::create_dir_all(data_root)
            .with_context(|| format!("creating {}", data_root.display()))?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("bench-{target}-"))
            .tempdir_in(data_root)
            .context("creating the cluster's data directory")?;
        let ports = free_ports(2 * members)?;
        let (clients, peers) = ports.split_at(members);
        let initial: Vec<String> = peers
            .iter()
            .enumerate()
            .map(|(i, p)| format!("m{i}=http://127.0.0.1:{p}"))
            .collect();
        let token = format!(
            "bench-{}-{}",
            std::process::id(),
            dir.path()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let mut cluster = Cluster {
            members: Vec::new(),
            endpoints: clients
                .iter()
                .map(|p| match tls {
                    Some(_) => format!("https://127.0.0.1:{p}"),
                    None => format!("127.0.0.1:{p}"),
                })
                .collect(),
            _dir: dir,
        };
        for i in 0..members {
            let name = format!("m{i}");
            let data_dir = cluster._dir.path().join(&name);
            let log = cluster._dir.path().join(format!("{name}.log"));
            let scheme = if tls.is_some() { "https" } else { "http" };
            let client_url = format!("{scheme}://127.0.0.1:{}", clients[i]);
            let peer_url = format!("http://127.0.0.1:{}", peers[i]);
            let mut cmd = Command::new(bin);
            cmd.arg("--name")
                .arg(&name)
                .arg("--data-dir")
                .arg(&data_dir)
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &initial.join(",")])
                .args(["--initial-cluster-token", &token])
                .args(["--initial-cluster-state", "new"]);
            if let Target::Ferrocd(Engine::Rocks) = target {
                cmd.args(["--backend", "rocks"]);
            }
            if let Some(tls) = tls {
                cmd.arg("--cert-file")
                    .arg(&tls.cert)
                    .arg("--key-file")
                    .arg(&tls.key);
            }
            let out = std::fs::File::create(&log)
                .with_context(|| format!("creating {}", log.display()))?;
            let err = out.try_clone().context("duplicating the log file")?;
            // Errors in the logs, not backtraces: the log tail is what a failure report shows.
            let child = cmd
                .env_remove("RUST_BACKTRACE")
                .env_remove("RUST_LIB_BACKTRACE")
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            cluster.members.push(Member {
                name,
                child,
                data_dir,
                log,
            });
        }
        // Readiness, failing fast if a member exits (a bad flag, a port taken, ...).
        let mut health = Command::new(bench);
        if let Some(tls) = tls {
            health.arg("--cacert").arg(&tls.ca);
        }
        let mut health = health
            .args(["health", "--no-progress", "--endpoints"])
            .arg(cluster.endpoints.join(","))
            .args(["--timeout-secs", &READY_TIMEOUT_SECS.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bench.display()))?;
        let deadline = Instant::now() + Duration::from_secs(READY_TIMEOUT_SECS + 10);
        let ready = loop {
            if let Some(status) = health.try_wait().context("waiting for readiness")? {
                break status.success();
            }
            if let Err(e) = cluster.check_alive() {
                let _ = health.kill();
                let _ = health.wait();
                return Err(e.context(format!("{target} ({}) failed to start", plural(members))));
            }
            if Instant::now() >= deadline {
                let _ = health.kill();
                let _ = health.wait();
                break false;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if !ready {
            bail!(
                "{target} ({}) did not become ready:\n{}",
                plural(members),
                cluster.log_tails()
            );
        }
        cluster.check_alive()?;
        Ok(cluster)
    }

    /// Fails, with the members' last log lines, if a member has exited.
    pub(crate) fn check_alive(&mut self) -> Result<()> {
        let mut dead = Vec::new();
        for m in &mut self.members {
            if let Some(status) = m.child.try_wait().context("polling a member")? {
                dead.push(format!("{} exited ({status})", m.name));
            }
        }
        if !dead.is_empty() {
            bail!("{}:\n{}", dead.join(", "), self.log_tails());
        }
        Ok(())
    }

    /// The last lines of every member's log.
    fn log_tails(&self) -> String {
        let mut out = String::new();
        for m in &self.members {
            let text = std::fs::read_to_string(&m.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(15)..];
            out.push_str(&format!(
                "--- {} ({})\n{}\n",
                m.name,
                m.log.display(),
                tail.join("\n")
            ));
        }
        out
    }

    /// The largest member's memory and on-disk size, now; `threads` as sampled.
    pub(crate) fn footprint(&self, threads: u64) -> Result<Footprint> {
        let mut f = Footprint {
            threads,
            ..Footprint::default()
        };
        for m in &self.members {
            let s = status(m.child.id())?;
            f.rss = f.rss.max(s.rss);
            f.hwm = f.hwm.max(s.hwm);
            f.threads = f.threads.max(s.threads);
            f.disk = f.disk.max(disk_usage(&m.data_dir)?);
        }
        Ok(f)
    }

    /// The largest member's thread count now (called while a workload runs: a server that
    /// starts a thread per stream shows it only then).
    pub(crate) fn sample_threads(&self) -> Result<u64> {
        let mut most = 0;
        for m in &self.members {
            most = most.max(status(m.child.id())?.threads);
        }
        Ok(most)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            let _ = m.child.kill();
        }
        for m in &mut self.members {
            let deadline = Instant::now() + EXIT_TIMEOUT;
            while Instant::now() < deadline {
                match m.child.try_wait() {
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                    _ => break,
                }
            }
        }
    }
}

/// "1 member", "3 members".
pub(crate) fn plural(members: usize) -> String {
    if members == 1 {
        "1 member".to_owned()
    } else {
        format!("{members} members")
    }
}

/// `/proc/PID/status` of process `pid` ([`testkit::process`]).
fn status(pid: u32) -> Result<testkit::process::ProcStatus> {
    testkit::process::status(pid).context("reading a member's /proc status")
}

/// Bytes allocated on disk under `path` (as `du` counts them: sparse files count what they use).
pub(crate) fn disk_usage(path: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    // Bounded: a data directory holds a few hundred entries at most; symlinks are not followed.
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        };
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let meta = match entry.path().symlink_metadata() {
                Ok(meta) => meta,
                // Files come and go while a server runs (WAL segments, temporary files).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(e).with_context(|| format!("stat {}", entry.path().display()));
                }
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.blocks() * 512;
            }
        }
    }
    Ok(total)
}

/// The system's 1, 5 and 15 minute load averages, as `/proc/loadavg` shows them.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn disk_usage_counts_files_below_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a"), vec![1u8; 10_000]).unwrap();
        let used = disk_usage(dir.path()).unwrap();
        assert!(used >= 10_000, "{used}");
        assert_eq!(disk_usage(&dir.path().join("missing")).unwrap(), 0);
    }

    #[test]
    fn targets_are_named_for_the_report() {
        assert_eq!(Target::Etcd.to_string(), "etcd");
        assert_eq!(Target::Ferrocd(Engine::Rocks).to_string(), "ferrocd-rocks");
    }
}
