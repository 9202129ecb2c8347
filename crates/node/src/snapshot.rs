//! Snapshot files and backend generations.
//!
//! A raft snapshot is two files in `member/snap`: `<term>-<index>.snap` holds its metadata
//! (format version, postcard, CRC-32C) and `<term>-<index>.snap.db` the mvcc backend's portable
//! snapshot (which checksums itself chunk by chunk). The raft `Snapshot.data` kept in memory is
//! empty; the raft loop fills it from the `.snap.db` file when a `MsgSnap` leaves.
//!
//! The backend lives in `member/backend/<generation>`, the generation named by
//! `member/backend/current` (replaced atomically). Installing a received snapshot restores it
//! into a new generation, switches `current`, and deletes the old one, so a crash leaves either
//! the old or the new backend, never a half-restored one.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use raft_core::raftpb::{ConfState, SnapshotMetadata};
use serde::{Deserialize, Serialize};
use storage_api::{Backend, BackendConfig};

use crate::engine::EngineKind;
use crate::error::StartError;

const META_VERSION: u8 = 1;

/// The member's directories.
#[derive(Clone, Debug)]
pub struct DataPaths {
    /// `member/wal`.
    pub wal: PathBuf,
    /// `member/snap`.
    pub snap: PathBuf,
    /// `member/backend`.
    pub backend: PathBuf,
}

impl DataPaths {
    /// The layout under `data_dir`.
    pub fn new(data_dir: &Path) -> DataPaths {
        let member = data_dir.join("member");
        DataPaths {
            wal: member.join("wal"),
            snap: member.join("snap"),
            backend: member.join("backend"),
        }
    }

    fn base(&self, term: u64, index: u64) -> PathBuf {
        self.snap.join(format!("{term:016x}-{index:016x}"))
    }

    /// The metadata file of the snapshot at `term`/`index`.
    pub fn meta_file(&self, term: u64, index: u64) -> PathBuf {
        self.base(term, index).with_extension("snap")
    }

    /// The backend file of the snapshot at `term`/`index`.
    pub fn db_file(&self, term: u64, index: u64) -> PathBuf {
        self.base(term, index).with_extension("snap.db")
    }
}

#[derive(Serialize, Deserialize)]
struct StoredMeta {
    index: u64,
    term: u64,
    conf_state: ConfState,
}

/// Writes `bytes` to `path` durably: a temporary file, fsync, rename, fsync of the directory.
fn write_atomic(path: &Path, write: impl FnOnce(&mut File) -> io::Result<()>) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    write(&mut f)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    match path.parent() {
        Some(dir) => crate::wal::segment::sync_dir(dir),
        None => Ok(()),
    }
}

/// Records a snapshot's metadata durably.
pub fn save_meta(paths: &DataPaths, meta: &SnapshotMetadata) -> io::Result<()> {
    fs::create_dir_all(&paths.snap)?;
    let stored = StoredMeta {
        index: meta.index,
        term: meta.term,
        conf_state: meta.conf_state.clone(),
    };
    let mut bytes = postcard::to_extend(&stored, vec![META_VERSION])
        .unwrap_or_else(|e| panic!("postcard failed to encode snapshot metadata: {e}"));
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_be_bytes());
    write_atomic(&paths.meta_file(meta.term, meta.index), |f| {
        f.write_all(&bytes)
    })
}

fn read_meta(path: &Path) -> Result<SnapshotMetadata, String> {
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    if bytes.len() < 5 {
        return Err("truncated".into());
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let crc = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32c::crc32c(body) != crc {
        return Err("checksum mismatch".into());
    }
    match body.split_first() {
        Some((&META_VERSION, rest)) => {
            let s: StoredMeta = postcard::from_bytes(rest).map_err(|e| e.to_string())?;
            Ok(SnapshotMetadata {
                conf_state: s.conf_state,
                index: s.index,
                term: s.term,
            })
        }
        _ => Err("unknown format version".into()),
    }
}

/// The newest readable snapshot metadata in `member/snap` (damaged files are skipped with a
/// warning, like etcd's snapshotter), if any.
pub fn latest_meta(paths: &DataPaths) -> Result<Option<SnapshotMetadata>, StartError> {
    Ok(metas_newest_first(paths)?.into_iter().next())
}

/// Every readable snapshot metadata, newest first (damaged files skipped with a warning).
pub fn metas_newest_first(paths: &DataPaths) -> Result<Vec<SnapshotMetadata>, StartError> {
    let mut files = list_meta_files(paths)?;
    files.sort();
    let mut out = Vec::new();
    while let Some(path) = files.pop() {
        match read_meta(&path) {
            Ok(meta) => out.push(meta),
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason, "skipping damaged snapshot")
            }
        }
    }
    Ok(out)
}

fn list_meta_files(paths: &DataPaths) -> Result<Vec<PathBuf>, StartError> {
    if !paths.snap.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in fs::read_dir(&paths.snap).map_err(StartError::io("listing snapshots"))? {
        let path = entry.map_err(StartError::io("listing snapshots"))?.path();
        if path.extension().is_some_and(|e| e == "snap") {
            out.push(path);
        }
    }
    Ok(out)
}

/// Writes the backend snapshot read from `reader` as the `.snap.db` of `term`/`index`.
pub fn save_db(paths: &DataPaths, term: u64, index: u64, mut reader: impl Read) -> io::Result<()> {
    fs::create_dir_all(&paths.snap)?;
    write_atomic(&paths.db_file(term, index), |f| {
        io::copy(&mut reader, f).map(|_| ())
    })
}

