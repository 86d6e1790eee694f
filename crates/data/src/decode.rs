//! One raw row → one batch row: the side-table join, the split test, features, labels,
//! the facet cell and the GAUC key. A row either decodes whole or not at all.

use crate::batch::Batch;
use crate::error::{preview, DataError};
use crate::hash::{bucket_id, canonical, hash_value, MISSING_ID};
use crate::pipeline::{
    ColRef, CompiledBehaviour, CompiledFacet, CompiledSplit, FeatureKind, Pipeline,
};
use crate::record::Record;
use mfh_config::{Literal, NumericTransform};
use std::path::Path;

/// The current row: its main record and the side-table rows it joined to.
pub(crate) struct Row<'a> {
    pub path: &'a Path,
    pub line: u64,
    pub index: u64,
    pub rec: &'a Record,
    /// Per side table: the joined row, if the join succeeded.
    pub side: &'a [Option<u32>],
}

impl Pipeline {
    /// Joins the row to every side table. An unknown or missing key is a row error.
    pub(crate) fn join(
        &self,
        path: &Path,
        line: u64,
        rec: &Record,
        out: &mut Vec<Option<u32>>,
    ) -> Result<(), DataError> {
        out.clear();
        let mut err = None;
        for t in &self.side {
            let key = &rec[t.join];
            let hit = if self.is_missing(key) {
                None
            } else {
                t.index.get(canonical(key)).copied()
            };
            if hit.is_none() && err.is_none() {
                err = Some(DataError {
                    file: path.to_path_buf(),
                    line: Some(line),
                    column: Some((t.join + 1, self.main_columns[t.join].clone())),
                    kind: "missing side-table key",
                    message: format!(
                        "key `{}` has no row in side table `{}`",
                        preview(key),
                        t.name
                    ),
                });
            }
            out.push(hit);
        }
        err.map_or(Ok(()), Err)
    }

    #[inline]
    pub(crate) fn is_missing(&self, v: &[u8]) -> bool {
        self.missing.iter().any(|m| m.as_slice() == v)
    }

    /// The cell a column reference points at, or None when missing.
    #[inline]
    pub(crate) fn value<'a>(&'a self, row: &Row<'a>, c: ColRef) -> Option<&'a [u8]> {
        let v: &[u8] = match c {
            ColRef::Main(i) => &row.rec[i],
            ColRef::Side(t, i) => {
                let r = row.side[t]?;
                &self.side[t].rows[r as usize][i]
            }
        };
        if self.is_missing(v) {
            None
        } else {
            Some(v)
        }
    }

    /// An error located at column `c` of this row (in the side table's file for side columns).
    pub(crate) fn cell_error(
        &self,
        row: &Row,
        c: ColRef,
        kind: &'static str,
        message: String,
    ) -> DataError {
        match c {
            ColRef::Main(i) => DataError {
                file: row.path.to_path_buf(),
                line: Some(row.line),
                column: Some((i + 1, self.main_columns[i].clone())),
                kind,
                message,
            },
            ColRef::Side(t, i) => {
                let side = &self.cfg.data.side_tables[t];
                let line = row.side[t]
                    .map(|r| self.side[t].rows[r as usize].line())
                    .unwrap_or(0);
                DataError {
                    file: side.path.clone(),
                    line: Some(line),
                    column: Some((i + 1, self.side[t].columns[i].clone())),
                    kind,
                    message: format!(
                        "{message} (joined from {}:{})",
                        row.path.display(),
                        row.line
                    ),
                }
            }
        }
    }

