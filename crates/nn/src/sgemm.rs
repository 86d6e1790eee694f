//! The f32 matrix product on x86-64 CPUs with AVX2 and FMA, on one thread.
//!
//! Blocked in the usual way for a cache hierarchy: `B` is packed `KC` rows at a time into
//! panels `NR` columns wide, `A` `MC × KC` at a time into panels `MR` rows tall, and a
//! register-blocked micro-kernel multiplies one `A` panel by one `B` panel into an
//! `MR × NR` tile of `C` held in 12 of the 16 vector registers (per step of `k`, two
//! loads of `B` and six broadcasts of `A` feed 12 vector multiply-adds).
//!
//! Why not a library: on the 2-core AMD EPYC (Zen 3) this project is measured on, the
//! `gemm` crate reached 100–117 GFLOP/s on 2048³ with 2 threads where this kernel reaches
//! 130–140 (`mfh bench sgemm`; bench/RESULTS.md).
//!
//! Every element of `C` is the same sum in the same order (the `k` dimension in blocks
//! of `KC`, each summed in order) whatever `m`, `n`, the tile it lands in or the rows of
//! a thread's block, so splitting a product across threads by rows or columns never
//! changes a result.

use std::arch::x86_64::*;
use std::cell::RefCell;

/// Rows of the register tile.
const MR: usize = 6;
/// Columns of the register tile (two 8-lane vectors).
const NR: usize = 16;
/// Depth of one packed block: an `MR × KC` panel of A (6 KB) and a `KC × NR` panel of B
/// (16 KB) fit the 32 KB L1 together.
const KC: usize = 256;
/// Rows of A packed at once (a multiple of `MR`): `MC × KC` floats = 144 KB, in L2.
const MC: usize = 144;
/// Columns of B packed at once (a multiple of `NR`): `KC × NC` floats = 4 MB, in L3.
const NC: usize = 4096;

