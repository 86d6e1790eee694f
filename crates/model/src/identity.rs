//! Identity switcher: K outputs all equal to the input, no parameters. Under per-task
//! towers it is the single-task baseline (no sharing beyond what feeds the input).

use crate::switcher::Switcher;
use mfh_nn::graph::GraphBuilder;
use mfh_nn::{ensure_len, Float, Module};

/// Identity; shapes: x n × d → K × (n × d), all K outputs a copy of x.
///
/// The copy lets `output` outlive the caller's `x` borrow, as the trait requires. All K
/// output gradients are one shared buffer (consumers add, so it holds their sum), which
/// backward adds into `dx`.
#[derive(Clone, Debug)]
pub struct Identity<T> {
    d: usize,
    k: usize,
    out: Vec<T>,
    d_out: Vec<T>,
    n: usize,
}

impl<T: Float> Identity<T> {
    pub fn new(n_in: usize, n_outputs: usize) -> Self {
        Identity {
            d: n_in,
            k: n_outputs,
            out: Vec::new(),
            d_out: Vec::new(),
            n: 0,
        }
    }

    fn len(&self) -> usize {
        self.n * self.d
    }
}

impl<T: Float> Module<T> for Identity<T> {
    fn visit_params(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, &mut [T], &mut [T])) {}
}

impl<T: Float> Switcher<T> for Identity<T> {
    fn in_dim(&self) -> usize {
        self.d
    }

    fn n_outputs(&self) -> usize {
        self.k
    }

    fn out_dim(&self) -> usize {
        self.d
    }

    fn forward(&mut self, x: &[T], n: usize, train: bool) {
        self.n = n;
        let len = self.len();
        ensure_len(&mut self.out, len).copy_from_slice(&x[..len]);
        let d_out = ensure_len(&mut self.d_out, len);
        if train {
            d_out.fill(T::zero());
        }
    }

    fn output(&self, k: usize) -> &[T] {
        assert!(k < self.k, "Identity: output {k} out of range");
        &self.out[..self.len()]
    }

    fn d_output_mut(&mut self, k: usize) -> &mut [T] {
        assert!(k < self.k, "Identity: output {k} out of range");
        let len = self.len();
        &mut self.d_out[..len]
    }

    fn output_and_grad(&mut self, k: usize) -> (&[T], &mut [T]) {
        assert!(k < self.k, "Identity: output {k} out of range");
        let len = self.len();
        (&self.out[..len], &mut self.d_out[..len])
    }

    fn backward(&mut self, _x: &[T], n: usize, dx: Option<&mut [T]>) {
        if let Some(dx) = dx {
            for (d, &g) in dx[..n * self.d].iter_mut().zip(&self.d_out) {
                *d += g;
            }
        }
    }

    fn param_count(&self) -> usize {
        0
    }

    fn export(&self, _g: &mut GraphBuilder, x: &str) -> Result<Vec<String>, String> {
        Ok(vec![x.to_string(); self.k])
    }

    fn describe(&self) -> Vec<String> {
        vec![format!(
            "identity → {} outputs of the {} inputs (0 params)",
            self.k, self.d
        )]
    }
}
