//! `cargo xtask conformance etcd-e2e`: etcd 3.4's own end-to-end suite (`tests/e2e`, from
//! Debian's `golang-etcd-server-dev`) with ferrocd as its `etcd` binary and Debian's etcdctl.
//!
//! The suite is built offline in GOPATH mode with Debian's Go. Each test runs in a process of
//! its own (a hung test cannot take the others with it, and the suite's package-level config
//! mutations do not leak between tests), bounded in time; every server it left behind is
//! killed before the next test, since all tests use the same ports. The outcomes are held
//! against `xtask/etcd-e2e/expectations.txt`: a test not listed there must pass, a listed
//! one fails for the reason given there, and a listed one that passes must be taken out of
//! the file (so that the file never hides progress). A test that must pass and fails gets one
//! retry; passing then is reported as flaky, with the first run's output.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::system::{ensure_packages, target_dir};
use crate::{cargo, workspace_root};

/// Where Debian's `golang-etcd-server-dev` puts etcd's sources (a GOPATH).
const GOPATH: &str = "/usr/share/gocode";
/// etcd's package root inside it.
const ETCD_SRC: &str = "/usr/share/gocode/src/go.etcd.io/etcd";
/// Debian's etcdctl 3.4.
const ETCDCTL: &str = "/usr/bin/etcdctl";
/// The longest a test listed as failing may run: 2.5 times the slowest test against etcd here.
const EXPECTED_FAILURE_TIMEOUT: Duration = Duration::from_secs(45);
/// Debian's etcd 3.4 (the baseline).
const ETCD: &str = "/usr/bin/etcd";

/// Which server the suite runs against.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// ferrocd (debug build), held against the expectation file.
    Ferrocd,
    /// Debian's real etcd 3.4: the baseline, reported only.
    Etcd,
}

/// `cargo xtask conformance etcd-e2e` options.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Only the tests whose names match this regular expression (Go's syntax, as `-test.run`).
    #[arg(long)]
    pub run: Option<String>,
    /// The server under test.
    #[arg(long, value_enum, default_value = "ferrocd")]
    pub target: Target,
    /// The longest one test may take, in seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Print the output of every failed test (by default: of the unexpected failures only).
    #[arg(long)]
    pub verbose: bool,
}

impl Args {
    /// Every test, against ferrocd, as CI runs it.
    pub fn defaults() -> Args {
        Args {
            run: None,
            target: Target::Ferrocd,
            timeout: 120,
            verbose: false,
        }
    }
}

/// What the expectation file says of a test.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Expected {
    /// Not listed: it must pass.
    Pass,
    /// It fails today, for this reason (the missing feature and the issue that brings it).
    Fail(String),
    /// Out of scope: not run, for this reason.
    OutOfScope(String),
}

/// The expectation file: lines `PATTERN fail|out-of-scope REASON`, where PATTERN is a test
/// name or a prefix ending in `*`; `#` starts a comment. The first matching line wins.
#[derive(Debug, Default)]
struct Expectations {
    rules: Vec<(String, Expected)>,
}

impl Expectations {
    fn parse(text: &str) -> Result<Expectations> {
        let mut rules = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split_once(" #").map_or(line, |(l, _)| l).trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(pattern), Some(kind)) = (words.next(), words.next()) else {
                bail!(
                    "line {}: expected `PATTERN fail|out-of-scope REASON`",
                    n + 1
                );
            };
            let reason = words.collect::<Vec<_>>().join(" ");
            if reason.is_empty() {
                bail!("line {}: {pattern}: a reason is required", n + 1);
            }
            let expected = match kind {
                "fail" => Expected::Fail(reason),
                "out-of-scope" => Expected::OutOfScope(reason),
                other => bail!("line {}: unknown expectation {other:?}", n + 1),
            };
            rules.push((pattern.to_owned(), expected));
        }
        Ok(Expectations { rules })
    }

    fn of(&self, test: &str) -> Expected {
        self.rules
            .iter()
            .find(|(pattern, _)| match pattern.strip_suffix('*') {
                Some(prefix) => test.starts_with(prefix),
                None => test == pattern,
            })
            .map_or(Expected::Pass, |(_, e)| e.clone())
    }

    /// The exact names listed that are not among `tests` (stale lines).
    fn unknown_names<'a>(&'a self, tests: &[String]) -> Vec<&'a str> {
        self.rules
            .iter()
            .map(|(p, _)| p.as_str())
            .filter(|p| !p.ends_with('*') && !tests.iter().any(|t| t == p))
            .collect()
    }
}

