//! Shared-bottom switcher: one MLP whose output is handed to all K consumers.

use crate::shape::check_widths;
use crate::switcher::Switcher;
use mfh_nn::graph::GraphBuilder;
use mfh_nn::{ensure_len, with_name, Activation, Float, Mlp, Module, Rng};
use serde::{Deserialize, Serialize};

/// A shared bottom's architecture: the widths of its MLP (each layer ReLU, plus BatchNorm
/// when the model asks).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SharedBottomShape {
    pub layers: Vec<usize>,
}

impl SharedBottomShape {
    /// Checks the shape on its own (at least one layer, none of width 0).
    pub fn validate(&self) -> Result<(), String> {
        check_widths("shared_bottom layers", &self.layers, true)
    }
}

/// Shared bottom; shapes: x n × in_dim → K × (n × out_dim), all K outputs identical.
///
/// All K output gradients are one shared buffer: since consumers add into it, it holds
/// the sum of their gradients, which is exactly the bottom's output gradient.
#[derive(Clone, Debug)]
pub struct SharedBottom<T> {
    mlp: Mlp<T>,
    k: usize,
    d_out: Vec<T>,
    n: usize,
}

impl<T: Float> SharedBottom<T> {
    /// A shared bottom of `shape` over `n_in` inputs handed to `n_outputs` consumers,
    /// BatchNorm after every layer when `batch_norm`.
    pub fn new(
        n_in: usize,
        n_outputs: usize,
        shape: &SharedBottomShape,
        batch_norm: bool,
        rng: &mut Rng,
    ) -> Self {
        SharedBottom {
            mlp: Mlp::new(n_in, &shape.layers, Activation::Relu, batch_norm, rng),
            k: n_outputs,
            d_out: Vec::new(),
            n: 0,
        }
    }
}

impl<T: Float> Module<T> for SharedBottom<T> {
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut [T], &mut [T])) {
        with_name(prefix, format_args!("bottom."), |p| {
            self.mlp.visit_params(p, f)
        });
    }

    fn visit_buffers(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut [T])) {
        with_name(prefix, format_args!("bottom."), |p| {
            self.mlp.visit_buffers(p, f)
        });
    }
}

impl<T: Float> Switcher<T> for SharedBottom<T> {
    fn in_dim(&self) -> usize {
        self.mlp.n_in()
    }

    fn n_outputs(&self) -> usize {
        self.k
    }

    fn out_dim(&self) -> usize {
        self.mlp.out_dim()
    }

    fn forward(&mut self, x: &[T], n: usize, train: bool) {
        self.n = n;
        self.mlp.forward(x, n, train);
        let d = self.mlp.out_dim();
        let d_out = ensure_len(&mut self.d_out, n * d);
        if train {
            d_out.fill(T::zero());
        }
    }

    fn output(&self, k: usize) -> &[T] {
        assert!(k < self.k, "SharedBottom: output {k} out of range");
        self.mlp.output()
    }

    fn d_output_mut(&mut self, k: usize) -> &mut [T] {
        assert!(k < self.k, "SharedBottom: output {k} out of range");
        let len = self.n * self.mlp.out_dim();
        &mut self.d_out[..len]
    }

    fn output_and_grad(&mut self, k: usize) -> (&[T], &mut [T]) {
        assert!(k < self.k, "SharedBottom: output {k} out of range");
        let len = self.n * self.mlp.out_dim();
        (self.mlp.output(), &mut self.d_out[..len])
    }

    fn backward(&mut self, x: &[T], n: usize, dx: Option<&mut [T]>) {
        let len = n * self.mlp.out_dim();
        // The accumulator is consumed as scratch; the next forward zeroes it again.
        self.mlp.backward(x, &mut self.d_out[..len], dx, n);
    }

    fn param_count(&self) -> usize {
        self.mlp.param_count()
    }

    fn export(&self, g: &mut GraphBuilder, x: &str) -> Result<Vec<String>, String> {
        let y = g.scoped("bottom", |g| self.mlp.export(g, x));
        Ok(vec![y; self.k])
    }

    fn describe(&self) -> Vec<String> {
        let dims: Vec<String> = std::iter::once(self.mlp.n_in())
            .chain(self.mlp.layers().iter().map(|l| l.n_out()))
            .map(|d| d.to_string())
            .collect();
        let bn = if self.mlp.has_batch_norm() {
            ", batch norm"
        } else {
            ""
        };
        vec![
            format!(
                "shared bottom → {} outputs ({} params)",
                self.k,
                self.param_count()
            ),
            format!("  bottom: {}{bn}", dims.join("→")),
        ]
    }
}
