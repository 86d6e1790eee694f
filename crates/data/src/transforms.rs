//! What fitting the train split yields and a model stores: mean and standard deviation for
//! standardised numbers, quantile boundaries for bucketised ones, and the split's row,
//! label and funnel counts. Fitted by `Pipeline::fit` (`fit.rs`); read by the decoder.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FittedFeature {
    Standardize { mean: f64, std: f64 },
    Buckets { boundaries: Vec<f64> },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FittedTransforms {
    pub features: BTreeMap<String, FittedFeature>,
    /// Rows of the split the statistics came from.
    pub rows: u64,
    /// Positives (binary) or labelled rows (regression) per behaviour in that split.
    pub label_counts: BTreeMap<String, u64>,
    /// Per configured funnel `from->to`: rows with `to` = 1 but `from` = 0, which break the
    /// implication the funnel assumes.
    #[serde(default)]
    pub funnel_violations: BTreeMap<String, u64>,
}
