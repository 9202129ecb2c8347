//! storage-api's portable snapshot (the `.snap.db` files, and what a leader streams to a
//! follower) restored by `storage_api::restore_snapshot` into an LMDB backend: raw bytes, and
//! a real snapshot of a backend, damaged. Undamaged, the copy hashes like the original.

#![no_main]

use std::io::Read;

use arbitrary::Arbitrary;
use ferrocd_fuzz::{Damage, damage};
use libfuzzer_sys::fuzz_target;
use node::engine::EngineKind;
use storage_api::{Backend, BackendConfig, Bucket, restore_snapshot};

#[derive(Arbitrary, Debug)]
enum Input {
    Raw(Vec<u8>),
    Snapshot {
        records: Vec<(u8, Vec<u8>, Vec<u8>)>,
        damages: Vec<Damage>,
    },
}

const BUCKETS: [&str; 4] = ["key", "meta", "lease", "fuzz-extra"];

fn backend(dir: &std::path::Path) -> Option<Backend> {
    EngineKind::Lmdb
        .open_backend(dir, BackendConfig::default())
        .ok()
}

fn hash(b: &Backend) -> u32 {
    match b.hash(&|_, _| false) {
        Ok(h) => h,
        Err(e) => panic!("hashing a backend: {e}"),
    }
}

fuzz_target!(|input: Input| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let (bytes, source_hash) = match input {
        Input::Raw(bytes) => (bytes, None),
        Input::Snapshot { records, damages } => {
            let Some(source) = backend(&dir.path().join("source")) else {
                return;
            };
            {
                let Ok(mut tx) = source.batch_tx() else {
                    return;
                };
                for (b, k, v) in &records {
                    let Ok(bucket) = Bucket::intern(BUCKETS[usize::from(*b) % BUCKETS.len()])
                    else {
                        return;
                    };
                    if k.is_empty() {
                        continue;
                    }
                    if tx.create_bucket(bucket).is_err() || tx.put(bucket, k, v).is_err() {
                        return;
                    }
                }
                if tx.end().is_err() {
                    return;
                }
            }
            let mut bytes = Vec::new();
            let read = source.snapshot().map(|mut s| s.read_to_end(&mut bytes));
            assert!(
                matches!(read, Ok(Ok(_))),
                "reading a snapshot failed: {read:?}"
            );
            let h = damages.is_empty().then(|| hash(&source));
            let _ = source.close();
            damage(&mut bytes, &damages);
            (bytes, h)
        }
    };
    let Some(target) = backend(&dir.path().join("target")) else {
        return;
    };
    let restored = restore_snapshot(&target, &bytes[..]);
    if let Some(want) = source_hash {
        assert!(
            restored.is_ok(),
            "an undamaged snapshot does not restore: {restored:?}"
        );
        assert_eq!(
            hash(&target),
            want,
            "the restored backend differs from its source"
        );
    }
    let _ = target.close();
});
