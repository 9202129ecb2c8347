//! `cargo xtask conformance etcd`: differential testing of ferrocd against real etcd 3.4
//! (issue #8). Installs etcd if missing (Debian's `etcd-server`), builds `ferrocd` and the
//! `differential` runner, and runs it: seeded random request sequences on fresh etcd and ferrocd
//! clusters (1 and 3 members), every response, error and watch event compared, each mismatch
//! shrunk to a short reproduction, ending with `N passed, M failed`.

use std::path::{Path, PathBuf};
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
    ensure_etcd()?;
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
    let bin_dir = target_dir()?.join("debug");
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

/// Installs Debian's `etcd-server` when `/usr/bin/etcd` is missing (with sudo unless root).
fn ensure_etcd() -> Result<()> {
    if Path::new(ETCD).is_file() {
        return Ok(());
    }
    eprintln!("\n==> {ETCD} missing: installing etcd-server");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let apt = |args: &[&str]| -> Result<()> {
        let mut cmd = if root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.arg("apt-get");
            c
        };
        let status = cmd
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("cannot run apt-get")?;
        if !status.success() {
            bail!("apt-get {} failed ({status})", args.join(" "));
        }
        Ok(())
    };
    apt(&["update", "-qq"])?;
    apt(&[
        "install",
        "-y",
        "-qq",
        "--no-install-recommends",
        "etcd-server",
    ])?;
    if !Path::new(ETCD).is_file() {
        bail!("etcd-server installed but {ETCD} is still missing");
    }
    Ok(())
}

/// Cargo's target directory, as `cargo metadata` reports it (honours `CARGO_TARGET_DIR`).
fn target_dir() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(&cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(crate::workspace_root())
        .output()
        .with_context(|| format!("cannot start `{cargo} metadata`"))?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing cargo metadata")?;
    meta.get("target_directory")
        .and_then(serde_json::Value::as_str)
        .map(PathBuf::from)
        .context("cargo metadata has no target_directory")
}
