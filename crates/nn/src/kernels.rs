//! Numerical kernels: the matrix product (the own f32 kernel of [`crate::sgemm`] on
//! CPUs with AVX2 and FMA, the `gemm` crate for f64 and elsewhere), plus the row-wise
//! elementwise loops (bias, ReLU, softmax, gated sums, batch-norm statistics, Adam) the
//! layers share.
//!
//! All matrices are row-major with an explicit row stride ("leading dimension"), which
//! lets layers work on column blocks of a wider buffer (one expert inside an expert bank)
//! without copies.
//!
//! Threads and determinism: with `threads() > 1` a product is split into one block of
//! output rows (or columns) per thread, each computed by an unthreaded product over the
//! whole reduction (k) dimension. No element's sum is ever split across threads, so with
//! a fixed thread count results are bit-for-bit reproducible (with the own f32 kernel a
//! row's result does not even depend on the split). (gemm's own rayon mode only splits
//! output tiles too, but measured about half as fast on the MMoE shapes.)
//! The larger elementwise kernels split whole rows (or, for column sums, whole columns)
//! across the same threads, so each element is still computed by one thread in a fixed
//! order and results stay reproducible.

use crate::Float;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Threads the matrix products use; 1 means no rayon at all.
static THREADS: AtomicUsize = AtomicUsize::new(1);

/// Below this many multiply-adds a product runs on one thread: fork/join would cost
/// more than it saves.
const PAR_MIN_WORK: usize = 1 << 18;

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
fn span(rows: usize, cols: usize, ld: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * ld + cols
    }
}

/// Raw operands of one product (strides in elements), shareable with worker threads.
#[derive(Clone, Copy)]
struct Operands<T> {
    a: *const T,
    a_cs: usize,
    a_rs: usize,
    b: *const T,
    b_cs: usize,
    b_rs: usize,
    c: *mut T,
    ldc: usize,
    /// Added to each row of the result when not null (`n` values), then ReLU if `relu`.
    bias: *const T,
    relu: bool,
}

// SAFETY: the pointers are only dereferenced during the `matmul` call that created them,
// while the slices they come from are borrowed, and workers write disjoint blocks of C.
unsafe impl<T> Send for Operands<T> {}
unsafe impl<T> Sync for Operands<T> {}

/// `C[m × n] = act(alpha·A·B + beta·C + bias)` on the calling thread (see [`Operands`]).
///
/// # Safety
/// Every element addressed through the operands' pointers and strides must be valid,
/// `bias`, when not null, must point at `n` values, and `c` must not alias `a` or `b`.
unsafe fn gemm_block<T: Float>(m: usize, n: usize, k: usize, alpha: T, beta: T, o: Operands<T>) {
    #[cfg(target_arch = "x86_64")]
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() && crate::sgemm::available() {
        // T is f32 here, so the pointer casts and the scalar conversions are exact.
        let view = |ptr: *const T, rs, cs| crate::sgemm::View {
            ptr: ptr.cast(),
            rs,
            cs,
        };
        let epi = crate::sgemm::Epilogue {
            bias: o.bias.cast(),
            relu: o.relu,
        };
        crate::sgemm::sgemm(
            m,
            n,
            k,
            alpha.to_f64() as f32,
            view(o.a, o.a_rs, o.a_cs),
            view(o.b, o.b_rs, o.b_cs),
            beta.to_f64() as f32,
            o.c.cast(),
            o.ldc,
            epi,
        );
        return;
    }
    // gemm computes dst = alpha·dst + beta·lhs·rhs, hence the swapped scalars. It only
    // reads dst when told to, so a `beta == 0` output may hold garbage.
    gemm::gemm(
        m,
        n,
        k,
        o.c,
        1,
        o.ldc as isize,
        beta != T::zero(),
        o.a,
        o.a_cs as isize,
        o.a_rs as isize,
        o.b,
        o.b_cs as isize,
        o.b_rs as isize,
        beta,
        alpha,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
    if !o.bias.is_null() || o.relu {
        let bias = (!o.bias.is_null()).then(|| std::slice::from_raw_parts(o.bias, n));
        for i in 0..m {
            let row = std::slice::from_raw_parts_mut(o.c.add(i * o.ldc), n);
            for (j, v) in row.iter_mut().enumerate() {
                let x = match bias {
                    Some(b) => *v + b[j],
                    None => *v,
                };
                *v = if o.relu { x.max(T::zero()) } else { x };
            }
        }
    }
}

/// `C = alpha·op(A)·op(B) + beta·C` for row-major matrices, where `op(A)` is `m × k`,
/// `op(B)` is `k × n` and `C` is `m × n`.
///
/// `A` is stored `m × k` (or `k × m` when `trans_a`) with row stride `lda`; likewise `B`
/// (`k × n`, or `n × k` when `trans_b`). When `beta == 0`, `C` is not read (it may hold
/// garbage or NaN). Panics if a slice is too short for its shape and stride.
#[allow(clippy::too_many_arguments)] // BLAS-style signature: every argument is needed.
pub fn matmul<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: &[T],
    lda: usize,
    trans_a: bool,
    b: &[T],
    ldb: usize,
    trans_b: bool,
    beta: T,
    c: &mut [T],
    ldc: usize,
) {
    matmul_bias_act(
        m, n, k, alpha, a, lda, trans_a, b, ldb, trans_b, beta, c, ldc, None, false,
    );
}

