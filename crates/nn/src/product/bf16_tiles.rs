//! The bf16 hardware kernels (AVX512-BF16 and AMX) and their packing; see [`super::bf16`].

use super::bf16::round;
use super::blocked::{Epilogue, View};
use mfh_cpu::Path;
use std::cell::RefCell;

/// Columns of one packed panel of `B`.
const NR: usize = 32;

/// A 64-byte aligned block of 32 bf16 values.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u16; 32]);

/// This thread's packing buffers, reused across calls.
struct Buffers {
    a: Vec<Line>,
    b: Vec<Line>,
    /// f32 results of one block before the epilogue.
    c: Vec<f32>,
}

thread_local! {
    static BUFFERS: RefCell<Buffers> =
        const { RefCell::new(Buffers { a: Vec::new(), b: Vec::new(), c: Vec::new() }) };
}

fn lines(buf: &mut Vec<Line>, values: usize) -> *mut u16 {
    let need = values.div_ceil(32);
    if buf.len() < need {
        buf.resize(need, Line([0; 32]));
    }
    buf.as_mut_ptr().cast()
}

/// Packs `A` (`m × k`) as `mp` rows of `kp` bf16 values, zero-padded.
#[inline(always)]
unsafe fn pack_a(a: View, m: usize, k: usize, mp: usize, kp: usize, dst: *mut u16) {
    let out = std::slice::from_raw_parts_mut(dst, mp * kp);
    if a.cs == 1 {
        for i in 0..m {
            let src = std::slice::from_raw_parts(a.ptr.add(i * a.rs), k);
            let row = &mut out[i * kp..(i + 1) * kp];
            for (o, &x) in row.iter_mut().zip(src) {
                *o = round(x);
            }
            row[k..].fill(0);
        }
    } else {
        // Stored transposed (element (i, p) at p·cs + i): read along rows of storage.
        for p in 0..k {
            let src = std::slice::from_raw_parts(a.ptr.add(p * a.cs), (m - 1) * a.rs + 1);
            for i in 0..m {
                out[i * kp + p] = round(src[i * a.rs]);
            }
        }
        for i in 0..m {
            out[i * kp + k..(i + 1) * kp].fill(0);
        }
    }
    out[m * kp..].fill(0);
}

/// Packs `B` (`k × n`) into `n.div_ceil(32)` panels of `kp / 2` pairs of rows, each pair
/// 32 columns × 2 values (the pair's two rows side by side per column), zero-padded.
#[inline(always)]
unsafe fn pack_b(b: View, k: usize, n: usize, kp: usize, dst: *mut u16) {
    let panels = n.div_ceil(NR);
    let panel_len = kp / 2 * 2 * NR;
    let out = std::slice::from_raw_parts_mut(dst, panels * panel_len);
    for jp in 0..panels {
        let j0 = jp * NR;
        let nr = NR.min(n - j0);
        let panel = &mut out[jp * panel_len..(jp + 1) * panel_len];
        if b.cs == 1 {
            for q in 0..kp / 2 {
                let dstq = &mut panel[q * 2 * NR..(q + 1) * 2 * NR];
                for r in 0..2 {
                    let p = 2 * q + r;
                    if p < k {
                        let src = std::slice::from_raw_parts(b.ptr.add(p * b.rs + j0), nr);
                        for (jj, &x) in src.iter().enumerate() {
                            dstq[jj * 2 + r] = round(x);
                        }
                        for jj in nr..NR {
                            dstq[jj * 2 + r] = 0;
                        }
                    } else {
                        for jj in 0..NR {
                            dstq[jj * 2 + r] = 0;
                        }
                    }
                }
            }
        } else {
            // Stored transposed (element (p, j) at j·cs + p·rs): along each column.
            for jj in 0..NR {
                if jj < nr {
                    let col = b.ptr.add((j0 + jj) * b.cs);
                    for p in 0..k {
                        panel[(p / 2) * 2 * NR + jj * 2 + (p & 1)] = round(*col.add(p * b.rs));
                    }
                    for p in k..kp {
                        panel[(p / 2) * 2 * NR + jj * 2 + (p & 1)] = 0;
                    }
                } else {
                    for p in 0..kp {
                        panel[(p / 2) * 2 * NR + jj * 2 + (p & 1)] = 0;
                    }
                }
            }
        }
    }
}

