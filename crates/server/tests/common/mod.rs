//! Shared by the integration tests: start the real `ferrocd` binary on free ports in a
//! tempdir, kill it on drop (even on panic), and run Debian's `etcdctl` 3.4 against it. Every
//! wait is bounded.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::ffi::OsString;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs etcdctl 3.4.
pub const ETCDCTL: &str = "/usr/bin/etcdctl";

/// A free TCP port on 127.0.0.1 that no other test of this process gets ([`testkit::ports`]).
pub fn free_port() -> u16 {
    testkit::free_port().expect("no free port")
}

pub mod curl;
pub mod pki;

/// One member's ports and name.
#[derive(Clone, Debug)]
pub struct MemberSpec {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    /// `http`, or `https` for a member serving clients over TLS.
    pub client_scheme: &'static str,
    /// `http`, or `https` for a member talking to its peers over TLS.
    pub peer_scheme: &'static str,
}

impl MemberSpec {
    pub fn new(name: &str) -> MemberSpec {
        MemberSpec {
            name: name.to_owned(),
            client_port: free_port(),
            peer_port: free_port(),
            client_scheme: "http",
            peer_scheme: "http",
        }
    }

    /// A member serving clients over TLS (`https`).
    pub fn new_tls(name: &str) -> MemberSpec {
        MemberSpec {
            client_scheme: "https",
            ..MemberSpec::new(name)
        }
    }

    pub fn client_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.client_scheme, self.client_port)
    }

    /// A member talking to its peers over TLS (`https` peer URL).
    pub fn new_peer_tls(name: &str) -> MemberSpec {
        MemberSpec {
            peer_scheme: "https",
            ..MemberSpec::new(name)
        }
    }

    pub fn peer_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.peer_scheme, self.peer_port)
    }

    /// What etcdctl is given: `host:port`, or the https URL for a TLS member.
    pub fn endpoint(&self) -> String {
        if self.client_scheme == "https" {
            return self.client_url();
        }
        format!("127.0.0.1:{}", self.client_port)
    }
}

/// A running `ferrocd`, killed when dropped.
pub struct Ferrocd {
    pub spec: MemberSpec,
    pub child: Option<Child>,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    /// `--initial-cluster` and the extra flags it was started with, to restart it the same way.
    initial_cluster: String,
    extra: Vec<String>,
    /// Extra environment variables (fault-injection shims), kept for restarts.
    env: Vec<(String, OsString)>,
    /// Flags every etcdctl run against it gets (`--cacert`, `--cert`, `--key` for TLS).
    pub ctl_flags: Vec<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Ferrocd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            print_log_tail(&format!("ferrocd {}", self.spec.name), &self.log, 40);
        }
    }
}

/// Prints the last `lines` lines of the log at `path` to stderr (for a failing test).
pub fn print_log_tail(what: &str, path: &Path, lines: usize) {
    let Ok(log) = std::fs::read_to_string(path) else {
        return;
    };
    eprintln!("--- {what} log (last lines) ---");
    let tail: Vec<&str> = log.lines().rev().take(lines).collect();
    for l in tail.into_iter().rev() {
        eprintln!("{l}");
    }
}

fn spawn(
    spec: &MemberSpec,
    data_dir: &Path,
    initial_cluster: &str,
    extra: &[&str],
    env: &[(String, OsString)],
) -> Child {
    let log = data_dir.with_extension("log");
    // Appended to, so that a restarted member's log follows its previous run's.
    let out = std::fs::File::options()
        .create(true)
        .append(true)
        .open(&log)
        .expect("log file");
    Command::new(env!("CARGO_BIN_EXE_ferrocd"))
        .args(["--name", &spec.name])
        .args(["--data-dir", data_dir.to_str().expect("utf-8 path")])
        .args(["--listen-client-urls", &spec.client_url()])
        .args(["--advertise-client-urls", &spec.client_url()])
        .args(["--listen-peer-urls", &spec.peer_url()])
        .args(["--initial-advertise-peer-urls", &spec.peer_url()])
        .args(["--initial-cluster", initial_cluster])
        .args(["--initial-cluster-token", "test-cluster"])
        .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
        .args(extra)
        // A start-up error's message, not a page of anyhow backtrace, ends up in the log tail
        // (panics still print backtraces under RUST_BACKTRACE).
        .env("RUST_LIB_BACKTRACE", "0")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(out)
        .spawn()
        .expect("spawning ferrocd")
}

impl Ferrocd {
    /// A single-member cluster with `extra` flags, ready (it has a leader) when this returns.
    pub fn start_with(extra: &[&str]) -> Ferrocd {
        Ferrocd::start_single(MemberSpec::new("default"), extra, &[])
    }