/// `C = act(alpha·op(A)·op(B) + beta·C + bias)`: [`matmul`] with the bias (when given,
/// `n` values) added to every row and ReLU applied when `relu`, as the product writes
/// each tile (no second pass over `C`). The result equals [`matmul`] followed by
/// [`bias_act_rows`] bit for bit. Shapes, strides and `beta == 0` as in [`matmul`].
#[allow(clippy::too_many_arguments)] // BLAS-style signature: every argument is needed.
pub fn matmul_bias_act<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: &[T],
    lda: usize,
    trans_a: bool,
    b: &[T],
    ldb: usize,
    trans_b: bool,
    beta: T,
    c: &mut [T],
    ldc: usize,
    bias: Option<&[T]>,
    relu: bool,
) {
    if let Some(bias) = bias {
        assert_eq!(bias.len(), n, "matmul_bias_act: bias length");
    }
    let (a_rows, a_cols) = if trans_a { (k, m) } else { (m, k) };
    let (b_rows, b_cols) = if trans_b { (n, k) } else { (k, n) };
    assert!(a_rows <= 1 || lda >= a_cols, "matmul: lda too small");
    assert!(b_rows <= 1 || ldb >= b_cols, "matmul: ldb too small");
    assert!(m <= 1 || ldc >= n, "matmul: ldc too small");
    assert!(a.len() >= span(a_rows, a_cols, lda), "matmul: A too short");
    assert!(b.len() >= span(b_rows, b_cols, ldb), "matmul: B too short");
    assert!(c.len() >= span(m, n, ldc), "matmul: C too short");
    if m == 0 || n == 0 {
        return;
    }
    let (a_cs, a_rs) = if trans_a { (lda, 1) } else { (1, lda) };
    let (b_cs, b_rs) = if trans_b { (ldb, 1) } else { (1, ldb) };
    let o = Operands {
        a: a.as_ptr(),
        a_cs,
        a_rs,
        b: b.as_ptr(),
        b_cs,
        b_rs,
        c: c.as_mut_ptr(),
        ldc,
        bias: bias.map_or(std::ptr::null(), <[T]>::as_ptr),
        relu,
    };
    let t = threads();
    if t == 1 || m * n * k < PAR_MIN_WORK {
        // SAFETY: the asserts above keep every addressed element inside its slice, and
        // `c` is a unique borrow, so it cannot alias `a` or `b`.
        unsafe { gemm_block(m, n, k, alpha, beta, o) };
        return;
    }
    // One block of whole rows (or whole columns, whichever dimension is longer) per
    // thread, each over the full k: see the module doc on determinism.
    let split_rows = m >= n;
    let dim = if split_rows { m } else { n };
    let chunk = dim.div_ceil(t).div_ceil(16) * 16;
    let blocks = dim.div_ceil(chunk);
    use rayon::prelude::*;
    (0..blocks).into_par_iter().for_each(|bi| {
        let lo = bi * chunk;
        let len = chunk.min(dim - lo);
        let mut ob = o;
        // SAFETY: the block lies inside the asserted extents of A, B and C, and
        // distinct blocks write disjoint rows (columns) of C.
        unsafe {
            if split_rows {
                ob.a = o.a.add(lo * o.a_rs);
                ob.c = o.c.add(lo * o.ldc);
                gemm_block(len, n, k, alpha, beta, ob);
            } else {
                ob.b = o.b.add(lo * o.b_cs);
                ob.c = o.c.add(lo);
                if !o.bias.is_null() {
                    ob.bias = o.bias.add(lo);
                }
                gemm_block(m, len, k, alpha, beta, ob);
            }
        }
    });
}

