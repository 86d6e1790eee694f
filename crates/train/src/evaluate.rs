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

fn behaviour_infos(state: &ModelState) -> Vec<BehaviourInfo> {
    state
        .grid
        .behaviours
        .iter()
        .zip(&state.grid.binary)
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
    let mut ev = Evaluator::new(behaviour_infos(state), state.grid.cell_names());
    let use_groups = pipeline.config().data.gauc_column.is_some();
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
        ev.add_batch(
            &preds,
            &batch.labels,
            &batch.cells,
            use_groups.then_some(&batch.groups[..]),
        )
        .map_err(|e| anyhow::anyhow!("metrics: {e}"))?;
    }
    Ok(EvalResult {
        report: ev.finish(split),
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
