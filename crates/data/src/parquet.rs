//! Parquet sources (cargo feature `parquet`). Flat files are read column by column, a
//! block of rows at a time, decoding only the columns a pass uses; a column the pass reads
//! only as a number comes as numbers (integers, booleans, finite doubles: exactly what
//! their text would parse to), every other value as the text cell a CSV row would hold, so
//! that every later stage (missing tokens, hashing, parsing, errors) behaves identically
//! for both formats. Other files (lists, groups, decimals) go through the parquet crate's
//! record reader, as text; a list column becomes a comma-separated cell, ready for a
//! `multi` feature. Errors give the 1-based row number where CSV errors give the line.

use crate::error::DataError;
use crate::number::{exact_int as exact, write_int as int};
use crate::record::{ColumnUse, Record};
use parquet::basic::{ConvertedType, Type as PhysicalType};
use parquet::column::reader::{ColumnReader, ColumnReaderImpl};
use parquet::file::reader::{ChunkReader, FileReader, Length, SerializedFileReader};
use parquet::record::reader::RowIter;
use parquet::record::Field;
use std::io::Write;
use std::path::{Path, PathBuf};

fn open(path: &Path) -> Result<SerializedFileReader<Chunks>, DataError> {
    let chunks = if crate::store::is_object_url(path) {
        #[cfg(feature = "s3")]
        {
            Chunks::Object(std::sync::Arc::new(crate::store::remote::Ranges::new(
                crate::store::remote::Object::head(path)?,
            )))
        }
        #[cfg(not(feature = "s3"))]
        return Err(crate::store::no_s3(path));
    } else {
        Chunks::File(
            std::fs::File::open(path)
                .map_err(|e| DataError::file(path, "io", format!("cannot open: {e}")))?,
        )
    };
    SerializedFileReader::new(chunks)
        .map_err(|e| DataError::file(path, "parquet", format!("not a readable Parquet file: {e}")))
}

/// A Parquet file's bytes: a local file, or an object read by ranges.
pub(crate) enum Chunks {
    File(std::fs::File),
    #[cfg(feature = "s3")]
    Object(std::sync::Arc<crate::store::remote::Ranges>),
}

impl Length for Chunks {
    fn len(&self) -> u64 {
        match self {
            Chunks::File(f) => Length::len(f),
            #[cfg(feature = "s3")]
            Chunks::Object(o) => o.object().size,
        }
    }
}

impl ChunkReader for Chunks {
    type T = Box<dyn std::io::Read + Send>;
    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        match self {
            Chunks::File(f) => Ok(Box::new(f.get_read(start)?)),
            #[cfg(feature = "s3")]
            Chunks::Object(o) => Ok(Box::new(crate::store::remote::RangeReader::new(
                o.clone(),
                start,
            ))),
        }
    }
    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        match self {
            Chunks::File(f) => f.get_bytes(start, length),
            #[cfg(feature = "s3")]
            Chunks::Object(o) => o
                .get(start, length)
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e))),
        }
    }
}

/// Top-level column names.
pub(crate) fn header(path: &Path) -> Result<Vec<String>, DataError> {
    let r = open(path)?;
    let schema = r
        .metadata()
        .file_metadata()
        .schema_descr()
        .root_schema()
        .get_fields()
        .to_vec();
    Ok(schema.iter().map(|f| f.name().to_string()).collect())
}

pub(crate) struct ParquetRows {
    path: PathBuf,
    rows: Rows,
    pub row: u64,
    buf: Vec<u8>,
}

enum Rows {
    /// Flat files of plain columns: read column by column, a block of rows at a time.
    Columns(Box<Columns>),
    /// Anything else (lists, groups, decimals…): the record API.
    Records(RowIter<'static>),
}

impl ParquetRows {
    /// Opens `path`. With `used`, when the column path reads the file, the columns marked
    /// unused are not decoded (their cells are empty), and those read only as numbers come
    /// as numbers where their type allows (integers, booleans, finite doubles: a cell with
    /// [`Record::num`] and no text).
    pub fn open(path: &Path, used: Option<&[ColumnUse]>) -> Result<ParquetRows, DataError> {
        let rows = match Columns::new(open(path)?, used) {
            Ok(c) => Rows::Columns(Box::new(c)),
            Err(r) => Rows::Records(RowIter::from_file_into(Box::new(r))),
        };
        Ok(ParquetRows {
            path: path.to_path_buf(),
            rows,
            row: 0,
            buf: Vec::new(),
        })
    }