/// `y[i, :] = act(y[i, :] + bias)` for `n` rows of width `bias.len()` at stride `ldy`.
pub fn bias_act_rows<T: Float>(y: &mut [T], ldy: usize, n: usize, bias: &[T], relu: bool) {
    let w = bias.len();
    if n == 0 || w == 0 {
        return;
    }
    for_row_blocks(y, ldy, n, w, |_, rows, y| {
        bias_act_block(y, ldy, rows, bias, relu)
    });
}

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
    for_row_blocks(dy, lddy, n, w, |lo, rows, dy| {
        relu_mask_block(dy, lddy, &y[lo * ldy..], ldy, rows, w)
    });
}

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
    // Split by columns: every column is still summed over all rows in row order.
    match row_blocks(w, n) {
        Some(chunk) if w >= 64 => {
            use rayon::prelude::*;
            let chunk = chunk.div_ceil(16) * 16;
            acc.par_chunks_mut(chunk)
                .enumerate()
                .for_each(|(b, a)| col_sums_block(a, &m[b * chunk..], ld, n));
        }
        _ => col_sums_block(acc, m, ld, n),
    }
}

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

/// Row-wise softmax of `z` (`n × e`, contiguous) into `p`.
pub fn softmax_rows<T: Float>(z: &[T], p: &mut [T], n: usize, e: usize) {
    for i in 0..n {
        let zr = &z[i * e..(i + 1) * e];
        let pr = &mut p[i * e..(i + 1) * e];
        // Subtracting the row max keeps exp() finite for large logits.
        let mx = zr.iter().fold(T::neg_infinity(), |a, &b| a.max(b));
        let mut s = T::zero();
        for (pv, &zv) in pr.iter_mut().zip(zr) {
            *pv = (zv - mx).exp();
            s += *pv;
        }
        let inv = T::one() / s;
        for pv in pr.iter_mut() {
            *pv *= inv;
        }
    }
}

/// Softmax backward: `dz = p ⊙ (dp − Σ_j dp_j p_j)` per row, overwriting `dz`.
pub fn softmax_backward_rows<T: Float>(p: &[T], dp: &[T], dz: &mut [T], n: usize, e: usize) {
    for i in 0..n {
        let r = i * e..(i + 1) * e;
        let (pr, dpr) = (&p[r.clone()], &dp[r.clone()]);
        let s = dot(pr, dpr);
        for ((d, &pv), &dpv) in dz[r].iter_mut().zip(pr).zip(dpr) {
            *d = pv * (dpv - s);
        }
    }
}

/// `p = sigmoid(z) / e`, elementwise over `n × e` (each gate weight in (0, 1/e)).
pub fn sigmoid_over_n<T: Float>(z: &[T], p: &mut [T], e: usize) {
    let inv_e = T::one() / T::from_usize(e);
    for (pv, &zv) in p.iter_mut().zip(z) {
        *pv = inv_e / (T::one() + (-zv).exp());
    }
}

