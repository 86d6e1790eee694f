//! Request rows: a server's inputs, named by column, decoded by the reader's own code (the
//! side-table joins, hashing, bucketizing, standardizing with the fitted statistics), so
//! that a row scores exactly as the same row read from a file by `mfh predict`.
//!
//! A request carries main-table columns (`user_id`, `tab`) and may carry side-table
//! columns (`register_days` or `user.register_days`), which override the joined row's
//! values. A main column that a request does not carry is taken from a side-table column of
//! the same name, joined on that table's key (KuaiRand's `item_prior_impressions` from the
//! `item_counts` table); a main column that the model reads and no table can fill is
//! required. Unlike a file's row, a key with no side-table row is not an error: that
//! table's columns are missing unless the request carries them.
//!
//! Ranking requests send the user's side once (`context`) and N candidates: the context's
//! joins and overrides are resolved once and shared by every candidate that does not
//! override them.

use crate::batch::Batch;
use crate::decode::{Fitted, Reuse, Row};
use crate::hash::canonical;
use crate::pipeline::{ColRef, CompiledFacet, FeatureKind, Pipeline};
use crate::record::Record;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A request input resolved against the model's columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Input(ColRef);

/// What the model reads from an input column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// Parsed as a number (numeric and bucketized features, threshold facets).
    Number,
    /// Hashed or matched as text (categorical, multi-valued, value-list facets).
    Text,
}

/// One input a request may carry.
#[derive(Debug, Clone, PartialEq)]
pub struct InputInfo {
    pub name: String,
    pub kind: InputKind,
    /// Neither the request's context nor a side table can supply it.
    pub required: bool,
}

/// A request row that cannot be scored, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestError {
    /// 0-based row of the request.
    pub row: usize,
    pub message: String,
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "row {}: {}", self.row, self.message)
    }
}

impl std::error::Error for RequestError {}

/// Decodes request rows for one pipeline (one loaded model).
pub struct RequestDecoder {
    p: Arc<Pipeline>,
    fitted: Fitted,
    /// Per main column: the side-table column of the same name that fills it.
    fill: Vec<Option<(usize, usize)>>,
    /// Per main column: the model reads it and nothing fills it.
    required: Vec<bool>,
    kinds: Vec<(ColRef, InputKind)>,
    inputs: Vec<InputInfo>,
    missing: Vec<u8>,
    /// Decode the features no row changes once per request (on unless a benchmark
    /// measures the path before it).
    context_once: AtomicBool,
}

impl RequestDecoder {
    pub fn new(p: Arc<Pipeline>) -> RequestDecoder {
        let mut kinds: Vec<(ColRef, InputKind)> = Vec::new();
        let mut note = |c: ColRef, k: InputKind| match kinds.iter_mut().find(|(x, _)| *x == c) {
            // A column read both ways must parse as a number.
            Some(e) => {
                if k == InputKind::Number {
                    e.1 = k
                }
            }
            None => kinds.push((c, k)),
        };
        for f in &p.features {
            let k = match f.kind {
                FeatureKind::Categorical | FeatureKind::Multi(_) => InputKind::Text,
                FeatureKind::Numeric(..) | FeatureKind::Bucketized { .. } => InputKind::Number,
            };
            note(f.col, k);
        }
        for f in &p.facets {
            match f {
                CompiledFacet::Thresholds(c, ..) => note(*c, InputKind::Number),
                CompiledFacet::Groups(c, ..) => note(*c, InputKind::Text),
            }
        }
        let fill: Vec<Option<(usize, usize)>> = p
            .main_columns
            .iter()
            .map(|name| {
                p.side.iter().enumerate().find_map(|(t, s)| {
                    s.columns
                        .iter()
                        .position(|c| c == name)
                        .filter(|&c| c != s.key)
                        .map(|c| (t, c))
                })
            })
            .collect();
        let required: Vec<bool> = (0..p.main_columns.len())
            .map(|i| fill[i].is_none() && kinds.iter().any(|(c, _)| *c == ColRef::Main(i)))
            .collect();
        let inputs = kinds
            .iter()
            .map(|(c, k)| InputInfo {
                name: match *c {
                    ColRef::Main(i) => p.main_columns[i].clone(),
                    ColRef::Side(t, i) => {
                        let col = &p.side[t].columns[i];
                        // The short name when it resolves to this very column.
                        if p.resolve("", col).ok() == Some(*c) {
                            col.clone()
                        } else {
                            format!("{}.{col}", p.side[t].name)
                        }
                    }
                },
                kind: *k,
                required: matches!(c, ColRef::Main(i) if required[*i]),
            })
            .collect();
        let missing = if p.missing_is_empty {
            Vec::new()
        } else {
            p.missing.first().cloned().unwrap_or_default()
        };
        RequestDecoder {
            fitted: p.fitted(),
            fill,
            required,
            kinds,
            inputs,
            missing,
            context_once: AtomicBool::new(true),
            p,
        }
    }

