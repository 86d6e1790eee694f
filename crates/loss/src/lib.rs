//! The masked multi-task loss over the task grid. Each row trains only its own cell's
//! tasks, and only those whose label is present: logloss on logits for binary behaviours,
//! squared error for regression ones. The loss is the (weighted) mean over active
//! (row, task) pairs; the gradient goes only to those pairs' logits.
//!
//! Inputs come from the model (`logits`, rows × tasks, task = behaviour · n_cells + cell)
//! and the reader (labels rows × behaviours with NaN for missing, and each row's cell).

use mfh_nn::Float;

/// Which head each behaviour has, and its weight.
#[derive(Debug, Clone, PartialEq)]
pub struct GridLoss {
    pub n_cells: usize,
    /// Per behaviour: binary (logloss) or regression (MSE).
    pub binary: Vec<bool>,
    /// Per behaviour weight (1 by default).
    pub weights: Vec<f64>,
}

/// What one batch's loss came to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LossValue {
    /// The reduced loss (what the gradient is of).
    pub loss: f64,
    /// Active (row, task) pairs.
    pub active: usize,
    /// Per behaviour: unweighted loss sum and active count.
    pub per_behaviour: Vec<(f64, usize)>,
}

/// Numerically stable logloss of a logit `z` against label `y` and its derivative.
#[inline]
pub fn logloss_with_logit(z: f64, y: f64) -> (f64, f64) {
    let loss = z.max(0.0) - z * y + (-z.abs()).exp().ln_1p();
    (loss, sigmoid(z) - y)
}

#[inline]
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

impl GridLoss {
    pub fn n_behaviours(&self) -> usize {
        self.binary.len()
    }

    pub fn n_tasks(&self) -> usize {
        self.binary.len() * self.n_cells
    }

    /// Loss of a batch; writes d loss / d logits into `d_logits` (same shape as `logits`).
    pub fn compute<T: Float>(
        &self,
        logits: &[T],
        labels: &[f32],
        cells: &[u32],
        d_logits: &mut [T],
    ) -> LossValue {
        let (nb, nt) = (self.n_behaviours(), self.n_tasks());
        let n = cells.len();
        assert_eq!(logits.len(), n * nt, "logits shape");
        assert_eq!(labels.len(), n * nb, "labels shape");
        assert_eq!(d_logits.len(), n * nt, "d_logits shape");
        d_logits.iter_mut().for_each(|d| *d = T::zero());
        let mut per = vec![(0.0, 0usize); nb];
        let mut active = 0usize;
        let mut total = 0.0;
        // First pass: values and raw derivatives; the mean's 1/active is applied after.
        for i in 0..n {
            let cell = cells[i] as usize;
            for b in 0..nb {
                let y = labels[i * nb + b];
                if !y.is_finite() {
                    continue;
                }
                let t = b * self.n_cells + cell;
                let z = logits[i * nt + t].to_f64();
                let (l, d) = if self.binary[b] {
                    logloss_with_logit(z, y as f64)
                } else {
                    let r = z - y as f64;
                    (r * r, 2.0 * r)
                };
                let w = self.weights[b];
                per[b].0 += l;
                per[b].1 += 1;
                total += w * l;
                active += 1;
                d_logits[i * nt + t] = T::from_f64(w * d);
            }
        }
        if active > 0 {
            let scale = T::from_f64(1.0 / active as f64);
            d_logits.iter_mut().for_each(|d| *d *= scale);
            total /= active as f64;
        }
        LossValue {
            loss: total,
            active,
            per_behaviour: per,
        }
    }