/// Backward of [`sigmoid_over_n`]: `dz = dp · σ(1 − σ) / e = dp · p · (1 − e·p)`.
pub fn sigmoid_over_n_backward<T: Float>(p: &[T], dp: &[T], dz: &mut [T], e: usize) {
    let ef = T::from_usize(e);
    for ((d, &pv), &dpv) in dz.iter_mut().zip(p).zip(dp) {
        *d = dpv * pv * (T::one() - ef * pv);
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
    for_row_blocks(out, d, n, d, |lo, rows, out| {
        gated_sum_forward_block(&g[lo * e..], &x[lo * e * d..], rows, e, d, out)
    });
}

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
    match row_blocks(n, e * d) {
        Some(chunk) if d > 0 => {
            use rayon::prelude::*;
            dg.par_chunks_mut(chunk * e)
                .zip(dx.par_chunks_mut(chunk * e * d))
                .enumerate()
                .for_each(|(b, (dg, dx))| {
                    let lo = b * chunk;
                    let rows = chunk.min(n - lo);
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
                });
        }
        _ => gated_sum_backward_block(g, x, dout, n, e, d, dg, dx),
    }
}

#[allow(clippy::too_many_arguments)]
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

/// Per-column mean and biased variance of `n` rows of width `mean.len()` at stride `ld`.
/// Two passes (mean first) so the variance does not suffer from cancellation.
pub fn col_mean_var<T: Float>(x: &[T], ld: usize, n: usize, mean: &mut [T], var: &mut [T]) {
    let w = mean.len();
    mean.fill(T::zero());
    var.fill(T::zero());
    col_sums_acc(mean, x, ld, n);
    let inv_n = T::one() / T::from_usize(n.max(1));
    for m in mean.iter_mut() {
        *m *= inv_n;
    }
    for i in 0..n {
        for ((v, &xv), &m) in var.iter_mut().zip(&x[i * ld..i * ld + w]).zip(&*mean) {
            let c = xv - m;
            *v += c * c;
        }
    }
    for v in var.iter_mut() {
        *v *= inv_n;
    }
}

/// Per-column affine map `y[i, j] = x[i, j]·scale[j] + shift[j]` (batch-norm apply).
pub fn col_affine<T: Float>(
    x: &[T],
    ldx: usize,
    n: usize,
    scale: &[T],
    shift: &[T],
    y: &mut [T],
    ldy: usize,
) {
    let w = scale.len();
    for i in 0..n {
        let xr = &x[i * ldx..i * ldx + w];
        let yr = &mut y[i * ldy..i * ldy + w];
        for (((yv, &xv), &s), &b) in yr.iter_mut().zip(xr).zip(scale).zip(shift) {
            *yv = xv * s + b;
        }
    }
}

/// Batch-norm backward sums per column: `sum_dy[j] = Σ_i dy` and
/// `sum_dy_xhat[j] = Σ_i dy·(x − mean)·inv_std`.
#[allow(clippy::too_many_arguments)] // two strided inputs, two statistics, two outputs
pub fn bn_backward_sums<T: Float>(
    x: &[T],
    ldx: usize,
    dy: &[T],
    lddy: usize,
    n: usize,
    mean: &[T],
    inv_std: &[T],
    sum_dy: &mut [T],
    sum_dy_xhat: &mut [T],
) {
    let w = mean.len();
    sum_dy.fill(T::zero());
    sum_dy_xhat.fill(T::zero());
    for i in 0..n {
        let xr = &x[i * ldx..i * ldx + w];
        let dr = &dy[i * lddy..i * lddy + w];
        for j in 0..w {
            sum_dy[j] += dr[j];
            sum_dy_xhat[j] += dr[j] * (xr[j] - mean[j]) * inv_std[j];
        }
    }
}

