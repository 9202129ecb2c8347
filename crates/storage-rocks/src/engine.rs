//! The RocksDB database behind the engine trait.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{
    BlockBasedOptions, BottommostLevelCompaction, Cache, ColumnFamilyDescriptor, CompactOptions,
    DBCompressionType, ErrorKind, MultiThreaded, Options, WriteOptions,
};
use storage_api::{Bucket, Engine, EngineView, Result, StorageError, WriteBatch, WriteOp};

use crate::view::RocksView;

const ENGINE: &str = "rocks";
/// RocksDB's own column family, which holds no bucket.
const DEFAULT_CF: &str = "default";

pub(crate) type Db = rocksdb::DBWithThreadMode<MultiThreaded>;

/// How the RocksDB database is tuned.
#[derive(Clone, Debug)]
pub struct RocksConfig {
    /// Bytes of the shared LRU block cache.
    pub block_cache_bytes: usize,
    /// Bytes of each column family's memtable before it is flushed.
    pub write_buffer_bytes: usize,
    /// Background flush and compaction threads.
    pub background_jobs: i32,
}

impl Default for RocksConfig {
    fn default() -> Self {
        RocksConfig {
            block_cache_bytes: 64 << 20,
            write_buffer_bytes: 32 << 20,
            background_jobs: 2,
        }
    }
}

/// etcd's backend engine on RocksDB.
pub struct RocksEngine {
    path: PathBuf,
    db: Arc<Db>,
    cf_options: Options,
    write_options: WriteOptions,
}

pub(crate) fn rocks_error(e: rocksdb::Error) -> StorageError {
    match e.kind() {
        ErrorKind::Corruption => StorageError::Corrupted(format!("rocksdb: {e}")),
        ErrorKind::IOError => StorageError::Io(std::io::Error::other(e.into_string())),
        _ => StorageError::engine(ENGINE, e.into_string()),
    }
}

fn options(config: &RocksConfig) -> (Options, Options) {
    let cache = Cache::new_lru_cache(config.block_cache_bytes);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&cache);
    table.set_bloom_filter(10.0, false);
    table.set_cache_index_and_filter_blocks(true);

    let mut cf = Options::default();
    cf.set_block_based_table_factory(&table);
    cf.set_compression_type(DBCompressionType::Lz4);
    cf.set_write_buffer_size(config.write_buffer_bytes);

    let mut db = cf.clone();
    db.create_if_missing(true);
    db.create_missing_column_families(true);
    db.set_paranoid_checks(true);
    db.set_max_background_jobs(config.background_jobs);
    db.set_keep_log_file_num(4);
    (db, cf)
}

impl RocksEngine {
    /// Opens (or creates) the engine's database in directory `dir`.
    pub fn open(dir: impl AsRef<Path>, config: RocksConfig) -> Result<RocksEngine> {
        let path = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&path)?;
        let (db_options, cf_options) = options(&config);
        let existing = if path.join("CURRENT").exists() {
            Db::list_cf(&db_options, &path).map_err(rocks_error)?
        } else {
            Vec::new()
        };
        for name in &existing {
            if name != DEFAULT_CF {
                Bucket::intern(name)?;
            }
        }
        let descriptors = existing
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(name, cf_options.clone()));
        let db = Db::open_cf_descriptors(&db_options, &path, descriptors).map_err(rocks_error)?;
        let mut write_options = WriteOptions::default();
        write_options.set_sync(true);
        write_options.disable_wal(false);
        Ok(RocksEngine {
            path,
            db: Arc::new(db),
            cf_options,
            write_options,
        })
    }

    /// The files that define the database's state (CURRENT and the manifests).
    pub fn data_files(dir: &Path) -> Vec<PathBuf> {
        let mut files = vec![dir.join("CURRENT")];
        if let Ok(entries) = std::fs::read_dir(dir) {
            files.extend(entries.flatten().map(|e| e.path()).filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("MANIFEST-"))
            }));
        }
        files
    }

    fn cf(&self, bucket: Bucket) -> Result<Arc<rocksdb::BoundColumnFamily<'_>>> {
        self.db
            .cf_handle(bucket.name())
            .ok_or_else(|| StorageError::UnknownBucket(bucket.name().to_owned()))
    }

    fn column_families(&self) -> Result<Vec<String>> {
        Db::list_cf(&Options::default(), &self.path).map_err(rocks_error)
    }
}

impl Engine for RocksEngine {
    fn name(&self) -> &'static str {
        ENGINE
    }

    fn bucket_names(&self) -> Result<Vec<String>> {
        Ok(self
            .column_families()?
            .into_iter()
            .filter(|name| name != DEFAULT_CF)
            .collect())
    }

    fn create_bucket(&self, bucket: Bucket) -> Result<()> {
        if self.db.cf_handle(bucket.name()).is_some() {
            return Ok(());
        }
        self.db
            .create_cf(bucket.name(), &self.cf_options)
            .map_err(rocks_error)
    }

    fn apply(&self, batch: &WriteBatch) -> Result<()> {
        let mut wb = rocksdb::WriteBatchWithTransaction::<false>::default();
        for op in &batch.ops {
            match op {
                WriteOp::Put { bucket, key, value } => wb.put_cf(&self.cf(*bucket)?, key, value),
                WriteOp::Delete { bucket, key } => wb.delete_cf(&self.cf(*bucket)?, key),
            }
        }
        self.db
            .write_opt(wb, &self.write_options)
            .map_err(rocks_error)
    }

    fn view(&self) -> Result<Box<dyn EngineView>> {
        Ok(Box::new(RocksView::new(Arc::clone(&self.db))))
    }

    fn grow(&self) -> Result<()> {
        Err(StorageError::Full {
            engine: ENGINE,
            message: "RocksDB has no fixed size to grow".into(),
        })
    }

    fn size(&self) -> Result<u64> {
        let mut total = 0;
        for entry in std::fs::read_dir(&self.path)? {
            let meta = entry?.metadata()?;
            if meta.is_file() {
                total += meta.len();
            }
        }
        Ok(total)
    }

    fn size_in_use(&self) -> Result<u64> {
        let mut total = 0;
        for name in self.column_families()? {
            let Some(cf) = self.db.cf_handle(&name) else {
                continue;
            };
            for property in [
                "rocksdb.estimate-live-data-size",
                "rocksdb.cur-size-all-mem-tables",
            ] {
                total += self
                    .db
                    .property_int_value_cf(&cf, property)
                    .map_err(rocks_error)?
                    .unwrap_or(0);
            }
        }
        Ok(total)
    }

    fn defrag(&self) -> Result<()> {
        let mut compact = CompactOptions::default();
        compact.set_bottommost_level_compaction(BottommostLevelCompaction::Force);
        compact.set_exclusive_manual_compaction(true);
        for name in self.column_families()? {
            let Some(cf) = self.db.cf_handle(&name) else {
                continue;
            };
            self.db.flush_cf(&cf).map_err(rocks_error)?;
            self.db
                .compact_range_cf_opt(&cf, None::<&[u8]>, None::<&[u8]>, &compact);
        }
        Ok(())
    }

    fn path(&self) -> &Path {
        &self.path
    }
}
