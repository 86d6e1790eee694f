//! The row-wise elementwise loops the layers share (bias, ReLU, column sums, gated sums,
//! dot products) and the threads they and the products run on. Each f32 loop runs in the
//! version compiled for the CPU's instruction set ([`mfh_cpu::dispatch`]); every version
//! gives the same bits.
//!
//! Not here: the matrix product ([`crate::product`]); softmax, batch norm and Adam, next
//! to their layers.
//!
//! All matrices are row-major with an explicit row stride ("leading dimension"), which
//! lets layers work on column blocks of a wider buffer (one expert inside an expert bank)
//! without copies.
//!
//! Threads and determinism: products split their output over the threads as
//! [`crate::product`] describes. The larger elementwise kernels split whole rows (or,
//! for column sums, whole columns) across the same threads, so each element is still
//! computed by one thread in a fixed order and results stay reproducible.

use crate::Float;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Threads the matrix products use; 1 means no rayon at all.
static THREADS: AtomicUsize = AtomicUsize::new(1);

/// Sets the process-global number of threads used by the matrix products (default 1).
pub fn set_threads(n: usize) {
    THREADS.store(n.max(1), Ordering::Relaxed);
}

thread_local! {
    /// Set while this thread runs inside [`serial`]: its kernels use one thread.
    static SERIAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The number of threads the matrix products use on this thread (1 inside [`serial`]).
pub fn threads() -> usize {
    if SERIAL.with(|s| s.get()) {
        1
    } else {
        THREADS.load(Ordering::Relaxed)
    }
}

/// Runs `f` with every kernel it calls on this thread unthreaded: for callers that
/// already split their work across the threads (one network replica per thread).
pub fn serial<R>(f: impl FnOnce() -> R) -> R {
    /// Restores the flag even if `f` unwinds.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            SERIAL.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(SERIAL.with(|s| s.replace(true)));
    f()
}

/// Builds rayon's global pool with `n` threads (the products schedule on it).
/// Does nothing when the pool already exists, whoever built it.
pub fn init_thread_pool(n: usize) {
    // An error only means the global pool was initialised before; that pool is kept.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n.max(1))
        .build_global();
}

/// A command's compute threads: rayon's global pool with `n` threads (if no pool exists
/// yet) and `n` product threads ([`set_threads`]).
pub fn use_threads(n: usize) {
    init_thread_pool(n);
    set_threads(n);
}

/// Below this many elements an elementwise kernel runs on one thread.
const PAR_MIN_ELEMS: usize = 1 << 16;

/// Rows per block when `n` rows of `w` elements are split over the product threads, or
/// `None` when the work is too small to be worth a fork/join.
fn row_blocks(n: usize, w: usize) -> Option<usize> {
    let t = threads();
    (t > 1 && n >= 2 && n * w >= PAR_MIN_ELEMS).then(|| n.div_ceil(t))
}

/// Runs `f(first_row, rows, block)` over blocks of whole rows of the strided matrix
/// `data` (`n` rows of width `w`, stride `ld`), in parallel when large enough. Each row
/// is handled by exactly one call, so results do not depend on the split.
fn for_row_blocks<T: Send>(
    data: &mut [T],
    ld: usize,
    n: usize,
    w: usize,
    f: impl Fn(usize, usize, &mut [T]) + Sync,
) {
    let data = &mut data[..span(n, w, ld)];
    match row_blocks(n, w) {
        Some(chunk) if ld > 0 => {
            use rayon::prelude::*;
            data.par_chunks_mut(chunk * ld)
                .enumerate()
                .for_each(|(b, c)| {
                    let lo = b * chunk;
                    f(lo, chunk.min(n - lo), c)
                });
        }
        _ => f(0, n, data),
    }
}

/// Elements a row-major `rows × cols` matrix with row stride `ld` spans.
pub(crate) fn span(rows: usize, cols: usize, ld: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * ld + cols
    }
}

