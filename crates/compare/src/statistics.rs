//! The comparison's numbers over seeds: each (model, behaviour, cell, metric)'s values
//! over the runs, and per model the 95 % bootstrap interval of the seed-mean AUC per
//! (behaviour, cell), from the runs' saved report-split predictions (`predictions.bin`).
//! The statistics themselves are `mfh_metrics::statistics`.

use crate::runs::{run_dir, RunRecord};
use mfh_artifact::scoring::Predictions;
use mfh_config::TaskGrid;
use mfh_data::SplitMix;
use mfh_metrics::{bootstrap_mean_auc, ScoredColumn, POOLED_CELL};
use std::collections::BTreeMap;
use std::path::Path;

/// One (model, behaviour, cell, metric) over seeds: the defined values, and the rows and
/// positives it was measured on (the last run's).
#[derive(Default)]
pub(crate) struct SeedValues {
    pub values: Vec<f64>,
    pub n: u64,
    pub positives: u64,
}

/// (model, behaviour, cell, metric) → values over seeds.
pub(crate) type Aggregate = BTreeMap<(String, String, String, String), SeedValues>;

/// (behaviour, cell) → (low, high).
pub(crate) type Intervals = BTreeMap<(String, String), (f64, f64)>;

/// Every run's report-split records, gathered over seeds.
pub(crate) fn aggregate(runs: &[RunRecord]) -> Aggregate {
    let mut agg = Aggregate::new();
    for r in runs {
        for rec in &r.records {
            let c = agg
                .entry((
                    r.model.clone(),
                    rec.behaviour.clone(),
                    rec.cell.clone(),
                    rec.metric.clone(),
                ))
                .or_default();
            if let Some(v) = rec.value {
                c.values.push(v);
            }
            c.n = rec.n;
            c.positives = rec.positives;
        }
    }
    agg
}

/// Per model of `models`: the AUC intervals over its runs among `runs` whose predictions
/// read back (none for a model without any, such as a peer or a variant).
pub(crate) fn model_intervals(
    grid: &TaskGrid,
    out: &Path,
    runs: &[RunRecord],
    models: &[String],
    reps: usize,
) -> BTreeMap<String, Intervals> {
    let mut intervals = BTreeMap::new();
    for m in models {
        let preds: Vec<Predictions> = runs
            .iter()
            .filter(|r| &r.model == m)
            .filter_map(|r| {
                std::fs::read(run_dir(out, &r.model, r.seed).join("predictions.bin")).ok()
            })
            .filter_map(|b| Predictions::from_bytes(&b))
            .collect();
        intervals.insert(m.clone(), auc_intervals(grid, &preds, reps));
    }
    intervals
}

/// 95 % bootstrap interval of the seed-mean AUC per (behaviour, cell): rows are resampled
/// within each cell (and pooled), each seed's predictions scored on the same resample.
fn auc_intervals(grid: &TaskGrid, preds: &[Predictions], reps: usize) -> Intervals {
    let mut out = BTreeMap::new();
    if preds.is_empty() || reps == 0 {
        return out;
    }
    let rows = preds[0].rows();
    let mut by_cell: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for r in 0..rows {
        by_cell
            .entry(grid.cell_name(preds[0].cells[r] as usize))
            .or_default()
            .push(r);
    }
    by_cell.insert(POOLED_CELL.into(), (0..rows).collect());
    // One generator for all cells and behaviours, in this order: the intervals repeat.
    let mut rng = SplitMix(0xb007);
    let mut draw = |n: usize| rng.below(n);
    for (cell, idx) in &by_cell {
        for (b, name) in grid.behaviours.iter().enumerate() {
            if !grid.binary[b] {
                continue;
            }
            let sets: Vec<ScoredColumn> = preds
                .iter()
                .map(|p| ScoredColumn {
                    scores: &p.preds,
                    labels: &p.labels,
                    stride: p.n_behaviours,
                    column: b,
                })
                .collect();
            if let Some(interval) = bootstrap_mean_auc(&sets, idx, reps, &mut draw) {
                out.insert((name.clone(), cell.clone()), interval);
            }
        }
    }
    out
}

/// The numbers every section of the reports is drawn from.
pub(crate) struct Summary {
    pub grid: TaskGrid,
    /// Models in table order: by first appearance among the runs, their `+cellsel`
    /// variants and the peers.
    pub models: Vec<String>,
    /// Rows of the tables: each cell when there are several, then the pooled rows.
    pub cells: Vec<String>,
    pub agg: Aggregate,
    /// Model → AUC intervals (empty for models without predictions).
    pub intervals: BTreeMap<String, Intervals>,
}