    /// Whether the features no row of a request changes are decoded once and copied
    /// (the default) or decoded for every row (the path before; for benchmarks).
    pub fn set_context_once(&self, on: bool) {
        self.context_once.store(on, Ordering::Relaxed);
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.p
    }

    /// The inputs the model reads, main-table columns first.
    pub fn inputs(&self) -> &[InputInfo] {
        &self.inputs
    }

    /// Resolves an input name (a main column, `table.column`, or a side column whose
    /// name is unique); None for a name the data does not have.
    pub fn input(&self, name: &str) -> Option<Input> {
        self.p.resolve("", name).ok().map(Input)
    }

    /// How many distinct inputs a request may name: every main-table and side-table
    /// column (a request naming one twice is refused, so this bounds its fields per row).
    pub fn n_columns(&self) -> usize {
        self.p.main_columns.len() + self.p.side.iter().map(|s| s.columns.len()).sum::<usize>()
    }

    /// What the model reads the input as; None when no feature or facet reads it (a
    /// label or an unused column: accepted and ignored).
    pub fn kind(&self, input: Input) -> Option<InputKind> {
        self.kinds
            .iter()
            .find(|(c, _)| *c == input.0)
            .map(|(_, k)| *k)
    }

    /// An empty batch of the model's layout.
    pub fn batch(&self) -> Batch {
        let l = self.p.layout();
        Batch::with_layout(l.single.len(), l.multi.len())
    }

    fn join(&self, t: usize, key: Option<&[u8]>) -> Option<u32> {
        let key = key.filter(|k| !self.p.is_missing(k))?;
        self.p.side[t].index.get(canonical(key)).copied()
    }

    /// Table `t`'s joined row with the overrides of `context` then `fields` applied;
    /// None when neither overrides a column of the table.
    fn patch<V: AsRef<[u8]>>(
        &self,
        t: usize,
        joined: Option<u32>,
        context: &[(Input, V)],
        fields: &[(Input, V)],
    ) -> Option<Record> {
        let over: Vec<(usize, &[u8])> = context
            .iter()
            .chain(fields)
            .filter_map(|(Input(c), v)| match *c {
                ColRef::Side(tt, i) if tt == t => Some((i, v.as_ref())),
                _ => None,
            })
            .collect();
        if over.is_empty() {
            return None;
        }
        let side = &self.p.side[t];
        let mut rec = Record::new();
        for i in 0..side.columns.len() {
            let v = match over.iter().rev().find(|(c, _)| *c == i) {
                Some((_, v)) => v,
                None => joined.map_or(&self.missing[..], |r| &side.rows[r as usize][i]),
            };
            rec.push_field(v);
        }
        Some(rec)
    }

