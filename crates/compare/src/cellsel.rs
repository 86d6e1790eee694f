//! Per-cell checkpoint selection (tree models): each cell is answered by the checkpoint
//! where its own selection metric peaked, instead of the one where the pooled rows peaked.
//! Shown in the tables as its own variant, `MODEL+cellsel`.

use crate::segments::peak;
use anyhow::Result;
use mfh_artifact::model_dir::load_model;
use mfh_artifact::scoring::{collect_predictions, Predictions};
use mfh_config::{Config, TaskGrid};
use mfh_data::Pipeline;
use mfh_metrics::{MetricRecord, POOLED_CELL};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellSelection {
    /// (cell, chosen step).
    pub steps: Vec<(String, u64)>,
    /// Metrics on the report split.
    pub records: Vec<MetricRecord>,
}

/// Answers each cell with the checkpoint where that cell's own selection metric peaked
/// (a cell that never had one: the pooled peak), scored on the `report` split.
pub(crate) fn cell_selection(
    cfg: &Config,
    grid: &TaskGrid,
    model_dir: &Path,
    history: &[(u64, Vec<MetricRecord>)],
    pipeline: &Arc<Pipeline>,
    report: &str,
    use_groups: bool,
) -> Result<CellSelection> {
    let cells = grid.cell_names();
    let global = peak(history, grid, POOLED_CELL).map(|p| p.0);
    let steps: Vec<u64> = cells
        .iter()
        .map(|c| peak(history, grid, c).map(|p| p.0).or(global).unwrap_or(0))
        .collect();
    let mut by_step: BTreeMap<u64, Predictions> = BTreeMap::new();
    for &s in &steps {
        if let std::collections::btree_map::Entry::Vacant(e) = by_step.entry(s) {
            let mut m = load_model(&model_dir.join("checkpoints").join(format!("step{s}")))?;
            e.insert(collect_predictions(
                &mut m.state,
                pipeline,
                report,
                cfg.train.batch_size,
            )?);
        }
    }
    let first = by_step.values().next().cloned().unwrap_or_default();
    let mut combined = first.clone();
    let nb = combined.n_behaviours;
    for r in 0..combined.rows() {
        let from = &by_step[&steps[combined.cells[r] as usize]];
        combined.preds[r * nb..(r + 1) * nb].copy_from_slice(&from.preds[r * nb..(r + 1) * nb]);
    }
    Ok(CellSelection {
        steps: cells.into_iter().zip(steps).collect(),
        records: combined.report(grid, report, use_groups, None).records,
    })
}