/// `y[i, :] = act(y[i, :] + bias)` for `n` rows of width `bias.len()` at stride `ldy`.
pub fn bias_act_rows<T: Float>(y: &mut [T], ldy: usize, n: usize, bias: &[T], relu: bool) {
    let w = bias.len();
    if n == 0 || w == 0 {
        return;
    }
    let path = mfh_cpu::path();
    for_row_blocks(y, ldy, n, w, |_, rows, y| {
        mfh_cpu::dispatch!(path, bias_act_block(y, ldy, rows, bias, relu))
    });
}

#[inline(always)]
fn bias_act_block<T: Float>(y: &mut [T], ldy: usize, n: usize, bias: &[T], relu: bool) {
    let w = bias.len();
    for i in 0..n {
        let row = &mut y[i * ldy..i * ldy + w];
        if relu {
            for (v, &b) in row.iter_mut().zip(bias) {
                *v = (*v + b).max(T::zero());
            }
        } else {
            for (v, &b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        }
    }
}

/// Zeroes `dy` wherever the ReLU output `y` is not positive (`n` rows of width `w`).
pub fn relu_mask_rows<T: Float>(
    dy: &mut [T],
    lddy: usize,
    y: &[T],
    ldy: usize,
    n: usize,
    w: usize,
) {
    if n == 0 || w == 0 {
        return;
    }
    assert!(y.len() >= span(n, w, ldy), "relu_mask_rows: y too short");
    let path = mfh_cpu::path();
    for_row_blocks(dy, lddy, n, w, |lo, rows, dy| {
        mfh_cpu::dispatch!(
            path,
            relu_mask_block(dy, lddy, &y[lo * ldy..], ldy, rows, w)
        )
    });
}

#[inline(always)]
fn relu_mask_block<T: Float>(dy: &mut [T], lddy: usize, y: &[T], ldy: usize, n: usize, w: usize) {
    for i in 0..n {
        let d = &mut dy[i * lddy..i * lddy + w];
        let yr = &y[i * ldy..i * ldy + w];
        for (dv, &yv) in d.iter_mut().zip(yr) {
            // A select rather than a branch, so the loop vectorises.
            *dv = if yv > T::zero() { *dv } else { T::zero() };
        }
    }
}

/// `acc[j] += Σ_i m[i, j]` over `n` rows of width `acc.len()` at stride `ld`.
pub fn col_sums_acc<T: Float>(acc: &mut [T], m: &[T], ld: usize, n: usize) {
    let w = acc.len();
    if n == 0 || w == 0 {
        return;
    }
    assert!(m.len() >= span(n, w, ld), "col_sums_acc: m too short");
    let path = mfh_cpu::path();
    // Split by columns: every column is still summed over all rows in row order.
    match row_blocks(w, n) {
        Some(chunk) if w >= 64 => {
            use rayon::prelude::*;
            let chunk = chunk.div_ceil(16) * 16;
            acc.par_chunks_mut(chunk).enumerate().for_each(|(b, a)| {
                mfh_cpu::dispatch!(path, col_sums_block(a, &m[b * chunk..], ld, n))
            });
        }
        _ => mfh_cpu::dispatch!(path, col_sums_block(acc, m, ld, n)),
    }
}

#[inline(always)]
fn col_sums_block<T: Float>(acc: &mut [T], m: &[T], ld: usize, n: usize) {
    let w = acc.len();
    for i in 0..n {
        for (a, &v) in acc.iter_mut().zip(&m[i * ld..i * ld + w]) {
            *a += v;
        }
    }
}

/// Dot product with eight independent partial sums: a single running sum is a serial
/// dependency chain the compiler may not reorder (and so cannot vectorise). The fixed
/// lane assignment keeps the result deterministic.
#[inline]
pub fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    let len = a.len().min(b.len());
    let (a, b) = (&a[..len], &b[..len]);
    let mut lanes = [T::zero(); 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    let mut tail = T::zero();
    for (&x, &y) in ar.iter().zip(br) {
        tail += x * y;
    }
    let s = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
        + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
    s + tail
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
            gated_sum_forward_block(&g[lo * e..], &x[lo * e * d..], rows, e, d, out)
        )
    });
}

