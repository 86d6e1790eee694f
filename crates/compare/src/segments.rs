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

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> TaskGrid {
        TaskGrid {
            behaviours: vec!["click".into(), "watch".into(), "like".into()],
            binary: vec![true, false, true],
            facets: vec![("user".into(), vec!["new".into(), "old".into()])],
        }
    }

    fn rec(behaviour: &str, cell: &str, metric: &str, value: Option<f64>) -> MetricRecord {
        MetricRecord {
            split: "valid".into(),
            behaviour: behaviour.into(),
            cell: cell.into(),
            metric: metric.into(),
            value,
            n: 10,
            positives: 3,
            missing: 0,
        }
    }

    /// AUC of click and like in `cell`, plus a regression metric that must be ignored.
    fn records(cell: &str, click: f64, like: Option<f64>) -> Vec<MetricRecord> {
        vec![
            rec("click", cell, "auc", Some(click)),
            rec("click", cell, "logloss", Some(0.3)),
            rec("watch", cell, "mse", Some(9.0)),
            rec("like", cell, "auc", like),
        ]
    }

    #[test]
    fn segment_auc_is_the_mean_over_binary_behaviours() {
        let g = grid();
        let r = records("user=new", 0.6, Some(0.8));
        assert!((segment_auc(&r, &g, "user=new").unwrap() - 0.7).abs() < 1e-12);
        assert_eq!(segment_auc(&r, &g, "user=old"), None);
        let undefined = records("user=new", 0.6, None);
        assert_eq!(segment_auc(&undefined, &g, "user=new"), None);
    }

    #[test]
    fn peak_takes_the_best_step_and_the_earliest_on_a_tie() {
        let g = grid();
        // Step 40 ties step 20 exactly (binary fractions): the earlier one stands.
        let history = vec![
            (10, records("all", 0.5, Some(0.5))),
            (20, records("all", 0.75, Some(0.75))),
            (30, records("all", 1.0, None)),
            (40, records("all", 1.0, Some(0.5))),
        ];
        assert_eq!(peak(&history, &g, "all"), Some((20, 0.75)));
        assert_eq!(peak(&history, &g, "user=new"), None);
        assert_eq!(peak(&[], &g, "all"), None);
    }
}
