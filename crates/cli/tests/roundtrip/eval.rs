//! Loading and evaluating the saved model from another working directory.

use crate::{common::s, mfh_at, record};
use serde_json::Value;
use std::path::Path;

/// Evaluates from `elsewhere`: the same metrics as metrics.json (`saved`), exactly; the
/// text summary counts the `n_valid` rows; the test split (read from its row file) has
/// `test_n` rows.
pub fn eval(elsewhere: &Path, model: &Path, saved: &Value, n_valid: usize, test_n: usize) {
    let e = mfh_at(elsewhere, &["eval", "--model-dir", s(model), "--json"]);
    let again: Value = serde_json::from_str(&e.stdout).unwrap();
    assert_eq!(*saved, again, "eval differs from metrics.json");
    let e = mfh_at(elsewhere, &["eval", "--model-dir", s(model)]);
    assert!(
        e.stdout.contains(&format!("valid: {n_valid} rows, loss ")),
        "{}",
        e.stdout
    );
    let e = mfh_at(
        elsewhere,
        &["eval", "--model-dir", s(model), "--split", "test", "--json"],
    );
    let test: Value = serde_json::from_str(&e.stdout).unwrap();
    let rec = record(&test, "click", "all", "logloss");
    assert_eq!(rec["split"], "test");
    assert_eq!(rec["n"], test_n, "{rec}");
    // bf16 products: the same rows scored, the AUC near the f32 one.
    let e = mfh_at(
        elsewhere,
        &[
            "eval",
            "--model-dir",
            s(model),
            "--json",
            "--precision",
            "bf16",
        ],
    );
    let bf: Value = serde_json::from_str(&e.stdout).unwrap();
    let (f, b) = (
        record(saved, "click", "all", "auc"),
        record(&bf, "click", "all", "auc"),
    );
    assert_eq!(f["n"], b["n"], "{f} against {b}");
    let (fv, bv) = (f["value"].as_f64().unwrap(), b["value"].as_f64().unwrap());
    assert!((fv - bv).abs() < 0.02, "AUC f32 {fv}, bf16 {bv}");
    let e = crate::common::fails(&["eval", "--model-dir", s(model), "--precision", "fp8"]);
    assert!(
        e.stderr.contains("fp8") && e.stderr.contains("bf16"),
        "{}",
        e.stderr
    );
}
