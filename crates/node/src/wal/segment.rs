//! WAL segment files: their names, their order, and their pre-allocated size.
//!
//! A segment is named `{seq:016x}-{index:016x}.wal`: `seq` orders the segments, `index` is the
//! raft index of the first entry the segment may hold. Segments are pre-allocated to
//! [`SEGMENT_BYTES`]; the zeros after the last record are the unwritten rest.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// The size segments are pre-allocated to (etcd: 64 MiB).
pub const SEGMENT_BYTES: u64 = 64 << 20;

/// A segment's identity, from its file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SegmentName {
    /// The segment's position in the log (0 for the first segment ever written).
    pub seq: u64,
    /// The raft index of the first entry the segment may hold.
    pub first_index: u64,
}

impl SegmentName {
    /// The file name, `{seq:016x}-{first_index:016x}.wal`.
    pub fn file_name(self) -> String {
        format!("{:016x}-{:016x}.wal", self.seq, self.first_index)
    }

    /// Parses a file name written by [`SegmentName::file_name`]; `None` for anything else.
    pub fn parse(file_name: &str) -> Option<SegmentName> {
        let stem = file_name.strip_suffix(".wal")?;
        let (seq, index) = stem.split_once('-')?;
        if seq.len() != 16 || index.len() != 16 {
            return None;
        }
        Some(SegmentName {
            seq: u64::from_str_radix(seq, 16).ok()?,
            first_index: u64::from_str_radix(index, 16).ok()?,
        })
    }
}

/// The segments in `dir`, in log order. Fails when their sequence numbers have a gap, which
/// means a segment in the middle of the log is missing.
pub fn list(dir: &Path) -> io::Result<Vec<(SegmentName, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(name) = entry.file_name().to_str().and_then(SegmentName::parse) {
            segments.push((name, entry.path()));
        }
    }
    segments.sort();
    for pair in segments.windows(2) {
        if pair[1].0.seq != pair[0].0.seq + 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "WAL segments out of sequence: {} is followed by {}",
                    pair[0].1.display(),
                    pair[1].1.display()
                ),
            ));
        }
    }
    Ok(segments)
}

/// Creates segment `name` in `dir`, pre-allocated to `bytes`, and syncs the directory so the
/// file survives a crash. Fails if the file exists.
pub fn create(dir: &Path, name: SegmentName, bytes: u64) -> io::Result<(File, PathBuf)> {
    let path = dir.join(name.file_name());
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    file.set_len(bytes)?;
    file.sync_all()?;
    sync_dir(dir)?;
    Ok((file, path))
}

/// Makes the creation, renaming or removal of files in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn names_round_trip_and_sort_in_log_order() {
        let a = SegmentName {
            seq: 2,
            first_index: 0x10,
        };
        assert_eq!(a.file_name(), "0000000000000002-0000000000000010.wal");
        assert_eq!(SegmentName::parse(&a.file_name()), Some(a));
        for bad in [
            "x.wal",
            "0-1.wal",
            "0000000000000002-0000000000000010.tmp",
            "",
        ] {
            assert_eq!(SegmentName::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_missing_middle_segment_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        for seq in [0, 1, 3] {
            create(
                dir.path(),
                SegmentName {
                    seq,
                    first_index: 1,
                },
                4096,
            )
            .unwrap();
        }
        let err = list(dir.path()).unwrap_err();
        assert!(err.to_string().contains("out of sequence"), "{err}");
    }

    #[test]
    fn segments_are_preallocated() {
        let dir = tempfile::tempdir().unwrap();
        let (file, _) = create(
            dir.path(),
            SegmentName {
                seq: 0,
                first_index: 1,
            },
            SEGMENT_BYTES,
        )
        .unwrap();
        assert_eq!(file.metadata().unwrap().len(), SEGMENT_BYTES);
        assert_eq!(list(dir.path()).unwrap().len(), 1);
    }
}
