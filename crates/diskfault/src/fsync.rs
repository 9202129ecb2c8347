//! [`FsyncShim`] and [`FsyncFault`]: `fsync`/`fdatasync` failing with `EIO` on demand.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{DiskFaultError, io, run};

/// The shim's C source: see the file for what it does.
const SOURCE: &str = include_str!("fsync_fault.c");
/// The environment variable naming the trigger file (the C source reads it).
const TRIGGER_VAR: &str = "FERROCD_FAULT_FSYNC_TRIGGER";

/// The compiled `LD_PRELOAD` library. A process started with a [`FsyncFault`]'s environment
/// has its `fsync` and `fdatasync` fail with `EIO` while the fault is armed; Rust's
/// `File::sync_all`/`sync_data` and C libraries (LMDB, RocksDB) call them from the C library,
/// so they all see the failure.
#[derive(Clone, Debug)]
pub struct FsyncShim {
    library: PathBuf,
}

impl FsyncShim {
    /// Compiles the shim into `dir` with `$CC` (default `cc`).
    pub fn build(dir: &Path) -> Result<FsyncShim, DiskFaultError> {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        let source = dir.join("fsync_fault.c");
        std::fs::write(&source, SOURCE).map_err(io(format!("writing {}", source.display())))?;
        let library = dir.join("libfsync_fault.so");
        let cc = std::env::var_os("CC").unwrap_or_else(|| OsString::from("cc"));
        run(
            &cc.to_string_lossy(),
            &[
                OsStr::new("-shared"),
                OsStr::new("-fPIC"),
                OsStr::new("-O2"),
                OsStr::new("-o"),
                library.as_os_str(),
                source.as_os_str(),
                OsStr::new("-ldl"),
            ],
        )?;
        Ok(FsyncShim { library })
    }

    /// The compiled library.
    pub fn library(&self) -> &Path {
        &self.library
    }

    /// A fault for one process, armed while `trigger` exists (it is removed now).
    pub fn fault(&self, trigger: PathBuf) -> Result<FsyncFault, DiskFaultError> {
        let fault = FsyncFault {
            library: self.library.clone(),
            trigger,
        };
        fault.disarm()?;
        Ok(fault)
    }
}

/// One process's fsync fault: start the process with [`FsyncFault::apply`], then
/// [`arm`](FsyncFault::arm) and [`disarm`](FsyncFault::disarm) it at will.
#[derive(Clone, Debug)]
pub struct FsyncFault {
    library: PathBuf,
    trigger: PathBuf,
}

impl FsyncFault {
    /// The environment a process needs for this fault: the shim and the trigger's path.
    pub fn env(&self) -> Vec<(String, OsString)> {
        vec![
            (
                "LD_PRELOAD".to_owned(),
                self.library.clone().into_os_string(),
            ),
            (
                TRIGGER_VAR.to_owned(),
                self.trigger.clone().into_os_string(),
            ),
        ]
    }

    /// Adds [`FsyncFault::env`] to the environment of `command`.
    pub fn apply<'c>(&self, command: &'c mut Command) -> &'c mut Command {
        command.envs(self.env())
    }

    /// From now on, every `fsync`/`fdatasync` of the process fails with `EIO`.
    pub fn arm(&self) -> Result<(), DiskFaultError> {
        std::fs::write(&self.trigger, b"armed")
            .map_err(io(format!("creating {}", self.trigger.display())))
    }

    /// From now on, syncs work again.
    pub fn disarm(&self) -> Result<(), DiskFaultError> {
        match std::fs::remove_file(&self.trigger) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(format!("removing {}", self.trigger.display()))(e)),
        }
    }

    /// Whether the fault is armed.
    pub fn is_armed(&self) -> bool {
        self.trigger.exists()
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    /// `sync FILE` (coreutils) fsyncs the file, `sync -d FILE` fdatasyncs it.
    fn sync(fault: &FsyncFault, args: &[&str], file: &Path) -> std::process::Output {
        let mut cmd = Command::new("sync");
        fault.apply(&mut cmd).args(args).arg(file);
        cmd.output().expect("run sync")
    }

    #[test]
    fn syncs_fail_with_eio_only_while_armed() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let shim = FsyncShim::build(&tmp.path().join("shim")).expect("compile the shim");
        let fault = shim.fault(tmp.path().join("trigger")).expect("fault");
        let file = tmp.path().join("data");
        std::fs::write(&file, b"data").expect("write");
        for args in [&[][..], &["-d"][..]] {
            assert!(
                sync(&fault, args, &file).status.success(),
                "disarmed {args:?}"
            );
            fault.arm().expect("arm");
            assert!(fault.is_armed());
            let out = sync(&fault, args, &file);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "armed {args:?} must fail");
            assert!(
                stderr.contains("Input/output error"),
                "armed {args:?}: {stderr}"
            );
            fault.disarm().expect("disarm");
            assert!(
                sync(&fault, args, &file).status.success(),
                "disarmed again {args:?}"
            );
        }
    }
}
