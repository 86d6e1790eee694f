//! The bf16 hardware kernels (AVX512-BF16 and AMX) and their packing; see [`super::bf16`].

use super::bf16::round;
use super::blocked::{Epilogue, View};
use mfh_cpu::Path;
use std::arch::x86_64::*;
use std::cell::RefCell;

/// Columns of one packed panel of `B`.
const NR: usize = 32;

/// A 64-byte aligned block of 32 bf16 values.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u16; 32]);

/// This thread's packing buffers, reused across calls (handed to the workers of
/// [`sgemm_threads`] while it runs).
struct Buffers {
    a: Vec<Line>,
    b: Vec<Line>,
}

thread_local! {
    static BUFFERS: RefCell<Buffers> =
        const { RefCell::new(Buffers { a: Vec::new(), b: Vec::new() }) };
}

fn lines(buf: &mut Vec<Line>, values: usize) -> *mut u16 {
    let need = values.div_ceil(32);
    if buf.len() < need {
        buf.resize(need, Line([0; 32]));
    }
    buf.as_mut_ptr().cast()
}

/// 16 f32 lanes rounded to bf16 as [`round`] does, each in the low 16 bits of a 32-bit
/// lane (upper bits zero).
#[inline(always)]
unsafe fn bf16x16(v: __m512) -> __m512i {
    let b = _mm512_castps_si512(v);
    let hi = _mm512_srli_epi32::<16>(b);
    let lsb = _mm512_and_si512(hi, _mm512_set1_epi32(1));
    let r = _mm512_srli_epi32::<16>(_mm512_add_epi32(
        b,
        _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)),
    ));
    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
    _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(hi, _mm512_set1_epi32(0x40)))
}

/// The mask of the first `n` (≤ 16) lanes.
#[inline(always)]
fn lanes(n: usize) -> __mmask16 {
    if n >= 16 {
        0xffff
    } else {
        ((1u32 << n) - 1) as __mmask16
    }
}

/// Pairs of rows `2q, 2q + 1` of 16 columns from `p0` and `p1` (the first `n` columns
/// read, the rest zero; `p1` null for a row past the end): per column the bf16 of row
/// `2q` in the low half of a 32-bit lane and that of row `2q + 1` in the high half.
#[inline(always)]
unsafe fn pairs16(p0: *const f32, p1: *const f32, n: usize) -> __m512i {
    let m = lanes(n);
    let lo = bf16x16(_mm512_maskz_loadu_ps(m, p0));
    if p1.is_null() {
        return lo;
    }
    let hi = bf16x16(_mm512_maskz_loadu_ps(m, p1));
    _mm512_or_si512(lo, _mm512_slli_epi32::<16>(hi))
}

/// Where AMX's packed `A` keeps element `(i, p)` (in bf16 values from the start): tile by
/// tile, each tile (16 rows × 32 values of `k`, 1 KB) contiguous, the tiles of a block of
/// 16 rows in order of `k`. A tile then loads as 16 consecutive cache lines and the
/// product reads `A` as a few sequential streams.
#[inline(always)]
fn a_tile_at(i: usize, p: usize, kp: usize) -> usize {
    ((i / 16) * (kp / 32) + p / 32) * 512 + (i % 16) * 32 + p % 32
}

