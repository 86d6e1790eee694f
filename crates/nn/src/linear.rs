//! Fully connected layer `y = act(x·W + b)` with an optional fused ReLU, plus the
//! strided row views that let a layer read or write a column block of a wider buffer.

use crate::kernels::relu_mask_col_sums;
use crate::module::{with_name, Module};
use crate::product::{matmul, matmul_bias_act};
use crate::{Float, Rng};

/// Read-only view of `n` rows; row `i` starts at `data[i * stride]`.
#[derive(Clone, Copy, Debug)]
pub struct Rows<'a, T> {
    pub data: &'a [T],
    pub stride: usize,
}

/// Mutable view of `n` rows; row `i` starts at `data[i * stride]`.
#[derive(Debug)]
pub struct RowsMut<'a, T> {
    pub data: &'a mut [T],
    pub stride: usize,
}

impl<'a, T> Rows<'a, T> {
    pub fn new(data: &'a [T], stride: usize) -> Self {
        Rows { data, stride }
    }
}

impl<'a, T> RowsMut<'a, T> {
    pub fn new(data: &'a mut [T], stride: usize) -> Self {
        RowsMut { data, stride }
    }
}

/// Activation fused into a [`Linear`] layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Identity,
    Relu,
}

/// Uniform init bound: He/Kaiming (`√(6/fan_in)`) before a ReLU, Xavier/Glorot
/// (`√(6/(fan_in+fan_out))`) otherwise.
pub fn init_bound(act: Activation, fan_in: usize, fan_out: usize) -> f64 {
    match act {
        Activation::Relu => (6.0 / fan_in.max(1) as f64).sqrt(),
        Activation::Identity => (6.0 / (fan_in + fan_out).max(1) as f64).sqrt(),
    }
}

/// Dense layer; shapes: x n × n_in → y n × n_out.
///
/// Parameters live in one flat vector: `W` row-major `n_in × n_out`, then the bias
/// (`n_out`); gradients have the same layout.
#[derive(Clone, Debug)]
pub struct Linear<T> {
    n_in: usize,
    n_out: usize,
    act: Activation,
    params: Vec<T>,
    grads: Vec<T>,
}

impl<T: Float> Linear<T> {
    /// A layer with the default init for its activation and a zero bias.
    pub fn new(n_in: usize, n_out: usize, act: Activation, rng: &mut Rng) -> Self {
        Self::with_bound(n_in, n_out, act, init_bound(act, n_in, n_out), rng)
    }

    /// A layer with weights uniform in `[-bound, bound)` (row-major draw order) and a
    /// zero bias. Expert banks use it to initialise a fused block as separate experts.
    pub fn with_bound(
        n_in: usize,
        n_out: usize,
        act: Activation,
        bound: f64,
        rng: &mut Rng,
    ) -> Self {
        let nw = n_in * n_out;
        let mut params = vec![T::zero(); nw + n_out];
        for w in &mut params[..nw] {
            *w = T::from_f64(rng.uniform_range(-bound, bound));
        }
        Linear {
            n_in,
            n_out,
            act,
            params,
            grads: vec![T::zero(); nw + n_out],
        }
    }

    pub fn n_in(&self) -> usize {
        self.n_in
    }

    pub fn n_out(&self) -> usize {
        self.n_out
    }

    pub fn activation(&self) -> Activation {
        self.act
    }

    /// `W` then bias, flat.
    pub fn params(&self) -> &[T] {
        &self.params
    }

    pub fn params_mut(&mut self) -> &mut [T] {
        &mut self.params
    }

    pub fn grads(&self) -> &[T] {
        &self.grads
    }

    pub(crate) fn grads_mut(&mut self) -> &mut [T] {
        &mut self.grads
    }

    /// `W`, row-major `n_in × n_out`.
    pub fn weight(&self) -> &[T] {
        &self.params[..self.n_in * self.n_out]
    }

    pub fn bias(&self) -> &[T] {
        &self.params[self.n_in * self.n_out..]
    }

    pub fn param_count(&self) -> usize {
        self.params.len()
    }

    /// `y = act(x·W + b)` for `n` contiguous rows.
    pub fn forward(&self, x: &[T], n: usize, y: &mut [T]) {
        self.forward_strided(Rows::new(x, self.n_in), n, RowsMut::new(y, self.n_out));
    }

    /// [`Linear::forward`] over strided row views.
    pub fn forward_strided(&self, x: Rows<'_, T>, n: usize, y: RowsMut<'_, T>) {
        let (ni, no) = (self.n_in, self.n_out);
        // Bias and ReLU applied as the product writes each tile of the output.
        matmul_bias_act(
            n,
            no,
            ni,
            T::one(),
            x.data,
            x.stride,
            false,
            self.weight(),
            no,
            false,
            T::zero(),
            y.data,
            y.stride,
            Some(self.bias()),
            self.act == Activation::Relu,
        );
    }

    /// Accumulates parameter gradients and `dx += dy'·Wᵀ`, where `dy'` is `dy` masked
    /// by the ReLU (the mask is applied to `dy` in place). `y` is this layer's output.
    pub fn backward(&mut self, x: &[T], y: &[T], dy: &mut [T], dx: Option<&mut [T]>, n: usize) {
        let (ni, no) = (self.n_in, self.n_out);
        self.backward_strided(
            Rows::new(x, ni),
            Rows::new(y, no),
            RowsMut::new(dy, no),
            dx.map(|d| RowsMut::new(d, ni)),
            true,
            n,
        );
    }

    /// [`Linear::backward`] over strided views; `accumulate_dx == false` overwrites `dx`
    /// (for scratch buffers that would otherwise need zeroing).
    pub fn backward_strided(
        &mut self,
        x: Rows<'_, T>,
        y: Rows<'_, T>,
        dy: RowsMut<'_, T>,
        dx: Option<RowsMut<'_, T>>,
        accumulate_dx: bool,
        n: usize,
    ) {
        let (ni, no) = (self.n_in, self.n_out);
        let (gw, gb) = self.grads.split_at_mut(ni * no);
        // ReLU mask and bias gradient in one pass over dy.
        let relu = self.act == Activation::Relu;
        relu_mask_col_sums(dy.data, dy.stride, y.data, y.stride, n, relu, gb);
        // dW += xᵀ·dy
        matmul(
            ni,
            no,
            n,
            T::one(),
            x.data,
            x.stride,
            true,
            dy.data,
            dy.stride,
            false,
            T::one(),
            gw,
            no,
        );
        if let Some(dx) = dx {
            let beta = if accumulate_dx { T::one() } else { T::zero() };
            // dx (+)= dy·Wᵀ
            matmul(
                n,
                ni,
                no,
                T::one(),
                dy.data,
                dy.stride,
                false,
                &self.params[..ni * no],
                no,
                true,
                beta,
                dx.data,
                dx.stride,
            );
        }
    }
}

impl<T: Float> Module<T> for Linear<T> {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut [T], &mut [T])) {
        let nw = self.n_in * self.n_out;
        let (pw, pb) = self.params.split_at_mut(nw);
        let (gw, gb) = self.grads.split_at_mut(nw);
        with_name(prefix, format_args!("w"), |name| f(name, pw, gw));
        with_name(prefix, format_args!("b"), |name| f(name, pb, gb));
    }
}
