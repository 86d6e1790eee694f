//! Multi-layer perceptron: a stack of [`Linear`] layers, ReLU on hidden layers, an
//! optional [`BatchNorm`] after every ReLU layer (Linear → ReLU → BatchNorm, as in the
//! reference TensorFlow models), and activation buffers owned by the stack.

use crate::batchnorm::BatchNorm;
use crate::linear::{Activation, Linear, Rows, RowsMut};
use crate::module::{with_name, Module};
use crate::{ensure_len, Float, Rng};

/// MLP; shapes: x n × n_in → y n × widths.last().
#[derive(Clone, Debug)]
pub struct Mlp<T> {
    n_in: usize,
    layers: Vec<Linear<T>>,
    norms: Vec<Option<BatchNorm<T>>>,
    /// Post-activation output of each Linear.
    lin_out: Vec<Vec<T>>,
    /// Output of each BatchNorm (unused for layers without one).
    norm_out: Vec<Vec<T>>,
    grad_a: Vec<T>,
    grad_b: Vec<T>,
    n: usize,
}

/// Which buffer holds the gradient w.r.t. the current layer's output during backward.
#[derive(Clone, Copy)]
pub(crate) enum GradBuf {
    Caller,
    A,
    B,
}

/// Splits the three gradient buffers into (current, scratch to write next) and names
/// the buffer that becomes current once the scratch is written.
pub(crate) fn pick<'a, T>(
    cur: GradBuf,
    caller: &'a mut [T],
    a: &'a mut [T],
    b: &'a mut [T],
) -> (&'a mut [T], &'a mut [T], GradBuf) {
    match cur {
        GradBuf::Caller => (caller, a, GradBuf::A),
        GradBuf::A => (a, b, GradBuf::B),
        GradBuf::B => (b, a, GradBuf::A),
    }
}

impl<T: Float> Mlp<T> {
    /// `widths` are the layer output widths (at least one). Hidden layers use ReLU, the
    /// last uses `last`; with `batch_norm` every ReLU layer is followed by a BatchNorm.
    pub fn new(
        n_in: usize,
        widths: &[usize],
        last: Activation,
        batch_norm: bool,
        rng: &mut Rng,
    ) -> Self {
        assert!(!widths.is_empty(), "Mlp needs at least one layer");
        let mut layers = Vec::with_capacity(widths.len());
        let mut norms = Vec::with_capacity(widths.len());
        let mut prev = n_in;
        for (i, &w) in widths.iter().enumerate() {
            let act = if i + 1 == widths.len() {
                last
            } else {
                Activation::Relu
            };
            layers.push(Linear::new(prev, w, act, rng));
            norms.push((batch_norm && act == Activation::Relu).then(|| BatchNorm::new(w)));
            prev = w;
        }
        let l = layers.len();
        Mlp {
            n_in,
            layers,
            norms,
            lin_out: vec![Vec::new(); l],
            norm_out: vec![Vec::new(); l],
            grad_a: Vec::new(),
            grad_b: Vec::new(),
            n: 0,
        }
    }

    pub fn n_in(&self) -> usize {
        self.n_in
    }

    pub fn out_dim(&self) -> usize {
        self.layers.last().map_or(self.n_in, |l| l.n_out())
    }

    pub fn layers(&self) -> &[Linear<T>] {
        &self.layers
    }

    /// Per layer: the batch norm after it, if any.
    pub fn norms(&self) -> &[Option<BatchNorm<T>>] {
        &self.norms
    }

    pub fn has_batch_norm(&self) -> bool {
        self.norms.iter().any(Option::is_some)
    }

    pub fn param_count(&self) -> usize {
        let lin: usize = self.layers.iter().map(Linear::param_count).sum();
        let bn: usize = self
            .norms
            .iter()
            .flatten()
            .map(BatchNorm::param_count)
            .sum();
        lin + bn
    }

    /// Output of layer `l` for the last forward (its BatchNorm output when it has one).
    fn layer_output(&self, l: usize) -> &[T] {
        let w = self.layers[l].n_out();
        let buf = if self.norms[l].is_some() {
            &self.norm_out[l]
        } else {
            &self.lin_out[l]
        };
        &buf[..self.n * w]
    }

