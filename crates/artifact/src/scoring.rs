//! Scoring a split: metrics per behaviour × cell (and pooled), the split's loss, and
//! per-row predictions for `mfh predict`.

use crate::state::ModelState;
use anyhow::{Context, Result};
use mfh_data::{Pipeline, StreamOptions};
use mfh_metrics::{BehaviourInfo, Evaluator, Report};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

pub struct EvalResult {
    pub report: Report,
    /// Mean loss over active (row, task) pairs, as in training.
    pub loss: f64,
    pub rows: u64,
}

impl EvalResult {
    /// The selection value of `metric` and whether larger is better.
    pub fn metric(&self, metric: &str, grid: &mfh_config::TaskGrid) -> (Option<f64>, bool) {
        match metric {
            "loss" => (if self.rows > 0 { Some(self.loss) } else { None }, false),
            "auc" => {
                let vals: Vec<f64> = grid
                    .behaviours
                    .iter()
                    .zip(&grid.binary)
                    .filter(|(_, b)| **b)
                    .filter_map(|(name, _)| self.report.get(name, mfh_metrics::POOLED_CELL, "auc"))
                    .collect();
                if vals.is_empty() {
                    (None, true)
                } else {
                    (Some(vals.iter().sum::<f64>() / vals.len() as f64), true)
                }
            }
            m => {
                let (b, name) = m.split_once('.').unwrap_or((m, "auc"));
                let higher = matches!(name, "auc" | "gauc");
                (self.report.get(b, mfh_metrics::POOLED_CELL, name), higher)
            }
        }
    }
}

fn behaviour_infos(grid: &mfh_config::TaskGrid) -> Vec<BehaviourInfo> {
    grid.behaviours
        .iter()
        .zip(&grid.binary)
        .map(|(n, &b)| {
            if b {
                BehaviourInfo::binary(n.clone())
            } else {
                BehaviourInfo::regression(n.clone())
            }
        })
        .collect()
}

/// Scores every row of `split` in file order.
pub fn evaluate(
    state: &mut ModelState,
    pipeline: &Arc<Pipeline>,
    split: &str,
    batch_size: usize,
) -> Result<EvalResult> {
    let use_groups = pipeline.config().data.gauc_column.is_some();
    let mut all = Predictions {
        n_behaviours: state.grid.n_behaviours(),
        ..Default::default()
    };
    let mut preds = Vec::new();
    let (mut loss_sum, mut active, mut rows) = (0.0, 0usize, 0u64);
    for batch in pipeline.stream(split, StreamOptions::in_order(batch_size))? {
        let mut batch = batch?;
        let logits = state.forward(&mut batch).to_vec();
        // Reported as the plain mean logloss/MSE over active pairs, whatever the
        // training reduction and weights, so that models stay comparable.
        let lv = state.eval_loss(&batch, &logits);
        loss_sum += lv.per_task.iter().map(|(s, _)| s).sum::<f64>();
        active += lv.per_task.iter().map(|(_, c)| c).sum::<usize>();
        rows += batch.n as u64;
        state.loss.predict(&logits, &batch.cells, &mut preds);
        all.preds.extend_from_slice(&preds);
        all.labels.extend_from_slice(&batch.labels);
        all.cells.extend_from_slice(&batch.cells);
        all.groups.extend_from_slice(&batch.groups);
    }
    let ev_report = all.report(&state.grid, split, use_groups, None);
    Ok(EvalResult {
        report: ev_report,
        loss: if active > 0 {
            loss_sum / active as f64
        } else {
            0.0
        },
        rows,
    })
}

/// Writes one CSV line per row of `split`: row index, cell, then per behaviour the
/// prediction (from the row's own cell's head) and the label (empty when missing).
pub fn predict_to_csv(
    state: &mut ModelState,
    pipeline: &Arc<Pipeline>,
    split: &str,
    batch_size: usize,
    out: &Path,
) -> Result<u64> {
    let file =
        std::fs::File::create(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let mut w = std::io::BufWriter::new(file);
    let cells = state.grid.cell_names();
    let mut header = vec!["row".to_string(), "cell".to_string()];
    for b in &state.grid.behaviours {
        header.push(format!("{b}_pred"));
        header.push(format!("{b}_label"));
    }
    writeln!(w, "{}", header.join(","))?;
    let nb = state.grid.n_behaviours();
    let mut preds = Vec::new();
    let mut rows = 0;
    for batch in pipeline.stream(split, StreamOptions::in_order(batch_size))? {
        let mut batch = batch?;
        let logits = state.forward(&mut batch).to_vec();
        state.loss.predict(&logits, &batch.cells, &mut preds);
        for i in 0..batch.n {
            write!(
                w,
                "{},\"{}\"",
                batch.rows[i], cells[batch.cells[i] as usize]
            )?;
            for b in 0..nb {
                let y = batch.labels[i * nb + b];
                if y.is_finite() {
                    write!(w, ",{},{}", preds[i * nb + b], y)?;
                } else {
                    write!(w, ",{},", preds[i * nb + b])?;
                }
            }
            writeln!(w)?;
        }
        rows += batch.n as u64;
    }
    w.flush()
        .with_context(|| format!("{}: cannot write", out.display()))?;
    Ok(rows)
}

/// Every row's predictions (rows × behaviours, from its own cell's heads), labels, cell
/// and GAUC group, in file order: what comparisons resample for their intervals.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Predictions {
    pub n_behaviours: usize,
    pub preds: Vec<f32>,
    pub labels: Vec<f32>,
    pub cells: Vec<u32>,
    pub groups: Vec<u64>,
}