    /// Reads the next row into `rec` as text cells. `Ok(false)` at the end.
    pub fn next_into(&mut self, rec: &mut Record) -> Result<bool, DataError> {
        let iter = match &mut self.rows {
            Rows::Columns(c) => {
                let at = self.row + 1;
                let fail = |column: Option<(usize, String)>, e: String| DataError {
                    file: self.path.clone(),
                    line: Some(at),
                    column,
                    kind: "parquet",
                    message: format!("cannot decode row {at}: {e}"),
                };
                if c.next >= c.len && !c.read_block().map_err(|e| fail(None, e.to_string()))? {
                    return Ok(false);
                }
                self.row += 1;
                rec.clear();
                rec.set_line(self.row);
                let r = c.next;
                c.next += 1;
                for (i, col) in c.cols.iter().enumerate() {
                    if col.skip {
                        rec.push_empty();
                        continue;
                    }
                    if col.bad == Some(r) {
                        return Err(fail(
                            Some((i + 1, col.name.clone())),
                            "a UTF-8 string column holds bytes that are not UTF-8".into(),
                        ));
                    }
                    if let Some(Some(x)) = col.nums.get(r) {
                        rec.push_empty();
                        rec.set_num(i, *x);
                        continue;
                    }
                    let a = if r == 0 { 0 } else { col.ends[r - 1] as usize };
                    let cell = &col.text[a..col.ends[r] as usize];
                    // A block of ASCII text has only ASCII cells.
                    rec.push_cell(cell, col.ascii || cell.is_ascii());
                }
                return Ok(true);
            }
            Rows::Records(iter) => iter,
        };
        let Some(row) = iter.next() else {
            return Ok(false);
        };
        self.row += 1;
        let row = row.map_err(|e| DataError {
            file: self.path.clone(),
            line: Some(self.row),
            column: None,
            kind: "parquet",
            message: format!("cannot decode row {}: {e}", self.row),
        })?;
        rec.clear();
        rec.set_line(self.row);
        for (i, (name, field)) in row.get_column_iter().enumerate() {
            self.buf.clear();
            write_field(field, &mut self.buf).map_err(|m| DataError {
                file: self.path.clone(),
                line: Some(self.row),
                column: Some((i + 1, name.clone())),
                kind: "parquet",
                message: m,
            })?;
            rec.push_field(&self.buf);
        }
        Ok(true)
    }
}

/// Rows decoded per column at a time.
const BLOCK: usize = 4096;

/// The column-wise reader: per column, a block of cells as text, exactly as `write_field`
/// writes the record API's fields for these types — or, for a column read only as a
/// number, as the number that text parses to (`typed`).
struct Columns {
    file: SerializedFileReader<Chunks>,
    /// Next row group to open.
    group: usize,
    /// Rows of the open row group not yet read.
    left: usize,
    cols: Vec<Column>,
    /// Rows in the current block, and the next one to hand out.
    len: usize,
    next: usize,
}

struct Column {
    name: String,
    kind: Kind,
    /// Not read: the config names no use of it, its cells stay empty.
    skip: bool,
    /// Read only as a number, of a type whose values convert to f64 exactly as their text
    /// parses: values come as numbers in `nums`, without text.
    typed: bool,
    max_def: i16,
    reader: Option<ColumnReader>,
    defs: Vec<i16>,
    /// The block's cells: `text[ends[r - 1]..ends[r]]`, or `nums[r]` when that is a number
    /// (typed columns; empty for the others).
    text: Vec<u8>,
    nums: Vec<Option<f64>>,
    ends: Vec<u32>,
    /// First row of the block whose string is not UTF-8.
    bad: Option<usize>,
    /// The block's text is all ASCII.
    ascii: bool,
}

/// How a column's values become text (the record API's `Field` for its converted type).
#[derive(Clone, Copy)]
enum Kind {
    Bool,
    I32,
    I8,
    I16,
    U8,
    U16,
    U32,
    I64,
    U64,
    F32,
    F64,
    Utf8,
    Bytes,
}

impl Columns {
    /// The reader back unless every top-level column is a plain, non-repeated value of a
    /// type the column path handles.
    #[allow(clippy::result_large_err)]
    fn new(
        file: SerializedFileReader<Chunks>,
        used: Option<&[ColumnUse]>,
    ) -> Result<Columns, SerializedFileReader<Chunks>> {
        let schema = file.metadata().file_metadata().schema_descr_ptr();
        let fields = schema.root_schema().get_fields();
        if fields.len() != schema.num_columns() {
            return Err(file);
        }
        let mut cols = Vec::with_capacity(fields.len());
        for (i, f) in fields.iter().enumerate() {
            let d = schema.column(i);
            if !f.is_primitive() || d.max_rep_level() != 0 || d.max_def_level() > 1 {
                return Err(file);
            }
            let kind = match (d.physical_type(), d.converted_type()) {
                (PhysicalType::BOOLEAN, _) => Kind::Bool,
                (
                    PhysicalType::INT32,
                    ConvertedType::NONE
                    | ConvertedType::INT_32
                    | ConvertedType::DATE
                    | ConvertedType::TIME_MILLIS,
                ) => Kind::I32,
                (PhysicalType::INT32, ConvertedType::INT_8) => Kind::I8,
                (PhysicalType::INT32, ConvertedType::INT_16) => Kind::I16,
                (PhysicalType::INT32, ConvertedType::UINT_8) => Kind::U8,
                (PhysicalType::INT32, ConvertedType::UINT_16) => Kind::U16,
                (PhysicalType::INT32, ConvertedType::UINT_32) => Kind::U32,
                (
                    PhysicalType::INT64,
                    ConvertedType::NONE
                    | ConvertedType::INT_64
                    | ConvertedType::TIME_MICROS
                    | ConvertedType::TIMESTAMP_MILLIS
                    | ConvertedType::TIMESTAMP_MICROS,
                ) => Kind::I64,
                (PhysicalType::INT64, ConvertedType::UINT_64) => Kind::U64,
                (PhysicalType::FLOAT, _) => Kind::F32,
                (PhysicalType::DOUBLE, _) => Kind::F64,
                (
                    PhysicalType::BYTE_ARRAY,
                    ConvertedType::UTF8 | ConvertedType::ENUM | ConvertedType::JSON,
                ) => Kind::Utf8,
                (PhysicalType::BYTE_ARRAY, ConvertedType::NONE | ConvertedType::BSON) => {
                    Kind::Bytes
                }
                _ => return Err(file),
            };
            let how = used.map_or(ColumnUse::Text, |u| {
                u.get(i).copied().unwrap_or(ColumnUse::Text)
            });
            // f32 stays text: its shortest text read as f64 is not the widened f32.
            let numeric = !matches!(kind, Kind::F32 | Kind::Utf8 | Kind::Bytes);
            cols.push(Column {
                name: f.name().to_string(),
                kind,
                skip: how == ColumnUse::Unused,
                typed: how == ColumnUse::Number && numeric,
                max_def: d.max_def_level(),
                reader: None,
                defs: Vec::new(),
                text: Vec::new(),
                nums: Vec::new(),
                ends: Vec::new(),
                bad: None,
                ascii: true,
            });
        }
        Ok(Columns {
            file,
            group: 0,
            left: 0,
            cols,
            len: 0,
            next: 0,
        })
    }

