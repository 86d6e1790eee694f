//! The [`Switcher`] trait: one input representation in, K child representations out.
//! Switchers nest: output k of one switcher can be the input of another, with its
//! gradient buffer receiving the child's input gradient.

use mfh_nn::graph::GraphBuilder;
use mfh_nn::{Float, Module};

/// One input (n × in_dim) → K outputs (each n × out_dim).
///
/// Protocol for one step: `forward` (which in train mode also zeroes every output
/// gradient; an eval forward leaves them as they were), then the
/// consumers of output k *add* ∂loss/∂output_k into `d_output_mut(k)` (never overwrite:
/// implementations may back several outputs with one shared buffer), then `backward`.
pub trait Switcher<T: Float>: Module<T> + Send + Sync {
    /// Width of the input representation.
    fn in_dim(&self) -> usize;
    /// Number of child representations K.
    fn n_outputs(&self) -> usize;
    /// Width of each child representation.
    fn out_dim(&self) -> usize;
    /// Computes all K outputs for `n` rows of `x` and, when `train`, zeroes their gradients.
    fn forward(&mut self, x: &[T], n: usize, train: bool);
    /// Output k of the last forward, n × out_dim.
    fn output(&self, k: usize) -> &[T];
    /// Gradient accumulator of output k, n × out_dim.
    fn d_output_mut(&mut self, k: usize) -> &mut [T];
    /// Output k together with its gradient accumulator, for a consumer whose backward
    /// needs its input while writing its input gradient (a tower, a nested switcher).
    fn output_and_grad(&mut self, k: usize) -> (&[T], &mut [T]);
    /// Backward from the accumulated output gradients: parameter gradients and `dx`
    /// (n × in_dim) accumulate.
    fn backward(&mut self, x: &[T], n: usize, dx: Option<&mut [T]>);
    /// Cell routing: computes output k only for the rows `sel[k]` (indices into `x`,
    /// ascending), stored compactly: `output(k)` and its gradient are then
    /// `sel[k].len() × out_dim`, row j standing for input row `sel[k][j]`. Returns false,
    /// having done nothing, when this switcher cannot route; the caller then runs
    /// `forward`. A switcher that routes computes per-output parts (task experts, gates)
    /// on their own rows only.
    fn forward_routed(&mut self, _x: &[T], _n: usize, _sel: &[Vec<usize>], _train: bool) -> bool {
        false
    }
    /// Backward of a `forward_routed` that returned true, with the same `sel`.
    fn backward_routed(&mut self, _x: &[T], _n: usize, _sel: &[Vec<usize>], _dx: Option<&mut [T]>) {
        unreachable!("backward_routed called on a switcher that does not route")
    }
    /// Number of trainable scalars.
    fn param_count(&self) -> usize;
    /// Human-readable summary: one line per part, children indented by two spaces.
    fn describe(&self) -> Vec<String>;
    /// Adds the eval-mode forward, every output on every row, to `g` (see
    /// [`crate::export`]) for the input tensor `x` (n × in_dim); returns the K output
    /// tensors' names (each n × out_dim). The default refuses, naming the switcher.
    fn export(&self, _g: &mut GraphBuilder, _x: &str) -> Result<Vec<String>, String> {
        let name = self.describe().into_iter().next().unwrap_or_default();
        Err(format!("graph export is not implemented for `{name}`"))
    }
}
