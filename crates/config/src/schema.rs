//! The config's sections as typed structs, their defaults, and their checks: one module
//! per section (`[data]`, `[splits]`, `[[features]]`, `[[behaviours]]`, `[[facets]]`,
//! `[train]`, `[compare]`, `[models.NAME]`), each checking its own keys and the keys of
//! other sections it names. Here: the whole [`Config`] and the order the sections are
//! checked in.
//!
//! Not here: a facet or feature naming a missing column, checked later, once the data's
//! header is known, by `mfh-data`.

mod behaviours;
mod check;
mod compare;
mod data;
mod facets;
mod features;
mod models;
mod splits;
mod train;

pub use behaviours::BehaviourConfig;
pub use compare::CompareConfig;
pub use data::{CsvOptions, DataConfig, OnError, SideTableConfig};
pub use facets::{FacetConfig, FacetGroup};
pub use features::{FeatureConfig, NumericTransform, PoolingConfig};
pub use splits::SplitConfig;
pub use train::{
    EarlyStoppingConfig, EmbeddingOptConfig, FunnelConfig, FunnelKind, LossConfig, Reduction,
    RowOptimizerKind, ScheduleConfig, ScheduleKind, Threads, TrainConfig,
};

use crate::ConfigError;
use check::Check;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

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
    cfg.train.validate(&c, &cfg.splits, &cfg.behaviours)?;
    cfg.compare.validate(&c, &cfg.splits)?;
    models::validate(&cfg.models, &c)
}
