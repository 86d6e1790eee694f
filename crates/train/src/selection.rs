//! Model selection on the valid split: the best value so far, patience, and the history
//! of every evaluation (for per-cell selection and the checkpoints).

use crate::checkpoint;
use anyhow::Result;
use mfh_artifact::scoring::EvalResult;
use mfh_metrics::Report;
use std::path::{Path, PathBuf};

/// Saves the model at a step with its selection value and metrics.
pub(crate) type SaveFn<'a> = dyn FnMut(&mut mfh_artifact::ModelState, u64, Option<f64>, &EvalResult, &Path) -> Result<()>
    + 'a;

/// Model selection on the valid split: keeps the best value, saves on improvement, and
/// says when patience has run out.
pub(crate) struct Selection {
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
}

impl Selection {
    pub fn snapshot(&self) -> checkpoint::SelectionState {
        checkpoint::SelectionState {
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

    pub fn restore(&mut self, s: &checkpoint::SelectionState) {
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
        if res.rows == 0 && !self.empty_warned {
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
            eprintln!(
                "early stop: {} has not improved for {} evaluation(s)",
                self.metric, self.since_best
            );
            return Ok(true);
        }
        Ok(false)
    }
}