    /// A number in column `c`: None when missing; an error when not a finite number.
    pub(crate) fn number(&self, row: &Row, c: ColRef) -> Result<Option<f64>, DataError> {
        let Some(v) = self.value(row, c) else {
            return Ok(None);
        };
        let parsed = std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse::<f64>().ok());
        match parsed {
            Some(x) if x.is_finite() => Ok(Some(x)),
            Some(_) => Err(self.cell_error(
                row,
                c,
                "not a finite number",
                format!("`{}` is not a finite number", preview(v)),
            )),
            None => Err(self.cell_error(
                row,
                c,
                "not a number",
                format!("`{}` is not a number", preview(v)),
            )),
        }
    }

    pub(crate) fn in_split(&self, split: &CompiledSplit, row: &Row) -> Result<bool, DataError> {
        match split {
            CompiledSplit::Rows(set) => Ok(set.contains(&row.index)),
            CompiledSplit::Where(clauses) => {
                for (col, op, lit) in clauses {
                    let ok = match lit {
                        Literal::Num(x) => match self.number(row, *col)? {
                            Some(v) => op.holds(&v, x),
                            None => false,
                        },
                        Literal::Str(s) => match self.value(row, *col) {
                            Some(v) => op.holds(&v, &s.as_bytes()),
                            None => false,
                        },
                    };
                    if !ok {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
        }
    }

    /// Appends the decoded row to `out`; on error `out` is left as it was.
    pub(crate) fn decode_into(&self, row: &Row, out: &mut Batch) -> Result<(), DataError> {
        let mark = (out.single.len(), out.dense.len(), out.labels.len());
        let res = self.decode_parts(row, out);
        if res.is_err() {
            out.single.truncate(mark.0);
            out.dense.truncate(mark.1);
            out.labels.truncate(mark.2);
            // The row's start in a multi-valued column is its last complete offset.
            for m in &mut out.multi {
                m.offsets.truncate(out.n + 1);
                m.ids.truncate(m.offsets[out.n] as usize);
            }
        }
        res
    }

    fn decode_parts(&self, row: &Row, out: &mut Batch) -> Result<(), DataError> {
        let cell = self.cell_of(row)?;
        for f in &self.features {
            match &f.kind {
                FeatureKind::Categorical => {
                    let id = match self.value(row, f.col) {
                        None => MISSING_ID,
                        Some(v) => {
                            if std::str::from_utf8(v).is_err() {
                                return Err(self.cell_error(
                                    row,
                                    f.col,
                                    "invalid UTF-8",
                                    "the value is not valid UTF-8".into(),
                                ));
                            }
                            hash_value(v)
                        }
                    };
                    out.single.push(id);
                }
                FeatureKind::Multi(sep) => {
                    let m = &mut out.multi[f.slot];
                    if let Some(v) = self.value(row, f.col) {
                        if std::str::from_utf8(v).is_err() {
                            return Err(self.cell_error(
                                row,
                                f.col,
                                "invalid UTF-8",
                                "the value is not valid UTF-8".into(),
                            ));
                        }
                        for part in v.split(|b| b == sep) {
                            let part = part.trim_ascii();
                            if !part.is_empty() {
                                m.ids.push(hash_value(part));
                            }
                        }
                    }
                    m.offsets.push(m.ids.len() as u32);
                }
                FeatureKind::Numeric(tr, fill) => {
                    let x = match self.number(row, f.col)? {
                        None => *fill,
                        Some(x) => {
                            let mut x = x;
                            for t in tr {
                                x = match t {
                                    NumericTransform::Log1p => x.max(0.0).ln_1p(),
                                    NumericTransform::Standardize => {
                                        match self.transforms.features.get(&f.name) {
                                            Some(crate::fit::FittedFeature::Standardize {
                                                mean,
                                                std,
                                            }) => (x - mean) / std,
                                            _ => x,
                                        }
                                    }
                                };
                            }
                            x
                        }
                    };
                    out.dense.push(x as f32);
                }
                FeatureKind::Bucketized { log1p } => {
                    let id = match self.number(row, f.col)? {
                        None => MISSING_ID,
                        Some(x) => {
                            let x = if *log1p { x.max(0.0).ln_1p() } else { x };
                            bucket_id(self.bucket_of(&f.name, x))
                        }
                    };
                    out.single.push(id);
                }
            }
        }
        for (bi, b) in self.behaviours.iter().enumerate() {
            let y = match b {
                CompiledBehaviour::Binary(c, positive) => match self.value(row, *c) {
                    None => f32::NAN,
                    Some(v) if !positive.is_empty() => {
                        if positive.iter().any(|p| p.as_slice() == v.trim_ascii()) {
                            1.0
                        } else {
                            0.0
                        }
                    }
                    Some(v) => match canonical(v) {
                        b"0" | b"false" | b"False" => 0.0,
                        b"1" | b"true" | b"True" => 1.0,
                        _ => {
                            return Err(self.cell_error(
                                row,
                                *c,
                                "bad label",
                                format!(
                                    "`{}` is not a binary label (0 or 1) for behaviour `{}`",
                                    preview(v),
                                    self.cfg.behaviours[bi].name()
                                ),
                            ))
                        }
                    },
                },
                CompiledBehaviour::Regression(e, cols, clip) => {
                    // A stack buffer: expressions read a few columns, and this runs per row.
                    let (mut stack, mut heap) = ([f64::NAN; 8], Vec::new());
                    let vals: &mut [f64] = if cols.len() <= stack.len() {
                        &mut stack[..cols.len()]
                    } else {
                        heap.resize(cols.len(), f64::NAN);
                        &mut heap
                    };
                    for (v, (_, c)) in vals.iter_mut().zip(cols) {
                        *v = self.number(row, *c)?.unwrap_or(f64::NAN);
                    }
                    let y = e.eval(&|c| {
                        cols.iter()
                            .position(|(n, _)| n == c)
                            .map_or(f64::NAN, |i| vals[i])
                    });
                    if y.is_finite() {
                        let y = match clip {
                            Some([lo, hi]) => y.clamp(*lo, *hi),
                            None => y,
                        };
                        y as f32
                    } else {
                        f32::NAN
                    }
                }
            };
            out.labels.push(y);
        }
        let group = match self.gauc {
            Some(c) => self.value(row, c).map(hash_value).unwrap_or(MISSING_ID),
            None => 0,
        };
        out.cells.push(cell);
        out.groups.push(group);
        out.rows.push(row.index);
        out.n += 1;
        Ok(())
    }

    pub(crate) fn bucket_of(&self, feature: &str, x: f64) -> usize {
        let b: &[f64] = match self.transforms.features.get(feature) {
            Some(crate::fit::FittedFeature::Buckets { boundaries }) => boundaries,
            _ => match self.cfg.features.iter().find(|f| f.name() == feature) {
                Some(mfh_config::FeatureConfig::Bucketized { boundaries, .. }) => boundaries,
                _ => &[],
            },
        };
        b.partition_point(|&t| t < x)
    }

    /// The row's facet cell (mixed radix, first facet most significant).
    pub(crate) fn cell_of(&self, row: &Row) -> Result<u32, DataError> {
        let mut cell = 0usize;
        for (fi, (facet, cfg)) in self.facets.iter().zip(&self.cfg.facets).enumerate() {
            let n_values = cfg.values().len();
            let v = match facet {
                CompiledFacet::Thresholds(c, th, default) => match self.number(row, *c)? {
                    Some(x) => Some(th.partition_point(|&t| t < x)),
                    None => *default,
                },
                CompiledFacet::Groups(c, map, default) => match self.value(row, *c) {
                    Some(v) => map.get(canonical(v)).copied().or(*default),
                    None => *default,
                },
            };
            let (Some(v), c) = (v, facet_col(facet)) else {
                let c = facet_col(facet);
                return Err(self.cell_error(
                    row,
                    c,
                    "no facet value",
                    format!(
                        "no value of facet `{}` for `{}` (give the facet a `default`)",
                        self.cfg.facets[fi].name,
                        self.value(row, c)
                            .map(preview)
                            .unwrap_or_else(|| "<missing>".into())
                    ),
                ));
            };
            let _ = c;
            cell = cell * n_values + v;
        }
        Ok(cell as u32)
    }
}

fn facet_col(f: &CompiledFacet) -> ColRef {
    match f {
        CompiledFacet::Thresholds(c, ..) | CompiledFacet::Groups(c, ..) => *c,
    }
}
