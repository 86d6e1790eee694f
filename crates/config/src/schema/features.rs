//! `[[features]]`: what the network reads from each row (embedded IDs, pooled ID lists,
//! numbers, bucketed numbers), and the embedding tables they name.

use crate::schema::check::{strictly_increasing, Check};
use crate::schema::data::comma;
use crate::ConfigError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FeatureConfig {
    /// A hashed ID embedded in a table of `dim` columns.
    Categorical {
        name: String,
        #[serde(default)]
        column: Option<String>,
        dim: usize,
        /// Features naming the same table share its rows (default: own table).
        #[serde(default)]
        table: Option<String>,
    },
    /// Several IDs in one cell, split by `separator`, pooled.
    Multi {
        name: String,
        #[serde(default)]
        column: Option<String>,
        dim: usize,
        #[serde(default)]
        table: Option<String>,
        #[serde(default = "comma")]
        separator: String,
        #[serde(default)]
        pooling: PoolingConfig,
    },
    /// A number fed to the dense network after its transforms.
    Numeric {
        name: String,
        #[serde(default)]
        column: Option<String>,
        #[serde(default)]
        transform: Vec<NumericTransform>,
        /// Value used (after transforms) when the cell is missing.
        #[serde(default)]
        fill: f64,
    },
    /// A number cut into buckets, each bucket an embedded ID.
    Bucketized {
        name: String,
        #[serde(default)]
        column: Option<String>,
        dim: usize,
        /// Explicit increasing boundaries, or ...
        #[serde(default)]
        boundaries: Vec<f64>,
        /// ... this many quantile buckets fitted on the train split.
        #[serde(default)]
        quantiles: Option<usize>,
        #[serde(default)]
        log1p: bool,
        #[serde(default)]
        table: Option<String>,
    },
}

impl FeatureConfig {
    pub fn name(&self) -> &str {
        match self {
            FeatureConfig::Categorical { name, .. }
            | FeatureConfig::Multi { name, .. }
            | FeatureConfig::Numeric { name, .. }
            | FeatureConfig::Bucketized { name, .. } => name,
        }
    }
    /// The source column: `column` if given, else the feature's name.
    pub fn column(&self) -> &str {
        match self {
            FeatureConfig::Categorical { name, column, .. }
            | FeatureConfig::Multi { name, column, .. }
            | FeatureConfig::Numeric { name, column, .. }
            | FeatureConfig::Bucketized { name, column, .. } => column.as_deref().unwrap_or(name),
        }
    }
    /// Embedding table name and width, for the features that embed.
    pub fn table(&self) -> Option<(&str, usize)> {
        match self {
            FeatureConfig::Categorical {
                name, dim, table, ..
            }
            | FeatureConfig::Multi {
                name, dim, table, ..
            }
            | FeatureConfig::Bucketized {
                name, dim, table, ..
            } => Some((table.as_deref().unwrap_or(name), *dim)),
            FeatureConfig::Numeric { .. } => None,
        }
    }

    /// The keys of one feature that need no other feature (`key`: `features[i]`).
    fn validate(&self, c: &Check, key: &str) -> Result<(), ConfigError> {
        match self {
            FeatureConfig::Multi { separator, .. } if separator.len() != 1 => c.fail(
                format!("{key}.separator"),
                "must be a single byte character",
            ),
            FeatureConfig::Numeric { fill, .. } if !fill.is_finite() => {
                c.fail(format!("{key}.fill"), "must be a finite number")
            }
            FeatureConfig::Bucketized {
                boundaries,
                quantiles,
                ..
            } => check_buckets(c, key, boundaries, *quantiles),
            _ => Ok(()),
        }
    }
}

/// A bucketized feature has explicit boundaries or a quantile count, not both.
fn check_buckets(
    c: &Check,
    key: &str,
    boundaries: &[f64],
    quantiles: Option<usize>,
) -> Result<(), ConfigError> {
    match (boundaries.is_empty(), quantiles) {
        (true, None) => return c.fail(key, "needs `boundaries` or `quantiles`"),
        (false, Some(_)) => {
            return c.fail(key, "give either `boundaries` or `quantiles`, not both")
        }
        (true, Some(q)) if q < 2 => {
            return c.fail(format!("{key}.quantiles"), "must be at least 2")
        }
        _ => {}
    }
    if !strictly_increasing(boundaries) {
        return c.fail(
            format!("{key}.boundaries"),
            "must be finite and strictly increasing",
        );
    }
    Ok(())
}

/// Every feature: names distinct, tables shared with one width, at least one feature.
pub(crate) fn validate(features: &[FeatureConfig], c: &Check) -> Result<(), ConfigError> {
    let mut names = BTreeSet::new();
    let mut tables: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, feat) in features.iter().enumerate() {
        let key = format!("features[{i}]");
        if !names.insert(feat.name()) {
            return c.fail(
                format!("{key}.name"),
                format!("feature `{}` is defined twice", feat.name()),
            );
        }
        if let Some((table, dim)) = feat.table() {
            if dim == 0 {
                return c.fail(format!("{key}.dim"), "must be at least 1");
            }
            if let Some(&d) = tables.get(table) {
                if d != dim {
                    return c.fail(
                        format!("{key}.dim"),
                        format!("table `{table}` is shared with dim {d}, this feature says {dim}"),
                    );
                }
            }
            tables.insert(table, dim);
        }
        feat.validate(c, &key)?;
    }
    if features.is_empty() {
        return c.fail("features", "the config defines no feature");
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum PoolingConfig {
    Sum,
    #[default]
    Mean,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NumericTransform {
    /// ln(1 + max(x, 0)).
    Log1p,
    /// (x − mean) / std, both fitted on the train split.
    Standardize,
}
