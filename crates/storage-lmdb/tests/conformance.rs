//! The storage conformance suite on LMDB, plus LMDB's own map growth.

use std::path::Path;

use storage_api::conformance::Harness;
use storage_api::{Backend, BackendConfig, Bucket, Engine, ReadTx};
use storage_lmdb::{LmdbConfig, LmdbEngine};

fn open(dir: &Path) -> storage_api::Result<Box<dyn Engine>> {
    Ok(Box::new(LmdbEngine::open(dir, LmdbConfig::default())?))
}

const HARNESS: Harness = Harness {
    open,
    data_files: LmdbEngine::data_files,
};

storage_api::conformance_suite!(lmdb, HARNESS);

/// A full memory map grows without a restart and without losing a write. Growth reopens the
/// environment, so it waits for open read transactions: this test holds none across it.
#[test]
fn map_grows_without_restart() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let small = LmdbConfig {
        map_size: 1 << 20,
        ..LmdbConfig::default()
    };
    let backend = Backend::new(
        Box::new(LmdbEngine::open(dir.path(), small)?),
        BackendConfig::default(),
    )?;
    let bucket = Bucket::new("grow");
    let mut tx = backend.batch_tx()?;
    tx.create_bucket(bucket)?;
    tx.end()?;
    for i in 0..8u32 {
        let mut tx = backend.batch_tx()?;
        for j in 0..256u32 {
            tx.put(bucket, &(i * 256 + j).to_be_bytes(), &[1; 1024])?;
        }
        tx.end()?;
        backend.force_commit()?;
    }
    let rows = backend.read_tx()?.range(bucket, b"", None, 0)?.len();
    assert_eq!(rows, 2048);
    backend.close()?;
    drop(backend);
    let reopened = LmdbEngine::open(dir.path(), LmdbConfig::default())?;
    assert!(reopened.map_size() > 1 << 20, "the map did not grow");
    Ok(())
}
