//! bf16 products: `C = epi(alpha·A·B + beta·C)` with `A` and `B` rounded to bf16 and
//! every sum in f32 (the f32 operands stay the master copies; only the packed copies
//! are bf16).
//!
//! Three ways, by [`mfh_cpu::Path`]:
//! - **the reference** (every path without bf16 hardware): the operands rounded to bf16
//!   (round to nearest even, [`round`]) into f32 buffers, then the f32 product of that
//!   path. Products of two bf16 values are exact in f32, so this is what bf16 hardware
//!   computes up to the order of the f32 sums;
//! - **AVX512-BF16** ([`Path::Avx512Bf16`]): a 14 × 32 register tile of `vdpbf16ps`,
//!   each instruction two multiply-adds per lane (twice the f32 tile's work per
//!   instruction);
//! - **AMX** ([`Path::Amx`]): 32 × 32 blocks of `C` in four 16 × 16 f32 tiles, fed by
//!   `tdpbf16ps` from two 16 × 32 bf16 tiles of `A` and two of `B` per 32 steps of `k`.
//!
//! Both hardware ways share one packing: `A` row-major in bf16 with `k` padded with zeros
//! (to a multiple of 32 for AMX, of 2 for AVX512-BF16), `B` in panels of 32 columns, each
//! pair of rows `2q, 2q + 1` interleaved ("VNNI": per column the two values side by side,
//! 128 bytes per pair of rows), zero-padded. The packing rounds as [`round`] does, so
//! every way multiplies the same bf16 values; the hardware flushes bf16 subnormals
//! (below 1.2e-38 in magnitude) to zero, which the reference does not.
//!
//! AMX on stable Rust: the tile instructions have no stable intrinsics, so they are
//! written as inline assembly (`ldtilecfg`, `tilezero`, `tileloadd`, `tdpbf16ps`,
//! `tilestored`, `tilerelease`); the compiler never uses the tile registers itself, so
//! their contents survive between the `asm!` blocks of one kernel. Detection reads CPUID
//! and XCR0, and Linux must grant the process the tile state
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`): both in
//! [`mfh_cpu::amx_usable`], which [`Path::Amx`] requires. Each product loads its tile
//! configuration and releases the tiles when done (no tile state is left for the OS to
//! save between products).
//!
//! Determinism: every element of `C` is one chain of sums over `k` in a fixed order that
//! does not depend on `m`, `n`, the tile it lands in or a thread's block, so a fixed
//! thread count (or any, as for f32) gives the same bits.

/// `x` rounded to the nearest bf16 (ties to even), as its 16 bits; NaN stays NaN.
#[inline(always)]
pub fn round(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        ((b >> 16) | 0x40) as u16
    } else {
        (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16
    }
}

/// The f32 value of bf16 bits.
#[inline(always)]
pub fn widen(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

/// `x` rounded to bf16, as f32.
#[inline(always)]
pub fn round_f32(x: f32) -> f32 {
    widen(round(x))
}

/// Copies `rows × cols` of the matrix at `ptr` (element `(i, j)` at `ptr + i·rs + j·cs`)
/// rounded to bf16 into a dense row-major f32 buffer: the reference's operands.
///
/// # Safety
/// Every element the shape and strides address must be valid.
pub(crate) unsafe fn rounded_dense<T: crate::Float>(
    ptr: *const T,
    rs: usize,
    cs: usize,
    rows: usize,
    cols: usize,
) -> Vec<T> {
    let mut out = vec![T::zero(); rows * cols];
    mfh_cpu::dispatch!(
        mfh_cpu::path(),
        rounded_dense_into(ptr, rs, cs, rows, cols, &mut out)
    );
    out
}

#[inline(always)]
unsafe fn rounded_dense_into<T: crate::Float>(
    ptr: *const T,
    rs: usize,
    cs: usize,
    rows: usize,
    cols: usize,
    out: &mut [T],
) {
    let r = |x: T| T::from_f64(f64::from(round_f32(x.to_f64() as f32)));
    for i in 0..rows {
        let row = &mut out[i * cols..(i + 1) * cols];
        if cs == 1 {
            let src = std::slice::from_raw_parts(ptr.add(i * rs), cols);
            for (o, &x) in row.iter_mut().zip(src) {
                *o = r(x);
            }
        } else {
            for (j, o) in row.iter_mut().enumerate() {
                *o = r(*ptr.add(i * rs + j * cs));
            }
        }
    }
}
