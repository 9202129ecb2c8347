//! The LMDB environment behind the engine trait.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use heed::types::Bytes;
use heed::{CompactionOption, Database, Env, EnvOpenOptions, MdbError, WithoutTls};
use parking_lot::RwLock;
use storage_api::{Bucket, Engine, EngineView, Result, StorageError, WriteBatch, WriteOp};

use crate::view::LmdbView;

const ENGINE: &str = "lmdb";
const DATA_FILE: &str = "data.mdb";
const DEFRAG_FILE: &str = "data.mdb.defrag";
/// Named databases one environment may hold.
const MAX_DBS: u32 = 64;

/// How the LMDB environment is sized.
#[derive(Clone, Debug)]
pub struct LmdbConfig {
    /// The initial size of the memory map, which bounds the file (etcd's bbolt maps 10 GiB
    /// initially too). The map doubles, without a restart, when a commit finds it full.
    pub map_size: usize,
    /// Reader slots: concurrent read snapshots the process may hold.
    pub max_readers: u32,
}

impl Default for LmdbConfig {
    fn default() -> Self {
        LmdbConfig {
            map_size: 10 << 30,
            max_readers: 1024,
        }
    }
}

pub(crate) type Db = Database<Bytes, Bytes>;

/// The open environment and its databases; replaced whole by defrag.
pub(crate) struct Open {
    pub(crate) env: Env<WithoutTls>,
    pub(crate) dbs: Arc<HashMap<Bucket, Db>>,
    map_size: usize,
}

/// etcd's backend engine on LMDB.
pub struct LmdbEngine {
    path: PathBuf,
    config: LmdbConfig,
    open: RwLock<Option<Open>>,
}

pub(crate) fn lmdb_error(e: heed::Error) -> StorageError {
    match e {
        heed::Error::Mdb(
            m @ (MdbError::Corrupted
            | MdbError::Invalid
            | MdbError::PageNotFound
            | MdbError::VersionMismatch
            | MdbError::BadTxn),
        ) => StorageError::Corrupted(format!("lmdb: {m}")),
        heed::Error::Mdb(MdbError::MapFull) => StorageError::Full {
            engine: ENGINE,
            message: "memory map full".into(),
        },
        heed::Error::Io(io) => StorageError::Io(io),
        other => StorageError::engine(ENGINE, other),
    }
}

fn open_env(dir: &Path, config: &LmdbConfig, map_size: usize) -> Result<Open> {
    std::fs::create_dir_all(dir)?;
    let mut options = EnvOpenOptions::new().read_txn_without_tls();
    options
        .map_size(map_size)
        .max_dbs(MAX_DBS)
        .max_readers(config.max_readers);
    // SAFETY: each engine opens its directory once; `LmdbEngine` owns the only `Env` for it
    // and reopens only after the previous one is fully closed (defrag).
    let env = unsafe { options.open(dir) }.map_err(lmdb_error)?;
    // A file larger than the requested map (grown earlier) is mapped whole by LMDB.
    let map_size = env.info().map_size.max(map_size);
    let mut dbs = HashMap::new();
    {
        let rtxn = env.read_txn().map_err(lmdb_error)?;
        for name in database_names(&env, &rtxn)? {
            let bucket = Bucket::intern(&name)?;
            if let Some(db) = env
                .open_database::<Bytes, Bytes>(&rtxn, Some(&name))
                .map_err(lmdb_error)?
            {
                dbs.insert(bucket, db);
            }
        }
        rtxn.commit().map_err(lmdb_error)?;
    }
    Ok(Open {
        env,
        dbs: Arc::new(dbs),
        map_size,
    })
}

/// The named databases recorded in the environment's main database.
fn database_names(
    env: &Env<WithoutTls>,
    rtxn: &heed::RoTxn<'_, WithoutTls>,
) -> Result<Vec<String>> {
    let Some(main) = env
        .open_database::<Bytes, Bytes>(rtxn, None)
        .map_err(lmdb_error)?
    else {
        return Ok(Vec::new());
    };
    let mut names = Vec::new();
    for entry in main.iter(rtxn).map_err(lmdb_error)? {
        let (key, _) = entry.map_err(lmdb_error)?;
        let name = std::str::from_utf8(key)
            .map_err(|_| StorageError::Corrupted("lmdb: database name is not UTF-8".into()))?;
        names.push(name.to_owned());
    }
    Ok(names)
}

impl LmdbEngine {
    /// Opens (or creates) the engine's environment in directory `dir`.
    pub fn open(dir: impl AsRef<Path>, config: LmdbConfig) -> Result<LmdbEngine> {
        let path = dir.as_ref().to_path_buf();
        let open = open_env(&path, &config, config.map_size)?;
        Ok(LmdbEngine {
            path,
            config,
            open: RwLock::new(Some(open)),
        })
    }