    /// Decodes the next block of rows. `Ok(false)` after the last row group.
    fn read_block(&mut self) -> parquet::errors::Result<bool> {
        while self.left == 0 {
            if self.group == self.file.num_row_groups() {
                return Ok(false);
            }
            let rg = self.file.get_row_group(self.group)?;
            self.left = rg.metadata().num_rows().max(0) as usize;
            for (i, c) in self.cols.iter_mut().enumerate() {
                if !c.skip {
                    c.reader = Some(rg.get_column_reader(i)?);
                }
            }
            self.group += 1;
        }
        let n = self.left.min(BLOCK);
        for c in &mut self.cols {
            c.read(n)?;
        }
        self.left -= n;
        self.len = n;
        self.next = 0;
        Ok(true)
    }
}

impl Column {
    /// Reads `n` rows of the open row group into text cells.
    fn read(&mut self, n: usize) -> parquet::errors::Result<()> {
        self.text.clear();
        self.ends.clear();
        self.nums.clear();
        self.bad = None;
        if self.skip {
            self.ends.resize(n, 0);
            self.ascii = true;
            return Ok(());
        }
        let reader = self.reader.as_mut().expect("a row group is open");
        match reader {
            ColumnReader::BoolColumnReader(r) => {
                let v = read_n(r, n, self.max_def, &mut self.defs)?;
                self.cells(
                    &v,
                    |x| Some(*x as u8 as f64),
                    |out, x| out.push(b'0' + *x as u8),
                );
            }
            ColumnReader::Int32ColumnReader(r) => {
                let v = read_n(r, n, self.max_def, &mut self.defs)?;
                match self.kind {
                    Kind::I8 => self.ints(&v, |x| *x as i8 as i64),
                    Kind::I16 => self.ints(&v, |x| *x as i16 as i64),
                    Kind::U8 => self.ints(&v, |x| *x as u8 as i64),
                    Kind::U16 => self.ints(&v, |x| *x as u16 as i64),
                    Kind::U32 => self.ints(&v, |x| *x as u32 as i64),
                    _ => self.ints(&v, |x| *x as i64),
                }
            }
            ColumnReader::Int64ColumnReader(r) => {
                let v = read_n(r, n, self.max_def, &mut self.defs)?;
                match self.kind {
                    Kind::U64 => self.cells(
                        &v,
                        |x| exact(*x as u64 as i128),
                        |o, x| {
                            let _ = write!(o, "{}", *x as u64);
                        },
                    ),
                    _ => self.ints(&v, |x| *x),
                }
            }
            ColumnReader::FloatColumnReader(r) => {
                let v = read_n(r, n, self.max_def, &mut self.defs)?;
                self.cells(
                    &v,
                    |_| None,
                    |o, x| {
                        let _ = write!(o, "{x}");
                    },
                );
            }
            ColumnReader::DoubleColumnReader(r) => {
                let v = read_n(r, n, self.max_def, &mut self.defs)?;
                // A double's shortest text parses back to it; NaN and infinities stay text
                // (the text path's error).
                self.cells(
                    &v,
                    |x| x.is_finite().then_some(*x),
                    |o, x| {
                        let _ = write!(o, "{x}");
                    },
                );
            }
            ColumnReader::ByteArrayColumnReader(r) => {
                let v = read_n(r, n, self.max_def, &mut self.defs)?;
                self.cells(&v, |_| None, |o, x| o.extend_from_slice(x.data()));
                if matches!(self.kind, Kind::Utf8) && !self.text.is_ascii() {
                    self.bad = (0..self.ends.len()).find(|&r| {
                        let a = if r == 0 { 0 } else { self.ends[r - 1] as usize };
                        std::str::from_utf8(&self.text[a..self.ends[r] as usize]).is_err()
                    });
                }
            }
            _ => unreachable!("only the kinds `Columns::new` accepts are read"),
        }
        self.ascii = self.text.is_ascii();
        Ok(())
    }

