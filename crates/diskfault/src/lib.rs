//! Disk faults for real processes under test, where the platform allows them:
//!
//! - [`SmallDisk`]: a size-limited tmpfs mounted on a data directory, filled on demand with a
//!   ballast file, so the process's next allocating write fails with `ENOSPC` (a full disk).
//!   Mounting needs root (`CAP_SYS_ADMIN`).
//! - [`FsyncShim`]: an `LD_PRELOAD` library, compiled here with the system C compiler, that makes
//!   `fsync` and `fdatasync` fail with `EIO` while a trigger file exists ([`FsyncFault`]).
//!
//! Both are for tests and the chaos tool: nothing in a server depends on them.

mod fsync;
mod small_disk;

pub use fsync::{FsyncFault, FsyncShim};
pub use small_disk::SmallDisk;

/// Why a disk fault could not be set up or undone.
#[derive(Debug, thiserror::Error)]
pub enum DiskFaultError {
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The failure.
        source: std::io::Error,
    },
    /// A helper command (`mount`, `umount`, the C compiler) failed.
    #[error("{command} failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DiskFaultError {
    let what = what.into();
    move |source| DiskFaultError::Io { what, source }
}

/// Runs `program args`, failing with its stderr unless it succeeds.
fn run(program: &str, args: &[&std::ffi::OsStr]) -> Result<(), DiskFaultError> {
    let command = std::iter::once(program.to_owned())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    let out = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(io(format!("running {command}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(DiskFaultError::Command {
            command,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}
