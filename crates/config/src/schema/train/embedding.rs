//! `[train.embedding]`: the row optimiser of the sparse embedding side and the rows'
//! lifecycle (admission, expiry, row caps).

use crate::schema::check::Check;
use crate::ConfigError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingOptConfig {
    /// adagrad (row-wise, default) | adam (lazy) | ftrl (per element, `lr` is its α).
    #[serde(default)]
    pub optimizer: RowOptimizerKind,
    /// FTRL: β, and the L1 / L2 strengths.
    #[serde(default = "d_ftrl_beta")]
    pub ftrl_beta: f64,
    #[serde(default)]
    pub l1: f64,
    #[serde(default)]
    pub l2: f64,
    /// Admission: a new ID gets a row after this many sightings in training (0/1: at
    /// once); until then it reads the all-zero default row.
    #[serde(default)]
    pub admit_after: u32,
    /// Expiry: rows not looked up in this many steps are evicted (0: never).
    #[serde(default)]
    pub ttl_steps: u64,
    /// Row cap per table: beyond it the least frequently used rows are evicted (0: none).
    #[serde(default)]
    pub max_rows: u64,
    /// Eviction runs between batches every this many steps.
    #[serde(default = "d_evict_every")]
    pub evict_every: u64,
    #[serde(default = "d_emb_lr")]
    pub lr: f64,
    /// Half-width of the uniform initialisation of new rows.
    #[serde(default = "d_init")]
    pub init_scale: f64,
    #[serde(default = "d_eps")]
    pub eps: f64,
    #[serde(default = "d_beta1")]
    pub beta1: f64,
    #[serde(default = "d_beta2")]
    pub beta2: f64,
}

fn d_ftrl_beta() -> f64 {
    1.0
}

fn d_evict_every() -> u64 {
    100
}

impl Default for EmbeddingOptConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RowOptimizerKind {
    #[default]
    Adagrad,
    Adam,
    Ftrl,
}

impl EmbeddingOptConfig {
    /// FTRL strengths non-negative, eviction scheduled when it is asked for, a learning
    /// rate that moves.
    pub(crate) fn validate(&self, c: &Check) -> Result<(), ConfigError> {
        for (k, v) in [
            ("ftrl_beta", self.ftrl_beta),
            ("l1", self.l1),
            ("l2", self.l2),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return c.fail(
                    format!("train.embedding.{k}"),
                    format!("{v} is not a finite non-negative number"),
                );
            }
        }
        if self.evict_every == 0 && (self.ttl_steps > 0 || self.max_rows > 0) {
            return c.fail(
                "train.embedding.evict_every",
                "must be at least 1 when ttl_steps or max_rows is set",
            );
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return c.fail("train.embedding.lr", "must be a positive number");
        }
        Ok(())
    }
}

fn d_emb_lr() -> f64 {
    0.05
}
fn d_init() -> f64 {
    0.05
}
fn d_eps() -> f64 {
    1e-8
}
fn d_beta1() -> f64 {
    0.9
}
fn d_beta2() -> f64 {
    0.999
}