    /// Integers: text as `{x}` writes it, or the number for a typed column (up to 2^53
    /// in magnitude, where the f64 is the integer itself; beyond, text, so that a message
    /// shows the file's digits).
    fn ints<T>(&mut self, values: &[T], to_i64: impl Fn(&T) -> i64) {
        self.cells(
            values,
            |x| exact(to_i64(x) as i128),
            |o, x| int(o, to_i64(x)),
        );
    }

    /// Appends one cell per row: for a typed column, the number `num` gives when it gives
    /// one; else the value's text; nothing for a null.
    fn cells<T>(
        &mut self,
        values: &[T],
        num: impl Fn(&T) -> Option<f64>,
        mut put: impl FnMut(&mut Vec<u8>, &T),
    ) {
        let typed = self.typed;
        let mut one = |text: &mut Vec<u8>, nums: &mut Vec<Option<f64>>, x: Option<&T>| {
            let n = match x {
                Some(x) if typed => {
                    let n = num(x);
                    if n.is_none() {
                        put(text, x);
                    }
                    n
                }
                Some(x) => {
                    put(text, x);
                    None
                }
                None => None,
            };
            if typed {
                nums.push(n);
            }
        };
        if self.max_def == 0 {
            for x in values {
                one(&mut self.text, &mut self.nums, Some(x));
                self.ends.push(self.text.len() as u32);
            }
        } else {
            let mut it = values.iter();
            for &d in &self.defs {
                let x = if d == self.max_def {
                    Some(it.next().expect("one value per defined level"))
                } else {
                    None
                };
                one(&mut self.text, &mut self.nums, x);
                self.ends.push(self.text.len() as u32);
            }
        }
    }
}

/// Reads exactly `n` records of one column (fewer only if the row group ends early: an
/// error), with their definition levels when the column is optional.
fn read_n<T: parquet::data_type::DataType>(
    r: &mut ColumnReaderImpl<T>,
    n: usize,
    max_def: i16,
    defs: &mut Vec<i16>,
) -> parquet::errors::Result<Vec<T::T>> {
    let mut values = Vec::with_capacity(n);
    defs.clear();
    let mut got = 0;
    while got < n {
        let (records, _, _) = r.read_records(
            n - got,
            (max_def > 0).then_some(&mut *defs),
            None,
            &mut values,
        )?;
        if records == 0 {
            return Err(parquet::errors::ParquetError::General(format!(
                "a column chunk ends after {got} of {n} rows"
            )));
        }
        got += records;
    }
    Ok(values)
}

fn write_field(f: &Field, out: &mut Vec<u8>) -> Result<(), String> {
    let r = match f {
        Field::Null => Ok(()),
        Field::Bool(b) => write!(out, "{}", *b as u8),
        Field::Byte(x) => write!(out, "{x}"),
        Field::Short(x) => write!(out, "{x}"),
        Field::Int(x) => write!(out, "{x}"),
        Field::Long(x) => write!(out, "{x}"),
        Field::UByte(x) => write!(out, "{x}"),
        Field::UShort(x) => write!(out, "{x}"),
        Field::UInt(x) => write!(out, "{x}"),
        Field::ULong(x) => write!(out, "{x}"),
        Field::Float16(x) => write!(out, "{x}"),
        Field::Float(x) => write!(out, "{x}"),
        Field::Double(x) => write!(out, "{x}"),
        Field::Str(s) => {
            out.extend_from_slice(s.as_bytes());
            Ok(())
        }
        Field::Bytes(b) => {
            out.extend_from_slice(b.data());
            Ok(())
        }
        Field::Date(d) => write!(out, "{d}"),
        Field::TimeMillis(x) => write!(out, "{x}"),
        Field::TimeMicros(x) => write!(out, "{x}"),
        Field::TimestampMillis(x) => write!(out, "{x}"),
        Field::TimestampMicros(x) => write!(out, "{x}"),
        Field::ListInternal(list) => {
            for (k, e) in list.elements().iter().enumerate() {
                if k > 0 {
                    out.push(b',');
                }
                if matches!(
                    e,
                    Field::ListInternal(_) | Field::Group(_) | Field::MapInternal(_)
                ) {
                    return Err(
                        "nested lists, groups and maps are not supported as features".into(),
                    );
                }
                write_field(e, out)?;
            }
            Ok(())
        }
        Field::Decimal(_) | Field::Group(_) | Field::MapInternal(_) => return Err(
            "decimal, group and map columns are not supported; convert them to numbers or strings"
                .into(),
        ),
    };
    r.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::data_type::{
        BoolType, ByteArray, ByteArrayType, DoubleType, FloatType, Int32Type, Int64Type,
    };
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;
    use std::sync::Arc;

    const SCHEMA: &str = "message t {
        REQUIRED INT32 a (INT_8); OPTIONAL INT32 b (UINT_32); REQUIRED INT32 c (DATE);
        REQUIRED INT64 d; OPTIONAL INT64 e (UINT_64); REQUIRED BOOLEAN f;
        OPTIONAL FLOAT g; REQUIRED DOUBLE h; OPTIONAL BYTE_ARRAY i (UTF8);
        REQUIRED BYTE_ARRAY j; }";