    /// A single member serving clients over TLS on an https URL, with `extra` flags (the
    /// certificate flags); etcdctl runs against it with `ctl_flags`. Ready when this returns.
    pub fn start_tls(extra: &[&str], ctl_flags: &[&str]) -> Ferrocd {
        Ferrocd::start_single(MemberSpec::new_tls("default"), extra, ctl_flags)
    }

    /// A single-member cluster of `spec` (made beforehand, to name its URLs in `extra`),
    /// etcdctl running against it with `ctl_flags`; ready when this returns.
    pub fn start_single(spec: MemberSpec, extra: &[&str], ctl_flags: &[&str]) -> Ferrocd {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        let initial = format!("default={}", spec.peer_url());
        let child = spawn(&spec, &data_dir, &initial, extra, &[]);
        let mut f = Ferrocd {
            log: data_dir.with_extension("log"),
            spec,
            child: Some(child),
            data_dir,
            initial_cluster: initial,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            env: Vec::new(),
            ctl_flags: ctl_flags.iter().map(|s| (*s).to_owned()).collect(),
            _dir: Some(dir),
        };
        f.wait_ready(Duration::from_secs(30));
        f
    }

    /// A single-member cluster with default flags.
    pub fn start() -> Ferrocd {
        Ferrocd::start_with(&[])
    }

    /// Member `spec` of the cluster `initial` (not waited for).
    pub fn start_member(spec: MemberSpec, initial: &str, dir: &Path) -> Ferrocd {
        Ferrocd::start_member_with(spec, initial, dir, &[])
    }

    /// Member `spec` of the cluster `initial` with `extra` flags (not waited for).
    pub fn start_member_with(
        spec: MemberSpec,
        initial: &str,
        dir: &Path,
        extra: &[&str],
    ) -> Ferrocd {
        Ferrocd::start_member_env(spec, initial, dir, extra, Vec::new())
    }

    /// Member `spec` of the cluster `initial` with `extra` flags and `env` added to its
    /// environment, on every start (not waited for).
    pub fn start_member_env(
        spec: MemberSpec,
        initial: &str,
        dir: &Path,
        extra: &[&str],
        env: Vec<(String, OsString)>,
    ) -> Ferrocd {
        let data_dir = dir.join(&spec.name);
        let child = spawn(&spec, &data_dir, initial, extra, &env);
        Ferrocd {
            log: data_dir.with_extension("log"),
            spec,
            child: Some(child),
            data_dir,
            initial_cluster: initial.to_owned(),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            env,
            ctl_flags: Vec::new(),
            _dir: None,
        }
    }

    /// A member started with exactly `args` and `env`: none of the harness's flags, and no
    /// `RUST_LOG`, for tests of how the configuration itself is read. `spec` names the ports
    /// that the arguments, the environment or a config file give it. Not waited for; not
    /// restartable.
    pub fn start_bare(
        spec: MemberSpec,
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Ferrocd {
        let log = dir.join("ferrocd.log");
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_ferrocd"))
            .args(args)
            .env_remove("RUST_LOG")
            .env("RUST_LIB_BACKTRACE", "0")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("spawning ferrocd");
        Ferrocd {
            log,
            spec,
            child: Some(child),
            data_dir: dir.join("data"),
            initial_cluster: String::new(),
            extra: Vec::new(),
            env: Vec::new(),
            ctl_flags: Vec::new(),
            _dir: None,
        }
    }

    /// Kills the process with SIGKILL (no chance to flush or clean up) and reaps it.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reaping ferrocd");
    }

