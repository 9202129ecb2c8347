//! The TCP transport's wire format.
//!
//! A connection starts with a fixed-size handshake from the dialer and a reply from the
//! listener; then the dialer sends frames:
//!
//! ```text
//! handshake = magic "FRCD" | version: u16 LE | kind: u8 | cluster id: u64 LE | from: u64 LE | to: u64 LE
//! reply     = magic "FRCD" | version: u16 LE | status: u8 | cluster id: u64 LE | id: u64 LE
//! frame     = payload length: u32 LE | crc32c(length bytes | payload): u32 LE | payload
//! ```
//!
//! A *message* stream carries one postcard-encoded [`Message`] per frame. A *snapshot* stream
//! carries, per snapshot, a [`SnapshotHeader`] frame, then the snapshot data in raw chunk frames,
//! and the listener answers each complete snapshot with one [`SNAPSHOT_ACK`] byte. A *members*
//! query (etcd's `GET /members` on the peer URL) is answered with one [`ClusterInfo`] frame; the
//! dialer, a member joining a running cluster, knows neither the cluster id nor its own id yet,
//! so both are 0 in its handshake.

use std::io::{self, Read, Write};

use raft_core::raftpb::Message;
use serde::{Deserialize, Serialize};

pub use crate::membership::ClusterInfo;

/// The first bytes of every handshake and reply.
pub const MAGIC: [u8; 4] = *b"FRCD";
/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// Bytes of a [`Handshake`].
pub const HANDSHAKE_LEN: usize = 31;
/// Bytes of a [`HandshakeReply`].
pub const REPLY_LEN: usize = 23;
/// Bytes of a frame header (length, checksum).
pub const FRAME_HEADER_LEN: usize = 8;
/// The byte a listener sends once it has delivered a snapshot.
pub const SNAPSHOT_ACK: u8 = 0xAC;

/// What a connection carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// Raft messages other than `MsgSnap`, one per frame.
    Message,
    /// `MsgSnap` messages, each a header and data chunks.
    Snapshot,
    /// One question: which cluster is this and who are its members.
    Members,
}

impl StreamKind {
    fn to_byte(self) -> u8 {
        match self {
            StreamKind::Message => 1,
            StreamKind::Snapshot => 2,
            StreamKind::Members => 3,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(StreamKind::Message),
            2 => Some(StreamKind::Snapshot),
            3 => Some(StreamKind::Members),
            _ => None,
        }
    }
}

/// The dialer's introduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handshake {
    /// The dialer's protocol version.
    pub version: u16,
    /// What the connection will carry.
    pub kind: StreamKind,
    /// The dialer's cluster.
    pub cluster_id: u64,
    /// The dialer's member id.
    pub from: u64,
    /// The member id the dialer expects to reach.
    pub to: u64,
}

impl Handshake {
    /// The encoded handshake.
    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = [0u8; HANDSHAKE_LEN];
        out[..4].copy_from_slice(&MAGIC);
        out[4..6].copy_from_slice(&self.version.to_le_bytes());
        out[6] = self.kind.to_byte();
        out[7..15].copy_from_slice(&self.cluster_id.to_le_bytes());
        out[15..23].copy_from_slice(&self.from.to_le_bytes());
        out[23..31].copy_from_slice(&self.to.to_le_bytes());
        out
    }

    /// Decodes a handshake; fails on a wrong magic or an unknown stream kind.
    pub fn decode(b: &[u8; HANDSHAKE_LEN]) -> Result<Self, WireError> {
        if b[..4] != MAGIC {
            return Err(WireError::BadMagic);
        }
        let kind = StreamKind::from_byte(b[6]).ok_or(WireError::UnknownKind(b[6]))?;
        Ok(Handshake {
            version: u16::from_le_bytes([b[4], b[5]]),
            kind,
            cluster_id: le_u64(&b[7..15]),
            from: le_u64(&b[15..23]),
            to: le_u64(&b[23..31]),
        })
    }
}