/// Writes an `mr × nr` block of results (`t`, row stride `ldt`) into `C` through
/// `alpha`, `beta` and the epilogue (whose bias starts at the block's first column).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn store_block(
    t: &[f32],
    ldt: usize,
    mr: usize,
    nr: usize,
    alpha: f32,
    beta: f32,
    c: *mut f32,
    ldc: usize,
    epi: Epilogue,
) {
    let bias = (!epi.bias.is_null()).then(|| std::slice::from_raw_parts(epi.bias, nr));
    for i in 0..mr {
        let src = &t[i * ldt..i * ldt + nr];
        let dst = std::slice::from_raw_parts_mut(c.add(i * ldc), nr);
        for (j, (d, &s)) in dst.iter_mut().zip(src).enumerate() {
            let mut v = if beta == 0.0 {
                alpha * s
            } else {
                alpha * s + beta * *d
            };
            if let Some(b) = bias {
                v += b[j];
            }
            *d = if epi.relu { v.max(0.0) } else { v };
        }
    }
}

/// `C[m × n] = epi(alpha·A·B + beta·C)` with bf16 operands, on the calling thread, by
/// the hardware of `path` ([`Path::Amx`] or [`Path::Avx512Bf16`]).
///
/// # Safety
/// The CPU has `path` (granted, for AMX); every element of `A`, `B` and `C` the shapes
/// and strides address is valid; `C` aliases neither `A` nor `B`; a non-null bias points
/// at `n` values.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sgemm(
    path: Path,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: View,
    b: View,
    beta: f32,
    c: *mut f32,
    ldc: usize,
    epi: Epilogue,
) {
    debug_assert!(matches!(path, Path::Amx | Path::Avx512Bf16));
    if m == 0 || n == 0 {
        return;
    }
    let amx = path == Path::Amx;
    let (mr, kstep) = if amx { (16, 32) } else { (DP_MR, 2) };
    let kp = k.max(1).div_ceil(kstep) * kstep;
    let mp = m.div_ceil(mr) * mr;
    let np = n.div_ceil(NR) * NR;
    BUFFERS.with(|bufs| {
        let bufs = &mut *bufs.borrow_mut();
        let ap = lines(&mut bufs.a, mp * kp);
        let bp = lines(&mut bufs.b, kp * np);
        if bufs.c.len() < 32 * NR {
            bufs.c.resize(32 * NR, 0.0);
        }
        let t = &mut bufs.c[..];
        pack_avx512(a, b, m, n, k, mp, kp, ap, bp);
        if amx {
            amx_product(m, n, kp, ap, bp, alpha, beta, c, ldc, epi, t);
        } else {
            dp_product(m, n, kp, ap, bp, alpha, beta, c, ldc, epi, t);
        }
    });
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
unsafe fn pack_avx512(
    a: View,
    b: View,
    m: usize,
    n: usize,
    k: usize,
    mp: usize,
    kp: usize,
    ap: *mut u16,
    bp: *mut u16,
) {
    pack_a(a, m, k, mp, kp, ap);
    pack_b(b, k, n, kp, bp);
}

/// Rows of the AVX512-BF16 register tile.
const DP_MR: usize = 14;

/// The AVX512-BF16 product over packed operands: 14 × 32 tiles, per pair of `k` two loads
/// of `B` and 14 broadcasts of `A` feed 28 `vdpbf16ps`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,avx512bf16")]
unsafe fn dp_product(
    m: usize,
    n: usize,
    kp: usize,
    ap: *const u16,
    bp: *const u16,
    alpha: f32,
    beta: f32,
    c: *mut f32,
    ldc: usize,
    epi: Epilogue,
    t: &mut [f32],
) {
    use std::arch::x86_64::*;
    let pairs = kp / 2;
    for j0 in (0..n).step_by(NR) {
        let nr = NR.min(n - j0);
        let panel = bp.add(j0 / NR * pairs * 2 * NR);
        let epi_j = epi.at_col(j0);
        for i0 in (0..m).step_by(DP_MR) {
            let mr = DP_MR.min(m - i0);
            let mut acc = [[_mm512_setzero_ps(); 2]; DP_MR];
            let rows: [*const u32; DP_MR] =
                std::array::from_fn(|i| ap.add((i0 + i) * kp).cast::<u32>());
            let mut b = panel;
            for q in 0..pairs {
                let b0: __m512bh = std::mem::transmute(_mm512_load_si512(b.cast()));
                let b1: __m512bh = std::mem::transmute(_mm512_load_si512(b.add(32).cast()));
                for (i, row) in acc.iter_mut().enumerate() {
                    let x: __m512bh =
                        std::mem::transmute(_mm512_set1_epi32(*rows[i].add(q) as i32));
                    row[0] = _mm512_dpbf16_ps(row[0], x, b0);
                    row[1] = _mm512_dpbf16_ps(row[1], x, b1);
                }
                b = b.add(2 * NR);
            }
            for (i, [lo, hi]) in acc.iter().enumerate() {
                _mm512_storeu_ps(t.as_mut_ptr().add(i * NR), *lo);
                _mm512_storeu_ps(t.as_mut_ptr().add(i * NR + 16), *hi);
            }
            store_block(t, NR, mr, nr, alpha, beta, c.add(i0 * ldc + j0), ldc, epi_j);
        }
    }
}

/// AMX tile configuration (palette 1): tiles 0–7 all 16 rows × 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    fn all_16x64() -> TileConfig {
        let mut c = [0u8; 64];
        c[0] = 1;
        for t in 0..8 {
            c[16 + 2 * t] = 64;
            c[48 + t] = 16;
        }
        TileConfig(c)
    }
}

