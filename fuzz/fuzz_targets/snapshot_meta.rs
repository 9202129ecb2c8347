//! A snapshot metadata file (`member/snap/*.snap`) read by `snapshot::metas_newest_first`:
//! damaged files are skipped, never a panic; a file written by `save_meta` reads back.

#![no_main]

use arbitrary::Arbitrary;
use ferrocd_fuzz::{Damage, damage};
use libfuzzer_sys::fuzz_target;
use node::snapshot::{DataPaths, metas_newest_first, save_meta};
use raft_core::raftpb::{ConfState, SnapshotMetadata};

#[derive(Arbitrary, Debug)]
enum Input {
    /// The file's bytes as they are.
    Raw(Vec<u8>),
    /// A body with a valid checksum appended: reaches the postcard decoding.
    Checksummed(Vec<u8>),
    /// A file written by `save_meta`, then damaged.
    Saved {
        index: u64,
        term: u64,
        voters: Vec<u64>,
        learners: Vec<u64>,
        voters_outgoing: Vec<u64>,
        learners_next: Vec<u64>,
        auto_leave: bool,
        damages: Vec<Damage>,
    },
}

fuzz_target!(|input: Input| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let paths = DataPaths::new(dir.path());
    if std::fs::create_dir_all(&paths.snap).is_err() {
        return;
    }
    let file = paths.meta_file(1, 1);
    let mut expect = None;
    match input {
        Input::Raw(bytes) => {
            let _ = std::fs::write(&file, bytes);
        }
        Input::Checksummed(mut body) => {
            let crc = crc32c::crc32c(&body);
            body.extend_from_slice(&crc.to_be_bytes());
            let _ = std::fs::write(&file, body);
        }
        Input::Saved {
            index,
            term,
            voters,
            learners,
            voters_outgoing,
            learners_next,
            auto_leave,
            damages,
        } => {
            let meta = SnapshotMetadata {
                conf_state: ConfState {
                    voters,
                    learners,
                    voters_outgoing,
                    learners_next,
                    auto_leave,
                },
                index,
                term,
            };
            if save_meta(&paths, &meta).is_err() {
                return;
            }
            let written = paths.meta_file(term, index);
            if damages.is_empty() {
                expect = Some(meta);
            } else if let Ok(mut bytes) = std::fs::read(&written) {
                damage(&mut bytes, &damages);
                let _ = std::fs::write(&written, bytes);
            }
        }
    }
    match metas_newest_first(&paths) {
        Ok(metas) => {
            assert!(metas.len() <= 1);
            if let Some(want) = expect {
                assert_eq!(metas, vec![want]);
            }
        }
        Err(e) => panic!("listing snapshots failed: {e}"),
    }
});
