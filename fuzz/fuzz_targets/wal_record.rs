//! The WAL's record framing (`RecordReader`) and record payloads (`WalRecord::decode`) on
//! arbitrary bytes, and payloads built by the encoder reading back exactly.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use node::wal::{RecordError, RecordReader, WalRecord, encode_record};

#[derive(Arbitrary, Debug)]
struct Input {
    prev_crc: u32,
    raw: Vec<u8>,
    built: Vec<(u8, Vec<u8>)>,
}

fn check_payload(kind: u8, payload: &[u8]) {
    if let Ok(record) = WalRecord::decode(kind, payload) {
        assert_eq!(record.kind(), kind);
        let mut again = Vec::new();
        record.encode_payload(&mut again);
        assert_eq!(WalRecord::decode(kind, &again).as_ref(), Ok(&record));
    }
}

fuzz_target!(|input: Input| {
    // Arbitrary bytes: frames until the end, a torn tail or corruption; offsets stay in bounds.
    let mut reader = RecordReader::new(&input.raw, input.prev_crc);
    let mut frames = 0usize;
    loop {
        match reader.next_record() {
            Ok(Some(frame)) => {
                frames += 1;
                assert!(frames <= input.raw.len() / node::wal::record::HEADER_LEN);
                check_payload(frame.kind, frame.payload);
            }
            Ok(None) => break,
            Err(RecordError::TornTail { offset } | RecordError::Corrupted { offset, .. }) => {
                assert!(offset <= input.raw.len());
                assert_eq!(offset, reader.offset());
                break;
            }
        }
    }
    // Payloads run through the framing unchanged.
    let mut log = Vec::new();
    let mut crc = input.prev_crc;
    // Kind 0 with an empty payload could frame as an all-zero header (pre-allocated space).
    let built: Vec<(u8, Vec<u8>)> = input
        .built
        .into_iter()
        .map(|(k, p)| (k.max(1), p))
        .collect();
    for (kind, payload) in &built {
        crc = encode_record(&mut log, crc, *kind, payload);
        check_payload(*kind, payload);
    }
    let mut reader = RecordReader::new(&log, input.prev_crc);
    for (kind, payload) in &built {
        match reader.next_record() {
            Ok(Some(f)) => assert_eq!((f.kind, f.payload), (*kind, payload.as_slice())),
            other => panic!("a framed record reads back as {other:?}"),
        }
    }
    assert_eq!(reader.next_record(), Ok(None));
    assert_eq!(reader.crc(), crc);
});
