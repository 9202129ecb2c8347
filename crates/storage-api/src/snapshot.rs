//! The portable snapshot format: a consistent copy of a whole backend as a byte stream that any
//! engine can restore, checked chunk by chunk.
//!
//! ```text
//! header   "FRCDSNAP" | version: u32 BE
//! chunk*   tag 1 | payload length: u32 BE | payload | CRC-32C(payload): u32 BE
//!          payload = record*, record = bucket length: u8 | bucket | key length: u32 BE | key
//!                                      | value length: u32 BE | value
//! trailer  tag 0 | records: u64 BE | CRC-32C of the chunk CRCs: u32 BE
//! ```

use std::io::{self, Read};

use crate::{Backend, Bucket, MAX_KEY_LEN, MAX_VALUE_LEN, ReadTx, ReadTxn, Result, StorageError};

/// The first bytes of every snapshot.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"FRCDSNAP";
/// The version of the format this build writes and reads.
pub const SNAPSHOT_VERSION: u32 = 1;

const TAG_END: u8 = 0;
const TAG_CHUNK: u8 = 1;
/// A chunk is emitted once its payload reaches this size.
const CHUNK_TARGET: usize = 256 * 1024;
/// Keys read from the backend per step.
const PAGE: usize = 1024;
/// No valid chunk is larger: one maximal record plus the target.
const MAX_CHUNK: usize = CHUNK_TARGET + MAX_VALUE_LEN + MAX_KEY_LEN + 1 + 64 + 8;

/// A consistent copy of the whole backend, produced lazily as it is read (`io::Read`), while
/// writes go on. It sees what had ended when [`Backend::snapshot`] was called.
pub struct Snapshot {
    tx: ReadTxn,
    buckets: Vec<Bucket>,
    /// Index into `buckets` of the bucket being copied, and the key to resume from.
    position: Option<(usize, Vec<u8>)>,
    out: Vec<u8>,
    out_pos: usize,
    records: u64,
    chunk_crcs: u32,
    done: bool,
}

impl Snapshot {
    pub(crate) fn new(tx: ReadTxn) -> Snapshot {
        let buckets: Vec<Bucket> = tx.buckets().collect();
        let mut out = SNAPSHOT_MAGIC.to_vec();
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        Snapshot {
            position: (!buckets.is_empty()).then(|| (0, Vec::new())),
            tx,
            buckets,
            out,
            out_pos: 0,
            records: 0,
            chunk_crcs: 0,
            done: false,
        }
    }

    /// Produces the next chunk (or the trailer) into `out`.
    fn refill(&mut self) -> Result<()> {
        self.out.clear();
        self.out_pos = 0;
        let mut payload = Vec::new();
        while payload.len() < CHUNK_TARGET {
            let Some((index, start)) = self.position.take() else {
                break;
            };
            let bucket = self.buckets[index];
            let page = self.tx.range(bucket, &start, None, PAGE)?;
            for (k, v) in &page {
                encode_record(&mut payload, bucket, k, v);
                self.records += 1;
            }
            self.position = match page.last() {
                Some((last, _)) if page.len() == PAGE => {
                    let mut next = last.clone();
                    next.push(0);
                    Some((index, next))
                }
                _ => (index + 1 < self.buckets.len()).then(|| (index + 1, Vec::new())),
            };
        }
        if !payload.is_empty() {
            let crc = crc32c::crc32c(&payload);
            self.chunk_crcs = crc32c::crc32c_append(self.chunk_crcs, &crc.to_be_bytes());
            self.out.push(TAG_CHUNK);
            self.out
                .extend_from_slice(&len_u32(payload.len()).to_be_bytes());
            self.out.extend_from_slice(&payload);
            self.out.extend_from_slice(&crc.to_be_bytes());
        } else {
            self.out.push(TAG_END);
            self.out.extend_from_slice(&self.records.to_be_bytes());
            self.out.extend_from_slice(&self.chunk_crcs.to_be_bytes());
            self.done = true;
        }
        Ok(())
    }
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len)
        .unwrap_or_else(|_| panic!("snapshot length {len} exceeds u32: limits broken"))
}

fn encode_record(out: &mut Vec<u8>, bucket: Bucket, key: &[u8], value: &[u8]) {
    let name = bucket.name().as_bytes();
    out.push(u8::try_from(name.len()).unwrap_or_else(|_| panic!("bucket name over 255 bytes")));
    out.extend_from_slice(name);
    out.extend_from_slice(&len_u32(key.len()).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&len_u32(value.len()).to_be_bytes());
    out.extend_from_slice(value);
}

