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
    /// Behaviour name → the column holding each row's true probability of it (generated
    /// data: `mfh prepare synthetic` writes `p_click`…). The comparison then reports the
    /// AUC of those probabilities per cell — the best any model can reach — and the share
    /// of it above chance each model reaches.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub oracle: BTreeMap<String, String>,
}

impl CompareConfig {
    /// The splits named here exist.
    pub(crate) fn validate(
        &self,
        c: &Check,
        splits: &BTreeMap<String, SplitConfig>,
        behaviours: &[crate::BehaviourConfig],
    ) -> Result<(), ConfigError> {
        for (b, col) in &self.oracle {
            match behaviours.iter().find(|x| x.name() == b) {
                Some(x) if x.is_binary() => {}
                Some(_) => {
                    return c.fail(
                        format!("compare.oracle.{b}"),
                        "an oracle is the probability of a binary behaviour",
                    )
                }
                None => {
                    return c.fail(
                        format!("compare.oracle.{b}"),
                        format!(
                            "no behaviour `{b}` (there are: {})",
                            behaviours
                                .iter()
                                .map(|x| x.name())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                }
            }
            if col.is_empty() {
                return c.fail(format!("compare.oracle.{b}"), "an empty column name");
            }
        }
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
