//! Resolves a config against the data: the sources' header, the side tables (loaded into
//! hash maps by key), and every column that a feature, label, facet, split or GAUC key
//! names. The result decodes rows into batches.

use crate::error::DataError;
use crate::hash::canonical;
use crate::record::{ColumnUse, Record};
use crate::rows::{read_header, RowReader};
use crate::sources::SourceFiles;
use crate::transforms::FittedTransforms;
use mfh_config::{
    BehaviourConfig, Config, CsvOptions, Expr, FacetConfig, FeatureConfig, Literal,
    NumericTransform, PoolingConfig, Predicate,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The split of a pipeline made by [`Pipeline::for_files`]: every row of its files (a name
/// a config split would need a quoted TOML key for; there it would be replaced).
pub const FILES_SPLIT: &str = "<files>";

/// Where a column lives: the main table, or side table `t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColRef {
    Main(usize),
    Side(usize, usize),
}

#[derive(Clone)]
pub(crate) struct SideTable {
    pub name: String,
    pub columns: Vec<String>,
    pub join: usize,
    /// The key column's index in this table.
    pub key: usize,
    pub rows: Vec<Record>,
    pub index: HashMap<Vec<u8>, u32>,
}

#[derive(Debug, Clone)]
pub(crate) enum FeatureKind {
    Categorical,
    Multi(u8),
    Numeric(Vec<NumericTransform>, f64),
    Bucketized { log1p: bool },
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledFeature {
    pub name: String,
    pub col: ColRef,
    pub kind: FeatureKind,
    /// Slot in its block (single, multi or dense).
    pub slot: usize,
}

#[derive(Clone)]
pub(crate) enum CompiledBehaviour {
    /// The column, and the values meaning 1 when the config lists them.
    Binary(ColRef, Vec<Vec<u8>>),
    Regression(Expr, Vec<(String, ColRef)>, Option<[f64; 2]>),
}

#[derive(Clone)]
pub(crate) enum CompiledFacet {
    Thresholds(ColRef, Vec<f64>, Option<usize>),
    Groups(ColRef, HashMap<Vec<u8>, usize>, Option<usize>),
}

#[derive(Clone)]
pub(crate) enum CompiledSplit {
    Where(Vec<(ColRef, mfh_config::CmpOp, Literal)>),
    Rows(HashSet<u64>),
}

impl CompiledSplit {
    pub fn uses_side(&self) -> bool {
        match self {
            CompiledSplit::Where(c) => c.iter().any(|(col, _, _)| matches!(col, ColRef::Side(..))),
            CompiledSplit::Rows(_) => false,
        }
    }
}

/// Which embedded field reads which table, in the order the batch holds them.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldLayout {
    /// (feature name, table name, dim) of single-valued embedded features, in batch order.
    pub single: Vec<(String, String, usize)>,
    /// (feature name, table name, dim, mean pooling) of multi-valued features.
    pub multi: Vec<(String, String, usize, bool)>,
    /// Names of the numeric features, in batch order.
    pub dense: Vec<String>,
}

/// Which parts of a batch follow one column of the data ([`Pipeline::fields_following`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Following {
    /// Per single-valued categorical slot, multi-valued slot and numeric slot.
    pub single: Vec<bool>,
    pub multi: Vec<bool>,
    pub dense: Vec<bool>,
    /// Per facet (in cell order, first most significant): its number of values, and
    /// whether it follows.
    pub facets: Vec<(usize, bool)>,
}

