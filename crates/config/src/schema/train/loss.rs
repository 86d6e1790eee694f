//! `[train.loss]`: how the grid's task losses are reduced and weighted, and the funnel
//! heads over pairs of binary behaviours.

use crate::schema::behaviours::BehaviourConfig;
use crate::schema::check::Check;
use crate::ConfigError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct LossConfig {
    #[serde(default)]
    pub reduction: Reduction,
    /// Per-behaviour weights by behaviour name (default 1).
    #[serde(default)]
    pub weights: BTreeMap<String, f64>,
    /// Per-task weights by task name (`click[user=new,item=tail]`), overriding `weights`.
    #[serde(default)]
    pub task_weights: BTreeMap<String, f64>,
    /// Learn one log-variance per task and weight each task's mean loss by it
    /// (uncertainty weighting; needs `reduction = "task_mean"`).
    #[serde(default)]
    pub uncertainty: bool,
    /// Funnel heads over behaviour pairs where `to` implies `from` (click → like).
    #[serde(default)]
    pub funnels: Vec<FunnelConfig>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Reduction {
    /// Mean over active (sample, task) pairs.
    #[default]
    ActiveMean,
    /// Sum over tasks of each task's mean over its own active rows.
    TaskMean,
    /// Sum over tasks of the task's loss summed over its active rows, divided by the
    /// batch size (masked rows count in the denominator).
    BatchMean,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FunnelConfig {
    /// `esmm`: p(to) = p(from) · p(to | from), trained on every row. `aitm`: the `to`
    /// tower attends to information transferred from the `from` tower, with a penalty
    /// `calibration` · max(p(to) − p(from), 0).
    pub kind: FunnelKind,
    pub from: String,
    pub to: String,
    /// AITM's calibration weight.
    #[serde(default = "d_calibration")]
    pub calibration: f64,
}

fn d_calibration() -> f64 {
    0.6
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FunnelKind {
    Esmm,
    Aitm,
}

impl LossConfig {
    /// Uncertainty weighting over task means; funnels and weights name behaviours there
    /// are (funnels binary ones, each `to` the end of one funnel only).
    pub(crate) fn validate(
        &self,
        c: &Check,
        behaviours: &[BehaviourConfig],
    ) -> Result<(), ConfigError> {
        if self.uncertainty && self.reduction != Reduction::TaskMean {
            return c.fail(
                "train.loss.uncertainty",
                "uncertainty weighting weighs each task's mean loss: set `reduction = \"task_mean\"`",
            );
        }
        let mut funnel_to = BTreeSet::new();
        for (i, f) in self.funnels.iter().enumerate() {
            f.validate(c, &format!("train.loss.funnels[{i}]"), behaviours)?;
            if f.from == f.to || !funnel_to.insert(f.to.as_str()) {
                return c.fail(
                    format!("train.loss.funnels[{i}].to"),
                    format!("`{}` is the end of another funnel, or of itself", f.to),
                );
            }
        }
        for name in self.weights.keys() {
            if !behaviours.iter().any(|b| b.name() == name) {
                return c.fail(format!("train.loss.weights.{name}"), "names no behaviour");
            }
        }
        Ok(())
    }
}

impl FunnelConfig {
    /// `from` and `to` name binary behaviours (`key`: `train.loss.funnels[i]`).
    fn validate(
        &self,
        c: &Check,
        key: &str,
        behaviours: &[BehaviourConfig],
    ) -> Result<(), ConfigError> {
        for (k, b) in [("from", &self.from), ("to", &self.to)] {
            match behaviours.iter().find(|x| x.name() == b) {
                None => return c.fail(format!("{key}.{k}"), format!("names no behaviour: `{b}`")),
                Some(x) if !x.is_binary() => {
                    return c.fail(
                        format!("{key}.{k}"),
                        format!("`{b}` is not a binary behaviour"),
                    )
                }
                _ => {}
            }
        }
        Ok(())
    }
}