    /// Two row groups (3000 and 2500 rows), every type the column path reads, nulls.
    fn write(path: &Path) {
        let schema = Arc::new(parse_message_type(SCHEMA).unwrap());
        let props = Arc::new(WriterProperties::builder().build());
        let mut w =
            SerializedFileWriter::new(std::fs::File::create(path).unwrap(), schema, props).unwrap();
        let mut rng = crate::SplitMix(3);
        for n in [3000usize, 2500] {
            let mut rg = w.next_row_group().unwrap();
            let mut idx = 0;
            let defs: Vec<i16> = (0..n).map(|_| (rng.below(4) != 0) as i16).collect();
            let k = defs.iter().filter(|&&d| d == 1).count();
            let mut ints = |m: usize, signed: bool| -> Vec<i64> {
                (0..m)
                    .map(|_| {
                        let x = rng.next_u64() >> rng.below(64);
                        if signed {
                            x as i64
                        } else {
                            x as i64 & i64::MAX
                        }
                    })
                    .collect()
            };
            let (i32s, i64s) = (ints(n, true), ints(n, true));
            while let Some(mut col) = rg.next_column().unwrap() {
                match idx {
                    0 => {
                        let v: Vec<i32> = i32s.iter().map(|x| *x as i8 as i32).collect();
                        col.typed::<Int32Type>()
                            .write_batch(&v, None, None)
                            .unwrap();
                    }
                    1 => {
                        let v: Vec<i32> = i32s[..k].iter().map(|x| *x as i32).collect();
                        col.typed::<Int32Type>()
                            .write_batch(&v, Some(&defs), None)
                            .unwrap();
                    }
                    2 => {
                        let v: Vec<i32> = i32s.iter().map(|x| (*x % 30000) as i32).collect();
                        col.typed::<Int32Type>()
                            .write_batch(&v, None, None)
                            .unwrap();
                    }
                    3 => {
                        col.typed::<Int64Type>()
                            .write_batch(&i64s, None, None)
                            .unwrap();
                    }
                    4 => {
                        col.typed::<Int64Type>()
                            .write_batch(&i64s[..k], Some(&defs), None)
                            .unwrap();
                    }
                    5 => {
                        let v: Vec<bool> = i64s.iter().map(|x| x & 1 == 1).collect();
                        col.typed::<BoolType>().write_batch(&v, None, None).unwrap();
                    }
                    6 => {
                        let v: Vec<f32> = i64s[..k].iter().map(|x| *x as f32 / 7e9).collect();
                        col.typed::<FloatType>()
                            .write_batch(&v, Some(&defs), None)
                            .unwrap();
                    }
                    7 => {
                        let v: Vec<f64> = i64s.iter().map(|x| *x as f64 / 3e7).collect();
                        col.typed::<DoubleType>()
                            .write_batch(&v, None, None)
                            .unwrap();
                    }
                    8 => {
                        let v: Vec<ByteArray> = i32s[..k]
                            .iter()
                            .map(|x| ByteArray::from(format!("s{}é,", x % 97).as_str()))
                            .collect();
                        col.typed::<ByteArrayType>()
                            .write_batch(&v, Some(&defs), None)
                            .unwrap();
                    }
                    _ => {
                        let v: Vec<ByteArray> = i64s
                            .iter()
                            .map(|x| ByteArray::from(x.to_le_bytes()[..(*x as usize % 5)].to_vec()))
                            .collect();
                        col.typed::<ByteArrayType>()
                            .write_batch(&v, None, None)
                            .unwrap();
                    }
                }
                col.close().unwrap();
                idx += 1;
            }
            rg.close().unwrap();
        }
        w.close().unwrap();
    }