#[derive(Clone)]
pub struct Pipeline {
    pub(crate) cfg: Config,
    pub(crate) main_columns: Vec<String>,
    /// Shared by the pipelines [`Pipeline::for_files`] makes (loaded once).
    pub(crate) side: Arc<Vec<SideTable>>,
    pub(crate) features: Vec<CompiledFeature>,
    pub(crate) behaviours: Vec<CompiledBehaviour>,
    pub(crate) facets: Vec<CompiledFacet>,
    pub(crate) gauc: Option<ColRef>,
    /// The row-weight column (`data.weight_column`).
    pub(crate) weight: Option<ColRef>,
    /// The single-valued slot of a categorical feature over the GAUC column, if any: its
    /// ID is the row's group key (the same hash), so it is not hashed twice.
    pub(crate) gauc_slot: Option<usize>,
    pub(crate) splits: BTreeMap<String, CompiledSplit>,
    pub(crate) layout: FieldLayout,
    pub(crate) missing: Vec<Vec<u8>>,
    /// `missing` is `[""]` (the default): only an empty cell is missing.
    pub(crate) missing_is_empty: bool,
    pub transforms: FittedTransforms,
    /// Splits read from in-memory tables instead of the sources.
    pub(crate) tables: crate::memory::SplitTables,
    /// The sources' files, listed when the pipeline was opened on them (not for in-memory
    /// tables or requests: those list them when a split reads files).
    pub(crate) sources: Option<SourceFiles>,
    /// Per split whose `where` fixes a partition column: the positions in `sources` of
    /// the files it reads (the others cannot hold one of its rows).
    pub(crate) split_files: BTreeMap<String, Vec<usize>>,
}

impl Pipeline {
    /// Opens the data a config names and checks that every named column exists. Every
    /// source file's header is read and must equal the first's; the partition columns
    /// (`data.partitions`) follow the files' own.
    pub fn new(cfg: &Config) -> Result<Pipeline, DataError> {
        let sources = SourceFiles::list(cfg)?;
        let (main_columns, _) = sources.header(&cfg.data.csv)?;
        let mut p = Pipeline::build(cfg, main_columns, true)?;
        p.prune_files(sources);
        Ok(p)
    }

    /// A pipeline whose splits named in `tables` read those in-memory tables (their
    /// columns are the main table's header); other splits read the config's sources.
    /// With no tables, [`Pipeline::new`].
    pub fn with_tables(
        cfg: &Config,
        tables: &crate::memory::SplitTables,
    ) -> Result<Pipeline, DataError> {
        let Some(header) = tables.header()? else {
            return Pipeline::new(cfg);
        };
        let mut p = Pipeline::build(cfg, header, true)?;
        if let Some(s) = tables.splits().find(|s| !p.splits.contains_key(*s)) {
            return Err(DataError::config(format!(
                "data: `{s}` is not a split of the config (it defines: {})",
                p.split_names().join(", ")
            )));
        }
        p.tables = tables.clone();
        Ok(p)
    }

    /// The in-memory tables of this pipeline's splits.
    pub fn tables(&self) -> &crate::memory::SplitTables {
        &self.tables
    }

    /// A pipeline over rows that do not come from the config's sources (a server's
    /// requests): the main table's columns are given, the side tables are loaded, and no
    /// split is compiled, so the sources and row-index files need not exist.
    pub fn with_header(cfg: &Config, main_columns: Vec<String>) -> Result<Pipeline, DataError> {
        Pipeline::build(cfg, main_columns, false)
    }

