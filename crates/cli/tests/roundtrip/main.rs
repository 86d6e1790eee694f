//! Every feature type and transform through the whole life of a model, with the `mfh`
//! binary: train → save → load (eval, from another working directory) → predict → serve
//! → export. The config has a categorical feature, two multi-valued ones (sum and mean
//! pooling, two separators, empty cells), numeric features with no transform, `log1p`,
//! `standardize` and both (missing cells filled), bucketized features with quantiles and
//! with explicit boundaries (one after `log1p`), three features sharing one embedding
//! table, a side table, a groups facet and a thresholds facet (both with defaults), two
//! binary behaviours (one with missing labels) and a split read from a row file.
//! Needs the `serve` feature: `cargo test -p mfh --features serve --test roundtrip`.
//!
//! The test's stages sit in their own modules: `data` (the generated data and config),
//! `train`, `eval`, `predict`, `serve` and `export`.
#![cfg(feature = "serve")]

#[path = "../common/mod.rs"]
mod common;
mod data;
mod eval;
mod export;
mod predict;
mod serve;
mod train;

use common::Out;
use data::{check_split_sizes, write_inputs, Row, ROWS};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// Runs `mfh` in the working directory `dir`.
pub fn mfh_at(dir: &Path, args: &[&str]) -> Out {
    let o = Command::new(env!("CARGO_BIN_EXE_mfh"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the mfh binary runs");
    let out = Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    };
    assert!(
        !out.stderr.contains("panicked"),
        "mfh {args:?} (in {}) panicked:\n{}",
        dir.display(),
        out.stderr
    );
    assert_eq!(
        out.code,
        0,
        "mfh {args:?} (in {}) failed:\n{}\n{}",
        dir.display(),
        out.stdout,
        out.stderr
    );
    out
}

pub fn json_file(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", p.display()))
}

/// The record of one (behaviour, cell, metric) in a metrics list.
pub fn record<'a>(recs: &'a Value, behaviour: &str, cell: &str, metric: &str) -> &'a Value {
    recs.as_array()
        .unwrap()
        .iter()
        .find(|r| r["behaviour"] == behaviour && r["cell"] == cell && r["metric"] == metric)
        .unwrap_or_else(|| panic!("no {behaviour}/{cell}/{metric} record in {recs:#}"))
}

#[test]
fn every_feature_type_round_trips_through_train_eval_predict_serve_and_export() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let rows: Vec<Row> = (0..ROWS).map(Row::new).collect();
    write_inputs(&work, &rows);
    let valid: Vec<&Row> = rows.iter().filter(|r| r.day == 3).collect();
    let test_n = ROWS.div_ceil(9);
    check_split_sizes(&rows, &valid);

    // Train, in `work`, with paths relative to it.
    let model = train::train(&work);
    // metrics.json: the valid split, both behaviours, every cell, the counts of the data.
    let saved = train::check_saved_metrics(&model, &valid);
    // Load and evaluate from another working directory: the same metrics, exactly.
    eval::eval(&elsewhere, &model, &saved, valid.len(), test_n);
    // Predict every row, with the config the model folder saved.
    let preds = predict::predict(&elsewhere, &model, &rows);
    predict::check_aucs(&preds, &rows, &saved);
    // Serve, from elsewhere, and ask for a few rows two ways.
    serve::serve(&elsewhere, &model, &rows, &preds);
    // Export to ONNX, from elsewhere, to a relative path.
    export::export(&elsewhere, &model);
}
