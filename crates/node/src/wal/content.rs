//! What WAL records hold: each record's kind byte says which of these it is, and its payload is
//! a format version byte followed by the postcard encoding.

use raft_core::raftpb::{Entry, HardState};
use serde::{Deserialize, Serialize};

/// The payload format this build writes. A reader refuses versions it does not know rather than
/// guessing at their layout.
pub const FORMAT_VERSION: u8 = 1;

/// Who the log belongs to: written first in every segment, so each segment names its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalMetadata {
    /// The member that wrote the log.
    pub member_id: u64,
    /// The cluster the member belongs to.
    pub cluster_id: u64,
}

/// A snapshot the log knows of: entries up to `index` live in that snapshot, not in the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMarker {
    /// The last index the snapshot covers.
    pub index: u64,
    /// The term of that index.
    pub term: u64,
}

/// One WAL record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalRecord {
    /// The CRC the previous segment ended with: the first record of every segment, so the chain
    /// runs across segments and a segment can be verified on its own.
    Seed(u32),
    /// The log's owner.
    Metadata(WalMetadata),
    /// A raft log entry; a later entry with the same index replaces it and every entry after it.
    Entry(Entry),
    /// The raft hard state (term, vote, commit).
    HardState(HardState),
    /// A snapshot was taken.
    Snapshot(SnapshotMarker),
}

/// A payload that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

const KIND_SEED: u8 = 1;
const KIND_METADATA: u8 = 2;
const KIND_ENTRY: u8 = 3;
const KIND_HARD_STATE: u8 = 4;
const KIND_SNAPSHOT: u8 = 5;

impl WalRecord {
    /// The record's kind byte.
    pub fn kind(&self) -> u8 {
        match self {
            WalRecord::Seed(_) => KIND_SEED,
            WalRecord::Metadata(_) => KIND_METADATA,
            WalRecord::Entry(_) => KIND_ENTRY,
            WalRecord::HardState(_) => KIND_HARD_STATE,
            WalRecord::Snapshot(_) => KIND_SNAPSHOT,
        }
    }

    /// Appends the record's payload (version byte, then postcard) to `out`.
    pub fn encode_payload(&self, out: &mut Vec<u8>) {
        out.push(FORMAT_VERSION);
        let encoded = match self {
            WalRecord::Seed(crc) => postcard::to_extend(crc, std::mem::take(out)),
            WalRecord::Metadata(m) => postcard::to_extend(m, std::mem::take(out)),
            WalRecord::Entry(e) => postcard::to_extend(e, std::mem::take(out)),
            WalRecord::HardState(h) => postcard::to_extend(h, std::mem::take(out)),
            WalRecord::Snapshot(s) => postcard::to_extend(s, std::mem::take(out)),
        };
        // Serializing plain structs into a growable Vec cannot fail.
        *out = encoded.unwrap_or_else(|e| panic!("postcard failed to encode a WAL record: {e}"));
    }

    /// Decodes a record of `kind` from its payload.
    pub fn decode(kind: u8, payload: &[u8]) -> Result<WalRecord, DecodeError> {
        let Some((&version, body)) = payload.split_first() else {
            return Err(DecodeError("empty payload".into()));
        };
        if version != FORMAT_VERSION {
            return Err(DecodeError(format!(
                "record format version {version}, this build reads {FORMAT_VERSION}"
            )));
        }
        fn body_of<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, DecodeError> {
            match postcard::take_from_bytes(body) {
                Ok((value, [])) => Ok(value),
                Ok((_, rest)) => Err(DecodeError(format!("{} trailing bytes", rest.len()))),
                Err(e) => Err(DecodeError(e.to_string())),
            }
        }
        Ok(match kind {
            KIND_SEED => WalRecord::Seed(body_of(body)?),
            KIND_METADATA => WalRecord::Metadata(body_of(body)?),
            KIND_ENTRY => WalRecord::Entry(body_of(body)?),
            KIND_HARD_STATE => WalRecord::HardState(body_of(body)?),
            KIND_SNAPSHOT => WalRecord::Snapshot(body_of(body)?),
            other => return Err(DecodeError(format!("unknown record kind {other}"))),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;
    use raft_core::raftpb::EntryType;

    use super::*;

    fn record() -> impl Strategy<Value = WalRecord> {
        prop_oneof![
            any::<u32>().prop_map(WalRecord::Seed),
            (any::<u64>(), any::<u64>()).prop_map(|(m, c)| WalRecord::Metadata(WalMetadata {
                member_id: m,
                cluster_id: c
            })),
            (
                any::<u64>(),
                any::<u64>(),
                0..3u8,
                proptest::collection::vec(any::<u8>(), 0..64)
            )
                .prop_map(|(t, i, k, d)| {
                    let kind = [
                        EntryType::Normal,
                        EntryType::ConfChange,
                        EntryType::ConfChangeV2,
                    ][k as usize];
                    WalRecord::Entry(Entry::new(t, i, kind, d))
                }),
            (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(term, vote, commit)| {
                WalRecord::HardState(HardState { term, vote, commit })
            }),
            (any::<u64>(), any::<u64>())
                .prop_map(|(index, term)| WalRecord::Snapshot(SnapshotMarker { index, term })),
        ]
    }

    proptest! {
        #[test]
        fn records_round_trip(r in record()) {
            let mut payload = Vec::new();
            r.encode_payload(&mut payload);
            prop_assert_eq!(WalRecord::decode(r.kind(), &payload), Ok(r));
        }

        #[test]
        fn garbage_payloads_are_errors_not_panics(kind in 0u8..8, payload in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = WalRecord::decode(kind, &payload);
        }
    }

    #[test]
    fn unknown_versions_are_refused() {
        let mut payload = Vec::new();
        WalRecord::Seed(1).encode_payload(&mut payload);
        payload[0] = 9;
        let err = WalRecord::decode(KIND_SEED, &payload).unwrap_err();
        assert!(err.0.contains("version 9"), "{err}");
    }
}
