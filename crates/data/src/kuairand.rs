//! `mfh prepare kuairand`: builds the KuaiRand training table from the raw files and writes
//! a ready config beside it.
//!
//! The item facet needs each video's impressions on strictly earlier dates, so the logs
//! (the raw one, then any `--extra-log` files, in time order) are read twice: once to count
//! impressions per (video, date), once to write the rows with the count attached. The first
//! three dates only warm up those counts and are not written. The user and video tables are
//! copied (gzipped) and joined at read time as side tables.
//!
//! Data: KuaiRand (Gao et al., CIKM 2022), CC BY-SA 4.0.

use crate::error::DataError;
use crate::rows::{csv_error, csv_reader, open_maybe_gz, read_header};
use mfh_config::CsvOptions;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Dates before this only count impressions.
pub const FIRST_TRAIN_DATE: u32 = 20220428;
/// Columns that must never be inputs: outcomes of the impression.
pub const OUTCOME_COLUMNS: &[&str] = &[
    "is_click",
    "is_like",
    "is_follow",
    "is_comment",
    "is_forward",
    "is_hate",
    "long_view",
    "play_time_ms",
    "profile_stay_time",
    "comment_stay_time",
    "is_profile_enter",
];
const REQUIRED: &[&str] = &[
    "user_id",
    "video_id",
    "date",
    "hourmin",
    "tab",
    "is_click",
    "is_like",
    "long_view",
    "play_time_ms",
    "duration_ms",
];

#[derive(Debug, Clone)]
pub struct PrepareOptions {
    pub raw: PathBuf,
    pub extra_logs: Vec<PathBuf>,
    pub out: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PrepareReport {
    pub rows_read: u64,
    pub rows_written: u64,
    /// (date, rows) written, in date order.
    pub rows_by_date: Vec<(u32, u64)>,
    pub config: PathBuf,
}

fn find(dir: &Path, stem: &str) -> Result<PathBuf, DataError> {
    for ext in ["", ".gz"] {
        let p = dir.join(format!("{stem}{ext}"));
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(DataError::file(
        dir,
        "io",
        format!("no {stem} (or {stem}.gz) in this folder"),
    ))
}

/// The raw log files of a KuaiRand folder, in name (= time) order.
fn raw_logs(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| DataError::file(dir, "io", format!("cannot list: {e}")))?;
    let mut logs: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with("log_") && (n.ends_with(".csv") || n.ends_with(".csv.gz"))
            })
        })
        .collect();
    logs.sort();
    if logs.is_empty() {
        return Err(DataError::file(
            dir,
            "io",
            "no log_*.csv or log_*.csv.gz file in this folder",
        ));
    }
    Ok(logs)
}

/// Calls `f(file, line, record)` for every data row of the logs.
fn each_row(
    logs: &[PathBuf],
    header: &[String],
    mut f: impl FnMut(&Path, u64, &csv::ByteRecord) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let opts = CsvOptions::default();
    for path in logs {
        let h = read_header(path, &opts)?;
        if h != header {
            return Err(DataError::file(
                path,
                "header",
                format!("its header differs from {}", logs[0].display()),
            ));
        }
        let mut rdr = csv_reader(open_maybe_gz(path)?, &opts);
        let mut rec = csv::ByteRecord::new();
        rdr.read_byte_record(&mut rec)
            .map_err(|e| csv_error(path, e))?;
        loop {
            match rdr.read_byte_record(&mut rec) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return Err(csv_error(path, e)),
            }
            if rec.len() == 1 && rec[0].is_empty() {
                continue;
            }
            let line = rec.position().map(|p| p.line()).unwrap_or(0);
            if rec.len() != header.len() {
                return Err(DataError {
                    file: path.clone(),
                    line: Some(line),
                    column: Some((rec.len().min(header.len()) + 1, String::new())),
                    kind: "wrong column count",
                    message: format!("{} cells, the header has {}", rec.len(), header.len()),
                });
            }
            f(path, line, &rec)?;
        }
    }
    Ok(())
}

