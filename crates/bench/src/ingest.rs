//! `mfh bench ingest`: rows/s from the files of a config's split into batches (reading,
//! gunzip, parsing, joins, hashing, transforms), one reader thread.

use crate::print::summary;
use anyhow::Result;
use mfh_config::Config;
use mfh_data::{Pipeline, StreamOptions};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Fits the config's train split, then reads `split` once to warm up and `repeats` times
/// timed; each pass's row count and time go to stderr.
pub fn ingest(config: &Path, split: &str, repeats: usize) -> Result<()> {
    let cfg = Config::load(config)?;
    let mut p = Pipeline::new(&cfg)?;
    p.fit(&cfg.train.train_split)?;
    let p = Arc::new(p);
    let mut rates = Vec::new();
    for r in 0..repeats + 1 {
        let t = Instant::now();
        let mut rows = 0u64;
        for b in p.stream(split, StreamOptions::in_order(cfg.train.batch_size))? {
            rows += b?.n as u64;
        }
        let dt = t.elapsed().as_secs_f64();
        if r > 0 {
            rates.push(rows as f64 / dt);
        }
        eprintln!(
            "pass {r}: {rows} rows in {dt:.2} s{}",
            if r == 0 { " (warm-up)" } else { "" }
        );
    }
    summary(
        &format!("ingest {}:{split} → batches", config.display()),
        "rows/s",
        rates,
    );
    Ok(())
}