    /// Decodes `rows` (each with the `context` fields, which a row's own fields
    /// override) into `out`, in order. On error `out` holds the rows before the bad one.
    pub fn decode<V: AsRef<[u8]>, R: AsRef<[(Input, V)]>>(
        &self,
        context: &[(Input, V)],
        rows: &[R],
        out: &mut Batch,
    ) -> Result<(), RequestError> {
        let p = &*self.p;
        let nt = p.side.len();
        let mut base: Vec<Option<&[u8]>> = vec![None; p.main_columns.len()];
        for (Input(c), v) in context {
            if let ColRef::Main(i) = *c {
                base[i] = Some(v.as_ref());
            }
        }
        // The context's joins and overrides, resolved once for every row.
        let ctx_join: Vec<Option<u32>> = (0..nt)
            .map(|t| self.join(t, base[p.side[t].join]))
            .collect();
        let ctx_patch: Vec<Option<Record>> = (0..nt)
            .map(|t| self.patch::<V>(t, ctx_join[t], context, &[]))
            .collect();
        // The features no row changes (the user's side of a ranking request): decoded for
        // the first row, copied to the others.
        let mut main_set = vec![false; p.main_columns.len()];
        let mut table_set = vec![false; nt];
        for fields in rows {
            for (Input(c), _) in fields.as_ref() {
                match *c {
                    ColRef::Main(i) => {
                        main_set[i] = true;
                        for (t, s) in p.side.iter().enumerate() {
                            table_set[t] |= s.join == i;
                        }
                    }
                    ColRef::Side(t, _) => table_set[t] = true,
                }
            }
        }
        let constant: Vec<bool> = p
            .features
            .iter()
            .map(|f| match f.col {
                ColRef::Main(i) => !main_set[i] && self.fill[i].is_none_or(|(t, _)| !table_set[t]),
                ColRef::Side(t, _) => !table_set[t],
            })
            .collect();
        let first = out.n;
        let once = self.context_once.load(Ordering::Relaxed);
        let mut rec = Record::new();
        let mut joins = vec![None; nt];
        let mut own: Vec<Option<Record>> = vec![None; nt];
        let mut touched = vec![false; nt];
        let mut cells = base.clone();
        for (ri, fields) in rows.iter().enumerate() {
            let fields = fields.as_ref();
            cells.copy_from_slice(&base);
            for (Input(c), v) in fields.iter() {
                if let ColRef::Main(i) = *c {
                    cells[i] = Some(v.as_ref());
                }
            }
            for t in 0..nt {
                let key = ColRef::Main(p.side[t].join);
                let new_key = fields.iter().any(|(Input(c), _)| *c == key);
                touched[t] = new_key
                    || fields
                        .iter()
                        .any(|(Input(c), _)| matches!(*c, ColRef::Side(tt, _) if tt == t));
                joins[t] = if new_key {
                    self.join(t, cells[p.side[t].join])
                } else {
                    ctx_join[t]
                };
                own[t] = if touched[t] {
                    self.patch(t, joins[t], context, fields)
                } else {
                    None
                };
            }
            let patch: Vec<Option<&Record>> = (0..nt)
                .map(|t| {
                    if touched[t] {
                        own[t].as_ref()
                    } else {
                        ctx_patch[t].as_ref()
                    }
                })
                .collect();
            rec.clear();
            for (i, cell) in cells.iter().enumerate() {
                let v = match (*cell, self.fill[i]) {
                    (Some(v), _) => Some(v),
                    (None, Some((t, c))) => match (patch[t], joins[t]) {
                        (Some(r), _) => Some(&r[c]),
                        (None, Some(r)) => Some(&p.side[t].rows[r as usize][c]),
                        (None, None) => None,
                    },
                    (None, None) => None,
                };
                if v.is_none() && self.required[i] {
                    return Err(RequestError {
                        row: ri,
                        message: format!("missing input `{}`", p.main_columns[i]),
                    });
                }
                rec.push_field(v.unwrap_or(&self.missing));
            }
            rec.set_line(ri as u64 + 1);
            let row = Row {
                path: Path::new("request"),
                line: ri as u64 + 1,
                index: ri as u64,
                rec: &rec,
                side: &joins,
                patch: &patch,
            };
            let reuse = Reuse {
                constant: &constant,
                from: first,
            };
            let reuse = Some(&reuse).filter(|_| ri > 0 && once);
            p.decode_reusing(&row, &self.fitted, out, reuse)
                .map_err(|e| {
                    let col = e
                        .column
                        .as_ref()
                        .filter(|(_, n)| !n.is_empty())
                        .map(|(_, n)| format!(" (input `{n}`)"))
                        .unwrap_or_default();
                    let msg = e
                        .message
                        .split(" (joined from")
                        .next()
                        .unwrap_or("")
                        .to_string();
                    RequestError {
                        row: ri,
                        message: format!("{msg}{col}"),
                    }
                })?;
        }
        Ok(())
    }
}

impl RequestDecoder {
    /// Decodes every row of an in-memory table (columns named as request inputs; columns
    /// the model does not read are ignored) into `out`, in order, as [`Self::decode`]
    /// decodes request rows. A null cell is a missing value, as an empty cell of a file.
    pub fn decode_table(
        &self,
        table: &dyn crate::memory::RowTable,
        out: &mut Batch,
    ) -> Result<(), RequestError> {
        let cols: Vec<Option<Input>> = table
            .columns()
            .iter()
            .map(|c| {
                self.input(c)
                    .filter(|i| self.kind(*i).is_some() || self.fills(*i))
            })
            .collect();
        const CHUNK: u64 = 1024;
        let n = table.rows();
        let mut recs: Vec<Record> = Vec::new();
        let mut start = 0u64;
        while start < n {
            let end = (start + CHUNK).min(n);
            recs.resize_with((end - start) as usize, Record::new);
            for (k, rec) in recs.iter_mut().enumerate() {
                rec.clear();
                let row = start + k as u64;
                table
                    .read(row, &self.missing, &mut crate::memory::Cells::text(rec))
                    .map_err(|(c, m)| RequestError {
                        row: row as usize,
                        message: format!("{m} (input `{}`)", table.columns()[c]),
                    })?;
            }
            // Every row carries the same inputs: one flat list of fields, cut per row.
            let width = cols.iter().flatten().count().max(1);
            let fields: Vec<(Input, &[u8])> = recs
                .iter()
                .flat_map(|rec| {
                    cols.iter()
                        .enumerate()
                        .filter_map(move |(c, i)| i.map(|i| (i, &rec[c])))
                })
                .collect();
            let rows: Vec<&[(Input, &[u8])]> = if fields.is_empty() {
                vec![&[][..]; recs.len()]
            } else {
                fields.chunks(width).collect()
            };
            self.decode::<&[u8], _>(&[], &rows, out)
                .map_err(|e| RequestError {
                    row: e.row + start as usize,
                    message: e.message,
                })?;
            start = end;
        }
        Ok(())
    }

    /// Whether decoding reads the input: a feature or facet reads it, it is a side-table
    /// column (it overrides the joined row) or a main column a side table's join reads.
    pub fn reads(&self, input: Input) -> bool {
        self.kind(input).is_some() || self.fills(input)
    }

    fn fills(&self, input: Input) -> bool {
        match input.0 {
            ColRef::Side(..) => true,
            ColRef::Main(i) => self.p.side.iter().any(|s| s.join == i),
        }
    }
}
