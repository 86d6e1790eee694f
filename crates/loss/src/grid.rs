//! [`GridLoss`]: the masked, reduced, optionally uncertainty-weighted loss of a batch
//! (with ESMM funnels and an AITM calibration penalty),
//! its gradient with respect to the logits and the learned log-variances, and the
//! predictions read from the same logits.

use crate::pointwise::{logloss_with_logit, logloss_with_prob, sigmoid, squared_error};
use crate::spec::{LossSpec, Reduction};
use mfh_nn::{with_name, Float, Module};

/// The loss over the task grid.
///
/// **Masking.** Row `i` in cell `c` is active for task `t = b·n_cells + c` when its label
/// for behaviour `b` is finite; a row trains only its own cell's tasks.
///
/// **Reduction.** Per pair `ℓ_it` is logloss on the logit (binary) or squared error
/// (regression), reduced by [`Reduction`] with the static weights `w_t`. Write the
/// result as `Σ_t R_t`, `R_t` task `t`'s share (e.g. `w_t·L_t` for `TaskMean`).
///
/// **Uncertainty weighting** (Kendall, Gal & Cipolla 2018), when enabled: each task has
/// a learned `s_t = log σ_t²` (initially 0) and the objective is
/// `Σ_t [exp(−s_t)·R_t + s_t]` over the tasks with at least one active row in the batch
/// (absent tasks add nothing and get no gradient). Binary and regression tasks use this
/// same form; the paper's `1/(2σ²)` for regression only rescales it. It is defined with
/// [`Reduction::TaskMean`] in mind (`R_t = w_t·L_t`); with the other reductions `R_t` is
/// the task's share of that reduction.
///
/// **ESMM funnels.** For a pair `(a, b)` the logit `z_b` of task `(b, c)` is read as
/// `logit p(b | a)`, and `b`'s loss on every row of the cell with a `b` label is the
/// logloss of `p̂_b = σ(z_a)·σ(z_b)` (clipped to [`PROB_MIN`](crate::PROB_MIN),
/// [`PROB_MAX`](crate::PROB_MAX)), with gradients to both logits of that row and cell.
/// Chains multiply on: `a → b → c` gives `p̂_c = σ(z_a)·σ(z_b)·σ(z_c)`. `a`'s own
/// loss is unchanged.
///
/// **AITM calibration.** For a pair `(a, b, α)`, every row `i` of cell `c` with both
/// labels present adds `α·max(σ(z_b) − σ(z_a), 0)` (z the logits of tasks `(a, c)` and
/// `(b, c)`), divided by the denominator the reduction uses for task `(b, c)`: the batch's
/// active pairs (`ActiveMean`), task `(b, c)`'s active rows (`TaskMean`) or the batch's
/// rows (`BatchMean`). So for each cell the penalty is a mean over the same rows as task
/// `(b, c)`'s loss, rows lacking the `a` label counting as 0. It is not multiplied by the
/// static weight `w_t` (α is its weight) nor by the uncertainty factor, and adds nothing
/// to `per_task` / `per_behaviour`; [`LossValue::calibration`] reports it. At a tie
/// `σ(z_b) = σ(z_a)` the gradient taken is 0. Predictions are unchanged.
///
/// The log-variances are the loss's only parameters: it implements [`Module`] so the
/// trainer's optimiser steps them, and [`GridLoss::compute`] accumulates their gradients.
#[derive(Debug, Clone, PartialEq)]
pub struct GridLoss<T = f32> {
    spec: LossSpec,
    /// Per behaviour, the `a` of the funnel it is the `b` of.
    parent: Vec<Option<usize>>,
    /// `s_t` per task; empty unless uncertainty weighting is on.
    log_vars: Vec<T>,
    log_var_grads: Vec<T>,
}

