//! Arrow tables as rows (cargo feature `arrow`): the typed decoder behind the Python
//! package's pandas and Arrow inputs. Each value becomes the text cell the Parquet and CSV
//! paths give the same value, so keys and numbers equal theirs: integers in decimal
//! (`12`), floats in Rust's shortest round-trip form (`12.0` is written `12`, and `12`,
//! `12.0` and `"12"` hash to one key), booleans `1`/`0`, strings and binary as their
//! bytes, dates and timestamps as their integer value (as Parquet's path writes them), a
//! list as its elements joined by the `multi` feature separator (`,` by default), a
//! dictionary (pandas categorical) as its value. A null is the config's missing token.
//! Where a pass reads a column only as a number ([`Cells::wants_number`]), booleans,
//! integers (up to 2^53 in magnitude), 32-bit dates and finite doubles come as numbers
//! instead of text (what the text parses to).
//! Other types (decimals, structs, maps, nested lists) are refused when the table is made,
//! naming the column.

use crate::error::DataError;
use crate::memory::{Cells, RowTable};
use crate::number::{exact_int, write_int as int};
use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{
    Array, ArrayRef, LargeStringArray, PrimitiveArray, RecordBatch, StringArray, StringViewArray,
};
use arrow_schema::DataType;
use std::io::Write;
use std::path::Path;

/// A column of one batch, downcast once: the common types read without a type dispatch
/// per cell.
enum Reader {
    I64(PrimitiveArray<Int64Type>),
    I32(PrimitiveArray<Int32Type>),
    F64(PrimitiveArray<Float64Type>),
    F32(PrimitiveArray<Float32Type>),
    Utf8(StringArray),
    LargeUtf8(LargeStringArray),
    View(StringViewArray),
    Other(ArrayRef),
}

impl Reader {
    fn new(a: &ArrayRef) -> Reader {
        match a.data_type() {
            DataType::Int64 => Reader::I64(a.as_primitive::<Int64Type>().clone()),
            DataType::Int32 => Reader::I32(a.as_primitive::<Int32Type>().clone()),
            DataType::Float64 => Reader::F64(a.as_primitive::<Float64Type>().clone()),
            DataType::Float32 => Reader::F32(a.as_primitive::<Float32Type>().clone()),
            DataType::Utf8 => Reader::Utf8(a.as_string::<i32>().clone()),
            DataType::LargeUtf8 => Reader::LargeUtf8(a.as_string::<i64>().clone()),
            DataType::Utf8View => Reader::View(a.as_string_view().clone()),
            _ => Reader::Other(a.clone()),
        }
    }

    fn is_null(&self, row: usize) -> bool {
        match self {
            Reader::I64(a) => a.is_null(row),
            Reader::I32(a) => a.is_null(row),
            Reader::F64(a) => a.is_null(row),
            Reader::F32(a) => a.is_null(row),
            Reader::Utf8(a) => a.is_null(row),
            Reader::LargeUtf8(a) => a.is_null(row),
            Reader::View(a) => a.is_null(row),
            Reader::Other(a) => a.is_null(row),
        }
    }