fn int_at(
    path: &Path,
    line: u64,
    rec: &csv::ByteRecord,
    col: usize,
    name: &str,
) -> Result<u64, DataError> {
    std::str::from_utf8(&rec[col])
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .ok_or_else(|| DataError {
            file: path.to_path_buf(),
            line: Some(line),
            column: Some((col + 1, name.to_string())),
            kind: "not a number",
            message: format!(
                "`{}` is not a non-negative integer",
                crate::error::preview(&rec[col])
            ),
        })
}

pub fn prepare(opts: &PrepareOptions) -> Result<PrepareReport, DataError> {
    let mut logs = raw_logs(&opts.raw)?;
    logs.extend(opts.extra_logs.iter().cloned());
    let users = find(&opts.raw, "user_features_pure.csv")?;
    let videos = find(&opts.raw, "video_features_basic_pure.csv")?;
    let header = read_header(&logs[0], &CsvOptions::default())?;
    for r in REQUIRED {
        if !header.iter().any(|h| h == r) {
            return Err(DataError::file(
                &logs[0],
                "header",
                format!("the log has no `{r}` column"),
            ));
        }
    }
    let col = |n: &str| header.iter().position(|h| h == n).unwrap();
    let (c_video, c_date) = (col("video_id"), col("date"));

    // Pass 1: impressions per (video, date).
    let mut per_video: HashMap<u64, Vec<(u32, u64)>> = HashMap::new();
    let mut rows_read = 0u64;
    each_row(&logs, &header, |path, line, rec| {
        let v = int_at(path, line, rec, c_video, "video_id")?;
        let d = int_at(path, line, rec, c_date, "date")? as u32;
        let days = per_video.entry(v).or_default();
        match days.iter_mut().find(|(dd, _)| *dd == d) {
            Some(e) => e.1 += 1,
            None => days.push((d, 1)),
        }
        rows_read += 1;
        Ok(())
    })?;
    // Prefix sums: impressions strictly before each date.
    let mut prior: HashMap<(u64, u32), u64> = HashMap::new();
    for (v, days) in per_video.iter_mut() {
        days.sort_unstable();
        let mut acc = 0;
        for (d, n) in days.iter() {
            prior.insert((*v, *d), acc);
            acc += n;
        }
    }

    std::fs::create_dir_all(&opts.out).map_err(|e| {
        DataError::file(
            &opts.out,
            "io",
            format!("cannot create the output folder: {e}"),
        )
    })?;
    let log_out = opts.out.join("log.csv.gz");
    let mut by_date: std::collections::BTreeMap<u32, u64> = Default::default();
    {
        let file = std::fs::File::create(&log_out)
            .map_err(|e| DataError::file(&log_out, "io", format!("cannot create: {e}")))?;
        let gz = flate2::write::GzEncoder::new(
            std::io::BufWriter::new(file),
            flate2::Compression::fast(),
        );
        let mut w = csv::Writer::from_writer(gz);
        let io_err = |e: csv::Error| DataError::file(&log_out, "io", format!("cannot write: {e}"));
        let mut h: Vec<&str> = header.iter().map(String::as_str).collect();
        h.push("item_prior_impressions");
        w.write_record(&h).map_err(io_err)?;
        let mut out = csv::ByteRecord::new();
        let mut buf = itoa_buf();
        each_row(&logs, &header, |path, line, rec| {
            let v = int_at(path, line, rec, c_video, "video_id")?;
            let d = int_at(path, line, rec, c_date, "date")? as u32;
            if d < FIRST_TRAIN_DATE {
                return Ok(());
            }
            out.clear();
            for f in rec.iter() {
                out.push_field(f);
            }
            buf.clear();
            write!(buf, "{}", prior[&(v, d)]).unwrap();
            out.push_field(&buf);
            w.write_byte_record(&out).map_err(io_err)?;
            *by_date.entry(d).or_default() += 1;
            Ok(())
        })?;
        let gz = w
            .into_inner()
            .map_err(|e| DataError::file(&log_out, "io", format!("cannot write: {e}")))?;
        gz.finish()
            .and_then(|mut b| b.flush())
            .map_err(|e| DataError::file(&log_out, "io", format!("cannot write: {e}")))?;
    }
    write_item_counts(&per_video, &videos, &opts.out.join("item_counts.csv.gz"))?;
    gzip_copy(&users, &opts.out.join("users.csv.gz"))?;
    gzip_copy(&videos, &opts.out.join("videos.csv.gz"))?;
    let config = opts.out.join("kuairand.toml");
    std::fs::write(&config, CONFIG)
        .map_err(|e| DataError::file(&config, "io", format!("cannot write: {e}")))?;
    std::fs::write(opts.out.join("NOTICE.txt"), NOTICE)
        .map_err(|e| DataError::file(&opts.out, "io", format!("cannot write: {e}")))?;
    Ok(PrepareReport {
        rows_read,
        rows_written: by_date.values().sum(),
        rows_by_date: by_date.into_iter().collect(),
        config,
    })
}

