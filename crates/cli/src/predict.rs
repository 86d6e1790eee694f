//! `mfh predict --data FILES`: scores every row of raw files (no labels, no splits)
//! through the request decoder, as the server and the Python package score rows, and
//! writes the row index, the `--keep` columns, the cell and a score per behaviour as CSV
//! or Parquet, through a temporary file renamed into place.

use anyhow::{bail, Context, Result};
use mfh_artifact::load_model;
use mfh_config::Threads;
use mfh_data::{RawChunk, RawRows, RequestDecoder, SourceFiles};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Rows decoded and scored at once.
const CHUNK: usize = 4096;

/// One chunk's output columns.
pub(crate) struct Columns<'a> {
    pub first_row: u64,
    pub keep: Vec<Vec<Option<&'a [u8]>>>,
    pub cells: Vec<&'a str>,
    /// rows × behaviours.
    pub preds: &'a [f32],
}

pub(crate) fn predict_files(
    model_dir: &Path,
    files: Vec<PathBuf>,
    keep: &[String],
    out: &Path,
    threads: Option<Threads>,
) -> Result<u64> {
    let mut m = load_model(model_dir)?;
    let decoder = RequestDecoder::new(Arc::new(m.serving_pipeline()?));
    mfh_nn::use_threads(threads.unwrap_or(m.config.train.threads).resolve());
    // Files under partition folders (`date=…/`) carry the partition columns the model
    // was trained with, as its sources did.
    let src = SourceFiles::with_partitions(files, &m.config.data.partitions)?;
    let mut rows = RawRows::open_sources(&src, &m.config.data.csv)?;
    let keep_idx: Vec<usize> = keep
        .iter()
        .map(|k| {
            rows.header().iter().position(|h| h == k).with_context(|| {
                format!(
                    "--keep: no column `{k}` in the data (it has: {})",
                    rows.header().join(", ")
                )
            })
        })
        .collect::<Result<_>>()?;
    let grid = m.state.grid.clone();
    let cell_names = grid.cell_names();
    let mut header: Vec<String> = vec!["row".into()];
    header.extend(keep.iter().cloned());
    header.push("cell".into());
    header.extend(grid.behaviours.iter().map(|b| format!("{b}_pred")));
    let part = part_path(out)?;
    let parquet = out.extension().is_some_and(|e| e == "parquet");
    let mut w = Writer::create(&part, parquet, &header, keep.len(), grid.behaviours.len())?;
    let mut chunk = RawChunk::default();
    let (mut preds, mut total) = (Vec::new(), 0u64);
    while rows.next_chunk(CHUNK, &mut chunk)? > 0 {
        let mut batch = decoder.batch();
        if let Err(e) = decoder.decode_table(&chunk, &mut batch) {
            let (path, line) = rows.place(&chunk, e.row);
            bail!("{}:{line}: {}", path.display(), e.message);
        }
        let logits = m.state.forward(&mut batch).to_vec();
        m.state.loss.predict(&logits, &batch.cells, &mut preds);
        let n = batch.n;
        let cols = Columns {
            first_row: chunk.first_row,
            keep: keep_idx
                .iter()
                .map(|&c| {
                    (0..n)
                        .map(|r| Some(chunk.cell(r, c)).filter(|v| !v.is_empty()))
                        .collect()
                })
                .collect(),
            cells: batch
                .cells
                .iter()
                .map(|&c| cell_names[c as usize].as_str())
                .collect(),
            preds: &preds,
        };
        w.write(&cols)?;
        total += n as u64;
    }
    w.finish()?;
    std::fs::rename(&part, out)
        .with_context(|| format!("{}: cannot rename into place", out.display()))?;
    Ok(total)
}

/// `out`'s temporary name beside it.
fn part_path(out: &Path) -> Result<PathBuf> {
    let name = out
        .file_name()
        .with_context(|| format!("{}: not a file name", out.display()))?;
    Ok(out.with_file_name(format!(".{}.part", name.to_string_lossy())))
}

enum Writer {
    Csv(std::io::BufWriter<std::fs::File>, usize),
    #[cfg(feature = "parquet")]
    Parquet(crate::predict_parquet::ParquetOut),
}

impl Writer {
    #[cfg_attr(not(feature = "parquet"), allow(unused_variables))]
    fn create(
        path: &Path,
        parquet: bool,
        header: &[String],
        n_keep: usize,
        nb: usize,
    ) -> Result<Writer> {
        if parquet {
            #[cfg(feature = "parquet")]
            return Ok(Writer::Parquet(crate::predict_parquet::ParquetOut::create(
                path, header, n_keep, nb,
            )?));
            #[cfg(not(feature = "parquet"))]
            bail!("Parquet output needs a build with the `parquet` feature (cargo build --features mfh/parquet); or write .csv");
        }
        let f = std::fs::File::create(path)
            .with_context(|| format!("{}: cannot create", path.display()))?;
        let mut w = std::io::BufWriter::new(f);
        let quoted: Vec<String> = header.iter().map(|h| csv_field(h.as_bytes())).collect();
        writeln!(w, "{}", quoted.join(","))?;
        Ok(Writer::Csv(w, nb))
    }

    fn write(&mut self, c: &Columns) -> Result<()> {
        match self {
            Writer::Csv(w, nb) => {
                for r in 0..c.cells.len() {
                    write!(w, "{}", c.first_row + r as u64)?;
                    for k in &c.keep {
                        write!(w, ",{}", csv_field(k[r].unwrap_or(b"")))?;
                    }
                    write!(w, ",{}", csv_field(c.cells[r].as_bytes()))?;
                    for b in 0..*nb {
                        write!(w, ",{}", c.preds[r * *nb + b])?;
                    }
                    writeln!(w)?;
                }
                Ok(())
            }
            #[cfg(feature = "parquet")]
            Writer::Parquet(p) => p.write(c.first_row, &c.keep, &c.cells, c.preds),
        }
    }

    fn finish(self) -> Result<()> {
        match self {
            Writer::Csv(w, _) => {
                let f = w.into_inner().map_err(|e| e.into_error())?;
                f.sync_all()?;
                Ok(())
            }
            #[cfg(feature = "parquet")]
            Writer::Parquet(p) => p.finish(),
        }
    }
}

/// A CSV cell: quoted when it holds a comma, a quote or a line break.
fn csv_field(v: &[u8]) -> String {
    let s = String::from_utf8_lossy(v);
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.into_owned()
    }
}