    /// Sends SIGTERM and waits (at most `timeout`) for the process to exit.
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success());
        self.wait_exit(timeout)
            .unwrap_or_else(|| panic!("ferrocd {} still running after {timeout:?}", self.spec.name))
    }

    /// Waits at most `timeout` for the process to exit by itself; on time-out kills it and
    /// returns `None`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("waiting for ferrocd") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the (stopped) process again with the same data dir and flags, as first started
    /// (`--initial-cluster-state new` included, like etcd on a restart with existing data).
    /// Not waited for.
    pub fn restart(&mut self) {
        assert!(
            self.child.is_none(),
            "ferrocd {} is running",
            self.spec.name
        );
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        self.child = Some(spawn(
            &self.spec,
            &self.data_dir,
            &self.initial_cluster,
            &extra,
            &self.env,
        ));
    }

    /// Replaces the extra flags the next [`Ferrocd::restart`] starts it with.
    pub fn set_extra(&mut self, extra: &[&str]) {
        self.extra = extra.iter().map(|s| (*s).to_owned()).collect();
    }

    /// The log (stderr) of every run so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn endpoint(&self) -> String {
        self.spec.endpoint()
    }

    /// Waits until the client port accepts and a linearizable read succeeds.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("ferrocd {} exited early: {status}", self.spec.name);
            }
            if TcpStream::connect(("127.0.0.1", self.spec.client_port)).is_ok() {
                let mut probe: Vec<&str> = self.ctl_flags.iter().map(String::as_str).collect();
                probe.extend(["get", "ready-probe"]);
                let out = etcdctl_timeout(&self.endpoint(), &probe, "2s");
                if out.status.success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "ferrocd {} not ready within {timeout:?}",
                self.spec.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("running")
    }

    /// How many threads the running process has (`Threads:` in `/proc/PID/status`).
    pub fn threads(&self) -> u64 {
        let status = testkit::process::status(self.pid()).expect("reading /proc/PID/status");
        assert!(status.threads > 0, "no Threads: line");
        status.threads
    }

    /// Runs etcdctl against this member.
    pub fn ctl(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = self.ctl_flags.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        etcdctl(&self.endpoint(), &all)
    }

    /// Runs etcdctl and returns its stdout, asserting success.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Runs etcdctl expecting failure, and returns its stderr.
    pub fn err(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            !out.status.success(),
            "etcdctl {args:?} unexpectedly succeeded"
        );
        String::from_utf8(out.stderr).expect("utf-8 output")
    }

    /// Runs etcdctl with `stdin` (e.g. `txn`), asserting success.
    pub fn ok_stdin(&self, args: &[&str], stdin: &str) -> String {
        let mut child = Command::new(ETCDCTL)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint()))
            .arg("--command-timeout=10s")
            .args(&self.ctl_flags)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning etcdctl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("writing stdin");
        let out = wait_output(child, Duration::from_secs(20));
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// The client URL for the `etcd-client` crate.
    pub fn client_url(&self) -> String {
        self.spec.client_url()
    }
}

/// Waits for `child` at most `timeout` (then kills it) and collects its output. The pipes are
/// drained while it runs, so an output larger than a pipe buffer cannot stall it.
pub fn wait_output(mut child: Child, timeout: Duration) -> Output {
    use std::io::Read;
    fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                break child.wait().expect("reaping a killed child");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for a child: {e}"),
        }
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

pub fn etcdctl_timeout(endpoint: &str, args: &[&str], command_timeout: &str) -> Output {
    let child = Command::new(ETCDCTL)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg(format!("--command-timeout={command_timeout}"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning etcdctl");
    wait_output(child, Duration::from_secs(30))
}

/// Runs etcdctl 3.4 (API v3) against `endpoint`, bounded.
pub fn etcdctl(endpoint: &str, args: &[&str]) -> Output {
    etcdctl_timeout(endpoint, args, "10s")
}

/// A background etcdctl (e.g. `watch`) whose output is collected after `run_for`.
pub struct Background {
    child: Option<Child>,
}

impl Background {
    pub fn start(endpoint: &str, args: &[&str]) -> Background {
        let child = Command::new(ETCDCTL)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning etcdctl");
        Background { child: Some(child) }
    }

    /// Stops the command and returns what it printed.
    pub fn finish(mut self) -> Output {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        wait_output(child, Duration::from_secs(10))
    }

    /// Waits (bounded) for the command to exit by itself.
    pub fn wait(mut self, timeout: Duration) -> Output {
        wait_output(self.child.take().expect("running"), timeout)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Polls `f` until it returns `Some`, at most `timeout`.
pub fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `--initial-cluster` for `specs`: `name=peer-url,...`.
pub fn initial_cluster<'a>(specs: impl IntoIterator<Item = &'a MemberSpec>) -> String {
    specs
        .into_iter()
        .map(|s| format!("{}={}", s.name, s.peer_url()))
        .collect::<Vec<_>>()
        .join(",")
}

/// Starts one member per spec as a new cluster under `dir`, each with the `extra` flags and
/// `env(spec)` added to its environment, and waits until each serves linearizable reads.
pub fn start_cluster(
    dir: &Path,
    specs: &[MemberSpec],
    extra: &[&str],
    env: &dyn Fn(&MemberSpec) -> Vec<(String, OsString)>,
) -> Vec<Ferrocd> {
    let initial = initial_cluster(specs);
    let mut members: Vec<Ferrocd> = specs
        .iter()
        .map(|s| Ferrocd::start_member_env(s.clone(), &initial, dir, extra, env(s)))
        .collect();
    for m in &mut members {
        m.wait_ready(Duration::from_secs(60));
    }
    members
}

/// The leader's index and its member id (hex), once exactly one member leads.
pub fn leader(members: &[Ferrocd]) -> (usize, String) {
    eventually(Duration::from_secs(20), || {
        let statuses: Vec<String> = members
            .iter()
            .map(|m| m.ok(&["endpoint", "status"]))
            .collect();
        let leads: Vec<usize> = (0..members.len())
            .filter(|&i| statuses[i].split(", ").nth(4) == Some("true"))
            .collect();
        match leads[..] {
            [l] => statuses[l].split(", ").nth(1).map(|id| (l, id.to_string())),
            _ => None,
        }
    })
}
