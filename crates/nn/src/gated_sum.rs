//! Gated sums of expert outputs, `out[i] = Σ_j g[i, j] · expert_j(i)`, and their backward:
//! the mixing step of every mixture-of-experts switcher (MMoE, CGC, PLE levels). One row
//! loop (`sum_row`, `sum_row_backward`) does the arithmetic for every layout, so each
//! output element is summed over the experts in member order whichever entry point runs it.
//!
//! Layouts: [`gated_sum_forward`] reads the experts side by side in one buffer (an
//! [`crate::ExpertBank`]'s output, `n × e·d`); [`gated_sums_forward`] runs K gates over
//! such a buffer in one pass; [`gated_sum_banks_forward`] reads each gate weight's expert
//! from one of several banks ([`Bank`], [`Slot`]), a bank possibly computed on other rows
//! than the sum's (cell routing: a bank over all rows read at the sum's rows).
//!
//! Threads: the one-buffer kernels split whole rows over the product threads (see
//! [`crate::kernels`]), so results do not depend on the thread count; the bank kernels
//! run on the calling thread.

use crate::kernels::{dot, for_row_blocks, for_row_ranges, row_blocks, SharedMut};
use crate::Float;

/// One bank of experts a gated sum reads: `experts` outputs of width d side by side, one
/// row of `experts · d` per bank row. Row i of the sum reads bank row `rows[i]` (row i
/// when `rows` is `None`).
#[derive(Clone, Copy, Debug)]
pub struct Bank<'a, T> {
    pub out: &'a [T],
    pub experts: usize,
    pub rows: Option<&'a [usize]>,
}

/// The expert behind one gate weight: expert `expert` of bank `bank`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub bank: usize,
    pub expert: usize,
}

/// One row of a gated sum: `o = Σ_j g[j] · x(j)`, with `x(j)` the row (width `o.len()`)
/// of gate weight j's expert, summed in order of j.
#[inline(always)]
fn sum_row<'a, T: Float>(g: &[T], x: impl Fn(usize) -> &'a [T], o: &mut [T]) {
    // Indexed loops over slices cut to one length: they inline into the callers'
    // per-path copies (`Zip::new` called out of them was 4 % of one-user MFH scoring).
    let d = o.len();
    for v in o.iter_mut() {
        *v = T::zero();
    }
    for (j, &gv) in g.iter().enumerate() {
        let xr = &x(j)[..d];
        for c in 0..d {
            o[c] += gv * xr[c];
        }
    }
}

/// Backward of [`sum_row`], accumulating `dg[j] += ⟨dout, x_j⟩` and `dx_j += g[j]·dout`,
/// for each j in order; expert j's row is at `at(j) = (buffer, offset)`, in `x(buffer)`
/// and `dxs[buffer]`.
#[inline(always)]
fn sum_row_backward<'a, T: Float, D: AsMut<[T]>>(
    g: &[T],
    dout: &[T],
    at: impl Fn(usize) -> (usize, usize),
    x: impl Fn(usize) -> &'a [T],
    dg: &mut [T],
    dxs: &mut [D],
) {
    let d = dout.len();
    for (j, &gv) in g.iter().enumerate() {
        let (b, a) = at(j);
        dg[j] += dot(dout, &x(b)[a..a + d]);
        let dxr = &mut dxs[b].as_mut()[a..a + d];
        for c in 0..d {
            dxr[c] += gv * dout[c];
        }
    }
}

/// Gated sum of expert outputs: `out[i, c] = Σ_j g[i, j] · x[i, j·d + c]`.
///
/// Shapes: `g` n × e, `x` n × (e·d), `out` n × d (overwritten).
pub fn gated_sum_forward<T: Float>(g: &[T], x: &[T], n: usize, e: usize, d: usize, out: &mut [T]) {
    assert!(g.len() >= n * e && x.len() >= n * e * d && out.len() >= n * d);
    if n == 0 || d == 0 {
        return;
    }
    let path = mfh_cpu::path();
    for_row_blocks(out, d, n, d, |lo, rows, out| {
        mfh_cpu::dispatch!(
            path,
            forward_rows(&g[lo * e..], &x[lo * e * d..], rows, e, d, out)
        )
    });
}

