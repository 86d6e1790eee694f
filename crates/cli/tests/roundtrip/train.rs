//! Training, in the data's working directory, and what it saves.

use crate::data::{Row, CELLS, MAX_STEPS};
use crate::{json_file, mfh_at, record};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Trains in `work`, with paths relative to it; checks the model folder's files, its
/// config's absolute paths and the fitted statistics. Returns the model folder.
pub fn train(work: &Path) -> PathBuf {
    let t = mfh_at(
        work,
        &["train", "--config", "c.toml", "--out", "model", "--quiet"],
    );
    assert!(
        t.stdout.contains("model `rt`") && t.stdout.contains(&format!("of {MAX_STEPS};")),
        "{}",
        t.stdout
    );
    let model = work.join("model");
    for f in [
        "model.json",
        "config.toml",
        "transforms.json",
        "dense.bin",
        "embeddings.bin",
        "metrics.json",
    ] {
        let len = std::fs::metadata(model.join(f))
            .unwrap_or_else(|e| panic!("{f}: {e}"))
            .len();
        assert!(len > 0, "{f} is empty");
    }
    // The saved config names its files by absolute paths.
    let saved_cfg: toml::Table = std::fs::read_to_string(model.join("config.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let paths = [
        &saved_cfg["data"]["sources"][0],
        &saved_cfg["data"]["side_tables"][0]["path"],
        &saved_cfg["splits"]["test"]["rows"],
    ];
    for p in paths {
        let p = Path::new(p.as_str().unwrap());
        assert!(p.is_absolute() && p.is_file(), "config.toml: {p:?}");
    }
    // Fitted statistics: standardised features have a mean and a deviation, the quantile
    // buckets their boundaries.
    let transforms = std::fs::read_to_string(model.join("transforms.json")).unwrap();
    for f in ["age", "dur", "price_q"] {
        assert!(transforms.contains(&format!("\"{f}\"")), "{transforms}");
    }
    model
}

/// metrics.json: the valid split, both behaviours, every cell, the counts of the data.
/// Returns the saved metrics.
pub fn check_saved_metrics(model: &Path, valid: &[&Row]) -> Value {
    let saved = json_file(&model.join("metrics.json"));
    let recs = saved.as_array().expect("metrics.json is a list");
    assert!(!recs.is_empty());
    assert!(recs.iter().all(|r| r["split"] == "valid"), "{saved:#}");
    let click_n = record(&saved, "click", "all", "auc");
    assert_eq!(click_n["n"], valid.len(), "{click_n}");
    assert_eq!(
        click_n["positives"],
        valid.iter().filter(|r| r.clicked == 1).count()
    );
    let like_n = record(&saved, "like", "all", "auc");
    let like_missing = valid.iter().filter(|r| r.liked.is_none()).count();
    assert_eq!(like_n["n"], valid.len() - like_missing, "{like_n}");
    assert_eq!(like_n["missing"], like_missing, "{like_n}");
    for cell in CELLS {
        let want = valid.iter().filter(|r| r.cell() == cell).count();
        assert!(want > 0, "no valid row in {cell}");
        assert_eq!(
            record(&saved, "click", cell, "logloss")["n"],
            want,
            "{cell}"
        );
    }
    saved
}
