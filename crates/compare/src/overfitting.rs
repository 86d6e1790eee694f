//! The local-overfitting section of `table.md`: per segment, the step where its own
//! selection metric (mean AUC over binary behaviours) peaked against the step the model was
//! stopped at (the pooled peak), and what the segment lost by stopping there. Means over
//! seeds, from the runs' selection-split histories.

use crate::runs::{model_order, RunRecord};
use crate::segments::{peak, segment_auc};
use anyhow::Result;
use mfh_config::TaskGrid;
use mfh_metrics::{mean, POOLED_CELL};
use std::fmt::Write as _;

/// Appends the section to `md` (nothing when no run has a history).
pub(crate) fn local_overfitting(
    md: &mut String,
    grid: &TaskGrid,
    runs: &[RunRecord],
) -> Result<()> {
    if runs.iter().all(|r| r.history.is_empty()) {
        return Ok(());
    }
    let mut segments = grid.cell_names();
    for (f, values) in &grid.facets {
        if grid.facets.len() > 1 {
            segments.extend(values.iter().map(|v| format!("{f}={v}")));
        }
    }
    segments.push(POOLED_CELL.into());
    writeln!(
        md,
        "## Local overfitting (selection split)\n\nPer segment: the step where its own mean AUC (over binary behaviours) peaked, the step the model was stopped at (the pooled peak), and the AUC it lost by stopping there. Means over seeds.\n"
    )?;
    writeln!(md, "| model | segment | own peak step | stopped at | AUC lost at stop |\n|---|---|---:|---:|---:|")?;
    for m in model_order(runs) {
        let rs: Vec<&RunRecord> = runs
            .iter()
            .filter(|r| r.model == m && !r.history.is_empty())
            .collect();
        if rs.is_empty() {
            continue;
        }
        for seg in &segments {
            let Some((peaks, stops, lost)) = segment_stops(grid, &rs, seg) else {
                continue;
            };
            writeln!(
                md,
                "| {m} | {seg} | {:.0} | {:.0} | {:.4} |",
                mean(&peaks),
                mean(&stops),
                mean(&lost)
            )?;
        }
    }
    writeln!(md)?;
    Ok(())
}

/// Over the runs where `seg` has a peak and a value at the pooled peak: its own peak
/// steps, the stop steps and the AUC lost at the stop (None when no run has them).
fn segment_stops(
    grid: &TaskGrid,
    runs: &[&RunRecord],
    seg: &str,
) -> Option<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let mut peaks = Vec::new();
    let mut stops = Vec::new();
    let mut lost = Vec::new();
    for r in runs {
        let Some((ps, pv)) = peak(&r.history, grid, seg) else {
            continue;
        };
        let Some((gs, _)) = peak(&r.history, grid, POOLED_CELL) else {
            continue;
        };
        let at_stop = r
            .history
            .iter()
            .find(|(s, _)| *s == gs)
            .and_then(|(_, recs)| segment_auc(recs, grid, seg));
        if let Some(v) = at_stop {
            peaks.push(ps as f64);
            stops.push(gs as f64);
            lost.push(pv - v);
        }
    }
    (!peaks.is_empty()).then_some((peaks, stops, lost))
}
