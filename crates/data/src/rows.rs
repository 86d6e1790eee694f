//! Raw rows from delimited files: plain or gzip (detected by content), with or without a
//! header, several files read as one table. Each row keeps its file and line so that any
//! later error can say where it came from.

use crate::error::DataError;
use crate::record::{ColumnUse, CsvSource, Record};
use mfh_config::CsvOptions;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// Opens a file for reading, transparently gunzipping it.
pub(crate) fn open_maybe_gz(path: &Path) -> Result<Box<dyn Read + Send>, DataError> {
    let mut f = crate::store::open(path)?;
    let mut magic = [0u8; 2];
    let mut got = 0;
    while got < 2 {
        match f.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) => return Err(DataError::file(path, "io", format!("cannot read: {e}"))),
        }
    }
    let head = std::io::Cursor::new(magic[..got].to_vec());
    let chained = head.chain(f);
    if got == 2 && magic == [0x1f, 0x8b] {
        Ok(Box::new(BufReader::with_capacity(
            1 << 16,
            flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 16, chained)),
        )))
    } else {
        Ok(Box::new(BufReader::with_capacity(1 << 16, chained)))
    }
}

pub(crate) fn csv_reader(
    r: Box<dyn Read + Send>,
    opts: &CsvOptions,
) -> csv::Reader<Box<dyn Read + Send>> {
    csv::ReaderBuilder::new()
        .delimiter(opts.delimiter.as_bytes()[0])
        .has_headers(false)
        .flexible(true)
        .trim(if opts.trim {
            csv::Trim::All
        } else {
            csv::Trim::None
        })
        .buffer_capacity(1 << 16)
        .from_reader(Box::new(CrlfToLf::new(r)) as Box<dyn Read + Send>)
}

/// Turns CRLF line ends into LF before the CSV parser sees them: the parser's line
/// numbers lag behind on CRLF files, and errors must name the right line.
struct CrlfToLf<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// A `\r` held back from the previous chunk (it may precede a `\n`).
    pending_cr: bool,
}

impl<R: Read> CrlfToLf<R> {
    fn new(inner: R) -> Self {
        CrlfToLf {
            inner,
            buf: vec![0; 1 << 16],
            start: 0,
            end: 0,
            pending_cr: false,
        }
    }
}

impl<R: Read> Read for CrlfToLf<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.start < self.end {
                let mut w = 0;
                while self.start < self.end && w < out.len() {
                    let b = self.buf[self.start];
                    if self.pending_cr {
                        self.pending_cr = false;
                        if b != b'\n' {
                            out[w] = b'\r';
                            w += 1;
                            continue;
                        }
                    }
                    if b == b'\r' {
                        self.pending_cr = true;
                        self.start += 1;
                        continue;
                    }
                    out[w] = b;
                    w += 1;
                    self.start += 1;
                }
                if w > 0 {
                    return Ok(w);
                }
                continue;
            }
            let n = self.inner.read(&mut self.buf)?;
            if n == 0 {
                if self.pending_cr && !out.is_empty() {
                    self.pending_cr = false;
                    out[0] = b'\r';
                    return Ok(1);
                }
                return Ok(0);
            }
            self.start = 0;
            self.end = n;
        }
    }
}

/// A read error of the fast reader: a broken gzip stream, or an I/O error.
pub(crate) fn io_error(path: &Path, io: std::io::Error) -> DataError {
    let gz = io.kind() == std::io::ErrorKind::UnexpectedEof
        || io.to_string().contains("corrupt deflate")
        || io.to_string().contains("invalid gzip");
    if gz {
        DataError::file(
            path,
            "gzip",
            format!("truncated or corrupt compressed data: {io}"),
        )
    } else {
        DataError::file(path, "io", format!("read error: {io}"))
    }
}

