//! The blocked f32 product on one thread, generic over the register tile ([`Tile`]).
//!
//! Blocked in the usual way for a cache hierarchy: `B` is packed `KC` rows at a time into
//! panels `NR` columns wide, `A` `MC × KC` at a time into panels `MR` rows tall, and a
//! register-blocked micro-kernel multiplies one `A` panel by one `B` panel into an
//! `MR × NR` tile of `C`.
//!
//! Every element of `C` is the same sum in the same order whatever `m`, `n`, the tile it
//! lands in or the rows of a thread's block: the `k` dimension in blocks of `KC` (the
//! same for every tile), each block one chain of fused multiply-adds from zero in order
//! of `k`, scaled by `alpha` and added to `beta·C` (or to the previous blocks' sum) with
//! one more. Every tile does exactly this, so splitting a product across threads by rows
//! or columns never changes a result, and the AVX2 and AVX-512 tiles give equal bits.

use std::cell::RefCell;

/// Depth of one packed block; the same for every tile so that their sums agree.
pub(super) const KC: usize = 256;

/// One register tile: `MR × NR` of `C` from an `MR`-row panel of `A` and an `NR`-column
/// panel of `B`.
pub(super) trait Tile {
    /// Rows of the tile.
    const MR: usize;
    /// Columns of the tile.
    const NR: usize;
    /// Rows of A packed at once (a multiple of `MR`, `MC × KC` floats kept in L2).
    const MC: usize;
    /// Columns of B packed at once (a multiple of `NR`).
    const NC: usize;

    /// `C[MR × NR] = epi(alpha·(A panel · B panel) + beta·C)` over `kc` steps, where
    /// `C` has row stride `ldc`; when `beta == 0`, `C` is not read.
    ///
    /// # Safety
    /// The CPU has the tile's instructions; the panels hold `kc` packed steps (64-byte
    /// aligned); `C` addresses `MR` rows of `NR` writable floats; a non-null bias points
    /// at `NR` floats.
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
    );

    /// Packs `MR` full rows of a row-major `A` (the first at `a`, row stride `rs`), `kc`
    /// columns, into one panel (`kc` groups of `MR` values, one per row): in registers,
    /// `MR` rows of one vector at a time transposed into one group per column.
    ///
    /// # Safety
    /// The CPU has the tile's instructions; `a` addresses `MR` rows of `kc` floats and
    /// `dst` `kc · MR` writable floats.
    unsafe fn pack_rows(a: *const f32, rs: usize, kc: usize, dst: *mut f32);
}

/// A 64-byte aligned block of 16 floats, so packed panels start on a cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

/// Packing buffers of this thread, reused across calls.
struct Buffers {
    a: Vec<Line>,
    b: Vec<Line>,
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

    pub(super) fn is_none(&self) -> bool {
        self.bias.is_null() && !self.relu
    }

