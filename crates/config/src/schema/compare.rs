//! `[compare]`: the splits `mfh compare` selects and reports on when `test` is empty.

use crate::schema::check::Check;
use crate::schema::splits::{check_defined, SplitConfig};
use crate::ConfigError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How `mfh compare` selects and reports when the `test` split is empty: select each
/// model on `select`, report on `report` (with a non-empty `test` split: select on
/// `train.valid_split`, report on `test`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct CompareConfig {
    #[serde(default)]
    pub select: Option<String>,
    #[serde(default)]
    pub report: Option<String>,
}

impl CompareConfig {
    /// The splits named here exist.
    pub(crate) fn validate(
        &self,
        c: &Check,
        splits: &BTreeMap<String, SplitConfig>,
    ) -> Result<(), ConfigError> {
        for (key, split) in [
            ("compare.select", &self.select),
            ("compare.report", &self.report),
        ] {
            if let Some(split) = split {
                check_defined(splits, c, key, split)?;
            }
        }
        Ok(())
    }
}
