//! The write-ahead log: every raft entry and hard state is appended here and synced before the
//! member acts on it (sends a vote, acknowledges an append).
//!
//! The log is a directory of pre-allocated segments ([`segment`]) holding CRC-chained records
//! ([`record`]) of the kinds in [`content`]. Each [`Wal::save`] writes its records with one
//! `fdatasync`. On open, a record torn by a crash at the very end of the log is cut off (and
//! logged); any other damage stops the member with an error naming the file and the offset,
//! because "repairing" it would silently lose acknowledged writes.

pub mod content;
pub mod record;
pub mod segment;

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use raft_core::raftpb::{Entry, HardState};

pub use content::{SnapshotMarker, WalMetadata, WalRecord};
pub use record::{Frame, RecordError, RecordReader, encode_record};
use segment::{SEGMENT_BYTES, SegmentName};

/// Why the WAL cannot be created, opened or written.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// A file operation failed.
    #[error("WAL I/O on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// A record is damaged somewhere other than the torn tail of the log.
    #[error("WAL corrupted in {path} at offset {offset}: {reason}")]
    Corrupted {
        /// The segment.
        path: PathBuf,
        /// The damaged record's offset in the segment.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// There is no WAL in the directory.
    #[error("no WAL in {0}")]
    NotFound(PathBuf),
    /// `create` found a WAL already there.
    #[error("a WAL already exists in {0}")]
    AlreadyExists(PathBuf),
    /// The snapshot the caller restarts from is not recorded in the log.
    #[error("the WAL has no record of snapshot index {} term {}", .0.index, .0.term)]
    SnapshotNotFound(SnapshotMarker),
}

type Result<T, E = WalError> = std::result::Result<T, E>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What [`Wal::open`] read back: everything a member needs to restart raft.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalState {
    /// The log's owner.
    pub metadata: WalMetadata,
    /// The last hard state saved.
    pub hard_state: HardState,
    /// The entries after the snapshot the log was opened at, in index order.
    pub entries: Vec<Entry>,
}

/// The write-ahead log, open for appending.
pub struct Wal {
    dir: PathBuf,
    metadata: WalMetadata,
    /// Live segments, oldest first; the last is the one written to.
    segments: Vec<(SegmentName, PathBuf)>,
    file: File,
    /// Where the next record goes in the current segment.
    offset: u64,
    /// The CRC chain's current value.
    crc: u32,
    /// The index of the last entry saved (or of the last snapshot, if later).
    last_index: u64,
    hard_state: HardState,
    /// Segments are cut once they would grow past this.
    segment_bytes: u64,
    buf: Vec<u8>,
    /// Told how long each record `fdatasync` took (etcd's
    /// `etcd_disk_wal_fsync_duration_seconds`).
    fsync_observer: Option<FsyncObserver>,
}

/// What [`Wal::set_fsync_observer`] takes.
pub type FsyncObserver = Box<dyn FnMut(std::time::Duration) + Send>;

impl Wal {
    /// Sets what is told the duration of every `fdatasync` of appended records.
    pub fn set_fsync_observer(&mut self, observer: FsyncObserver) {
        self.fsync_observer = Some(observer);
    }

