//! The `key` bucket's keys: 17-byte revisions with an optional tombstone mark
//! (`mvcc::RevisionKey::from_bytes`). Any bytes give a key or an error; non-negative keys
//! round-trip, negative ones are refused, and byte order is revision order.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mvcc::{Revision, RevisionKey};

#[derive(Arbitrary, Debug)]
struct Input {
    raw: Vec<u8>,
    a: (i64, i64, bool),
    b: (i64, i64, bool),
}

fn key((main, sub, tombstone): (i64, i64, bool)) -> RevisionKey {
    RevisionKey {
        revision: Revision::new(main, sub),
        tombstone,
    }
}

fuzz_target!(|input: Input| {
    let non_negative = |k: &RevisionKey| k.revision.main >= 0 && k.revision.sub >= 0;
    if let Ok(k) = RevisionKey::from_bytes(&input.raw) {
        assert_eq!(
            k.to_bytes(),
            input.raw,
            "a decoded revision key re-encodes differently"
        );
        assert!(non_negative(&k), "a negative revision decoded");
    }
    let (a, b) = (key(input.a), key(input.b));
    for k in [a, b] {
        // The store never writes negative revisions: they are refused.
        let decoded = RevisionKey::from_bytes(&k.to_bytes());
        if non_negative(&k) {
            assert_eq!(decoded, Ok(k));
        } else {
            assert!(decoded.is_err());
        }
    }
    if non_negative(&a) && non_negative(&b) {
        assert_eq!(
            a.revision.to_bytes().cmp(&b.revision.to_bytes()),
            a.revision.cmp(&b.revision),
            "byte order differs from revision order"
        );
    }
});
