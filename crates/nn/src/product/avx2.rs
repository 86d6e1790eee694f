//! The AVX2 + FMA register tile: 6 rows × 16 columns of `C` in 12 of the 16 vector
//! registers. Per step of `k`, two loads of `B` and six broadcasts of `A` feed 12 vector
//! multiply-adds.

use super::blocked::{Epilogue, Tile};
use std::arch::x86_64::*;

pub(crate) struct Avx2;

impl Tile for Avx2 {
    const MR: usize = 6;
    const NR: usize = 16;
    /// 144 × 256 floats = 144 KB of A in L2.
    const MC: usize = 144;
    /// 256 × 4096 floats = 4 MB of B in L3.
    const NC: usize = 4096;

    #[target_feature(enable = "avx2,fma")]
    unsafe fn kernel(
        kc: usize,
        a: *const f32,
        b: *const f32,
        alpha: f32,
        beta: f32,
        c: *mut f32,
        ldc: usize,
        epi: Epilogue,
    ) {
        // The tile's rows (`Self::MR`; an item inside a method cannot name `Self`).
        const MR: usize = 6;
        for i in 0..MR {
            _mm_prefetch::<_MM_HINT_T0>(c.add(i * ldc).cast());
            _mm_prefetch::<_MM_HINT_T0>(c.add(i * ldc + 15).cast());
        }
        // Row i of the tile in acc[i] (two 8-lane halves); the loops over i unroll, and the
        // 12 accumulators live in registers.
        let mut acc = [[_mm256_setzero_ps(); 2]; MR];
        let (mut ap, mut bp) = (a, b);
        for _ in 0..kc {
            let b0 = _mm256_load_ps(bp);
            let b1 = _mm256_load_ps(bp.add(8));
            for (i, row) in acc.iter_mut().enumerate() {
                let x = _mm256_broadcast_ss(&*ap.add(i));
                row[0] = _mm256_fmadd_ps(x, b0, row[0]);
                row[1] = _mm256_fmadd_ps(x, b1, row[1]);
            }
            ap = ap.add(MR);
            bp = bp.add(16);
        }
        let va = _mm256_set1_ps(alpha);
        for (i, [lo, hi]) in acc.iter_mut().enumerate() {
            if beta == 0.0 {
                *lo = _mm256_mul_ps(va, *lo);
                *hi = _mm256_mul_ps(va, *hi);
            } else {
                let vb = _mm256_set1_ps(beta);
                let p = c.add(i * ldc);
                let old_lo = _mm256_mul_ps(vb, _mm256_loadu_ps(p));
                let old_hi = _mm256_mul_ps(vb, _mm256_loadu_ps(p.add(8)));
                *lo = _mm256_fmadd_ps(va, *lo, old_lo);
                *hi = _mm256_fmadd_ps(va, *hi, old_hi);
            }
        }
        if !epi.is_none() {
            let zero = _mm256_setzero_ps();
            let (b_lo, b_hi) = if epi.bias.is_null() {
                (zero, zero)
            } else {
                (_mm256_loadu_ps(epi.bias), _mm256_loadu_ps(epi.bias.add(8)))
            };
            for [lo, hi] in acc.iter_mut() {
                if !epi.bias.is_null() {
                    *lo = _mm256_add_ps(*lo, b_lo);
                    *hi = _mm256_add_ps(*hi, b_hi);
                }
                if epi.relu {
                    // max(v, 0) gives 0 for NaN, like `f32::max`.
                    *lo = _mm256_max_ps(*lo, zero);
                    *hi = _mm256_max_ps(*hi, zero);
                }
            }
        }
        for (i, [lo, hi]) in acc.into_iter().enumerate() {
            let p = c.add(i * ldc);
            _mm256_storeu_ps(p, lo);
            _mm256_storeu_ps(p.add(8), hi);
        }
    }

    /// 8 columns at a time: 6 rows (and 2 zero rows) of 8 transposed by unpacks and
    /// lane shuffles, each column's 6 values stored masked.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn pack_rows(a: *const f32, rs: usize, kc: usize, dst: *mut f32) {
        const MR: usize = 6;
        let lanes = |n: usize| {
            let m: [i32; 8] = std::array::from_fn(|l| if l < n { -1 } else { 0 });
            _mm256_loadu_si256(m.as_ptr().cast())
        };
        let store = lanes(MR);
        for p0 in (0..kc).step_by(8) {
            let cols = 8.min(kc - p0);
            let load = lanes(cols);
            let mut r = [_mm256_setzero_ps(); 8];
            for (i, v) in r.iter_mut().enumerate().take(MR) {
                let src = a.add(i * rs + p0);
                *v = if cols == 8 {
                    _mm256_loadu_ps(src)
                } else {
                    _mm256_maskload_ps(src, load)
                };
            }
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let t6 = _mm256_unpacklo_ps(r[6], r[7]);
            let t7 = _mm256_unpackhi_ps(r[6], r[7]);
            let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            // Column j of the 8 rows.
            let col = [
                _mm256_permute2f128_ps::<0x20>(s0, s4),
                _mm256_permute2f128_ps::<0x20>(s1, s5),
                _mm256_permute2f128_ps::<0x20>(s2, s6),
                _mm256_permute2f128_ps::<0x20>(s3, s7),
                _mm256_permute2f128_ps::<0x31>(s0, s4),
                _mm256_permute2f128_ps::<0x31>(s1, s5),
                _mm256_permute2f128_ps::<0x31>(s2, s6),
                _mm256_permute2f128_ps::<0x31>(s3, s7),
            ];
            for (j, v) in col.into_iter().enumerate().take(cols) {
                _mm256_maskstore_ps(dst.add((p0 + j) * MR), store, v);
            }
        }
    }
}