    /// Creates a new, empty log in `dir` (created if missing) for `metadata`'s member.
    pub fn create(dir: &Path, metadata: WalMetadata) -> Result<Wal> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        if !segment::list(dir).map_err(io_err(dir))?.is_empty() {
            return Err(WalError::AlreadyExists(dir.to_path_buf()));
        }
        let name = SegmentName {
            seq: 0,
            first_index: 0,
        };
        let (file, path) = segment::create(dir, name, SEGMENT_BYTES).map_err(io_err(dir))?;
        let mut wal = Wal {
            dir: dir.to_path_buf(),
            metadata,
            segments: vec![(name, path)],
            file,
            offset: 0,
            crc: 0,
            last_index: 0,
            hard_state: HardState::default(),
            segment_bytes: SEGMENT_BYTES,
            buf: Vec::new(),
            fsync_observer: None,
        };
        wal.write_segment_header()?;
        Ok(wal)
    }

    /// Whether `dir` holds a WAL.
    pub fn exists(dir: &Path) -> bool {
        segment::list(dir).is_ok_and(|s| !s.is_empty())
    }

    /// Opens the log in `dir` and reads it back from `snapshot` (the default marker: from the
    /// beginning). Cuts off a torn last record; fails on any other damage.
    pub fn open(dir: &Path, snapshot: SnapshotMarker) -> Result<(Wal, WalState)> {
        let all = segment::list(dir).map_err(io_err(dir))?;
        if all.is_empty() {
            return Err(WalError::NotFound(dir.to_path_buf()));
        }
        // Start at the last segment that can hold the snapshot's index: earlier ones only hold
        // entries the snapshot covers.
        let start = all
            .iter()
            .rposition(|(name, _)| name.first_index <= snapshot.index)
            .unwrap_or(0);
        let segments = all[start..].to_vec();

        let mut reading = Reading {
            snapshot,
            found_snapshot: snapshot.index == 0,
            metadata: None,
            hard_state: HardState::default(),
            entries: Vec::new(),
            last_index: 0,
        };
        let mut crc: Option<u32> = None;
        let mut end_offset = 0u64;
        for (i, (_, path)) in segments.iter().enumerate() {
            let is_last = i + 1 == segments.len();
            let data = std::fs::read(path).map_err(io_err(path))?;
            let (segment_crc, offset) = reading.read_segment(path, &data, crc, is_last)?;
            crc = Some(segment_crc);
            end_offset = offset;
        }
        if !reading.found_snapshot {
            return Err(WalError::SnapshotNotFound(snapshot));
        }
        let Some(metadata) = reading.metadata else {
            let path = segments[0].1.clone();
            return Err(WalError::Corrupted {
                path,
                offset: 0,
                reason: "no metadata record".into(),
            });
        };
        let (_, last_path) = &segments[segments.len() - 1];
        let file = File::options()
            .read(true)
            .write(true)
            .open(last_path)
            .map_err(io_err(last_path))?;
        let wal = Wal {
            dir: dir.to_path_buf(),
            metadata,
            segments,
            file,
            offset: end_offset,
            crc: crc.unwrap_or(0),
            last_index: reading.last_index.max(snapshot.index),
            hard_state: reading.hard_state,
            segment_bytes: SEGMENT_BYTES,
            buf: Vec::new(),
            fsync_observer: None,
        };
        let state = WalState {
            metadata,
            hard_state: reading.hard_state,
            entries: reading.entries,
        };
        Ok((wal, state))
    }

    /// The owner recorded in the log in `dir` (the member and cluster ids), read from the head
    /// of its newest segment without replaying the log: a restarting member takes its identity
    /// from here, not from its flags, as etcd does.
    pub fn read_metadata(dir: &Path) -> Result<WalMetadata> {
        let all = segment::list(dir).map_err(io_err(dir))?;
        let Some((_, path)) = all.last() else {
            return Err(WalError::NotFound(dir.to_path_buf()));
        };
        let mut head = Vec::with_capacity(4096);
        File::open(path)
            .and_then(|f| f.take(4096).read_to_end(&mut head))
            .map_err(io_err(path))?;
        let corrupted = |offset: u64, reason: String| WalError::Corrupted {
            path: path.clone(),
            offset,
            reason,
        };
        let seed = peek_seed(&head).map_err(|reason| corrupted(0, reason))?;
        let mut reader = RecordReader::new(&head, seed);
        for _ in 0..2 {
            match reader.next_record() {
                Ok(Some(frame)) => {
                    let record = WalRecord::decode(frame.kind, frame.payload)
                        .map_err(|e| corrupted(frame.offset as u64, e.0))?;
                    if let WalRecord::Metadata(m) = record {
                        return Ok(m);
                    }
                }
                Ok(None) => break,
                Err(RecordError::Corrupted { offset, reason }) => {
                    return Err(corrupted(offset as u64, reason));
                }
                Err(RecordError::TornTail { offset }) => {
                    return Err(corrupted(offset as u64, "segment head cut short".into()));
                }
            }
        }
        Err(corrupted(
            0,
            "no metadata record at the segment head".into(),
        ))
    }

    /// Cuts (and pre-allocates) segments at `bytes` instead of the default 64 MiB: for tests and
    /// small deployments. Reading never depends on it.
    pub fn set_segment_bytes(&mut self, bytes: u64) {
        self.segment_bytes = bytes.max(4096);
    }

    /// The log's owner.
    pub fn metadata(&self) -> WalMetadata {
        self.metadata
    }

    /// The index of the last entry saved.
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    /// Appends `entries` and, when it changed, `hard_state`, durably (one `fdatasync`). An
    /// entry whose index is already in the log replaces it and everything after it.
    pub fn save(&mut self, hard_state: &HardState, entries: &[Entry]) -> Result<()> {
        let hard_state_changed = *hard_state != self.hard_state && !hard_state.is_empty();
        if entries.is_empty() && !hard_state_changed {
            return Ok(());
        }
        let mut records: Vec<WalRecord> = entries.iter().cloned().map(WalRecord::Entry).collect();
        if hard_state_changed {
            records.push(WalRecord::HardState(*hard_state));
        }
        let mut encoded = self.encode(&records);
        if self.offset + encoded.0.len() as u64 > self.segment_bytes && self.segment_holds_entries()
        {
            let first_index = entries.first().map_or(self.last_index + 1, |e| e.index);
            self.cut(first_index)?;
            encoded = self.encode(&records);
        }
        self.write_synced(encoded)?;
        if let Some(last) = entries.last() {
            self.last_index = last.index;
        }
        if hard_state_changed {
            self.hard_state = *hard_state;
        }
        Ok(())
    }

    /// Records that a snapshot up to `marker` exists, durably. The member may then
    /// [`Wal::release_to`] the segments the snapshot made unnecessary.
    pub fn save_snapshot(&mut self, marker: SnapshotMarker) -> Result<()> {
        let encoded = self.encode(&[WalRecord::Snapshot(marker)]);
        self.write_synced(encoded)?;
        self.last_index = self.last_index.max(marker.index);
        Ok(())
    }

    /// Deletes the segments that hold only entries before `index` (which a snapshot covers).
    /// The segment being written is always kept.
    pub fn release_to(&mut self, index: u64) -> Result<()> {
        let Some(keep_from) = self
            .segments
            .iter()
            .rposition(|(name, _)| name.first_index <= index)
        else {
            return Ok(());
        };
        if keep_from == 0 {
            return Ok(());
        }
        for (_, path) in self.segments.drain(..keep_from) {
            std::fs::remove_file(&path).map_err(io_err(&path))?;
            tracing::debug!(segment = %path.display(), "released WAL segment");
        }
        segment::sync_dir(&self.dir).map_err(io_err(&self.dir))
    }

    /// The live segment files, oldest first.
    pub fn segment_paths(&self) -> impl Iterator<Item = &Path> {
        self.segments.iter().map(|(_, path)| path.as_path())
    }

    fn segment_holds_entries(&self) -> bool {
        self.segments
            .last()
            .is_some_and(|(name, _)| self.last_index >= name.first_index)
    }

    /// Encodes `records` chained from the current CRC, without advancing it; returns the bytes
    /// and the chain value after them.
    fn encode(&mut self, records: &[WalRecord]) -> (Vec<u8>, u32) {
        let mut out = Vec::new();
        let mut crc = self.crc;
        for record in records {
            self.buf.clear();
            record.encode_payload(&mut self.buf);
            crc = encode_record(&mut out, crc, record.kind(), &self.buf);
        }
        (out, crc)
    }

    /// Writes records [`Wal::encode`]d from the current CRC at the end of the current segment,
    /// syncs them, and advances the chain.
    fn write_synced(&mut self, (bytes, crc): (Vec<u8>, u32)) -> Result<()> {
        let path = self.current_path().to_path_buf();
        self.file
            .write_all_at(&bytes, self.offset)
            .map_err(io_err(&path))?;
        let started = std::time::Instant::now();
        self.file.sync_data().map_err(io_err(&path))?;
        if let Some(observe) = self.fsync_observer.as_mut() {
            observe(started.elapsed());
        }
        self.offset += bytes.len() as u64;
        self.crc = crc;
        Ok(())
    }

    fn current_path(&self) -> &Path {
        self.segments
            .last()
            .map(|(_, path)| path.as_path())
            .unwrap_or_else(|| panic!("a WAL always has a current segment"))
    }

    /// The records every segment starts with: the chain seed, the owner, the hard state.
    fn write_segment_header(&mut self) -> Result<()> {
        let mut records = vec![
            WalRecord::Seed(self.crc),
            WalRecord::Metadata(self.metadata),
        ];
        if !self.hard_state.is_empty() {
            records.push(WalRecord::HardState(self.hard_state));
        }
        let encoded = self.encode(&records);
        self.write_synced(encoded)
    }

    /// Starts a new segment whose first entry will be `first_index`.
    fn cut(&mut self, first_index: u64) -> Result<()> {
        let seq = self.segments.last().map_or(0, |(name, _)| name.seq + 1);
        let name = SegmentName { seq, first_index };
        let (file, path) =
            segment::create(&self.dir, name, self.segment_bytes).map_err(io_err(&self.dir))?;
        tracing::info!(segment = %path.display(), "WAL segment cut");
        self.segments.push((name, path));
        self.file = file;
        self.offset = 0;
        self.write_segment_header()
    }
}

