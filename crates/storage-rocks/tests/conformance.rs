//! The storage conformance suite on RocksDB.

use std::path::Path;

use storage_api::Engine;
use storage_api::conformance::Harness;
use storage_rocks::{RocksConfig, RocksEngine};

fn open(dir: &Path) -> storage_api::Result<Box<dyn Engine>> {
    Ok(Box::new(RocksEngine::open(dir, RocksConfig::default())?))
}

const HARNESS: Harness = Harness {
    open,
    data_files: RocksEngine::data_files,
};

storage_api::conformance_suite!(rocks, HARNESS);
