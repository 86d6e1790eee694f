//! The config's sections as typed structs, their defaults, and their checks: one module
//! per section (`[data]`, `[splits]`, `[[features]]`, `[[behaviours]]`, `[[facets]]`,
//! `[train]`, `[compare]`, `[models.NAME]`), each checking its own keys and the keys of
//! other sections it names. Here: the whole [`Config`], the order the sections are
//! checked in, and the one check over two sections, the size of the task grid.
//!
//! Not here: a facet or feature naming a missing column, checked later, once the data's
//! header is known, by `mfh-data`.

mod behaviours;
pub(crate) mod check;
mod compare;
mod data;
mod facets;
mod features;
mod models;
mod splits;
mod train;
pub(crate) mod tune;

pub use behaviours::BehaviourConfig;
pub use compare::CompareConfig;
pub use data::{CsvOptions, DataConfig, OnError, PartitionType, SideTableConfig};
pub use facets::{FacetConfig, FacetGroup};
pub use features::{FeatureConfig, NumericTransform, PoolingConfig};
pub use splits::SplitConfig;
pub use train::{
    EarlyStoppingConfig, EmbeddingOptConfig, FunnelConfig, FunnelKind, LossConfig, Precision,
    Reduction, RowOptimizerKind, ScheduleConfig, ScheduleKind, Threads, TrainConfig,
};
pub use tune::{set_dotted, Domain, Space};

use crate::ConfigError;
use check::Check;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The most tasks (behaviours × facet cells) a task grid may have. Cells are `u32` in a
/// batch and every task has its own tower, loss term and metrics; the limit keeps all of
/// them far from overflow and the allocation reasonable.
pub const MAX_TASKS: usize = 1 << 16;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub data: DataConfig,
    #[serde(default)]
    pub splits: BTreeMap<String, SplitConfig>,
    #[serde(default)]
    pub features: Vec<FeatureConfig>,
    pub behaviours: Vec<BehaviourConfig>,
    #[serde(default)]
    pub facets: Vec<FacetConfig>,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub models: BTreeMap<String, toml::Table>,
    #[serde(default)]
    pub compare: CompareConfig,
    /// `[tune.NAME]`: the search space of `mfh tune --model NAME` (see [`Domain`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tune: BTreeMap<String, toml::Table>,
    /// The file this config was read from (not part of the TOML).
    #[serde(skip)]
    pub source_file: PathBuf,
}

/// Every section's checks, the first error found naming its key. Column existence is
/// checked against the data header later.
pub(crate) fn validate(cfg: &Config) -> Result<(), ConfigError> {
    let c = Check::new(&cfg.source_file);
    cfg.data.validate(&c)?;
    splits::validate(&cfg.splits, &c)?;
    features::validate(&cfg.features, &c)?;
    behaviours::validate(&cfg.behaviours, &c)?;
    facets::validate(&cfg.facets, &c)?;
    check_grid_size(cfg, &c)?;
    cfg.train.validate(&c, &cfg.splits, &cfg.behaviours)?;
    cfg.compare.validate(&c, &cfg.splits, &cfg.behaviours)?;
    tune::parse(&cfg.tune, &cfg.models, &c)?;
    models::validate(&cfg.models, &c)
}

/// Behaviours × facet values, at most [`MAX_TASKS`]: the first key that takes the
/// product past it is named (`behaviours`, or the facet `facets[i]`).
fn check_grid_size(cfg: &Config, c: &Check) -> Result<(), ConfigError> {
    let n = cfg.behaviours.len();
    if n > MAX_TASKS {
        return c.fail(
            "behaviours",
            format!(
                "{n} behaviours make more than {MAX_TASKS} tasks, the most a task grid may have"
            ),
        );
    }
    let mut tasks = n;
    let mut sizes = Vec::new();
    for (i, facet) in cfg.facets.iter().enumerate() {
        let values = facet.values().len();
        sizes.push(values.to_string());
        match tasks.checked_mul(values) {
            Some(t) if t <= MAX_TASKS => tasks = t,
            _ => {
                return c.fail(
                    format!("facets[{i}]"),
                    format!(
                        "the task grid has more than {MAX_TASKS} tasks, the most it may have: {n} behaviours × {} values of the facets up to this one; use fewer facets or facet values",
                        sizes.join(" × ")
                    ),
                )
            }
        }
    }
    Ok(())
}