/// The state of reading a log back.
struct Reading {
    snapshot: SnapshotMarker,
    found_snapshot: bool,
    metadata: Option<WalMetadata>,
    hard_state: HardState,
    entries: Vec<Entry>,
    last_index: u64,
}

impl Reading {
    /// Reads one segment; `prev_crc` is the chain value the previous segment ended with (`None`
    /// for the first segment read). Returns the chain value and the offset the segment's valid
    /// records end at.
    fn read_segment(
        &mut self,
        path: &Path,
        data: &[u8],
        prev_crc: Option<u32>,
        is_last: bool,
    ) -> Result<(u32, u64)> {
        let corrupted = |offset: usize, reason: String| WalError::Corrupted {
            path: path.to_path_buf(),
            offset: offset as u64,
            reason,
        };
        let seed = match prev_crc {
            Some(crc) => crc,
            None => peek_seed(data).map_err(|reason| corrupted(0, reason))?,
        };
        let mut reader = RecordReader::new(data, seed);
        let mut first = true;
        loop {
            match reader.next_record() {
                Ok(Some(frame)) => {
                    let record = WalRecord::decode(frame.kind, frame.payload)
                        .map_err(|e| corrupted(frame.offset, e.0))?;
                    if first {
                        if record != WalRecord::Seed(seed) {
                            return Err(corrupted(
                                frame.offset,
                                "segment does not start with the chain seed".into(),
                            ));
                        }
                        first = false;
                        continue;
                    }
                    self.apply(record)
                        .map_err(|reason| corrupted(frame.offset, reason))?;
                }
                Ok(None) => break,
                Err(RecordError::Corrupted { offset, .. }) if is_last && is_torn(data, offset) => {
                    tracing::warn!(
                        segment = %path.display(),
                        offset,
                        "WAL ends in a partly written record (a crash cut a write short): \
                         cutting it off"
                    );
                    zero_from(path, offset as u64)?;
                    return Ok((reader.crc(), offset as u64));
                }
                Err(RecordError::TornTail { offset }) if is_last => {
                    tracing::warn!(
                        segment = %path.display(),
                        offset,
                        "WAL ends in a torn record (a crash cut a write short): cutting it off"
                    );
                    zero_from(path, offset as u64)?;
                    return Ok((reader.crc(), offset as u64));
                }
                Err(RecordError::TornTail { offset }) => {
                    return Err(corrupted(
                        offset,
                        "record cut short in a segment that is not the last".into(),
                    ));
                }
                Err(RecordError::Corrupted { offset, reason }) => {
                    return Err(corrupted(offset, reason));
                }
            }
        }
        if first {
            return Err(corrupted(0, "empty segment: no chain seed".into()));
        }
        Ok((reader.crc(), reader.offset() as u64))
    }

