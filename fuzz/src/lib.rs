//! Helpers shared by the fuzz targets: damage to apply to a valid encoding, and the round-trip
//! check every postcard-encoded type gets.

use std::fmt::Debug;

use arbitrary::Arbitrary;
use serde::{Serialize, de::DeserializeOwned};

/// One change to a valid encoding: what a bad disk, a bad peer or a bad cable does to bytes.
#[derive(Arbitrary, Debug, Clone)]
pub enum Damage {
    /// XOR the byte at `at` (modulo the length) with `mask`.
    Flip {
        /// Where.
        at: u32,
        /// Which bits (0 is turned into 1).
        mask: u8,
    },
    /// Cut the bytes at `at`.
    Truncate {
        /// Where.
        at: u32,
    },
    /// Insert `bytes` at `at`.
    Insert {
        /// Where.
        at: u32,
        /// What.
        bytes: Vec<u8>,
    },
    /// Overwrite from `at` with `bytes` (growing the buffer if needed).
    Overwrite {
        /// Where.
        at: u32,
        /// What.
        bytes: Vec<u8>,
    },
    /// Zero `len` bytes from `at` (a sector that was never written).
    Zero {
        /// Where.
        at: u32,
        /// How many.
        len: u16,
    },
}

/// The cap on what one [`Damage`] may add, so a target's input stays small.
const MAX_GROWTH: usize = 4096;

impl Damage {
    /// Applies the damage to `bytes`.
    pub fn apply(&self, bytes: &mut Vec<u8>) {
        let at = |a: u32, len: usize| if len == 0 { 0 } else { a as usize % (len + 1) };
        match self {
            Damage::Flip { at: a, mask } => {
                if !bytes.is_empty() {
                    let i = *a as usize % bytes.len();
                    bytes[i] ^= (*mask).max(1);
                }
            }
            Damage::Truncate { at: a } => {
                let i = at(*a, bytes.len());
                bytes.truncate(i);
            }
            Damage::Insert { at: a, bytes: b } => {
                let i = at(*a, bytes.len());
                let b = &b[..b.len().min(MAX_GROWTH)];
                bytes.splice(i..i, b.iter().copied());
            }
            Damage::Overwrite { at: a, bytes: b } => {
                let i = at(*a, bytes.len());
                let b = &b[..b.len().min(MAX_GROWTH)];
                let end = i + b.len();
                if end > bytes.len() {
                    bytes.resize(end, 0);
                }
                bytes[i..end].copy_from_slice(b);
            }
            Damage::Zero { at: a, len } => {
                let i = at(*a, bytes.len());
                let end = (i + usize::from(*len)).min(bytes.len());
                bytes[i..end].fill(0);
            }
        }
    }
}

/// Applies every damage in order.
pub fn damage(bytes: &mut Vec<u8>, damages: &[Damage]) {
    for d in damages {
        d.apply(bytes);
    }
}

/// Decodes `bytes` as postcard `T`; whatever decodes must re-encode and decode to itself.
/// Returns the decoded value.
pub fn postcard_round_trip<T>(bytes: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let value: T = postcard::from_bytes(bytes).ok()?;
    let encoded = match postcard::to_allocvec(&value) {
        Ok(e) => e,
        Err(e) => panic!("{value:?} decoded but does not encode: {e}"),
    };
    let again: T = match postcard::from_bytes(&encoded) {
        Ok(v) => v,
        Err(e) => panic!("{value:?} does not decode from its own encoding: {e}"),
    };
    assert_eq!(again, value, "postcard round trip changed the value");
    Some(value)
}
