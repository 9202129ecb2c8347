//! The protobuf wire format of etcd's `mvccpb.KeyValue`, hand-written so the `key` bucket holds
//! exactly what etcd writes (snapshots and hashes stay comparable with etcd's tooling):
//!
//! ```text
//! message KeyValue {
//!   bytes key = 1; int64 create_revision = 2; int64 mod_revision = 3;
//!   int64 version = 4; bytes value = 5; int64 lease = 6;
//! }
//! ```
//!
//! Fields are written in number order and zero values are omitted (proto3). Decoding accepts any
//! field order, repeated fields (last wins) and skips unknown fields.

use crate::KeyValue;

/// A `key` bucket value that is not a valid encoded `KeyValue`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed KeyValue at byte {offset}: {reason}")]
pub struct DecodeError {
    /// Where decoding failed.
    pub offset: usize,
    /// What is wrong.
    pub reason: &'static str,
}

const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LEN: u64 = 2;
const FIXED32: u64 = 5;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_int(out: &mut Vec<u8>, field: u64, v: i64) {
    if v != 0 {
        put_varint(out, (field << 3) | VARINT);
        // int64 is the two's complement as a 64-bit varint (10 bytes when negative).
        put_varint(out, v as u64);
    }
}

fn put_bytes(out: &mut Vec<u8>, field: u64, v: &[u8]) {
    if !v.is_empty() {
        put_varint(out, (field << 3) | LEN);
        put_varint(out, v.len() as u64);
        out.extend_from_slice(v);
    }
}

/// Encodes `kv` as etcd does.
pub fn encode(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(kv.key.len() + kv.value.len() + 40);
    put_bytes(&mut out, 1, &kv.key);
    put_int(&mut out, 2, kv.create_revision);
    put_int(&mut out, 3, kv.mod_revision);
    put_int(&mut out, 4, kv.version);
    put_bytes(&mut out, 5, &kv.value);
    put_int(&mut out, 6, kv.lease);
    out
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn fail<T>(&self, reason: &'static str) -> Result<T, DecodeError> {
        Err(DecodeError {
            offset: self.pos,
            reason,
        })
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.bytes.get(self.pos) else {
                return self.fail("truncated varint");
            };
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        self.fail("varint longer than 10 bytes")
    }

    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        match self.pos.checked_add(n) {
            Some(end) if end <= self.bytes.len() => {
                let out = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(out)
            }
            _ => self.fail("truncated field"),
        }
    }
}

/// Decodes an encoded `KeyValue`.
pub fn decode(bytes: &[u8]) -> Result<KeyValue, DecodeError> {
    let mut r = Reader { bytes, pos: 0 };
    let mut kv = KeyValue::default();
    while r.pos < bytes.len() {
        let tag = r.varint()?;
        let (field, wire) = (tag >> 3, tag & 7);
        if field == 0 {
            return r.fail("field number 0");
        }
        let expected = match field {
            1 | 5 => Some(LEN),
            2..=4 | 6 => Some(VARINT),
            _ => None,
        };
        if let Some(expected) = expected
            && expected != wire
        {
            return r.fail("wrong wire type for a known field");
        }
        match wire {
            VARINT => {
                let v = r.varint()? as i64;
                match field {
                    2 => kv.create_revision = v,
                    3 => kv.mod_revision = v,
                    4 => kv.version = v,
                    6 => kv.lease = v,
                    _ => {}
                }
            }
            LEN => {
                let len = r.varint()?;
                let Ok(len) = usize::try_from(len) else {
                    return r.fail("length overflows");
                };
                let data = r.take(len)?;
                match field {
                    1 => kv.key = data.to_vec(),
                    5 => kv.value = data.to_vec(),
                    _ => {}
                }
            }
            FIXED64 => {
                r.take(8)?;
            }
            FIXED32 => {
                r.take(4)?;
            }
            _ => return r.fail("unsupported wire type"),
        }
    }
    Ok(kv)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn matches_gogo_protobuf_bytes() {
        let kv = KeyValue {
            key: b"foo".to_vec(),
            create_revision: 2,
            mod_revision: 300,
            version: 1,
            value: b"bar".to_vec(),
            lease: 0,
        };
        assert_eq!(
            encode(&kv),
            b"\x0a\x03foo\x10\x02\x18\xac\x02\x20\x01\x2a\x03bar".to_vec()
        );
        // A deletion record holds only the key.
        let tomb = KeyValue {
            key: b"foo".to_vec(),
            ..KeyValue::default()
        };
        assert_eq!(encode(&tomb), b"\x0a\x03foo".to_vec());
        assert_eq!(encode(&KeyValue::default()), Vec::<u8>::new());
    }

    #[test]
    fn negative_ints_take_ten_bytes() {
        let kv = KeyValue {
            lease: -1,
            ..KeyValue::default()
        };
        let bytes = encode(&kv);
        assert_eq!(bytes.len(), 11);
        assert_eq!(decode(&bytes).unwrap(), kv);
    }

    #[test]
    fn unknown_fields_are_skipped_and_garbage_rejected() {
        // field 7 varint, field 8 fixed64, field 9 bytes, field 10 fixed32, then key.
        let mut bytes = vec![0x38, 0x05, 0x41, 0, 0, 0, 0, 0, 0, 0, 0, 0x4a, 0x01, 0xff];
        bytes.extend_from_slice(&[0x55, 0, 0, 0, 0, 0x0a, 0x01, b'k']);
        assert_eq!(decode(&bytes).unwrap().key, b"k");
        assert!(decode(&[0x0a, 0x05, b'a']).is_err());
        assert!(decode(&[0x10]).is_err());
        assert!(decode(&[0x12, 0x00]).is_err()); // create_revision as bytes
        assert!(decode(&[0x00, 0x00]).is_err());
        assert!(decode(&[0x0b]).is_err()); // wire type 3 (groups)
    }

    proptest! {
        #[test]
        fn round_trips(
            key in proptest::collection::vec(any::<u8>(), 0..20),
            value in proptest::collection::vec(any::<u8>(), 0..40),
            c: i64, m: i64, v: i64, l: i64,
        ) {
            let kv = KeyValue { key, create_revision: c, mod_revision: m, version: v, value, lease: l };
            prop_assert_eq!(decode(&encode(&kv)).unwrap(), kv);
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
        }
    }
}