    fn apply(&mut self, record: WalRecord) -> Result<(), String> {
        match record {
            WalRecord::Seed(_) => return Err("chain seed in the middle of a segment".into()),
            WalRecord::Metadata(m) => match self.metadata {
                Some(known) if known != m => {
                    return Err(format!("metadata {m:?} differs from {known:?}"));
                }
                _ => self.metadata = Some(m),
            },
            WalRecord::HardState(h) => self.hard_state = h,
            WalRecord::Snapshot(s) => {
                if s == self.snapshot {
                    self.found_snapshot = true;
                }
            }
            WalRecord::Entry(e) => {
                let index = e.index;
                if index > self.snapshot.index {
                    match self.entries.first().map(|f| f.index) {
                        None if index != self.snapshot.index + 1 => {
                            return Err(format!(
                                "entry {index} follows snapshot index {}: entries are missing",
                                self.snapshot.index
                            ));
                        }
                        None => {}
                        Some(first) if index < first || index > self.last_index + 1 => {
                            return Err(format!(
                                "entry {index} out of order after entry {}",
                                self.last_index
                            ));
                        }
                        Some(first) => self.entries.truncate((index - first) as usize),
                    }
                    self.entries.push(e);
                }
                self.last_index = index;
            }
        }
        Ok(())
    }
}

