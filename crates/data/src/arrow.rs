//! Arrow tables as rows (cargo feature `arrow`): the typed decoder behind the Python
//! package's pandas and Arrow inputs. Each value becomes the text cell the Parquet and CSV
//! paths give the same value, so keys and numbers equal theirs: integers in decimal
//! (`12`), floats in Rust's shortest round-trip form (`12.0` is written `12`, and `12`,
//! `12.0` and `"12"` hash to one key), booleans `1`/`0`, strings and binary as their
//! bytes, dates and timestamps as their integer value (as Parquet's path writes them), a
//! list as its elements joined by the `multi` feature separator (`,` by default), a
//! dictionary (pandas categorical) as its value. A null is the config's missing token.
//! Other types (decimals, structs, maps, nested lists) are refused when the table is made,
//! naming the column.

use crate::error::DataError;
use crate::memory::{Cells, RowTable};
use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use std::io::Write;
use std::path::Path;

/// Record batches of one schema, read as rows.
pub struct ArrowTable {
    columns: Vec<String>,
    batches: Vec<RecordBatch>,
    /// Rows before each batch, and the total at the end.
    starts: Vec<u64>,
    /// The separator lists are joined with.
    list_sep: u8,
}

impl std::fmt::Debug for ArrowTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArrowTable")
            .field("columns", &self.columns)
            .field("rows", &self.rows())
            .finish()
    }
}

impl ArrowTable {
    /// The rows of `batches` (all with the first one's columns). `name` is what errors
    /// call the table. Columns of a type the reader cannot take are refused by name.
    pub fn new(name: &str, batches: Vec<RecordBatch>, list_sep: u8) -> Result<Self, DataError> {
        let err = |m: String| DataError::file(Path::new(name), "arrow", m);
        let Some(first) = batches.first() else {
            return Err(err("the table has no record batches".into()));
        };
        let schema = first.schema();
        let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        for (i, f) in schema.fields().iter().enumerate() {
            if let Err(why) = supported(f.data_type(), 0) {
                return Err(err(format!(
                    "column `{}` ({}) has Arrow type {}: {why}",
                    f.name(),
                    i + 1,
                    f.data_type()
                )));
            }
        }
        let mut starts = vec![0u64];
        for (k, b) in batches.iter().enumerate() {
            let same = b.num_columns() == columns.len()
                && b.schema()
                    .fields()
                    .iter()
                    .zip(schema.fields().iter())
                    .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
            if !same {
                return Err(err(format!(
                    "record batch {k} has other columns or types than batch 0"
                )));
            }
            starts.push(starts.last().unwrap() + b.num_rows() as u64);
        }
        Ok(ArrowTable {
            columns,
            batches,
            starts,
            list_sep,
        })
    }
}

impl RowTable for ArrowTable {
    fn columns(&self) -> &[String] {
        &self.columns
    }

    fn rows(&self) -> u64 {
        *self.starts.last().unwrap()
    }

    fn read(&self, i: u64, missing: &[u8], cells: &mut Cells) -> Result<(), (usize, String)> {
        let b = self.starts.partition_point(|&s| s <= i) - 1;
        let row = (i - self.starts[b]) as usize;
        for (c, col) in self.batches[b].columns().iter().enumerate() {
            if col.is_null(row) {
                cells.push(missing);
                continue;
            }
            let mut res = Ok(());
            cells.push_with(|out| res = write_value(col, row, self.list_sep, out));
            res.map_err(|m| (c, m))?;
        }
        Ok(())
    }
}

/// Whether the reader takes a column of type `t` (`depth` > 0 inside a list).
fn supported(t: &DataType, depth: usize) -> Result<(), String> {
    use DataType::*;
    match t {
        Null | Boolean | Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64
        | Float32 | Float64 | Utf8 | LargeUtf8 | Utf8View | Binary | LargeBinary
        | BinaryView | Date32 | Date64 | Timestamp(..) => Ok(()),
        Dictionary(_, v) => supported(v, depth),
        List(f) | LargeList(f) if depth == 0 => supported(f.data_type(), 1),
        List(_) | LargeList(_) => Err("nested lists are not supported as features".into()),
        _ => Err(
            "not a type the reader takes; convert it to numbers or strings (decimals, structs and maps are not read)"
                .into(),
        ),
    }
}