/// What one batch's loss came to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LossValue {
    /// The reduced objective (what the gradient is of). With uncertainty weighting it
    /// includes the `s_t` terms, so it can be negative.
    pub loss: f64,
    /// Active (row, task) pairs.
    pub active: usize,
    /// Per behaviour: unweighted loss sum and active count.
    pub per_behaviour: Vec<(f64, usize)>,
    /// Per task: unweighted loss sum and active count.
    pub per_task: Vec<(f64, usize)>,
    /// Rows whose cell index is outside the grid; they train nothing.
    pub skipped_rows: usize,
    /// The AITM calibration penalty's share of `loss` (already reduced and scaled by α).
    pub calibration: f64,
}

impl<T: Float> GridLoss<T> {
    /// Validates `spec`: grid not empty, one finite non-negative weight per task, funnel
    /// members binary and in range, each behaviour the `b` of at most one pair, no cycles;
    /// calibration pairs binary, distinct, not ESMM, with a finite `α ≥ 0`.
    pub fn new(spec: LossSpec) -> Result<Self, String> {
        let parent = spec.funnel_parents()?;
        let k = if spec.uncertainty { spec.n_tasks() } else { 0 };
        Ok(GridLoss {
            spec,
            parent,
            log_vars: vec![T::zero(); k],
            log_var_grads: vec![T::zero(); k],
        })
    }

    pub fn spec(&self) -> &LossSpec {
        &self.spec
    }

    pub fn n_cells(&self) -> usize {
        self.spec.n_cells
    }

    pub fn n_behaviours(&self) -> usize {
        self.spec.n_behaviours()
    }

    pub fn n_tasks(&self) -> usize {
        self.spec.n_tasks()
    }

    /// The task index of `(behaviour, cell)`.
    pub fn task(&self, behaviour: usize, cell: usize) -> usize {
        behaviour * self.spec.n_cells + cell
    }

    /// The learned `s_t = log σ_t²` per task (empty without uncertainty weighting).
    pub fn log_vars(&self) -> &[T] {
        &self.log_vars
    }

    /// Accumulated d loss / d `s_t` (empty without uncertainty weighting).
    pub fn log_var_grads(&self) -> &[T] {
        &self.log_var_grads
    }

    /// Loss of a batch; writes d loss / d logits into `d_logits` (same shape as `logits`,
    /// overwritten) and adds d loss / d `s_t` to the log-variances' gradients (zero them
    /// with [`Module::zero_grad`] before a step, as for the network).
    pub fn compute(
        &mut self,
        logits: &[T],
        labels: &[f32],
        cells: &[u32],
        d_logits: &mut [T],
    ) -> LossValue {
        self.compute_weighted(logits, labels, cells, &[], d_logits)
    }

    /// [`GridLoss::compute`] with a weight per row multiplying every term of that row's
    /// loss (its tasks and its calibration penalty); the reductions' denominators stay
    /// counts, as Keras' `sample_weight` does. An empty `weights` means all ones.
    pub fn compute_weighted(
        &mut self,
        logits: &[T],
        labels: &[f32],
        cells: &[u32],
        weights: &[f32],
        d_logits: &mut [T],
    ) -> LossValue {
        let (value, d_s) = self.pass(logits, labels, cells, weights, Some(d_logits));
        for (g, d) in self.log_var_grads.iter_mut().zip(d_s) {
            *g += T::from_f64(d);
        }
        value
    }

    /// Loss of a batch without any gradient (validation).
    pub fn value(&self, logits: &[T], labels: &[f32], cells: &[u32]) -> LossValue {
        self.pass(logits, labels, cells, &[], None).0
    }

    /// [`GridLoss::value`] with row weights (see [`GridLoss::compute_weighted`]).
    pub fn value_weighted(
        &self,
        logits: &[T],
        labels: &[f32],
        cells: &[u32],
        weights: &[f32],
    ) -> LossValue {
        self.pass(logits, labels, cells, weights, None).0
    }