/// Packs `A` (`m × k`) for AMX as tiles ([`a_tile_at`]) of `mp` rows × `kp` bf16 values,
/// zero-padded.
#[inline(always)]
unsafe fn pack_a_rows(a: View, m: usize, k: usize, mp: usize, kp: usize, dst: *mut u16) {
    for i in m..mp {
        for p in (0..kp).step_by(32) {
            std::ptr::write_bytes(dst.add(a_tile_at(i, p, kp)), 0, 32);
        }
    }
    if a.cs == 1 {
        for i in 0..m {
            let src = a.ptr.add(i * a.rs);
            for p in (0..kp).step_by(16) {
                let n = k.saturating_sub(p);
                let v = if n == 0 {
                    _mm512_setzero_si512()
                } else {
                    bf16x16(_mm512_maskz_loadu_ps(lanes(n), src.add(p)))
                };
                _mm256_storeu_si256(
                    dst.add(a_tile_at(i, p, kp)).cast(),
                    _mm512_cvtepi32_epi16(v),
                );
            }
        }
    } else {
        // Stored transposed (element (i, p) at p·cs + i·rs). With rs == 1, blocks of 16
        // pairs × 16 rows: each pair of storage rows gives 16 packed rows' pair at once,
        // and the block is turned in a local buffer so that every packed row receives
        // 64 contiguous bytes.
        let half = kp / 2;
        if a.rs == 1 {
            let mut t = [0u32; 256];
            let idx = _mm512_setr_epi32(
                0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240,
            );
            for q0 in (0..half).step_by(16) {
                let qn = 16.min(half - q0);
                for i0 in (0..m).step_by(16) {
                    let mi = 16.min(m - i0);
                    for qq in 0..16 {
                        let (p0, p1) = (2 * (q0 + qq), 2 * (q0 + qq) + 1);
                        let v = if qq >= qn || p0 >= k {
                            _mm512_setzero_si512()
                        } else {
                            let r1 = if p1 < k {
                                a.ptr.add(p1 * a.cs + i0)
                            } else {
                                std::ptr::null()
                            };
                            pairs16(a.ptr.add(p0 * a.cs + i0), r1, mi)
                        };
                        _mm512_storeu_si512(t.as_mut_ptr().add(qq * 16).cast(), v);
                    }
                    for ii in 0..mi {
                        let col = _mm512_i32gather_epi32::<4>(
                            _mm512_add_epi32(idx, _mm512_set1_epi32(ii as i32)),
                            t.as_ptr().cast(),
                        );
                        _mm512_mask_storeu_epi32(
                            dst.add(a_tile_at(i0 + ii, 2 * q0, kp)).cast(),
                            lanes(qn),
                            col,
                        );
                    }
                }
            }
        } else {
            for q in 0..half {
                let at = |i: usize, p: usize| {
                    if p < k {
                        u32::from(round(*a.ptr.add(i * a.rs + p * a.cs)))
                    } else {
                        0
                    }
                };
                for i in 0..m {
                    *dst.add(a_tile_at(i, 2 * q, kp)).cast::<u32>() =
                        at(i, 2 * q) | at(i, 2 * q + 1) << 16;
                }
            }
        }
    }
}

