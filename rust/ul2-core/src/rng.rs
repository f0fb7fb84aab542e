//! Keyed randomness: every draw for example `k` is a pure function of `(seed, k, purpose)`,
//! and of the epoch through [`epoch_seed`].
//!
//! # Algorithm (part of ul2's output format; pinned by golden vectors in `tests/data/`)
//!
//! 1. Key derivation. With `mix` the SplitMix64 finaliser
//!    (`z ^= z >> 30; z *= 0xbf58476d1ce4e5b9; z ^= z >> 27; z *= 0x94d049bb133111eb; z ^= z >> 31`),
//!    `h = mix(mix(mix(seed ^ 0x5851f42d4c957f2d) ^ k) ^ purpose)`.
//!    `mix` is a bijection, so distinct `(seed, k, purpose)` never share a state by construction
//!    of any single step; the three rounds decorrelate neighbouring keys.
//! 2. Stream. Xoshiro256++ (rand's `rngs::Xoshiro256PlusPlus`, a named, portable algorithm)
//!    seeded with the four words `mix(h + i·φ)`, `i = 1..=4`, `φ = 0x9e3779b97f4a7c15`
//!    (SplitMix64's expansion, done here rather than through rand's `seed_from_u64`, whose
//!    expansion is an implementation detail).
//! 3. Integers. `below(s)` is Lemire's nearly-divisionless method on the raw `u64` stream:
//!    `m = x·s` (128-bit), reject while `lo64(m) < (2^64 − s) mod s`, return `hi64(m)`.
//!    Floats are `(x >> 11)·2^-53`. We never use rand's distributions, which may change
//!    their mapping in a minor release.
//!
//! Nothing here depends on batch size, thread count or call order: a row's streams are
//! created from its own key when the row is processed.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{Rng, SeedableRng};

const PHI: u64 = 0x9e37_79b9_7f4a_7c15;

/// What a stream is used for; part of the key so that draws for different purposes of the
/// same example are independent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Purpose {
    /// Composition of the noise tokens into spans.
    NoiseSpans = 1,
    /// Composition of the non-noise tokens into spans.
    CleanSpans = 2,
    /// `random_roll` offset.
    Roll = 3,
    /// Prefix-LM split point.
    Prefix = 4,
    /// Which denoiser of a mixture example `k` uses.
    Denoiser = 5,
    /// Fill-in-the-middle cut points.
    FimCuts = 6,
    /// Fill-in-the-middle arrangement (SPM or PSM).
    FimOrder = 7,
    /// Text infilling's Poisson span lengths (16 on: clear of the next small numbers, which
    /// other denoisers may take).
    InfillSpans = 16,
    /// Text infilling's clean gaps between spans.
    InfillGaps = 17,
}

#[inline]
const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[inline]
fn key_hash(seed: u64, key: u64, purpose: Purpose) -> u64 {
    mix(mix(mix(seed ^ 0x5851_f42d_4c95_7f2d) ^ key) ^ purpose as u64)
}

/// The seed of epoch `epoch`'s draws: `seed` itself for epoch 0 (so pinned outputs never
/// change), else `mix(mix(seed ^ 0x2545f4914f6cdd1d) ^ epoch)`, whose draws are as independent
/// of every other epoch's as two seeds' are.
#[must_use]
pub const fn epoch_seed(seed: u64, epoch: u64) -> u64 {
    if epoch == 0 { seed } else { mix(mix(seed ^ 0x2545_f491_4f6c_dd1d) ^ epoch) }
}

/// State word `i` of the generator keyed by `h` (SplitMix64's expansion).
#[inline]
fn state_word(h: u64, i: usize) -> u64 {
    mix(h.wrapping_add(PHI.wrapping_mul(i as u64 + 1)))
}

/// `(x >> 11)·2^-53`: a uniform float in `[0, 1)` from 53 random bits.
#[inline]
#[must_use]
pub fn unit_f64(x: u64) -> f64 {
    (x >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// The random stream of one `(seed, key, purpose)`.
#[derive(Debug, Clone)]
pub struct Stream(Xoshiro256PlusPlus);

impl Stream {
    #[must_use]
    pub fn new(seed: u64, key: u64, purpose: Purpose) -> Self {
        let h = key_hash(seed, key, purpose);
        let mut bytes = [0u8; 32];
        for (i, chunk) in bytes.chunks_exact_mut(8).enumerate() {
            chunk.copy_from_slice(&state_word(h, i).to_le_bytes());
        }
        Self(Xoshiro256PlusPlus::from_seed(bytes))
    }

    /// The stream's first `u64`, computed from the two state words it depends on
    /// (Xoshiro256++: `rotl(s0 + s3, 23) + s0`): what a sample index needs per sample,
    /// at a third of the cost of seeding the whole generator.
    #[must_use]
    pub fn first_u64(seed: u64, key: u64, purpose: Purpose) -> u64 {
        let h = key_hash(seed, key, purpose);
        let (s0, s3) = (state_word(h, 0), state_word(h, 3));
        s0.wrapping_add(s3).rotate_left(23).wrapping_add(s0)
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform integer in `[0, s)`; `s` must be positive.
    #[inline]
    pub fn below(&mut self, s: u64) -> u64 {
        debug_assert!(s > 0);
        let mut m = u128::from(self.next_u64()) * u128::from(s);
        if (m as u64) < s {
            let threshold = s.wrapping_neg() % s;
            while (m as u64) < threshold {
                m = u128::from(self.next_u64()) * u128::from(s);
            }
        }
        (m >> 64) as u64
    }

    /// Uniform float in `[0, 1)` with 53 random bits.
    #[inline]
    pub fn unit_f64(&mut self) -> f64 {
        unit_f64(self.next_u64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_0_is_the_seed_and_other_epochs_are_distinct_seeds() {
        let mut seen = std::collections::HashSet::new();
        for seed in [0, 1, 7, u64::MAX] {
            assert_eq!(epoch_seed(seed, 0), seed);
            for epoch in 0..10_000 {
                assert!(seen.insert(epoch_seed(seed, epoch)), "seed {seed} epoch {epoch} repeats a seed");
            }
        }
    }

    #[test]
    fn below_stays_in_range_and_hits_every_value() {
        let mut s = Stream::new(0, 0, Purpose::NoiseSpans);
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            seen[s.below(7) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
    }

    #[test]
    fn first_u64_is_the_streams_first_draw() {
        for (seed, key) in [(0, 0), (1, 2), (u64::MAX, 12345)] {
            let mut s = Stream::new(seed, key, Purpose::Denoiser);
            assert_eq!(Stream::first_u64(seed, key, Purpose::Denoiser), s.next_u64());
        }
    }

    #[test]
    fn purposes_and_keys_give_different_streams() {
        let a = Stream::new(1, 2, Purpose::NoiseSpans).next_u64();
        let b = Stream::new(1, 2, Purpose::CleanSpans).next_u64();
        let c = Stream::new(1, 3, Purpose::NoiseSpans).next_u64();
        let d = Stream::new(2, 2, Purpose::NoiseSpans).next_u64();
        assert!(a != b && a != c && a != d && b != c);
        assert_eq!(a, Stream::new(1, 2, Purpose::NoiseSpans).next_u64());
    }
}
