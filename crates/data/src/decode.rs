//! One raw row → one batch row: the side-table join, the split test, features, labels,
//! the facet cell and the GAUC key. A row either decodes whole or not at all.

use crate::batch::Batch;
use crate::error::{preview, DataError};
use crate::hash::{bucket_id, canonical, hash_value, MISSING_ID};
use crate::number::parse_f64;
use crate::pipeline::{
    ColRef, CompiledBehaviour, CompiledFacet, CompiledSplit, FeatureKind, Pipeline,
};
use crate::record::Record;
use crate::transforms::FittedFeature;
use mfh_config::{Literal, NumericTransform};
use std::path::Path;

/// Per feature (in config order), what decoding needs of the fitted statistics.
pub(crate) struct Fitted(Vec<Fit>);

enum Fit {
    None,
    Standardize(f64, f64),
    Buckets(Vec<f64>),
}

/// Features whose values a row shares with an earlier row of the batch (a ranking
/// request's user side): copied from that row instead of decoded again.
pub(crate) struct Reuse<'a> {
    /// Per feature, in the pipeline's order: the same value as row `from`.
    pub constant: &'a [bool],
    /// The row of the batch, decoded in full, that holds the values.
    pub from: usize,
}

/// The current row: its main record and the side-table rows it joined to.
pub(crate) struct Row<'a> {
    pub path: &'a Path,
    pub line: u64,
    pub index: u64,
    pub rec: &'a Record,
    /// Per side table: the joined row, if the join succeeded.
    pub side: &'a [Option<u32>],
    /// Per side table, a row that replaces the joined one (a request that carries some of
    /// the table's columns); empty when reading files.
    pub patch: &'a [Option<&'a Record>],
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
        for t in self.side.iter() {
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
                    message: if self.is_missing(key) {
                        // An empty (or `missing`-token) key cannot join anything.
                        format!(
                            "the key is missing (cell `{}`); joining side table `{}` needs one",
                            preview(key),
                            t.name
                        )
                    } else {
                        format!(
                            "key `{}` has no row in side table `{}`",
                            preview(key),
                            t.name
                        )
                    },
                });
            }
            out.push(hit);
        }
        err.map_or(Ok(()), Err)
    }

    #[inline]
    pub(crate) fn is_missing(&self, v: &[u8]) -> bool {
        if self.missing_is_empty {
            v.is_empty()
        } else {
            self.missing.iter().any(|m| m.as_slice() == v)
        }
    }

    /// Whether cell `v` of column `c` is valid UTF-8 (no check when its record is ASCII).
    #[inline]
    fn is_utf8(&self, row: &Row, c: ColRef, v: &[u8]) -> bool {
        let ascii = match c {
            ColRef::Main(_) => row.rec.is_ascii(),
            ColRef::Side(t, _) => match row.patch.get(t) {
                Some(Some(rec)) => rec.is_ascii(),
                _ => row.side[t].is_some_and(|r| self.side[t].rows[r as usize].is_ascii()),
            },
        };
        ascii || std::str::from_utf8(v).is_ok()
    }

    /// The cell a column reference points at, or None when missing.
    #[inline]
    pub(crate) fn value<'a>(&'a self, row: &Row<'a>, c: ColRef) -> Option<&'a [u8]> {
        let v: &[u8] = match c {
            ColRef::Main(i) => &row.rec[i],
            ColRef::Side(t, i) => match row.patch.get(t) {
                Some(Some(rec)) => &rec[i],
                _ => {
                    let r = row.side[t]?;
                    &self.side[t].rows[r as usize][i]
                }
            },
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

    /// The number a typed source gave for column `c` in place of text.
    #[inline]
    fn typed(&self, row: &Row, c: ColRef) -> Option<f64> {
        match c {
            ColRef::Main(i) => row.rec.num(i),
            ColRef::Side(..) => None,
        }
    }

    /// Cell `c` as messages show it: its text, or the number a typed source gave.
    fn shown(&self, row: &Row, c: ColRef) -> String {
        match self.typed(row, c) {
            Some(x) => preview(format!("{x}").as_bytes()),
            None => self.value(row, c).map(preview).unwrap_or_default(),
        }
    }

    /// Cell `c` of `row` is not a binary label for behaviour `bi`.
    fn bad_label(&self, row: &Row, c: ColRef, bi: usize) -> DataError {
        self.cell_error(
            row,
            c,
            "bad label",
            format!(
                "`{}` is not a binary label (0 or 1) for behaviour `{}`",
                self.shown(row, c),
                self.cfg.behaviours[bi].name()
            ),
        )
    }

    /// A number in column `c`: None when missing; an error when not a finite number.
    pub(crate) fn number(&self, row: &Row, c: ColRef) -> Result<Option<f64>, DataError> {
        // A typed source's number stands for its text (the two parse alike: tested).
        if let Some(x) = self.typed(row, c) {
            return Ok(Some(x));
        }
        let Some(v) = self.value(row, c) else {
            return Ok(None);
        };
        match parse_f64(v) {
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

    /// The fitted statistics of every feature, for [`Pipeline::decode_into`]: looked up
    /// once per pass rather than by name on every row.
    pub(crate) fn fitted(&self) -> Fitted {
        Fitted(
            self.features
                .iter()
                .map(|f| match &f.kind {
                    FeatureKind::Numeric(..) => match self.transforms.features.get(&f.name) {
                        Some(FittedFeature::Standardize { mean, std }) => {
                            Fit::Standardize(*mean, *std)
                        }
                        _ => Fit::None,
                    },
                    FeatureKind::Bucketized { .. } => {
                        Fit::Buckets(self.boundaries(&f.name).to_vec())
                    }
                    _ => Fit::None,
                })
                .collect(),
        )
    }

    /// Appends the decoded row to `out`; on error `out` is left as it was. `fit` is
    /// [`Pipeline::fitted`] of this pipeline.
    pub(crate) fn decode_into(
        &self,
        row: &Row,
        fit: &Fitted,
        out: &mut Batch,
    ) -> Result<(), DataError> {
        self.decode_reusing(row, fit, out, None)
    }

    /// [`Pipeline::decode_into`], with the features `reuse` marks constant copied from an
    /// earlier row of `out` instead of decoded again (a ranking request's user side).
    pub(crate) fn decode_reusing(
        &self,
        row: &Row,
        fit: &Fitted,
        out: &mut Batch,
        reuse: Option<&Reuse>,
    ) -> Result<(), DataError> {
        let mark = (out.single.len(), out.dense.len(), out.labels.len());
        let res = self.decode_parts(row, fit, out, reuse);
        if res.is_err() {
            out.single.truncate(mark.0);
            out.dense.truncate(mark.1);
            out.labels.truncate(mark.2);
            out.weights.truncate(out.n.min(out.weights.len()));
            // The row's start in a multi-valued column is its last complete offset.
            for m in &mut out.multi {
                m.offsets.truncate(out.n + 1);
                m.ids.truncate(m.offsets[out.n] as usize);
            }
        }
        res
    }

    fn decode_parts(
        &self,
        row: &Row,
        fit: &Fitted,
        out: &mut Batch,
        reuse: Option<&Reuse>,
    ) -> Result<(), DataError> {
        let cell = self.cell_of(row)?;
        let single_start = out.single.len();
        self.decode_features(row, fit, out, reuse)?;
        self.decode_labels(row, out)?;
        let group = match (self.gauc, self.gauc_slot) {
            (Some(_), Some(slot)) => out.single[single_start + slot],
            (Some(c), None) => self.value(row, c).map(hash_value).unwrap_or(MISSING_ID),
            (None, _) => 0,
        };
        if let Some(c) = self.weight {
            let w = self.row_weight(row, c)?;
            out.weights.push(w);
        }
        out.cells.push(cell);
        out.groups.push(group);
        out.rows.push(row.index);
        out.n += 1;
        Ok(())
    }

    /// The row's features: ids into `out.single` and `out.multi`, numbers into
    /// `out.dense`.
    fn decode_features(
        &self,
        row: &Row,
        fit: &Fitted,
        out: &mut Batch,
        reuse: Option<&Reuse>,
    ) -> Result<(), DataError> {
        let (n_single, n_dense) = (self.layout.single.len(), self.layout.dense.len());
        for (k, (f, fit)) in self.features.iter().zip(&fit.0).enumerate() {
            // A feature's slot is its place among the row's singles, numbers or lists.
            if let Some(r) = reuse.filter(|r| r.constant.get(k) == Some(&true)) {
                match &f.kind {
                    FeatureKind::Categorical | FeatureKind::Bucketized { .. } => {
                        let v = out.single[r.from * n_single + f.slot];
                        out.single.push(v);
                    }
                    FeatureKind::Numeric(..) => {
                        let v = out.dense[r.from * n_dense + f.slot];
                        out.dense.push(v);
                    }
                    FeatureKind::Multi(_) => {
                        let m = &mut out.multi[f.slot];
                        let (a, b) = (m.offsets[r.from] as usize, m.offsets[r.from + 1] as usize);
                        m.ids.extend_from_within(a..b);
                        m.offsets.push(m.ids.len() as u32);
                    }
                }
                continue;
            }
            match &f.kind {
                FeatureKind::Categorical => {
                    let id = match self.value(row, f.col) {
                        None => MISSING_ID,
                        Some(v) => {
                            if !self.is_utf8(row, f.col, v) {
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
                        if !self.is_utf8(row, f.col, v) {
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
                                    NumericTransform::Standardize => match fit {
                                        Fit::Standardize(mean, std) => (x - mean) / std,
                                        _ => x,
                                    },
                                };
                            }
                            x
                        }
                    };
                    let y = x as f32;
                    if !y.is_finite() {
                        // A finite f64 beyond the float32 range (say 1e39): an error, never
                        // an infinite input that scores as null.
                        return Err(self.cell_error(
                            row,
                            f.col,
                            "out of range",
                            format!(
                                "`{}` is beyond the float32 range the model computes in (after the feature's transforms: {x:e})",
                                self.shown(row, f.col)
                            ),
                        ));
                    }
                    out.dense.push(y);
                }
                FeatureKind::Bucketized { log1p } => {
                    let id = match self.number(row, f.col)? {
                        None => MISSING_ID,
                        Some(x) => {
                            let x = if *log1p { x.max(0.0).ln_1p() } else { x };
                            let bounds = match fit {
                                Fit::Buckets(b) => b.as_slice(),
                                _ => &[],
                            };
                            bucket_id(bounds.partition_point(|&t| t < x))
                        }
                    };
                    out.single.push(id);
                }
            }
        }
        Ok(())
    }

    /// The row's labels, one per behaviour (NaN: missing), into `out.labels`.
    fn decode_labels(&self, row: &Row, out: &mut Batch) -> Result<(), DataError> {
        for (bi, b) in self.behaviours.iter().enumerate() {
            let y = match b {
                CompiledBehaviour::Binary(c, positive) => match self.typed(row, *c) {
                    // A typed source's 0 or 1 (its text would read `0` or `1`; -0.0 reads
                    // `-0`). Only columns read as numbers come typed: no `positive` tokens.
                    Some(x) if x.to_bits() == 0 => 0.0,
                    Some(1.0) => 1.0,
                    Some(_) => return Err(self.bad_label(row, *c, bi)),
                    None => match self.value(row, *c) {
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
                            _ => return Err(self.bad_label(row, *c, bi)),
                        },
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
        Ok(())
    }

    /// The row's weight from column `c`: finite and non-negative, else an error.
    fn row_weight(&self, row: &Row, c: ColRef) -> Result<f32, DataError> {
        let w = match self.number(row, c)? {
            Some(w) if w.is_finite() && w >= 0.0 => w as f32,
            Some(w) => {
                return Err(self.cell_error(
                    row,
                    c,
                    "bad weight",
                    format!("row weight {w} is not a finite non-negative number"),
                ))
            }
            None => {
                return Err(self.cell_error(
                    row,
                    c,
                    "bad weight",
                    "the row weight is missing".into(),
                ))
            }
        };
        Ok(w)
    }

    /// Negative down-sampling of the last decoded row of `out` (train split): each
    /// negative label of a behaviour with rate r < 1 is kept with probability r, decided
    /// by a hash of (seed, row index, behaviour) so that every pass and every thread
    /// count drops the same labels; the others are masked. Returns false, having removed
    /// the row, when no label is left.
    pub(crate) fn sample_negatives(&self, out: &mut Batch, seed: u64) -> bool {
        let nb = self.behaviours.len();
        let n = out.n;
        let Some(index) = out.rows.last().copied() else {
            return true;
        };
        let labels = &mut out.labels[(n - 1) * nb..n * nb];
        let had_any = labels.iter().any(|y| y.is_finite());
        for (b, y) in labels.iter_mut().enumerate() {
            let r = self.cfg.behaviours[b].negative_rate();
            if r < 1.0 && *y == 0.0 {
                let h = xxhash_rust::xxh3::xxh3_64_with_seed(
                    &[index.to_le_bytes(), (b as u64).to_le_bytes()].concat(),
                    seed,
                );
                if (h >> 11) as f64 / (1u64 << 53) as f64 >= r {
                    *y = f32::NAN;
                }
            }
        }
        if had_any && labels.iter().all(|y| !y.is_finite()) {
            out.truncate_rows(n - 1);
            return false;
        }
        true
    }

    /// A bucketised feature's boundaries: fitted quantiles, else the configured ones.
    fn boundaries(&self, feature: &str) -> &[f64] {
        match self.transforms.features.get(feature) {
            Some(FittedFeature::Buckets { boundaries }) => boundaries,
            _ => match self.cfg.features.iter().find(|f| f.name() == feature) {
                Some(mfh_config::FeatureConfig::Bucketized { boundaries, .. }) => boundaries,
                _ => &[],
            },
        }
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