/// Batch-norm input gradient in training mode, per column j with `scale = γ·inv_std`:
/// `dx = scale·(dy − sum_dy/n − xhat·sum_dy_xhat/n)`; accumulates into `dx` when asked.
#[allow(clippy::too_many_arguments)] // the sums of `bn_backward_sums` plus strided I/O
pub fn bn_backward_dx<T: Float>(
    x: &[T],
    ldx: usize,
    dy: &[T],
    lddy: usize,
    n: usize,
    mean: &[T],
    inv_std: &[T],
    scale: &[T],
    sum_dy: &[T],
    sum_dy_xhat: &[T],
    dx: &mut [T],
    lddx: usize,
    accumulate: bool,
) {
    let w = mean.len();
    let inv_n = T::one() / T::from_usize(n.max(1));
    for i in 0..n {
        let xr = &x[i * ldx..i * ldx + w];
        let dr = &dy[i * lddy..i * lddy + w];
        let out = &mut dx[i * lddx..i * lddx + w];
        for j in 0..w {
            let xhat = (xr[j] - mean[j]) * inv_std[j];
            let g = scale[j] * (dr[j] - sum_dy[j] * inv_n - xhat * sum_dy_xhat[j] * inv_n);
            if accumulate {
                out[j] += g;
            } else {
                out[j] = g;
            }
        }
    }
}

/// One Adam/AdamW update of a parameter slice (PyTorch's formulation):
/// `p ← p·(1 − lr·wd)`, `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`,
/// `p ← p − (lr/bc1)·m / (√v/√bc2 + eps)` with `bc = 1 − β^t`.
#[allow(clippy::too_many_arguments)] // the optimiser's hyper-parameters, passed flat
pub fn adam_update<T: Float>(
    p: &mut [T],
    g: &[T],
    m: &mut [T],
    v: &mut [T],
    lr: T,
    beta1: T,
    beta2: T,
    eps: T,
    weight_decay: T,
    bc1: T,
    bc2: T,
) {
    let one = T::one();
    let decay = one - lr * weight_decay;
    let step = lr / bc1;
    let inv_sqrt_bc2 = one / bc2.sqrt();
    let len = p.len();
    assert!(g.len() >= len && m.len() >= len && v.len() >= len);
    let update = |p: &mut [T], g: &[T], m: &mut [T], v: &mut [T]| {
        adam_block(p, g, m, v, beta1, beta2, eps, decay, step, inv_sqrt_bc2)
    };
    match row_blocks(len, 1) {
        Some(chunk) => {
            use rayon::prelude::*;
            let chunk = chunk.div_ceil(16) * 16;
            p.par_chunks_mut(chunk)
                .zip(m[..len].par_chunks_mut(chunk))
                .zip(v[..len].par_chunks_mut(chunk))
                .zip(g[..len].par_chunks(chunk))
                .for_each(|(((p, m), v), g)| update(p, g, m, v));
        }
        None => update(p, g, m, v),
    }
}

#[allow(clippy::too_many_arguments)]
fn adam_block<T: Float>(
    p: &mut [T],
    g: &[T],
    m: &mut [T],
    v: &mut [T],
    beta1: T,
    beta2: T,
    eps: T,
    decay: T,
    step: T,
    inv_sqrt_bc2: T,
) {
    let one = T::one();
    for (((pv, &gv), mv), vv) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        *mv = beta1 * *mv + (one - beta1) * gv;
        *vv = beta2 * *vv + (one - beta2) * gv * gv;
        *pv = *pv * decay - step * *mv / (vv.sqrt() * inv_sqrt_bc2 + eps);
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
    for_row_ranges(n, k * d, |lo, rows| {
        // Row by row, every output in turn, so a row of x is read from memory once.
        for i in lo..lo + rows {
            for (kk, p) in ptrs.iter().enumerate() {
                // SAFETY: row i of output kk belongs to this block alone, and the buffer
                // holds at least n·d elements (asserted above).
                let out = unsafe { std::slice::from_raw_parts_mut(p.ptr().add(i * d), d) };
                gated_sum_forward_block(&g[kk * gs + i * e..], &x[i * e * d..], 1, e, d, out);
            }
        }
    });
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
    for_row_ranges(n, e * d, |lo, rows| {
        // SAFETY: this block alone owns rows lo..lo+rows of dx and of every gate's dg
        // block; the extents were asserted above.
        let dxb =
            unsafe { std::slice::from_raw_parts_mut(dxp.ptr().add(lo * e * d), rows * e * d) };
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
    });
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
    let block = |c0: usize, acc: &mut [T]| {
        let cw = acc.len();
        for i in 0..n {
            // SAFETY: columns c0..c0+cw of every row belong to this block alone, inside
            // the asserted extent of dy.
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
