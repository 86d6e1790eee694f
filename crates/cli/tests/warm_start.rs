//! Daily warm starts on the bundled KuaiRand slice: a model trained on five days, warm
//! started on the sixth, beats a cold start on the sixth with the same budget (judged
//! on the seventh), and the warm model loads and scores like any other.

mod common;
use common::*;
use std::path::Path;

const TRAIN: &str = r#"train = { where = "date >= 20220428 and date <= 20220504" }"#;
const VALID: &str = r#"valid = { where = "date >= 20220505 and date <= 20220506" }"#;

/// Mean over behaviours of the pooled valid AUC in a model folder's metrics.json.
fn mean_auc(dir: &Path) -> f64 {
    let text = std::fs::read_to_string(dir.join("metrics.json")).unwrap();
    let rows: serde_json::Value = serde_json::from_str(&text).unwrap();
    let aucs: Vec<f64> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["cell"] == "all" && r["metric"] == "auc")
        .map(|r| r["value"].as_f64().unwrap())
        .collect();
    assert!(!aucs.is_empty());
    aucs.iter().sum::<f64>() / aucs.len() as f64
}

/// The prepared config with its train and valid splits on the given dates, one epoch,
/// and row caps on the embedding tables.
fn day_config(tmp: &Path, name: &str, train: &str, valid: &str) -> std::path::PathBuf {
    let base = std::fs::read_to_string(tmp.join("data/kuairand.toml")).unwrap();
    let text = base
        .replace(TRAIN, &format!("train = {{ where = \"{train}\" }}"))
        .replace(VALID, &format!("valid = {{ where = \"{valid}\" }}"))
        .replace("epochs = 4", "epochs = 1")
        .replace(
            "embedding = { optimizer = \"adagrad\", lr = 0.05 }",
            "embedding = { optimizer = \"adagrad\", lr = 0.05, max_rows = 3000, evict_every = 50 }",
        );
    assert!(text.contains("max_rows = 3000") && text.contains(train));
    let path = tmp.join("data").join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_warm_start_beats_a_cold_start_on_the_next_day_and_serves() {
    let tmp = tempfile::tempdir().unwrap();
    prepared(tmp.path(), &[], &[]);
    let (day6, day7) = ("date == 20220430", "date == 20220501");
    let five = day_config(
        tmp.path(),
        "five.toml",
        "date >= 20220425 and date <= 20220429",
        day6,
    );
    let six = day_config(tmp.path(), "six.toml", day6, day7);
    let (m5, warm, cold) = (
        tmp.path().join("m5"),
        tmp.path().join("warm"),
        tmp.path().join("cold"),
    );
    let args = |cfg: &Path, out: &Path| {
        vec![
            "train".to_string(),
            "--config".into(),
            s(cfg).into(),
            "--model".into(),
            "mmoe".into(),
            "--out".into(),
            s(out).into(),
            "--quiet".into(),
        ]
    };
    let run = |a: Vec<String>| ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    run(args(&five, &m5));
    let mut w = args(&six, &warm);
    w.extend(["--init-from".into(), s(&m5).into()]);
    let o = run(w);
    run(args(&six, &cold));
    let (a_warm, a_cold) = (mean_auc(&warm), mean_auc(&cold));
    assert!(
        a_warm > a_cold + 0.005,
        "warm {a_warm:.4} should beat cold {a_cold:.4} on day 7\n{}",
        o.stdout
    );
    // The run reports each capped table's lifecycle counts, with evictions.
    let report: Vec<&str> = o
        .stderr
        .lines()
        .skip_while(|l| !l.starts_with("embedding lifecycle"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert!(!report.is_empty(), "{}", o.stderr);
    assert!(
        report.iter().any(|l| {
            let evicted: u64 = l.split_whitespace().last().unwrap().parse().unwrap();
            evicted > 0
        }),
        "{}",
        o.stderr
    );
    // The warm model loads and scores: eval reproduces its metrics' AUC.
    let e = ok(&["eval", "--model-dir", s(&warm), "--json"]);
    assert!(e.stdout.contains("auc"), "{}", e.stdout);
    // Every table stayed within its cap of 3000 rows (inspect reads the saved tables).
    let i = ok(&["inspect", "--model-dir", s(&warm)]);
    let tables: Vec<&str> = i
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("embedding tables:"))
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with("total:"))
        .collect();
    assert!(tables.len() > 10, "{}", i.stdout);
    for l in &tables {
        let rows: usize = l.split_whitespace().nth(2).unwrap().parse().unwrap();
        assert!(rows <= 3000, "over the cap: {l}");
        assert!(l.contains("cap 3000 rows"), "{l}");
    }
    assert!(
        tables
            .iter()
            .any(|l| l.split_whitespace().nth(2) == Some("3000")),
        "the user and video tables reach the cap:\n{}",
        i.stdout
    );
}

#[test]
fn a_warm_start_refuses_a_model_of_another_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = prepared(tmp.path(), &[], &[("epochs = 4", "epochs = 1")]);
    let m = tmp.path().join("m");
    ok(&[
        "train",
        "--config",
        s(&cfg),
        "--model",
        "mmoe",
        "--out",
        s(&m),
        "--quiet",
        "--seed",
        "1",
    ]);
    let e = fails(&[
        "train",
        "--config",
        s(&cfg),
        "--model",
        "cgc",
        "--out",
        s(&tmp.path().join("x")),
        "--init-from",
        s(&m),
    ]);
    assert!(
        e.stderr.contains("--init-from") && e.stderr.contains("model section"),
        "{}",
        e.stderr
    );
}