/// The seed value in a segment's first record, read before the chain can be checked.
fn peek_seed(data: &[u8]) -> std::result::Result<u32, String> {
    let header = record::Header::read(data)
        .ok_or_else(|| "segment shorter than a record header".to_string())?;
    let payload = data
        .get(record::HEADER_LEN..record::HEADER_LEN + header.len)
        .ok_or_else(|| "first record cut short".to_string())?;
    match WalRecord::decode(header.kind, payload) {
        Ok(WalRecord::Seed(seed)) => Ok(seed),
        Ok(_) => Err("segment does not start with the chain seed".into()),
        Err(e) => Err(e.0),
    }
}

/// The unit a disk writes atomically; a crash can leave any of a write's sectors unwritten.
const SECTOR: usize = 512;

/// Whether the record at `offset`, whose checksum does not match, is a write a crash cut short
/// rather than damage: part of it lies in a sector that was never written (all zeros). Only
/// the last segment's unsynced tail can look like this; etcd's WAL uses the same test.
fn is_torn(data: &[u8], offset: usize) -> bool {
    let Some(header) = data.get(offset..).and_then(record::Header::read) else {
        return false;
    };
    let end = (offset + record::HEADER_LEN)
        .saturating_add(header.len)
        .min(data.len());
    // The record's bytes, split at sector boundaries: one all-zero piece means a sector of the
    // write never reached the disk.
    let mut from = offset;
    while from < end {
        let to = ((from / SECTOR + 1) * SECTOR).min(end);
        if data[from..to].iter().all(|b| *b == 0) {
            return true;
        }
        from = to;
    }
    false
}

/// Zeroes `path` from `offset` to the end, keeping its size, and syncs it.
fn zero_from(path: &Path, offset: u64) -> Result<()> {
    let file = File::options()
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    let len = file.metadata().map_err(io_err(path))?.len();
    file.set_len(offset).map_err(io_err(path))?;
    file.set_len(len).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}
