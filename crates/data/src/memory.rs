//! Rows held in memory instead of read from the config's files: a Python caller's pandas
//! or Arrow tables, one per split (`mfh.train(..., data={"train": df, "valid": df2})`).
//! A table hands each row over as the text cells a file's row would have, so that every
//! later stage (missing tokens, hashing, parsing, side-table joins, errors) is the one
//! the file path runs. A split given as a table holds exactly the table's rows: its
//! predicate in the config is not applied. Splits not given read the config's files.
//!
//! Errors name the table as `data["SPLIT"]` and the 1-based row in place of a file and
//! a line.

use crate::error::DataError;
use crate::record::Record;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a table's cells are written: one call of [`Cells::push`] (or `push_with`, or
/// `push_number`) per column, in the table's column order.
pub struct Cells<'a> {
    rec: &'a mut Record,
    /// Per column, whether the pass reads it only as a number (see `push_number`).
    numbers: &'a [bool],
}

impl<'a> Cells<'a> {
    /// Cells of `rec` given as text.
    pub(crate) fn text(rec: &'a mut Record) -> Cells<'a> {
        Cells { rec, numbers: &[] }
    }

    /// Cells of `rec`, of which those `numbers` marks may be given as numbers.
    pub(crate) fn typed(rec: &'a mut Record, numbers: &'a [bool]) -> Cells<'a> {
        Cells { rec, numbers }
    }

    /// Whether the next column's cell may be given as a number ([`Cells::push_number`]):
    /// the pass reads that column only as a number, and an empty cell is its only
    /// missing token.
    #[inline]
    pub fn wants_number(&self) -> bool {
        self.numbers.get(self.rec.len()).copied().unwrap_or(false)
    }

    /// Appends the next column's cell as a number, where [`Cells::wants_number`]: `x` must
    /// be finite and equal to what the cell's text would parse to (a typed decoder's
    /// integer or double), so that every number, label and bucket equals the text path's.
    #[inline]
    pub fn push_number(&mut self, x: f64) {
        debug_assert!(self.wants_number() && x.is_finite());
        let i = self.rec.len();
        self.rec.push_empty();
        self.rec.set_num(i, x);
    }

    /// Appends the next column's cell (its text, as a file would hold it).
    #[inline]
    pub fn push(&mut self, cell: &[u8]) {
        self.rec.push_field(cell);
    }

    /// Appends the next column's cell, written by `f` into the row's buffer (no copy).
    #[inline]
    pub fn push_with(&mut self, f: impl FnOnce(&mut Vec<u8>)) {
        self.rec.push_with(f);
    }
}

/// A table of rows in memory.
pub trait RowTable: Send + Sync {
    /// The column names, in the order [`RowTable::read`] writes the cells.
    fn columns(&self) -> &[String];
    /// The number of rows.
    fn rows(&self) -> u64;
    /// Writes row `i`'s cells (a missing value as `missing`, the config's missing token).
    /// An error gives the 0-based column and why (say, a value the reader cannot take).
    fn read(&self, i: u64, missing: &[u8], cells: &mut Cells) -> Result<(), (usize, String)>;
}

/// The in-memory tables of a run, by split name.
#[derive(Clone, Default)]
pub struct SplitTables(BTreeMap<String, Arc<dyn RowTable>>);

impl std::fmt::Debug for SplitTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rows: BTreeMap<&String, u64> = self.0.iter().map(|(k, t)| (k, t.rows())).collect();
        f.debug_tuple("SplitTables").field(&rows).finish()
    }
}

impl SplitTables {
    pub fn new() -> SplitTables {
        SplitTables::default()
    }

    pub fn insert(&mut self, split: &str, table: Arc<dyn RowTable>) {
        self.0.insert(split.to_string(), table);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, split: &str) -> Option<&Arc<dyn RowTable>> {
        self.0.get(split)
    }

    pub fn splits(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// The columns every table shares (the main table's header); an error when two
    /// tables name different columns.
    pub fn header(&self) -> Result<Option<Vec<String>>, DataError> {
        let mut it = self.0.iter();
        let Some((first, t)) = it.next() else {
            return Ok(None);
        };
        let cols = t.columns().to_vec();
        for (name, other) in it {
            if other.columns() != cols.as_slice() {
                return Err(DataError::file(
                    table_path(name),
                    "header",
                    format!(
                        "its columns ({}) differ from those of {} ({}); every table must have the same columns in the same order",
                        other.columns().join(", "),
                        table_path(first).display(),
                        cols.join(", ")
                    ),
                ));
            }
        }
        Ok(Some(cols))
    }
}

/// The name errors give a split's table in place of a file.
pub(crate) fn table_path(split: &str) -> PathBuf {
    PathBuf::from(format!("data[\"{split}\"]"))
}

/// Reads a table's rows in order, as [`crate::rows::RowReader`] reads files.
pub(crate) struct TableReader {
    table: Arc<dyn RowTable>,
    path: PathBuf,
    missing: Vec<u8>,
    /// Per column, whether the pass reads it only as a number.
    numbers: Vec<bool>,
    next: u64,
    pub record: Record,
}

impl TableReader {
    /// A reader of `table`; the columns `numbers` marks may come as numbers (see
    /// [`Cells::push_number`]).
    pub fn new(
        split: &str,
        table: Arc<dyn RowTable>,
        missing: &[u8],
        numbers: Vec<bool>,
    ) -> TableReader {
        TableReader {
            table,
            path: table_path(split),
            missing: missing.to_vec(),
            numbers,
            next: 0,
            record: Record::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rows read so far (the current row's 0-based index is one less).
    pub fn rows_read(&self) -> u64 {
        self.next
    }

    /// Advances to the next row; `Ok(false)` after the last.
    pub fn advance(&mut self) -> Result<bool, DataError> {
        if self.next >= self.table.rows() {
            return Ok(false);
        }
        let i = self.next;
        self.next += 1;
        self.record.clear();
        self.record.set_line(i + 1);
        let n = self.table.columns().len();
        let res = self.table.read(
            i,
            &self.missing,
            &mut Cells::typed(&mut self.record, &self.numbers),
        );
        let cols = self.table.columns();
        let bad = |(c, message): (usize, String)| DataError {
            file: self.path.clone(),
            line: Some(i + 1),
            column: cols.get(c).map(|name| (c + 1, name.clone())),
            kind: "bad value",
            message,
        };
        res.map_err(bad)?;
        if self.record.len() != n {
            return Err(bad((
                n,
                format!(
                    "the table wrote {} cells for {n} columns",
                    self.record.len()
                ),
            )));
        }
        Ok(true)
    }
}

/// Row `i` of `table` as owned cells (a missing value as `missing`).
pub fn read_cells(
    table: &dyn RowTable,
    i: u64,
    missing: &[u8],
) -> Result<Vec<Vec<u8>>, (usize, String)> {
    let mut rec = Record::new();
    table.read(i, missing, &mut Cells::text(&mut rec))?;
    Ok(rec.iter().map(<[u8]>::to_vec).collect())
}