/// Packs `A` (`m × k`) for the AVX512-BF16 tile: panels of [`DP_MR`] rows, each `kp / 2`
/// groups of `DP_MR` pairs (row `i`'s values at `k = 2q, 2q + 1` as one 32-bit word),
/// zero-padded.
///
/// Stored row by row (`cs == 1`): per panel, blocks of 16 pairs of its rows are read
/// along the rows and turned in a local buffer, so that each group receives its
/// `DP_MR` words in one store. Stored transposed with `rs == 1` (the weight gradient's
/// `Xᵀ`): the `DP_MR` values of one `k` in a panel lie side by side in storage, so a
/// group is two contiguous loads of the storage rows `2q` and `2q + 1` (before, each
/// value was rounded alone along a column of storage, a cache line apart, and the
/// products of that shape ran at half the f32 tile's speed).
#[inline(always)]
unsafe fn pack_a_panels(a: View, m: usize, k: usize, kp: usize, dst: *mut u16) {
    let half = kp / 2;
    let out = dst.cast::<u32>();
    let mp = m.div_ceil(DP_MR) * DP_MR;
    let full = lanes(DP_MR);
    if a.cs == 1 {
        let mut t = [0u32; 256];
        let idx = _mm512_setr_epi32(
            0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240,
        );
        for i0 in (0..mp).step_by(DP_MR) {
            let panel = out.add(i0 * half);
            let mi = DP_MR.min(m.saturating_sub(i0));
            for q0 in (0..half).step_by(16) {
                let qn = 16.min(half - q0);
                let kn = k.saturating_sub(2 * q0).min(32);
                for r in 0..DP_MR {
                    let v = if r >= mi || kn == 0 {
                        _mm512_setzero_si512()
                    } else {
                        let src = a.ptr.add((i0 + r) * a.rs + 2 * q0);
                        // The block after next of this row (a prefetch never faults).
                        _mm_prefetch::<_MM_HINT_T0>(src.wrapping_add(64).cast());
                        _mm_prefetch::<_MM_HINT_T0>(src.wrapping_add(80).cast());
                        pairs_along(src, kn)
                    };
                    _mm512_storeu_si512(t.as_mut_ptr().add(r * 16).cast(), v);
                }
                for qq in 0..qn {
                    let group = _mm512_mask_i32gather_epi32::<4>(
                        _mm512_setzero_si512(),
                        full,
                        _mm512_add_epi32(idx, _mm512_set1_epi32(qq as i32)),
                        t.as_ptr().cast(),
                    );
                    _mm512_mask_storeu_epi32(panel.add((q0 + qq) * DP_MR).cast(), full, group);
                }
            }
        }
        return;
    }
    if a.rs == 1 {
        for q in 0..half {
            let (p0, p1) = (2 * q, 2 * q + 1);
            for i0 in (0..mp).step_by(DP_MR) {
                let group = out.add(i0 * half + q * DP_MR);
                let mi = DP_MR.min(m.saturating_sub(i0));
                let v = if p0 >= k || mi == 0 {
                    _mm512_setzero_si512()
                } else {
                    let r1 = if p1 < k {
                        a.ptr.add(p1 * a.cs + i0)
                    } else {
                        std::ptr::null()
                    };
                    // The same values of the storage rows four ahead.
                    let ahead = a.ptr.wrapping_add((p0 + 4) * a.cs + i0);
                    _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(a.cs).cast());
                    pairs16(a.ptr.add(p0 * a.cs + i0), r1, mi)
                };
                _mm512_mask_storeu_epi32(group.cast(), full, v);
            }
        }
        return;
    }
    for i in 0..mp {
        let panel = out.add(i / DP_MR * half * DP_MR);
        let r = i % DP_MR;
        for q in 0..half {
            let at = |p: usize| {
                if i < m && p < k {
                    u32::from(round(*a.ptr.add(i * a.rs + p * a.cs)))
                } else {
                    0
                }
            };
            *panel.add(q * DP_MR + r) = at(2 * q) | at(2 * q + 1) << 16;
        }
    }
}