    /// The epilogue of the columns from `j` on.
    pub(super) unsafe fn at_col(self, j: usize) -> Epilogue {
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

fn lines(buf: &mut Vec<Line>, floats: usize) -> *mut f32 {
    let need = floats.div_ceil(16);
    if buf.len() < need {
        buf.resize(need, Line([0.0; 16]));
    }
    buf.as_mut_ptr().cast()
}

/// `C[m × n] = epi(alpha·A·B + beta·C)` (row stride `ldc`), with `A` `m × k` and `B`
/// `k × n`, through tile `K`. When `beta == 0`, `C` is not read.
///
/// # Safety
/// The CPU has `K`'s instructions; every element of `A`, `B` and `C` the shapes and
/// strides address must be valid, and `C` must not alias `A` or `B`.
#[allow(clippy::too_many_arguments)] // BLAS-style signature
pub(crate) unsafe fn sgemm<K: Tile>(
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
    let (mr_, nr_) = (K::MR, K::NR);
    BUFFERS.with(|bufs| {
        let bufs = &mut *bufs.borrow_mut();
        for jc in (0..n).step_by(K::NC) {
            let nc = K::NC.min(n - jc);
            let nc_pad = nc.div_ceil(nr_) * nr_;
            for pc in (0..k).step_by(KC) {
                let kc = KC.min(k - pc);
                let bp = lines(&mut bufs.b, nc_pad * kc);
                pack_b::<K>(b, pc, kc, jc, nc, bp);
                let beta_eff = if pc == 0 { beta } else { 1.0 };
                // The epilogue goes with the last block of the sum.
                let last = pc + kc == k;
                for ic in (0..m).step_by(K::MC) {
                    let mc = K::MC.min(m - ic);
                    let mc_pad = mc.div_ceil(mr_) * mr_;
                    let ap = lines(&mut bufs.a, mc_pad * kc);
                    pack_a::<K>(a, ic, mc, pc, kc, ap);
                    for jr in (0..nc).step_by(nr_) {
                        let nr = nr_.min(nc - jr);
                        let bpanel = bp.add(jr * kc);
                        let epi = if last {
                            epi.at_col(jc + jr)
                        } else {
                            Epilogue::NONE
                        };
                        for ir in (0..mc).step_by(mr_) {
                            let mr = mr_.min(mc - ir);
                            let cp = c.add((ic + ir) * ldc + jc + jr);
                            let apanel = ap.add(ir * kc);
                            if mr == mr_ && nr == nr_ {
                                K::kernel(kc, apanel, bpanel, alpha, beta_eff, cp, ldc, epi);
                            } else {
                                edge_tile::<K>(
                                    kc, apanel, bpanel, alpha, beta_eff, cp, ldc, epi, mr, nr,
                                );
                            }
                        }
                    }
                }
            }
        }
    });
}

/// A tile cut by the edge of `C` (`mr × nr` of it exist): computed as a full tile in a
/// local buffer, the same sums as a full tile, then copied out with the epilogue.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
unsafe fn edge_tile<K: Tile>(
    kc: usize,
    apanel: *const f32,
    bpanel: *const f32,
    alpha: f32,
    beta: f32,
    cp: *mut f32,
    ldc: usize,
    epi: Epilogue,
    mr: usize,
    nr: usize,
) {
    // The largest tile: 14 × 32 (AVX-512).
    let mut tmp = [0f32; 14 * 32];
    debug_assert!(K::MR * K::NR <= tmp.len());
    let w = K::NR;
    if beta != 0.0 {
        for i in 0..mr {
            for j in 0..nr {
                tmp[i * w + j] = *cp.add(i * ldc + j);
            }
        }
    }
    K::kernel(
        kc,
        apanel,
        bpanel,
        alpha,
        beta,
        tmp.as_mut_ptr(),
        w,
        Epilogue::NONE,
    );
    for i in 0..mr {
        for j in 0..nr {
            *cp.add(i * ldc + j) = epi.apply(tmp[i * w + j], j);
        }
    }
}

/// Packs rows `ic..ic + mc`, columns `pc..pc + kc` of A into panels of `K::MR` rows:
/// panel `r` holds `kc` groups of `MR` values (one per row), zero-padded past row `mc`.
unsafe fn pack_a<K: Tile>(a: View, ic: usize, mc: usize, pc: usize, kc: usize, dst: *mut f32) {
    for ir in (0..mc).step_by(K::MR) {
        let mr = K::MR.min(mc - ir);
        let panel = dst.add(ir * kc);
        let base = a.ptr.add((ic + ir) * a.rs + pc * a.cs);
        if a.cs == 1 && mr == K::MR {
            K::pack_rows(base, a.rs, kc, panel);
            continue;
        }
        for p in 0..kc {
            let col = base.add(p * a.cs);
            for i in 0..mr {
                *panel.add(p * K::MR + i) = *col.add(i * a.rs);
            }
        }
        for i in mr..K::MR {
            for p in 0..kc {
                *panel.add(p * K::MR + i) = 0.0;
            }
        }
    }
}

/// Packs rows `pc..pc + kc`, columns `jc..jc + nc` of B into panels of `nr` columns:
/// panel `j` holds `kc` rows of `nr` values, zero-padded past column `nc`.
unsafe fn pack_b<K: Tile>(b: View, pc: usize, kc: usize, jc: usize, nc: usize, dst: *mut f32) {
    let nr_ = K::NR;
    for jr in (0..nc).step_by(nr_) {
        let nr = nr_.min(nc - jr);
        let panel = dst.add(jr * kc);
        let base = b.ptr.add(pc * b.rs + (jc + jr) * b.cs);
        if b.cs == 1 && nr == nr_ {
            // Full panels: a copy of constant length per row, inlined as vector moves.
            for p in 0..kc {
                copy_row::<K>(base.add(p * b.rs), panel.add(p * nr_));
            }
        } else if b.cs == 1 {
            for p in 0..kc {
                std::ptr::copy_nonoverlapping(base.add(p * b.rs), panel.add(p * nr_), nr);
            }
        } else {
            // B stored transposed: column by column.
            for j in 0..nr {
                let col = base.add(j * b.cs);
                for p in 0..kc {
                    *panel.add(p * nr_ + j) = *col.add(p * b.rs);
                }
            }
        }
        if nr < nr_ {
            for p in 0..kc {
                for j in nr..nr_ {
                    *panel.add(p * nr_ + j) = 0.0;
                }
            }
        }
    }
}

/// Copies `K::NR` floats (a constant after monomorphisation, so no call to `memcpy`).
#[inline(always)]
unsafe fn copy_row<K: Tile>(src: *const f32, dst: *mut f32) {
    std::ptr::copy_nonoverlapping(src, dst, K::NR);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The packing of full row panels equals the element-by-element packing, for
    /// column counts below, at and past one vector.
    fn pack_rows_match<K: Tile>() {
        for (kc, rs) in [
            (1, 1),
            (5, 7),
            (8, 8),
            (16, 16),
            (17, 20),
            (61, 61),
            (206, 206),
            (256, 300),
        ] {
            let a: Vec<f32> = (0..K::MR * rs).map(|v| v as f32 * 0.5 - 3.0).collect();
            let mut got = vec![f32::NAN; kc * K::MR + 16];
            // SAFETY: the caller checked the CPU; the buffers hold the shapes.
            unsafe { K::pack_rows(a.as_ptr(), rs, kc, got.as_mut_ptr()) };
            for p in 0..kc {
                for i in 0..K::MR {
                    assert_eq!(
                        got[p * K::MR + i],
                        a[i * rs + p],
                        "kc {kc} column {p} row {i}"
                    );
                }
            }
            assert!(
                got[kc * K::MR..].iter().all(|v| v.is_nan()),
                "kc {kc}: wrote past the panel"
            );
        }
    }

    #[test]
    fn avx2_packs_rows_as_element_by_element() {
        if !mfh_cpu::supported().contains(&mfh_cpu::Path::Avx2) {
            println!("SKIPPED: no AVX2 path ({})", mfh_cpu::describe());
            return;
        }
        pack_rows_match::<super::super::avx2::Avx2>();
    }

    #[test]
    fn avx512_packs_rows_as_element_by_element() {
        if !mfh_cpu::supported().contains(&mfh_cpu::Path::Avx512) {
            println!("SKIPPED: no AVX-512 path ({})", mfh_cpu::describe());
            return;
        }
        pack_rows_match::<super::super::avx512::Avx512>();
    }
}