/// Rows `0..n` of [`gated_sum_forward`] over the given blocks of `g`, `x` and `out`.
#[inline(always)]
fn forward_rows<T: Float>(g: &[T], x: &[T], n: usize, e: usize, d: usize, out: &mut [T]) {
    for i in 0..n {
        let xr = &x[i * e * d..(i + 1) * e * d];
        let expert = |j: usize| &xr[j * d..(j + 1) * d];
        sum_row(&g[i * e..(i + 1) * e], expert, &mut out[i * d..(i + 1) * d]);
    }
}

/// Backward of [`gated_sum_forward`], accumulating: `dg[i, j] += Σ_c dout[i, c]·x[i, j·d + c]`
/// and `dx[i, j·d + c] += g[i, j]·dout[i, c]`.
#[allow(clippy::too_many_arguments)] // mirrors the forward's shapes plus two gradients
pub fn gated_sum_backward<T: Float>(
    g: &[T],
    x: &[T],
    dout: &[T],
    n: usize,
    e: usize,
    d: usize,
    dg: &mut [T],
    dx: &mut [T],
) {
    assert!(g.len() >= n * e && x.len() >= n * e * d && dout.len() >= n * d);
    assert!(dg.len() >= n * e && dx.len() >= n * e * d);
    if n == 0 || e == 0 {
        return;
    }
    let (dg, dx) = (&mut dg[..n * e], &mut dx[..n * e * d]);
    let path = mfh_cpu::path();
    let block = |lo: usize, rows: usize, dg: &mut [T], dx: &mut [T]| {
        let (g, x, dout) = (&g[lo * e..], &x[lo * e * d..], &dout[lo * d..]);
        mfh_cpu::dispatch!(path, backward_rows(g, x, dout, rows, e, d, dg, dx))
    };
    match row_blocks(n, e * d) {
        Some(chunk) if d > 0 => {
            use rayon::prelude::*;
            dg.par_chunks_mut(chunk * e)
                .zip(dx.par_chunks_mut(chunk * e * d))
                .enumerate()
                .for_each(|(b, (dg, dx))| {
                    let lo = b * chunk;
                    block(lo, chunk.min(n - lo), dg, dx)
                });
        }
        _ => block(0, n, dg, dx),
    }
}

/// Rows `0..n` of [`gated_sum_backward`] over the given blocks of its buffers.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn backward_rows<T: Float>(
    g: &[T],
    x: &[T],
    dout: &[T],
    n: usize,
    e: usize,
    d: usize,
    dg: &mut [T],
    dx: &mut [T],
) {
    for i in 0..n {
        let xr = &x[i * e * d..(i + 1) * e * d];
        let dxr = &mut dx[i * e * d..(i + 1) * e * d];
        sum_row_backward(
            &g[i * e..(i + 1) * e],
            &dout[i * d..(i + 1) * d],
            |j| (0, j * d),
            |_| xr,
            &mut dg[i * e..(i + 1) * e],
            &mut [dxr],
        );
    }
}

/// [`gated_sum_forward`] for K gates over the same experts in one pass over `x`:
/// `outs[k][i, c] = Σ_j g[k·gs + i·e + j] · x[i, j·d + c]` (gate k's weights are the
/// `n × e` block at offset `k·gs` of `g`). Each output is computed exactly as
/// [`gated_sum_forward`] computes it, so results are identical.
pub fn gated_sums_forward<T: Float>(
    g: &[T],
    gs: usize,
    x: &[T],
    n: usize,
    e: usize,
    d: usize,
    outs: &mut [Vec<T>],
) {
    let k = outs.len();
    if n == 0 || d == 0 || k == 0 {
        return;
    }
    assert!(gs >= n * e && g.len() >= (k - 1) * gs + n * e && x.len() >= n * e * d);
    assert!(
        outs.iter().all(|o| o.len() >= n * d),
        "gated_sums_forward: short output"
    );
    let ptrs: Vec<SharedMut<T>> = outs.iter_mut().map(|o| SharedMut(o.as_mut_ptr())).collect();
    let path = mfh_cpu::path();
    for_row_ranges(n, k * d, |lo, rows| {
        // Rows lo..lo+rows of every output belong to this block alone, and each buffer
        // holds at least n·d elements (asserted above): what the rows function requires.
        mfh_cpu::dispatch!(path, sums_forward_rows(g, gs, x, e, d, &ptrs, lo, rows))
    });
}