    /// Output of the last forward, `n × out_dim`.
    pub fn output(&self) -> &[T] {
        self.layer_output(self.layers.len() - 1)
    }

    /// Runs the stack on `n` rows of `x` (`train` selects batch statistics in BatchNorm).
    pub fn forward(&mut self, x: &[T], n: usize, train: bool) -> &[T] {
        assert!(x.len() >= n * self.n_in, "Mlp::forward: input too short");
        self.n = n;
        for l in 0..self.layers.len() {
            let w = self.layers[l].n_out();
            let in_w = self.layers[l].n_in();
            let (lin_prev, lin_rest) = self.lin_out.split_at_mut(l);
            let (norm_prev, norm_rest) = self.norm_out.split_at_mut(l);
            let input: &[T] = if l == 0 {
                x
            } else if self.norms[l - 1].is_some() {
                &norm_prev[l - 1]
            } else {
                &lin_prev[l - 1]
            };
            let y = ensure_len(&mut lin_rest[0], n * w);
            self.layers[l].forward(&input[..n * in_w], n, y);
            if let Some(bn) = &mut self.norms[l] {
                let z = ensure_len(&mut norm_rest[0], n * w);
                bn.forward(y, n, z, train);
            }
        }
        self.output()
    }

    /// Backward for the last forward: `dy` (n × out_dim) is used as scratch and
    /// overwritten; parameter gradients and `dx` (n × n_in) accumulate.
    pub fn backward(&mut self, x: &[T], dy: &mut [T], mut dx: Option<&mut [T]>, n: usize) {
        debug_assert_eq!(n, self.n, "Mlp::backward: batch differs from forward");
        let max_w = self
            .layers
            .iter()
            .map(|l| l.n_out().max(l.n_in()))
            .max()
            .unwrap_or(0);
        ensure_len(&mut self.grad_a, n * max_w);
        ensure_len(&mut self.grad_b, n * max_w);
        let Mlp {
            n_in,
            layers,
            norms,
            lin_out,
            norm_out,
            grad_a,
            grad_b,
            ..
        } = self;
        let mut cur = GradBuf::Caller;
        for l in (0..layers.len()).rev() {
            let w = layers[l].n_out();
            let y = Rows::new(&lin_out[l][..n * w], w);
            if let Some(bn) = &mut norms[l] {
                let (src, dst, next) = pick(cur, &mut *dy, grad_a, grad_b);
                bn.backward_strided(y, Rows::new(src, w), RowsMut::new(dst, w), false, n);
                cur = next;
            }
            let (src, dst, next) = pick(cur, &mut *dy, grad_a, grad_b);
            let dy_l = RowsMut::new(src, w);
            if l == 0 {
                let d = dx.take().map(|d| RowsMut::new(d, *n_in));
                layers[0].backward_strided(Rows::new(x, *n_in), y, dy_l, d, true, n);
            } else {
                let in_w = layers[l].n_in();
                let input = if norms[l - 1].is_some() {
                    &norm_out[l - 1]
                } else {
                    &lin_out[l - 1]
                };
                let d = Some(RowsMut::new(dst, in_w));
                layers[l].backward_strided(Rows::new(input, in_w), y, dy_l, d, false, n);
                cur = next;
            }
        }
    }
}

impl<T: Float> Module<T> for Mlp<T> {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut [T], &mut [T])) {
        for (l, (lin, bn)) in self.layers.iter_mut().zip(&mut self.norms).enumerate() {
            with_name(prefix, format_args!("layer{l}."), |p| {
                lin.visit_params(p, f)
            });
            if let Some(bn) = bn {
                with_name(prefix, format_args!("bn{l}."), |p| bn.visit_params(p, f));
            }
        }
    }

    fn visit_buffers(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut [T])) {
        for (l, bn) in self.norms.iter_mut().enumerate() {
            if let Some(bn) = bn {
                with_name(prefix, format_args!("bn{l}."), |p| bn.visit_buffers(p, f));
            }
        }
    }
}
