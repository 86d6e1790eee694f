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
}