    /// The files the engine keeps in its directory.
    pub fn data_files(dir: &Path) -> Vec<PathBuf> {
        vec![dir.join(DATA_FILE)]
    }

    /// The current size of the memory map.
    pub fn map_size(&self) -> usize {
        self.current().map_or(0, |o| o.map_size)
    }

    /// The open environment; `Closed` only if reopening after defrag or growth failed.
    fn current(&self) -> Result<parking_lot::MappedRwLockReadGuard<'_, Open>> {
        parking_lot::RwLockReadGuard::try_map(self.open.read(), Option::as_ref)
            .map_err(|_| StorageError::Closed)
    }

    /// Closes the environment, waits until no view holds it any more, runs `between` (on the
    /// closed files) and reopens with a map of `map_size` bytes.
    fn reopen(
        &self,
        slot: &mut Option<Open>,
        map_size: usize,
        between: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        if let Some(Open { env, dbs, .. }) = slot.take() {
            drop(dbs);
            env.prepare_for_closing().wait();
        }
        let result = between();
        *slot = Some(open_env(&self.path, &self.config, map_size)?);
        result
    }
}

impl Engine for LmdbEngine {
    fn name(&self) -> &'static str {
        ENGINE
    }

    fn bucket_names(&self) -> Result<Vec<String>> {
        Ok(self
            .current()?
            .dbs
            .keys()
            .map(|b| b.name().to_owned())
            .collect())
    }

    fn create_bucket(&self, bucket: Bucket) -> Result<()> {
        let mut guard = self.open.write();
        let open = guard.as_mut().ok_or(StorageError::Closed)?;
        if open.dbs.contains_key(&bucket) {
            return Ok(());
        }
        let mut wtxn = open.env.write_txn().map_err(lmdb_error)?;
        let db = open
            .env
            .create_database::<Bytes, Bytes>(&mut wtxn, Some(bucket.name()))
            .map_err(lmdb_error)?;
        wtxn.commit().map_err(lmdb_error)?;
        let mut dbs = (*open.dbs).clone();
        dbs.insert(bucket, db);
        open.dbs = Arc::new(dbs);
        Ok(())
    }

    fn apply(&self, batch: &WriteBatch) -> Result<()> {
        let open = self.current()?;
        let mut wtxn = open.env.write_txn().map_err(lmdb_error)?;
        for op in &batch.ops {
            let (WriteOp::Put { bucket, .. } | WriteOp::Delete { bucket, .. }) = op;
            let db = open
                .dbs
                .get(bucket)
                .ok_or_else(|| StorageError::UnknownBucket(bucket.name().to_owned()))?;
            match op {
                WriteOp::Put { key, value, .. } => db.put(&mut wtxn, key, value),
                WriteOp::Delete { key, .. } => db.delete(&mut wtxn, key).map(|_| ()),
            }
            .map_err(lmdb_error)?;
        }
        wtxn.commit().map_err(lmdb_error)
    }

    fn view(&self) -> Result<Box<dyn EngineView>> {
        let open = self.current()?;
        Ok(Box::new(LmdbView::open(&open.env, Arc::clone(&open.dbs))?))
    }

    fn grow(&self) -> Result<()> {
        let mut guard = self.open.write();
        let current = guard.as_ref().map_or(self.config.map_size, |o| o.map_size);
        let next = current.checked_mul(2).ok_or_else(|| StorageError::Full {
            engine: ENGINE,
            message: "memory map cannot grow further".into(),
        })?;
        tracing::info!(from = current, to = next, "growing the LMDB memory map");
        self.reopen(&mut guard, next, || Ok(()))
    }

    fn size(&self) -> Result<u64> {
        self.current()?.env.real_disk_size().map_err(lmdb_error)
    }

    fn size_in_use(&self) -> Result<u64> {
        self.current()?
            .env
            .non_free_pages_size()
            .map_err(lmdb_error)
    }

    fn defrag(&self) -> Result<()> {
        let mut guard = self.open.write();
        let open = guard.as_ref().ok_or(StorageError::Closed)?;
        let tmp = self.path.join(DEFRAG_FILE);
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        open.env
            .copy_to_path(&tmp, CompactionOption::Enabled)
            .map_err(lmdb_error)?
            .sync_all()?;
        let map_size = open.map_size;
        let data = self.path.join(DATA_FILE);
        self.reopen(&mut guard, map_size, || {
            std::fs::rename(&tmp, &data)?;
            std::fs::File::open(&self.path)?.sync_all()?;
            Ok(())
        })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}
