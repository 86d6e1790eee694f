//! Products at most [`MAX_N`] columns wide (gates over a few experts, output layers):
//! every element of `C` is one dot product of a row of `A` with a column of `B`, taken
//! straight from `A`'s rows.
//!
//! Why not the register tiles: at 2–8 columns a 16-column tile is mostly padding, and
//! packing `A` costs as much as the product. Here `A` is not packed; `B` (at most 8 × k)
//! is copied once, transposed and zero-padded. Measured on the one-user MFH request (its
//! 24 gate products, `mfh bench infer --one-user`), see bench/RESULTS.md.
//!
//! The sums and their order: each element accumulates in 8 lanes (lane `l` takes the
//! steps `p ≡ l (mod 8)` in order, one fused multiply-add each, the last partial block
//! zero-padded), the lanes are then added in one fixed tree, and the epilogue is the
//! tiles' (`alpha·s`, or `alpha·s + beta·C` in one fused multiply-add, then the bias and
//! ReLU). The code is the same 256-bit AVX2 + FMA code on the AVX2 and AVX-512 paths, so
//! they give equal bits, and a row's result depends on nothing but its own row: not on
//! `m`, the split across threads or the other rows.

use super::blocked::{Epilogue, View};
use std::arch::x86_64::*;
use std::cell::RefCell;

/// Widest product taken here.
pub(super) const MAX_N: usize = 8;

thread_local! {
    /// `B` transposed and padded (`n × kp`), reused across calls.
    static BT: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `run(bt, kp)` with `bt` the `k × n` operand `B` (`1 ≤ n ≤ MAX_N`, `k ≥ 1`)
/// transposed into `n` rows of `kp` (`k` rounded up to 8, zero-padded), to hand to
/// [`rows`] (on this thread or, for blocks of rows, on others).
///
/// # Safety
/// Every element of `B` addressed through `b` must be valid.
pub(super) unsafe fn with_transposed_b<R>(
    n: usize,
    k: usize,
    b: View,
    run: impl FnOnce(&[f32], usize) -> R,
) -> R {
    debug_assert!((1..=MAX_N).contains(&n) && k > 0);
    let kp = k.div_ceil(8) * 8;
    // Taken out of the thread's slot while `run` runs: this thread may run other
    // products meanwhile (rayon work stealing while it waits for its blocks), and
    // those then fill a buffer of their own.
    let mut bt = BT.with(|bt| std::mem::take(&mut *bt.borrow_mut()));
    bt.clear();
    bt.resize(n * kp, 0.0);
    for j in 0..n {
        let row = &mut bt[j * kp..j * kp + k];
        for (p, v) in row.iter_mut().enumerate() {
            *v = *b.ptr.add(p * b.rs + j * b.cs);
        }
    }
    let out = run(&bt, kp);
    BT.with(|slot| *slot.borrow_mut() = bt);
    out
}

/// `C[m × n] = epi(alpha·A·B + beta·C)` (see the module doc) for `A` row-major with row
/// stride `lda`, `B` given as `bt` from [`with_transposed_b`]; when `beta == 0`, `C` is
/// not read.
///
/// # Safety
/// Every element addressed through `a` (m rows of k) and `c` (m rows of n) must be
/// valid, the CPU must have AVX2 and FMA, and a non-null bias points at `n` floats.
#[allow(clippy::too_many_arguments)] // one product's operands
pub(super) unsafe fn rows(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: *const f32,
    lda: usize,
    bt: &[f32],
    kp: usize,
    beta: f32,
    c: *mut f32,
    ldc: usize,
    epi: Epilogue,
) {
    let p = Operands {
        k,
        alpha,
        a,
        lda,
        bt: bt.as_ptr(),
        kp,
        beta,
        c,
        ldc,
        epi,
    };
    match n {
        1 => block::<1, 4>(m, p),
        2 => block::<2, 4>(m, p),
        3 => block::<3, 3>(m, p),
        4 => block::<4, 2>(m, p),
        5 => block::<5, 2>(m, p),
        6 => block::<6, 2>(m, p),
        7 => block::<7, 1>(m, p),
        8 => block::<8, 1>(m, p),
        _ => unreachable!("narrow::rows: {n} columns"),
    }
}

#[derive(Clone, Copy)]
struct Operands {
    k: usize,
    alpha: f32,
    a: *const f32,
    lda: usize,
    bt: *const f32,
    kp: usize,
    beta: f32,
    c: *mut f32,
    ldc: usize,
    epi: Epilogue,
}

/// `R` rows at a time (sharing each load of `B`), then one at a time.
#[target_feature(enable = "avx2,fma")]
unsafe fn block<const N: usize, const R: usize>(m: usize, p: Operands) {
    let mut i = 0;
    while i + R <= m {
        tile::<N, R>(i, p);
        i += R;
    }
    while i < m {
        tile::<N, 1>(i, p);
        i += 1;
    }
}

/// Lanes below `rem` set, for the masked load of a row's last block.
fn tail_mask(rem: usize) -> [i32; 8] {
    std::array::from_fn(|l| if l < rem { -1 } else { 0 })
}

/// Rows `i..i + R`, all `N` columns.
#[allow(clippy::needless_range_loop)] // acc[r][j]: both indices walk their own loop
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile<const N: usize, const R: usize>(i: usize, p: Operands) {
    let mut acc = [[_mm256_setzero_ps(); N]; R];
    // Blocks of 8 steps; the last one's lanes past `k` load as 0 (masked).
    let blocks = p.kp / 8;
    let last = _mm256_loadu_si256(tail_mask(p.k - 8 * (blocks - 1)).as_ptr().cast());
    let row = |r: usize| p.a.add((i + r) * p.lda);
    for s in 0..blocks {
        let mut x = [_mm256_setzero_ps(); R];
        for (r, v) in x.iter_mut().enumerate() {
            let at = row(r).add(s * 8);
            *v = if s + 1 < blocks {
                _mm256_loadu_ps(at)
            } else {
                _mm256_maskload_ps(at, last)
            };
        }
        for j in 0..N {
            let w = _mm256_loadu_ps(p.bt.add(j * p.kp + s * 8));
            for r in 0..R {
                acc[r][j] = _mm256_fmadd_ps(x[r], w, acc[r][j]);
            }
        }
    }
    for (r, sums) in acc.iter().enumerate() {
        let c = p.c.add((i + r) * p.ldc);
        for (j, &v) in sums.iter().enumerate() {
            // Lanes (0+4, 1+5, 2+6, 3+7), then (0+2, 1+3), then 0+1.
            let q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let q = _mm_add_ps(q, _mm_movehl_ps(q, q));
            let q = _mm_add_ss(q, _mm_shuffle_ps::<1>(q, q));
            let s = _mm_cvtss_f32(q);
            let mut y = if p.beta == 0.0 {
                p.alpha * s
            } else {
                p.alpha.mul_add(s, p.beta * *c.add(j))
            };
            if !p.epi.bias.is_null() {
                y += *p.epi.bias.add(j);
            }
            if p.epi.relu {
                y = y.max(0.0);
            }
            *c.add(j) = y;
        }
    }
}
