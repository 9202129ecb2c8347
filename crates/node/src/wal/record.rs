//! WAL record framing: each record is length-prefixed and carries a CRC-32C chained from the
//! previous record's, so a record can be neither dropped, reordered nor altered unseen.
//!
//! ```text
//! record = payload length: u32 LE | chained CRC-32C: u32 LE | kind: u8 | payload
//! crc    = crc32c_append(previous record's crc, kind | payload)
//! ```
//!
//! Reading distinguishes a *torn tail* (the last record was cut short by a crash: safe to
//! truncate) from *corruption* (a complete record whose checksum is wrong: never repaired).
//! Zero bytes where a header would start are the unwritten, pre-allocated end of a segment.

/// Bytes of a record's header (length, crc, kind).
pub const HEADER_LEN: usize = 9;
/// The largest payload a record may hold.
pub const MAX_PAYLOAD: usize = 64 << 20;

/// Appends one record of `kind` to `out`, chaining from `prev_crc`; returns the record's CRC,
/// which the next record chains from.
pub fn encode_record(out: &mut Vec<u8>, prev_crc: u32, kind: u8, payload: &[u8]) -> u32 {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| *l as usize <= MAX_PAYLOAD)
        .unwrap_or_else(|| panic!("WAL payload of {} bytes over MAX_PAYLOAD", payload.len()));
    let crc = crc32c::crc32c_append(crc32c::crc32c_append(prev_crc, &[kind]), payload);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
    crc
}

/// A record's header, as written: the payload's length, the chained CRC, the kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The payload's length in bytes (not checked against [`MAX_PAYLOAD`]).
    pub len: usize,
    /// The record's chained CRC-32C.
    pub crc: u32,
    /// The record's kind.
    pub kind: u8,
}

impl Header {
    /// The header at the start of `data`; `None` when `data` is shorter than a header.
    pub fn read(data: &[u8]) -> Option<Header> {
        let header = data.get(..HEADER_LEN)?;
        Some(Header {
            len: u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize,
            crc: u32::from_le_bytes([header[4], header[5], header[6], header[7]]),
            kind: header[8],
        })
    }
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The record's kind.
    pub kind: u8,
    /// The record's payload.
    pub payload: &'a [u8],
    /// The record's offset in the input.
    pub offset: usize,
    /// The record's chained CRC.
    pub crc: u32,
}

/// Why reading stopped before the end of the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The last record is incomplete: a crash cut it short. Everything before `offset` is valid.
    #[error("torn record at offset {offset}: the log ends inside it")]
    TornTail {
        /// Where the torn record starts.
        offset: usize,
    },
    /// A complete record does not match its checksum, or its header is impossible.
    #[error("corrupted record at offset {offset}: {reason}")]
    Corrupted {
        /// Where the bad record starts.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Reads records from a byte slice in order, checking the CRC chain.
pub struct RecordReader<'a> {
    data: &'a [u8],
    offset: usize,
    crc: u32,
}

impl<'a> RecordReader<'a> {
    /// Reads `data`, whose first record chains from `prev_crc`.
    pub fn new(data: &'a [u8], prev_crc: u32) -> RecordReader<'a> {
        RecordReader {
            data,
            offset: 0,
            crc: prev_crc,
        }
    }

    /// The offset just past the last valid record read.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The CRC of the last valid record read (the chain's current value).
    pub fn crc(&self) -> u32 {
        self.crc
    }

    /// The next record; `Ok(None)` at the end of the written data.
    pub fn next_record(&mut self) -> Result<Option<Frame<'a>>, RecordError> {
        let rest = &self.data[self.offset..];
        if rest.is_empty() {
            return Ok(None);
        }
        let offset = self.offset;
        let Some(Header { len, crc, kind }) = Header::read(rest) else {
            return if rest.iter().all(|b| *b == 0) {
                Ok(None)
            } else {
                Err(RecordError::TornTail { offset })
            };
        };
        if rest[..HEADER_LEN].iter().all(|b| *b == 0) {
            // Pre-allocated space: nothing was written here. Data after it would be corruption.
            return if rest.iter().all(|b| *b == 0) {
                Ok(None)
            } else {
                Err(RecordError::Corrupted {
                    offset,
                    reason: "data after a zeroed record header".into(),
                })
            };
        }
        if len > MAX_PAYLOAD {
            return Err(RecordError::Corrupted {
                offset,
                reason: format!("payload length {len} over the limit {MAX_PAYLOAD}"),
            });
        }
        let Some(payload) = rest.get(HEADER_LEN..HEADER_LEN + len) else {
            return Err(RecordError::TornTail { offset });
        };
        let want = crc32c::crc32c_append(crc32c::crc32c_append(self.crc, &[kind]), payload);
        if want != crc {
            return Err(RecordError::Corrupted {
                offset,
                reason: format!("checksum {crc:#010x}, expected {want:#010x}"),
            });
        }
        self.offset += HEADER_LEN + len;
        self.crc = crc;
        Ok(Some(Frame {
            kind,
            payload,
            offset,
            crc,
        }))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn log(records: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut crc = 7;
        for (kind, payload) in records {
            crc = encode_record(&mut out, crc, *kind, payload);
        }
        out
    }

    fn read_all(data: &[u8]) -> Result<Vec<(u8, Vec<u8>)>, RecordError> {
        let mut reader = RecordReader::new(data, 7);
        let mut out = Vec::new();
        while let Some(f) = reader.next_record()? {
            out.push((f.kind, f.payload.to_vec()));
        }
        Ok(out)
    }

    #[test]
    fn preallocated_zeroes_end_the_log() {
        let records = vec![(1, b"a".to_vec()), (2, Vec::new())];
        let mut data = log(&records);
        data.extend_from_slice(&[0; 100]);
        assert_eq!(read_all(&data), Ok(records));
    }

    #[test]
    fn a_record_cannot_be_dropped_from_the_chain() {
        let mut first = Vec::new();
        let crc = encode_record(&mut first, 7, 1, b"one");
        let mut second = Vec::new();
        encode_record(&mut second, crc, 1, b"two");
        // Reading the second record as if it came first breaks the chain.
        assert!(matches!(
            RecordReader::new(&second, 7).next_record(),
            Err(RecordError::Corrupted { offset: 0, .. })
        ));
    }

    proptest! {
        #[test]
        fn round_trip(records in proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..64)), 0..20)) {
            prop_assert_eq!(read_all(&log(&records)), Ok(records));
        }

        #[test]
        fn truncation_is_a_torn_tail_never_corruption(
            records in proptest::collection::vec(proptest::collection::vec(1u8.., 1..64), 1..10),
            cut in any::<prop::sample::Index>(),
        ) {
            let records: Vec<(u8, Vec<u8>)> = records.into_iter().map(|p| (1, p)).collect();
            let data = log(&records);
            let cut = cut.index(data.len());
            match read_all(&data[..cut]) {
                Ok(read) => prop_assert!(records.starts_with(&read)),
                Err(RecordError::TornTail { offset }) => prop_assert!(offset < cut),
                Err(e) => prop_assert!(false, "truncation reported as {e}"),
            }
        }

        #[test]
        fn any_flipped_bit_is_detected(
            records in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..64), 1..10),
            at in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let records: Vec<(u8, Vec<u8>)> = records.into_iter().map(|p| (1, p)).collect();
            let mut data = log(&records);
            let at = at.index(data.len());
            data[at] ^= 1 << bit;
            // Never silently accepted as the original log.
            prop_assert_ne!(read_all(&data), Ok(records));
        }
    }
}