/// Packs `B` (`k × n`) into `n.div_ceil(32)` panels of `kp / 2` pairs of rows, each pair
/// 32 columns × 2 values (the pair's two rows side by side per column), zero-padded.
#[inline(always)]
unsafe fn pack_b(b: View, k: usize, n: usize, kp: usize, dst: *mut u16) {
    let panels = n.div_ceil(NR);
    let half = kp / 2;
    let out = dst.cast::<u32>();
    for jp in 0..panels {
        let j0 = jp * NR;
        let nr = NR.min(n - j0);
        let panel = out.add(jp * half * NR);
        if b.cs == 1 {
            for q in 0..half {
                let (p0, p1) = (2 * q, 2 * q + 1);
                let dstq = panel.add(q * NR);
                if p0 >= k {
                    _mm512_storeu_si512(dstq.cast(), _mm512_setzero_si512());
                    _mm512_storeu_si512(dstq.add(16).cast(), _mm512_setzero_si512());
                    continue;
                }
                let r0 = b.ptr.add(p0 * b.rs + j0);
                // The panel's columns of the rows four ahead.
                for ahead in [4, 5] {
                    let pf = b.ptr.wrapping_add((p0 + ahead) * b.rs + j0);
                    _mm_prefetch::<_MM_HINT_T0>(pf.cast());
                    _mm_prefetch::<_MM_HINT_T0>(pf.wrapping_add(16).cast());
                }
                let r1 = if p1 < k {
                    b.ptr.add(p1 * b.rs + j0)
                } else {
                    std::ptr::null()
                };
                _mm512_storeu_si512(dstq.cast(), pairs16(r0, r1, nr));
                let v = if nr > 16 {
                    pairs16(
                        r0.add(16),
                        if r1.is_null() { r1 } else { r1.add(16) },
                        nr - 16,
                    )
                } else {
                    _mm512_setzero_si512()
                };
                _mm512_storeu_si512(dstq.add(16).cast(), v);
            }
        } else {
            // Stored transposed (element (p, j) at j·cs + p·rs). With rs == 1 each column's
            // pairs lie side by side: blocks of 16 columns × 16 pairs are read along the
            // columns and turned in a local buffer, so every pair of rows of the panel
            // receives 64 contiguous bytes.
            if b.rs == 1 {
                let mut t = [0u32; 256];
                let idx = _mm512_setr_epi32(
                    0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240,
                );
                for q0 in (0..half).step_by(16) {
                    let qn = 16.min(half - q0);
                    let kn = k.saturating_sub(2 * q0).min(32);
                    for jb in 0..2 {
                        for jj in 0..16 {
                            let j = jb * 16 + jj;
                            let v = if j >= nr || kn == 0 {
                                _mm512_setzero_si512()
                            } else {
                                pairs_along(b.ptr.add((j0 + j) * b.cs + 2 * q0), kn)
                            };
                            _mm512_storeu_si512(t.as_mut_ptr().add(jj * 16).cast(), v);
                        }
                        for qq in 0..qn {
                            let row = _mm512_i32gather_epi32::<4>(
                                _mm512_add_epi32(idx, _mm512_set1_epi32(qq as i32)),
                                t.as_ptr().cast(),
                            );
                            _mm512_storeu_si512(panel.add((q0 + qq) * NR + jb * 16).cast(), row);
                        }
                    }
                }
                continue;
            }
            for jj in 0..NR {
                if jj >= nr {
                    for q in 0..half {
                        *panel.add(q * NR + jj) = 0;
                    }
                    continue;
                }
                let col = b.ptr.add((j0 + jj) * b.cs);
                let at = |p: usize| {
                    if p < k {
                        u32::from(round(*col.add(p * b.rs)))
                    } else {
                        0
                    }
                };
                for q in 0..half {
                    *panel.add(q * NR + jj) = at(2 * q) | at(2 * q + 1) << 16;
                }
            }
        }
    }
}

/// 32 consecutive values from `p` (the first `n` read, the rest zero) rounded to bf16 and
/// taken two by two: 16 pairs, the first of each in the low half of a 32-bit lane.
#[inline(always)]
unsafe fn pairs_along(p: *const f32, n: usize) -> __m512i {
    let lo = _mm512_cvtepi32_epi16(bf16x16(_mm512_maskz_loadu_ps(lanes(n), p)));
    let hi = if n > 16 {
        _mm512_cvtepi32_epi16(bf16x16(_mm512_maskz_loadu_ps(lanes(n - 16), p.add(16))))
    } else {
        _mm256_setzero_si256()
    };
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
}

/// Writes an `mr × nr` block of results (`t`, row stride [`NR`]) into `C` through
/// `alpha`, `beta` and the epilogue (whose bias starts at the block's first column).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn store_block(
    t: *const f32,
    mr: usize,
    nr: usize,
    alpha: f32,
    beta: f32,
    c: *mut f32,
    ldc: usize,
    epi: Epilogue,
) {
    let (va, vb, zero) = (
        _mm512_set1_ps(alpha),
        _mm512_set1_ps(beta),
        _mm512_setzero_ps(),
    );
    for h in 0..2 {
        if nr <= h * 16 {
            break;
        }
        let m = lanes(nr - h * 16);
        let bias = if epi.bias.is_null() {
            zero
        } else {
            _mm512_maskz_loadu_ps(m, epi.bias.add(h * 16))
        };
        for i in 0..mr {
            let src = t.add(i * NR + h * 16);
            let dst = c.add(i * ldc + h * 16);
            let mut v = _mm512_mul_ps(va, _mm512_loadu_ps(src));
            if beta != 0.0 {
                v = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m, dst), v);
            }
            v = _mm512_add_ps(v, bias);
            if epi.relu {
                v = _mm512_max_ps(v, zero);
            }
            _mm512_mask_storeu_ps(dst, m, v);
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
    sgemm_threads(path, m, n, k, alpha, a, b, beta, c, ldc, epi, 1);
}

