//! TensorBoard event files of a comparison: the selection split's AUC and logloss per
//! behaviour and cell, and the mean AUC per segment, at every evaluation; one event folder
//! per (model, seed) under `OUT/tensorboard/` (`tensorboard --logdir OUT/tensorboard`).

use crate::runs::RunRecord;
use crate::segments::segment_auc;
use anyhow::{Context, Result};
use mfh_config::TaskGrid;
use mfh_metrics::POOLED_CELL;
use mfh_report::tensorboard::EventWriter;
use std::path::Path;

/// Replaces `OUT/tensorboard/` with one event folder per run that has a history.
pub(crate) fn write_tensorboard(grid: &TaskGrid, out: &Path, runs: &[RunRecord]) -> Result<()> {
    let root = out.join("tensorboard");
    if root.exists() {
        std::fs::remove_dir_all(&root)
            .with_context(|| format!("{}: cannot replace", root.display()))?;
    }
    for r in runs.iter().filter(|r| !r.history.is_empty()) {
        let dir = root.join(format!("{}-seed{}", r.model, r.seed));
        let mut w = EventWriter::create(&dir)
            .with_context(|| format!("{}: cannot write", dir.display()))?;
        for (step, recs) in &r.history {
            for rec in recs
                .iter()
                .filter(|x| x.metric == "auc" || x.metric == "logloss")
            {
                if let Some(v) = rec.value {
                    let tag = format!(
                        "{}/{}/{}/{}",
                        r.select_split, rec.metric, rec.behaviour, rec.cell
                    );
                    w.scalar(&tag, *step as i64, v as f32)?;
                }
            }
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