    fn all(mut rows: ParquetRows) -> Vec<Record> {
        let mut out = Vec::new();
        let mut rec = Record::new();
        while rows.next_into(&mut rec).unwrap() {
            out.push(rec.clone());
        }
        out
    }

    #[test]
    fn column_path_reads_what_the_record_api_reads() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("t.parquet");
        write(&path);
        let fast = ParquetRows::open(&path, None).unwrap();
        assert!(matches!(fast.rows, Rows::Columns(_)));
        let slow = ParquetRows {
            path: path.clone(),
            rows: Rows::Records(RowIter::from_file_into(Box::new(open(&path).unwrap()))),
            row: 0,
            buf: Vec::new(),
        };
        let (a, b) = (all(fast), all(slow));
        assert_eq!(a.len(), 5500);
        assert_eq!(a, b);
        assert!(a.iter().any(|r| r[1].is_empty()) && a.iter().any(|r| !r[8].is_empty()));
    }

    #[cfg(feature = "s3")]
    #[test]
    fn an_object_reads_as_its_local_copy() {
        use crate::store::remote::{put, register};
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("t.parquet");
        write(&path);
        register(
            "mem-pq",
            std::sync::Arc::new(object_store::memory::InMemory::new()),
        );
        put("mem-pq", "d/t.parquet", std::fs::read(&path).unwrap());
        let url = Path::new("s3://mem-pq/d/t.parquet");
        assert!(crate::store::starts_with(url, b"PAR1"));
        assert_eq!(header(url).unwrap(), header(&path).unwrap());
        let used: Vec<ColumnUse> = (0..header(&path).unwrap().len())
            .map(|i| [ColumnUse::Unused, ColumnUse::Text, ColumnUse::Number][i % 3])
            .collect();
        for uses in [None, Some(&used[..])] {
            let (a, b) = (
                all(ParquetRows::open(url, uses).unwrap()),
                all(ParquetRows::open(&path, uses).unwrap()),
            );
            assert_eq!(a.len(), 5500);
            assert_eq!(a, b);
        }
        // The footer and the column chunks come in a window or two, not one request each.
        let ranges =
            crate::store::remote::Ranges::new(crate::store::remote::Object::head(url).unwrap());
        let counter = ranges.fetches.clone();
        let file = SerializedFileReader::new(Chunks::Object(std::sync::Arc::new(ranges))).unwrap();
        let n_chunks: usize = (0..file.num_row_groups())
            .map(|i| file.metadata().row_group(i).num_columns())
            .sum();
        let mut rows = file.get_row_iter(None).unwrap();
        while rows.next().is_some() {}
        let fetches = counter.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            n_chunks >= 8 && fetches <= 3,
            "{fetches} requests for {n_chunks} chunks"
        );
    }

    #[test]
    fn unused_columns_are_empty_and_used_ones_unchanged() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("t.parquet");
        write(&path);
        let full = all(ParquetRows::open(&path, None).unwrap());
        let n = full[0].len();
        let used: Vec<bool> = (0..n).map(|i| i % 3 == 1).collect();
        let uses: Vec<ColumnUse> = used
            .iter()
            .map(|&u| {
                if u {
                    ColumnUse::Text
                } else {
                    ColumnUse::Unused
                }
            })
            .collect();
        let part = all(ParquetRows::open(&path, Some(&uses)).unwrap());
        assert_eq!(part.len(), full.len());
        for (a, b) in part.iter().zip(&full) {
            assert_eq!(a.len(), n);
            assert_eq!(a.line(), b.line());
            for (i, &u) in used.iter().enumerate() {
                if u {
                    assert_eq!(&a[i], &b[i], "column {i}");
                } else {
                    assert!(a[i].is_empty(), "column {i} was read");
                }
            }
        }
    }

    #[test]
    fn typed_columns_carry_the_numbers_their_text_parses_to() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("t.parquet");
        write(&path);
        let full = all(ParquetRows::open(&path, None).unwrap());
        let n = full[0].len();
        let used = vec![ColumnUse::Number; n];
        let typed = all(ParquetRows::open(&path, Some(&used)).unwrap());
        assert_eq!(typed.len(), full.len());
        // Integer, date, unsigned, boolean and double columns come as numbers; f32, strings
        // and bytes as text.
        let numeric = [
            true, true, true, true, true, true, false, true, false, false,
        ];
        assert_eq!(numeric.len(), n);
        let (mut numbers, mut bigs) = (0, 0);
        for (a, b) in typed.iter().zip(&full) {
            for i in 0..n {
                match a.num(i) {
                    Some(x) => {
                        assert!(numeric[i], "column {i} came as a number");
                        assert!(a[i].is_empty());
                        let y = crate::number::parse_f64(&b[i]).expect("a number's text");
                        assert_eq!(x.to_bits(), y.to_bits(), "column {i}: {x} against `{y}`");
                        numbers += 1;
                    }
                    None => {
                        assert_eq!(&a[i], &b[i], "column {i}");
                        // Beyond 2^53 an integer stays text (its digits, for messages).
                        let big = crate::number::parse_f64(&b[i])
                            .is_some_and(|y| y.abs() > 9007199254740992.0);
                        assert!(
                            !numeric[i] || b[i].is_empty() || big,
                            "column {i} came as text"
                        );
                        bigs += big as usize;
                    }
                }
            }
        }
        assert!(
            numbers > 4 * 5500 && bigs > 100,
            "{numbers} typed cells, {bigs} big"
        );
    }
}
