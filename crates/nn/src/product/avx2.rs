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
}