/// The AMX product over packed operands (`kp` a multiple of 32, `A` padded to a multiple
/// of 16 rows): per 32 × 32 block of `C`, tiles 0–3 hold its four 16 × 16 quarters, 4–5
/// two 16-row slices of `A`, 6–7 two 16-column halves of the `B` panel.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
unsafe fn amx_product(
    m: usize,
    n: usize,
    kp: usize,
    ap: *const u16,
    bp: *const u16,
    alpha: f32,
    beta: f32,
    c: *mut f32,
    ldc: usize,
    epi: Epilogue,
    t: &mut [f32],
) {
    use std::arch::asm;
    let cfg = TileConfig::all_16x64();
    asm!("ldtilecfg [{0}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly));
    let lda = kp * 2; // bytes per packed row of A
    let ldb = 2 * NR * 2; // bytes per pair of rows of a B panel
    let ldt = NR * 4; // bytes per row of the result block
    let pairs = kp / 2;
    for j0 in (0..n).step_by(NR) {
        let nr = NR.min(n - j0);
        let panel = bp.add(j0 / NR * pairs * 2 * NR);
        let epi_j = epi.at_col(j0);
        for i0 in (0..m).step_by(32) {
            let mr = 32.min(m - i0);
            let a0 = ap.add(i0 * kp);
            let tp = t.as_mut_ptr();
            if mr > 16 {
                let a1 = a0.add(16 * kp);
                asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3",
                    options(nostack, nomem));
                for kk in (0..kp).step_by(32) {
                    asm!(
                        "tileloadd tmm4, [{a0} + {lda}*1]",
                        "tileloadd tmm5, [{a1} + {lda}*1]",
                        "tileloadd tmm6, [{b0} + {ldb}*1]",
                        "tileloadd tmm7, [{b1} + {ldb}*1]",
                        "tdpbf16ps tmm0, tmm4, tmm6",
                        "tdpbf16ps tmm1, tmm4, tmm7",
                        "tdpbf16ps tmm2, tmm5, tmm6",
                        "tdpbf16ps tmm3, tmm5, tmm7",
                        a0 = in(reg) a0.add(kk),
                        a1 = in(reg) a1.add(kk),
                        b0 = in(reg) panel.add(kk / 2 * 2 * NR),
                        b1 = in(reg) panel.add(kk / 2 * 2 * NR + 32),
                        lda = in(reg) lda,
                        ldb = in(reg) ldb,
                        options(nostack, readonly),
                    );
                }
                asm!(
                    "tilestored [{t0} + {ldt}*1], tmm0",
                    "tilestored [{t1} + {ldt}*1], tmm1",
                    "tilestored [{t2} + {ldt}*1], tmm2",
                    "tilestored [{t3} + {ldt}*1], tmm3",
                    t0 = in(reg) tp,
                    t1 = in(reg) tp.add(16),
                    t2 = in(reg) tp.add(16 * NR),
                    t3 = in(reg) tp.add(16 * NR + 16),
                    ldt = in(reg) ldt,
                    options(nostack),
                );
            } else {
                asm!("tilezero tmm0", "tilezero tmm1", options(nostack, nomem));
                for kk in (0..kp).step_by(32) {
                    asm!(
                        "tileloadd tmm4, [{a0} + {lda}*1]",
                        "tileloadd tmm6, [{b0} + {ldb}*1]",
                        "tileloadd tmm7, [{b1} + {ldb}*1]",
                        "tdpbf16ps tmm0, tmm4, tmm6",
                        "tdpbf16ps tmm1, tmm4, tmm7",
                        a0 = in(reg) a0.add(kk),
                        b0 = in(reg) panel.add(kk / 2 * 2 * NR),
                        b1 = in(reg) panel.add(kk / 2 * 2 * NR + 32),
                        lda = in(reg) lda,
                        ldb = in(reg) ldb,
                        options(nostack, readonly),
                    );
                }
                asm!(
                    "tilestored [{t0} + {ldt}*1], tmm0",
                    "tilestored [{t1} + {ldt}*1], tmm1",
                    t0 = in(reg) tp,
                    t1 = in(reg) tp.add(16),
                    ldt = in(reg) ldt,
                    options(nostack),
                );
            }
            store_block(t, NR, mr, nr, alpha, beta, c.add(i0 * ldc + j0), ldc, epi_j);
        }
    }
    asm!("tilerelease", options(nostack, nomem));
}
