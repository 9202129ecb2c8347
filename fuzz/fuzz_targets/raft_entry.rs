//! What the apply loop decodes from a committed entry: configuration changes
//! (`AnyConfChange::from_entry`, etcd's protobuf `ConfChange` / `ConfChangeV2`) and request
//! envelopes (`node::request::Envelope::decode`). A value or an error; what decodes
//! round-trips.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use node::request::Envelope;
use raft_core::raftpb::{AnyConfChange, EntryType};

#[derive(Arbitrary, Debug)]
struct Input {
    entry_type: u8,
    data: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let entry_type = match input.entry_type % 3 {
        0 => EntryType::Normal,
        1 => EntryType::ConfChange,
        _ => EntryType::ConfChangeV2,
    };
    match AnyConfChange::from_entry(entry_type, &input.data) {
        None => assert_eq!(entry_type, EntryType::Normal),
        Some(Err(_)) => {}
        Some(Ok(cc)) => {
            let (t, data) = cc.to_entry_data();
            assert_eq!(t, entry_type);
            match AnyConfChange::from_entry(t, &data) {
                Some(Ok(again)) => assert_eq!(again, cc),
                other => panic!("{cc:?} does not decode from its encoding: {other:?}"),
            }
        }
    }
    if let Ok(envelope) = Envelope::decode(&input.data) {
        assert_eq!(Envelope::decode(&envelope.encode()).as_ref(), Ok(&envelope));
    }
});
