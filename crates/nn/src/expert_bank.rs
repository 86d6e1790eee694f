//! A bank of E expert MLPs with identical shapes over the same input. The first layer of
//! all experts is one fused `n_in × E·h1` GEMM (the dominant cost of an MMoE step); later
//! layers run per expert on column blocks of shared bank-layout buffers, so no copies.

use crate::batchnorm::BatchNorm;
use crate::linear::{init_bound, Activation, Linear, Rows, RowsMut};
use crate::mlp::{pick, GradBuf};
use crate::module::{with_name, Module};
use crate::{ensure_len, Float, Rng};

/// Expert bank; shapes: x n × n_in → y n × (E·d), expert e at columns e·d..(e+1)·d.
///
/// Every activation buffer uses the bank layout `n × E·w` (expert e's block of width w
/// at column e·w), so the per-feature BatchNorm of a layer is fused across experts too.
#[derive(Clone, Debug)]
pub struct ExpertBank<T> {
    n_in: usize,
    n_experts: usize,
    widths: Vec<usize>,
    first: Linear<T>,
    /// `rest[e][l - 1]` is layer `l ≥ 1` of expert `e`.
    rest: Vec<Vec<Linear<T>>>,
    norms: Vec<Option<BatchNorm<T>>>,
    lin_out: Vec<Vec<T>>,
    norm_out: Vec<Vec<T>>,
    grad_a: Vec<T>,
    grad_b: Vec<T>,
    n: usize,
}

