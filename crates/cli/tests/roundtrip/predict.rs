//! Predicting every row with the saved model and its saved config.

use crate::data::{Row, ROWS};
use crate::{common::s, mfh_at, record};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// One row of `mfh predict`'s CSV: cell and, per behaviour, (score, label).
pub struct Pred {
    pub cell: String,
    pub scores: [f64; 2],
    pub labels: [Option<f64>; 2],
}

fn read_predictions(path: &Path) -> BTreeMap<usize, Pred> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        header,
        [
            "row",
            "cell",
            "click_pred",
            "click_label",
            "like_pred",
            "like_label"
        ]
    );
    let mut out = BTreeMap::new();
    let label = |s: &str| (!s.is_empty()).then(|| s.parse::<f64>().unwrap());
    for rec in r.records() {
        let rec = rec.unwrap();
        assert_eq!(rec.len(), 6, "{rec:?}");
        let row: usize = rec[0].parse().unwrap();
        let p = Pred {
            cell: rec[1].to_string(),
            scores: [rec[2].parse().unwrap(), rec[4].parse().unwrap()],
            labels: [label(&rec[3]), label(&rec[5])],
        };
        assert!(out.insert(row, p).is_none(), "row {row} predicted twice");
    }
    out
}

/// Exact AUC by counting pairs (ties count one half).
fn pairwise_auc(scored: &[(f64, bool)]) -> f64 {
    let (mut wins, mut pairs) = (0.0, 0.0);
    for &(sp, _) in scored.iter().filter(|x| x.1) {
        for &(sn, _) in scored.iter().filter(|x| !x.1) {
            pairs += 1.0;
            wins += if sp > sn {
                1.0
            } else if sp == sn {
                0.5
            } else {
                0.0
            };
        }
    }
    assert!(pairs > 0.0, "both classes are needed for an AUC");
    wins / pairs
}

/// Predicts every row from `elsewhere`, with the config the model folder saved: one
/// prediction per row, in its cell, with its labels and scores in [0, 1]; not all one
/// score. Returns the predictions by row.
pub fn predict(elsewhere: &Path, model: &Path, rows: &[Row]) -> BTreeMap<usize, Pred> {
    let saved_config = model.join("config.toml");
    let p = mfh_at(
        elsewhere,
        &[
            "predict",
            "--model-dir",
            s(model),
            "--config",
            s(&saved_config),
            "--split",
            "all",
            "--out",
            "pred.csv",
        ],
    );
    assert!(
        p.stdout.starts_with(&format!("{ROWS} rows")),
        "{}",
        p.stdout
    );
    let preds = read_predictions(&elsewhere.join("pred.csv"));
    assert_eq!(preds.len(), ROWS);
    assert_eq!(
        preds.keys().copied().collect::<Vec<_>>(),
        (0..ROWS).collect::<Vec<_>>()
    );
    for (&i, p) in &preds {
        let r = &rows[i];
        assert_eq!(p.cell, r.cell(), "row {i}: {}", r.csv_line());
        for (b, &v) in p.scores.iter().enumerate() {
            assert!(
                v.is_finite() && (0.0..=1.0).contains(&v),
                "row {i}: score {v}"
            );
            let want = [Some(r.clicked), r.liked][b].map(f64::from);
            assert_eq!(p.labels[b], want, "row {i}, behaviour {b}");
        }
    }
    // Not all one score: the features reach the heads.
    let distinct: std::collections::BTreeSet<u64> =
        preds.values().map(|p| p.scores[0].to_bits()).collect();
    assert!(
        distinct.len() > ROWS / 4,
        "{} distinct click scores",
        distinct.len()
    );
    preds
}

/// The valid rows' predictions give eval's AUCs (`saved`: metrics.json).
pub fn check_aucs(preds: &BTreeMap<usize, Pred>, rows: &[Row], saved: &Value) {
    for (b, name) in ["click", "like"].iter().enumerate() {
        let scored: Vec<(f64, bool)> = preds
            .iter()
            .filter(|(&i, _)| rows[i].day == 3)
            .filter_map(|(_, p)| p.labels[b].map(|l| (p.scores[b], l > 0.5)))
            .collect();
        let want = record(saved, name, "all", "auc")["value"]
            .as_f64()
            .unwrap_or_else(|| panic!("{name}: no AUC in metrics.json"));
        let got = pairwise_auc(&scored);
        assert!(
            (got - want).abs() < 1e-9,
            "{name}: AUC of the predictions {got}, metrics.json {want}"
        );
    }
}