/// Rows `lo..lo + rows` of [`gated_sums_forward`]: row by row, every output in turn, so
/// a row of x is read from memory once. The outputs' rows must be this call's alone.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn sums_forward_rows<T: Float>(
    g: &[T],
    gs: usize,
    x: &[T],
    e: usize,
    d: usize,
    outs: &[SharedMut<T>],
    lo: usize,
    rows: usize,
) {
    for i in lo..lo + rows {
        let xr = &x[i * e * d..(i + 1) * e * d];
        let expert = |j: usize| &xr[j * d..(j + 1) * d];
        for (kk, p) in outs.iter().enumerate() {
            // SAFETY: the caller hands this call rows lo..lo+rows of every output.
            let out = unsafe { std::slice::from_raw_parts_mut(p.ptr().add(i * d), d) };
            sum_row(&g[kk * gs + i * e..kk * gs + (i + 1) * e], expert, out);
        }
    }
}

/// Backward of [`gated_sums_forward`], overwriting both gradients:
/// `dg[k·gs + i·e + j] = Σ_c douts[k][i, c]·x[i, j·d + c]` and
/// `dx[i, j·d + c] = Σ_k g[k·gs + i·e + j]·douts[k][i, c]` (summed over k in order, as
/// K calls of [`gated_sum_backward`] into zeroed buffers would, so results are identical).
#[allow(clippy::too_many_arguments)] // mirrors the forward's shapes plus two gradients
pub fn gated_sums_backward<T: Float>(
    g: &[T],
    gs: usize,
    x: &[T],
    douts: &[Vec<T>],
    n: usize,
    e: usize,
    d: usize,
    dg: &mut [T],
    dx: &mut [T],
) {
    let k = douts.len();
    if n == 0 || e == 0 || k == 0 {
        return;
    }
    assert!(gs >= n * e && g.len() >= (k - 1) * gs + n * e && x.len() >= n * e * d);
    assert!(dg.len() >= (k - 1) * gs + n * e && dx.len() >= n * e * d);
    assert!(
        douts.iter().all(|o| o.len() >= n * d),
        "gated_sums_backward: short gradient"
    );
    let (dgp, dxp) = (SharedMut(dg.as_mut_ptr()), SharedMut(dx.as_mut_ptr()));
    let path = mfh_cpu::path();
    for_row_ranges(n, e * d, |lo, rows| {
        // SAFETY: this block alone owns rows lo..lo+rows of dx and of every gate's dg
        // block; the extents were asserted above.
        let dxb =
            unsafe { std::slice::from_raw_parts_mut(dxp.ptr().add(lo * e * d), rows * e * d) };
        mfh_cpu::dispatch!(
            path,
            sums_backward_rows(g, gs, x, douts, e, d, dgp, dxb, lo, rows)
        )
    });
}