/// Turns a csv crate error into ours, keeping the position.
pub(crate) fn csv_error(path: &Path, e: csv::Error) -> DataError {
    let line = e.position().map(|p| p.line());
    let (kind, msg) = match e.kind() {
        csv::ErrorKind::Io(io) => {
            let gz = io.kind() == std::io::ErrorKind::UnexpectedEof
                || io.to_string().contains("corrupt deflate")
                || io.to_string().contains("invalid gzip");
            if gz {
                (
                    "gzip",
                    format!("truncated or corrupt compressed data: {io}"),
                )
            } else {
                ("io", format!("read error: {io}"))
            }
        }
        _ => ("csv", format!("malformed CSV: {e}")),
    };
    DataError {
        file: path.to_path_buf(),
        line,
        column: None,
        kind,
        message: msg,
    }
}

/// Whether a file starts with Parquet's magic bytes.
pub(crate) fn is_parquet(path: &Path) -> bool {
    crate::store::starts_with(path, b"PAR1")
}

#[cfg(not(feature = "parquet"))]
fn no_parquet(path: &Path) -> DataError {
    DataError::file(path, "io", "is a Parquet file, but this mfh was built without Parquet support (build with `--features parquet`)")
}

/// Reads the column names of a file: its header, or the configured names.
pub(crate) fn read_header(path: &Path, opts: &CsvOptions) -> Result<Vec<String>, DataError> {
    if is_parquet(path) {
        #[cfg(feature = "parquet")]
        return crate::parquet::header(path);
        #[cfg(not(feature = "parquet"))]
        return Err(no_parquet(path));
    }
    if !opts.header {
        // Still open it, so a missing file fails here rather than mid-training.
        open_maybe_gz(path)?;
        return Ok(opts.columns.clone());
    }
    let mut src = CsvSource::new(open_maybe_gz(path)?, opts);
    let mut rec = Record::new();
    match src.read_record(&mut rec) {
        Ok(true) => {}
        Ok(false) => {
            return Err(DataError::file(
                path,
                "empty",
                "the file is empty: no header line",
            ))
        }
        Err(e) => return Err(io_error(path, e)),
    }
    let mut names = Vec::with_capacity(rec.len());
    for (i, field) in rec.iter().enumerate() {
        let field = if i == 0 {
            field.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(field)
        } else {
            field
        };
        let name = std::str::from_utf8(field).map_err(|_| DataError {
            file: path.to_path_buf(),
            line: Some(1),
            column: Some((i + 1, String::new())),
            kind: "utf8",
            message: "the header is not valid UTF-8".into(),
        })?;
        let name = name.trim().to_string();
        if name.is_empty() {
            return Err(DataError {
                file: path.to_path_buf(),
                line: Some(1),
                column: Some((i + 1, String::new())),
                kind: "header",
                message: "empty column name in the header".into(),
            });
        }
        if names.contains(&name) {
            return Err(DataError {
                file: path.to_path_buf(),
                line: Some(1),
                column: Some((i + 1, name.clone())),
                kind: "header",
                message: format!("column `{name}` appears twice in the header"),
            });
        }
        names.push(name);
    }
    Ok(names)
}

/// Reads the data rows of several files in order, as one table.
pub(crate) struct RowReader {
    files: Vec<PathBuf>,
    opts: CsvOptions,
    /// Cells each file's rows hold (partition values come after them).
    n_columns: usize,
    /// Per file, the partition values appended to each of its rows (none when empty).
    partitions: Vec<Vec<Option<Vec<u8>>>>,
    /// Files opened so far.
    pub files_opened: u64,
    /// The files' columns a pass needs (`None`: all); a column format reads only these.
    used: Option<Vec<ColumnUse>>,
    next_file: usize,
    current: Option<Source>,
    /// Data-row index over all files (0-based).
    pub row_index: u64,
    pub file_idx: usize,
    pub record: Record,
}

impl RowReader {
    pub fn new(files: Vec<PathBuf>, opts: CsvOptions, n_columns: usize) -> RowReader {
        RowReader {
            files,
            opts,
            n_columns,
            partitions: Vec::new(),
            files_opened: 0,
            used: None,
            next_file: 0,
            current: None,
            row_index: 0,
            file_idx: 0,
            record: Record::new(),
        }
    }

