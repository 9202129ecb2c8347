//! The TCP transport's frames (`wire::read_frame`) on an arbitrary byte stream, under a small
//! and a huge size limit: frames, a clean end or an error, no allocation a length prefix asked
//! for without the bytes arriving; and `write_frame` output reading back exactly.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use node::transport::tcp::wire::{FRAME_HEADER_LEN, read_frame, write_frame};

#[derive(Arbitrary, Debug)]
struct Input {
    stream: Vec<u8>,
    max_len: u16,
    payloads: Vec<Vec<u8>>,
}

fn read_all(mut stream: &[u8], max_len: usize) {
    let total = stream.len();
    let mut frames = 0;
    loop {
        let mut out = Vec::new();
        match read_frame(&mut stream, max_len, &mut out) {
            Ok(true) => {
                frames += 1;
                assert!(out.len() <= max_len);
                assert!(
                    frames * FRAME_HEADER_LEN <= total,
                    "more frames than headers fit"
                );
            }
            Ok(false) => break,
            Err(_) => {
                // A failed read keeps nothing of the bad frame.
                assert!(out.is_empty());
                break;
            }
        }
        // The allocation follows the bytes that arrived.
        assert!(
            out.capacity() <= 2 * total + 64,
            "frame buffer grew to {}",
            out.capacity()
        );
    }
}

fuzz_target!(|input: Input| {
    read_all(&input.stream, usize::from(input.max_len));
    read_all(&input.stream, 64 << 20);

    let mut stream = Vec::new();
    for p in &input.payloads {
        if write_frame(&mut stream, p).is_err() {
            panic!("writing a frame to a Vec failed");
        }
    }
    let mut r = &stream[..];
    for p in &input.payloads {
        let mut out = Vec::new();
        match read_frame(&mut r, 1 << 20, &mut out) {
            Ok(true) => assert_eq!(&out, p),
            Ok(false) => panic!("stream ended early"),
            Err(e) => panic!("a written frame does not read back: {e}"),
        }
    }
    let mut out = Vec::new();
    assert!(matches!(read_frame(&mut r, 1 << 20, &mut out), Ok(false)));
});
