//! Files read as they are, without splits or labels: the rows `mfh predict --data`
//! scores. Chunks of rows are [`RowTable`]s, so that the request decoder reads them as it
//! reads a Python caller's tables (side tables joined, missing inputs filled), and each
//! row keeps its file and line for errors and its cells for `--keep`.

use crate::error::DataError;
use crate::memory::{Cells, RowTable};
use crate::record::Record;
use crate::rows::RowReader;
use crate::sources::SourceFiles;
use mfh_config::CsvOptions;
use std::path::{Path, PathBuf};

/// The rows of several files with one header, in order.
pub struct RawRows {
    reader: RowReader,
    files: Vec<PathBuf>,
    header: Vec<String>,
}

/// Up to a chunk's worth of rows.
#[derive(Default)]
pub struct RawChunk {
    columns: Vec<String>,
    recs: Vec<Record>,
    /// Per row: index of its file, and its line (Parquet: 1-based row).
    places: Vec<(usize, u64)>,
    n: usize,
    /// 0-based index of the chunk's first row over all files.
    pub first_row: u64,
}

impl RawRows {
    /// Opens the files of `src` (CSV, gzip CSV or Parquet), which must share one header;
    /// each row is followed by its file's partition values (columns named after the
    /// partitions).
    pub fn open_sources(src: &SourceFiles, opts: &CsvOptions) -> Result<RawRows, DataError> {
        let files = src.files.clone();
        let (header, own) = src.header(opts)?;
        Ok(RawRows {
            reader: src.reader(opts.clone(), own, None),
            files,
            header,
        })
    }

    pub fn header(&self) -> &[String] {
        &self.header
    }

    /// Reads up to `max` rows into `chunk`; returns how many (0 at the end).
    pub fn next_chunk(&mut self, max: usize, chunk: &mut RawChunk) -> Result<usize, DataError> {
        chunk.columns.clone_from(&self.header);
        chunk.first_row = self.reader.row_index;
        chunk.places.clear();
        chunk.n = 0;
        while chunk.n < max && self.reader.advance()? {
            if chunk.recs.len() == chunk.n {
                chunk.recs.push(Record::new());
            }
            chunk.recs[chunk.n].copy_from(&self.reader.record);
            chunk
                .places
                .push((self.reader.file_idx, self.reader.line()));
            chunk.n += 1;
        }
        Ok(chunk.n)
    }

    /// The file and line of row `i` of `chunk`.
    pub fn place<'a>(&'a self, chunk: &RawChunk, i: usize) -> (&'a Path, u64) {
        let (f, line) = chunk.places[i];
        (&self.files[f], line)
    }
}

impl RawChunk {
    /// Cell `col` of row `row`.
    pub fn cell(&self, row: usize, col: usize) -> &[u8] {
        &self.recs[row][col]
    }
}

impl RowTable for RawChunk {
    fn columns(&self) -> &[String] {
        &self.columns
    }

    fn rows(&self) -> u64 {
        self.n as u64
    }

    fn read(&self, i: u64, _missing: &[u8], cells: &mut Cells) -> Result<(), (usize, String)> {
        for c in self.recs[i as usize].iter() {
            cells.push(c);
        }
        Ok(())
    }
}