    /// Each row of file `f` followed by `partitions[f]` (a null partition as the first of
    /// `opts.missing`; none when `partitions` is empty). Of the files' own columns, only
    /// those `used` marks are decoded from a Parquet file (the others' cells are empty);
    /// CSV rows are split whole either way.
    pub fn with_partitions(
        mut self,
        partitions: Vec<Vec<Option<Vec<u8>>>>,
        used: Option<Vec<ColumnUse>>,
    ) -> RowReader {
        self.partitions = partitions;
        self.used = used;
        self
    }

    pub fn path(&self) -> &Path {
        &self.files[self.file_idx]
    }

    /// The line of the current row (for Parquet files: its 1-based row number).
    pub fn line(&self) -> u64 {
        self.record.line()
    }

    /// Advances to the next data row. `Ok(false)` at the end of the last file. A row with
    /// the wrong number of cells is returned as an error (the reader stays usable).
    pub fn advance(&mut self) -> Result<bool, DataError> {
        loop {
            if self.current.is_none() {
                if self.next_file == self.files.len() {
                    return Ok(false);
                }
                self.file_idx = self.next_file;
                self.next_file += 1;
                self.files_opened += 1;
                let path = &self.files[self.file_idx];
                if is_parquet(path) {
                    #[cfg(feature = "parquet")]
                    {
                        self.current = Some(Source::Parquet(crate::parquet::ParquetRows::open(
                            path,
                            self.used.as_deref(),
                        )?));
                        continue;
                    }
                    #[cfg(not(feature = "parquet"))]
                    return Err(no_parquet(path));
                }
                let mut src = CsvSource::new(open_maybe_gz(path)?, &self.opts);
                if self.opts.header {
                    let mut h = Record::new();
                    match src.read_record(&mut h) {
                        Ok(true) => {}
                        Ok(false) => {
                            return Err(DataError::file(
                                path,
                                "empty",
                                "the file is empty: no header line",
                            ))
                        }
                        Err(e) => return Err(io_error(path, e)),
                    }
                }
                self.current = Some(Source::Csv(Box::new(src)));
            }
            let next = match self.current.as_mut().unwrap() {
                Source::Csv(src) => src
                    .read_record(&mut self.record)
                    .map_err(|e| io_error(&self.files[self.file_idx], e)),
                #[cfg(feature = "parquet")]
                Source::Parquet(pq) => pq.next_into(&mut self.record),
            };
            match next {
                Ok(true) => {
                    // A blank line at the end of a file is not a row.
                    if self.record.len() == 1 && self.record[0].is_empty() && self.n_columns > 1 {
                        continue;
                    }
                    let idx = self.row_index;
                    self.row_index += 1;
                    if self.record.len() != self.n_columns {
                        return Err(DataError {
                            file: self.files[self.file_idx].clone(),
                            line: Some(self.line()),
                            column: Some((
                                self.record.len().min(self.n_columns) + 1,
                                String::new(),
                            )),
                            kind: "wrong column count",
                            message: format!(
                                "row {} has {} cells, the header has {}",
                                idx,
                                self.record.len(),
                                self.n_columns
                            ),
                        });
                    }
                    if let Some(values) = self.partitions.get(self.file_idx) {
                        let null = self.opts.missing.first().map_or(&[][..], |m| m.as_bytes());
                        for v in values {
                            self.record.push_field(v.as_deref().unwrap_or(null));
                        }
                    }
                    return Ok(true);
                }
                Ok(false) => {
                    self.current = None;
                }
                Err(err) => {
                    self.current = None;
                    self.next_file = self.files.len();
                    return Err(err);
                }
            }
        }
    }
}

enum Source {
    Csv(Box<CsvSource>),
    #[cfg(feature = "parquet")]
    Parquet(crate::parquet::ParquetRows),
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn crlf_becomes_lf_and_lone_cr_survives() {
        for chunk in [1usize, 2, 3, 64] {
            let data = b"a,b\r\nc\rd\r\n\r\ne\r".to_vec();
            let mut r = CrlfToLf::new(data.as_slice());
            r.buf = vec![0; chunk];
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out, b"a,b\nc\rd\n\ne\r", "chunk {chunk}");
        }
    }
}