/// Writes the text of `a[row]` (not null) into `out`.
fn write_value(a: &ArrayRef, row: usize, sep: u8, out: &mut Vec<u8>) -> Result<(), String> {
    use DataType::*;
    let w = |r: std::io::Result<()>| r.map_err(|e| e.to_string());
    match a.data_type() {
        Null => {}
        Boolean => out.push(b'0' + a.as_boolean().value(row) as u8),
        Int8 => int(out, a.as_primitive::<Int8Type>().value(row) as i64),
        Int16 => int(out, a.as_primitive::<Int16Type>().value(row) as i64),
        Int32 => int(out, a.as_primitive::<Int32Type>().value(row) as i64),
        Int64 => int(out, a.as_primitive::<Int64Type>().value(row)),
        UInt8 => int(out, a.as_primitive::<UInt8Type>().value(row) as i64),
        UInt16 => int(out, a.as_primitive::<UInt16Type>().value(row) as i64),
        UInt32 => int(out, a.as_primitive::<UInt32Type>().value(row) as i64),
        UInt64 => w(write!(out, "{}", a.as_primitive::<UInt64Type>().value(row)))?,
        Float32 => w(write!(
            out,
            "{}",
            a.as_primitive::<Float32Type>().value(row)
        ))?,
        Float64 => w(write!(
            out,
            "{}",
            a.as_primitive::<Float64Type>().value(row)
        ))?,
        Date32 => w(write!(out, "{}", a.as_primitive::<Date32Type>().value(row)))?,
        Date64 => w(write!(out, "{}", a.as_primitive::<Date64Type>().value(row)))?,
        Timestamp(..) => {
            // Every timestamp unit is an i64 underneath.
            let v = a.to_data().buffers()[0].typed_data::<i64>()[a.offset() + row];
            w(write!(out, "{v}"))?
        }
        Utf8 => out.extend_from_slice(a.as_string::<i32>().value(row).as_bytes()),
        LargeUtf8 => out.extend_from_slice(a.as_string::<i64>().value(row).as_bytes()),
        Utf8View => out.extend_from_slice(a.as_string_view().value(row).as_bytes()),
        Binary => out.extend_from_slice(a.as_binary::<i32>().value(row)),
        LargeBinary => out.extend_from_slice(a.as_binary::<i64>().value(row)),
        BinaryView => out.extend_from_slice(a.as_binary_view().value(row)),
        Dictionary(k, _) => {
            let (key, values) = dictionary_key(a, k, row)?;
            if values.is_null(key) {
                return Ok(());
            }
            write_value(values, key, sep, out)?;
        }
        List(_) => {
            let l = a.as_list::<i32>();
            write_list(&l.value(row), sep, out)?;
        }
        LargeList(_) => {
            let l = a.as_list::<i64>();
            write_list(&l.value(row), sep, out)?;
        }
        t => return Err(format!("Arrow type {t} is not read")),
    }
    Ok(())
}

/// `x` in decimal.
fn int(out: &mut Vec<u8>, x: i64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut u = x.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    if x < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[i..]);
}

fn write_list(items: &ArrayRef, sep: u8, out: &mut Vec<u8>) -> Result<(), String> {
    for k in 0..items.len() {
        if k > 0 {
            out.push(sep);
        }
        if !items.is_null(k) {
            write_value(items, k, sep, out)?;
        }
    }
    Ok(())
}

/// A dictionary array's key at `row` and its values.
fn dictionary_key<'a>(
    a: &'a ArrayRef,
    k: &DataType,
    row: usize,
) -> Result<(usize, &'a ArrayRef), String> {
    macro_rules! key {
        ($t:ty) => {{
            let d = a.as_dictionary::<$t>();
            (d.keys().value(row) as usize, d.values())
        }};
    }
    Ok(match k {
        DataType::Int8 => key!(Int8Type),
        DataType::Int16 => key!(Int16Type),
        DataType::Int32 => key!(Int32Type),
        DataType::Int64 => key!(Int64Type),
        DataType::UInt8 => key!(UInt8Type),
        DataType::UInt16 => key!(UInt16Type),
        DataType::UInt32 => key!(UInt32Type),
        DataType::UInt64 => key!(UInt64Type),
        t => return Err(format!("dictionary keys of type {t} are not read")),
    })
}
