//! The matrix product `C = act(alpha·op(A)·op(B) + beta·C + bias)` and the choice of its
//! kernel at run time.
//!
//! For f32 the kernel follows [`mfh_cpu::path`]: the AVX-512 tile ([`avx512`], 14 × 32)
//! or the AVX2 tile ([`avx2`], 6 × 16) over the one blocked driver ([`blocked`]), or the
//! `gemm` crate on the portable path. Products at most 8 columns wide (gates, output
//! layers) with `A` not transposed take [`narrow`] on both x86 paths: one dot product
//! per element, `A` read in place. f64 (gradient checks) always uses the `gemm`
//! crate. `MFH_KERNEL` forces a path (see `mfh_cpu`).
//!
//! Why an own kernel: on the 2-core AMD EPYC (Zen 3) this project was first measured on,
//! the `gemm` crate reached 100–117 GFLOP/s on 2048³ with 2 threads where the AVX2 tile
//! reached 130–140; bench/RESULTS.md has the AVX-512 figures (`mfh bench sgemm`).
//!
//! Threads and determinism: with `threads() > 1` a product is split into one block of
//! output rows (or columns) per thread, each computed by an unthreaded product over the
//! whole reduction (k) dimension (bf16 products on AMX or AVX512-BF16 first pack both
//! operands once, shared by the threads, see `bf16_tiles::sgemm_threads`). No element's sum is ever split across threads, so with
//! a fixed thread count results are bit-for-bit reproducible; with the own kernels a
//! row's result does not depend on the split or the thread count at all, and the AVX2
//! and AVX-512 tiles give equal bits. The `gemm` crate's results differ from theirs by
//! float rounding.
//!
//! Precision: with [`Precision::Bf16`] ([`set_precision`], [`with_precision`]) every f32
//! product rounds its operands to bf16 and sums in f32 ([`bf16`]): on AMX tiles or
//! AVX512-BF16 dot products where the path has them, else the reference (rounded
//! operands through the path's f32 kernel). f64 products (gradient checks) ignore it.
//! The factored product (one user's request) is f32 only.
//!
//! Not here: the elementwise loops (`crate::kernels`), softmax, batch norm and Adam
//! (next to their layers).

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod bf16;
#[cfg(target_arch = "x86_64")]
mod bf16_tiles;
#[cfg(target_arch = "x86_64")]
mod blocked;
mod factored;
#[cfg(target_arch = "x86_64")]
mod narrow;

pub use factored::{
    with_factored_input, with_factored_input_from, with_factored_input_over,
    with_factored_input_over_from, with_factored_input_over_requests, EXAMINED_PRODUCTS,
    FACTORED_PRODUCTS, REUSED_OPERANDS,
};

use crate::kernels::{span, threads};
use crate::Float;
use mfh_cpu::Path;
use std::cell::Cell;
use std::sync::atomic::{AtomicU8, Ordering};

/// The number format of the f32 products' operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// f32 operands (the default).
    #[default]
    F32,
    /// Operands rounded to bf16, f32 sums (see [`bf16`]).
    Bf16,
}

impl Precision {
    /// The name configs and flags take.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }

    fn code(self) -> u8 {
        match self {
            Precision::F32 => 1,
            Precision::Bf16 => 2,
        }
    }

    fn from_code(c: u8) -> Option<Precision> {
        match c {
            1 => Some(Precision::F32),
            2 => Some(Precision::Bf16),
            _ => None,
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Precision, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(format!("unknown precision {s:?}: expected f32 or bf16")),
        }
    }
}

/// The process-wide precision (a [`Precision`] code).
static PRECISION: AtomicU8 = AtomicU8::new(1);

thread_local! {
    /// This thread's [`with_precision`], 0 when none.
    static LOCAL_PRECISION: Cell<u8> = const { Cell::new(0) };
}

/// Sets the precision of every thread's f32 products (default f32).
pub fn set_precision(p: Precision) {
    PRECISION.store(p.code(), Ordering::Relaxed);
}

/// The precision of the f32 products on this thread.
pub fn precision() -> Precision {
    Precision::from_code(LOCAL_PRECISION.with(Cell::get))
        .or_else(|| Precision::from_code(PRECISION.load(Ordering::Relaxed)))
        .unwrap_or_default()
}