/// The listener's verdict on a handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeStatus {
    /// The stream is open.
    Accepted,
    /// The listener does not speak the dialer's protocol version.
    VersionMismatch,
    /// The listener belongs to another cluster.
    ClusterMismatch,
    /// The listener is not the member the dialer asked for.
    WrongReceiver,
    /// The sender id is invalid (zero, or the listener's own id).
    BadSender,
    /// The listener has too many connections.
    Busy,
    /// The listener cannot answer a members query yet (its node is still starting).
    NotReady,
    /// The dialer was removed from the cluster: it must stop (etcd's `410 Gone`).
    MemberRemoved,
}

impl HandshakeStatus {
    fn to_byte(self) -> u8 {
        match self {
            HandshakeStatus::Accepted => 0,
            HandshakeStatus::VersionMismatch => 1,
            HandshakeStatus::ClusterMismatch => 2,
            HandshakeStatus::WrongReceiver => 3,
            HandshakeStatus::BadSender => 4,
            HandshakeStatus::Busy => 5,
            HandshakeStatus::NotReady => 6,
            HandshakeStatus::MemberRemoved => 7,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0 => HandshakeStatus::Accepted,
            1 => HandshakeStatus::VersionMismatch,
            2 => HandshakeStatus::ClusterMismatch,
            3 => HandshakeStatus::WrongReceiver,
            4 => HandshakeStatus::BadSender,
            5 => HandshakeStatus::Busy,
            6 => HandshakeStatus::NotReady,
            7 => HandshakeStatus::MemberRemoved,
            _ => return None,
        })
    }
}

/// The listener's answer to a [`Handshake`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandshakeReply {
    /// The listener's protocol version.
    pub version: u16,
    /// The verdict.
    pub status: HandshakeStatus,
    /// The listener's cluster.
    pub cluster_id: u64,
    /// The listener's member id.
    pub id: u64,
}

impl HandshakeReply {
    /// The encoded reply.
    pub fn encode(&self) -> [u8; REPLY_LEN] {
        let mut out = [0u8; REPLY_LEN];
        out[..4].copy_from_slice(&MAGIC);
        out[4..6].copy_from_slice(&self.version.to_le_bytes());
        out[6] = self.status.to_byte();
        out[7..15].copy_from_slice(&self.cluster_id.to_le_bytes());
        out[15..23].copy_from_slice(&self.id.to_le_bytes());
        out
    }

    /// Decodes a reply; fails on a wrong magic or an unknown status.
    pub fn decode(b: &[u8; REPLY_LEN]) -> Result<Self, WireError> {
        if b[..4] != MAGIC {
            return Err(WireError::BadMagic);
        }
        let status = HandshakeStatus::from_byte(b[6]).ok_or(WireError::UnknownStatus(b[6]))?;
        Ok(HandshakeReply {
            version: u16::from_le_bytes([b[4], b[5]]),
            status,
            cluster_id: le_u64(&b[7..15]),
            id: le_u64(&b[15..23]),
        })
    }
}

/// The dialer's side of the handshake on a fresh connection: sends `hs`, reads and decodes the
/// listener's reply (the caller judges its status).
pub fn exchange_handshake(
    mut conn: impl Read + Write,
    hs: &Handshake,
) -> Result<HandshakeReply, WireError> {
    conn.write_all(&hs.encode())?;
    let mut buf = [0u8; REPLY_LEN];
    conn.read_exact(&mut buf)?;
    HandshakeReply::decode(&buf)
}

/// The first frame of a snapshot: the `MsgSnap` without its data, and the data's length.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    /// The message, `snapshot.data` empty.
    pub message: Message,
    /// Bytes of snapshot data that follow in chunk frames.
    pub data_len: u64,
}

