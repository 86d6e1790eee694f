//! `[[behaviours]]`: the label dimensions of the task grid, binary (logloss) or regression
//! (MSE over an expression of columns).

use crate::expr::Expr;
use crate::schema::check::Check;
use crate::ConfigError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum BehaviourConfig {
    /// A 0/1 label column; logloss head.
    Binary {
        name: String,
        column: String,
        /// Cell values that mean 1; every other value means 0. Without it the cell must
        /// be 0/1 (or true/false).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        positive: Vec<String>,
        /// Negative down-sampling of the train split: a row's negative label is kept with
        /// this probability (else masked; a row left with no label is dropped), and
        /// predictions are mapped back with p / (p + (1 − p) / r).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        negative_rate: Option<f64>,
    },
    /// A real target from an expression over columns, clipped; MSE head.
    Regression {
        name: String,
        expr: String,
        #[serde(default)]
        clip: Option<[f64; 2]>,
    },
}

impl BehaviourConfig {
    pub fn name(&self) -> &str {
        match self {
            BehaviourConfig::Binary { name, .. } | BehaviourConfig::Regression { name, .. } => name,
        }
    }
    /// The rate at which negatives of the train split are kept (1: no sampling).
    pub fn negative_rate(&self) -> f64 {
        match self {
            BehaviourConfig::Binary {
                negative_rate: Some(r),
                ..
            } => *r,
            _ => 1.0,
        }
    }

    pub fn is_binary(&self) -> bool {
        matches!(self, BehaviourConfig::Binary { .. })
    }
    /// Columns the label reads.
    pub fn columns(&self) -> Vec<String> {
        match self {
            BehaviourConfig::Binary { column, .. } => vec![column.clone()],
            BehaviourConfig::Regression { expr, .. } => {
                Expr::parse(expr).map(|e| e.columns()).unwrap_or_default()
            }
        }
    }

    /// The keys of one behaviour that need no other (`key`: `behaviours[i]`).
    fn validate(&self, c: &Check, key: &str) -> Result<(), ConfigError> {
        match self {
            BehaviourConfig::Binary {
                negative_rate: Some(r),
                ..
            } if !(*r > 0.0 && *r <= 1.0) => c.fail(
                format!("{key}.negative_rate"),
                format!("{r} is not in (0, 1]"),
            ),
            BehaviourConfig::Binary { .. } => Ok(()),
            BehaviourConfig::Regression { expr, clip, .. } => {
                if let Err(e) = Expr::parse(expr) {
                    return c.fail(format!("{key}.expr"), e);
                }
                match clip {
                    Some([lo, hi]) if !(lo.is_finite() && hi.is_finite() && lo < hi) => {
                        c.fail(format!("{key}.clip"), "must be [low, high] with low < high")
                    }
                    _ => Ok(()),
                }
            }
        }
    }
}

/// Every behaviour: at least one, names non-empty and distinct.
pub(crate) fn validate(behaviours: &[BehaviourConfig], c: &Check) -> Result<(), ConfigError> {
    if behaviours.is_empty() {
        return c.fail("behaviours", "the config defines no behaviour");
    }
    let mut names = BTreeSet::new();
    for (i, b) in behaviours.iter().enumerate() {
        let key = format!("behaviours[{i}]");
        if !names.insert(b.name()) || b.name().is_empty() {
            return c.fail(
                format!("{key}.name"),
                format!("behaviour name `{}` is empty or defined twice", b.name()),
            );
        }
        b.validate(c, &key)?;
    }
    Ok(())
}
