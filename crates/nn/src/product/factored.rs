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

/// The columns of `a` (m rows of k, stride lda) equal on every row, when there are
/// enough of them; None otherwise (stops looking as soon as too few are left).
fn shared_columns(a: &[f32], lda: usize, m: usize, k: usize) -> Option<Vec<bool>> {
    let need = ((MIN_SHARED * k as f64).ceil() as usize).max(1);
    let first = &a[..k];
    let mut same = vec![true; k];
    let mut left = k;
    for i in 1..m {
        let row = &a[i * lda..i * lda + k];
        for ((s, x), y) in same.iter_mut().zip(row).zip(first) {
            if *s && x.to_bits() != y.to_bits() {
                *s = false;
                left -= 1;
            }
        }
        if left < need {
            return None;
        }
    }
    Some(same)
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
    // Narrow products (a tower's last layer) gain less than the copies cost.
    let min_width = ACTIVE.with(|a| a.get());
    if m < 2 || k < 2 || min_width == 0 || n < min_width {
        return false;
    }
    EXAMINED_PRODUCTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let Some(same) = shared_columns(a, lda, m, k) else {
        return false;
    };
    FACTORED_PRODUCTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let var: Vec<usize> = (0..k).filter(|&j| !same[j]).collect();
    let constant: Vec<(usize, f32)> = (0..k).filter(|&j| same[j]).map(|j| (j, a[j])).collect();
    let kv = var.len();
    let mut x_var = Vec::with_capacity(m * kv);
    for i in 0..m {
        let row = &a[i * lda..i * lda + k];
        x_var.extend(var.iter().map(|&j| row[j]));
    }
    // op(B)'s rows `rows`, gathered into a row-major (rows × n) matrix.
    let gather = |rows: &mut dyn Iterator<Item = usize>| -> Vec<f32> {
        let mut out = Vec::with_capacity(k * n);
        for kk in rows {
            if trans_b {
                out.extend((0..n).map(|j| b[j * ldb + kk]));
            } else {
                out.extend_from_slice(&b[kk * ldb..kk * ldb + n]);
            }
        }
        out
    };
    // The shared columns' part, once: shift = bias + alpha·x_const·B_const.
    let mut shift: Vec<f32> = match bias {
        Some(bias) => bias.to_vec(),
        None => vec![0.0; n],
    };
    let kc = constant.len();
    let x_const: Vec<f32> = constant.iter().map(|&(_, v)| v).collect();
    let b_const = gather(&mut constant.iter().map(|&(kk, _)| kk));
    super::matmul::<f32>(
        1, n, kc, alpha, &x_const, kc, false, &b_const, n, false, 1.0, &mut shift, n,
    );
    drop(b_const);
    if kv == 0 {
        // Every column shared: each row is the shifted bias (+ beta·C).
        for i in 0..m {
            let row = &mut c[i * ldc..i * ldc + n];
            for (v, s) in row.iter_mut().zip(&shift) {
                let x = if beta == 0.0 { *s } else { beta * *v + s };
                *v = if relu { x.max(0.0) } else { x };
            }
        }
        return true;
    }
    let b_var = gather(&mut var.iter().copied());
    super::matmul_bias_act::<f32>(
        m,
        n,
        kv,
        alpha,
        &x_var,
        kv,
        false,
        &b_var,
        n,
        false,
        beta,
        c,
        ldc,
        Some(&shift),
        relu,
    );
    true
}