impl Predictions {
    pub fn rows(&self) -> usize {
        self.cells.len()
    }

    /// Metrics of these rows (all of them, or the subset `rows`).
    pub fn report(
        &self,
        state_grid: &mfh_config::TaskGrid,
        split: &str,
        use_groups: bool,
        rows: Option<&[usize]>,
    ) -> Report {
        let infos = behaviour_infos(state_grid);
        let mut ev = Evaluator::new(infos, state_grid.cell_names());
        let nb = self.n_behaviours;
        match rows {
            None => {
                let _ = ev.add_batch(
                    &self.preds,
                    &self.labels,
                    &self.cells,
                    use_groups.then_some(&self.groups[..]),
                );
            }
            Some(rows) => {
                let mut p = Vec::with_capacity(rows.len() * nb);
                let mut l = Vec::with_capacity(rows.len() * nb);
                let mut c = Vec::with_capacity(rows.len());
                let mut g = Vec::with_capacity(rows.len());
                for &r in rows {
                    p.extend_from_slice(&self.preds[r * nb..(r + 1) * nb]);
                    l.extend_from_slice(&self.labels[r * nb..(r + 1) * nb]);
                    c.push(self.cells[r]);
                    g.push(self.groups[r]);
                }
                let _ = ev.add_batch(&p, &l, &c, use_groups.then_some(&g[..]));
            }
        }
        let mut report = ev.finish(split);
        // Each facet value pooled over the other facets ("user=new"): the segments whose
        // fit the local-overfitting view follows.
        if state_grid.facets.len() > 1 {
            let pick: Vec<usize> = match rows {
                None => (0..self.rows()).collect(),
                Some(r) => r.to_vec(),
            };
            for (d, (fname, values)) in state_grid.facets.iter().enumerate() {
                let infos = behaviour_infos(state_grid);
                let names = values.iter().map(|v| format!("{fname}={v}")).collect();
                let mut fev = Evaluator::new(infos, names);
                let mut p = Vec::with_capacity(pick.len() * nb);
                let mut l = Vec::with_capacity(pick.len() * nb);
                let mut c = Vec::with_capacity(pick.len());
                let mut g = Vec::with_capacity(pick.len());
                for &r in &pick {
                    p.extend_from_slice(&self.preds[r * nb..(r + 1) * nb]);
                    l.extend_from_slice(&self.labels[r * nb..(r + 1) * nb]);
                    c.push(state_grid.cell_values(self.cells[r] as usize)[d] as u32);
                    g.push(self.groups[r]);
                }
                let _ = fev.add_batch(&p, &l, &c, use_groups.then_some(&g[..]));
                report.extend(
                    fev.finish(split)
                        .records
                        .into_iter()
                        .filter(|r| r.cell != mfh_metrics::POOLED_CELL),
                );
            }
        }
        report
    }

    /// Little-endian binary: n, behaviours, then the four columns.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.rows() * (8 * self.n_behaviours + 12));
        out.extend_from_slice(&(self.rows() as u64).to_le_bytes());
        out.extend_from_slice(&(self.n_behaviours as u64).to_le_bytes());
        self.preds
            .iter()
            .chain(&self.labels)
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        self.cells
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        self.groups
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        out
    }

    pub fn from_bytes(b: &[u8]) -> Option<Predictions> {
        let u64_at = |i: usize| {
            b.get(i..i + 8)
                .map(|s| u64::from_le_bytes(s.try_into().unwrap()))
        };
        let n = u64_at(0)? as usize;
        let nb = u64_at(8)? as usize;
        let need = 16usize.checked_add(n.checked_mul(8 * nb + 12)?)?;
        if b.len() != need {
            return None;
        }
        let f32s = |from: usize, k: usize| -> Vec<f32> {
            b[from..from + 4 * k]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect()
        };
        let preds = f32s(16, n * nb);
        let labels = f32s(16 + 4 * n * nb, n * nb);
        let at = 16 + 8 * n * nb;
        let cells = b[at..at + 4 * n]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let groups = b[at + 4 * n..]
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        Some(Predictions {
            n_behaviours: nb,
            preds,
            labels,
            cells,
            groups,
        })
    }
}

/// Scores every row of `split` and keeps the predictions.
pub fn collect_predictions(
    state: &mut ModelState,
    pipeline: &Arc<Pipeline>,
    split: &str,
    batch_size: usize,
) -> Result<Predictions> {
    let mut out = Predictions {
        n_behaviours: state.grid.n_behaviours(),
        ..Default::default()
    };
    let mut preds = Vec::new();
    for batch in pipeline.stream(split, StreamOptions::in_order(batch_size))? {
        let mut batch = batch?;
        let logits = state.forward(&mut batch).to_vec();
        state.loss.predict(&logits, &batch.cells, &mut preds);
        out.preds.extend_from_slice(&preds);
        out.labels.extend_from_slice(&batch.labels);
        out.cells.extend_from_slice(&batch.cells);
        out.groups.extend_from_slice(&batch.groups);
    }
    Ok(out)
}
