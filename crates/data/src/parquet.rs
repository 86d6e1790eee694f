//! Parquet sources (cargo feature `parquet`): rows are read with the parquet crate's record
//! reader and turned into the same text cells a CSV row has, so that every later stage
//! (missing tokens, hashing, parsing, errors) behaves identically for both formats. A list
//! column becomes a comma-separated cell, ready for a `multi` feature. Errors give the
//! 1-based row number where CSV errors give the line.

use crate::error::DataError;
use crate::record::Record;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::reader::RowIter;
use parquet::record::Field;
use std::io::Write;
use std::path::{Path, PathBuf};

fn open(path: &Path) -> Result<SerializedFileReader<std::fs::File>, DataError> {
    let f = std::fs::File::open(path)
        .map_err(|e| DataError::file(path, "io", format!("cannot open: {e}")))?;
    SerializedFileReader::new(f)
        .map_err(|e| DataError::file(path, "parquet", format!("not a readable Parquet file: {e}")))
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
    iter: RowIter<'static>,
    pub row: u64,
    buf: Vec<u8>,
}

impl ParquetRows {
    pub fn open(path: &Path) -> Result<ParquetRows, DataError> {
        let r = open(path)?;
        let iter = RowIter::from_file_into(Box::new(r));
        Ok(ParquetRows {
            path: path.to_path_buf(),
            iter,
            row: 0,
            buf: Vec::new(),
        })
    }

    /// Reads the next row into `rec` as text cells. `Ok(false)` at the end.
    pub fn next_into(&mut self, rec: &mut Record) -> Result<bool, DataError> {
        let Some(row) = self.iter.next() else {
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
