//! The stored form of a key's value at one revision (etcd's `mvccpb.KeyValue`), and the changes a
//! write transaction makes.

use crate::kv_encoding::{self, DecodeError};

/// A key's value at one revision, as ranges return it and as the `key` bucket stores it (in
/// etcd's protobuf encoding, see [`crate::kv_encoding`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// The revision of the put that created the key (0 for a deletion record).
    pub create_revision: i64,
    /// The revision of this change.
    pub mod_revision: i64,
    /// How many times the key was changed since it was created, this change included.
    pub version: i64,
    /// The value.
    pub value: Vec<u8>,
    /// The lease attached to the key (0: none).
    pub lease: i64,
}

impl KeyValue {
    /// The protobuf encoding of `mvccpb.KeyValue`, byte-for-byte what etcd writes.
    pub fn encode(&self) -> Vec<u8> {
        kv_encoding::encode(self)
    }

    /// Decodes a value of the `key` bucket.
    pub fn decode(bytes: &[u8]) -> Result<KeyValue, DecodeError> {
        kv_encoding::decode(bytes)
    }
}

/// What a change did to its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// The key was set.
    Put,
    /// The key was deleted.
    Delete,
}

/// One change of a write transaction, in order: what a watchable store turns into events.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Change {
    /// Put or delete.
    pub kind: ChangeKind,
    /// For a put, the key-value written; for a delete, the key with `mod_revision` set to the
    /// transaction's revision (the other fields zero, as etcd's delete events carry).
    pub kv: KeyValue,
}
