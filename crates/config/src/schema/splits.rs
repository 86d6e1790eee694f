//! `[splits]`: named subsets of the rows, by a predicate or by a file of row indices, and
//! the check other sections use when they name a split.

use crate::predicate::Predicate;
use crate::schema::check::{join_or_none, Check};
use crate::ConfigError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A named subset of rows: by a predicate over columns, or by a file of row indices.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    /// e.g. `"date >= 20220428 and date <= 20220504"`.
    #[serde(default, rename = "where")]
    pub predicate: Option<String>,
    /// A file with one 0-based data-row index per line (rows counted over all sources).
    #[serde(default)]
    pub rows: Option<PathBuf>,
}

impl SplitConfig {
    pub fn parsed_predicate(&self) -> Option<Predicate> {
        self.predicate
            .as_deref()
            .map(|p| Predicate::parse(p).expect("validated"))
    }

    /// Exactly one of `where` (a predicate that parses) and `rows`.
    fn validate(&self, c: &Check, key: &str) -> Result<(), ConfigError> {
        match (&self.predicate, &self.rows) {
            (Some(_), Some(_)) => c.fail(key, "give either `where` or `rows`, not both"),
            (None, None) => c.fail(key, "needs `where` (a predicate) or `rows` (a file)"),
            (Some(p), None) => match Predicate::parse(p) {
                Err(e) => c.fail(format!("{key}.where"), e),
                Ok(_) => Ok(()),
            },
            (None, Some(_)) => Ok(()),
        }
    }
}

/// Every split of `[splits]`.
pub(crate) fn validate(
    splits: &BTreeMap<String, SplitConfig>,
    c: &Check,
) -> Result<(), ConfigError> {
    for (name, s) in splits {
        s.validate(c, &format!("splits.{name}"))?;
    }
    Ok(())
}

/// `key` (e.g. `train.valid_split`) names `split`, which `[splits]` must define.
pub(crate) fn check_defined(
    splits: &BTreeMap<String, SplitConfig>,
    c: &Check,
    key: &str,
    split: &str,
) -> Result<(), ConfigError> {
    if splits.contains_key(split) {
        return Ok(());
    }
    c.fail(
        key,
        format!(
            "names split `{split}`, but [splits] defines: {}",
            join_or_none(splits.keys())
        ),
    )
}
