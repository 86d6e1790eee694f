//! Products with an input whose rows share some columns: a ranking request is one user ×
//! many candidates, so the network input's user-side columns (the user's embeddings and
//! numeric features, the context) hold the same values on every row.
//!
//! While the closure of [`with_factored_input`] runs, a product whose left operand has
//! at least an eighth of its columns equal on every row computes `x·W + b` as
//! `x_var·W_var + (x_const·W_const + b)`: the shared columns' part once per product
//! instead of once per row, the rest over the varying columns only. That covers every
//! first layer that reads the network input — experts, gates, bottoms, towers, and rows
//! of it gathered per cell — in every model, without the models knowing; a hidden
//! layer's operand is given up after a row or two (its columns vary). The sums run in
//! another order, so results differ from the plain product by float rounding (tested
//! within 1e-5 relative on every model of the zoo).
//!
//! The switch is per thread: products a network hands to other threads (row blocks with
//! `--threads` > 1) are computed as usual.

use std::cell::Cell;

thread_local! {
    /// While this thread runs inside [`with_factored_input`]: the narrowest product
    /// (output columns) to factor; 0 = off.
    static ACTIVE: Cell<usize> = const { Cell::new(0) };
}

/// Products computed in the factored form (diagnostics; benchmarks print it).
pub static FACTORED_PRODUCTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// Products looked at inside [`with_factored_input`].
pub static EXAMINED_PRODUCTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Narrowest product (output columns) worth factoring.
const MIN_WIDTH: usize = 32;

/// Fewest shared columns (as a share of the input) worth factoring.
const MIN_SHARED: f64 = 0.125;

/// Runs `f` with products on this thread factoring out the columns of their left
/// operand that are equal on every row (when at least an eighth of them are): the first
/// layers that read a ranking request's input, or rows of it gathered per cell. Products
/// that `f` hands to other threads are computed as usual.
pub fn with_factored_input<R>(f: impl FnOnce() -> R) -> R {
    with_factored_input_from(MIN_WIDTH, f)
}

/// [`with_factored_input`] for products at least `min_width` outputs wide (tests use 1,
/// so that tiny networks take the factored path).
pub fn with_factored_input_from<R>(min_width: usize, f: impl FnOnce() -> R) -> R {
    /// Restores the setting even if `f` unwinds.
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            ACTIVE.with(|a| a.set(self.0));
        }
    }
    let _restore = Restore(ACTIVE.with(|a| a.replace(min_width.max(1))));
    f()
}

/// Buffers of one thread's factored products, kept between products.
#[derive(Default)]
struct Scratch {
    /// Per column: the OR of every row's bits XOR the first row's (0 = shared).
    diff: Vec<u32>,
    /// The varying columns as runs `(first, len)`.
    runs: Vec<(usize, usize)>,
    x_var: Vec<f32>,
    b_var: Vec<f32>,
    shift: Vec<f32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Whether enough columns of `a` (m rows of k, stride lda) are equal on every row;
/// `diff[j] == 0` then marks the shared columns. Compares bit patterns (so -0.0 and
/// NaNs count as they are stored), branch-free over each row so that it vectorises,
/// and stops as soon as too few shared columns are left.
fn shared_columns(a: &[f32], lda: usize, m: usize, k: usize, diff: &mut Vec<u32>) -> bool {
    let need = ((MIN_SHARED * k as f64).ceil() as usize).max(1);
    let first = &a[..k];
    diff.clear();
    diff.resize(k, 0);
    for i in 1..m {
        let row = &a[i * lda..i * lda + k];
        for ((d, x), y) in diff.iter_mut().zip(row).zip(first) {
            *d |= x.to_bits() ^ y.to_bits();
        }
        // After the second row, then every 32 rows: a hidden layer's operand is given
        // up at once.
        if (i == 1 || i % 32 == 0) && diff.iter().filter(|&&d| d == 0).count() < need {
            return false;
        }
    }
    diff.iter().filter(|&&d| d == 0).count() >= need
}

/// `C = act(alpha·A·op(B) + beta·C + bias)` through the factored form, inside
/// [`with_factored_input`] and when enough of `A`'s columns are shared by its rows;
/// false otherwise (the caller computes it).
#[allow(clippy::too_many_arguments)] // the product's own arguments
pub(super) fn try_product(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    trans_b: bool,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
    bias: Option<&[f32]>,
    relu: bool,
) -> bool {
    let min_width = ACTIVE.with(|a| a.get());
    if m < 2 || k < 2 || min_width == 0 || n < min_width {
        return false;
    }
    EXAMINED_PRODUCTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // The buffers are taken out for the product (the inner products below run with
    // factoring off, so they never ask for them).
    let mut s = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    let done = shared_columns(a, lda, m, k, &mut s.diff);
    if done {
        FACTORED_PRODUCTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // The product once `s.diff` marks the shared columns.
        let mut product = |s: &mut Scratch| {
            // Row kk of op(B), element j.
            let b_at = |kk: usize, j: usize| {
                if trans_b {
                    b[j * ldb + kk]
                } else {
                    b[kk * ldb + j]
                }
            };
            // The shared columns' part, once: shift = bias + alpha·Σ x_j·B[j, :] over them.
            s.shift.clear();
            match bias {
                Some(bias) => s.shift.extend_from_slice(&bias[..n]),
                None => s.shift.resize(n, 0.0),
            }
            s.runs.clear();
            let mut j = 0;
            while j < k {
                if s.diff[j] == 0 {
                    let v = alpha * a[j];
                    if trans_b {
                        for (o, sh) in s.shift.iter_mut().enumerate() {
                            *sh += v * b_at(j, o);
                        }
                    } else {
                        for (sh, w) in s.shift.iter_mut().zip(&b[j * ldb..j * ldb + n]) {
                            *sh += v * w;
                        }
                    }
                    j += 1;
                } else {
                    let start = j;
                    while j < k && s.diff[j] != 0 {
                        j += 1;
                    }
                    s.runs.push((start, j - start));
                }
            }
            let kv: usize = s.runs.iter().map(|r| r.1).sum();
            if kv == 0 {
                // Every column shared: each row is the shifted bias (+ beta·C).
                for i in 0..m {
                    let row = &mut c[i * ldc..i * ldc + n];
                    for (v, sh) in row.iter_mut().zip(&s.shift) {
                        let x = if beta == 0.0 { *sh } else { beta * *v + sh };
                        *v = if relu { x.max(0.0) } else { x };
                    }
                }
                return;
            }
            // The varying columns of A, and the rows of op(B) they meet, copied run by run.
            s.x_var.clear();
            for i in 0..m {
                let row = &a[i * lda..i * lda + k];
                for &(lo, len) in &s.runs {
                    s.x_var.extend_from_slice(&row[lo..lo + len]);
                }
            }
            s.b_var.clear();
            for &(lo, len) in &s.runs {
                for kk in lo..lo + len {
                    if trans_b {
                        s.b_var.extend((0..n).map(|o| b_at(kk, o)));
                    } else {
                        s.b_var.extend_from_slice(&b[kk * ldb..kk * ldb + n]);
                    }
                }
            }
            let saved = ACTIVE.with(|a| a.replace(0));
            super::matmul_bias_act::<f32>(
                m,
                n,
                kv,
                alpha,
                &s.x_var,
                kv,
                false,
                &s.b_var,
                n,
                false,
                beta,
                c,
                ldc,
                Some(&s.shift),
                relu,
            );
            ACTIVE.with(|a| a.set(saved));
        };
        product(&mut s);
    }
    SCRATCH.with(|t| *t.borrow_mut() = s);
    done
}
