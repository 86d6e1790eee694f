//! Products with an input whose rows share some columns: a ranking request is one user ×
//! many candidates, so the network input's user-side columns (the user's embeddings and
//! numeric features, the context) hold the same values on every row.
//!
//! While the closure of [`with_factored_input`] runs, a product whose left operand has
//! at least a quarter of its columns equal on every row computes `x·W + b` as
//! `x_var·W_var + (x_const·W_const + b)`: the shared columns' part once per product
//! instead of once per row, the rest over the varying columns only. That covers every
//! first layer at least 32 wide that reads the network input — experts, bottoms, towers,
//! and rows of it gathered per cell — in every model, without the models knowing; a
//! hidden layer's operand is given up after a row or two (its columns vary). Narrower
//! products (gates) are factored only over an input pinned by
//! [`with_factored_input_over`] whose columns a wider product has already sorted. The
//! sums run in another order, so results differ from the plain product by float rounding
//! (tested within 1e-5 relative on every model of the zoo).
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
/// Factored products that reused the pinned operand's columns found by an earlier one
/// ([`with_factored_input_over`]).
pub static REUSED_OPERANDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Narrowest product (output columns) worth factoring.
const MIN_WIDTH: usize = 32;

/// Fewest shared columns (as a share of the input) worth factoring. A hidden layer's
/// input shares the columns of ReLU units dead on every row of the request (13–20 % of
/// them in MFH's level-1 experts on the bundled data, in 14–24 runs): factoring those
/// copies the rest of the input run by run for a small saving (one-user MFH scoring
/// 2.36–2.42 ms with 1/8 here, 2.15–2.39 ms with 1/4 to 1/2; bench/RESULTS.md "Issue
/// 21, third pass"). A request's user side is most of the first layers' input (145 of
/// 206 columns there).
const MIN_SHARED: f64 = 0.25;

/// Runs `f` with products on this thread factoring out the columns of their left
/// operand that are equal on every row (when at least a quarter of them are): the first
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
    /// The left operand as prepared for the last product that was not the pinned one.
    last: Prepared,
    /// The operand pinned by [`with_factored_input_over`], prepared by the first product
    /// that reads it.
    pinned: Option<Pinned>,
    b_var: Vec<f32>,
    shift: Vec<f32>,
}

/// A left operand split into its shared and varying columns.
#[derive(Default)]
struct Prepared {
    /// Per column: the OR of every row's bits XOR the first row's (0 = shared).
    diff: Vec<u32>,
    /// The varying columns as runs `(first, len)`.
    runs: Vec<(usize, usize)>,
    /// Their values, `m × kv` (kv = the runs' total length).
    x_var: Vec<f32>,
}

impl Prepared {
    /// Finds the columns of `a` (m rows of k, stride lda) each group of rows (from
    /// each of `starts` to the next) holds equal on its rows; when there are enough,
    /// records the varying columns and copies them. Returns whether there were.
    #[inline(always)]
    fn prepare(&mut self, a: &[f32], lda: usize, m: usize, k: usize, starts: &[usize]) -> bool {
        // Each group's shared part costs a pass over the shared columns' weights: worth
        // it only while the groups average two rows or more.
        if m < 2 * starts.len() || !shared_columns(a, lda, m, k, starts, &mut self.diff) {
            return false;
        }
        self.runs.clear();
        let mut j = 0;
        while j < k {
            if self.diff[j] == 0 {
                j += 1;
                continue;
            }
            let start = j;
            while j < k && self.diff[j] != 0 {
                j += 1;
            }
            self.runs.push((start, j - start));
        }
        self.x_var.clear();
        for i in 0..m {
            let row = &a[i * lda..i * lda + k];
            for &(lo, len) in &self.runs {
                self.x_var.extend_from_slice(&row[lo..lo + len]);
            }
        }
        true
    }
}

/// The operand pinned by [`with_factored_input_over`]: its address and shape, and what
/// the first product over it found (`None` = not looked at yet; `Some(false)` = too few
/// shared columns).
struct Pinned {
    key: Key,
    /// The first row of each request in it (`[0]`: one request).
    starts: Vec<usize>,
    found: Option<bool>,
    prepared: Prepared,
}

/// An operand's address, rows, columns and row stride.
type Key = (usize, usize, usize, usize);

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// [`with_factored_input`], with `x` (m rows of k, stride lda: the network input) pinned:
/// the first product whose left operand is exactly `x` finds its shared columns and
/// copies its varying ones, and every later one in `f` reuses them (MFH reads its input
/// in seven first-layer products). `x` stays borrowed while `f` runs, so it cannot
/// change meanwhile.
pub fn with_factored_input_over<R>(
    x: &[f32],
    m: usize,
    k: usize,
    lda: usize,
    f: impl FnOnce() -> R,
) -> R {
    with_factored_input_over_from(MIN_WIDTH, x, m, k, lda, &[0], f)
}

