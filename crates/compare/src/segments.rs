//! A segment's selection metric: the mean AUC over binary behaviours of one segment (a
//! cell, a facet value or the pooled rows) in a report's records, and the evaluation where
//! it peaked. Per-cell checkpoint selection, the local-overfitting view, the curves and the
//! TensorBoard scalars all read it from a run's history.

use mfh_config::TaskGrid;
use mfh_metrics::MetricRecord;

/// Mean AUC over binary behaviours of one segment in a report's records (None if any is
/// undefined).
pub(crate) fn segment_auc(records: &[MetricRecord], grid: &TaskGrid, segment: &str) -> Option<f64> {
    let mut vals = Vec::new();
    for (b, bin) in grid.behaviours.iter().zip(&grid.binary) {
        if !bin {
            continue;
        }
        let v = records
            .iter()
            .find(|r| &r.behaviour == b && r.cell == segment && r.metric == "auc")
            .and_then(|r| r.value)?;
        vals.push(v);
    }
    (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64)
}

/// The step of `history` where `segment`'s mean AUC peaked, with the value (the earliest
/// step on a tie).
pub(crate) fn peak(
    history: &[(u64, Vec<MetricRecord>)],
    grid: &TaskGrid,
    segment: &str,
) -> Option<(u64, f64)> {
    history
        .iter()
        .filter_map(|(step, recs)| segment_auc(recs, grid, segment).map(|v| (*step, v)))
        .fold(None, |best, (s, v)| match best {
            Some((_, bv)) if bv >= v => best,
            _ => Some((s, v)),
        })
}
