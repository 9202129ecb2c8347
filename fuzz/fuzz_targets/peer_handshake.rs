//! The TCP transport's handshake and reply (`wire::Handshake::decode`,
//! `wire::HandshakeReply::decode`): any bytes give a value or an error, and what decodes
//! encodes back to the same bytes' meaning.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use node::transport::tcp::wire::{HANDSHAKE_LEN, Handshake, HandshakeReply, REPLY_LEN};

#[derive(Arbitrary, Debug)]
struct Input {
    handshake: [u8; HANDSHAKE_LEN],
    reply: [u8; REPLY_LEN],
}

fuzz_target!(|input: Input| {
    if let Ok(h) = Handshake::decode(&input.handshake) {
        let bytes = h.encode();
        assert_eq!(
            bytes, input.handshake,
            "a decoded handshake re-encodes differently"
        );
        assert_eq!(Handshake::decode(&bytes).ok(), Some(h));
    }
    if let Ok(r) = HandshakeReply::decode(&input.reply) {
        let bytes = r.encode();
        assert_eq!(bytes, input.reply, "a decoded reply re-encodes differently");
        assert_eq!(HandshakeReply::decode(&bytes).ok(), Some(r));
    }
});
