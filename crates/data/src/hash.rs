//! Seeded hashing of raw categorical values to u64 IDs. The same value hashes the same
//! whether it came from a CSV cell or a JSON request: integral numbers written as floats
//! (`9.0`) hash like the integer (`9`), since side tables often carry IDs as floats.

use xxhash_rust::xxh3::xxh3_64_with_seed;

const SEED: u64 = 0x6d66_685f_6964_7331;

/// The ID every table uses for a missing value: it gets (and learns) a row of its own.
pub const MISSING_ID: u64 = 0x4d49_5353_494e_4721;

/// Hashes one trimmed raw value.
#[inline]
pub fn hash_value(v: &[u8]) -> u64 {
    xxh3_64_with_seed(canonical(v), SEED)
}

/// Strips a trailing `.0…` from a decimal integer, so `12.0` and `12` are one ID.
#[inline]
pub(crate) fn canonical(v: &[u8]) -> &[u8] {
    if let Some(dot) = v.iter().position(|&b| b == b'.') {
        let (int, frac) = v.split_at(dot);
        let digits = int.strip_prefix(b"-").unwrap_or(int);
        if !digits.is_empty()
            && digits.iter().all(u8::is_ascii_digit)
            && frac.len() > 1
            && frac[1..].iter().all(|&b| b == b'0')
        {
            return int;
        }
    }
    v
}

/// An ID for a bucket index (bucketised numbers).
#[inline]
pub(crate) fn bucket_id(bucket: usize) -> u64 {
    xxh3_64_with_seed(&(bucket as u64).to_le_bytes(), SEED ^ 0xb0c4)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn float_spelled_integers_hash_like_integers() {
        assert_eq!(hash_value(b"9.0"), hash_value(b"9"));
        assert_eq!(hash_value(b"-12.000"), hash_value(b"-12"));
        assert_ne!(hash_value(b"9.5"), hash_value(b"9"));
        assert_ne!(hash_value(b"007"), hash_value(b"7"));
        assert_ne!(hash_value(b"a.0"), hash_value(b"a"));
        assert_ne!(hash_value(b"9."), hash_value(b"9"));
        assert_ne!(hash_value(b""), MISSING_ID);
    }
}