/// Runs `f` with the f32 products it calls on this thread in precision `p` (work handed
/// to other threads by a product takes the precision the product captured at entry).
pub fn with_precision<R>(p: Precision, f: impl FnOnce() -> R) -> R {
    struct Restore(u8);
    impl Drop for Restore {
        fn drop(&mut self) {
            LOCAL_PRECISION.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(LOCAL_PRECISION.with(|s| s.replace(p.code())));
    f()
}

/// Below this many multiply-adds a product runs on one thread: fork/join would cost
/// more than it saves.
const PAR_MIN_WORK: usize = 1 << 18;

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

impl<T> Operands<T> {
    /// `A`, `B` and the epilogue as the f32 kernels take them (for `T` = f32 only: the
    /// pointers are cast).
    #[cfg(target_arch = "x86_64")]
    fn f32_views(&self) -> (blocked::View, blocked::View, blocked::Epilogue) {
        let view = |ptr: *const T, rs, cs| blocked::View {
            ptr: ptr.cast(),
            rs,
            cs,
        };
        let epi = blocked::Epilogue {
            bias: self.bias.cast(),
            relu: self.relu,
        };
        (
            view(self.a, self.a_rs, self.a_cs),
            view(self.b, self.b_rs, self.b_cs),
            epi,
        )
    }
}

// SAFETY: the pointers are only dereferenced during the `matmul` call that created them,
// while the slices they come from are borrowed, and workers write disjoint blocks of C.
unsafe impl<T> Send for Operands<T> {}
unsafe impl<T> Sync for Operands<T> {}

/// `C[m × n] = act(alpha·A·B + beta·C + bias)` on the calling thread (see [`Operands`]),
/// by the kernel of `path` for f32 (its bf16 kernel, or the bf16 reference, when `prec`
/// is bf16) and by the `gemm` crate otherwise.
///
/// # Safety
/// Every element addressed through the operands' pointers and strides must be valid,
/// `bias`, when not null, must point at `n` values, `c` must not alias `a` or `b`, and
/// the CPU must have `path` (as every [`Path`] handed out by `mfh_cpu` is).
#[allow(clippy::too_many_arguments)] // one product's shape, scalars, operands and kernel choice
unsafe fn gemm_block<T: Float>(
    path: Path,
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    beta: T,
    o: Operands<T>,
    prec: Precision,
) {
    if k == 0 || alpha == T::zero() {
        // No product (as BLAS: A and B are not read, so an Inf in them cannot make
        // 0·A·B a NaN): C = act(beta·C + bias) on every path and precision.
        for i in 0..m {
            let row = std::slice::from_raw_parts_mut(o.c.add(i * o.ldc), n);
            for (j, v) in row.iter_mut().enumerate() {
                let mut x = if beta == T::zero() {
                    T::zero()
                } else {
                    beta * *v
                };
                if !o.bias.is_null() {
                    x += *o.bias.add(j);
                }
                *v = if o.relu { x.max(T::zero()) } else { x };
            }
        }
        return;
    }
    let is_f32 = std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>();
    if is_f32 && prec == Precision::Bf16 {
        #[cfg(target_arch = "x86_64")]
        if matches!(path, Path::Amx | Path::Avx512Bf16) {
            let (a, b, epi) = o.f32_views();
            let (alpha, beta) = (alpha.to_f64() as f32, beta.to_f64() as f32);
            bf16_tiles::sgemm(path, m, n, k, alpha, a, b, beta, o.c.cast(), o.ldc, epi);
            return;
        }
        // The reference: rounded copies through the path's f32 kernel.
        let a = bf16::rounded_dense(o.a, o.a_rs, o.a_cs, m, k);
        let b = bf16::rounded_dense(o.b, o.b_rs, o.b_cs, k, n);
        let rounded = Operands {
            a: a.as_ptr(),
            a_cs: 1,
            a_rs: k,
            b: b.as_ptr(),
            b_cs: 1,
            b_rs: n,
            ..o
        };
        gemm_block(path, m, n, k, alpha, beta, rounded, Precision::F32);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if is_f32 && path != Path::Portable {
        // T is f32 here, so the pointer casts and the scalar conversions are exact.
        let (a, b, epi) = o.f32_views();
        let (alpha, beta) = (alpha.to_f64() as f32, beta.to_f64() as f32);
        // Products at most 16 wide (gates) take the 16-column tile on AVX-512 machines
        // too: a 32-column tile would be half padding, and both tiles give equal bits.
        if path.avx512() && n > <avx2::Avx2 as blocked::Tile>::NR {
            blocked::sgemm::<avx512::Avx512>(m, n, k, alpha, a, b, beta, o.c.cast(), o.ldc, epi);
        } else {
            blocked::sgemm::<avx2::Avx2>(m, n, k, alpha, a, b, beta, o.c.cast(), o.ldc, epi);
        }
        return;
    }
    let _ = path;
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
    // The path and precision are taken here, on the calling thread, and handed to the
    // workers.
    let path = mfh_cpu::path();
    let prec = precision();
    if !trans_a
        && prec == Precision::F32
        && std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
    {
        // SAFETY: T is f32 (same type id), so each slice is a slice of f32 as it is.
        let f32s =
            |s: &[T]| unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<f32>(), s.len()) };
        let (a32, b32) = (f32s(a), f32s(b));
        let bias32 = bias.map(f32s);
        // SAFETY: as above; `c` is a unique borrow.
        let c32 = unsafe { std::slice::from_raw_parts_mut(c.as_mut_ptr().cast::<f32>(), c.len()) };
        let (alpha32, beta32) = (alpha.to_f64() as f32, beta.to_f64() as f32);
        if factored::try_product(
            m, n, k, alpha32, a32, lda, b32, ldb, trans_b, beta32, c32, ldc, bias32, relu,
        ) {
            return;
        }
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
    #[cfg(target_arch = "x86_64")]
    if n <= narrow::MAX_N
        && k > 0
        && alpha != T::zero()
        && !trans_a
        && prec == Precision::F32
        && path != Path::Portable
        && std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
    {
        // Gates and output layers: one dot product per element, A read in place.
        let (alpha, beta) = (alpha.to_f64() as f32, beta.to_f64() as f32);
        // Rows lo..lo + len (`o` is Send and Sync; its views are made where they are used).
        let run = |bt: &[f32], kp: usize, lo: usize, len: usize| {
            let (av, _, epi) = o.f32_views();
            // SAFETY: T is f32 (same type id), the asserts above keep every addressed
            // element inside its slice, `c` is a unique borrow and blocks write disjoint
            // rows of it, and every path but the portable one has AVX2 and FMA.
            unsafe {
                let (a, c) = (av.ptr.add(lo * av.rs), o.c.cast::<f32>().add(lo * o.ldc));
                narrow::rows(len, n, k, alpha, a, av.rs, bt, kp, beta, c, o.ldc, epi);
            }
        };
        let (_, bv, _) = o.f32_views();
        // SAFETY: B's elements lie inside its asserted extent.
        unsafe {
            narrow::with_transposed_b(n, k, bv, |bt, kp| {
                if t == 1 || m * n * k < PAR_MIN_WORK {
                    run(bt, kp, 0, m);
                } else {
                    let chunk = m.div_ceil(t);
                    use rayon::prelude::*;
                    (0..m.div_ceil(chunk)).into_par_iter().for_each(|bi| {
                        let lo = bi * chunk;
                        run(bt, kp, lo, chunk.min(m - lo));
                    });
                }
            })
        };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if t > 1
        && m * n * k >= PAR_MIN_WORK
        && alpha != T::zero()
        && prec == Precision::Bf16
        && matches!(path, Path::Amx | Path::Avx512Bf16)
        && std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
    {
        // bf16 on the hardware paths: each operand packed once for all threads.
        let (av, bv, epi) = o.f32_views();
        let (alpha, beta) = (alpha.to_f64() as f32, beta.to_f64() as f32);
        // SAFETY: T is f32 (same type id), the asserts above keep every addressed
        // element inside its slice, `c` is a unique borrow, and the CPU has `path`.
        unsafe {
            bf16_tiles::sgemm_threads(
                path,
                m,
                n,
                k,
                alpha,
                av,
                bv,
                beta,
                o.c.cast(),
                o.ldc,
                epi,
                t,
            )
        };
        return;
    }
    if t == 1 || m * n * k < PAR_MIN_WORK {
        // SAFETY: the asserts above keep every addressed element inside its slice, and
        // `c` is a unique borrow, so it cannot alias `a` or `b`.
        unsafe { gemm_block(path, m, n, k, alpha, beta, o, prec) };
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
                gemm_block(path, len, n, k, alpha, beta, ob, prec);
            } else {
                ob.b = o.b.add(lo * o.b_cs);
                ob.c = o.c.add(lo);
                if !o.bias.is_null() {
                    ob.bias = o.bias.add(lo);
                }
                gemm_block(path, m, len, k, alpha, beta, ob, prec);
            }
        }
    });
}