/// Packs `A` (`m` rows, padded to `mp`) for the product of `amx` or AVX512-BF16.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
unsafe fn pack_a(amx: bool, a: View, m: usize, k: usize, mp: usize, kp: usize, ap: *mut u16) {
    if amx {
        pack_a_rows(a, m, k, mp, kp, ap);
    } else {
        pack_a_panels(a, m, k, kp, ap);
    }
}

/// Packs `B` (`k × n`) in panels of [`NR`] columns ([`pack_b`]).
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
unsafe fn pack_b_panels(b: View, k: usize, n: usize, kp: usize, bp: *mut u16) {
    pack_b(b, k, n, kp, bp);
}

/// One product's operands and result for [`sgemm_threads`]'s workers.
#[derive(Clone, Copy)]
struct Job {
    amx: bool,
    m: usize,
    n: usize,
    k: usize,
    kp: usize,
    mr: usize,
    alpha: f32,
    beta: f32,
    a: View,
    b: View,
    c: *mut f32,
    ldc: usize,
    epi: Epilogue,
    ap: *mut u16,
    bp: *mut u16,
}

// SAFETY: the pointers are dereferenced only inside `sgemm_threads`, while the operands
// they come from are borrowed by its caller; workers pack disjoint panels and write
// disjoint blocks of `C`.
unsafe impl Send for Job {}
unsafe impl Sync for Job {}

/// [`sgemm`] on `threads` threads (1: on the calling thread), each operand packed once:
/// the workers first pack a share of `A`'s row panels and of `B`'s column panels each
/// into one buffer, then each multiplies one block of whole rows (or columns, whichever
/// dimension is longer) of `C` from the shared packed operands. (Splitting first and
/// packing per block, as the f32 kernel does, packed the operand every block reads once
/// per thread: a fifth of a bf16 MMoE-ref training step on a 2-core Zen 5 was packing.)
/// Every element's sum runs over the whole `k` in the same order as on one thread, so
/// the bits do not depend on the thread count.
///
/// # Safety
/// As [`sgemm`]; `threads` ≥ 1.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sgemm_threads(
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
    threads: usize,
) {
    use rayon::prelude::*;
    debug_assert!(matches!(path, Path::Amx | Path::Avx512Bf16));
    if m == 0 || n == 0 {
        return;
    }
    debug_assert!(k > 0 && alpha != 0.0);
    let amx = path == Path::Amx;
    let (mr, kstep) = if amx { (16, 32) } else { (DP_MR, 2) };
    let kp = k.div_ceil(kstep) * kstep;
    let mp = m.div_ceil(mr) * mr;
    let np = n.div_ceil(NR) * NR;
    // The buffers leave this thread's slot while the workers use them (a worker that
    // runs another product on this thread meanwhile finds the slot empty and allocates).
    let (mut abuf, mut bbuf) = BUFFERS.with(|s| {
        let s = &mut *s.borrow_mut();
        (std::mem::take(&mut s.a), std::mem::take(&mut s.b))
    });
    let job = Job {
        amx,
        m,
        n,
        k,
        kp,
        mr,
        alpha,
        beta,
        a,
        b,
        c,
        ldc,
        epi,
        ap: lines(&mut abuf, mp * kp),
        bp: lines(&mut bbuf, kp * np),
    };
    let t = threads.max(1);
    let (a_panels, b_panels) = (mp / mr, np / NR);
    let pack = |w: usize| {
        let job = &job;
        let share = |total: usize| (total * w / t, total * (w + 1) / t);
        let (p0, p1) = share(a_panels);
        if p0 < p1 {
            // Panels tile the padded rows exactly: `hi` ≤ `mp`.
            let (lo, hi) = (p0 * job.mr, p1 * job.mr);
            let rows = hi.min(job.m) - lo;
            let sub = View {
                ptr: job.a.ptr.add(lo * job.a.rs),
                ..job.a
            };
            pack_a(
                job.amx,
                sub,
                rows,
                job.k,
                hi - lo,
                job.kp,
                job.ap.add(lo * job.kp),
            );
        }
        let (q0, q1) = share(b_panels);
        if q0 < q1 {
            let (lo, hi) = (q0 * NR, (q1 * NR).min(job.n));
            let sub = View {
                ptr: job.b.ptr.add(lo * job.b.cs),
                ..job.b
            };
            pack_b_panels(sub, job.k, hi - lo, job.kp, job.bp.add(lo * job.kp));
        }
    };
    let split_rows = m >= n;
    let (dim, unit) = if split_rows { (m, mr) } else { (n, NR) };
    let chunk = dim.div_ceil(t).div_ceil(unit) * unit;
    let blocks = dim.div_ceil(chunk);
    let multiply = |bi: usize| {
        let job = &job;
        let lo = bi * chunk;
        let len = chunk.min(dim - lo);
        let mut t = [0f32; 32 * NR];
        let (m, n, ap, bp, c, epi) = if split_rows {
            (
                len,
                job.n,
                job.ap.add(lo * job.kp),
                job.bp,
                job.c.add(lo * job.ldc),
                job.epi,
            )
        } else {
            let epi = job.epi.at_col(lo);
            (
                job.m,
                len,
                job.ap,
                job.bp.add(lo * job.kp),
                job.c.add(lo),
                epi,
            )
        };
        if job.amx {
            amx_product(
                m, n, job.kp, ap, bp, job.alpha, job.beta, c, job.ldc, epi, &mut t,
            );
        } else {
            dp_product(
                m, n, job.kp, ap, bp, job.alpha, job.beta, c, job.ldc, epi, &mut t,
            );
        }
    };
    if t == 1 {
        pack(0);
        multiply(0);
    } else {
        (0..t).into_par_iter().for_each(pack);
        (0..blocks).into_par_iter().for_each(multiply);
    }
    BUFFERS.with(|s| {
        let s = &mut *s.borrow_mut();
        if s.a.capacity() < abuf.capacity() {
            s.a = abuf;
        }
        if s.b.capacity() < bbuf.capacity() {
            s.b = bbuf;
        }
    });
}

