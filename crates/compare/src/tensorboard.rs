//! TensorBoard event files of a comparison, one folder per (model, seed) under
//! `OUT/tensorboard/` (`tensorboard --logdir OUT/tensorboard`): each run's training
//! writes its own scalars there as it goes (`mfh_train`'s live scalars, as `mfh train
//! --tensorboard`); after the runs, `MODEL-seedS/segments/` gets the mean AUC per
//! segment at every evaluation.

use crate::runs::RunRecord;
use crate::segments::segment_auc;
use anyhow::{Context, Result};
use mfh_config::TaskGrid;
use mfh_metrics::POOLED_CELL;
use mfh_report::tensorboard::EventWriter;
use std::path::{Path, PathBuf};

/// The folder a run's live scalars go to.
pub(crate) fn run_dir(out: &Path, model: &str, seed: u64) -> PathBuf {
    out.join("tensorboard").join(format!("{model}-seed{seed}"))
}

/// Replaces each run's `segments/` event folder (runs with a history).
pub(crate) fn write_tensorboard(grid: &TaskGrid, out: &Path, runs: &[RunRecord]) -> Result<()> {
    for r in runs.iter().filter(|r| !r.history.is_empty()) {
        let dir = run_dir(out, &r.model, r.seed).join("segments");
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("{}: cannot replace", dir.display()))?;
        }
        let mut w = EventWriter::create(&dir)
            .with_context(|| format!("{}: cannot write", dir.display()))?;
        for (step, recs) in &r.history {
            let mut segs = grid.cell_names();
            segs.push(POOLED_CELL.into());
            for seg in segs {
                if let Some(v) = segment_auc(recs, grid, &seg) {
                    w.scalar(
                        &format!("{}/mean_auc/{seg}", r.select_split),
                        *step as i64,
                        v as f32,
                    )?;
                }
            }
        }
        w.flush()?;
    }
    Ok(())
}