/// How one test ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Pass,
    Fail,
    Skip,
}

/// Reads a test's outcome from `go test -test.v` output.
fn outcome(test: &str, output: &str) -> Outcome {
    let ended = |word: &str| {
        output
            .lines()
            .any(|l| l.trim_start().starts_with(&format!("--- {word}: {test} ")))
    };
    if ended("PASS") {
        Outcome::Pass
    } else if ended("SKIP") {
        Outcome::Skip
    } else {
        Outcome::Fail
    }
}

/// Installs the Go toolchain, etcd's sources, etcdctl and curl if missing.
fn ensure_prerequisites(target: Target) -> Result<()> {
    let mut wanted = vec![
        ("/usr/bin/go", "golang-go"),
        (ETCD_SRC, "golang-etcd-server-dev"),
        (ETCDCTL, "etcd-client"),
        ("/usr/bin/curl", "curl"),
    ];
    if target == Target::Etcd {
        wanted.push((ETCD, "etcd-server"));
    }
    ensure_packages(&wanted)
}

/// Builds the suite's test binary into `work` (Go's build cache makes a rebuild cheap).
fn build_suite(work: &Path) -> Result<PathBuf> {
    let bin = work.join("e2e.test");
    let cache = work.join("go-build-cache");
    eprintln!("\n==> build etcd's e2e suite: go test -c ./tests/e2e (GOPATH mode, offline)");
    let status = Command::new("go")
        .args(["test", "-c", "-o"])
        .arg(&bin)
        .arg("./tests/e2e")
        .current_dir(ETCD_SRC)
        .env("GOPATH", GOPATH)
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "")
        .env("GOCACHE", &cache)
        .env("GOPROXY", "off")
        .status()
        .context("cannot start go")?;
    if !status.success() {
        bail!("building etcd's e2e suite failed ({status})");
    }
    Ok(bin)
}

/// The directory the suite takes as `-bin-dir`: copies of the server (as `etcd`) and of
/// etcdctl. Copies, not links, so that the processes a test leaves behind can be told apart
/// from any other etcd on the machine by their executable's path.
fn bin_dir(work: &Path, server: &Path) -> Result<PathBuf> {
    let dir = work.join("bin");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (from, name) in [(server, "etcd"), (Path::new(ETCDCTL), "etcdctl")] {
        let to = dir.join(name);
        let _ = fs::remove_file(&to);
        fs::copy(from, &to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    Ok(dir)
}

/// Kills every process running a binary from `dir` (servers a test left behind: the suite
/// starts them in sessions of their own, so they outlive a test killed on timeout).
fn kill_leftovers(dir: &Path) -> usize {
    let Ok(procs) = fs::read_dir("/proc") else {
        return 0;
    };
    let mut killed = 0;
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(exe) = fs::read_link(entry.path().join("exe")) else {
            continue;
        };
        if exe.parent() == Some(dir) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            killed += 1;
        }
    }
    killed
}

