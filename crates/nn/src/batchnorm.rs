//! Per-feature batch normalisation. Training normalises with the batch statistics and
//! updates running averages (Keras semantics: `running = momentum·running +
//! (1 − momentum)·batch`, biased batch variance); evaluation uses the running averages.

use crate::kernels::col_sums_acc;
use crate::linear::{Rows, RowsMut};
use crate::module::{with_name, Module};
use crate::Float;

/// Batch norm over `dim` features; shapes: x n × dim → y n × dim.
#[derive(Clone, Debug)]
pub struct BatchNorm<T> {
    dim: usize,
    momentum: T,
    eps: T,
    /// gamma (`dim`) then beta (`dim`).
    params: Vec<T>,
    grads: Vec<T>,
    running_mean: Vec<T>,
    running_var: Vec<T>,
    /// Statistics the last forward normalised with (batch or running), kept for backward.
    mean: Vec<T>,
    inv_std: Vec<T>,
    scale: Vec<T>,
    shift: Vec<T>,
    sum_dy: Vec<T>,
    sum_dy_xhat: Vec<T>,
    last_train: bool,
}

impl<T: Float> BatchNorm<T> {
    /// gamma 1, beta 0, running mean 0 / variance 1, momentum 0.99, eps 1e-5.
    pub fn new(dim: usize) -> Self {
        Self::with_momentum_eps(dim, 0.99, 1e-5)
    }

    pub fn with_momentum_eps(dim: usize, momentum: f64, eps: f64) -> Self {
        let mut params = vec![T::one(); 2 * dim];
        params[dim..].fill(T::zero());
        let z = vec![T::zero(); dim];
        BatchNorm {
            dim,
            momentum: T::from_f64(momentum),
            eps: T::from_f64(eps),
            params,
            grads: vec![T::zero(); 2 * dim],
            running_mean: z.clone(),
            running_var: vec![T::one(); dim],
            mean: z.clone(),
            inv_std: z.clone(),
            scale: z.clone(),
            shift: z.clone(),
            sum_dy: z.clone(),
            sum_dy_xhat: z,
            last_train: false,
        }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn param_count(&self) -> usize {
        self.params.len()
    }

    pub fn running_mean(&self) -> &[T] {
        &self.running_mean
    }

    pub fn running_var(&self) -> &[T] {
        &self.running_var
    }

    /// Scale γ (learned).
    pub fn gamma(&self) -> &[T] {
        &self.params[..self.dim]
    }

    /// Shift β (learned).
    pub fn beta(&self) -> &[T] {
        &self.params[self.dim..]
    }

    pub fn eps(&self) -> T {
        self.eps
    }

    /// Normalises `n` contiguous rows.
    pub fn forward(&mut self, x: &[T], n: usize, y: &mut [T], train: bool) {
        let d = self.dim;
        self.forward_strided(Rows::new(x, d), n, RowsMut::new(y, d), train);
    }

    /// [`BatchNorm::forward`] over strided views.
    pub fn forward_strided(&mut self, x: Rows<'_, T>, n: usize, y: RowsMut<'_, T>, train: bool) {
        let d = self.dim;
        let one = T::one();
        if train {
            // `inv_std` holds the batch variance until converted below.
            col_mean_var(x.data, x.stride, n, &mut self.mean, &mut self.inv_std);
            let m = self.momentum;
            for j in 0..d {
                self.running_mean[j] = m * self.running_mean[j] + (one - m) * self.mean[j];
                self.running_var[j] = m * self.running_var[j] + (one - m) * self.inv_std[j];
                self.inv_std[j] = one / (self.inv_std[j] + self.eps).sqrt();
            }
        } else {
            self.mean.copy_from_slice(&self.running_mean);
            for (s, &v) in self.inv_std.iter_mut().zip(&self.running_var) {
                *s = one / (v + self.eps).sqrt();
            }
        }
        self.last_train = train;
        let (gamma, beta) = self.params.split_at(d);
        for j in 0..d {
            self.scale[j] = gamma[j] * self.inv_std[j];
            self.shift[j] = beta[j] - self.mean[j] * self.scale[j];
        }
        col_affine(
            x.data,
            x.stride,
            n,
            &self.scale,
            &self.shift,
            y.data,
            y.stride,
        );
    }

    /// Accumulates gamma/beta gradients and `dx` for the last forward (`x` its input).
    pub fn backward(&mut self, x: &[T], dy: &[T], dx: &mut [T], n: usize) {
        let d = self.dim;
        self.backward_strided(
            Rows::new(x, d),
            Rows::new(dy, d),
            RowsMut::new(dx, d),
            true,
            n,
        );
    }

    /// [`BatchNorm::backward`] over strided views; `accumulate == false` overwrites `dx`.
    pub fn backward_strided(
        &mut self,
        x: Rows<'_, T>,
        dy: Rows<'_, T>,
        dx: RowsMut<'_, T>,
        accumulate: bool,
        n: usize,
    ) {
        let d = self.dim;
        bn_backward_sums(
            x.data,
            x.stride,
            dy.data,
            dy.stride,
            n,
            &self.mean,
            &self.inv_std,
            &mut self.sum_dy,
            &mut self.sum_dy_xhat,
        );
        let (gg, gb) = self.grads.split_at_mut(d);
        for j in 0..d {
            gg[j] += self.sum_dy_xhat[j];
            gb[j] += self.sum_dy[j];
        }
        if !self.last_train {
            // Running statistics are constants, so dx = scale·dy: the batch terms vanish.
            self.sum_dy.fill(T::zero());
            self.sum_dy_xhat.fill(T::zero());
        }
        bn_backward_dx(
            x.data,
            x.stride,
            dy.data,
            dy.stride,
            n,
            &self.mean,
            &self.inv_std,
            &self.scale,
            &self.sum_dy,
            &self.sum_dy_xhat,
            dx.data,
            dx.stride,
            accumulate,
        );
    }
}

impl<T: Float> Module<T> for BatchNorm<T> {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut [T], &mut [T])) {
        let d = self.dim;
        let (pg, pb) = self.params.split_at_mut(d);
        let (gg, gb) = self.grads.split_at_mut(d);
        with_name(prefix, format_args!("gamma"), |name| f(name, pg, gg));
        with_name(prefix, format_args!("beta"), |name| f(name, pb, gb));
    }

    fn visit_buffers(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut [T])) {
        with_name(prefix, format_args!("running_mean"), |name| {
            f(name, &mut self.running_mean)
        });
        with_name(prefix, format_args!("running_var"), |name| {
            f(name, &mut self.running_var)
        });
    }
}

