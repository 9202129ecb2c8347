//! The `key` bucket's values: etcd's protobuf `mvccpb.KeyValue` (`mvcc::kv_encoding`). Any
//! bytes give a value or an error; what decodes re-encodes to a value that decodes to itself;
//! arbitrary key/values round-trip.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mvcc::KeyValue;
use mvcc::kv_encoding::{decode, encode};

#[derive(Arbitrary, Debug)]
struct Input {
    raw: Vec<u8>,
    key: Vec<u8>,
    value: Vec<u8>,
    create_revision: i64,
    mod_revision: i64,
    version: i64,
    lease: i64,
}

fuzz_target!(|input: Input| {
    if let Ok(kv) = decode(&input.raw) {
        assert!(kv.key.len() + kv.value.len() <= input.raw.len());
        assert_eq!(decode(&encode(&kv)).as_ref(), Ok(&kv));
    }
    let kv = KeyValue {
        key: input.key,
        create_revision: input.create_revision,
        mod_revision: input.mod_revision,
        version: input.version,
        value: input.value,
        lease: input.lease,
    };
    assert_eq!(decode(&encode(&kv)).as_ref(), Ok(&kv));
});
