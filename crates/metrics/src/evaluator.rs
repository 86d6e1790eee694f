//! Streaming evaluator: collects predictions batch by batch, then reports every metric per
//! behaviour × facet cell and pooled over all cells.

use serde::{Deserialize, Serialize};

use crate::measures::{auc, calibration, gauc, is_positive, logloss, mse};
pub use crate::report::POOLED_CELL;
use crate::report::{MetricRecord, Report};

/// What kind of target a behaviour has, which decides its metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BehaviourKind {
    /// Click, like, …: the score is a probability; reported with auc, gauc, logloss, calibration.
    Binary,
    /// Watch ratio, …: the score is a real value; reported with mse, calibration.
    Regression,
}

/// One predicted behaviour (one output column of the model).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BehaviourInfo {
    pub name: String,
    pub kind: BehaviourKind,
}

impl BehaviourInfo {
    pub fn binary(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: BehaviourKind::Binary,
        }
    }

    pub fn regression(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: BehaviourKind::Regression,
        }
    }

    /// Whether a (present) label counts towards the `positives` count.
    fn is_positive(&self, label: f32) -> bool {
        match self.kind {
            BehaviourKind::Binary => is_positive(label),
            BehaviourKind::Regression => label > 0.0,
        }
    }
}

/// Labelled rows of one behaviour. Missing labels are only counted, so memory grows with
/// labelled rows, not with rows × behaviours of the raw batches.
#[derive(Clone, Debug, Default)]
struct BehaviourRows {
    scores: Vec<f32>,
    labels: Vec<f32>,
    cells: Vec<u32>,
    /// Empty when the evaluation has no group keys.
    groups: Vec<u64>,
    /// Rows whose label was missing, per facet cell.
    missing_per_cell: Vec<u64>,
}

/// Accumulates model outputs and labels over batches and turns them into a [`Report`].
#[derive(Clone, Debug)]
pub struct Evaluator {
    behaviours: Vec<BehaviourInfo>,
    cell_names: Vec<String>,
    per_behaviour: Vec<BehaviourRows>,
    /// Decided by the first batch: GAUC over only some batches would silently mislead.
    with_groups: Option<bool>,
    rows: u64,
}

impl Evaluator {
    /// `cell_names[i]` names facet cell `i`. A cell named "all" would be indistinguishable
    /// from the pooled records, so callers should avoid it.
    pub fn new(behaviours: Vec<BehaviourInfo>, cell_names: Vec<String>) -> Self {
        let per_behaviour = behaviours
            .iter()
            .map(|_| BehaviourRows {
                missing_per_cell: vec![0; cell_names.len()],
                ..BehaviourRows::default()
            })
            .collect();
        Self {
            behaviours,
            cell_names,
            per_behaviour,
            with_groups: None,
            rows: 0,
        }
    }

    pub fn behaviours(&self) -> &[BehaviourInfo] {
        &self.behaviours
    }

    pub fn cell_names(&self) -> &[String] {
        &self.cell_names
    }

    /// Rows added so far (whether or not they had labels).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Adds `n = cells.len()` rows. `preds` and `labels` are n × B row-major (B behaviours,
    /// in the order given to [`Evaluator::new`]); a NaN label marks a missing label.
    /// `groups` (e.g. hashed user id) enables GAUC and must be given for every batch or
    /// for none. Nothing is added when an error is returned.
    pub fn add_batch(
        &mut self,
        preds: &[f32],
        labels: &[f32],
        cells: &[u32],
        groups: Option<&[u64]>,
    ) -> Result<(), String> {
        let n = cells.len();
        let width = self.behaviours.len();
        let expected = n
            .checked_mul(width)
            .ok_or_else(|| format!("batch of {n} rows × {width} behaviours overflows"))?;
        if preds.len() != expected {
            return Err(format!(
                "preds has {} values, expected {n} rows × {width} behaviours = {expected}",
                preds.len()
            ));
        }
        if labels.len() != expected {
            return Err(format!(
                "labels has {} values, expected {n} rows × {width} behaviours = {expected}",
                labels.len()
            ));
        }
        if let Some(groups) = groups {
            if groups.len() != n {
                return Err(format!(
                    "groups has {} values, expected one per row ({n})",
                    groups.len()
                ));
            }
        }
        if let Some(row) = cells
            .iter()
            .position(|&c| c as usize >= self.cell_names.len())
        {
            return Err(format!(
                "row {row} has cell index {}, but only {} cells are known",
                cells[row],
                self.cell_names.len()
            ));
        }
        match self.with_groups {
            Some(with) if with != groups.is_some() => {
                return Err(if with {
                    "earlier batches had group keys, this one has none".to_string()
                } else {
                    "earlier batches had no group keys, this one has some".to_string()
                });
            }
            _ => self.with_groups = Some(groups.is_some()),
        }

        for (b, rows) in self.per_behaviour.iter_mut().enumerate() {
            for (r, &cell) in cells.iter().enumerate() {
                let label = labels[r * width + b];
                if label.is_nan() {
                    rows.missing_per_cell[cell as usize] += 1;
                    continue;
                }
                rows.scores.push(preds[r * width + b]);
                rows.labels.push(label);
                rows.cells.push(cell);
                if let Some(groups) = groups {
                    rows.groups.push(groups[r]);
                }
            }
        }
        self.rows += n as u64;
        Ok(())
    }

