//! Cheap hashing for ids that are already well-mixed 64-bit hashes, and seeded row init.

use std::hash::{BuildHasher, Hasher};

/// Hasher for `u64` ids: one multiply-xorshift round.
///
/// The reader already hashed raw values with a seeded hash, so SipHash's DoS resistance
/// buys nothing here; one round is enough to spread small or sequential test ids over
/// both the low bits (bucket index) and the high bits (hashbrown's control tag).
#[derive(Clone, Copy, Debug, Default)]
pub struct IdHasher {
    state: u64,
}

#[inline]
fn mix(x: u64) -> u64 {
    let x = (x ^ (x >> 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^ (x >> 29)
}

impl Hasher for IdHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.state
    }

    #[inline]
    fn write_u64(&mut self, id: u64) {
        self.state = mix(self.state ^ id);
    }

    // Only `u64` keys are hashed in this crate; the byte path exists so the hasher stays
    // correct if someone keys a map with another type.
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
}

/// [`BuildHasher`] producing [`IdHasher`]s.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdHashBuilder;

impl BuildHasher for IdHashBuilder {
    type Hasher = IdHasher;

    #[inline]
    fn build_hasher(&self) -> IdHasher {
        IdHasher::default()
    }
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline]
fn splitmix64_next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(GOLDEN_GAMMA);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `row` with values uniform in `[-scale, scale)` drawn from a SplitMix64 stream
/// keyed by `(seed, id)` alone, so a row's start value never depends on which other
/// rows were created before it.
pub(crate) fn init_row(seed: u64, id: u64, scale: f32, row: &mut [f32]) {
    let mut state = seed ^ id.wrapping_mul(0xD1B5_4A32_D192_ED03);
    const INV_2_24: f32 = 1.0 / (1u32 << 24) as f32;
    for v in row {
        // The top 24 bits fill an f32 mantissa exactly.
        let unit = (splitmix64_next(&mut state) >> 40) as f32 * INV_2_24;
        *v = (2.0 * unit - 1.0) * scale;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn sequential_ids_spread_over_low_bits() {
        let buckets: HashSet<u64> = (0..1024u64)
            .map(|id| {
                let mut h = IdHashBuilder.build_hasher();
                h.write_u64(id);
                h.finish() & 1023
            })
            .collect();
        // An identity hash would give 1024; a badly mixed one collapses to a few buckets.
        assert!(
            buckets.len() > 550,
            "only {} distinct buckets",
            buckets.len()
        );
    }

    #[test]
    fn init_is_in_range_and_seed_dependent() {
        let mut a = [0.0f32; 64];
        let mut b = [0.0f32; 64];
        init_row(1, 42, 0.05, &mut a);
        init_row(2, 42, 0.05, &mut b);
        assert!(a.iter().all(|v| (-0.05..0.05).contains(v)));
        assert_ne!(a, b);
        let mean: f32 = a.iter().sum::<f32>() / 64.0;
        assert!(mean.abs() < 0.02);
    }
}
