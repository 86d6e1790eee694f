//! The AVX-512 register tile: 14 rows × 32 columns of `C` in 28 of the 32 vector
//! registers. Per step of `k`, two loads of `B` and 14 broadcasts of `A` feed 28 vector
//! multiply-adds of 16 lanes each: twice the work per instruction of the AVX2 tile, with
//! the same sums in the same order (equal bits).

use super::blocked::{Epilogue, Tile};
use std::arch::x86_64::*;

pub(crate) struct Avx512;

impl Tile for Avx512 {
    const MR: usize = 14;
    const NR: usize = 32;
    /// 140 × 256 floats = 140 KB of A in L2.
    const MC: usize = 140;
    /// 256 × 4096 floats = 4 MB of B in L3.
    const NC: usize = 4096;

    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
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
        const MR: usize = 14;
        for i in 0..MR {
            _mm_prefetch::<_MM_HINT_T0>(c.add(i * ldc).cast());
            _mm_prefetch::<_MM_HINT_T0>(c.add(i * ldc + 31).cast());
        }
        // Row i of the tile in acc[i] (two 16-lane halves); the loops over i unroll, and the
        // 28 accumulators live in registers.
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        let (mut ap, mut bp) = (a, b);
        for _ in 0..kc {
            let b0 = _mm512_load_ps(bp);
            let b1 = _mm512_load_ps(bp.add(16));
            for (i, row) in acc.iter_mut().enumerate() {
                let x = _mm512_set1_ps(*ap.add(i));
                row[0] = _mm512_fmadd_ps(x, b0, row[0]);
                row[1] = _mm512_fmadd_ps(x, b1, row[1]);
            }
            ap = ap.add(MR);
            bp = bp.add(32);
        }
        let va = _mm512_set1_ps(alpha);
        for (i, [lo, hi]) in acc.iter_mut().enumerate() {
            if beta == 0.0 {
                *lo = _mm512_mul_ps(va, *lo);
                *hi = _mm512_mul_ps(va, *hi);
            } else {
                let vb = _mm512_set1_ps(beta);
                let p = c.add(i * ldc);
                let old_lo = _mm512_mul_ps(vb, _mm512_loadu_ps(p));
                let old_hi = _mm512_mul_ps(vb, _mm512_loadu_ps(p.add(16)));
                *lo = _mm512_fmadd_ps(va, *lo, old_lo);
                *hi = _mm512_fmadd_ps(va, *hi, old_hi);
            }
        }
        if !epi.is_none() {
            let zero = _mm512_setzero_ps();
            let (b_lo, b_hi) = if epi.bias.is_null() {
                (zero, zero)
            } else {
                (_mm512_loadu_ps(epi.bias), _mm512_loadu_ps(epi.bias.add(16)))
            };
            for [lo, hi] in acc.iter_mut() {
                if !epi.bias.is_null() {
                    *lo = _mm512_add_ps(*lo, b_lo);
                    *hi = _mm512_add_ps(*hi, b_hi);
                }
                if epi.relu {
                    // max(v, 0) with 0 as the second operand gives 0 for NaN, as the AVX2
                    // tile and `f32::max` do.
                    *lo = _mm512_max_ps(*lo, zero);
                    *hi = _mm512_max_ps(*hi, zero);
                }
            }
        }
        for (i, [lo, hi]) in acc.into_iter().enumerate() {
            let p = c.add(i * ldc);
            _mm512_storeu_ps(p, lo);
            _mm512_storeu_ps(p.add(16), hi);
        }
    }

    /// 16 columns at a time: 14 rows (and 2 zero rows) of 16 transposed in registers by
    /// unpacks and 128-bit lane shuffles, each column's 14 values stored masked.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
    unsafe fn pack_rows(a: *const f32, rs: usize, kc: usize, dst: *mut f32) {
        const MR: usize = 14;
        let store: __mmask16 = (1 << MR) - 1;
        for p0 in (0..kc).step_by(16) {
            let cols = 16.min(kc - p0);
            let load: __mmask16 = if cols == 16 { !0 } else { (1 << cols) - 1 };
            let mut r = [_mm512_setzero_ps(); 16];
            for (i, v) in r.iter_mut().enumerate().take(MR) {
                *v = _mm512_maskz_loadu_ps(load, a.add(i * rs + p0));
            }
            // Within each 128-bit lane l: s[4q + c] holds rows 4q..4q + 3 of column
            // 4l + c.
            let mut t = [_mm512_setzero_ps(); 16];
            for q in 0..8 {
                t[2 * q] = _mm512_unpacklo_ps(r[2 * q], r[2 * q + 1]);
                t[2 * q + 1] = _mm512_unpackhi_ps(r[2 * q], r[2 * q + 1]);
            }
            let mut s = [_mm512_setzero_ps(); 16];
            for q in 0..4 {
                let (a0, a1, b0, b1) = (t[4 * q], t[4 * q + 1], t[4 * q + 2], t[4 * q + 3]);
                s[4 * q] = _mm512_shuffle_ps::<0x44>(a0, b0);
                s[4 * q + 1] = _mm512_shuffle_ps::<0xEE>(a0, b0);
                s[4 * q + 2] = _mm512_shuffle_ps::<0x44>(a1, b1);
                s[4 * q + 3] = _mm512_shuffle_ps::<0xEE>(a1, b1);
            }
            // The 4 × 4 transpose of 128-bit lanes across s[c], s[4 + c], s[8 + c],
            // s[12 + c]: lane l of the result is rows 4l..4l + 3, so column 4l + c.
            let mut col = [_mm512_setzero_ps(); 16];
            for c in 0..4 {
                let (w, x, y, z) = (s[c], s[4 + c], s[8 + c], s[12 + c]);
                let u0 = _mm512_shuffle_f32x4::<0x44>(w, x);
                let u1 = _mm512_shuffle_f32x4::<0xEE>(w, x);
                let u2 = _mm512_shuffle_f32x4::<0x44>(y, z);
                let u3 = _mm512_shuffle_f32x4::<0xEE>(y, z);
                col[c] = _mm512_shuffle_f32x4::<0x88>(u0, u2);
                col[4 + c] = _mm512_shuffle_f32x4::<0xDD>(u0, u2);
                col[8 + c] = _mm512_shuffle_f32x4::<0x88>(u1, u3);
                col[12 + c] = _mm512_shuffle_f32x4::<0xDD>(u1, u3);
            }
            for (j, v) in col.into_iter().enumerate().take(cols) {
                _mm512_mask_storeu_ps(dst.add((p0 + j) * MR), store, v);
            }
        }
    }
}