/// Rows of the AVX512-BF16 register tile.
const DP_MR: usize = 14;

/// The AVX512-BF16 product over packed operands: 14 × 32 tiles, per pair of `k` two loads
/// of `B` and 14 broadcasts of `A` feed 28 `vdpbf16ps`; a panel of at most 16 columns
/// (a gate's product, 8 wide) takes a 14 × 16 tile, one load of `B` and 14 `vdpbf16ps`
/// per pair, rather than half a tile of zeros (the sums, and so the bits, are the same).
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
    let pairs = kp / 2;
    for j0 in (0..n).step_by(NR) {
        let nr = NR.min(n - j0);
        let panel = bp.add(j0 / NR * pairs * 2 * NR);
        let epi_j = epi.at_col(j0);
        for i0 in (0..m).step_by(DP_MR) {
            let mr = DP_MR.min(m - i0);
            let a = ap.cast::<u32>().add(i0 * pairs);
            if nr > 16 {
                dp_tile::<2>(a, panel, pairs, t);
            } else {
                dp_tile::<1>(a, panel, pairs, t);
            }
            store_block(
                t.as_ptr(),
                mr,
                nr,
                alpha,
                beta,
                c.add(i0 * ldc + j0),
                ldc,
                epi_j,
            );
        }
    }
}