/// Rows `lo..lo + rows` of [`gated_sums_backward`], with `dxb` those rows of dx; the
/// same rows of every gate's block of `dgp` must be this call's alone.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn sums_backward_rows<T: Float>(
    g: &[T],
    gs: usize,
    x: &[T],
    douts: &[Vec<T>],
    e: usize,
    d: usize,
    dgp: SharedMut<T>,
    dxb: &mut [T],
    lo: usize,
    rows: usize,
) {
    for i in 0..rows {
        let xr = &x[(lo + i) * e * d..(lo + i + 1) * e * d];
        let dxr = &mut dxb[i * e * d..(i + 1) * e * d];
        dxr.fill(T::zero());
        for (kk, dout) in douts.iter().enumerate() {
            let base = kk * gs + (lo + i) * e;
            // SAFETY: elements (kk, lo + i, ..e) of dg are owned by this block.
            let dg = unsafe { std::slice::from_raw_parts_mut(dgp.ptr().add(base), e) };
            dg.fill(T::zero());
            sum_row_backward(
                &g[base..base + e],
                &dout[(lo + i) * d..(lo + i + 1) * d],
                |j| (0, j * d),
                |_| xr,
                dg,
                &mut [&mut *dxr],
            );
        }
    }
}

/// Gated sum over experts spread across banks: `out[i, :] = Σ_j g[i, j] · expert_{members[j]}`
/// at row i (see [`Bank`] for the bank row it reads). Shapes: `g` n × members.len(),
/// `out` n × d (overwritten).
pub fn gated_sum_banks_forward<T: Float>(
    g: &[T],
    banks: &[Bank<'_, T>],
    members: &[Slot],
    n: usize,
    d: usize,
    out: &mut [T],
) {
    let m = members.len();
    assert!(g.len() >= n * m && out.len() >= n * d);
    let path = mfh_cpu::path();
    mfh_cpu::dispatch!(path, banks_forward_rows(g, banks, members, n, d, out))
}

/// Where row i of the sum finds expert `s` in its bank.
#[inline(always)]
fn bank_at<T>(banks: &[Bank<'_, T>], s: Slot, i: usize, d: usize) -> usize {
    let b = &banks[s.bank];
    let r = b.rows.map_or(i, |rows| rows[i]);
    (r * b.experts + s.expert) * d
}

#[inline(always)]
fn banks_forward_rows<T: Float>(
    g: &[T],
    banks: &[Bank<'_, T>],
    members: &[Slot],
    n: usize,
    d: usize,
    out: &mut [T],
) {
    let m = members.len();
    for i in 0..n {
        let expert = |j: usize| {
            let s = members[j];
            let at = bank_at(banks, s, i, d);
            &banks[s.bank].out[at..at + d]
        };
        sum_row(&g[i * m..(i + 1) * m], expert, &mut out[i * d..(i + 1) * d]);
    }
}

/// Backward of [`gated_sum_banks_forward`], accumulating `dg` (n × members.len()) and the
/// experts' output gradients in `d_banks` (one per bank, in the bank's layout and rows).
#[allow(clippy::too_many_arguments)] // mirrors the forward's shapes plus two gradients
pub fn gated_sum_banks_backward<T: Float>(
    g: &[T],
    banks: &[Bank<'_, T>],
    members: &[Slot],
    dout: &[T],
    n: usize,
    d: usize,
    dg: &mut [T],
    d_banks: &mut [Vec<T>],
) {
    let m = members.len();
    assert!(g.len() >= n * m && dg.len() >= n * m && dout.len() >= n * d);
    assert!(
        d_banks.len() >= banks.len(),
        "gated_sum_banks_backward: a gradient per bank"
    );
    let path = mfh_cpu::path();
    mfh_cpu::dispatch!(
        path,
        banks_backward_rows(g, banks, members, dout, n, d, dg, d_banks)
    )
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn banks_backward_rows<T: Float>(
    g: &[T],
    banks: &[Bank<'_, T>],
    members: &[Slot],
    dout: &[T],
    n: usize,
    d: usize,
    dg: &mut [T],
    d_banks: &mut [Vec<T>],
) {
    let m = members.len();
    for i in 0..n {
        sum_row_backward(
            &g[i * m..(i + 1) * m],
            &dout[i * d..(i + 1) * d],
            |j| (members[j].bank, bank_at(banks, members[j], i, d)),
            |b| banks[b].out,
            &mut dg[i * m..(i + 1) * m],
            d_banks,
        );
    }
}
