//! `cargo xtask conformance etcd`: differential testing of ferrocd against real etcd 3.4
//! (issue #8). Installs etcd if missing (Debian's `etcd-server`), builds `ferrocd` and the
//! `differential` runner, and runs it: seeded random request sequences on fresh etcd and ferrocd
//! clusters (1 and 3 members), every response, error and watch event compared, each mismatch
//! shrunk to a short reproduction, ending with `N passed, M failed`.

use std::process::Command;

use anyhow::{Context, Result, bail};

/// Where Debian's `etcd-server` installs etcd.
const ETCD: &str = "/usr/bin/etcd";

/// `cargo xtask conformance etcd` options. The defaults bound the run to a few minutes (CI).
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// How many seeded sequences, for each member count.
    #[arg(long, default_value_t = 10)]
    pub seeds: u64,
    /// Operations per sequence.
    #[arg(long, default_value_t = 60)]
    pub ops: usize,
    /// Members per cluster: `1`, `3` or `1,3`.
    #[arg(long, default_value = "1,3")]
    pub members: String,
    /// Replay this seed only.
    #[arg(long)]
    pub seed: Option<u64>,
    /// At most this many replays to shrink one mismatch.
    #[arg(long, default_value_t = 20)]
    pub shrink_attempts: usize,
    /// At most this many seconds to shrink one mismatch.
    #[arg(long, default_value_t = 30)]
    pub shrink_secs: u64,
    /// Further arguments for the `differential` binary (after `--`).
    #[arg(last = true)]
    pub rest: Vec<String>,
}

impl Args {
    /// The defaults above, as CI runs them.
    pub fn defaults() -> Args {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            args: Args,
        }
        <Defaults as clap::Parser>::parse_from(["conformance-etcd"]).args
    }
}

/// Installs etcd if needed, builds, and runs the differential runner; fails on any mismatch.
pub fn run(args: &Args) -> Result<()> {
    crate::system::ensure_packages(&[(ETCD, "etcd-server")])?;
    crate::cargo(
        "build ferrocd and the differential runner",
        &[
            "build",
            "--package",
            "server",
            "--bin",
            "ferrocd",
            "--package",
            "differential",
            "--bin",
            "differential",
        ],
    )?;
    let bin_dir = crate::system::target_dir().join("debug");
    let mut cmd = Command::new(bin_dir.join("differential"));
    cmd.arg("--seeds")
        .arg(args.seeds.to_string())
        .arg("--ops")
        .arg(args.ops.to_string())
        .arg("--members")
        .arg(&args.members)
        .arg("--shrink-attempts")
        .arg(args.shrink_attempts.to_string())
        .arg("--shrink-secs")
        .arg(args.shrink_secs.to_string())
        .arg("--etcd")
        .arg(ETCD)
        .arg("--ferrocd")
        .arg(bin_dir.join("ferrocd"));
    if let Some(seed) = args.seed {
        cmd.arg("--seed").arg(seed.to_string());
    }
    cmd.args(&args.rest);
    eprintln!("\n==> conformance etcd: {cmd:?}");
    let status = cmd
        .current_dir(crate::workspace_root())
        .status()
        .context("cannot start the differential runner")?;
    if !status.success() {
        bail!("etcd conformance failed ({status})");
    }
    Ok(())
}
