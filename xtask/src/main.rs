//! `cargo xtask`: the project's automation, so that CI and developers run the very same steps.

mod bench;
mod bench_chart;
mod bench_cluster;
mod bench_load;
mod chaos;
mod conformance_etcd;
mod conformance_etcd_e2e;
mod conformance_raft;
mod conformance_storage;
mod system;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

/// Project automation for ferrocd.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Everything CI checks, in order: fmt, clippy, tests (LMDB), tests with RocksDB, conformance
    /// (storage, raft, etcd side by side, etcd's e2e suite), a short chaos schedule.
    Ci,
    /// Conformance suites, each ending with `N passed, M failed`.
    Conformance {
        #[command(subcommand)]
        suite: Conformance,
    },
    /// The deterministic Raft cluster simulator over many seeds (release build); prints the seed
    /// of any failure so it can be replayed with `RAFT_SIM_SEED=S`.
    Sim {
        /// How many seeds to run.
        #[arg(long, default_value_t = 2_000)]
        seeds: u64,
    },
    /// Chaos runs against real ferrocd clusters (kills, pauses, partitions, delay and loss,
    /// leader moves) with a linearizability check, then crash-consistency loops of one member.
    Chaos(chaos::ChaosArgs),
    /// Benchmarks: criterion suites, and etcd-style load against etcd and ferrocd clusters.
    Bench {
        #[command(subcommand)]
        command: Box<bench::Command>,
    },
}

#[derive(Subcommand)]
enum Conformance {
    /// etcd-io/raft's datadriven suites (interaction, quorum, confchange) over the project's
    /// own testdata and, when present, ../shared/conformance/etcd-raft.
    Raft {
        /// Directories to run instead of the defaults (repeatable).
        #[arg(long = "dir")]
        dirs: Vec<PathBuf>,
    },
    /// The storage conformance suite on every engine (LMDB, RocksDB).
    Storage,
    /// Differential testing against real etcd 3.4 (1 and 3 members): every response, error and
    /// watch event compared; mismatches shrunk to a short reproduction.
    Etcd(conformance_etcd::Args),
    /// etcd 3.4's own end-to-end suite (Debian's `golang-etcd-server-dev`) with ferrocd as its
    /// `etcd` binary, held against `xtask/etcd-e2e/expectations.txt`.
    EtcdE2e(conformance_etcd_e2e::Args),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Task::Ci => ci(),
        Task::Conformance {
            suite: Conformance::Raft { dirs },
        } => conformance_raft::run(&raft_dirs(dirs)),
        Task::Conformance {
            suite: Conformance::Storage,
        } => conformance_storage::run(),
        Task::Conformance {
            suite: Conformance::Etcd(args),
        } => conformance_etcd::run(&args),
        Task::Conformance {
            suite: Conformance::EtcdE2e(args),
        } => conformance_etcd_e2e::run(&args),
        Task::Bench { command } => bench::run(*command),
        Task::Chaos(args) => chaos::run(&args),
        Task::Sim { seeds } => cargo_env(
            "simulation",
            &[
                "test",
                "--release",
                "--package",
                "raft-core",
                "--test",
                "simulation",
                "--",
                "--nocapture",
            ],
            &[("RAFT_SIM_SEEDS", &seeds.to_string())],
        ),
    }
}

/// The raft conformance directories: those given, or the project's testdata plus etcd's vectors.
fn raft_dirs(dirs: Vec<PathBuf>) -> Vec<PathBuf> {
    if !dirs.is_empty() {
        return dirs;
    }
    let root = workspace_root();
    let mut defaults = vec![root.join("crates/raft-core/testdata")];
    let shared = root.join("../shared/conformance/etcd-raft");
    if shared.is_dir() {
        defaults.push(shared);
    }
    defaults
}

/// The workspace root (xtask lives one level below it).
fn workspace_root() -> PathBuf {
    // `cargo run` sets it at run time; the compile-time value names wherever this binary was
    // built, which a target directory shared between clones may reuse from another clone.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let manifest_dir = manifest_dir.as_path();
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest_dir.to_path_buf())
}

/// Runs `cargo ARGS` in the workspace root, failing on a non-zero exit.
pub(crate) fn cargo(step: &str, args: &[&str]) -> Result<()> {
    cargo_env(step, args, &[])
}

/// Runs `cargo ARGS` in the workspace root with extra environment variables.
pub(crate) fn cargo_env(step: &str, args: &[&str], envs: &[(&str, &str)]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let shown: Vec<String> = envs.iter().map(|(k, v)| format!("{k}={v} ")).collect();
    eprintln!("\n==> {step}: {}cargo {}", shown.concat(), args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("cannot start `{cargo}`"))?;
    if !status.success() {
        bail!("{step} failed ({status})");
    }
    Ok(())
}

fn ci() -> Result<()> {
    cargo("format", &["fmt", "--all", "--check"])?;
    cargo(
        "clippy",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    // The default build: LMDB only, RocksDB not compiled.
    cargo("tests (default build: LMDB)", &["test"])?;
    // Every engine. The same package and feature selection as clippy above, so that RocksDB's
    // C++ build (and the host dependencies its build script shares) is compiled once.
    cargo(
        "tests (all engines: LMDB and RocksDB)",
        &["test", "--workspace", "--all-targets", "--all-features"],
    )?;
    conformance_storage::run()?;
    conformance_raft::run(&raft_dirs(Vec::new()))?;
    conformance_etcd::run(&conformance_etcd::Args::defaults())?;
    conformance_etcd_e2e::run(&conformance_etcd_e2e::Args::defaults())?;
    chaos::run(&chaos::ChaosArgs::ci())?;
    eprintln!("\n==> ci: all steps passed");
    Ok(())
}