#[inline(always)]
fn gated_sum_forward_block<T: Float>(
    g: &[T],
    x: &[T],
    n: usize,
    e: usize,
    d: usize,
    out: &mut [T],
) {
    for i in 0..n {
        let o = &mut out[i * d..(i + 1) * d];
        o.fill(T::zero());
        let xr = &x[i * e * d..(i + 1) * e * d];
        for (j, &gv) in g[i * e..(i + 1) * e].iter().enumerate() {
            for (ov, &xv) in o.iter_mut().zip(&xr[j * d..(j + 1) * d]) {
                *ov += gv * xv;
            }
        }
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
    match row_blocks(n, e * d) {
        Some(chunk) if d > 0 => {
            use rayon::prelude::*;
            dg.par_chunks_mut(chunk * e)
                .zip(dx.par_chunks_mut(chunk * e * d))
                .enumerate()
                .for_each(|(b, (dg, dx))| {
                    let lo = b * chunk;
                    let rows = chunk.min(n - lo);
                    mfh_cpu::dispatch!(
                        path,
                        gated_sum_backward_block(
                            &g[lo * e..],
                            &x[lo * e * d..],
                            &dout[lo * d..],
                            rows,
                            e,
                            d,
                            dg,
                            dx,
                        )
                    )
                });
        }
        _ => mfh_cpu::dispatch!(path, gated_sum_backward_block(g, x, dout, n, e, d, dg, dx)),
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn gated_sum_backward_block<T: Float>(
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
        let dor = &dout[i * d..(i + 1) * d];
        let xr = &x[i * e * d..(i + 1) * e * d];
        let dxr = &mut dx[i * e * d..(i + 1) * e * d];
        for j in 0..e {
            let gv = g[i * e + j];
            dg[i * e + j] += dot(dor, &xr[j * d..(j + 1) * d]);
            for (dxv, &dv) in dxr[j * d..(j + 1) * d].iter_mut().zip(dor) {
                *dxv += gv * dv;
            }
        }
    }
}

/// A raw base pointer that worker threads may share; each writes a disjoint range.
#[derive(Clone, Copy)]
struct SharedMut<T>(*mut T);
// SAFETY: only used by the fused kernels below, whose workers write disjoint row blocks
// of buffers that are uniquely borrowed for the whole call.
unsafe impl<T> Send for SharedMut<T> {}
unsafe impl<T> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper).
    fn ptr(self) -> *mut T {
        self.0
    }
}

/// Runs `f(first_row, rows)` over blocks of `n` rows (`w` elements each) on the product
/// threads, or once over all rows when the work is small.
fn for_row_ranges(n: usize, w: usize, f: impl Fn(usize, usize) + Sync) {
    match row_blocks(n, w) {
        Some(chunk) => {
            use rayon::prelude::*;
            let blocks = n.div_ceil(chunk);
            (0..blocks).into_par_iter().for_each(|b| {
                let lo = b * chunk;
                f(lo, chunk.min(n - lo))
            });
        }
        None => f(0, n),
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
        mfh_cpu::dispatch!(
            path,
            gated_sums_forward_rows(g, gs, x, e, d, &ptrs, lo, rows)
        )
    });
}

/// Rows `lo..lo + rows` of [`gated_sums_forward`]: row by row, every output in turn, so
/// a row of x is read from memory once. The outputs' rows must be this call's alone.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn gated_sums_forward_rows<T: Float>(
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
        for (kk, p) in outs.iter().enumerate() {
            // SAFETY: the caller hands this call rows lo..lo+rows of every output.
            let out = unsafe { std::slice::from_raw_parts_mut(p.ptr().add(i * d), d) };
            gated_sum_forward_block(&g[kk * gs + i * e..], &x[i * e * d..], 1, e, d, out);
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
            gated_sums_backward_rows(g, gs, x, douts, e, d, dgp, dxb, lo, rows)
        )
    });
}