    /// The loss and, when `d_logits` is given, its gradients; returns d loss / d `s_t`.
    fn pass(
        &self,
        logits: &[T],
        labels: &[f32],
        cells: &[u32],
        weights: &[f32],
        mut d_logits: Option<&mut [T]>,
    ) -> (LossValue, Vec<f64>) {
        let (nb, nc, nt) = (self.n_behaviours(), self.n_cells(), self.n_tasks());
        let n = cells.len();
        assert!(
            weights.is_empty() || weights.len() == n,
            "{} row weights for {n} rows",
            weights.len()
        );
        let w_of = |i: usize| weights.get(i).map_or(1.0, |&w| w as f64);
        assert_eq!(logits.len(), n * nt, "logits shape");
        assert_eq!(labels.len(), n * nb, "labels shape");
        if let Some(d) = d_logits.as_deref_mut() {
            assert_eq!(d.len(), n * nt, "d_logits shape");
            d.fill(T::zero());
        }

        // Pass 1: active counts, so each task's coefficient is known before any gradient.
        let mut count = vec![0usize; nt];
        let mut skipped_rows = 0;
        for (row, &c) in labels.chunks_exact(nb).zip(cells) {
            let c = c as usize;
            if c >= nc {
                skipped_rows += 1;
                continue;
            }
            for (b, y) in row.iter().enumerate() {
                if y.is_finite() {
                    count[b * nc + c] += 1;
                }
            }
        }
        let active: usize = count.iter().sum();
        // coef[t]: d R_t / d ℓ_it; scale[t]: the uncertainty factor exp(−s_t).
        let coef: Vec<f64> = (0..nt)
            .map(|t| {
                let denom = match self.spec.reduction {
                    Reduction::ActiveMean => active,
                    Reduction::TaskMean => count[t],
                    Reduction::BatchMean => n,
                };
                if count[t] == 0 {
                    0.0
                } else {
                    self.spec.weights[t] / denom as f64
                }
            })
            .collect();
        let scale: Vec<f64> = if self.spec.uncertainty {
            self.log_vars.iter().map(|&s| (-s.to_f64()).exp()).collect()
        } else {
            vec![1.0; nt]
        };

        // Pass 2: per-pair losses and their gradients.
        let mut sum = vec![0.0; nt];
        for (i, (row, &c)) in labels.chunks_exact(nb).zip(cells).enumerate() {
            let c = c as usize;
            if c >= nc {
                continue;
            }
            let z = &logits[i * nt..(i + 1) * nt];
            let w = w_of(i);
            for (b, &y) in row.iter().enumerate() {
                if !y.is_finite() {
                    continue;
                }
                let (y, t) = (y as f64, b * nc + c);
                let g = coef[t] * scale[t] * w;
                let l = if self.parent[b].is_some() {
                    let p = self
                        .chain(b)
                        .map(|k| sigmoid(z[k * nc + c].to_f64()))
                        .product();
                    let (l, dl_dp) = logloss_with_prob(p, y);
                    if let Some(d) = d_logits.as_deref_mut() {
                        // d p̂ / d z_k = p̂·(1 − σ(z_k)) for every logit k of the chain.
                        for k in self.chain(b) {
                            let zk = z[k * nc + c].to_f64();
                            d[i * nt + k * nc + c] += T::from_f64(g * dl_dp * p * sigmoid(-zk));
                        }
                    }
                    l
                } else {
                    let zt = z[t].to_f64();
                    let (l, dl) = if self.spec.binary[b] {
                        logloss_with_logit(zt, y)
                    } else {
                        squared_error(zt, y)
                    };
                    if let Some(d) = d_logits.as_deref_mut() {
                        d[i * nt + t] += T::from_f64(g * dl);
                    }
                    l
                };
                sum[t] += w * l;
            }
        }

        // Pass 3: AITM calibration, outside the uncertainty weighting.
        let mut calibration = 0.0;
        for &(a, b, alpha) in &self.spec.calibration {
            for (i, (row, &c)) in labels.chunks_exact(nb).zip(cells).enumerate() {
                let c = c as usize;
                if c >= nc || !(row[a].is_finite() && row[b].is_finite()) {
                    continue;
                }
                let (ta, tb) = (a * nc + c, b * nc + c);
                let denom = match self.spec.reduction {
                    Reduction::ActiveMean => active,
                    Reduction::TaskMean => count[tb],
                    Reduction::BatchMean => n,
                };
                let k = alpha / denom as f64 * w_of(i);
                let (za, zb) = (logits[i * nt + ta].to_f64(), logits[i * nt + tb].to_f64());
                let (pa, pb) = (sigmoid(za), sigmoid(zb));
                if pb > pa {
                    calibration += k * (pb - pa);
                    if let Some(d) = d_logits.as_deref_mut() {
                        d[i * nt + tb] += T::from_f64(k * pb * (1.0 - pb));
                        d[i * nt + ta] -= T::from_f64(k * pa * (1.0 - pa));
                    }
                }
            }
        }

        let mut loss = calibration;
        let mut d_s = vec![0.0; self.log_vars.len()];
        for t in (0..nt).filter(|&t| count[t] > 0) {
            let r = coef[t] * sum[t];
            if self.spec.uncertainty {
                let s = self.log_vars[t].to_f64();
                loss += scale[t] * r + s;
                d_s[t] = 1.0 - scale[t] * r;
            } else {
                loss += r;
            }
        }
        let per_task: Vec<(f64, usize)> = sum.into_iter().zip(count).collect();
        let per_behaviour = per_task
            .chunks_exact(nc)
            .map(|cs| cs.iter().fold((0.0, 0), |(s, k), &(x, m)| (s + x, k + m)))
            .collect();
        let value = LossValue {
            loss,
            active,
            per_behaviour,
            per_task,
            skipped_rows,
            calibration,
        };
        (value, d_s)
    }

