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
    /// FTRL-Proximal (McMahan et al., KDD 2013), per element, with L1 and L2
    /// regularisation: L1 drives weak elements to exactly zero. State per element: `z`
    /// and `n` (the sum of squared gradients).
    ///
    /// `σ = (sqrt(n + g²) − sqrt(n)) / α`, `z += g − σ·w`, `n += g²`, then
    /// `w = 0` if `|z| ≤ l1`, else `w = −(z − sign(z)·l1) / ((β + sqrt(n)) / α + l2)`.
    ///
    /// A new row keeps its random initialisation: its `z` starts at the value for which
    /// the closed form above gives the initial weight.
    Ftrl {
        alpha: f32,
        beta: f32,
        l1: f32,
        l2: f32,
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
            // Layout: z[0..dim] then n[0..dim].
            RowOptimizer::Ftrl { .. } => 2 * dim,
        }
    }

    /// Checks the hyper-parameters: finite, learning rates positive, the rest in range.
    pub fn validate(&self) -> Result<(), String> {
        let ok = match *self {
            RowOptimizer::Adagrad {
                lr,
                eps,
                initial_accumulator,
            } => lr > 0.0 && eps >= 0.0 && initial_accumulator >= 0.0,
            RowOptimizer::Adam {
                lr,
                beta1,
                beta2,
                eps,
            } => {
                lr > 0.0 && (0.0..1.0).contains(&beta1) && (0.0..1.0).contains(&beta2) && eps >= 0.0
            }
            RowOptimizer::Ftrl {
                alpha,
                beta,
                l1,
                l2,
            } => alpha > 0.0 && beta >= 0.0 && l1 >= 0.0 && l2 >= 0.0,
        };
        if ok {
            Ok(())
        } else {
            Err(format!("invalid row optimizer hyper-parameters {self:?}"))
        }
    }

    /// Writes the state of a freshly created row whose initial weights are `row`.
    pub(crate) fn init_state(&self, state: &mut [f32], row: &[f32]) {
        match *self {
            RowOptimizer::Adagrad {
                initial_accumulator,
                ..
            } => state.fill(initial_accumulator),
            RowOptimizer::Adam { .. } => state.fill(0.0),
            RowOptimizer::Ftrl {
                alpha,
                beta,
                l1,
                l2,
            } => {
                let (z, n) = state.split_at_mut(row.len());
                n.fill(0.0);
                let q = beta / alpha + l2;
                for (z, &w) in z.iter_mut().zip(row) {
                    // The z for which the closed form gives w back (n = 0).
                    *z = if w == 0.0 {
                        0.0
                    } else {
                        -w * q - w.signum() * l1
                    };
                }
            }
        }
    }

    /// The step-dependent learning-rate factor, computed once per batch rather than
    /// once per row. `step` is the 1-based global step; 0 is treated as 1 so Adam's
    /// bias correction never divides by zero.
    pub(crate) fn step_size(&self, step: u64) -> f32 {
        match *self {
            RowOptimizer::Adagrad { lr, .. } => lr,
            RowOptimizer::Ftrl { alpha, .. } => alpha,
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

    /// Applies one update to `row` given its summed gradient `grad` (inlined into the
    /// table's per-path update loop).
    #[inline(always)]
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
            RowOptimizer::Ftrl {
                alpha,
                beta,
                l1,
                l2,
            } => {
                let (z, n) = state.split_at_mut(row.len());
                for (((w, &g), z), n) in row.iter_mut().zip(grad).zip(z).zip(n) {
                    let n_new = *n + g * g;
                    let sigma = (n_new.sqrt() - n.sqrt()) / alpha;
                    *z += g - sigma * *w;
                    *n = n_new;
                    *w = if z.abs() <= l1 {
                        0.0
                    } else {
                        -(*z - z.signum() * l1) / ((beta + n_new.sqrt()) / alpha + l2)
                    };
                }
            }
        }
    }
}