    /// The number the text of `row` (not null) parses to, for the types whose values
    /// convert exactly: booleans, integers up to 2^53 in magnitude, 32-bit dates, and
    /// finite doubles (their shortest text parses back to them; an f32's does not equal
    /// the widened f32, so floats stay text).
    fn number(&self, row: usize) -> Option<f64> {
        match self {
            Reader::I64(a) => exact_int(a.value(row) as i128),
            Reader::I32(a) => Some(a.value(row) as f64),
            Reader::F64(a) => Some(a.value(row)).filter(|x| x.is_finite()),
            Reader::Other(a) => {
                use DataType::*;
                match a.data_type() {
                    Boolean => Some(a.as_boolean().value(row) as u8 as f64),
                    Int8 => Some(a.as_primitive::<Int8Type>().value(row) as f64),
                    Int16 => Some(a.as_primitive::<Int16Type>().value(row) as f64),
                    UInt8 => Some(a.as_primitive::<UInt8Type>().value(row) as f64),
                    UInt16 => Some(a.as_primitive::<UInt16Type>().value(row) as f64),
                    UInt32 => Some(a.as_primitive::<UInt32Type>().value(row) as f64),
                    UInt64 => exact_int(a.as_primitive::<UInt64Type>().value(row) as i128),
                    Date32 => Some(a.as_primitive::<Date32Type>().value(row) as f64),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Writes the text of `row` (not null), as [`write_value`] would.
    fn write(&self, row: usize, sep: u8, out: &mut Vec<u8>) -> Result<(), String> {
        match self {
            Reader::I64(a) => int(out, a.value(row)),
            Reader::I32(a) => int(out, a.value(row) as i64),
            Reader::F64(a) => write!(out, "{}", a.value(row)).map_err(|e| e.to_string())?,
            Reader::F32(a) => write!(out, "{}", a.value(row)).map_err(|e| e.to_string())?,
            Reader::Utf8(a) => out.extend_from_slice(a.value(row).as_bytes()),
            Reader::LargeUtf8(a) => out.extend_from_slice(a.value(row).as_bytes()),
            Reader::View(a) => out.extend_from_slice(a.value(row).as_bytes()),
            Reader::Other(a) => write_value(a, row, sep, out)?,
        }
        Ok(())
    }
}

/// Record batches of one schema, read as rows.
pub struct ArrowTable {
    columns: Vec<String>,
    /// Per batch, per column (holding the batch's arrays).
    readers: Vec<Vec<Reader>>,
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
        let readers = batches
            .iter()
            .map(|b| b.columns().iter().map(Reader::new).collect())
            .collect();
        Ok(ArrowTable {
            columns,
            readers,
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
        for (c, col) in self.readers[b].iter().enumerate() {
            if col.is_null(row) {
                cells.push(missing);
                continue;
            }
            if cells.wants_number() {
                if let Some(x) = col.number(row) {
                    cells.push_number(x);
                    continue;
                }
            }
            let mut res = Ok(());
            cells.push_with(|out| res = col.write(row, self.list_sep, out));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::read_cells;
    use arrow_array::builder::{ListBuilder, StringBuilder};
    use arrow_array::{
        BooleanArray, DictionaryArray, Float64Array, Int32Array, Int64Array, LargeStringArray,
        StringArray,
    };
    use std::sync::Arc;

    fn cells(t: &ArrowTable, i: u64) -> Vec<String> {
        read_cells(t, i, b"<NA>")
            .unwrap()
            .into_iter()
            .map(|c| String::from_utf8(c).unwrap())
            .collect()
    }

    #[test]
    fn values_become_the_text_the_file_path_reads() {
        let mut list = ListBuilder::new(StringBuilder::new());
        list.values().append_value("a");
        list.values().append_value("b");
        list.append(true);
        list.append(false);
        let dict: DictionaryArray<Int32Type> = vec!["x", "y"].into_iter().collect();
        let b = RecordBatch::try_from_iter(vec![
            (
                "i",
                Arc::new(Int64Array::from(vec![Some(-12), None])) as ArrayRef,
            ),
            (
                "f",
                Arc::new(Float64Array::from(vec![12.0, 0.1])) as ArrayRef,
            ),
            (
                "s",
                Arc::new(StringArray::from(vec!["12", "é"])) as ArrayRef,
            ),
            (
                "l",
                Arc::new(LargeStringArray::from(vec!["u", "v"])) as ArrayRef,
            ),
            (
                "b",
                Arc::new(BooleanArray::from(vec![true, false])) as ArrayRef,
            ),
            ("n", Arc::new(Int32Array::from(vec![7, 8])) as ArrayRef),
            ("d", Arc::new(dict) as ArrayRef),
            ("t", Arc::new(list.finish()) as ArrayRef),
        ])
        .unwrap();
        let t = ArrowTable::new("t", vec![b.clone(), b.slice(1, 1)], b'|').unwrap();
        assert_eq!(t.rows(), 3);
        assert_eq!(t.columns(), ["i", "f", "s", "l", "b", "n", "d", "t"]);
        assert_eq!(cells(&t, 0), ["-12", "12", "12", "u", "1", "7", "x", "a|b"]);
        assert_eq!(
            cells(&t, 1),
            ["<NA>", "0.1", "é", "v", "0", "8", "y", "<NA>"]
        );
        assert_eq!(
            cells(&t, 2),
            cells(&t, 1),
            "a sliced batch reads its own rows"
        );
        // `12`, `12.0` and "12" are one key.
        let h = |i: usize| crate::hash_value(cells(&t, 0)[i].as_bytes());
        assert_eq!(h(1), h(2));
        assert_eq!(crate::hash_value(b"12.0"), h(2));
    }

    #[test]
    fn unreadable_types_and_mixed_batches_are_refused_by_name() {
        let dec = arrow_array::Decimal128Array::from(vec![1i128])
            .with_precision_and_scale(10, 2)
            .unwrap();
        let b = RecordBatch::try_from_iter(vec![("price", Arc::new(dec) as ArrayRef)]).unwrap();
        let e = ArrowTable::new("data", vec![b], b',')
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("column `price`") && e.contains("Decimal128"),
            "{e}"
        );
        let a = RecordBatch::try_from_iter(vec![(
            "x",
            Arc::new(Int64Array::from(vec![1])) as ArrayRef,
        )])
        .unwrap();
        let c = RecordBatch::try_from_iter(vec![(
            "x",
            Arc::new(StringArray::from(vec!["1"])) as ArrayRef,
        )])
        .unwrap();
        let e = ArrowTable::new("data", vec![a, c], b',')
            .unwrap_err()
            .to_string();
        assert!(e.contains("record batch 1"), "{e}");
        assert!(ArrowTable::new("data", vec![], b',').is_err());
    }

    /// The numbers a pass reads only as numbers come from Arrow's integer and double
    /// columns as numbers, without text; every batch equals the CSV copy's.
    #[test]
    fn typed_columns_decode_as_the_csv_copy() {
        use crate::{Pipeline, SplitTables, StreamOptions};
        use arrow_array::Float32Array;
        let n = 2000usize;
        let mut rng = crate::SplitMix(11);
        // Per split (train: days 0–2, valid: 3–4), its rows' columns, in the CSV's order.
        #[derive(Default)]
        struct Cols {
            uid: Vec<i64>,
            day: Vec<i32>,
            price: Vec<Option<f64>>,
            click: Vec<i64>,
            play: Vec<f32>,
        }
        let mut parts = [Cols::default(), Cols::default()];
        let mut csv = String::from("uid,day,price,click,play\n");
        for i in 0..n {
            let u = rng.below(500) as i64 - 100;
            let d = (i % 5) as i32;
            let p = match rng.below(9) {
                0 => None,
                1 => Some(-0.0),
                _ => Some(rng.below(1 << 40) as f64 / 7.0 - 1e9),
            };
            let c = rng.below(2) as i64;
            let f = rng.below(100_000) as f32 / 3.0;
            let ptext = p.map(|x: f64| x.to_string()).unwrap_or_default();
            csv.push_str(&format!("{u},{d},{ptext},{c},{f}\n"));
            let part = &mut parts[(d > 2) as usize];
            part.uid.push(u);
            part.day.push(d);
            part.price.push(p);
            part.click.push(c);
            part.play.push(f);
        }
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("t.csv"), csv).unwrap();
        let text = r#"
[data]
sources = ["t.csv"]
[splits]
train = { where = "day <= 2" }
valid = { where = "day > 2" }
[[features]]
type = "categorical"
name = "uid"
dim = 4
[[features]]
type = "numeric"
name = "price"
transform = ["standardize"]
[[features]]
type = "bucketized"
name = "play"
dim = 4
quantiles = 4
[[behaviours]]
type = "binary"
name = "click"
column = "click"
"#;
        let cfg = mfh_config::Config::from_toml_str(text, Path::new("t.toml"), tmp.path()).unwrap();
        let mut tables = SplitTables::new();
        for (split, part) in ["train", "valid"].into_iter().zip(parts) {
            let b = RecordBatch::try_from_iter(vec![
                ("uid", Arc::new(Int64Array::from(part.uid)) as ArrayRef),
                ("day", Arc::new(Int32Array::from(part.day)) as ArrayRef),
                (
                    "price",
                    Arc::new(Float64Array::from(part.price)) as ArrayRef,
                ),
                ("click", Arc::new(Int64Array::from(part.click)) as ArrayRef),
                ("play", Arc::new(Float32Array::from(part.play)) as ArrayRef),
            ])
            .unwrap();
            tables.insert(
                split,
                Arc::new(ArrowTable::new(split, vec![b], b',').unwrap()),
            );
        }
        let batches = |p: Pipeline, split: &str| -> Vec<crate::Batch> {
            let mut p = p;
            p.fit("train").unwrap();
            Arc::new(p)
                .stream(split, StreamOptions::in_order(128))
                .unwrap()
                .map(|b| b.unwrap())
                .collect()
        };
        for split in ["train", "valid"] {
            let a = batches(Pipeline::with_tables(&cfg, &tables).unwrap(), split);
            let c = batches(Pipeline::new(&cfg).unwrap(), split);
            assert_eq!(a.len(), c.len());
            assert_eq!(
                a.iter().map(|b| b.n).sum::<usize>(),
                if split == "train" { 1200 } else { 800 }
            );
            for (x, y) in a.iter().zip(&c) {
                assert_eq!(x.single, y.single, "{split}: ids");
                // Row indexes differ: a table counts its own rows, the file all of them.
                assert_eq!(x.n, y.n, "{split}: rows");
                let bits = |v: &[f32]| v.iter().map(|z| z.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&x.dense), bits(&y.dense), "{split}: numbers");
                assert_eq!(bits(&x.labels), bits(&y.labels), "{split}: labels");
            }
        }
        // The typed path ran: price (a double the pass reads only as a number) came as
        // numbers, uid (hashed) as text.
        let p = Pipeline::with_tables(&cfg, &tables).unwrap();
        let uses = p.used_columns(5);
        let numbers: Vec<bool> = uses
            .iter()
            .map(|u| *u == crate::record::ColumnUse::Number)
            .collect();
        assert_eq!(numbers, [false, true, true, true, true]);
        let mut r = crate::memory::TableReader::new(
            "train",
            tables.get("train").unwrap().clone(),
            b"",
            numbers,
        );
        let (mut typed, mut texts) = (0, 0);
        while r.advance().unwrap() {
            typed += (0..5).filter(|&i| r.record.num(i).is_some()).count();
            texts += (0..5).filter(|&i| !r.record[i].is_empty()).count();
        }
        // uid and play (f32) are text in every row; day, click and most prices numbers.
        assert!(
            typed > 3 * 1200 - 200 && texts >= 2 * 1200,
            "{typed} typed, {texts} text"
        );
    }

    /// Every type that comes as a number gives what its text parses to; what cannot be
    /// exact (integers beyond 2^53, NaN) stays text.
    #[test]
    fn typed_numbers_equal_the_parse_of_their_text() {
        use arrow_array::{
            Date32Array, Int16Array, Int8Array, UInt16Array, UInt32Array, UInt64Array, UInt8Array,
        };
        let b = RecordBatch::try_from_iter(vec![
            (
                "b",
                Arc::new(BooleanArray::from(vec![true, false, true])) as ArrayRef,
            ),
            (
                "i8",
                Arc::new(Int8Array::from(vec![-128i8, 0, 127])) as ArrayRef,
            ),
            (
                "i16",
                Arc::new(Int16Array::from(vec![-32768i16, 5, 32767])) as ArrayRef,
            ),
            (
                "u8",
                Arc::new(UInt8Array::from(vec![0u8, 200, 255])) as ArrayRef,
            ),
            (
                "u16",
                Arc::new(UInt16Array::from(vec![0u16, 1, 65535])) as ArrayRef,
            ),
            (
                "u32",
                Arc::new(UInt32Array::from(vec![0u32, 7, u32::MAX])) as ArrayRef,
            ),
            (
                "u64",
                Arc::new(UInt64Array::from(vec![0u64, 1 << 53, (1 << 53) + 1])) as ArrayRef,
            ),
            (
                "d32",
                Arc::new(Date32Array::from(vec![-3, 0, 19000])) as ArrayRef,
            ),
            (
                "i64",
                Arc::new(Int64Array::from(vec![i64::MIN, -(1 << 53), 1 << 53])) as ArrayRef,
            ),
            (
                "f64",
                Arc::new(Float64Array::from(vec![-0.0, 0.1, f64::NAN])) as ArrayRef,
            ),
        ])
        .unwrap();
        let t = ArrowTable::new("t", vec![b], b',').unwrap();
        let numbers = vec![true; 10];
        let mut typed = 0;
        for row in 0..3 {
            let text = read_cells(&t, row, b"").unwrap();
            let mut rec = crate::record::Record::new();
            t.read(
                row,
                b"",
                &mut crate::memory::Cells::typed(&mut rec, &numbers),
            )
            .unwrap();
            assert_eq!(text.len(), 10);
            for (c, cell) in text.iter().enumerate() {
                match rec.num(c) {
                    Some(x) => {
                        assert!(rec[c].is_empty());
                        let y = crate::number::parse_f64(cell).unwrap();
                        assert_eq!(x.to_bits(), y.to_bits(), "column {c}, row {row}");
                        typed += 1;
                    }
                    None => assert_eq!(&rec[c], &cell[..], "column {c}, row {row}"),
                }
            }
        }
        // Text: u64 2^53 + 1, i64::MIN, NaN.
        assert_eq!(typed, 30 - 3);
    }
}
