//! `[data]`: the source files, how they are laid out, and the side tables joined to them.

use crate::schema::check::Check;
use crate::ConfigError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Stop at the first bad row, naming file:line:column.
    #[default]
    Fail,
    /// Skip bad rows, count them by reason and report the counts at the end.
    Skip,
}

/// How to read delimited text. Shared by the main sources and the side tables.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CsvOptions {
    /// The first line names the columns.
    #[serde(default = "yes")]
    pub header: bool,
    /// Column names for headerless files (required when `header = false`).
    #[serde(default)]
    pub columns: Vec<String>,
    #[serde(default = "comma")]
    pub delimiter: String,
    /// Strip spaces and tabs around each cell.
    #[serde(default)]
    pub trim: bool,
    /// Cell values (after trimming) that mean "missing".
    #[serde(default = "default_missing")]
    pub missing: Vec<String>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            header: true,
            columns: Vec::new(),
            delimiter: ",".into(),
            trim: false,
            missing: default_missing(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Files read in order as one table (CSV, gzip CSV detected by content; Parquet with
    /// the `parquet` feature). An entry with `*`, `?`, `[…]` or `**` is a glob: the files
    /// it matches, in path order (names starting with `_` or `.`, such as `_SUCCESS`,
    /// left out).
    pub sources: Vec<PathBuf>,
    /// Hive-style partition columns (`date=20220428/` folders in the sources' paths):
    /// name → type. Each becomes a column of the main table, appended after the files'
    /// own, with the value its file's path gives.
    #[serde(default)]
    pub partitions: BTreeMap<String, PartitionType>,
    /// How the source files are laid out (`[data.csv]`).
    #[serde(default)]
    pub csv: CsvOptions,
    #[serde(default)]
    pub on_error: OnError,
    /// Column whose value groups rows for GAUC (usually the user id).
    #[serde(default)]
    pub gauc_column: Option<String>,
    #[serde(default)]
    pub side_tables: Vec<SideTableConfig>,
    /// Column holding a non-negative weight per row that multiplies the row's loss.
    #[serde(default)]
    pub weight_column: Option<String>,
}

/// What a partition folder's value must be: checked for every file when the sources
/// are listed, so that `date=2022-04-28` under an `int` partition is an error naming the
/// file rather than a row-level surprise.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum PartitionType {
    /// Any text (compared as bytes by a `where` with a quoted value).
    #[default]
    String,
    /// A whole number (i64).
    Int,
    /// A finite number.
    Float,
}

impl PartitionType {
    /// Whether `value` (a folder's value, percent-decoded) has this type.
    pub fn admits(self, value: &str) -> bool {
        match self {
            PartitionType::String => true,
            PartitionType::Int => value.parse::<i64>().is_ok(),
            PartitionType::Float => value.parse::<f64>().is_ok_and(f64::is_finite),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SideTableConfig {
    /// Qualifies this table's columns: `user.register_days`.
    pub name: String,
    pub path: PathBuf,
    /// Key column in the side table.
    pub key: String,
    /// Column of the main table matched against `key` (default: the same name).
    #[serde(default)]
    pub join_on: Option<String>,
    #[serde(default)]
    pub csv: CsvOptions,
}

impl SideTableConfig {
    pub fn join_column(&self) -> &str {
        self.join_on.as_deref().unwrap_or(&self.key)
    }
}

impl DataConfig {
    /// At least one source; each layout readable; side-table names distinct file names.
    pub(crate) fn validate(&self, c: &Check) -> Result<(), ConfigError> {
        if self.sources.is_empty() {
            return c.fail("data.sources", "names no file");
        }
        self.csv.validate(c, "data")?;
        for name in self.partitions.keys() {
            if name.is_empty() || name.contains(['=', '/', '\\', '.']) {
                return c.fail(
                    format!("data.partitions.{name}"),
                    "a partition name must be non-empty and contain no `=`, `/`, `\\` or `.`",
                );
            }
            if self.csv.columns.contains(name) {
                return c.fail(
                    format!("data.partitions.{name}"),
                    format!("`{name}` is also one of `data.csv.columns`; a partition column comes from the files' paths"),
                );
            }
        }
        let mut names = BTreeSet::new();
        for (i, t) in self.side_tables.iter().enumerate() {
            t.csv.validate(c, &format!("data.side_tables[{i}]"))?;
            if !names.insert(t.name.as_str()) {
                return c.fail(
                    format!("data.side_tables[{i}].name"),
                    format!("side table `{}` is defined twice", t.name),
                );
            }
            if t.name.is_empty() || t.name.contains(['.', '/', '\\']) {
                return c.fail(
                    format!("data.side_tables[{i}].name"),
                    "must be non-empty and contain no `.`, `/` or `\\` (it names a file in the model folder)",
                );
            }
        }
        Ok(())
    }
}

impl CsvOptions {
    /// `key` is the table holding these options (`data`, `data.side_tables[0]`).
    fn validate(&self, c: &Check, key: &str) -> Result<(), ConfigError> {
        if self.delimiter.len() != 1 {
            return c.fail(
                format!("{key}.delimiter"),
                "must be a single byte character",
            );
        }
        if !self.header && self.columns.is_empty() {
            return c.fail(
                format!("{key}.columns"),
                "a headerless file (header = false) needs its column names",
            );
        }
        Ok(())
    }
}

fn yes() -> bool {
    true
}

/// The default delimiter, and the default separator of a `multi` feature.
pub(crate) fn comma() -> String {
    ",".into()
}

fn default_missing() -> Vec<String> {
    vec![String::new()]
}