/// Per-column mean and biased variance of `n` rows of width `mean.len()` at stride `ld`.
/// Two passes (mean first) so the variance does not suffer from cancellation.
pub fn col_mean_var<T: Float>(x: &[T], ld: usize, n: usize, mean: &mut [T], var: &mut [T]) {
    mfh_cpu::dispatch!(mfh_cpu::path(), col_mean_var_on(x, ld, n, mean, var))
}

#[inline(always)]
fn col_mean_var_on<T: Float>(x: &[T], ld: usize, n: usize, mean: &mut [T], var: &mut [T]) {
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
    mfh_cpu::dispatch!(
        mfh_cpu::path(),
        col_affine_on(x, ldx, n, scale, shift, y, ldy)
    )
}

#[inline(always)]
fn col_affine_on<T: Float>(
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
    mfh_cpu::dispatch!(
        mfh_cpu::path(),
        bn_backward_sums_on(x, ldx, dy, lddy, n, mean, inv_std, sum_dy, sum_dy_xhat)
    )
}

#[allow(clippy::too_many_arguments)] // two strided inputs, two statistics, two outputs
#[inline(always)]
fn bn_backward_sums_on<T: Float>(
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
    mfh_cpu::dispatch!(
        mfh_cpu::path(),
        bn_backward_dx_on(
            x,
            ldx,
            dy,
            lddy,
            n,
            mean,
            inv_std,
            scale,
            sum_dy,
            sum_dy_xhat,
            dx,
            lddx,
            accumulate
        )
    )
}

#[allow(clippy::too_many_arguments)] // the sums of `bn_backward_sums` plus strided I/O
#[inline(always)]
fn bn_backward_dx_on<T: Float>(
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