/// Whether this CPU runs the kernel (checked once).
pub(crate) fn available() -> bool {
    use std::sync::OnceLock;
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

/// A 32-byte aligned block of 8 floats, so packed panels start on a vector boundary.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct Lane([f32; 8]);

/// Packing buffers of this thread, reused across calls.
struct Buffers {
    a: Vec<Lane>,
    b: Vec<Lane>,
}

thread_local! {
    static BUFFERS: RefCell<Buffers> = const { RefCell::new(Buffers { a: Vec::new(), b: Vec::new() }) };
}

/// What is applied to each element of `C` after its last sum: `+ bias[j]` when `bias` is
/// not null (it then points at `n` values), then `max(·, 0)` when `relu`.
#[derive(Clone, Copy)]
pub(crate) struct Epilogue {
    pub bias: *const f32,
    pub relu: bool,
}

impl Epilogue {
    pub const NONE: Epilogue = Epilogue {
        bias: std::ptr::null(),
        relu: false,
    };

    fn is_none(&self) -> bool {
        self.bias.is_null() && !self.relu
    }

    /// The epilogue of the columns from `j` on.
    unsafe fn at_col(self, j: usize) -> Epilogue {
        Epilogue {
            bias: if self.bias.is_null() {
                self.bias
            } else {
                self.bias.add(j)
            },
            relu: self.relu,
        }
    }

    /// Applies it to one element of column `j`.
    #[inline]
    unsafe fn apply(&self, v: f32, j: usize) -> f32 {
        let v = if self.bias.is_null() {
            v
        } else {
            v + *self.bias.add(j)
        };
        if self.relu {
            v.max(0.0)
        } else {
            v
        }
    }
}

/// A matrix operand: element `(i, j)` at `ptr + i·rs + j·cs`.
#[derive(Clone, Copy)]
pub(crate) struct View {
    pub ptr: *const f32,
    pub rs: usize,
    pub cs: usize,
}

fn lanes(buf: &mut Vec<Lane>, floats: usize) -> *mut f32 {
    let need = floats.div_ceil(8);
    if buf.len() < need {
        buf.resize(need, Lane([0.0; 8]));
    }
    buf.as_mut_ptr().cast()
}

/// `C[m × n] = epi(alpha·A·B + beta·C)` (row stride `ldc`), with `A` `m × k` and `B`
/// `k × n`. When `beta == 0`, `C` is not read.
///
/// # Safety
/// [`available`] must be true; every element of `A`, `B` and `C` the shapes and strides
/// address must be valid, and `C` must not alias `A` or `B`.
#[allow(clippy::too_many_arguments)] // BLAS-style signature
pub(crate) unsafe fn sgemm(
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
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 || alpha == 0.0 {
        for i in 0..m {
            for j in 0..n {
                let p = c.add(i * ldc + j);
                *p = epi.apply(if beta == 0.0 { 0.0 } else { beta * *p }, j);
            }
        }
        return;
    }
    BUFFERS.with(|bufs| {
        let bufs = &mut *bufs.borrow_mut();
        for jc in (0..n).step_by(NC) {
            let nc = NC.min(n - jc);
            let nc_pad = nc.div_ceil(NR) * NR;
            for pc in (0..k).step_by(KC) {
                let kc = KC.min(k - pc);
                let bp = lanes(&mut bufs.b, nc_pad * kc);
                pack_b(b, pc, kc, jc, nc, bp);
                let beta_eff = if pc == 0 { beta } else { 1.0 };
                // The epilogue goes with the last block of the sum.
                let last = pc + kc == k;
                for ic in (0..m).step_by(MC) {
                    let mc = MC.min(m - ic);
                    let mc_pad = mc.div_ceil(MR) * MR;
                    let ap = lanes(&mut bufs.a, mc_pad * kc);
                    pack_a(a, ic, mc, pc, kc, ap);
                    for jr in (0..nc).step_by(NR) {
                        let nr = NR.min(nc - jr);
                        let bpanel = bp.add(jr * kc);
                        for ir in (0..mc).step_by(MR) {
                            let mr = MR.min(mc - ir);
                            let cp = c.add((ic + ir) * ldc + jc + jr);
                            let apanel = ap.add(ir * kc);
                            let epi = if last {
                                epi.at_col(jc + jr)
                            } else {
                                Epilogue::NONE
                            };
                            if mr == MR && nr == NR {
                                kernel(kc, apanel, bpanel, alpha, beta_eff, cp, ldc, epi);
                            } else {
                                // Edge tile: through a full tile in a local buffer.
                                let mut tmp = [0f32; MR * NR];
                                if beta_eff != 0.0 {
                                    for i in 0..mr {
                                        for j in 0..nr {
                                            tmp[i * NR + j] = *cp.add(i * ldc + j);
                                        }
                                    }
                                }
                                kernel(
                                    kc,
                                    apanel,
                                    bpanel,
                                    alpha,
                                    beta_eff,
                                    tmp.as_mut_ptr(),
                                    NR,
                                    Epilogue::NONE,
                                );
                                for i in 0..mr {
                                    for j in 0..nr {
                                        *cp.add(i * ldc + j) = epi.apply(tmp[i * NR + j], j);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    });
}

/// Packs rows `ic..ic + mc`, columns `pc..pc + kc` of A into panels of `MR` rows: panel
/// `r` holds `kc` groups of `MR` values (one per row), zero-padded past row `mc`.
unsafe fn pack_a(a: View, ic: usize, mc: usize, pc: usize, kc: usize, dst: *mut f32) {
    for ir in (0..mc).step_by(MR) {
        let mr = MR.min(mc - ir);
        let panel = dst.add(ir * kc);
        let base = a.ptr.add((ic + ir) * a.rs + pc * a.cs);
        if a.cs == 1 && mr == MR {
            // Row-major A: six row streams in, one contiguous stream out.
            let rows: [*const f32; MR] = std::array::from_fn(|i| base.add(i * a.rs));
            for p in 0..kc {
                let out = panel.add(p * MR);
                for (i, r) in rows.iter().enumerate() {
                    *out.add(i) = *r.add(p);
                }
            }
        } else {
            for p in 0..kc {
                let col = base.add(p * a.cs);
                for i in 0..mr {
                    *panel.add(p * MR + i) = *col.add(i * a.rs);
                }
            }
        }
        for i in mr..MR {
            for p in 0..kc {
                *panel.add(p * MR + i) = 0.0;
            }
        }
    }
}

/// Packs rows `pc..pc + kc`, columns `jc..jc + nc` of B into panels of `NR` columns:
/// panel `j` holds `kc` rows of `NR` values, zero-padded past column `nc`.
unsafe fn pack_b(b: View, pc: usize, kc: usize, jc: usize, nc: usize, dst: *mut f32) {
    for jr in (0..nc).step_by(NR) {
        let nr = NR.min(nc - jr);
        let panel = dst.add(jr * kc);
        let base = b.ptr.add(pc * b.rs + (jc + jr) * b.cs);
        if b.cs == 1 && nr == NR {
            for p in 0..kc {
                std::ptr::copy_nonoverlapping(base.add(p * b.rs), panel.add(p * NR), NR);
            }
            continue;
        }
        // B stored transposed, or the last, narrower panel: column by column.
        for j in 0..nr {
            let col = base.add(j * b.cs);
            for p in 0..kc {
                *panel.add(p * NR + j) = *col.add(p * b.rs);
            }
        }
        for j in nr..NR {
            for p in 0..kc {
                *panel.add(p * NR + j) = 0.0;
            }
        }
    }
}

/// `C[MR × NR] = epi(alpha·(A panel · B panel) + beta·C)` over `kc` steps.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)] // one tile's operands
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
    for i in 0..MR {
        _mm_prefetch::<_MM_HINT_T0>(c.add(i * ldc).cast());
        _mm_prefetch::<_MM_HINT_T0>(c.add(i * ldc + NR - 1).cast());
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
        bp = bp.add(NR);
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
