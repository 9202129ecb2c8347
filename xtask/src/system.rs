//! What the tasks need from the machine: cargo's target directory, and Debian packages
//! installed on demand (`apt-get`, with `sudo` unless root, starting no service).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::workspace_root;

/// Cargo's target directory: `$CARGO_TARGET_DIR` (relative to the workspace root) or `target`.
pub(crate) fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs `program args` (with `sudo` when not root), failing on a non-zero exit.
pub(crate) fn run_privileged(program: &str, args: &[&str]) -> Result<()> {
    let root = is_root();
    let mut cmd = if root {
        Command::new(program)
    } else {
        let mut c = Command::new("sudo");
        c.arg(program);
        c
    };
    eprintln!(
        "\n==> {}{program} {}",
        if root { "" } else { "sudo " },
        args.join(" ")
    );
    let status = cmd
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot start {program}"))?;
    if !status.success() {
        bail!("{program} {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Installs the Debian packages whose file is missing: each pair is (a file the package
/// installs, the package). No package may start a service meanwhile (etcd-server's would take
/// port 2379): the standard `policy-rc.d` veto, for the time of the install only.
pub(crate) fn ensure_packages(wanted: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(file, _)| !Path::new(file).exists())
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let veto = !policy.exists();
    if veto {
        run_privileged(
            "sh",
            &[
                "-c",
                "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d",
            ],
        )?;
    }
    let installed = run_privileged("apt-get", &["update", "-qq"]).and_then(|()| {
        let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
        args.extend(&missing);
        run_privileged("apt-get", &args)
    });
    if veto {
        run_privileged("rm", &["-f", "/usr/sbin/policy-rc.d"])?;
    }
    installed?;
    for (file, package) in wanted {
        if !Path::new(file).exists() {
            bail!("{package} is installed but {file} is still missing");
        }
    }
    Ok(())
}