/// One [`DP_MR`] × `16·H` tile of the AVX512-BF16 product over `pairs` pairs of `k`: `a`
/// the panel's groups, `b` the `B` panel; the sums land in `t` (row stride [`NR`]).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,avx512bf16")]
unsafe fn dp_tile<const H: usize>(
    mut a: *const u32,
    mut b: *const u16,
    pairs: usize,
    t: &mut [f32],
) {
    // Two arrays of accumulators (the second unused when H == 1) and plain index loops:
    // written with iterators over `[[__m512; H]; DP_MR]`, the compiler kept them in
    // memory and the tile ran at a tenth of its speed.
    let mut lo = [_mm512_setzero_ps(); DP_MR];
    let mut hi = [_mm512_setzero_ps(); DP_MR];
    for _ in 0..pairs {
        let b0: __m512bh = std::mem::transmute(_mm512_load_si512(b.cast()));
        let b1: __m512bh = if H == 2 {
            std::mem::transmute::<__m512i, __m512bh>(_mm512_load_si512(b.add(32).cast()))
        } else {
            b0
        };
        for i in 0..DP_MR {
            let x: __m512bh = std::mem::transmute(_mm512_set1_epi32(*a.add(i) as i32));
            lo[i] = _mm512_dpbf16_ps(lo[i], x, b0);
            if H == 2 {
                hi[i] = _mm512_dpbf16_ps(hi[i], x, b1);
            }
        }
        a = a.add(DP_MR);
        b = b.add(2 * NR);
    }
    for i in 0..DP_MR {
        _mm512_storeu_ps(t.as_mut_ptr().add(i * NR), lo[i]);
        if H == 2 {
            _mm512_storeu_ps(t.as_mut_ptr().add(i * NR + 16), hi[i]);
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
    let lda = 64usize; // bytes per row of a packed tile of A
    let ldb = 2 * NR * 2; // bytes per pair of rows of a B panel
    let ldt = NR * 4; // bytes per row of the result block
    let pairs = kp / 2;
    for j0 in (0..n).step_by(NR) {
        let nr = NR.min(n - j0);
        let panel = bp.add(j0 / NR * pairs * 2 * NR);
        let epi_j = epi.at_col(j0);
        for i0 in (0..m).step_by(32) {
            let mr = 32.min(m - i0);
            let a0 = ap.add(a_tile_at(i0, 0, kp));
            let tp = t.as_mut_ptr();
            if mr > 16 {
                let a1 = ap.add(a_tile_at(i0 + 16, 0, kp));
                asm!(
                    "tilezero tmm0",
                    "tilezero tmm1",
                    "tilezero tmm2",
                    "tilezero tmm3",
                    options(nostack, nomem)
                );
                for kk in (0..kp).step_by(32) {
                    // The next tiles of A (1 KB each, contiguous) into L1 while these run.
                    // (Past the last tiles these point beyond the buffers: wrapping
                    // arithmetic, and a prefetch never faults.)
                    let n0 = a0.wrapping_add(kk * 16 + 512);
                    let n1 = a1.wrapping_add(kk * 16 + 512);
                    let nb = panel.wrapping_add((kk + 32) / 2 * 2 * NR);
                    for line in 0..16 {
                        _mm_prefetch::<_MM_HINT_T0>(n0.wrapping_add(line * 32).cast());
                        _mm_prefetch::<_MM_HINT_T0>(n1.wrapping_add(line * 32).cast());
                        _mm_prefetch::<_MM_HINT_T0>(nb.wrapping_add(line * 64).cast());
                        _mm_prefetch::<_MM_HINT_T0>(nb.wrapping_add(line * 64 + 32).cast());
                    }
                    asm!(
                        "tileloadd tmm4, [{a0} + {lda}*1]",
                        "tileloadd tmm5, [{a1} + {lda}*1]",
                        "tileloadd tmm6, [{b0} + {ldb}*1]",
                        "tileloadd tmm7, [{b1} + {ldb}*1]",
                        "tdpbf16ps tmm0, tmm4, tmm6",
                        "tdpbf16ps tmm1, tmm4, tmm7",
                        "tdpbf16ps tmm2, tmm5, tmm6",
                        "tdpbf16ps tmm3, tmm5, tmm7",
                        a0 = in(reg) a0.add(kk * 16),
                        a1 = in(reg) a1.add(kk * 16),
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
                        a0 = in(reg) a0.add(kk * 16),
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
            store_block(
                t.as_ptr(),
                mr,
                nr,
                alpha,
                beta,
                c.add(i0 * ldc + j0),
                ldc,
                epi_j,
            );
        }
    }
    asm!("tilerelease", options(nostack, nomem));
}
