//! The row-wise elementwise loops the layers share (bias, ReLU, column sums, dot
//! products) and the threads they, the gated sums and the products run on. Each f32 loop runs in the
//! version compiled for the CPU's instruction set ([`mfh_cpu::dispatch`]); every version
//! gives the same bits.
//!
//! Not here: the matrix product ([`crate::product`]); gated sums of expert outputs
//! ([`crate::gated_sum`]); row gathers ([`crate::rows`]); softmax, batch norm and Adam,
//! next to their layers.
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
    /// Set while this thread runs inside [`serial`] (1) or [`with_threads`] (n): the
    /// product thread count of its kernels; 0 = the process-global count.
    static LOCAL: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The number of threads the matrix products use on this thread (1 inside [`serial`]).
pub fn threads() -> usize {
    match LOCAL.with(|s| s.get()) {
        0 => THREADS.load(Ordering::Relaxed),
        n => n,
    }
}

/// Runs `f` with every kernel it calls on this thread unthreaded: for callers that
/// already run several kernels side by side on their own threads.
pub fn serial<R>(f: impl FnOnce() -> R) -> R {
    with_threads(1, f)
}

/// Runs `f` with the kernels it calls on this thread splitting their work `n` ways
/// (on the rayon pool `f` runs in: a server's scorer installs its own pool of `n`
/// threads), whatever the process-global count.
pub fn with_threads<R>(n: usize, f: impl FnOnce() -> R) -> R {
    /// Restores the count even if `f` unwinds.
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            LOCAL.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(LOCAL.with(|s| s.replace(n.max(1))));
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
pub(crate) fn row_blocks(n: usize, w: usize) -> Option<usize> {
    let t = threads();
    (t > 1 && n >= 2 && n * w >= PAR_MIN_ELEMS).then(|| n.div_ceil(t))
}

/// Runs `f(first_row, rows, block)` over blocks of whole rows of the strided matrix
/// `data` (`n` rows of width `w`, stride `ld`), in parallel when large enough. Each row
/// is handled by exactly one call, so results do not depend on the split.
pub(crate) fn for_row_blocks<T: Send>(
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

/// A raw base pointer that worker threads may share; each writes a disjoint range.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut<T>(pub(crate) *mut T);
// SAFETY: only used by the fused kernels (here and in `gated_sum`), whose workers write disjoint row blocks
// of buffers that are uniquely borrowed for the whole call.
unsafe impl<T> Send for SharedMut<T> {}
unsafe impl<T> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper).
    pub(crate) fn ptr(self) -> *mut T {
        self.0
    }
}

/// Runs `f(first_row, rows)` over blocks of `n` rows (`w` elements each) on the product
/// threads, or once over all rows when the work is small.
pub(crate) fn for_row_ranges(n: usize, w: usize, f: impl Fn(usize, usize) + Sync) {
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
