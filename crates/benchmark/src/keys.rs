//! Keys and values of a workload.
//!
//! Key number `n` of a key space is `key_size` bytes: `n` big-endian in the last (up to 8)
//! bytes, zeros before, so that sequential keys are also sorted keys. Random keys are drawn
//! uniformly from the key space by a small seeded generator (no OS randomness: runs repeat).

use crate::BenchError;

/// How a workload picks its keys.
#[derive(Clone, Copy, Debug)]
pub struct KeySpace {
    /// Bytes per key.
    pub key_size: usize,
    /// Number of distinct keys.
    pub size: u64,
    /// Request `i` uses key `i % size` (otherwise a random key).
    pub sequential: bool,
}

impl KeySpace {
    /// Checks the key space can be named by keys of `key_size` bytes.
    pub fn validate(&self) -> Result<(), BenchError> {
        if self.key_size == 0 {
            return Err(BenchError::Invalid("--key-size must be at least 1".into()));
        }
        if self.size == 0 {
            return Err(BenchError::Invalid(
                "--key-space-size must be at least 1".into(),
            ));
        }
        if self.key_size < 8 {
            let names = 1u64 << (8 * self.key_size);
            if self.size > names {
                return Err(BenchError::Invalid(format!(
                    "--key-space-size {} does not fit in keys of {} bytes (at most {names})",
                    self.size, self.key_size
                )));
            }
        }
        Ok(())
    }

    /// The number of the key request `i` uses.
    pub fn index(&self, i: u64, rng: &mut SplitMix64) -> u64 {
        if self.sequential {
            i % self.size
        } else {
            rng.next_u64() % self.size
        }
    }

    /// Key number `n`.
    pub fn key(&self, n: u64) -> Vec<u8> {
        key(self.key_size, n)
    }
}

/// Key number `n` in `key_size` bytes (see the module's docs).
pub fn key(key_size: usize, n: u64) -> Vec<u8> {
    let mut k = vec![0u8; key_size];
    let be = n.to_be_bytes();
    let take = key_size.min(8);
    k[key_size - take..].copy_from_slice(&be[8 - take..]);
    k
}

/// A value of `size` bytes of printable filler (the same for every request, as in etcd's tool).
pub fn value(size: usize) -> Vec<u8> {
    let mut rng = SplitMix64::new(0x5eed);
    (0..size)
        .map(|_| b'a' + (rng.next_u64() % 26) as u8)
        .collect()
}

/// SplitMix64: a tiny, fast, seedable generator, plenty for choosing keys.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sized_sorted_and_distinct() {
        assert_eq!(key(8, 1), vec![0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(key(10, 258), vec![0, 0, 0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(key(2, 258), vec![1, 2]);
        assert!(key(8, 255) < key(8, 256));
    }

    #[test]
    fn key_space_must_fit_the_key_size() {
        let ks = |key_size, size| KeySpace {
            key_size,
            size,
            sequential: true,
        };
        assert!(ks(1, 256).validate().is_ok());
        assert!(ks(1, 257).validate().is_err());
        assert!(ks(0, 1).validate().is_err());
        assert!(ks(8, 0).validate().is_err());
        assert!(ks(8, u64::MAX).validate().is_ok());
    }

    #[test]
    fn sequential_keys_wrap_and_random_keys_stay_in_the_space() {
        let mut rng = SplitMix64::new(1);
        let seq = KeySpace {
            key_size: 8,
            size: 3,
            sequential: true,
        };
        let got: Vec<u64> = (0..5).map(|i| seq.index(i, &mut rng)).collect();
        assert_eq!(got, [0, 1, 2, 0, 1]);
        let rand = KeySpace {
            sequential: false,
            ..seq
        };
        assert!((0..1000).all(|i| rand.index(i, &mut rng) < 3));
    }

    #[test]
    fn values_have_the_asked_size() {
        assert_eq!(value(256).len(), 256);
        assert!(value(16).iter().all(u8::is_ascii_lowercase));
    }
}