    fn build(cfg: &Config, main_columns: Vec<String>, splits: bool) -> Result<Pipeline, DataError> {
        let d = &cfg.data;
        let mut p = Pipeline {
            cfg: cfg.clone(),
            main_columns,
            side: Arc::new(Vec::new()),
            features: Vec::new(),
            behaviours: Vec::new(),
            facets: Vec::new(),
            gauc: None,
            weight: None,
            gauc_slot: None,
            splits: BTreeMap::new(),
            layout: FieldLayout {
                single: vec![],
                multi: vec![],
                dense: vec![],
            },
            missing: d
                .csv
                .missing
                .iter()
                .map(|m| m.as_bytes().to_vec())
                .collect(),
            missing_is_empty: d.csv.missing.len() == 1 && d.csv.missing[0].is_empty(),
            transforms: FittedTransforms::default(),
            tables: crate::memory::SplitTables::default(),
            sources: None,
            split_files: BTreeMap::new(),
        };
        for (i, t) in d.side_tables.iter().enumerate() {
            let join_col = t.join_column().to_string();
            let main_idx = p
                .main_columns
                .iter()
                .position(|c| *c == join_col)
                .ok_or_else(|| {
                    p.key_error(
                        &format!("data.side_tables[{i}].join_on"),
                        &join_col,
                        "the main table",
                    )
                })?;
            let table = load_side_table(&t.name, &t.path, &t.key, &t.csv, main_idx)?;
            Arc::make_mut(&mut p.side).push(table);
        }
        p.compile(splits)?;
        Ok(p)
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The sources' files, when the pipeline was opened on them (none for in-memory tables).
    pub fn source_files(&self) -> &[PathBuf] {
        self.sources.as_ref().map_or(&[], |s| &s.files)
    }

    /// This pipeline — its columns, side tables and fitted statistics — over `files`
    /// instead of the sources (a followed folder's new files): split [`FILES_SPLIT`] reads
    /// every row of them, in order; the partition columns come from their paths as for the
    /// sources. Their header must be the sources' (the same columns in the same order).
    /// With `train`, [`FILES_SPLIT`] is the train split (negative down-sampling applies
    /// to it); else it is read as an evaluation reads a split.
    pub fn for_files(&self, files: Vec<PathBuf>, train: bool) -> Result<Pipeline, DataError> {
        let src = SourceFiles::with_partitions(files, &self.cfg.data.partitions)?;
        let (columns, _) = src.header(&self.cfg.data.csv)?;
        if columns != self.main_columns {
            return Err(DataError::file(
                &src.files[0],
                "header",
                format!(
                    "its columns ({}) differ from the training data's ({}); a followed file must have the sources' columns in the same order",
                    columns.join(", "),
                    self.main_columns.join(", ")
                ),
            ));
        }
        let mut p = self.clone();
        p.tables = crate::memory::SplitTables::default();
        p.splits.clear();
        p.splits
            .insert(FILES_SPLIT.to_string(), CompiledSplit::Where(Vec::new()));
        if train {
            p.cfg.train.train_split = FILES_SPLIT.to_string();
        }
        p.split_files.clear();
        p.sources = Some(src);
        Ok(p)
    }

    /// Keeps `sources`, and for each split whose `where` compares a partition column with
    /// a value, the files whose partition values can satisfy it: a clause that fails on a
    /// file's value fails on all its rows (a value that is not a number where the clause
    /// wants one keeps the file, so that its rows report the error).
    fn prune_files(&mut self, sources: SourceFiles) {
        let own = self.main_columns.len() - sources.columns.len();
        for (name, split) in &self.splits {
            let CompiledSplit::Where(clauses) = split else {
                continue;
            };
            let on_partition: Vec<_> = clauses
                .iter()
                .filter_map(|(col, op, lit)| match col {
                    ColRef::Main(j) if *j >= own => Some((j - own, *op, lit)),
                    _ => None,
                })
                .collect();
            if on_partition.is_empty() {
                continue;
            }
            let keep = (0..sources.files.len())
                .filter(|&f| {
                    on_partition.iter().all(|&(k, op, lit)| {
                        let v = sources.values[f][k].as_deref();
                        let v = v.filter(|v| !self.is_missing(v));
                        match (v, lit) {
                            (None, _) => false,
                            (Some(v), Literal::Str(s)) => op.holds(&v, &s.as_bytes()),
                            (Some(v), Literal::Num(x)) => match crate::number::parse_f64(v) {
                                Some(y) if y.is_finite() => op.holds(&y, x),
                                _ => true,
                            },
                        }
                    })
                })
                .collect();
            self.split_files.insert(name.clone(), keep);
        }
        self.sources = Some(sources);
    }

    /// The files a pass over `split` reads: all sources, or those its partition clauses
    /// keep. Lists the sources now when the pipeline was not opened on them.
    pub(crate) fn split_sources(&self, split: &str) -> Result<SourceFiles, DataError> {
        let all = match &self.sources {
            Some(s) => s.clone(),
            None => SourceFiles::list(&self.cfg)?,
        };
        Ok(match self.split_files.get(split) {
            Some(keep) => all.subset(keep),
            None => all,
        })
    }

    /// A reader of the rows of `split`'s files (only those at `files`' positions in that
    /// list, when given).
    pub(crate) fn split_reader(
        &self,
        split: &str,
        files: Option<&[usize]>,
    ) -> Result<RowReader, DataError> {
        let mut src = self.split_sources(split)?;
        if let Some(keep) = files {
            src = src.subset(keep);
        }
        let own = self.main_columns.len().saturating_sub(src.columns.len());
        Ok(src.reader(self.cfg.data.csv.clone(), own, Some(self.used_columns(own))))
    }

    /// How a pass reads each of the main table's first `own` columns (the files' own): a
    /// feature, label, facet, split, the GAUC or weight column, a side table's join key
    /// read it as text or as a number, or nothing reads it. A column read only as a number
    /// may come from a typed source without text (see [`Record::num`]) — only where an
    /// empty cell is the one missing token, so that the number and the text it replaces
    /// are missing alike.
    pub(crate) fn used_columns(&self, own: usize) -> Vec<ColumnUse> {
        let mut used = vec![ColumnUse::Unused; own];
        let number = if self.missing_is_empty {
            ColumnUse::Number
        } else {
            ColumnUse::Text
        };
        let mut mark = |c: &ColRef, how: ColumnUse| {
            let i = match *c {
                ColRef::Main(i) => i,
                ColRef::Side(t, _) => self.side[t].join,
            };
            let how = if matches!(c, ColRef::Side(..)) {
                ColumnUse::Text
            } else {
                how
            };
            if let Some(u) = used.get_mut(i) {
                *u = (*u).max(how);
            }
        };
        for f in &self.features {
            let how = match f.kind {
                FeatureKind::Numeric(..) | FeatureKind::Bucketized { .. } => number,
                FeatureKind::Categorical | FeatureKind::Multi(_) => ColumnUse::Text,
            };
            mark(&f.col, how);
        }
        for b in &self.behaviours {
            match b {
                CompiledBehaviour::Binary(c, positive) if positive.is_empty() => mark(c, number),
                CompiledBehaviour::Binary(c, _) => mark(c, ColumnUse::Text),
                CompiledBehaviour::Regression(_, cols, _) => {
                    cols.iter().for_each(|(_, c)| mark(c, number))
                }
            }
        }
        for f in &self.facets {
            match f {
                CompiledFacet::Thresholds(c, ..) => mark(c, number),
                CompiledFacet::Groups(c, ..) => mark(c, ColumnUse::Text),
            }
        }
        for s in self.splits.values() {
            if let CompiledSplit::Where(clauses) = s {
                for (c, _, lit) in clauses {
                    match lit {
                        Literal::Num(_) => mark(c, number),
                        Literal::Str(_) => mark(c, ColumnUse::Text),
                    }
                }
            }
        }
        if let Some(c) = &self.gauc {
            mark(c, ColumnUse::Text);
        }
        if let Some(c) = &self.weight {
            mark(c, number);
        }
        for t in 0..self.side.len() {
            mark(&ColRef::Side(t, 0), ColumnUse::Text);
        }
        used
    }

    /// The source files a pass over `split` opens, of how many (for `mfh check`, and the
    /// pruning tests).
    pub fn split_file_count(&self, split: &str) -> Result<(usize, usize), DataError> {
        let all = match &self.sources {
            Some(s) => s.files.len(),
            None => SourceFiles::list(&self.cfg)?.files.len(),
        };
        Ok((self.split_files.get(split).map_or(all, Vec::len), all))
    }

    pub fn layout(&self) -> &FieldLayout {
        &self.layout
    }

    pub fn main_columns(&self) -> &[String] {
        &self.main_columns
    }

    pub fn split_names(&self) -> Vec<String> {
        self.splits.keys().cloned().collect()
    }

    /// What follows `column` of the main data — read from it, or from a side table
    /// joined on it — in a batch: with the item key, the candidate side of a ranking
    /// request (one user and context, many items). Errors name the columns there are.
    pub fn fields_following(&self, column: &str) -> Result<Following, DataError> {
        let i = self
            .main_columns
            .iter()
            .position(|c| c == column)
            .ok_or_else(|| self.key_error("--one-user", column, "the data"))?;
        let follows = |c: ColRef| match c {
            ColRef::Main(j) => j == i,
            ColRef::Side(t, _) => self.side[t].join == i,
        };
        let l = &self.layout;
        let mut f = Following {
            single: vec![false; l.single.len()],
            multi: vec![false; l.multi.len()],
            dense: vec![false; l.dense.len()],
            facets: Vec::new(),
        };
        for feat in &self.features {
            let slot = match feat.kind {
                FeatureKind::Categorical | FeatureKind::Bucketized { .. } => {
                    f.single.get_mut(feat.slot)
                }
                FeatureKind::Multi(_) => f.multi.get_mut(feat.slot),
                FeatureKind::Numeric(..) => f.dense.get_mut(feat.slot),
            };
            if let Some(s) = slot {
                *s = follows(feat.col);
            }
        }
        for (facet, cfg) in self.facets.iter().zip(&self.cfg.facets) {
            let (CompiledFacet::Thresholds(c, ..) | CompiledFacet::Groups(c, ..)) = facet;
            f.facets.push((cfg.values().len(), follows(*c)));
        }
        Ok(f)
    }

    fn key_error(&self, key: &str, column: &str, place: &str) -> DataError {
        DataError::config(format!(
            "{}: key `{key}`: column `{column}` is not in {place} (columns: {})",
            self.cfg.source_file.display(),
            self.describe_columns()
        ))
    }

    fn describe_columns(&self) -> String {
        let mut all: Vec<String> = self.main_columns.clone();
        for t in self.side.iter() {
            all.extend(t.columns.iter().map(|c| format!("{}.{c}", t.name)));
        }
        if all.len() > 40 {
            let n = all.len();
            all.truncate(40);
            all.push(format!("… {} more", n - 40));
        }
        all.join(", ")
    }

    /// Resolves `col` (plain, or `table.col` for a side table) for config key `key`.
    pub(crate) fn resolve(&self, key: &str, col: &str) -> Result<ColRef, DataError> {
        if let Some(i) = self.main_columns.iter().position(|c| c == col) {
            return Ok(ColRef::Main(i));
        }
        if let Some((t, c)) = col.split_once('.') {
            if let Some(ti) = self.side.iter().position(|s| s.name == t) {
                if let Some(ci) = self.side[ti].columns.iter().position(|x| x == c) {
                    return Ok(ColRef::Side(ti, ci));
                }
            }
        }
        let hits: Vec<(usize, usize)> = self
            .side
            .iter()
            .enumerate()
            .filter_map(|(ti, s)| s.columns.iter().position(|x| x == col).map(|ci| (ti, ci)))
            .collect();
        match hits.as_slice() {
            [(ti, ci)] => Ok(ColRef::Side(*ti, *ci)),
            [] => Err(self.key_error(key, col, "the data or its side tables")),
            _ => Err(DataError::config(format!(
                "{}: key `{key}`: column `{col}` is in several side tables; write `table.{col}`",
                self.cfg.source_file.display()
            ))),
        }
    }

    fn compile(&mut self, splits: bool) -> Result<(), DataError> {
        let cfg = self.cfg.clone();
        let (mut ns, mut nm, mut nd) = (0, 0, 0);
        for (i, f) in cfg.features.iter().enumerate() {
            let col = self.resolve(&format!("features[{i}].column"), f.column())?;
            let (kind, slot) = match f {
                FeatureConfig::Categorical { .. } => (FeatureKind::Categorical, ns),
                FeatureConfig::Multi { separator, .. } => {
                    (FeatureKind::Multi(separator.as_bytes()[0]), nm)
                }
                FeatureConfig::Numeric {
                    transform, fill, ..
                } => (FeatureKind::Numeric(transform.clone(), *fill), nd),
                FeatureConfig::Bucketized { log1p, .. } => {
                    (FeatureKind::Bucketized { log1p: *log1p }, ns)
                }
            };
            match (&kind, f.table()) {
                (FeatureKind::Multi(_), Some((t, dim))) => {
                    let mean = matches!(
                        f,
                        FeatureConfig::Multi {
                            pooling: PoolingConfig::Mean,
                            ..
                        }
                    );
                    self.layout
                        .multi
                        .push((f.name().into(), t.into(), dim, mean));
                    nm += 1;
                }
                (_, Some((t, dim))) => {
                    self.layout.single.push((f.name().into(), t.into(), dim));
                    ns += 1;
                }
                (_, None) => {
                    self.layout.dense.push(f.name().into());
                    nd += 1;
                }
            }
            self.features.push(CompiledFeature {
                name: f.name().into(),
                col,
                kind,
                slot,
            });
        }
        for (i, b) in cfg.behaviours.iter().enumerate() {
            self.behaviours.push(match b {
                BehaviourConfig::Binary {
                    column, positive, ..
                } => CompiledBehaviour::Binary(
                    self.resolve(&format!("behaviours[{i}].column"), column)?,
                    positive
                        .iter()
                        .map(|p| p.trim().as_bytes().to_vec())
                        .collect(),
                ),
                BehaviourConfig::Regression { expr, clip, .. } => {
                    let e = Expr::parse(expr).map_err(DataError::config)?;
                    let mut cols = Vec::new();
                    for c in e.columns() {
                        let r = self.resolve(&format!("behaviours[{i}].expr"), &c)?;
                        cols.push((c, r));
                    }
                    CompiledBehaviour::Regression(e, cols, *clip)
                }
            });
        }
        for (i, f) in cfg.facets.iter().enumerate() {
            self.facets.push(self.compile_facet(i, f)?);
        }
        if let Some(w) = &cfg.data.weight_column {
            self.weight = Some(self.resolve("data.weight_column", w)?);
        }
        if let Some(g) = &cfg.data.gauc_column {
            let col = self.resolve("data.gauc_column", g)?;
            self.gauc = Some(col);
            self.gauc_slot = self
                .features
                .iter()
                .find(|f| f.col == col && matches!(f.kind, FeatureKind::Categorical))
                .map(|f| f.slot);
        }
        for (name, s) in cfg.splits.iter().filter(|_| splits) {
            let compiled = if let Some(pred) = s.parsed_predicate() {
                self.compile_predicate(name, &pred)?
            } else {
                CompiledSplit::Rows(load_row_file(s.rows.as_ref().unwrap())?)
            };
            self.splits.insert(name.clone(), compiled);
        }
        Ok(())
    }

    fn compile_facet(&self, i: usize, f: &FacetConfig) -> Result<CompiledFacet, DataError> {
        let col = self.resolve(&format!("facets[{i}].column"), &f.column)?;
        let values = f.values();
        let default = f
            .default
            .as_ref()
            .map(|d| values.iter().position(|v| v == d).unwrap());
        if f.groups.is_empty() {
            Ok(CompiledFacet::Thresholds(
                col,
                f.thresholds.clone(),
                default,
            ))
        } else {
            let mut map = HashMap::new();
            for (gi, g) in f.groups.iter().enumerate() {
                for v in &g.values {
                    map.insert(canonical(v.trim().as_bytes()).to_vec(), gi);
                }
            }
            Ok(CompiledFacet::Groups(col, map, default))
        }
    }

    fn compile_predicate(&self, split: &str, p: &Predicate) -> Result<CompiledSplit, DataError> {
        let mut out = Vec::new();
        for c in &p.clauses {
            let col = self.resolve(&format!("splits.{split}.where"), &c.column)?;
            out.push((col, c.op, c.value.clone()));
        }
        Ok(CompiledSplit::Where(out))
    }

    /// Installs transforms fitted earlier (a saved model's), instead of fitting.
    pub fn set_transforms(&mut self, t: FittedTransforms) -> Result<(), DataError> {
        for f in &self.features {
            // Explicit bucket boundaries live in the config; only fitted ones need an entry.
            let fitted_buckets = || {
                self.cfg.features.iter().any(|c| {
                    matches!(c, mfh_config::FeatureConfig::Bucketized { name, quantiles: Some(_), .. } if *name == f.name)
                })
            };
            let needs = match &f.kind {
                FeatureKind::Numeric(tr, _) => tr.contains(&NumericTransform::Standardize),
                FeatureKind::Bucketized { .. } => fitted_buckets(),
                _ => false,
            };
            if needs && !t.features.contains_key(&f.name) {
                return Err(DataError::config(format!(
                    "the fitted transforms have no entry for feature `{}`",
                    f.name
                )));
            }
        }
        self.transforms = t;
        Ok(())
    }
}

/// The main table's columns: the config's first source file's, then the partition
/// columns.
pub fn source_header(cfg: &Config) -> Result<Vec<String>, DataError> {
    let sources = SourceFiles::list(cfg)?;
    let first = &sources.files[0];
    sources.with_partition_columns(first, read_header(first, &cfg.data.csv)?)
}

fn load_side_table(
    name: &str,
    path: &Path,
    key: &str,
    opts: &CsvOptions,
    join: usize,
) -> Result<SideTable, DataError> {
    let columns = read_header(path, opts)?;
    let key_idx = columns.iter().position(|c| c == key).ok_or_else(|| {
        DataError::file(
            path,
            "config",
            format!(
                "side table `{name}`: key column `{key}` is not in its header ({})",
                columns.join(", ")
            ),
        )
    })?;
    let mut reader =
        crate::rows::RowReader::new(vec![path.to_path_buf()], opts.clone(), columns.len());
    let mut rows: Vec<Record> = Vec::new();
    let mut index = HashMap::new();
    while reader.advance()? {
        let rec = &reader.record;
        let line = Some(reader.line());
        let k = canonical(&rec[key_idx]).to_vec();
        if k.is_empty() {
            return Err(DataError {
                file: path.to_path_buf(),
                line,
                column: Some((key_idx + 1, key.to_string())),
                kind: "empty key",
                message: format!("empty key in side table `{name}`"),
            });
        }
        if let Some(prev) = index.insert(k, rows.len() as u32) {
            let prev_line = rows[prev as usize].line();
            return Err(DataError {
                file: path.to_path_buf(),
                line,
                column: Some((key_idx + 1, key.to_string())),
                kind: "duplicate key",
                message: format!(
                    "key `{}` of side table `{name}` is duplicated (first on line {prev_line})",
                    crate::error::preview(&rec[key_idx])
                ),
            });
        }
        rows.push(rec.clone());
    }
    Ok(SideTable {
        name: name.to_string(),
        columns,
        join,
        key: key_idx,
        rows,
        index,
    })
}

fn load_row_file(path: &Path) -> Result<HashSet<u64>, DataError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| DataError::file(path, "io", format!("cannot read the row-index file: {e}")))?;
    let mut set = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let v: u64 = t.parse().map_err(|_| DataError {
            file: path.to_path_buf(),
            line: Some(i as u64 + 1),
            column: Some((1, String::new())),
            kind: "not a number",
            message: format!("`{t}` is not a row index (a non-negative integer)"),
        })?;
        set.insert(v);
    }
    Ok(set)
}
