//! The config's sections as typed structs, their defaults, and the checks that need more
//! than one key at a time (a facet naming a missing column is checked later, once the
//! data's header is known, by `mfh-data`).

use crate::{ConfigError, Expr, Predicate};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
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
    /// the `parquet` feature).
    pub sources: Vec<PathBuf>,
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
}

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
}

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
}

/// How many threads a command computes with: `"auto"` or a count in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Threads {
    /// The cores this process may use (affinity mask and cgroup quota).
    #[default]
    Auto,
    Count(usize),
}

impl Threads {
    /// The thread count to run with.
    pub fn resolve(self) -> usize {
        match self {
            Threads::Auto => mfh_cpu::available_threads(),
            Threads::Count(n) => n.max(1),
        }
    }
}

impl std::fmt::Display for Threads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Threads::Auto => f.write_str("auto"),
            Threads::Count(n) => write!(f, "{n}"),
        }
    }
}

impl std::str::FromStr for Threads {
    type Err = String;
    fn from_str(s: &str) -> Result<Threads, String> {
        if s.trim().eq_ignore_ascii_case("auto") {
            return Ok(Threads::Auto);
        }
        match s.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Ok(Threads::Count(n)),
            _ => Err(format!(
                "{s:?}: expected a thread count of at least 1, or \"auto\""
            )),
        }
    }
}

impl Serialize for Threads {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Threads::Auto => s.serialize_str("auto"),
            Threads::Count(n) => s.serialize_u64(*n as u64),
        }
    }
}