/// A malformed handshake or frame.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Reading or writing the socket failed (including a peer closing mid-frame).
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// The bytes are not a ferrocd peer handshake.
    #[error("bad magic: not a ferrocd peer connection")]
    BadMagic,
    /// The handshake names an unknown stream kind.
    #[error("unknown stream kind {0}")]
    UnknownKind(u8),
    /// The reply carries an unknown status.
    #[error("unknown handshake status {0}")]
    UnknownStatus(u8),
    /// A frame is larger than allowed.
    #[error("frame of {len} bytes over the limit of {max}")]
    FrameTooLarge {
        /// The frame's announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A frame does not match its checksum.
    #[error("frame checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// The checksum in the frame header.
        stored: u32,
        /// The checksum of the received bytes.
        computed: u32,
    },
    /// A frame's payload does not decode.
    #[error("undecodable frame: {0}")]
    Decode(#[from] postcard::Error),
    /// A frame arrived that the protocol does not allow here.
    #[error("protocol violation: {0}")]
    Protocol(String),
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

fn frame_crc(len: [u8; 4], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len), payload)
}

/// Writes `payload` as one frame (not flushed).
pub fn write_frame(w: &mut impl Write, payload: &[u8]) -> Result<(), WireError> {
    let len = u32::try_from(payload.len()).map_err(|_| WireError::FrameTooLarge {
        len: payload.len(),
        max: u32::MAX as usize,
    })?;
    let len = len.to_le_bytes();
    let mut header = [0u8; FRAME_HEADER_LEN];
    header[..4].copy_from_slice(&len);
    header[4..].copy_from_slice(&frame_crc(len, payload).to_le_bytes());
    w.write_all(&header)?;
    w.write_all(payload)?;
    Ok(())
}

/// Reads one frame, appending its payload to `out`. `Ok(false)` is a clean end of stream (the
/// peer closed between frames); a stream ending inside a frame is an error.
pub fn read_frame(r: &mut impl Read, max_len: usize, out: &mut Vec<u8>) -> Result<bool, WireError> {
    let mut header = [0u8; FRAME_HEADER_LEN];
    let mut got = 0;
    while got < FRAME_HEADER_LEN {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len_bytes = [header[0], header[1], header[2], header[3]];
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len > max_len {
        return Err(WireError::FrameTooLarge { len, max: max_len });
    }
    let stored = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let start = out.len();
    // Grows with what actually arrives: a bogus length costs no up-front allocation.
    let got = r.by_ref().take(len as u64).read_to_end(out)?;
    if got != len {
        out.truncate(start);
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
    }
    let computed = frame_crc(len_bytes, &out[start..]);
    if computed != stored {
        out.truncate(start);
        return Err(WireError::Checksum { stored, computed });
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_and_reply_round_trip() {
        let h = Handshake {
            version: PROTOCOL_VERSION,
            kind: StreamKind::Snapshot,
            cluster_id: 0xdead_beef,
            from: 1,
            to: u64::MAX,
        };
        assert_eq!(Handshake::decode(&h.encode()).ok(), Some(h));
        let r = HandshakeReply {
            version: PROTOCOL_VERSION,
            status: HandshakeStatus::ClusterMismatch,
            cluster_id: 7,
            id: 9,
        };
        assert_eq!(HandshakeReply::decode(&r.encode()).ok(), Some(r));
        let mut bad = h.encode();
        bad[0] = b'X';
        assert!(matches!(Handshake::decode(&bad), Err(WireError::BadMagic)));
    }

    #[test]
    fn frames_round_trip_and_detect_damage() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"hello").ok();
        write_frame(&mut buf, b"").ok();
        let mut r = &buf[..];
        let mut out = Vec::new();
        assert!(read_frame(&mut r, 16, &mut out).is_ok_and(|more| more));
        assert_eq!(out, b"hello");
        assert!(read_frame(&mut r, 16, &mut out).is_ok_and(|more| more));
        assert!(read_frame(&mut r, 16, &mut out).is_ok_and(|more| !more));

        let mut damaged = buf.clone();
        damaged[FRAME_HEADER_LEN] ^= 1;
        let mut out = Vec::new();
        assert!(matches!(
            read_frame(&mut &damaged[..], 16, &mut out),
            Err(WireError::Checksum { .. })
        ));
        assert!(matches!(
            read_frame(&mut &buf[..], 4, &mut out),
            Err(WireError::FrameTooLarge { len: 5, max: 4 })
        ));
        assert!(matches!(
            read_frame(&mut &buf[..6], 16, &mut out),
            Err(WireError::Io(_))
        ));
    }
}