/// Each video's impressions over every logged date: its `item_prior_impressions` on the
/// day after the log ends, which a server fills in for requests that do not carry it.
/// Videos of the video table that were never shown count 0.
fn write_item_counts(
    per_video: &HashMap<u64, Vec<(u32, u64)>>,
    videos: &Path,
    dst: &Path,
) -> Result<(), DataError> {
    let mut totals: HashMap<u64, u64> = per_video
        .iter()
        .map(|(v, days)| (*v, days.iter().map(|(_, n)| n).sum()))
        .collect();
    let opts = CsvOptions::default();
    let header = read_header(videos, &opts)?;
    if let Some(c) = header.iter().position(|h| h == "video_id") {
        let mut rdr = csv_reader(open_maybe_gz(videos)?, &opts);
        let mut rec = csv::ByteRecord::new();
        rdr.read_byte_record(&mut rec)
            .map_err(|e| csv_error(videos, e))?;
        while rdr
            .read_byte_record(&mut rec)
            .map_err(|e| csv_error(videos, e))?
        {
            let id = std::str::from_utf8(rec.get(c).unwrap_or_default())
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok());
            if let Some(v) = id {
                totals.entry(v).or_insert(0);
            }
        }
    }
    let mut totals: Vec<(u64, u64)> = totals.into_iter().collect();
    totals.sort_unstable();
    let mut text = String::from("video_id,item_prior_impressions\n");
    for (v, n) in totals {
        text.push_str(&format!("{v},{n}\n"));
    }
    let f = std::fs::File::create(dst)
        .map_err(|e| DataError::file(dst, "io", format!("cannot create: {e}")))?;
    let mut gz =
        flate2::write::GzEncoder::new(std::io::BufWriter::new(f), flate2::Compression::fast());
    gz.write_all(text.as_bytes())
        .and_then(|_| gz.finish())
        .and_then(|mut b| b.flush())
        .map_err(|e| DataError::file(dst, "io", format!("cannot write: {e}")))
}

fn itoa_buf() -> Vec<u8> {
    Vec::with_capacity(24)
}

fn gzip_copy(src: &Path, dst: &Path) -> Result<(), DataError> {
    let mut r = open_maybe_gz(src)?;
    let f = std::fs::File::create(dst)
        .map_err(|e| DataError::file(dst, "io", format!("cannot create: {e}")))?;
    let mut gz =
        flate2::write::GzEncoder::new(std::io::BufWriter::new(f), flate2::Compression::fast());
    std::io::copy(&mut r, &mut gz)
        .and_then(|_| gz.finish())
        .and_then(|mut b| b.flush())
        .map_err(|e| DataError::file(dst, "io", format!("cannot write: {e}")))?;
    Ok(())
}

const NOTICE: &str = "Derived from KuaiRand (Gao et al., \"KuaiRand: An Unbiased Sequential \
Recommendation Dataset with Randomly Exposed Videos\", CIKM 2022, doi 10.1145/3511808.3557624), \
licensed CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/). Changes: rows of \
dates from 20220428 on, with a derived column item_prior_impressions (impressions of the video \
on strictly earlier dates); the user and video tables gzipped; item_counts.csv.gz, each \
video's impressions over all logged dates (0 for videos of the video table never shown). This derived data is also \
CC BY-SA 4.0.\n";

/// The config written beside the prepared data.
pub const CONFIG: &str = include_str!("kuairand.toml");
