//! [`SmallDisk`]: a full disk on demand, from a size-limited tmpfs.

use std::ffi::OsStr;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::{DiskFaultError, io, run};

/// The ballast file's name in the mounted directory.
const BALLAST: &str = ".diskfault-ballast";

/// A tmpfs of a fixed size mounted on a directory: whatever a process keeps there can be made
/// to run out of space ([`SmallDisk::fill`]) and given it back ([`SmallDisk::free`]). Unmounted
/// (lazily, so open files do not block it) when dropped; its contents are then gone.
#[derive(Debug)]
pub struct SmallDisk {
    dir: PathBuf,
    mounted: bool,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size_mib` MiB on `dir`, creating `dir` if it is missing. Needs root.
    pub fn mount(dir: &Path, size_mib: u64) -> Result<SmallDisk, DiskFaultError> {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        let options = format!("size={size_mib}m,mode=0755");
        run(
            "mount",
            &[
                OsStr::new("-t"),
                OsStr::new("tmpfs"),
                OsStr::new("-o"),
                OsStr::new(&options),
                OsStr::new("tmpfs"),
                dir.as_os_str(),
            ],
        )?;
        Ok(SmallDisk {
            dir: dir.to_path_buf(),
            mounted: true,
        })
    }

    /// The mounted directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Fills the filesystem with a ballast file until it refuses more (`ENOSPC`): from then on
    /// every write that needs a new block fails. Returns the bytes the ballast took.
    pub fn fill(&self) -> Result<u64, DiskFaultError> {
        let path = self.dir.join(BALLAST);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(format!("creating {}", path.display())))?;
        let mut written = 0u64;
        // Large chunks first, then pages, so the last free page is taken too.
        for chunk in [1 << 20, 4096] {
            let buf = vec![0u8; chunk];
            loop {
                match file.write(&buf) {
                    Ok(0) => break,
                    Ok(n) => written += n as u64,
                    Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io(format!("writing {}", path.display()))(e)),
                }
            }
        }
        Ok(written)
    }

    /// Removes the ballast: the space is free again.
    pub fn free(&self) -> Result<(), DiskFaultError> {
        let path = self.dir.join(BALLAST);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(format!("removing {}", path.display()))(e)),
        }
    }

    /// Unmounts now (lazily: processes that still hold files there keep them until they exit).
    pub fn unmount(mut self) -> Result<(), DiskFaultError> {
        self.mounted = false;
        run("umount", &[OsStr::new("-l"), self.dir.as_os_str()])
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if self.mounted {
            let _ = run("umount", &[OsStr::new("-l"), self.dir.as_os_str()]);
        }
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    /// Whether this process runs as root (mounting needs it).
    fn root() -> bool {
        std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
    }

    #[test]
    fn a_full_disk_refuses_writes_until_freed() {
        if !root() {
            eprintln!("SKIPPED: mounting a tmpfs needs root");
            return;
        }
        let tmp = tempfile::tempdir().expect("temp dir");
        let disk = SmallDisk::mount(&tmp.path().join("disk"), 4).expect("mount a 4 MiB tmpfs");
        std::fs::write(disk.path().join("before"), b"fits").expect("a write before filling");
        let taken = disk.fill().expect("fill");
        assert!(
            taken > 3 << 20 && taken <= 4 << 20,
            "the ballast took {taken} bytes of 4 MiB"
        );
        let err = std::fs::write(disk.path().join("after"), vec![1u8; 8192])
            .expect_err("a write on a full disk");
        assert_eq!(err.kind(), std::io::ErrorKind::StorageFull, "{err}");
        disk.free().expect("free");
        std::fs::write(disk.path().join("after"), vec![1u8; 8192]).expect("a write after freeing");
        let dir = disk.path().to_path_buf();
        disk.unmount().expect("unmount");
        assert!(
            !dir.join("before").exists(),
            "the tmpfs's files are gone once it is unmounted"
        );
    }
}