    /// Every metric for every behaviour × cell (cells in the given order, then the pooled
    /// "all"), tagged with `split`. Cells without labelled rows still get records, with
    /// `None` values, so reports of different models line up.
    pub fn finish(&self, split: &str) -> Report {
        let with_groups = self.with_groups == Some(true);
        let mut records = Vec::new();
        for (info, rows) in self.behaviours.iter().zip(&self.per_behaviour) {
            let mut by_cell: Vec<Vec<usize>> = vec![Vec::new(); self.cell_names.len()];
            for (i, &cell) in rows.cells.iter().enumerate() {
                by_cell[cell as usize].push(i);
            }
            for ((cell_name, indices), &missing) in self
                .cell_names
                .iter()
                .zip(&by_cell)
                .zip(&rows.missing_per_cell)
            {
                let scores: Vec<f32> = indices.iter().map(|&i| rows.scores[i]).collect();
                let labels: Vec<f32> = indices.iter().map(|&i| rows.labels[i]).collect();
                let groups: Option<Vec<u64>> =
                    with_groups.then(|| indices.iter().map(|&i| rows.groups[i]).collect());
                let slice = Slice {
                    split,
                    info,
                    cell: cell_name,
                    scores: &scores,
                    labels: &labels,
                    groups: groups.as_deref(),
                    missing,
                };
                slice.push_records(&mut records);
            }
            let pooled = Slice {
                split,
                info,
                cell: POOLED_CELL,
                scores: &rows.scores,
                labels: &rows.labels,
                groups: with_groups.then_some(rows.groups.as_slice()),
                missing: rows.missing_per_cell.iter().sum(),
            };
            pooled.push_records(&mut records);
        }
        Report { records }
    }
}

/// The labelled rows of one behaviour in one cell (or pooled), ready to be measured.
struct Slice<'a> {
    split: &'a str,
    info: &'a BehaviourInfo,
    cell: &'a str,
    scores: &'a [f32],
    labels: &'a [f32],
    groups: Option<&'a [u64]>,
    missing: u64,
}

impl Slice<'_> {
    fn push_records(&self, out: &mut Vec<MetricRecord>) {
        let (scores, labels) = (self.scores, self.labels);
        let n = labels.len() as u64;
        let positives = labels.iter().filter(|&&l| self.info.is_positive(l)).count() as u64;
        let mut push = |metric: &str, value: Option<f64>| {
            out.push(MetricRecord {
                split: self.split.to_string(),
                behaviour: self.info.name.clone(),
                cell: self.cell.to_string(),
                metric: metric.to_string(),
                value,
                n,
                positives,
                missing: self.missing,
            });
        };
        match self.info.kind {
            BehaviourKind::Binary => {
                push("auc", auc(scores, labels));
                if let Some(groups) = self.groups {
                    push("gauc", gauc(scores, labels, groups).map(|g| g.value));
                }
                push("logloss", logloss(scores, labels));
                push("calibration", calibration(scores, labels));
            }
            BehaviourKind::Regression => {
                push("mse", mse(scores, labels));
                push("calibration", calibration(scores, labels));
            }
        }
    }
}
