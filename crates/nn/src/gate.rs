//! Mixture-of-experts gate: optional hidden MLP, a linear map to one logit per expert,
//! then softmax (weights sum to 1) or sigmoid/E (independent weights in (0, 1/E)).

use crate::kernels::dot;
use crate::linear::{Activation, Linear, Rows, RowsMut};
use crate::mlp::Mlp;
use crate::module::{with_name, Module};
use crate::{ensure_len, Float, Rng};

/// How gate logits become expert weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateActivation {
    Softmax,
    /// Elementwise `sigmoid(z) / E`.
    SigmoidOverN,
}

/// Gate; shapes: x n × n_in → weights n × n_experts.
#[derive(Clone, Debug)]
pub struct Gate<T> {
    hidden: Option<Mlp<T>>,
    proj: Linear<T>,
    act: GateActivation,
    logits: Vec<T>,
    weights: Vec<T>,
    d_logits: Vec<T>,
    d_hidden: Vec<T>,
    n: usize,
}

impl<T: Float> Gate<T> {
    /// `hidden` are widths of ReLU layers before the projection (may be empty).
    pub fn new(
        n_in: usize,
        hidden: &[usize],
        n_experts: usize,
        act: GateActivation,
        rng: &mut Rng,
    ) -> Self {
        let hidden =
            (!hidden.is_empty()).then(|| Mlp::new(n_in, hidden, Activation::Relu, false, rng));
        let proj_in = hidden.as_ref().map_or(n_in, Mlp::out_dim);
        Gate {
            hidden,
            proj: Linear::new(proj_in, n_experts, Activation::Identity, rng),
            act,
            logits: Vec::new(),
            weights: Vec::new(),
            d_logits: Vec::new(),
            d_hidden: Vec::new(),
            n: 0,
        }
    }

    pub fn n_experts(&self) -> usize {
        self.proj.n_out()
    }

    pub fn activation(&self) -> GateActivation {
        self.act
    }

    /// The ReLU layers before the projection, if any.
    pub fn hidden(&self) -> Option<&Mlp<T>> {
        self.hidden.as_ref()
    }

    /// The map to one logit per expert.
    pub fn proj(&self) -> &Linear<T> {
        &self.proj
    }

    pub(crate) fn proj_mut(&mut self) -> &mut Linear<T> {
        &mut self.proj
    }

    pub fn param_count(&self) -> usize {
        self.proj.param_count() + self.hidden.as_ref().map_or(0, Mlp::param_count)
    }

    /// Expert weights of the last forward, `n × n_experts`.
    pub fn weights(&self) -> &[T] {
        &self.weights[..self.n * self.n_experts()]
    }

    pub fn forward(&mut self, x: &[T], n: usize, train: bool) -> &[T] {
        let e = self.n_experts();
        self.n = n;
        let h: &[T] = match &mut self.hidden {
            Some(mlp) => mlp.forward(x, n, train),
            None => x,
        };
        let z = ensure_len(&mut self.logits, n * e);
        self.proj.forward(h, n, z);
        let p = ensure_len(&mut self.weights, n * e);
        match self.act {
            GateActivation::Softmax => softmax_rows(z, p, n, e),
            GateActivation::SigmoidOverN => sigmoid_over_n(z, p, e),
        }
        self.weights()
    }

    /// Given `dg` (n × n_experts) = ∂loss/∂weights, accumulates parameter gradients and
    /// `dx` (n × n_in).
    pub fn backward(&mut self, x: &[T], dg: &[T], dx: Option<&mut [T]>, n: usize) {
        let e = self.n_experts();
        let p = &self.weights[..n * e];
        let dz = ensure_len(&mut self.d_logits, n * e);
        match self.act {
            GateActivation::Softmax => softmax_backward_rows(p, &dg[..n * e], dz, n, e),
            GateActivation::SigmoidOverN => sigmoid_over_n_backward(p, &dg[..n * e], dz, e),
        }
        let z = Rows::new(&self.logits[..n * e], e);
        match &mut self.hidden {
            None => {
                let ni = self.proj.n_in();
                let d = dx.map(|d| RowsMut::new(d, ni));
                self.proj
                    .backward_strided(Rows::new(x, ni), z, RowsMut::new(dz, e), d, true, n);
            }
            Some(mlp) => {
                let hw = mlp.out_dim();
                let dh = ensure_len(&mut self.d_hidden, n * hw);
                let h = Rows::new(mlp.output(), hw);
                let d = Some(RowsMut::new(&mut *dh, hw));
                self.proj
                    .backward_strided(h, z, RowsMut::new(dz, e), d, false, n);
                mlp.backward(x, dh, dx, n);
            }
        }
    }
}

impl<T: Float> Module<T> for Gate<T> {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut [T], &mut [T])) {
        if let Some(mlp) = &mut self.hidden {
            with_name(prefix, format_args!("hidden."), |p| mlp.visit_params(p, f));
        }
        with_name(prefix, format_args!("proj."), |p| {
            self.proj.visit_params(p, f)
        });
    }
}

/// Row-wise softmax of `z` (`n × e`, contiguous) into `p`.
pub fn softmax_rows<T: Float>(z: &[T], p: &mut [T], n: usize, e: usize) {
    mfh_cpu::dispatch!(mfh_cpu::path(), softmax_rows_on(z, p, n, e))
}

#[inline(always)]
fn softmax_rows_on<T: Float>(z: &[T], p: &mut [T], n: usize, e: usize) {
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
    mfh_cpu::dispatch!(mfh_cpu::path(), softmax_backward_rows_on(p, dp, dz, n, e))
}

#[inline(always)]
fn softmax_backward_rows_on<T: Float>(p: &[T], dp: &[T], dz: &mut [T], n: usize, e: usize) {
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
    mfh_cpu::dispatch!(mfh_cpu::path(), sigmoid_over_n_on(z, p, e))
}

#[inline(always)]
fn sigmoid_over_n_on<T: Float>(z: &[T], p: &mut [T], e: usize) {
    let inv_e = T::one() / T::from_usize(e);
    for (pv, &zv) in p.iter_mut().zip(z) {
        *pv = inv_e / (T::one() + (-zv).exp());
    }
}

/// Backward of [`sigmoid_over_n`]: `dz = dp · σ(1 − σ) / e = dp · p · (1 − e·p)`.
pub fn sigmoid_over_n_backward<T: Float>(p: &[T], dp: &[T], dz: &mut [T], e: usize) {
    mfh_cpu::dispatch!(mfh_cpu::path(), sigmoid_over_n_backward_on(p, dp, dz, e))
}

#[inline(always)]
fn sigmoid_over_n_backward_on<T: Float>(p: &[T], dp: &[T], dz: &mut [T], e: usize) {
    let ef = T::from_usize(e);
    for ((d, &pv), &dpv) in dz.iter_mut().zip(p).zip(dp) {
        *d = dpv * pv * (T::one() - ef * pv);
    }
}