/// Runs one test in its own process, at most `timeout`; its outcome and output.
fn run_test(
    suite: &Path,
    bin: &Path,
    tmp: &Path,
    test: &str,
    timeout: Duration,
) -> Result<(Outcome, String, Duration)> {
    let started = Instant::now();
    let log = tmp.join("test.log");
    let file = fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let mut child = Command::new(suite)
        .arg("-test.v")
        .arg(format!("-test.run=^{test}$"))
        .arg(format!("-test.timeout={}s", timeout.as_secs()))
        .arg("-bin-dir")
        .arg(bin)
        // It reads its certificates from ../../integration/fixtures.
        .current_dir(Path::new(ETCD_SRC).join("tests/e2e"))
        .env("TMPDIR", tmp)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("cannot start {}", suite.display()))?;
    // Go's own -test.timeout ends a hung test with a stack dump; this is the backstop.
    let deadline = started + timeout + Duration::from_secs(30);
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    kill_leftovers(bin);
    let output = fs::read_to_string(&log).unwrap_or_default();
    Ok((outcome(test, &output), output, started.elapsed()))
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Builds what is needed, runs the selected tests, prints each outcome and the totals, and
/// (against ferrocd) fails when the outcomes differ from the expectation file.
pub fn run(args: &Args) -> Result<()> {
    ensure_prerequisites(args.target)?;
    let work = target_dir().join("etcd-e2e");
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let suite = build_suite(&work)?;
    let server = match args.target {
        Target::Ferrocd => {
            cargo(
                "build ferrocd",
                &["build", "-p", "server", "--bin", "ferrocd"],
            )?;
            target_dir().join("debug/ferrocd")
        }
        Target::Etcd => PathBuf::from(ETCD),
    };
    let bin = bin_dir(&work, &server)?;
    let expectations_path = workspace_root().join("xtask/etcd-e2e/expectations.txt");
    let expectations = Expectations::parse(
        &fs::read_to_string(&expectations_path)
            .with_context(|| format!("reading {}", expectations_path.display()))?,
    )
    .with_context(|| format!("in {}", expectations_path.display()))?;

    let mut list = Command::new(&suite);
    list.arg("-test.list")
        .arg(args.run.as_deref().unwrap_or(".*"))
        .current_dir(Path::new(ETCD_SRC).join("tests/e2e"));
    let listed = list.output().context("listing the suite's tests")?;
    if !listed.status.success() {
        bail!(
            "listing the suite's tests failed: {}",
            String::from_utf8_lossy(&listed.stderr)
        );
    }
    let tests: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter(|l| l.starts_with("Test"))
        .map(str::to_owned)
        .collect();
    if args.run.is_none() {
        let stale = expectations.unknown_names(&tests);
        if !stale.is_empty() {
            bail!("the expectation file names tests the suite does not have: {stale:?}");
        }
    }

    let tmp = work.join("tmp");
    let timeout = Duration::from_secs(args.timeout);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut unexpected = Vec::new();
    let mut flaky: Vec<String> = Vec::new();
    let started = Instant::now();
    eprintln!(
        "\n==> etcd e2e against {} ({} tests): {}",
        server.display(),
        tests.len(),
        bin.display()
    );
    for test in &tests {
        let expected = match args.target {
            Target::Ferrocd => expectations.of(test),
            Target::Etcd => Expected::Pass,
        };
        if let Expected::OutOfScope(reason) = &expected {
            println!("SKIP  {test}: out of scope: {reason}");
            *counts.entry("out of scope").or_default() += 1;
            continue;
        }
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        // A test expected to fail may hang waiting for output that never comes; it gets less
        // time (still well above the slowest test on etcd, 18 s here).
        let limit = match expected {
            Expected::Fail(_) => timeout.min(EXPECTED_FAILURE_TIMEOUT),
            _ => timeout,
        };
        let (mut outcome, mut output, took) = run_test(&suite, &bin, &tmp, test, limit)?;
        // Real processes on a loaded machine: a test that must pass gets one more try, and a
        // pass on that try is reported as flaky rather than hidden.
        let mut retried = false;
        if outcome == Outcome::Fail && expected == Expected::Pass {
            let first = output;
            let _ = fs::remove_dir_all(&tmp);
            fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            let (again, again_output, _) = run_test(&suite, &bin, &tmp, test, limit)?;
            retried = true;
            outcome = again;
            output = if again == Outcome::Pass {
                first
            } else {
                again_output
            };
        }
        let secs = took.as_secs_f64();
        let (line, surprise) = match (outcome, &expected) {
            (Outcome::Pass, Expected::Pass) if retried => {
                flaky.push(test.clone());
                (
                    format!("PASS  {test} ({secs:.1}s): FLAKY: failed once, passed on a retry"),
                    false,
                )
            }
            (Outcome::Pass, Expected::Pass) => (format!("PASS  {test} ({secs:.1}s)"), false),
            (Outcome::Skip, _) => (
                format!("SKIP  {test} ({secs:.1}s): skipped by the suite"),
                false,
            ),
            (Outcome::Fail, Expected::Fail(reason)) => (
                format!("FAIL  {test} ({secs:.1}s): expected: {reason}"),
                false,
            ),
            (Outcome::Fail, _) => (format!("FAIL  {test} ({secs:.1}s): UNEXPECTED"), true),
            (Outcome::Pass, _) => (
                format!(
                    "PASS  {test} ({secs:.1}s): UNEXPECTED: remove it from xtask/etcd-e2e/expectations.txt"
                ),
                true,
            ),
        };
        println!("{line}");
        if surprise || retried || (args.verbose && outcome == Outcome::Fail) {
            println!(
                "----- {test} output (last 40 lines) -----\n{}\n-----",
                tail(&output, 40)
            );
        }
        if surprise {
            unexpected.push(test.clone());
        }
        *counts
            .entry(match outcome {
                Outcome::Pass => "passed",
                Outcome::Fail => "failed",
                Outcome::Skip => "skipped",
            })
            .or_default() += 1;
    }
    let _ = fs::remove_dir_all(&tmp);
    let count = |k: &str| counts.get(k).copied().unwrap_or(0);
    let mut summary = String::new();
    let _ = write!(
        summary,
        "etcd-e2e: {} passed, {} failed, {} skipped",
        count("passed"),
        count("failed"),
        count("skipped") + count("out of scope"),
    );
    println!(
        "\n{} tests in {:.0}s against {}; {} out of scope",
        tests.len(),
        started.elapsed().as_secs_f64(),
        server.display(),
        count("out of scope")
    );
    if !flaky.is_empty() {
        println!("flaky (failed once, passed on a retry): {flaky:?}");
    }
    println!("{summary}");
    if !unexpected.is_empty() {
        bail!(
            "{} tests did not end as xtask/etcd-e2e/expectations.txt says: {unexpected:?}",
            unexpected.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn expectations_match_names_and_prefixes_first_rule_first() {
        let e = Expectations::parse(
            "# comment\n\
             TestCtlV2*  out-of-scope  the v2 API\n\
             TestCtlV3Put  fail  peer auto TLS (#16)  # trailing comment\n\
             TestCtlV3*  fail  anything else\n",
        )
        .unwrap();
        assert_eq!(
            e.of("TestCtlV2Set"),
            Expected::OutOfScope("the v2 API".into())
        );
        assert_eq!(
            e.of("TestCtlV3Put"),
            Expected::Fail("peer auto TLS (#16)".into())
        );
        assert_eq!(e.of("TestCtlV3Get"), Expected::Fail("anything else".into()));
        assert_eq!(e.of("TestGateway"), Expected::Pass);
        let tests = vec!["TestCtlV3Get".to_owned()];
        assert_eq!(e.unknown_names(&tests), vec!["TestCtlV3Put"]);
    }

    #[test]
    fn expectations_need_a_kind_and_a_reason() {
        assert!(Expectations::parse("TestX fail").is_err());
        assert!(Expectations::parse("TestX maybe because").is_err());
        assert!(Expectations::parse("TestX").is_err());
    }

    #[test]
    fn outcome_reads_go_test_verbose_output() {
        let out = "=== RUN   TestA\n--- PASS: TestA (1.00s)\nPASS\n";
        assert_eq!(outcome("TestA", out), Outcome::Pass);
        assert_eq!(outcome("TestAB", out), Outcome::Fail);
        let skipped = "=== RUN   TestB\n    x.go:1: no binary\n--- SKIP: TestB (0.00s)\n";
        assert_eq!(outcome("TestB", skipped), Outcome::Skip);
        let failed = "--- FAIL: TestC (3.00s)\n";
        assert_eq!(outcome("TestC", failed), Outcome::Fail);
        assert_eq!(outcome("TestD", "panic: test timed out"), Outcome::Fail);
    }
}