    /// Each row's prediction per behaviour from its own cell's head: a probability for
    /// binary behaviours, the raw output for regression. `out` is rows × behaviours.
    pub fn predict<T: Float>(&self, logits: &[T], cells: &[u32], out: &mut Vec<f32>) {
        let (nb, nt) = (self.n_behaviours(), self.n_tasks());
        out.clear();
        for (i, &c) in cells.iter().enumerate() {
            for b in 0..nb {
                let z = logits[i * nt + b * self.n_cells + c as usize].to_f64();
                out.push(if self.binary[b] {
                    sigmoid(z) as f32
                } else {
                    z as f32
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> GridLoss {
        GridLoss {
            n_cells: 2,
            binary: vec![true, false],
            weights: vec![1.0, 0.5],
        }
    }

    #[test]
    fn active_mean_by_hand() {
        let g = grid();
        // 2 rows × 4 tasks (click[c0], click[c1], watch[c0], watch[c1]).
        let logits = [0.3f64, 9.0, 1.5, 9.0, 9.0, -0.7, 9.0, 0.2];
        let labels = [1.0f32, 2.0, 0.0, f32::NAN];
        let cells = [0u32, 1];
        let mut d = [0.0f64; 8];
        let v = g.compute(&logits, &labels, &cells, &mut d);
        let l0 = (1.0 + (-0.3f64).exp()).ln(); // y=1, z=0.3
        let l1 = (1.5 - 2.0f64).powi(2);
        let l2 = (1.0 + (-0.7f64).exp()).ln() - 0.0 + 0.0; // y=0, z=-0.7: ln(1+e^-0.7)
        let expect = (l0 + 0.5 * l1 + l2) / 3.0;
        assert_eq!(v.active, 3);
        assert!((v.loss - expect).abs() < 1e-12, "{} vs {expect}", v.loss);
        // Inactive tasks get exactly zero gradient.
        for t in [1, 3, 4, 6, 7] {
            assert_eq!(d[t], 0.0, "task {t}");
        }
        assert!((d[0] - (sigmoid(0.3) - 1.0) / 3.0).abs() < 1e-12);
        assert!((d[2] - 0.5 * 2.0 * (1.5 - 2.0) / 3.0).abs() < 1e-12);
        assert!((d[5] - sigmoid(-0.7) / 3.0).abs() < 1e-12);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let g = grid();
        let logits = [0.3f64, -1.0, 1.5, 0.4, 2.0, -0.7, 0.1, 0.2];
        let labels = [1.0f32, 0.7, 0.0, 1.2];
        let cells = [1u32, 0];
        let mut d = [0.0f64; 8];
        g.compute(&logits, &labels, &cells, &mut d);
        let mut scratch = [0.0f64; 8];
        for t in 0..8 {
            let h = 1e-6;
            let mut p = logits;
            p[t] += h;
            let lp = g.compute(&p, &labels, &cells, &mut scratch).loss;
            p[t] -= 2.0 * h;
            let lm = g.compute(&p, &labels, &cells, &mut scratch).loss;
            let fd = (lp - lm) / (2.0 * h);
            assert!(
                (fd - d[t]).abs() < 1e-8 + 1e-6 * fd.abs(),
                "task {t}: {fd} vs {}",
                d[t]
            );
        }
    }

    #[test]
    fn logloss_is_stable_for_large_logits() {
        let (l, d) = logloss_with_logit(800.0, 0.0);
        assert!((l - 800.0).abs() < 1e-9 && (d - 1.0).abs() < 1e-12);
        let (l, _) = logloss_with_logit(-800.0, 0.0);
        assert!(l.abs() < 1e-12);
    }

    #[test]
    fn no_labels_is_zero_loss_not_nan() {
        let g = grid();
        let mut d = [1.0f32; 4];
        let v = g.compute(&[0.0f32; 4], &[f32::NAN, f32::NAN], &[0], &mut d);
        assert_eq!(v.loss, 0.0);
        assert_eq!(v.active, 0);
        assert!(d.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn predictions_come_from_the_rows_cell() {
        let g = grid();
        let logits = [0.0f32, 2.0, 5.0, 7.0];
        let mut out = Vec::new();
        g.predict(&logits, &[1], &mut out);
        assert!((out[0] - sigmoid(2.0) as f32).abs() < 1e-7);
        assert_eq!(out[1], 7.0);
    }
}