/// Deletes the backend copies (`.snap.db`) of all but the newest snapshot, and all but the
/// newest `max_snapshots` metadata files (0: none is deleted; the newest is always kept). A
/// copy being streamed to a follower stays readable through its open file until the stream
/// ends.
pub fn purge(paths: &DataPaths, max_snapshots: usize) {
    let Ok(mut metas) = list_meta_files(paths) else {
        return;
    };
    metas.sort();
    let older = metas.len().saturating_sub(1);
    let unkept = if max_snapshots == 0 {
        0
    } else {
        metas.len().saturating_sub(max_snapshots)
    };
    for (i, meta) in metas.into_iter().take(older).enumerate() {
        let _ = fs::remove_file(meta.with_extension("snap.db"));
        if i < unkept {
            let _ = fs::remove_file(&meta);
        }
    }
}

/// Opens the `.snap.db` of the snapshot at `term`/`index` to send it. `None` for the bootstrap
/// snapshot, which has none (every initial member creates its state itself); for any other
/// snapshot a missing file is an error: sent as empty data it would wipe the receiver's state.
pub fn open_db(paths: &DataPaths, term: u64, index: u64) -> io::Result<Option<File>> {
    let path = paths.db_file(term, index);
    match File::open(&path) {
        Ok(f) => Ok(Some(f)),
        Err(e)
            if e.kind() == io::ErrorKind::NotFound && index <= crate::restore::RESTORED_INDEX =>
        {
            Ok(None)
        }
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("opening {}: {e}", path.display()),
        )),
    }
}

fn current_file(paths: &DataPaths) -> PathBuf {
    paths.backend.join("current")
}

/// Opens the current backend generation (creating generation 0 on first start).
pub fn open_backend(paths: &DataPaths, engine: EngineKind) -> Result<Backend, StartError> {
    fs::create_dir_all(&paths.backend).map_err(StartError::io("creating the backend dir"))?;
    let current = current_file(paths);
    let name = match fs::read_to_string(&current) {
        Ok(name) => name.trim().to_owned(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let name = generation_name(0);
            write_atomic(&current, |f| f.write_all(name.as_bytes()))
                .map_err(StartError::io("writing member/backend/current"))?;
            name
        }
        Err(e) => return Err(StartError::io("reading member/backend/current")(e)),
    };
    let dir = paths.backend.join(name);
    engine
        .open_backend(&dir, BackendConfig::default())
        .map_err(|source| StartError::Backend {
            dir: dir.display().to_string(),
            source,
        })
}

fn generation_name(index: u64) -> String {
    format!("db-{index:016x}")
}

/// Restores the `.snap.db` of `term`/`index` into a new backend generation, makes it current
/// and deletes the other generations (call after the old backend is closed).
pub fn install_backend(
    paths: &DataPaths,
    engine: EngineKind,
    term: u64,
    index: u64,
) -> Result<Backend, StartError> {
    let name = generation_name(index);
    let dir = paths.backend.join(&name);
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(StartError::io("clearing a backend generation"))?;
    }
    let backend = engine.open_backend(&dir, BackendConfig::default())?;
    let db = paths.db_file(term, index);
    let file = File::open(&db).map_err(StartError::io(format!("opening {}", db.display())))?;
    storage_api::restore_snapshot(&backend, io::BufReader::new(file)).map_err(|e| {
        StartError::Snapshot {
            path: db.display().to_string(),
            reason: e.to_string(),
        }
    })?;
    write_atomic(&current_file(paths), |f| f.write_all(name.as_bytes()))
        .map_err(StartError::io("writing member/backend/current"))?;
    if let Ok(entries) = fs::read_dir(&paths.backend) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() && path.file_name().is_some_and(|n| *n != *name) {
                let _ = fs::remove_dir_all(&path);
            }
        }
    }
    Ok(backend)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn snapshots(paths: &DataPaths, n: u64) {
        for index in 1..=n {
            let meta = SnapshotMetadata {
                index: index * 10,
                term: 2,
                ..SnapshotMetadata::default()
            };
            save_meta(paths, &meta).unwrap();
            save_db(paths, 2, index * 10, &b"backend"[..]).unwrap();
        }
    }

    fn indexes(paths: &DataPaths) -> (Vec<u64>, usize) {
        let metas = metas_newest_first(paths).unwrap();
        let dbs = fs::read_dir(&paths.snap)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".snap.db")
            })
            .count();
        (metas.iter().map(|m| m.index).collect(), dbs)
    }

    #[test]
    fn purge_keeps_max_snapshots_and_only_the_newest_backend_copy() {
        let dir = tempfile::tempdir().unwrap();
        let paths = DataPaths::new(dir.path());
        snapshots(&paths, 7);
        purge(&paths, 3);
        assert_eq!(indexes(&paths), (vec![70, 60, 50], 1));
        purge(&paths, 1);
        assert_eq!(indexes(&paths), (vec![70], 1));
    }

    #[test]
    fn zero_max_snapshots_keeps_every_snapshot_file() {
        let dir = tempfile::tempdir().unwrap();
        let paths = DataPaths::new(dir.path());
        snapshots(&paths, 4);
        purge(&paths, 0);
        assert_eq!(indexes(&paths), (vec![40, 30, 20, 10], 1));
    }
}
