//! A cluster of real `ferrocd` processes on 127.0.0.1, each behind a fault-injecting peer
//! [`Proxy`], with the process faults the harness injects: `kill -9` and restart on the same
//! data directory, SIGSTOP/SIGCONT, a full disk and failing fsyncs ([`DiskFaults`]), and a
//! member replaced by a new one on a wiped data directory. Every process is killed when the
//! cluster is dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use diskfault::{FsyncFault, FsyncShim, SmallDisk};

use crate::proxy::{Network, Proxy};
use crate::rng::Rng;

/// The heartbeat interval members run with (ms).
pub const HEARTBEAT_MS: u64 = 50;
/// The election timeout members run with (ms); pauses and partitions last longer than this.
pub const ELECTION_MS: u64 = 500;

/// Why a cluster could not be started or driven.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A socket, file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// A disk fault could not be set up or undone.
    #[error("disk fault: {0}")]
    Disk(String),
    /// A path is not UTF-8.
    #[error("path is not UTF-8: {0}")]
    Path(PathBuf),
    /// `kill` refused to signal a member.
    #[error("kill -{signal} {pid} failed")]
    Signal {
        /// The signal's name.
        signal: &'static str,
        /// The member's pid.
        pid: u32,
    },
}

fn disk_error(e: diskfault::DiskFaultError) -> ClusterError {
    ClusterError::Disk(e.to_string())
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Io { what, source }
}

/// A free TCP port on 127.0.0.1 for a member or proxy to bind ([`testkit::ports`]).
pub fn free_port() -> Result<u16, ClusterError> {
    testkit::free_port().map_err(io("finding a free port"))
}

/// One member: its ports, files and (when running) process.
pub struct Member {
    /// `m0`, `m1`, ...
    pub name: String,
    /// The client port (etcd's v3 gRPC API).
    pub client_port: u16,
    /// The port the member's peer listener binds.
    pub peer_port: u16,
    /// The port its proxy listens on: the advertised peer port.
    pub proxy_port: u16,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its log (stderr of every run, appended).
    pub log: PathBuf,
    /// Whether it joins a running cluster (`--initial-cluster-state existing`): a replacement.
    joins: bool,
    /// Its data directory's own small disk, when disk-full faults are available.
    disk: Option<SmallDisk>,
    /// Its fsync fault, when fsync faults are available.
    fsync: Option<FsyncFault>,
    child: Option<Child>,
    paused: bool,
}

impl Member {
    /// Whether the process runs (possibly paused).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Whether the process is stopped by SIGSTOP.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// `http://127.0.0.1:<client port>`.
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The peer URL it advertises (its proxy's).
    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.proxy_port)
    }
}

/// The disk faults a cluster can inject, each available or not (with the reason) on this
/// machine.
#[derive(Debug, Default)]
pub struct DiskFaults {
    /// Each member's data directory on its own tmpfs of this many MiB (needs root).
    pub small_disk_mib: Option<u64>,
    /// The fsync shim every member is started with.
    pub fsync_shim: Option<FsyncShim>,
}

impl DiskFaults {
    /// Sets up what this machine allows under `dir`; the reasons for what it does not are
    /// returned alongside.
    pub fn probe(dir: &Path) -> (DiskFaults, Vec<String>) {
        let mut unavailable = Vec::new();
        let fsync_shim = match FsyncShim::build(&dir.join("fsync-shim")) {
            Ok(shim) => Some(shim),
            Err(e) => {
                unavailable.push(format!("fsync errors: {e}"));
                None
            }
        };
        let small_disk_mib = match SmallDisk::mount(&dir.join("probe-disk"), 1) {
            Ok(disk) => match disk.unmount() {
                Ok(()) => Some(SMALL_DISK_MIB),
                Err(e) => {
                    unavailable.push(format!("full disk: {e}"));
                    None
                }
            },
            Err(e) => {
                unavailable.push(format!("full disk: {e}"));
                None
            }
        };
        (
            DiskFaults {
                small_disk_mib,
                fsync_shim,
            },
            unavailable,
        )
    }
}

/// The size of each member's tmpfs: room for a 64 MiB WAL segment and its successor, the
/// backend and its snapshots under the chaos workload.
const SMALL_DISK_MIB: u64 = 384;

