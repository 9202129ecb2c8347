//! `cargo xtask chaos`: builds `ferrocd` and the `chaos` harness, then runs seeded chaos runs
//! against real clusters (3 and 5 members) and the crash-consistency loops of one member. The
//! defaults are CI's short schedule (a couple of minutes); the harness ends with
//! `N passed, M failed` and fails the task when any run failed.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::system::target_dir;
use crate::{cargo, workspace_root};

/// The options of `cargo xtask chaos`.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct ChaosArgs {
    /// Seeded runs per cluster size.
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// The first seed (a failure prints the seed to replay with `--seed S --seeds 1`).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds of clients and faults per run.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Cluster sizes (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = vec![3u64, 5])]
    members: Vec<u64>,
    /// Crash-consistency loops (kill -9 of one member under heavy writes); 0 skips them.
    #[arg(long, default_value_t = 10)]
    crash_loops: u64,
    /// Print every run's fault schedule.
    #[arg(long)]
    verbose: bool,
    /// Build and run optimized binaries.
    #[arg(long)]
    release: bool,
}

impl ChaosArgs {
    /// CI's short schedule: the defaults above (one 20 s run on 3 and on 5 members, 10 crash
    /// loops).
    pub(crate) fn ci() -> ChaosArgs {
        ChaosArgs {
            seeds: 1,
            seed: 1,
            duration: 20,
            members: vec![3, 5],
            crash_loops: 10,
            verbose: false,
            release: false,
        }
    }
}

/// Builds both binaries and runs the harness.
pub(crate) fn run(args: &ChaosArgs) -> Result<()> {
    let profile: &[&str] = if args.release { &["--release"] } else { &[] };
    // Two invocations: `--bin` would filter the other package's binaries out of one.
    let mut ferrocd = vec!["build", "-p", "server", "--bin", "ferrocd"];
    ferrocd.extend_from_slice(profile);
    cargo("build ferrocd", &ferrocd)?;
    let mut chaos = vec!["build", "-p", "chaos", "--bin", "chaos"];
    chaos.extend_from_slice(profile);
    cargo("build chaos", &chaos)?;

    let bins = target_dir().join(if args.release { "release" } else { "debug" });
    let members: Vec<String> = args.members.iter().map(u64::to_string).collect();
    let work_dir = target_dir().join("chaos");
    let mut cmd = Command::new(bins.join("chaos"));
    cmd.arg("--ferrocd")
        .arg(bins.join("ferrocd"))
        .args(["--seeds", &args.seeds.to_string()])
        .args(["--seed", &args.seed.to_string()])
        .args(["--duration", &args.duration.to_string()])
        .args(["--members", &members.join(",")])
        .args(["--crash-loops", &args.crash_loops.to_string()])
        .arg("--work-dir")
        .arg(&work_dir)
        .current_dir(workspace_root());
    if args.verbose {
        cmd.arg("--verbose");
    }
    eprintln!("\n==> chaos: {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {}", bins.join("chaos").display()))?;
    if !status.success() {
        bail!(
            "chaos failed ({status}); failed runs keep their logs under {}",
            work_dir.display()
        );
    }
    Ok(())
}
