//! Model selection on the valid split: the best value so far, patience, and the history
//! of every evaluation (for per-cell selection and the checkpoints).

use anyhow::Result;
use mfh_artifact::scoring::EvalResult;
use mfh_metrics::{MetricRecord, Report};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The part of model selection that changes during training.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SelectionState {
    /// Best value (f64 bits; NaN when undefined), its step and report.
    pub best: Option<(u64, u64, Vec<MetricRecord>)>,
    pub since_best: usize,
    pub last_report: Vec<MetricRecord>,
    pub empty_warned: bool,
    pub history: Vec<(u64, Vec<MetricRecord>)>,
}

impl SelectionState {
    pub fn best(&self) -> Option<(f64, u64, Report)> {
        self.best
            .as_ref()
            .map(|(v, s, r)| (f64::from_bits(*v), *s, Report::new(r.clone())))
    }
    pub fn history(&self) -> Vec<(u64, Report)> {
        self.history
            .iter()
            .map(|(s, r)| (*s, Report::new(r.clone())))
            .collect()
    }
}

/// Saves the model at a step with its selection value and metrics.
pub type SaveFn<'a> = dyn FnMut(&mut mfh_artifact::ModelState, u64, Option<f64>, &EvalResult, &Path) -> Result<()>
    + 'a;

/// Model selection on the valid split: keeps the best value, saves on improvement, and
/// says when patience has run out. The one rule of every trainer (one process or
/// distributed): the first evaluation is best; later, a defined value beats the best
/// when it is higher (lower for `loss`); an undefined value (an empty split, a metric
/// without positives) never does, except that an empty split keeps the newest model.
pub struct Selection {
    pub metric: String,
    pub patience: usize,
    pub best: Option<(f64, u64, Report)>,
    pub since_best: usize,
    pub last_report: Report,
    pub empty_warned: bool,
    /// Where the best model goes.
    pub out: PathBuf,
    /// Where every evaluation's model goes, when kept.
    pub checkpoints: Option<PathBuf>,
    /// The selection split's report at every evaluation.
    pub history: Vec<(u64, Report)>,
    /// Print warnings and the early-stop line (false on all but one rank).
    pub verbose: bool,
}

impl Selection {
    /// Selection on `metric` with `patience` (0: never stop early), saving the best model
    /// to `out` and, with `checkpoints`, every evaluation's model to `checkpoints/stepN`.
    pub fn new(metric: &str, patience: usize, out: &Path, checkpoints: Option<PathBuf>) -> Self {
        Selection {
            metric: metric.to_string(),
            patience,
            best: None,
            since_best: 0,
            last_report: Report::default(),
            empty_warned: false,
            out: out.to_path_buf(),
            checkpoints,
            history: Vec::new(),
            verbose: true,
        }
    }

    /// The best (value if defined, step, report), or (None, 0, the last report) before
    /// any evaluation improved.
    pub fn outcome(self) -> (Option<f64>, u64, Report, Vec<(u64, Report)>) {
        let (v, s, r) = self
            .best
            .map(|(v, s, r)| (Some(v).filter(|x| x.is_finite()), s, r))
            .unwrap_or((None, 0, self.last_report));
        (v, s, r, self.history)
    }

    pub fn snapshot(&self) -> SelectionState {
        SelectionState {
            best: self
                .best
                .as_ref()
                .map(|(v, s, r)| (v.to_bits(), *s, r.records.clone())),
            since_best: self.since_best,
            last_report: self.last_report.records.clone(),
            empty_warned: self.empty_warned,
            history: self
                .history
                .iter()
                .map(|(s, r)| (*s, r.records.clone()))
                .collect(),
        }
    }

    pub fn restore(&mut self, s: &SelectionState) {
        self.best = s.best();
        self.since_best = s.since_best;
        self.last_report = Report::new(s.last_report.clone());
        self.empty_warned = s.empty_warned;
        self.history = s.history();
    }

    /// Returns true when training should stop early.
    pub fn update(
        &mut self,
        state: &mut mfh_artifact::ModelState,
        step: u64,
        res: EvalResult,
        save: &mut SaveFn,
    ) -> Result<bool> {
        let (value, higher) = res.metric(&self.metric, &state.grid);
        self.history.push((step, res.report.clone()));
        if let Some(dir) = &self.checkpoints {
            save(state, step, value, &res, &dir.join(format!("step{step}")))?;
        }
        if res.rows == 0 && !self.empty_warned && self.verbose {
            eprintln!("warning: the selection split is empty; keeping the last model");
            self.empty_warned = true;
        }
        let improved = match (&self.best, value) {
            (None, _) => true,
            (Some((b, _, _)), Some(v)) => {
                if higher {
                    v > *b
                } else {
                    v < *b
                }
            }
            (Some(_), None) => res.rows == 0,
        };
        self.last_report = res.report.clone();
        if improved {
            save(state, step, value, &res, &self.out)?;
            self.best = Some((value.unwrap_or(f64::NAN), step, res.report));
            self.since_best = 0;
            return Ok(false);
        }
        self.since_best += 1;
        if self.patience > 0 && self.since_best >= self.patience {
            if self.verbose {
                eprintln!(
                    "early stop: {} has not improved for {} evaluation(s)",
                    self.metric, self.since_best
                );
            }
            return Ok(true);
        }
        Ok(false)
    }
}