    /// Behaviour `b` and its funnel ancestors (`b`, its `a`, that one's `a`, …).
    fn chain(&self, b: usize) -> impl Iterator<Item = usize> + '_ {
        std::iter::successors(Some(b), |&k| self.parent[k])
    }

    /// Each row's prediction per behaviour from its own cell's heads: a probability for
    /// binary behaviours (the funnel product for an ESMM `b`), the raw output for
    /// regression. `out` becomes rows × behaviours; rows with a cell outside the grid
    /// get NaN.
    pub fn predict(&self, logits: &[T], cells: &[u32], out: &mut Vec<f32>) {
        let (nb, nc, nt) = (self.n_behaviours(), self.n_cells(), self.n_tasks());
        assert_eq!(logits.len(), cells.len() * nt, "logits shape");
        out.clear();
        for (z, &c) in logits.chunks_exact(nt).zip(cells) {
            let c = c as usize;
            if c >= nc {
                out.extend(std::iter::repeat_n(f32::NAN, nb));
                continue;
            }
            for b in 0..nb {
                let v = if self.spec.binary[b] {
                    let p: f64 = self
                        .chain(b)
                        .map(|k| sigmoid(z[k * nc + c].to_f64()))
                        .product();
                    let r = self.spec.negative_rate(b);
                    if r < 1.0 {
                        // Trained on negatives kept at rate r: odds are r times too
                        // high; undo it.
                        p / (p + (1.0 - p) / r)
                    } else {
                        p
                    }
                } else {
                    z[b * nc + c].to_f64()
                };
                out.push(v as f32);
            }
        }
    }
}

impl<T: Float> Module<T> for GridLoss<T> {
    /// One slice, `log_vars`, when uncertainty weighting is on; none otherwise, so a loss
    /// without it adds nothing to the optimiser's state.
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut [T], &mut [T])) {
        if !self.log_vars.is_empty() {
            with_name(prefix, format_args!("log_vars"), |name| {
                f(name, &mut self.log_vars, &mut self.log_var_grads)
            });
        }
    }
}