impl Read for Snapshot {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.out_pos == self.out.len() {
            if self.done {
                return Ok(0);
            }
            self.refill().map_err(io::Error::other)?;
        }
        let n = buf.len().min(self.out.len() - self.out_pos);
        buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        Ok(n)
    }
}

fn corrupted(what: impl Into<String>) -> StorageError {
    StorageError::Corrupted(format!("snapshot: {}", what.into()))
}

fn read_exact(r: &mut impl Read, buf: &mut [u8], what: &str) -> Result<()> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => corrupted(format!("truncated in {what}")),
        _ => StorageError::Io(e),
    })
}

fn read_u32(r: &mut impl Read, what: &str) -> Result<u32> {
    let mut b = [0u8; 4];
    read_exact(r, &mut b, what)?;
    Ok(u32::from_be_bytes(b))
}

/// Takes `n` bytes off the front of a verified payload.
fn take<'a>(payload: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
    if payload.len() < n {
        return Err(corrupted("record runs past its chunk"));
    }
    let (head, rest) = payload.split_at(n);
    *payload = rest;
    Ok(head)
}

fn take_u32(payload: &mut &[u8]) -> Result<usize> {
    let b = take(payload, 4)?;
    let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    usize::try_from(n).map_err(|_| corrupted("length overflows usize"))
}

/// Writes the snapshot read from `reader` into `backend` (normally a new, empty one), creating
/// buckets as they appear, and commits. Returns the number of records restored.
///
/// Each chunk is verified before any of it is written; the trailer's record count and checksum
/// are verified at the end. On [`StorageError::Corrupted`] the backend holds a prefix of the
/// snapshot and must be discarded.
pub fn restore_snapshot(backend: &Backend, mut reader: impl Read) -> Result<u64> {
    let mut magic = [0u8; 8];
    read_exact(&mut reader, &mut magic, "header")?;
    if &magic != SNAPSHOT_MAGIC {
        return Err(corrupted("not a ferrocd snapshot (bad magic)"));
    }
    let version = read_u32(&mut reader, "header")?;
    if version != SNAPSHOT_VERSION {
        return Err(corrupted(format!(
            "unsupported version {version} (this build reads {SNAPSHOT_VERSION})"
        )));
    }
    let mut records = 0u64;
    let mut chunk_crcs = 0u32;
    let mut payload = Vec::new();
    loop {
        let mut tag = [0u8; 1];
        read_exact(&mut reader, &mut tag, "chunk tag")?;
        match tag[0] {
            TAG_CHUNK => {}
            TAG_END => {
                let mut count = [0u8; 8];
                read_exact(&mut reader, &mut count, "trailer")?;
                let crc = read_u32(&mut reader, "trailer")?;
                if u64::from_be_bytes(count) != records || crc != chunk_crcs {
                    return Err(corrupted(format!(
                        "trailer does not match: {} records announced, {records} read",
                        u64::from_be_bytes(count)
                    )));
                }
                backend.force_commit()?;
                return Ok(records);
            }
            other => return Err(corrupted(format!("unknown chunk tag {other}"))),
        }
        let len = usize::try_from(read_u32(&mut reader, "chunk length")?)
            .map_err(|_| corrupted("chunk length overflows usize"))?;
        if len == 0 || len > MAX_CHUNK {
            return Err(corrupted(format!("chunk length {len} out of bounds")));
        }
        payload.resize(len, 0);
        read_exact(&mut reader, &mut payload, "chunk")?;
        let crc = read_u32(&mut reader, "chunk checksum")?;
        if crc32c::crc32c(&payload) != crc {
            return Err(corrupted(format!(
                "chunk checksum mismatch after {records} records"
            )));
        }
        chunk_crcs = crc32c::crc32c_append(chunk_crcs, &crc.to_be_bytes());

        let mut tx = backend.batch_tx()?;
        let mut rest: &[u8] = &payload;
        while !rest.is_empty() {
            let name_len = usize::from(take(&mut rest, 1)?[0]);
            let name = std::str::from_utf8(take(&mut rest, name_len)?)
                .map_err(|_| corrupted("bucket name is not UTF-8"))?;
            let bucket = Bucket::intern(name)?;
            let key_len = take_u32(&mut rest)?;
            let key = take(&mut rest, key_len)?;
            let value_len = take_u32(&mut rest)?;
            let value = take(&mut rest, value_len)?;
            tx.create_bucket(bucket)?;
            tx.put(bucket, key, value)?;
            records += 1;
        }
        tx.end()?;
    }
}
