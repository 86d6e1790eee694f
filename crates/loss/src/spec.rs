//! What a [`GridLoss`](crate::GridLoss) is configured with, and its validation.

use std::fmt;
use std::str::FromStr;

/// How the per-pair losses of a batch are reduced to one number. Each task `t` has a
/// static weight `w_t`; `m_it` is 1 when row `i` is active for task `t` (its own cell,
/// label present) and `ℓ_it` is that pair's loss.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Reduction {
    /// `Σ_it m_it·w_t·ℓ_it / Σ_it m_it`: the mean over active (row, task) pairs.
    #[default]
    ActiveMean,
    /// `Σ_t w_t·L_t` with `L_t = Σ_i m_it·ℓ_it / Σ_i m_it` (as in the PLE paper); a task
    /// with no active row in the batch contributes nothing.
    TaskMean,
    /// `Σ_t w_t·Σ_i m_it·ℓ_it / n`, `n` the batch's rows, masked ones included (as in
    /// common PyTorch reproductions that multiply the loss by the mask and take `mean`).
    BatchMean,
}

impl Reduction {
    pub const ALL: [Reduction; 3] = [
        Reduction::ActiveMean,
        Reduction::TaskMean,
        Reduction::BatchMean,
    ];

    /// The configuration spelling: `active_mean`, `task_mean`, `batch_mean`.
    pub fn name(self) -> &'static str {
        match self {
            Reduction::ActiveMean => "active_mean",
            Reduction::TaskMean => "task_mean",
            Reduction::BatchMean => "batch_mean",
        }
    }
}

impl fmt::Display for Reduction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Reduction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Reduction::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| {
                format!("unknown loss reduction {s:?} (active_mean, task_mean or batch_mean)")
            })
    }
}

/// Everything a [`GridLoss`](crate::GridLoss) needs; checked by
/// [`GridLoss::new`](crate::GridLoss::new). Tasks are indexed `t = behaviour·n_cells + cell`.
#[derive(Debug, Clone, PartialEq)]
pub struct LossSpec {
    pub n_cells: usize,
    /// Per behaviour: binary (logloss on a logit) or regression (squared error).
    pub binary: Vec<bool>,
    /// Static weight per task (length `n_tasks`); see [`task_weights`].
    pub weights: Vec<f64>,
    pub reduction: Reduction,
    /// Learned per-task uncertainty weighting (Kendall et al. 2018) on top of the reduction.
    pub uncertainty: bool,
    /// ESMM pairs `(a, b)` of binary behaviours where `b` implies `a` (click → like): the
    /// logit of `b` is read as `logit p(b | a)`.
    pub funnels: Vec<(usize, usize)>,
    /// AITM calibration `(a, b, α)` of binary behaviours where `b` implies `a` (click →
    /// buy): adds `α·max(σ(z_b) − σ(z_a), 0)` on rows with both labels; see
    /// [`GridLoss`](crate::GridLoss).
    pub calibration: Vec<(usize, usize, f64)>,
    /// Per behaviour: the rate r at which negatives were kept when the data was
    /// down-sampled (empty or 1: no sampling). Predictions of a binary behaviour with
    /// r < 1 are mapped back to the unsampled scale, `p / (p + (1 − p) / r)`.
    pub negative_rates: Vec<f64>,
}

impl LossSpec {
    /// Unit weights, [`Reduction::ActiveMean`], no uncertainty weighting, no funnels:
    /// the plain masked mean.
    pub fn new(n_cells: usize, binary: Vec<bool>) -> Self {
        let n_tasks = n_cells * binary.len();
        LossSpec {
            n_cells,
            binary,
            weights: vec![1.0; n_tasks],
            reduction: Reduction::default(),
            uncertainty: false,
            funnels: Vec::new(),
            calibration: Vec::new(),
            negative_rates: Vec::new(),
        }
    }

    /// The negative keep rate of behaviour `b` (1 when not sampled).
    pub fn negative_rate(&self, b: usize) -> f64 {
        self.negative_rates.get(b).copied().unwrap_or(1.0)
    }

    pub fn n_behaviours(&self) -> usize {
        self.binary.len()
    }

    pub fn n_tasks(&self) -> usize {
        self.binary.len() * self.n_cells
    }