/// [`with_factored_input_over`] for the input of several requests scored together (a
/// server's batch): `starts` holds the first row of each request, ascending. A column
/// counts as shared when each request holds one value in it on all its rows (the
/// requests' values may differ); its part is then computed once per request.
pub fn with_factored_input_over_requests<R>(
    x: &[f32],
    m: usize,
    k: usize,
    lda: usize,
    starts: &[usize],
    f: impl FnOnce() -> R,
) -> R {
    with_factored_input_over_from(MIN_WIDTH, x, m, k, lda, starts, f)
}

/// [`with_factored_input_over_requests`] for products at least `min_width` outputs wide
/// (tests).
pub fn with_factored_input_over_from<R>(
    min_width: usize,
    x: &[f32],
    m: usize,
    k: usize,
    lda: usize,
    starts: &[usize],
    f: impl FnOnce() -> R,
) -> R {
    assert!(
        m == 0 || (lda >= k && x.len() >= (m - 1) * lda + k),
        "with_factored_input_over: x shorter than its shape"
    );
    assert!(
        starts.first() == Some(&0)
            && starts.windows(2).all(|w| w[0] < w[1])
            && starts.last().is_some_and(|&l| l < m.max(1)),
        "with_factored_input_over: request starts {starts:?} not ascending from 0 within {m} rows"
    );
    /// Pins the operand that was pinned before (if any) again, even if `f` unwinds.
    struct Unpin(Option<(Key, Vec<usize>)>);
    impl Drop for Unpin {
        fn drop(&mut self) {
            repin(self.0.take());
        }
    }
    let _unpin = Unpin(repin(Some((
        (x.as_ptr() as usize, m, k, lda),
        starts.to_vec(),
    ))));
    with_factored_input_from(min_width, f)
}

/// Pins the operand `key` with its requests' first rows (none with `None`), not yet
/// looked at, keeping the buffers; returns what was pinned before.
fn repin(pin: Option<(Key, Vec<usize>)>) -> Option<(Key, Vec<usize>)> {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let old = s.pinned.take();
        let (before, prepared) = match old {
            Some(p) => (Some((p.key, p.starts)), p.prepared),
            None => (None, Prepared::default()),
        };
        s.pinned = pin.map(|(key, starts)| Pinned {
            key,
            starts,
            found: None,
            prepared,
        });
        before
    })
}

