//! `[train]`: the training loop's settings, with its sub-tables: `schedule`,
//! `early_stopping` here, `embedding`, `loss` and `threads` in modules of their own.

mod embedding;
mod loss;
mod threads;

pub use embedding::{EmbeddingOptConfig, RowOptimizerKind};
pub use loss::{FunnelConfig, FunnelKind, LossConfig, Reduction};
pub use threads::Threads;

use crate::schema::behaviours::BehaviourConfig;
use crate::schema::check::{join_or_none, Check};
use crate::schema::splits::{check_defined, SplitConfig};
use crate::ConfigError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Model section trained when --model is not given.
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default = "d_epochs")]
    pub epochs: usize,
    /// Stop after this many optimiser steps (0 = no limit).
    #[serde(default)]
    pub max_steps: u64,
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    /// Rows held for shuffling the train split (0 = read in file order).
    #[serde(default = "d_shuffle")]
    pub shuffle_buffer: usize,
    #[serde(default = "d_seed")]
    pub seed: u64,
    /// Compute threads: `"auto"` (the default: the cores this process may use) or a
    /// count. Results are deterministic for a fixed seed, thread count and kernel path.
    #[serde(default)]
    pub threads: Threads,
    /// Number format of the dense network's matrix products: `"f32"` (the default) or
    /// `"bf16"` (operands rounded to bf16, f32 sums; weights, gradients, optimiser state
    /// and embeddings stay f32).
    #[serde(default)]
    pub precision: Precision,
    /// Dense-parameter learning rate (Adam).
    #[serde(default = "d_lr")]
    pub lr: f64,
    /// Decoupled weight decay (AdamW) for dense parameters.
    #[serde(default)]
    pub weight_decay: f64,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    #[serde(default)]
    pub embedding: EmbeddingOptConfig,
    #[serde(default)]
    pub loss: LossConfig,
    /// Split evaluated during training for model selection.
    #[serde(default = "d_valid")]
    pub valid_split: String,
    #[serde(default = "d_train_split")]
    pub train_split: String,
    /// Evaluate every N steps (0 = at the end of each epoch).
    #[serde(default)]
    pub eval_every: u64,
    /// With `mfh train --init-from`: fit the feature statistics on this run's train
    /// split instead of keeping the initial model's.
    #[serde(default)]
    pub refit_transforms: bool,
    /// Also write a resumable checkpoint every N steps (0 = only at evaluations).
    #[serde(default)]
    pub checkpoint_every: u64,
    /// Resumable checkpoints kept in OUT/checkpoints (0 = write none).
    #[serde(default = "d_keep_last")]
    pub keep_last: usize,
    #[serde(default)]
    pub early_stopping: EarlyStoppingConfig,
}

/// `train.precision`: the number format of the dense products' operands.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    Bf16,
}

impl Default for TrainConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// constant | step | cosine (after warm-up).
    #[serde(default)]
    pub kind: ScheduleKind,
    /// Linear warm-up from 0 over this many steps.
    #[serde(default)]
    pub warmup_steps: u64,
    /// step: multiply by `gamma` every `step_size` steps.
    #[serde(default = "d_step_size")]
    pub step_size: u64,
    #[serde(default = "d_gamma")]
    pub gamma: f64,
    /// cosine: final learning rate as a fraction of the base.
    #[serde(default)]
    pub min_lr_ratio: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    #[default]
    Constant,
    Step,
    Cosine,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EarlyStoppingConfig {
    /// `auc` (mean pooled AUC over binary behaviours), `loss` (valid loss), or
    /// `<behaviour>.<metric>` for one behaviour's pooled metric, e.g. `click.auc`.
    #[serde(default = "d_metric")]
    pub metric: String,
    /// Evaluations without improvement before stopping (0 = never stop early).
    #[serde(default = "d_patience")]
    pub patience: usize,
}

impl Default for EarlyStoppingConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

impl TrainConfig {
    /// The splits trained and selected on exist; the sub-tables check; counts and rates
    /// are ones a run can start with.
    pub(crate) fn validate(
        &self,
        c: &Check,
        splits: &BTreeMap<String, SplitConfig>,
        behaviours: &[BehaviourConfig],
    ) -> Result<(), ConfigError> {
        check_defined(splits, c, "train.train_split", &self.train_split)?;
        check_defined(splits, c, "train.valid_split", &self.valid_split)?;
        self.embedding.validate(c)?;
        self.loss.validate(c, behaviours)?;
        self.early_stopping.validate(c, behaviours)?;
        if self.batch_size == 0 {
            return c.fail("train.batch_size", "must be at least 1");
        }
        if self.threads == Threads::Count(0) {
            return c.fail(
                "train.threads",
                "must be at least 1, or \"auto\" for the cores this process may use",
            );
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return c.fail("train.lr", "must be a positive number");
        }
        if self.epochs == 0 && self.max_steps == 0 {
            return c.fail("train.epochs", "must be at least 1");
        }
        if self.schedule.kind == ScheduleKind::Step && self.schedule.step_size == 0 {
            return c.fail("train.schedule.step_size", "must be at least 1");
        }
        Ok(())
    }
}

impl EarlyStoppingConfig {
    /// `auc`, `loss`, or `<behaviour>.<metric>` for a behaviour there is.
    fn validate(&self, c: &Check, behaviours: &[BehaviourConfig]) -> Result<(), ConfigError> {
        let es = &self.metric;
        if es == "auc" || es == "loss" {
            return Ok(());
        }
        let known = |b: &str| behaviours.iter().any(|x| x.name() == b);
        let ok = es
            .split_once('.')
            .map(|(b, m)| known(b) && matches!(m, "auc" | "gauc" | "logloss" | "mse"))
            .unwrap_or(false);
        if ok {
            return Ok(());
        }
        let names: BTreeSet<&str> = behaviours.iter().map(BehaviourConfig::name).collect();
        c.fail(
            "train.early_stopping.metric",
            format!(
                "`{es}` is not `auc`, `loss` or `<behaviour>.<auc|gauc|logloss|mse>` with a behaviour of: {}",
                join_or_none(names.iter())
            ),
        )
    }
}

fn d_epochs() -> usize {
    3
}
fn d_batch() -> usize {
    1024
}
fn d_shuffle() -> usize {
    200_000
}
fn d_seed() -> u64 {
    42
}
fn d_keep_last() -> usize {
    2
}
fn d_lr() -> f64 {
    1e-3
}
fn d_valid() -> String {
    "valid".into()
}
fn d_train_split() -> String {
    "train".into()
}
fn d_step_size() -> u64 {
    1000
}
fn d_gamma() -> f64 {
    0.5
}
fn d_metric() -> String {
    "auc".into()
}
fn d_patience() -> usize {
    2
}
