//! Census-Income (KDD): the seeded 60/20/20 split as row files, string labels through
//! `positive` values, and a short training run, on the sample bundled in
//! `data/census-income-kdd-sample` (the file's first 3,000 rows), so that a plain clone
//! runs it. The same checks on the whole file (99,762 rows, from ../shared/data, which a
//! clone does not have) are an ignored test: `cargo test -p mfh --test census --
//! --ignored`.

mod common;
use common::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The bundled sample: `census-income.test.gz`, the name `mfh prepare census` reads.
fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/census-income-kdd-sample")
}

/// The whole official test file, where ../shared/data is checked out.
fn shared() -> PathBuf {
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

/// The train, valid and test row sets `prepare` wrote into `out`.
fn split(out: &Path) -> [BTreeSet<u64>; 3] {
    ["train", "valid", "test"].map(|name| rows(&out.join(format!("{name}_rows.txt"))))
}

/// Prepares `raw` into `tmp/census` and checks the split: `counts` rows in train, valid
/// and test, disjoint, together every row once, and the same rows again with the same
/// seed but not with another. Returns the prepared folder.
fn prepare_and_check_split(raw: &Path, tmp: &Path, counts: [usize; 3]) -> PathBuf {
    let total: usize = counts.iter().sum();
    let out = tmp.join("census");
    let o = ok(&["prepare", "census", "--raw", s(raw), "--out", s(&out)]);
    let said = format!(
        "prepared {total} rows: train {}, valid {}, test {}",
        counts[0], counts[1], counts[2]
    );
    assert!(o.stderr.contains(&said), "want {said:?}:\n{}", o.stderr);
    let [tr, va, te] = split(&out);
    assert_eq!([tr.len(), va.len(), te.len()], counts);
    assert!(tr.is_disjoint(&va) && tr.is_disjoint(&te) && va.is_disjoint(&te));
    let all: BTreeSet<u64> = tr.iter().chain(&va).chain(&te).copied().collect();
    assert_eq!(all, (0..total as u64).collect(), "every row in one split");
    // The same seed draws the same rows; another seed, other rows.
    let again = tmp.join("again");
    ok(&["prepare", "census", "--raw", s(raw), "--out", s(&again)]);
    for name in ["train_rows.txt", "valid_rows.txt", "test_rows.txt"] {
        assert_eq!(
            std::fs::read(out.join(name)).unwrap(),
            std::fs::read(again.join(name)).unwrap(),
            "{name} with the same seed"
        );
    }
    let other = tmp.join("other-seed");
    let reseeded = ok(&[
        "prepare",
        "census",
        "--raw",
        s(raw),
        "--out",
        s(&other),
        "--seed",
        "7",
    ]);
    assert!(reseeded.stderr.contains(&said), "{}", reseeded.stderr);
    let [_, _, te7] = split(&other);
    assert_eq!(te7.len(), counts[2]);
    assert_ne!(
        te, te7,
        "seed 7 draws the same test rows as the default seed"
    );
    out
}

/// Trains a small MMoE on the prepared folder (`edits` applied to its config) and
/// evaluates it on the test split: each task has `test_rows` rows, its positive rate in
/// the given range (the label strings were read through `positive`) and an AUC above
/// `min_auc`.
fn train_and_check(
    out: &Path,
    tmp: &Path,
    edits: &[(&str, &str)],
    test_rows: usize,
    income_rate: std::ops::Range<f64>,
    marital_rate: std::ops::Range<f64>,
    min_auc: f64,
) {
    let cfg = out.join("census.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "census.toml has no {from:?}");
        text = text.replace(from, to);
    }
    std::fs::write(&cfg, text).unwrap();
    let model = tmp.join("m");
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
            .unwrap_or_else(|| panic!("no {b} {m} in:\n{}", e.stdout))
            .clone()
    };
    for (b, rates) in [("income", income_rate), ("marital", marital_rate)] {
        let auc = get(b, "auc");
        let n = auc["n"].as_f64().unwrap();
        assert_eq!(n, test_rows as f64, "{b}: test rows scored: {auc}");
        let rate = auc["positives"].as_f64().unwrap() / n;
        assert!(rates.contains(&rate), "{b} rate {rate}, want {rates:?}");
        assert!(auc["value"].as_f64().unwrap() > min_auc, "{auc}");
    }
}

#[test]
fn census_sample_split_is_fixed_disjoint_and_trains() {
    let raw = sample();
    assert!(
        raw.join("census-income.test.gz").is_file(),
        "{}: the bundled Census sample is missing",
        raw.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = prepare_and_check_split(&raw, tmp.path(), [1800, 600, 600]);
    // The data travels with the config, unchanged.
    assert_eq!(
        std::fs::read(out.join("census-income.test.gz")).unwrap(),
        std::fs::read(raw.join("census-income.test.gz")).unwrap()
    );
    // 1 800 train rows: batches of 64 (29 steps an epoch), two epochs at lr 0.01.
    // Measured over training seeds 0-7: test AUC income 0.952-0.960, marital
    // 0.964-0.994. The sample's test split has 38 / 600 income and 258 / 600 marital
    // positives (the sample: 6.2 % and 44 %; the whole file: 6.2 % and 43 %).
    train_and_check(
        &out,
        tmp.path(),
        &[
            ("epochs = 10", "epochs = 2"),
            ("batch_size = 1024", "batch_size = 64"),
            ("lr = 0.001", "lr = 0.01"),
        ],
        600,
        0.05..0.075,
        0.40..0.46,
        0.9,
    );
}

#[test]
#[ignore = "needs ../shared/data/census-income-kdd (the whole file, not in the repository)"]
fn census_whole_file_split_is_fixed_disjoint_and_trains() {
    let raw = shared();
    assert!(
        raw.join("census-income.test.gz").is_file() || raw.join("census-income.test").is_file(),
        "{}: no census-income.test(.gz); this ignored test needs the whole file",
        raw.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = prepare_and_check_split(&raw, tmp.path(), [59_857, 19_952, 19_953]);
    // About 6.2 % of rows earn more than 50K; 43 % were never married.
    train_and_check(
        &out,
        tmp.path(),
        &[("epochs = 10", "epochs = 1\nmax_steps = 40")],
        19_953,
        0.05..0.075,
        0.40..0.46,
        0.85,
    );
}
