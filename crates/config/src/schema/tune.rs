//! `[tune.NAME]`: the search space `mfh tune --model NAME` draws from. Each key is a
//! dotted config key under `train.` or `models.` (quoted, e.g. `"models.mmoe.experts"`),
//! each value a list of choices or one range:
//!
//! ```toml
//! [tune.mmoe]
//! "models.mmoe.experts" = [2, 4, 8]
//! "models.mmoe.expert_layers" = [[128, 64], [256, 128]]
//! "train.lr" = { log_uniform = [1e-4, 1e-2] }
//! "train.weight_decay" = { uniform = [0.0, 1e-4] }
//! "train.embedding.lr" = { log_uniform = [0.01, 0.2] }
//! "models.mmoe.tower" = { int_uniform = [16, 128] }   # not a list: see below
//! ```
//!
//! `int_uniform` draws an integer in [lo, hi]; where a key needs a list (widths), give
//! the lists as choices.

use crate::schema::check::Check;
use crate::ConfigError;
use std::collections::BTreeMap;

/// Where one tuned key's values come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Domain {
    /// One of these values, each as likely.
    Choice(Vec<toml::Value>),
    /// Uniform in [lo, hi].
    Uniform(f64, f64),
    /// Log-uniform in [lo, hi] (lo > 0).
    LogUniform(f64, f64),
    /// An integer uniform in [lo, hi].
    IntUniform(i64, i64),
}

/// The search space of one model section, keys in order.
pub type Space = Vec<(String, Domain)>;

fn num(v: &toml::Value) -> Option<f64> {
    v.as_float().or_else(|| v.as_integer().map(|i| i as f64))
}

/// Reads `[tune.NAME]` (one table per model section); errors name the key at fault.
pub(crate) fn parse(
    tune: &BTreeMap<String, toml::Table>,
    models: &BTreeMap<String, toml::Table>,
    c: &Check,
) -> Result<BTreeMap<String, Space>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, table) in tune {
        if !models.contains_key(name) {
            return c.fail(
                format!("tune.{name}"),
                format!(
                    "no model section `{name}` (there are: {})",
                    models.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            );
        }
        let mut space = Vec::new();
        for (key, v) in table {
            let at = format!("tune.{name}.\"{key}\"");
            if !(key.starts_with("train.") || key.starts_with("models.")) {
                return c.fail(at, "a tuned key is under `train.` or `models.`");
            }
            if key.split('.').any(str::is_empty) {
                return c.fail(at, "an empty part in the dotted key");
            }
            let d = match v {
                toml::Value::Array(a) if !a.is_empty() => Domain::Choice(a.clone()),
                toml::Value::Array(_) => return c.fail(at, "an empty list of choices"),
                toml::Value::Table(t) if t.len() == 1 => {
                    let (kind, range) = t.iter().next().expect("one entry");
                    let pair = range.as_array().filter(|a| a.len() == 2);
                    let (lo, hi) = match pair.map(|a| (num(&a[0]), num(&a[1]))) {
                        Some((Some(lo), Some(hi))) if lo.is_finite() && hi.is_finite() => (lo, hi),
                        _ => return c.fail(at, format!("`{kind}` takes [lo, hi], two numbers")),
                    };
                    if lo > hi {
                        return c.fail(at, format!("`{kind}`: lo {lo} is above hi {hi}"));
                    }
                    match kind.as_str() {
                        "uniform" => Domain::Uniform(lo, hi),
                        "log_uniform" if lo > 0.0 => Domain::LogUniform(lo, hi),
                        "log_uniform" => return c.fail(at, "`log_uniform` needs lo > 0"),
                        "int_uniform" if lo.fract() == 0.0 && hi.fract() == 0.0 => {
                            Domain::IntUniform(lo as i64, hi as i64)
                        }
                        "int_uniform" => return c.fail(at, "`int_uniform` takes two integers"),
                        other => {
                            return c.fail(
                                at,
                                format!("unknown range `{other}` (uniform, log_uniform, int_uniform)"),
                            )
                        }
                    }
                }
                _ => {
                    return c.fail(
                        at,
                        "a list of choices, or one of { uniform | log_uniform | int_uniform = [lo, hi] }",
                    )
                }
            };
            space.push((key.clone(), d));
        }
        out.insert(name.clone(), space);
    }
    Ok(out)
}

/// Sets dotted `key` in `doc`, creating tables on the way.
pub fn set_dotted(doc: &mut toml::Table, key: &str, value: toml::Value) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err("an empty part in the dotted key".into());
    }
    let mut t = doc;
    for (i, p) in parts[..parts.len() - 1].iter().enumerate() {
        let entry = t
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(format!("`{}` is not a table", parts[..=i].join("."))),
        };
    }
    t.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}