/// Rows `lo..lo + rows` of [`gated_sums_backward`], with `dxb` those rows of dx; the
/// same rows of every gate's block of `dgp` must be this call's alone.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn gated_sums_backward_rows<T: Float>(
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
            let dor = &dout[(lo + i) * d..(lo + i + 1) * d];
            let base = kk * gs + (lo + i) * e;
            for j in 0..e {
                let gv = g[base + j];
                let dgv = dot(dor, &xr[j * d..(j + 1) * d]);
                // SAFETY: element (kk, lo + i, j) of dg is owned by this block.
                unsafe { *dgp.ptr().add(base + j) = dgv };
                for (dxv, &dv) in dxr[j * d..(j + 1) * d].iter_mut().zip(dor) {
                    *dxv += gv * dv;
                }
            }
        }
    }
}

/// [`relu_mask_rows`] (when `relu`) and [`col_sums_acc`] of the masked `dy` in one pass:
/// `acc[c] += Σ_i dy'[i, c]`. Split by columns, so every column is summed over all rows
/// in row order and the results equal the two separate kernels' exactly.
pub fn relu_mask_col_sums<T: Float>(
    dy: &mut [T],
    lddy: usize,
    y: &[T],
    ldy: usize,
    n: usize,
    relu: bool,
    acc: &mut [T],
) {
    let w = acc.len();
    if n == 0 || w == 0 {
        return;
    }
    assert!(
        dy.len() >= span(n, w, lddy),
        "relu_mask_col_sums: dy too short"
    );
    assert!(
        !relu || y.len() >= span(n, w, ldy),
        "relu_mask_col_sums: y too short"
    );
    let dyp = SharedMut(dy.as_mut_ptr());
    let path = mfh_cpu::path();
    // SAFETY (of each block): columns c0..c0+cw of every row belong to that block alone,
    // inside the asserted extent of dy.
    let block = |c0: usize, acc: &mut [T]| {
        mfh_cpu::dispatch!(
            path,
            relu_mask_col_sums_block(dyp, lddy, y, ldy, n, relu, c0, acc)
        )
    };
    match row_blocks(w, n) {
        Some(chunk) if w >= 64 => {
            use rayon::prelude::*;
            let chunk = chunk.div_ceil(16) * 16;
            acc.par_chunks_mut(chunk)
                .enumerate()
                .for_each(|(b, a)| block(b * chunk, a));
        }
        _ => block(0, acc),
    }
}

/// Columns `c0..c0 + acc.len()` of [`relu_mask_col_sums`]; those columns of every row of
/// `dyp` must be this call's alone.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn relu_mask_col_sums_block<T: Float>(
    dyp: SharedMut<T>,
    lddy: usize,
    y: &[T],
    ldy: usize,
    n: usize,
    relu: bool,
    c0: usize,
    acc: &mut [T],
) {
    let cw = acc.len();
    for i in 0..n {
        // SAFETY: see the caller: these columns of row i are this call's alone.
        let d = unsafe { std::slice::from_raw_parts_mut(dyp.ptr().add(i * lddy + c0), cw) };
        if relu {
            let yr = &y[i * ldy + c0..i * ldy + c0 + cw];
            for ((dv, &yv), a) in d.iter_mut().zip(yr).zip(acc.iter_mut()) {
                let v = if yv > T::zero() { *dv } else { T::zero() };
                *dv = v;
                *a += v;
            }
        } else {
            for (&dv, a) in d.iter().zip(acc.iter_mut()) {
                *a += dv;
            }
        }
    }
}