/// A cluster of `ferrocd` processes behind proxies.
pub struct Cluster {
    /// The members, by index.
    pub members: Vec<Member>,
    /// The peer network the proxies obey.
    pub net: Arc<Network>,
    proxies: Vec<Proxy>,
    binary: PathBuf,
    extra: Vec<String>,
    initial_cluster: String,
    token: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Cluster {
    /// Starts `n` members (not yet waited for) with data under `dir` and `extra` flags. With
    /// `proxies`, each member's advertised peer URL is its proxy's; without, the member's own.
    pub async fn start(
        binary: &Path,
        dir: &Path,
        n: usize,
        proxies: bool,
        extra: &[String],
        disk_faults: &DiskFaults,
        rng: &Rng,
    ) -> Result<Cluster, ClusterError> {
        let net = Arc::new(Network::default());
        let mut members = Vec::new();
        let mut proxy_list = Vec::new();
        for i in 0..n {
            let client_port = free_port()?;
            let peer_port = free_port()?;
            let proxy_port = if proxies {
                let target = SocketAddr::from(([127, 0, 0, 1], peer_port));
                let p = Proxy::start(net.clone(), i, target, rng.fork(1000 + i as u64))
                    .await
                    .map_err(io("starting a proxy"))?;
                let port = p.port;
                proxy_list.push(p);
                port
            } else {
                peer_port
            };
            let name = format!("m{i}");
            let data_dir = dir.join(format!("{name}.data"));
            let disk = match disk_faults.small_disk_mib {
                Some(mib) => Some(SmallDisk::mount(&data_dir, mib).map_err(disk_error)?),
                None => None,
            };
            let fsync = match &disk_faults.fsync_shim {
                Some(shim) => Some(
                    shim.fault(dir.join(format!("{name}.fsync-fault")))
                        .map_err(disk_error)?,
                ),
                None => None,
            };
            members.push(Member {
                data_dir,
                log: dir.join(format!("{name}.log")),
                name,
                client_port,
                peer_port,
                proxy_port,
                joins: false,
                disk,
                fsync,
                child: None,
                paused: false,
            });
        }
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.proxy_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Cluster {
            members,
            net,
            proxies: proxy_list,
            binary: binary.to_path_buf(),
            extra: extra.to_vec(),
            initial_cluster,
            token: format!("chaos-{}", rng.clone().next_u64()),
        };
        for i in 0..n {
            c.spawn(i)?;
        }
        Ok(c)
    }

    /// How many proxies the cluster has (0 when started without).
    pub fn proxy_count(&self) -> usize {
        self.proxies.len()
    }

    fn spawn(&mut self, i: usize) -> Result<(), ClusterError> {
        let m = &self.members[i];
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&m.log)
            .map_err(io(format!("opening {}", m.log.display())))?;
        let data_dir = m
            .data_dir
            .to_str()
            .ok_or_else(|| ClusterError::Path(m.data_dir.clone()))?;
        let client = m.client_url();
        let mut command = Command::new(&self.binary);
        if let Some(fault) = &m.fsync {
            fault.apply(&mut command);
        }
        if m.joins {
            command.args(["--initial-cluster-state", "existing"]);
        }
        let child = command
            .args(["--name", &m.name])
            .args(["--data-dir", data_dir])
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args([
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{}", m.peer_port),
            ])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{}", m.proxy_port),
            ])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-token", &self.token])
            .args(["--heartbeat-interval", &HEARTBEAT_MS.to_string()])
            .args(["--election-timeout", &ELECTION_MS.to_string()])
            .args(&self.extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(io(format!("spawning {}", self.binary.display())))?;
        let m = &mut self.members[i];
        m.child = Some(child);
        m.paused = false;
        Ok(())
    }

    /// Fills member `i`'s disk (false if it has no small disk).
    pub fn fill_disk(&self, i: usize) -> Result<bool, ClusterError> {
        match &self.members[i].disk {
            Some(disk) => disk.fill().map(|_| true).map_err(disk_error),
            None => Ok(false),
        }
    }

    /// Frees member `i`'s disk.
    pub fn free_disk(&self, i: usize) -> Result<(), ClusterError> {
        match &self.members[i].disk {
            Some(disk) => disk.free().map_err(disk_error),
            None => Ok(()),
        }
    }

    /// Makes member `i`'s fsyncs fail (`arm`) or work again (false if it has no fsync fault).
    pub fn set_fsync_fault(&self, i: usize, arm: bool) -> Result<bool, ClusterError> {
        match &self.members[i].fsync {
            Some(f) if arm => f.arm().map(|()| true).map_err(disk_error),
            Some(f) => f.disarm().map(|()| true).map_err(disk_error),
            None => Ok(false),
        }
    }

    /// Waits at most `within` for member `i` to exit by itself; its status if it did (the
    /// member is then stopped, ready for [`Cluster::restart`]).
    pub async fn wait_exit(
        &mut self,
        i: usize,
        within: Duration,
    ) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.exited(i) {
                self.members[i].child = None;
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Replaces stopped member `i` by a new member on the same name and ports: its data
    /// directory is wiped and it is started to join the running cluster (it must have been
    /// removed, and the new member added, through the cluster API first).
    pub fn start_replacement(&mut self, i: usize) -> Result<(), ClusterError> {
        self.kill9(i);
        let dir = &self.members[i].data_dir;
        // The directory may be a mount point: empty it rather than remove it.
        if dir.exists() {
            let entries =
                std::fs::read_dir(dir).map_err(io(format!("listing {}", dir.display())))?;
            for entry in entries {
                let path = entry
                    .map_err(io(format!("listing {}", dir.display())))?
                    .path();
                let removed = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                removed.map_err(io(format!("removing {}", path.display())))?;
            }
        }
        self.members[i].joins = true;
        self.spawn(i)
    }

    /// `kill -9` of member `i` (a no-op if it is not running).
    pub fn kill9(&mut self, i: usize) {
        let m = &mut self.members[i];
        if let Some(mut c) = m.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        m.paused = false;
    }

    /// Restarts member `i` on its data directory (kills it first if it runs).
    pub fn restart(&mut self, i: usize) -> Result<(), ClusterError> {
        self.kill9(i);
        self.spawn(i)
    }

    fn signal(&self, i: usize, signal: &'static str) -> Result<(), ClusterError> {
        let Some(child) = self.members[i].child.as_ref() else {
            return Ok(());
        };
        let pid = child.id();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(io("running kill"))?;
        if status.success() {
            Ok(())
        } else {
            Err(ClusterError::Signal { signal, pid })
        }
    }

    /// SIGSTOP of member `i`.
    pub fn pause(&mut self, i: usize) -> Result<(), ClusterError> {
        if self.members[i].child.is_some() && !self.members[i].paused {
            self.signal(i, "STOP")?;
            self.members[i].paused = true;
        }
        Ok(())
    }

    /// SIGCONT of member `i`.
    pub fn resume(&mut self, i: usize) -> Result<(), ClusterError> {
        if self.members[i].paused {
            self.signal(i, "CONT")?;
            self.members[i].paused = false;
        }
        Ok(())
    }

    /// Whether member `i` exited by itself (a crash), with its status.
    pub fn exited(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        self.members[i]
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Undoes every fault: heals the network, frees full disks, makes fsync work again, resumes
    /// paused members and restarts stopped ones.
    pub fn heal_all(&mut self) -> Result<(), ClusterError> {
        self.net.heal();
        for i in 0..self.members.len() {
            self.free_disk(i)?;
            self.set_fsync_fault(i, false)?;
            self.resume(i)?;
            if !self.members[i].is_running() || self.exited(i).is_some() {
                self.restart(i)?;
            }
        }
        Ok(())
    }

    /// The length of member `i`'s log now (a mark for [`Cluster::log_since`]).
    pub fn log_len(&self, i: usize) -> u64 {
        std::fs::metadata(&self.members[i].log).map_or(0, |m| m.len())
    }

    /// Member `i`'s log from byte `from` on (lossy UTF-8; empty if it cannot be read).
    pub fn log_since(&self, i: usize, from: u64) -> String {
        let bytes = std::fs::read(&self.members[i].log).unwrap_or_default();
        let from = usize::try_from(from).unwrap_or(usize::MAX).min(bytes.len());
        String::from_utf8_lossy(&bytes[from..]).into_owned()
    }

    /// The last `lines` lines of member `i`'s log.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.members[i].log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(lines).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

/// Waits `d` (async).
pub async fn pause_for(d: Duration) {
    tokio::time::sleep(d).await;
}
