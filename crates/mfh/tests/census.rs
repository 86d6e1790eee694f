//! Census-Income (KDD) from ../shared/data: the seeded 60/20/20 split as row files,
//! string labels through `positive` values, and a short training run.

mod common;
use common::*;
use std::collections::BTreeSet;
use std::path::Path;

fn raw() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/census-income-kdd")
}

fn rows(p: &Path) -> BTreeSet<u64> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.parse().unwrap())
        .collect()
}

#[test]
fn census_split_is_fixed_disjoint_and_trains() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("census");
    let o = ok(&["prepare", "census", "--raw", s(&raw()), "--out", s(&out)]);
    assert!(
        o.stderr.contains("train 59857, valid 19952, test 19953"),
        "{}",
        o.stderr
    );
    let (tr, va, te) = (
        rows(&out.join("train_rows.txt")),
        rows(&out.join("valid_rows.txt")),
        rows(&out.join("test_rows.txt")),
    );
    assert_eq!(tr.len() + va.len() + te.len(), 99_762);
    assert!(tr.is_disjoint(&va) && tr.is_disjoint(&te) && va.is_disjoint(&te));
    // The same seed draws the same rows.
    let again = tmp.path().join("again");
    ok(&["prepare", "census", "--raw", s(&raw()), "--out", s(&again)]);
    assert_eq!(
        std::fs::read(out.join("test_rows.txt")).unwrap(),
        std::fs::read(again.join("test_rows.txt")).unwrap()
    );

    let cfg = out.join("census.toml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("epochs = 10", "epochs = 1\nmax_steps = 40");
    std::fs::write(&cfg, text).unwrap();
    let model = tmp.path().join("m");
    ok(&[
        "train",
        "--config",
        s(&cfg),
        "--model",
        "mmoe",
        "--out",
        s(&model),
        "--quiet",
    ]);
    let e = ok(&[
        "eval",
        "--model-dir",
        s(&model),
        "--split",
        "test",
        "--json",
    ]);
    let recs: serde_json::Value = serde_json::from_str(&e.stdout).unwrap();
    let get = |b: &str, m: &str| {
        recs.as_array()
            .unwrap()
            .iter()
            .find(|r| r["behaviour"] == b && r["cell"] == "all" && r["metric"] == m)
            .unwrap()
            .clone()
    };
    let income = get("income", "auc");
    // About 6.2 % of rows earn more than 50K; 43 % were never married.
    let rate = income["positives"].as_f64().unwrap() / income["n"].as_f64().unwrap();
    assert!((0.05..0.075).contains(&rate), "income rate {rate}");
    assert!(income["value"].as_f64().unwrap() > 0.85, "{income}");
    let marital = get("marital", "auc");
    let rate = marital["positives"].as_f64().unwrap() / marital["n"].as_f64().unwrap();
    assert!((0.40..0.46).contains(&rate), "marital rate {rate}");
    assert!(marital["value"].as_f64().unwrap() > 0.85, "{marital}");
}