/// Whether enough columns of `a` (m rows of k, stride lda) are equal on every row of
/// each group (from each of `starts` to the next); `diff[j] == 0` then marks the shared
/// columns. Compares bit patterns (so -0.0 and NaNs count as they are stored),
/// branch-free over each row so that it vectorises, and stops as soon as too few shared
/// columns are left.
#[inline(always)]
fn shared_columns(
    a: &[f32],
    lda: usize,
    m: usize,
    k: usize,
    starts: &[usize],
    diff: &mut Vec<u32>,
) -> bool {
    let need = ((MIN_SHARED * k as f64).ceil() as usize).max(1);
    diff.clear();
    diff.resize(k, 0);
    // The group's first row, which its other rows are compared with.
    let (mut group, mut first) = (0, &a[..k]);
    for i in 1..m {
        if starts.get(group + 1) == Some(&i) {
            group += 1;
            first = &a[i * lda..i * lda + k];
            continue;
        }
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
    if m < 2 || k < 2 || min_width == 0 {
        return false;
    }
    // The buffers are taken out for the product (the inner products below run with
    // factoring off, so they never ask for them).
    let mut s = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    let Scratch {
        last,
        pinned,
        b_var,
        shift,
    } = &mut s;
    let key = (a.as_ptr() as usize, m, k, lda);
    let is_pinned = pinned.as_ref().is_some_and(|p| p.key == key);
    // The pinned input, its columns already sorted by a wider product.
    let sorted = pinned
        .as_ref()
        .is_some_and(|p| p.key == key && p.found == Some(true));
    // A narrower product (a gate) is factored only over the pinned input once its
    // columns are sorted: then that costs nothing, and the product runs over the
    // varying columns alone.
    if n < min_width && !sorted {
        SCRATCH.with(|t| *t.borrow_mut() = s);
        return false;
    }
    EXAMINED_PRODUCTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // The scan and the copies below vectorised for the CPU's path.
    let path = mfh_cpu::path();
    // The operand as prepared, and the first row of each request in it.
    let (done, prepared, starts) = match pinned {
        Some(p) if is_pinned => {
            if p.found.is_some() {
                REUSED_OPERANDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let found = *p.found.get_or_insert_with(|| {
                mfh_cpu::dispatch!(path, p.prepared.prepare(a, lda, m, k, &p.starts))
            });
            (found, &p.prepared, &p.starts[..])
        }
        // Another operand of as many rows as the pinned input holds the same requests'
        // rows (a normalised input, a stem's output): its columns are compared request
        // by request too. Any other is taken as one request.
        other => {
            let starts: &[usize] = match other {
                Some(p) if p.key.1 == m => &p.starts,
                _ => &[0],
            };
            (
                mfh_cpu::dispatch!(path, last.prepare(a, lda, m, k, starts)),
                &*last,
                starts,
            )
        }
    };
    if done {
        FACTORED_PRODUCTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = Product {
            m,
            n,
            k,
            alpha,
            a,
            lda,
            b,
            ldb,
            trans_b,
            beta,
            ldc,
            bias,
            relu,
        };
        mfh_cpu::dispatch!(path, factored(&p, prepared, starts, b_var, shift, c));
    }
    SCRATCH.with(|t| *t.borrow_mut() = s);
    done
}

/// One product's operands (see [`try_product`]).
struct Product<'a> {
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &'a [f32],
    lda: usize,
    b: &'a [f32],
    ldb: usize,
    trans_b: bool,
    beta: f32,
    ldc: usize,
    bias: Option<&'a [f32]>,
    relu: bool,
}

/// The product once `x` holds `A`'s varying columns, found request by request (`groups`:
/// each request's first row).
#[inline(always)]
fn factored(
    p: &Product,
    x: &Prepared,
    groups: &[usize],
    b_var: &mut Vec<f32>,
    shift: &mut Vec<f32>,
    c: &mut [f32],
) {
    let Product {
        m,
        n,
        k,
        alpha,
        a,
        lda,
        b,
        ldb,
        trans_b,
        beta,
        ldc,
        bias,
        relu,
    } = *p;
    // Row kk of op(B), element j.
    let b_at = |kk: usize, j: usize| {
        if trans_b {
            b[j * ldb + kk]
        } else {
            b[kk * ldb + j]
        }
    };
    // The shared columns' part, once per group of rows (one request's):
    // shift = bias + alpha·Σ x_j·B[j, :] over them, with the group's first row's x_j.
    shift.clear();
    for &r0 in groups {
        let at = shift.len();
        match bias {
            Some(bias) => shift.extend_from_slice(&bias[..n]),
            None => shift.resize(at + n, 0.0),
        }
        let sh = &mut shift[at..at + n];
        for j in (0..k).filter(|&j| x.diff[j] == 0) {
            let v = alpha * a[r0 * lda + j];
            if trans_b {
                for (o, s) in sh.iter_mut().enumerate() {
                    *s += v * b_at(j, o);
                }
            } else {
                for (s, w) in sh.iter_mut().zip(&b[j * ldb..j * ldb + n]) {
                    *s += v * w;
                }
            }
        }
    }
    // Rows lo..hi are group g's.
    let bounds = |g: usize| (groups[g], groups.get(g + 1).copied().unwrap_or(m));
    let kv: usize = x.runs.iter().map(|r| r.1).sum();
    if kv == 0 {
        // Every column shared: each row is its group's shifted bias (+ beta·C).
        for g in 0..groups.len() {
            let (lo, hi) = bounds(g);
            let sh = &shift[g * n..(g + 1) * n];
            for i in lo..hi {
                let row = &mut c[i * ldc..i * ldc + n];
                for (v, sh) in row.iter_mut().zip(sh) {
                    let x = if beta == 0.0 { *sh } else { beta * *v + sh };
                    *v = if relu { x.max(0.0) } else { x };
                }
            }
        }
        return;
    }
    // The rows of op(B) the varying columns meet, copied run by run.
    b_var.clear();
    for &(lo, len) in &x.runs {
        for kk in lo..lo + len {
            if trans_b {
                b_var.extend((0..n).map(|o| b_at(kk, o)));
            } else {
                b_var.extend_from_slice(&b[kk * ldb..kk * ldb + n]);
            }
        }
    }
    // With one group its shift is the product's bias; with several, each group's is
    // added to its rows after the product (then the activation).
    let one = groups.len() == 1;
    let saved = ACTIVE.with(|a| a.replace(0));
    super::matmul_bias_act::<f32>(
        m,
        n,
        kv,
        alpha,
        &x.x_var[..m * kv],
        kv,
        false,
        b_var,
        n,
        false,
        beta,
        c,
        ldc,
        one.then_some(&shift[..n]),
        relu && one,
    );
    ACTIVE.with(|a| a.set(saved));
    if !one {
        for g in 0..groups.len() {
            let (lo, hi) = bounds(g);
            let sh = &shift[g * n..(g + 1) * n];
            for i in lo..hi {
                for (v, s) in c[i * ldc..i * ldc + n].iter_mut().zip(sh) {
                    let x = *v + s;
                    *v = if relu { x.max(0.0) } else { x };
                }
            }
        }
    }
}