    /// Checks the spec and returns each behaviour's funnel parent (`Some(a)` when it is
    /// the `b` of a pair `(a, b)`).
    pub(crate) fn funnel_parents(&self) -> Result<Vec<Option<usize>>, String> {
        let nb = self.n_behaviours();
        if self.n_cells == 0 || nb == 0 {
            return Err(format!(
                "the task grid is empty ({nb} behaviours × {} cells)",
                self.n_cells
            ));
        }
        if self.weights.len() != self.n_tasks() {
            return Err(format!(
                "{} task weights for {} tasks ({nb} behaviours × {} cells)",
                self.weights.len(),
                self.n_tasks(),
                self.n_cells
            ));
        }
        if let Some(t) = self
            .weights
            .iter()
            .position(|w| !(w.is_finite() && *w >= 0.0))
        {
            return Err(format!(
                "task {t}: weight {} is not a finite non-negative number",
                self.weights[t]
            ));
        }
        if !self.negative_rates.is_empty() && self.negative_rates.len() != nb {
            return Err(format!(
                "{} negative sampling rates for {nb} behaviours",
                self.negative_rates.len()
            ));
        }
        for (b, &r) in self.negative_rates.iter().enumerate() {
            if !(r > 0.0 && r <= 1.0) {
                return Err(format!(
                    "behaviour {b}: negative sampling rate {r} is not in (0, 1]"
                ));
            }
            if r < 1.0 && !self.binary[b] {
                return Err(format!(
                    "behaviour {b}: negative sampling needs a binary behaviour"
                ));
            }
        }
        let mut parent = vec![None; nb];
        for &(a, b) in &self.funnels {
            if a >= nb || b >= nb {
                return Err(format!("funnel ({a}, {b}): only {nb} behaviours"));
            }
            if a == b {
                return Err(format!(
                    "funnel ({a}, {b}): a behaviour cannot imply itself"
                ));
            }
            if !self.binary[a] || !self.binary[b] {
                return Err(format!("funnel ({a}, {b}): both behaviours must be binary"));
            }
            if let Some(p) = parent[b] {
                return Err(format!(
                    "behaviour {b} is the implied side of two funnels ({p}, {b}) and ({a}, {b})"
                ));
            }
            parent[b] = Some(a);
        }
        // Chains a → b → c are fine; a cycle would make every product in it undefined.
        for start in 0..nb {
            let mut k = start;
            for _ in 0..nb {
                match parent[k] {
                    Some(p) if p == start => {
                        return Err(format!("funnels form a cycle through behaviour {start}"))
                    }
                    Some(p) => k = p,
                    None => break,
                }
            }
        }
        self.check_calibration(&parent)?;
        Ok(parent)
    }

    /// Calibration pairs: binary, distinct and in range, `α` finite and ≥ 0, no pair twice,
    /// and neither logit an ESMM conditional (`σ(z)` must be a marginal probability).
    fn check_calibration(&self, parent: &[Option<usize>]) -> Result<(), String> {
        let nb = self.n_behaviours();
        for (i, &(a, b, alpha)) in self.calibration.iter().enumerate() {
            if a >= nb || b >= nb {
                return Err(format!("calibration ({a}, {b}): only {nb} behaviours"));
            }
            if a == b {
                return Err(format!(
                    "calibration ({a}, {b}): a behaviour cannot bound itself"
                ));
            }
            if !self.binary[a] || !self.binary[b] {
                return Err(format!(
                    "calibration ({a}, {b}): both behaviours must be binary"
                ));
            }
            if !(alpha.is_finite() && alpha >= 0.0) {
                return Err(format!(
                    "calibration ({a}, {b}): α = {alpha} is not a finite non-negative number"
                ));
            }
            if self.calibration[..i]
                .iter()
                .any(|&(x, y, _)| (x, y) == (a, b))
            {
                return Err(format!("calibration ({a}, {b}) is given twice"));
            }
            if self.funnels.contains(&(a, b)) {
                return Err(format!(
                    "({a}, {b}) is both an ESMM funnel and an AITM calibration pair; pick one"
                ));
            }
            if let Some(k) = [a, b].into_iter().find(|&k| parent[k].is_some()) {
                return Err(format!(
                    "calibration ({a}, {b}): behaviour {k}'s logit is an ESMM conditional (funnel ({}, {k})), not a probability of its own",
                    parent[k].unwrap_or_default()
                ));
            }
        }
        Ok(())
    }
}

/// Task weights from per-behaviour weights (each repeated over the cells) with per-task
/// overrides `(task index, weight)` applied after, in order.
pub fn task_weights(
    n_cells: usize,
    per_behaviour: &[f64],
    overrides: &[(usize, f64)],
) -> Result<Vec<f64>, String> {
    let mut w: Vec<f64> = per_behaviour
        .iter()
        .flat_map(|&x| std::iter::repeat_n(x, n_cells))
        .collect();
    for &(t, x) in overrides {
        let n = w.len();
        *w.get_mut(t)
            .ok_or_else(|| format!("weight override for task {t}: only {n} tasks"))? = x;
    }
    Ok(w)
}
