//! SHA-256 (FIPS 180-4), for the checksum etcd appends to a snapshot stream and `etcdctl
//! snapshot save` verifies. Small and dependency-free; not constant-time (it hashes public data).

use std::io::{self, Read};

const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// An incremental SHA-256.
#[derive(Clone, Debug)]
pub struct Sha256 {
    state: [u32; 8],
    block: [u8; 64],
    filled: usize,
    len: u64,
}

impl Default for Sha256 {
    fn default() -> Self {
        Sha256 {
            state: [
                0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
                0x5be0cd19,
            ],
            block: [0; 64],
            filled: 0,
            len: 0,
        }
    }
}

impl Sha256 {
    /// Hashes `data` after what came before.
    pub fn update(&mut self, mut data: &[u8]) {
        self.len = self.len.wrapping_add(data.len() as u64);
        while !data.is_empty() {
            let n = (64 - self.filled).min(data.len());
            self.block[self.filled..self.filled + n].copy_from_slice(&data[..n]);
            self.filled += n;
            data = &data[n..];
            if self.filled == 64 {
                let block = self.block;
                self.compress(&block);
                self.filled = 0;
            }
        }
    }

    /// The digest of everything hashed.
    pub fn finish(mut self) -> [u8; 32] {
        let bits = self.len.wrapping_mul(8);
        self.update(&[0x80]);
        while self.filled != 56 {
            self.update(&[0]);
        }
        self.update(&bits.to_be_bytes());
        let mut out = [0; 32];
        for (chunk, word) in out.chunks_exact_mut(4).zip(self.state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    fn compress(&mut self, block: &[u8; 64]) {
        let mut w = [0u32; 64];
        for (i, c) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = self.state;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = h
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            h = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (s, v) in self.state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
            *s = s.wrapping_add(v);
        }
    }
}

/// A reader yielding `inner`'s bytes, zeros up to a multiple of `align` bytes, and then the
/// SHA-256 of both (etcd's snapshot stream layout: `etcdctl snapshot save` wants the data a
/// whole number of 512-byte sectors, then the checksum).
#[derive(Debug)]
pub struct WithChecksum<R> {
    inner: R,
    align: u64,
    len: u64,
    hasher: Option<Sha256>,
    padding: u64,
    tail: [u8; 32],
    tail_pos: usize,
}

impl<R: Read> WithChecksum<R> {
    /// Wraps `inner`, padding it to a multiple of `align` bytes (0 or 1: no padding).
    pub fn new(inner: R, align: u64) -> Self {
        WithChecksum {
            inner,
            align: align.max(1),
            len: 0,
            hasher: Some(Sha256::default()),
            padding: 0,
            tail: [0; 32],
            tail_pos: 0,
        }
    }
}

impl<R: Read> Read for WithChecksum<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(hasher) = &mut self.hasher {
            if buf.is_empty() {
                return Ok(0);
            }
            if self.padding == 0 {
                let n = self.inner.read(buf)?;
                if n > 0 {
                    hasher.update(&buf[..n]);
                    self.len += n as u64;
                    return Ok(n);
                }
                self.padding = (self.align - self.len % self.align) % self.align;
                // Marks the inner reader as done even when no padding is due.
                self.padding |= 1 << 63;
            }
            let left = self.padding & !(1 << 63);
            if left > 0 {
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                buf[..n].fill(0);
                hasher.update(&buf[..n]);
                self.padding -= n as u64;
                return Ok(n);
            }
            if let Some(h) = self.hasher.take() {
                self.tail = h.finish();
            }
        }
        let n = (self.tail.len() - self.tail_pos).min(buf.len());
        buf[..n].copy_from_slice(&self.tail[self.tail_pos..self.tail_pos + n]);
        self.tail_pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(d: [u8; 32]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn sha(data: &[u8]) -> String {
        let mut h = Sha256::default();
        h.update(data);
        hex(h.finish())
    }

    #[test]
    fn known_vectors() {
        assert_eq!(
            sha(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        let million = vec![b'a'; 1_000_000];
        assert_eq!(
            sha(&million),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
    }

    #[test]
    fn the_checksum_follows_the_data() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        let mut r = WithChecksum::new(&data[..], 512);
        r.read_to_end(&mut out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.len() % 512, 32);
        let (body, sum) = out.split_at(out.len() - 32);
        assert_eq!(&body[..data.len()], &data[..]);
        assert!(body[data.len()..].iter().all(|&b| b == 0));
        let mut h = Sha256::default();
        h.update(body);
        assert_eq!(sum, &h.finish()[..]);
        let mut aligned = Vec::new();
        WithChecksum::new(&data[..512], 512)
            .read_to_end(&mut aligned)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(aligned.len(), 512 + 32);
    }
}
