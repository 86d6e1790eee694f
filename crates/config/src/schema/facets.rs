//! `[[facets]]`: partitions of the population, each derived from one column by thresholds
//! or by groups of values; the grid's cells are all combinations of facet values.

use crate::schema::check::{strictly_increasing, Check};
use crate::ConfigError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A partition of the population derived from one column.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FacetConfig {
    pub name: String,
    pub column: String,
    /// Increasing upper bounds: value <= t[0] → names[0], ..., > t[last] → names[last].
    #[serde(default)]
    pub thresholds: Vec<f64>,
    /// Value names, one more than `thresholds` (threshold facets) ...
    #[serde(default)]
    pub names: Vec<String>,
    /// ... or explicit lists of raw values per named value.
    #[serde(default)]
    pub groups: Vec<FacetGroup>,
    /// Value for rows whose column is missing or matches no group; without it such a row
    /// is a data error.
    #[serde(default)]
    pub default: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FacetGroup {
    pub name: String,
    pub values: Vec<String>,
}

impl FacetConfig {
    /// The facet's value names in grid order.
    pub fn values(&self) -> Vec<String> {
        if self.groups.is_empty() {
            self.names.clone()
        } else {
            let mut v: Vec<String> = self.groups.iter().map(|g| g.name.clone()).collect();
            if let Some(d) = &self.default {
                if !v.contains(d) {
                    v.push(d.clone());
                }
            }
            v
        }
    }

    /// Thresholds with names, or groups; then at least two distinct, non-empty values.
    fn validate(&self, c: &Check, key: &str) -> Result<(), ConfigError> {
        let by_threshold = !self.thresholds.is_empty() || !self.names.is_empty();
        let by_groups = !self.groups.is_empty();
        if by_threshold == by_groups {
            return c.fail(
                format!("{key}.thresholds"),
                "a facet needs either `thresholds` with `names`, or `groups`",
            );
        }
        if by_threshold {
            self.check_thresholds(c, key)?;
        } else {
            self.check_groups(c, key)?;
        }
        let values = self.values();
        let uniq: BTreeSet<&String> = values.iter().collect();
        if uniq.len() != values.len() || values.iter().any(|v| v.is_empty()) {
            return c.fail(
                format!("{key}.names"),
                "value names must be non-empty and distinct",
            );
        }
        if values.len() < 2 {
            return c.fail(format!("{key}.names"), "a facet needs at least two values");
        }
        Ok(())
    }

    fn check_thresholds(&self, c: &Check, key: &str) -> Result<(), ConfigError> {
        if !strictly_increasing(&self.thresholds) {
            return c.fail(
                format!("{key}.thresholds"),
                "must be finite and strictly increasing (overlapping or repeated thresholds)",
            );
        }
        if self.names.len() != self.thresholds.len() + 1 {
            return c.fail(
                format!("{key}.names"),
                format!(
                    "{} thresholds cut {} values, but {} names are given",
                    self.thresholds.len(),
                    self.thresholds.len() + 1,
                    self.names.len()
                ),
            );
        }
        match &self.default {
            Some(d) if !self.names.contains(d) => c.fail(
                format!("{key}.default"),
                format!("`{d}` is not one of the names"),
            ),
            _ => Ok(()),
        }
    }

    fn check_groups(&self, c: &Check, key: &str) -> Result<(), ConfigError> {
        let mut seen = BTreeMap::new();
        for g in &self.groups {
            for v in &g.values {
                if let Some(other) = seen.insert(v.as_str(), g.name.as_str()) {
                    return c.fail(
                        format!("{key}.groups"),
                        format!("value `{v}` is in both `{other}` and `{}`", g.name),
                    );
                }
            }
        }
        Ok(())
    }
}

/// Every facet: names distinct, each facet well formed.
pub(crate) fn validate(facets: &[FacetConfig], c: &Check) -> Result<(), ConfigError> {
    let mut names = BTreeSet::new();
    for (i, facet) in facets.iter().enumerate() {
        let key = format!("facets[{i}]");
        if !names.insert(facet.name.as_str()) {
            return c.fail(
                format!("{key}.name"),
                format!("facet `{}` is defined twice", facet.name),
            );
        }
        facet.validate(c, &key)?;
    }
    Ok(())
}