impl<'de> Deserialize<'de> for Threads {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Threads, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Threads;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a thread count or \"auto\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Threads, E> {
                usize::try_from(v)
                    .map(Threads::Count)
                    .map_err(|_| E::custom(format!("{v}: expected a thread count or \"auto\"")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Threads, E> {
                usize::try_from(v)
                    .map(Threads::Count)
                    .map_err(|_| E::custom(format!("{v}: too many threads")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Threads, E> {
                if v.eq_ignore_ascii_case("auto") {
                    Ok(Threads::Auto)
                } else {
                    Err(E::custom(format!(
                        "{v:?}: expected a thread count or \"auto\""
                    )))
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Model section trained when --model is not given.
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default = "d_epochs")]
    pub epochs: usize,
    /// Stop after this many optimiser steps (0 = no limit).
    #[serde(default)]
    pub max_steps: u64,
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    /// Rows held for shuffling the train split (0 = read in file order).
    #[serde(default = "d_shuffle")]
    pub shuffle_buffer: usize,
    #[serde(default = "d_seed")]
    pub seed: u64,
    /// Compute threads: `"auto"` (the default: the cores this process may use) or a
    /// count. Results are deterministic for a fixed seed, thread count and kernel path.
    #[serde(default)]
    pub threads: Threads,
    /// Dense-parameter learning rate (Adam).
    #[serde(default = "d_lr")]
    pub lr: f64,
    /// Decoupled weight decay (AdamW) for dense parameters.
    #[serde(default)]
    pub weight_decay: f64,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    #[serde(default)]
    pub embedding: EmbeddingOptConfig,
    #[serde(default)]
    pub loss: LossConfig,
    /// Split evaluated during training for model selection.
    #[serde(default = "d_valid")]
    pub valid_split: String,
    #[serde(default = "d_train_split")]
    pub train_split: String,
    /// Evaluate every N steps (0 = at the end of each epoch).
    #[serde(default)]
    pub eval_every: u64,
    /// With `mfh train --init-from`: fit the feature statistics on this run's train
    /// split instead of keeping the initial model's.
    #[serde(default)]
    pub refit_transforms: bool,
    /// Also write a resumable checkpoint every N steps (0 = only at evaluations).
    #[serde(default)]
    pub checkpoint_every: u64,
    /// Resumable checkpoints kept in OUT/checkpoints (0 = write none).
    #[serde(default = "d_keep_last")]
    pub keep_last: usize,
    #[serde(default)]
    pub early_stopping: EarlyStoppingConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// constant | step | cosine (after warm-up).
    #[serde(default)]
    pub kind: ScheduleKind,
    /// Linear warm-up from 0 over this many steps.
    #[serde(default)]
    pub warmup_steps: u64,
    /// step: multiply by `gamma` every `step_size` steps.
    #[serde(default = "d_step_size")]
    pub step_size: u64,
    #[serde(default = "d_gamma")]
    pub gamma: f64,
    /// cosine: final learning rate as a fraction of the base.
    #[serde(default)]
    pub min_lr_ratio: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    #[default]
    Constant,
    Step,
    Cosine,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingOptConfig {
    /// adagrad (row-wise, default) | adam (lazy) | ftrl (per element, `lr` is its α).
    #[serde(default)]
    pub optimizer: RowOptimizerKind,
    /// FTRL: β, and the L1 / L2 strengths.
    #[serde(default = "d_ftrl_beta")]
    pub ftrl_beta: f64,
    #[serde(default)]
    pub l1: f64,
    #[serde(default)]
    pub l2: f64,
    /// Admission: a new ID gets a row after this many sightings in training (0/1: at
    /// once); until then it reads the all-zero default row.
    #[serde(default)]
    pub admit_after: u32,
    /// Expiry: rows not looked up in this many steps are evicted (0: never).
    #[serde(default)]
    pub ttl_steps: u64,
    /// Row cap per table: beyond it the least frequently used rows are evicted (0: none).
    #[serde(default)]
    pub max_rows: u64,
    /// Eviction runs between batches every this many steps.
    #[serde(default = "d_evict_every")]
    pub evict_every: u64,
    #[serde(default = "d_emb_lr")]
    pub lr: f64,
    /// Half-width of the uniform initialisation of new rows.
    #[serde(default = "d_init")]
    pub init_scale: f64,
    #[serde(default = "d_eps")]
    pub eps: f64,
    #[serde(default = "d_beta1")]
    pub beta1: f64,
    #[serde(default = "d_beta2")]
    pub beta2: f64,
}

fn d_ftrl_beta() -> f64 {
    1.0
}

fn d_evict_every() -> u64 {
    100
}

impl Default for EmbeddingOptConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RowOptimizerKind {
    #[default]
    Adagrad,
    Adam,
    Ftrl,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct LossConfig {
    #[serde(default)]
    pub reduction: Reduction,
    /// Per-behaviour weights by behaviour name (default 1).
    #[serde(default)]
    pub weights: BTreeMap<String, f64>,
    /// Per-task weights by task name (`click[user=new,item=tail]`), overriding `weights`.
    #[serde(default)]
    pub task_weights: BTreeMap<String, f64>,
    /// Learn one log-variance per task and weight each task's mean loss by it
    /// (uncertainty weighting; needs `reduction = "task_mean"`).
    #[serde(default)]
    pub uncertainty: bool,
    /// Funnel heads over behaviour pairs where `to` implies `from` (click → like).
    #[serde(default)]
    pub funnels: Vec<FunnelConfig>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Reduction {
    /// Mean over active (sample, task) pairs.
    #[default]
    ActiveMean,
    /// Sum over tasks of each task's mean over its own active rows.
    TaskMean,
    /// Sum over tasks of the task's loss summed over its active rows, divided by the
    /// batch size (masked rows count in the denominator).
    BatchMean,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FunnelConfig {
    /// `esmm`: p(to) = p(from) · p(to | from), trained on every row. `aitm`: the `to`
    /// tower attends to information transferred from the `from` tower, with a penalty
    /// `calibration` · max(p(to) − p(from), 0).
    pub kind: FunnelKind,
    pub from: String,
    pub to: String,
    /// AITM's calibration weight.
    #[serde(default = "d_calibration")]
    pub calibration: f64,
}

fn d_calibration() -> f64 {
    0.6
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FunnelKind {
    Esmm,
    Aitm,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EarlyStoppingConfig {
    /// `auc` (mean pooled AUC over binary behaviours), `loss` (valid loss), or
    /// `<behaviour>.<metric>` for one behaviour's pooled metric, e.g. `click.auc`.
    #[serde(default = "d_metric")]
    pub metric: String,
    /// Evaluations without improvement before stopping (0 = never stop early).
    #[serde(default = "d_patience")]
    pub patience: usize,
}

impl Default for EarlyStoppingConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

fn yes() -> bool {
    true
}
fn comma() -> String {
    ",".into()
}
fn default_missing() -> Vec<String> {
    vec![String::new()]
}
fn d_epochs() -> usize {
    3
}
fn d_batch() -> usize {
    1024
}
fn d_shuffle() -> usize {
    200_000
}
fn d_seed() -> u64 {
    42
}
fn d_keep_last() -> usize {
    2
}
fn d_lr() -> f64 {
    1e-3
}
fn d_valid() -> String {
    "valid".into()
}
fn d_train_split() -> String {
    "train".into()
}
fn d_step_size() -> u64 {
    1000
}
fn d_gamma() -> f64 {
    0.5
}
fn d_emb_lr() -> f64 {
    0.05
}
fn d_init() -> f64 {
    0.05
}
fn d_eps() -> f64 {
    1e-8
}
fn d_beta1() -> f64 {
    0.9
}
fn d_beta2() -> f64 {
    0.999
}
fn d_metric() -> String {
    "auc".into()
}
fn d_patience() -> usize {
    2
}

/// Cross-key checks. Column existence is checked against the data header later.
pub(crate) fn validate(cfg: &Config) -> Result<(), ConfigError> {
    let f = &cfg.source_file;
    let bad = |key: String, msg: String| Err(ConfigError::invalid(f, key, msg));

    if cfg.data.sources.is_empty() {
        return bad("data.sources".into(), "names no file".into());
    }
    check_csv(f, "data", &cfg.data.csv)?;
    let mut side_names = BTreeSet::new();
    for (i, t) in cfg.data.side_tables.iter().enumerate() {
        check_csv(f, &format!("data.side_tables[{i}]"), &t.csv)?;
        if !side_names.insert(t.name.as_str()) {
            return bad(
                format!("data.side_tables[{i}].name"),
                format!("side table `{}` is defined twice", t.name),
            );
        }
        if t.name.is_empty() || t.name.contains(['.', '/', '\\']) {
            return bad(
                format!("data.side_tables[{i}].name"),
                "must be non-empty and contain no `.`, `/` or `\\` (it names a file in the model folder)".into(),
            );
        }
    }

    for (name, s) in &cfg.splits {
        let key = format!("splits.{name}");
        match (&s.predicate, &s.rows) {
            (Some(_), Some(_)) => {
                return bad(key, "give either `where` or `rows`, not both".into())
            }
            (None, None) => {
                return bad(key, "needs `where` (a predicate) or `rows` (a file)".into())
            }
            (Some(p), None) => {
                if let Err(e) = Predicate::parse(p) {
                    return bad(format!("{key}.where"), e);
                }
            }
            (None, Some(_)) => {}
        }
    }
    let compare_splits: Vec<(&str, &String)> = [
        ("compare.select", cfg.compare.select.as_ref()),
        ("compare.report", cfg.compare.report.as_ref()),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    for (key, split) in [
        ("train.train_split", &cfg.train.train_split),
        ("train.valid_split", &cfg.train.valid_split),
    ]
    .into_iter()
    .chain(compare_splits)
    {
        if !cfg.splits.contains_key(split) {
            return bad(
                key.into(),
                format!(
                    "names split `{split}`, but [splits] defines: {}",
                    join_or_none(cfg.splits.keys())
                ),
            );
        }
    }

    let e = &cfg.train.embedding;
    for (k, v) in [("ftrl_beta", e.ftrl_beta), ("l1", e.l1), ("l2", e.l2)] {
        if !(v.is_finite() && v >= 0.0) {
            return bad(
                format!("train.embedding.{k}"),
                format!("{v} is not a finite non-negative number"),
            );
        }
    }
    if e.evict_every == 0 && (e.ttl_steps > 0 || e.max_rows > 0) {
        return bad(
            "train.embedding.evict_every".into(),
            "must be at least 1 when ttl_steps or max_rows is set".into(),
        );
    }
    for (i, b) in cfg.behaviours.iter().enumerate() {
        if let BehaviourConfig::Binary {
            negative_rate: Some(r),
            ..
        } = b
        {
            if !(*r > 0.0 && *r <= 1.0) {
                return bad(
                    format!("behaviours[{i}].negative_rate"),
                    format!("{r} is not in (0, 1]"),
                );
            }
        }
    }

    let mut names = BTreeSet::new();
    let mut tables: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, feat) in cfg.features.iter().enumerate() {
        let key = format!("features[{i}]");
        if !names.insert(feat.name()) {
            return bad(
                format!("{key}.name"),
                format!("feature `{}` is defined twice", feat.name()),
            );
        }
        if let Some((table, dim)) = feat.table() {
            if dim == 0 {
                return bad(format!("{key}.dim"), "must be at least 1".into());
            }
            if let Some(&d) = tables.get(table) {
                if d != dim {
                    return bad(
                        format!("{key}.dim"),
                        format!("table `{table}` is shared with dim {d}, this feature says {dim}"),
                    );
                }
            }
            tables.insert(table, dim);
        }
        match feat {
            FeatureConfig::Multi { separator, .. } if separator.len() != 1 => {
                return bad(
                    format!("{key}.separator"),
                    "must be a single byte character".into(),
                );
            }
            FeatureConfig::Numeric { fill, .. } if !fill.is_finite() => {
                return bad(format!("{key}.fill"), "must be a finite number".into());
            }
            FeatureConfig::Bucketized {
                boundaries,
                quantiles,
                ..
            } => {
                match (boundaries.is_empty(), quantiles) {
                    (true, None) => {
                        return bad(key, "needs `boundaries` or `quantiles`".into());
                    }
                    (false, Some(_)) => {
                        return bad(
                            key,
                            "give either `boundaries` or `quantiles`, not both".into(),
                        )
                    }
                    (true, Some(q)) if *q < 2 => {
                        return bad(format!("{key}.quantiles"), "must be at least 2".into())
                    }
                    _ => {}
                }
                if !strictly_increasing(boundaries) {
                    return bad(
                        format!("{key}.boundaries"),
                        "must be finite and strictly increasing".into(),
                    );
                }
            }
            _ => {}
        }
    }
    if cfg.features.is_empty() {
        return bad("features".into(), "the config defines no feature".into());
    }

    if cfg.behaviours.is_empty() {
        return bad(
            "behaviours".into(),
            "the config defines no behaviour".into(),
        );
    }
    let mut bnames = BTreeSet::new();
    for (i, b) in cfg.behaviours.iter().enumerate() {
        let key = format!("behaviours[{i}]");
        if !bnames.insert(b.name()) || b.name().is_empty() {
            return bad(
                format!("{key}.name"),
                format!("behaviour name `{}` is empty or defined twice", b.name()),
            );
        }
        if let BehaviourConfig::Regression { expr, clip, .. } = b {
            if let Err(e) = Expr::parse(expr) {
                return bad(format!("{key}.expr"), e);
            }
            if let Some([lo, hi]) = clip {
                if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                    return bad(
                        format!("{key}.clip"),
                        "must be [low, high] with low < high".into(),
                    );
                }
            }
        }
    }
    let loss = &cfg.train.loss;
    if loss.uncertainty && loss.reduction != Reduction::TaskMean {
        return bad(
            "train.loss.uncertainty".into(),
            "uncertainty weighting weighs each task's mean loss: set `reduction = \"task_mean\"`"
                .into(),
        );
    }
    let mut funnel_to = BTreeSet::new();
    for (i, f) in loss.funnels.iter().enumerate() {
        for (k, b) in [("from", &f.from), ("to", &f.to)] {
            match cfg.behaviours.iter().find(|x| x.name() == b) {
                None => {
                    return bad(
                        format!("train.loss.funnels[{i}].{k}"),
                        format!("names no behaviour: `{b}`"),
                    )
                }
                Some(x) if !x.is_binary() => {
                    return bad(
                        format!("train.loss.funnels[{i}].{k}"),
                        format!("`{b}` is not a binary behaviour"),
                    )
                }
                _ => {}
            }
        }
        if f.from == f.to || !funnel_to.insert(f.to.as_str()) {
            return bad(
                format!("train.loss.funnels[{i}].to"),
                format!("`{}` is the end of another funnel, or of itself", f.to),
            );
        }
    }
    for name in cfg.train.loss.weights.keys() {
        if !bnames.contains(name.as_str()) {
            return bad(
                format!("train.loss.weights.{name}"),
                "names no behaviour".into(),
            );
        }
    }

    let mut fnames = BTreeSet::new();
    for (i, facet) in cfg.facets.iter().enumerate() {
        let key = format!("facets[{i}]");
        if !fnames.insert(facet.name.as_str()) {
            return bad(
                format!("{key}.name"),
                format!("facet `{}` is defined twice", facet.name),
            );
        }
        check_facet(f, &key, facet)?;
    }

    let es = &cfg.train.early_stopping.metric;
    if es != "auc" && es != "loss" {
        let ok = es
            .split_once('.')
            .map(|(b, m)| bnames.contains(b) && matches!(m, "auc" | "gauc" | "logloss" | "mse"))
            .unwrap_or(false);
        if !ok {
            return bad(
                "train.early_stopping.metric".into(),
                format!(
                    "`{es}` is not `auc`, `loss` or `<behaviour>.<auc|gauc|logloss|mse>` with a behaviour of: {}",
                    join_or_none(bnames.iter())
                ),
            );
        }
    }
    let t = &cfg.train;
    if t.batch_size == 0 {
        return bad("train.batch_size".into(), "must be at least 1".into());
    }
    if t.threads == Threads::Count(0) {
        return bad(
            "train.threads".into(),
            "must be at least 1, or \"auto\" for the cores this process may use".into(),
        );
    }
    if !(t.lr.is_finite() && t.lr > 0.0) {
        return bad("train.lr".into(), "must be a positive number".into());
    }
    if !(t.embedding.lr.is_finite() && t.embedding.lr > 0.0) {
        return bad(
            "train.embedding.lr".into(),
            "must be a positive number".into(),
        );
    }
    if t.epochs == 0 && t.max_steps == 0 {
        return bad("train.epochs".into(), "must be at least 1".into());
    }
    if t.schedule.kind == ScheduleKind::Step && t.schedule.step_size == 0 {
        return bad(
            "train.schedule.step_size".into(),
            "must be at least 1".into(),
        );
    }
    for (name, m) in &cfg.models {
        if !m.contains_key("type") {
            return bad(
                format!("models.{name}.type"),
                "missing (e.g. \"mmoe\" or \"shared_bottom\")".into(),
            );
        }
    }
    Ok(())
}

fn check_csv(f: &std::path::Path, key: &str, c: &CsvOptions) -> Result<(), ConfigError> {
    if c.delimiter.len() != 1 {
        return Err(ConfigError::invalid(
            f,
            format!("{key}.delimiter"),
            "must be a single byte character",
        ));
    }
    if !c.header && c.columns.is_empty() {
        return Err(ConfigError::invalid(
            f,
            format!("{key}.columns"),
            "a headerless file (header = false) needs its column names",
        ));
    }
    Ok(())
}

fn check_facet(f: &std::path::Path, key: &str, facet: &FacetConfig) -> Result<(), ConfigError> {
    let bad = |k: &str, msg: String| Err(ConfigError::invalid(f, format!("{key}.{k}"), msg));
    let by_threshold = !facet.thresholds.is_empty() || !facet.names.is_empty();
    let by_groups = !facet.groups.is_empty();
    if by_threshold == by_groups {
        return bad(
            "thresholds",
            "a facet needs either `thresholds` with `names`, or `groups`".into(),
        );
    }
    if by_threshold {
        if !strictly_increasing(&facet.thresholds) {
            return bad(
                "thresholds",
                "must be finite and strictly increasing (overlapping or repeated thresholds)"
                    .into(),
            );
        }
        if facet.names.len() != facet.thresholds.len() + 1 {
            return bad(
                "names",
                format!(
                    "{} thresholds cut {} values, but {} names are given",
                    facet.thresholds.len(),
                    facet.thresholds.len() + 1,
                    facet.names.len()
                ),
            );
        }
        if let Some(d) = &facet.default {
            if !facet.names.contains(d) {
                return bad("default", format!("`{d}` is not one of the names"));
            }
        }
    } else {
        let mut seen = BTreeMap::new();
        for g in &facet.groups {
            for v in &g.values {
                if let Some(other) = seen.insert(v.as_str(), g.name.as_str()) {
                    return bad(
                        "groups",
                        format!("value `{v}` is in both `{other}` and `{}`", g.name),
                    );
                }
            }
        }
    }
    let values = facet.values();
    let uniq: BTreeSet<&String> = values.iter().collect();
    if uniq.len() != values.len() || values.iter().any(|v| v.is_empty()) {
        return bad("names", "value names must be non-empty and distinct".into());
    }
    if values.len() < 2 {
        return bad("names", "a facet needs at least two values".into());
    }
    Ok(())
}

fn strictly_increasing(v: &[f64]) -> bool {
    v.iter().all(|x| x.is_finite()) && v.windows(2).all(|w| w[0] < w[1])
}

fn join_or_none<'a>(it: impl Iterator<Item = &'a (impl AsRef<str> + 'a + ?Sized)>) -> String {
    let v: Vec<&str> = it.map(|s| s.as_ref()).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}
