//! Row-sparse optimizers: the update applied to one embedding row and its state.

/// Optimizer for embedding rows. Only rows present in a batch are ever updated.
#[derive(Clone, Debug, PartialEq)]
pub enum RowOptimizer {
    /// Row-wise Adagrad: a single accumulator per row (not per element), which keeps
    /// optimizer state at one float per row for tables with millions of rows.
    ///
    /// `acc += mean_j(g_j²)`, then `row_j -= lr · g_j / (sqrt(acc) + eps)`.
    Adagrad {
        lr: f32,
        eps: f32,
        initial_accumulator: f32,
    },
    /// Lazy Adam (as PyTorch `SparseAdam`): per-element first and second moments,
    /// updated only for rows in the batch; bias correction uses the global step.
    ///
    /// `m = β1·m + (1-β1)·g`, `v = β2·v + (1-β2)·g²`,
    /// `row -= lr · sqrt(1-β2^t)/(1-β1^t) · m / (sqrt(v) + eps)`.
    Adam {
        lr: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
    },
}

impl RowOptimizer {
    /// Row-wise Adagrad with lr 0.05, eps 1e-8 and a zero initial accumulator.
    pub fn default_adagrad() -> Self {
        RowOptimizer::Adagrad {
            lr: 0.05,
            eps: 1e-8,
            initial_accumulator: 0.0,
        }
    }

    /// Floats of optimizer state kept per row of width `dim`.
    pub fn state_width(&self, dim: usize) -> usize {
        match self {
            RowOptimizer::Adagrad { .. } => 1,
            // Layout: m[0..dim] then v[0..dim].
            RowOptimizer::Adam { .. } => 2 * dim,
        }
    }

    /// Writes the state of a freshly created row.
    pub(crate) fn init_state(&self, state: &mut [f32]) {
        match self {
            RowOptimizer::Adagrad {
                initial_accumulator,
                ..
            } => state.fill(*initial_accumulator),
            RowOptimizer::Adam { .. } => state.fill(0.0),
        }
    }

    /// The step-dependent learning-rate factor, computed once per batch rather than
    /// once per row. `step` is the 1-based global step; 0 is treated as 1 so Adam's
    /// bias correction never divides by zero.
    pub(crate) fn step_size(&self, step: u64) -> f32 {
        match *self {
            RowOptimizer::Adagrad { lr, .. } => lr,
            RowOptimizer::Adam {
                lr, beta1, beta2, ..
            } => {
                // f64 keeps 1-β^t accurate when β is close to 1.
                let t = step.max(1) as f64;
                let bc1 = 1.0 - (beta1 as f64).powf(t);
                let bc2 = 1.0 - (beta2 as f64).powf(t);
                (lr as f64 * bc2.sqrt() / bc1) as f32
            }
        }
    }

    /// Applies one update to `row` given its summed gradient `grad`.
    #[inline]
    pub(crate) fn update_row(
        &self,
        step_size: f32,
        row: &mut [f32],
        state: &mut [f32],
        grad: &[f32],
    ) {
        debug_assert_eq!(row.len(), grad.len());
        match *self {
            RowOptimizer::Adagrad { eps, .. } => {
                let mean_sq = grad.iter().map(|g| g * g).sum::<f32>() / grad.len() as f32;
                state[0] += mean_sq;
                let scale = step_size / (state[0].sqrt() + eps);
                for (w, g) in row.iter_mut().zip(grad) {
                    *w -= scale * g;
                }
            }
            RowOptimizer::Adam {
                beta1, beta2, eps, ..
            } => {
                let (m, v) = state.split_at_mut(row.len());
                for (((w, g), m), v) in row.iter_mut().zip(grad).zip(m).zip(v) {
                    *m = beta1 * *m + (1.0 - beta1) * g;
                    *v = beta2 * *v + (1.0 - beta2) * g * g;
                    *w -= step_size * *m / (v.sqrt() + eps);
                }
            }
        }
    }
}
