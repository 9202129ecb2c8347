//! The `lease` bucket: keys (`lease_id_from_key`) and etcd's protobuf `leasepb.Lease` values
//! (`LeaseRecord::decode`). Any bytes give a value or an error; what decodes round-trips.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mvcc::lease::LeaseRecord;
use mvcc::lease::record::{lease_id_from_key, lease_key};

#[derive(Arbitrary, Debug)]
struct Input {
    key: Vec<u8>,
    value: Vec<u8>,
    id: i64,
    ttl: i64,
    remaining_ttl: i64,
}

fuzz_target!(|input: Input| {
    if let Some(id) = lease_id_from_key(&input.key) {
        assert_eq!(lease_key(id).as_slice(), input.key.as_slice());
    }
    if let Ok(record) = LeaseRecord::decode(&input.value) {
        assert_eq!(LeaseRecord::decode(&record.encode()), Ok(record));
    }
    let record = LeaseRecord {
        id: input.id,
        ttl: input.ttl,
        remaining_ttl: input.remaining_ttl,
    };
    assert_eq!(LeaseRecord::decode(&record.encode()), Ok(record));
    assert_eq!(lease_id_from_key(&lease_key(input.id)), Some(input.id));
});