impl<T: Float> ExpertBank<T> {
    /// `widths` are each expert's layer widths (at least one); hidden layers use ReLU,
    /// the last `last`; with `batch_norm` every ReLU layer is followed by a BatchNorm.
    pub fn new(
        n_in: usize,
        n_experts: usize,
        widths: &[usize],
        last: Activation,
        batch_norm: bool,
        rng: &mut Rng,
    ) -> Self {
        assert!(
            !widths.is_empty() && n_experts > 0,
            "ExpertBank: empty shape"
        );
        let act_of = |l: usize| {
            if l + 1 == widths.len() {
                last
            } else {
                Activation::Relu
            }
        };
        let e = n_experts;
        // Initialised with each expert's own fan-out, as if the experts were separate.
        let bound = init_bound(act_of(0), n_in, widths[0]);
        let first = Linear::with_bound(n_in, e * widths[0], act_of(0), bound, rng);
        let rest = (0..e)
            .map(|_| {
                (1..widths.len())
                    .map(|l| Linear::new(widths[l - 1], widths[l], act_of(l), rng))
                    .collect()
            })
            .collect();
        let norms = (0..widths.len())
            .map(|l| {
                (batch_norm && act_of(l) == Activation::Relu).then(|| BatchNorm::new(e * widths[l]))
            })
            .collect();
        let l = widths.len();
        ExpertBank {
            n_in,
            n_experts,
            widths: widths.to_vec(),
            first,
            rest,
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

    pub fn n_experts(&self) -> usize {
        self.n_experts
    }

    /// Width of one expert's output.
    pub fn out_dim(&self) -> usize {
        *self.widths.last().unwrap_or(&0)
    }

    pub fn widths(&self) -> &[usize] {
        &self.widths
    }

    /// Layer 0 of every expert, fused: `n_in × E·widths[0]`.
    pub fn first(&self) -> &Linear<T> {
        &self.first
    }

    /// `rest()[e][l - 1]` is layer `l ≥ 1` of expert `e`.
    pub fn rest(&self) -> &[Vec<Linear<T>>] {
        &self.rest
    }

    /// Per layer: the batch norm over all experts' columns after it, if any.
    pub fn norms(&self) -> &[Option<BatchNorm<T>>] {
        &self.norms
    }

    pub fn param_count(&self) -> usize {
        let rest: usize = self.rest.iter().flatten().map(Linear::param_count).sum();
        let bn: usize = self
            .norms
            .iter()
            .flatten()
            .map(BatchNorm::param_count)
            .sum();
        self.first.param_count() + rest + bn
    }

    fn layer_output(&self, l: usize) -> &[T] {
        let w = self.n_experts * self.widths[l];
        let buf = if self.norms[l].is_some() {
            &self.norm_out[l]
        } else {
            &self.lin_out[l]
        };
        &buf[..self.n * w]
    }

    /// Output of the last forward, `n × E·d`.
    pub fn output(&self) -> &[T] {
        self.layer_output(self.widths.len() - 1)
    }

    pub fn forward(&mut self, x: &[T], n: usize, train: bool) -> &[T] {
        assert!(
            x.len() >= n * self.n_in,
            "ExpertBank::forward: input too short"
        );
        self.n = n;
        let e = self.n_experts;
        for l in 0..self.widths.len() {
            let w = self.widths[l];
            let (lin_prev, lin_rest) = self.lin_out.split_at_mut(l);
            let (norm_prev, norm_rest) = self.norm_out.split_at_mut(l);
            let y = ensure_len(&mut lin_rest[0], n * e * w);
            if l == 0 {
                self.first.forward(x, n, y);
            } else {
                let wp = self.widths[l - 1];
                let input: &[T] = if self.norms[l - 1].is_some() {
                    &norm_prev[l - 1]
                } else {
                    &lin_prev[l - 1]
                };
                for (k, expert) in self.rest.iter().enumerate() {
                    let xin = Rows::new(&input[k * wp..n * e * wp], e * wp);
                    let yout = RowsMut::new(&mut y[k * w..], e * w);
                    expert[l - 1].forward_strided(xin, n, yout);
                }
            }
            if let Some(bn) = &mut self.norms[l] {
                let z = ensure_len(&mut norm_rest[0], n * e * w);
                bn.forward(y, n, z, train);
            }
        }
        self.output()
    }

    /// Backward for the last forward: `dy` (n × E·d) is used as scratch and overwritten;
    /// parameter gradients and `dx` (n × n_in) accumulate.
    pub fn backward(&mut self, x: &[T], dy: &mut [T], dx: Option<&mut [T]>, n: usize) {
        debug_assert_eq!(
            n, self.n,
            "ExpertBank::backward: batch differs from forward"
        );
        let e = self.n_experts;
        let max_w = e * self.widths.iter().copied().max().unwrap_or(0);
        ensure_len(&mut self.grad_a, n * max_w);
        ensure_len(&mut self.grad_b, n * max_w);
        let ExpertBank {
            n_in,
            widths,
            first,
            rest,
            norms,
            lin_out,
            norm_out,
            grad_a,
            grad_b,
            ..
        } = self;
        // `cur` holds ∂loss/∂(output of layer l); see Mlp::backward for the same scheme.
        let mut cur = GradBuf::Caller;
        let mut dx = dx;
        for l in (0..widths.len()).rev() {
            let w = widths[l];
            let y = &lin_out[l][..n * e * w];
            if let Some(bn) = &mut norms[l] {
                let (src, dst, next) = pick(cur, &mut *dy, grad_a, grad_b);
                let (sr, dr) = (Rows::new(&*src, e * w), RowsMut::new(dst, e * w));
                bn.backward_strided(Rows::new(y, e * w), sr, dr, false, n);
                cur = next;
            }
            let (src, dst, next) = pick(cur, &mut *dy, grad_a, grad_b);
            if l == 0 {
                let d = dx.take().map(|d| RowsMut::new(d, *n_in));
                let ys = Rows::new(y, e * w);
                first.backward_strided(
                    Rows::new(x, *n_in),
                    ys,
                    RowsMut::new(src, e * w),
                    d,
                    true,
                    n,
                );
            } else {
                let wp = widths[l - 1];
                let input: &[T] = if norms[l - 1].is_some() {
                    &norm_out[l - 1]
                } else {
                    &lin_out[l - 1]
                };
                for (k, expert) in rest.iter_mut().enumerate() {
                    let xin = Rows::new(&input[k * wp..n * e * wp], e * wp);
                    let ys = Rows::new(&y[k * w..], e * w);
                    let dys = RowsMut::new(&mut src[k * w..], e * w);
                    let dxs = RowsMut::new(&mut dst[k * wp..], e * wp);
                    expert[l - 1].backward_strided(xin, ys, dys, Some(dxs), false, n);
                }
                cur = next;
            }
        }
    }
}

impl<T: Float> Module<T> for ExpertBank<T> {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut [T], &mut [T])) {
        // Fused first layer and fused batch norms are shared blocks; later layers are
        // named per expert ("3.layer1.w").
        with_name(prefix, format_args!("layer0."), |p| {
            self.first.visit_params(p, f)
        });
        for (l, bn) in self.norms.iter_mut().enumerate() {
            if let Some(bn) = bn {
                with_name(prefix, format_args!("bn{l}."), |p| bn.visit_params(p, f));
            }
        }
        for (k, expert) in self.rest.iter_mut().enumerate() {
            for (i, lin) in expert.iter_mut().enumerate() {
                let l = i + 1;
                with_name(prefix, format_args!("{k}.layer{l}."), |p| {
                    lin.visit_params(p, f)
                });
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
