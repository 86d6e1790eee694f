//! End to end on the bundled KuaiRand slice: prepare, check, train a small MMoE, then
//! eval must reproduce the saved metrics exactly; a re-dated extra log fills the `test`
//! split, which eval then reports.

mod common;
use common::*;
use std::io::{BufRead, Write};

/// Rows of the raw log dated 20220506, re-dated to 20220507, as a gzip-free CSV.
fn redated_log(dir: &std::path::Path) -> (std::path::PathBuf, usize) {
    let raw = bundled_raw().join("log_standard_pure_20220425_20220506.csv.gz");
    let f = std::fs::File::open(raw).unwrap();
    let r = std::io::BufReader::new(flate2::read::GzDecoder::new(f));
    let path = dir.join("log_extra_20220507.csv");
    let mut w = std::fs::File::create(&path).unwrap();
    let mut n = 0;
    for (i, line) in r.lines().enumerate() {
        let line = line.unwrap();
        if i == 0 {
            writeln!(w, "{line}").unwrap();
        } else if line.contains(",20220506,") && n < 500 {
            writeln!(w, "{}", line.replace(",20220506,", ",20220507,")).unwrap();
            n += 1;
        }
    }
    (path, n)
}

/// Eval reproduces the saved valid metrics exactly: every behaviour × cell and facet,
/// and a click AUC clearly above chance.
fn eval_reproduces_the_saved_valid_metrics(model: &std::path::Path) {
    let e = ok(&["eval", "--model-dir", s(model), "--json"]);
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("metrics.json")).unwrap())
            .unwrap();
    let again: serde_json::Value = serde_json::from_str(&e.stdout).unwrap();
    assert_eq!(saved, again);
    let recs = again.as_array().unwrap();
    // 3 behaviours × (4 cells + pooled + 4 facet values), each with auc, gauc, logloss,
    // calibration.
    assert_eq!(recs.len(), 3 * 9 * 4);
    assert!(recs
        .iter()
        .any(|r| r["cell"] == "user=new" && r["metric"] == "auc"));
    let click_auc = recs
        .iter()
        .find(|r| r["behaviour"] == "click" && r["cell"] == "all" && r["metric"] == "auc")
        .unwrap()["value"]
        .as_f64()
        .unwrap();
    assert!(
        click_auc > 0.6,
        "click AUC {click_auc} is not clearly above chance"
    );
}

#[test]
fn prepare_train_eval_reproduces_and_reports_test_split() {
    let tmp = tempfile::tempdir().unwrap();
    let (extra, n_extra) = redated_log(tmp.path());
    // A short run: a small MMoE and a hundred-odd steps.
    let cfg_path = prepared(
        tmp.path(),
        &[&extra],
        &[
            ("epochs = 4", "epochs = 1\nmax_steps = 120"),
            (
                "experts = 4\nexpert_layers = [256, 128]",
                "experts = 2\nexpert_layers = [32]",
            ),
        ],
    );

    let check = ok(&["check", "--config", s(&cfg_path)]);
    assert!(
        check.stdout.contains("3 behaviours × 4 cells = 12 tasks"),
        "{}",
        check.stdout
    );

    let model = tmp.path().join("model");
    let t = ok(&[
        "train",
        "--config",
        s(&cfg_path),
        "--model",
        "mmoe",
        "--out",
        s(&model),
        "--quiet",
    ]);
    assert!(t.stdout.contains("user=new,item=tail"), "{}", t.stdout);

    eval_reproduces_the_saved_valid_metrics(&model);

    // The re-dated rows make the test split, which eval reports.
    let e = ok(&[
        "eval",
        "--model-dir",
        s(&model),
        "--config",
        s(&cfg_path),
        "--split",
        "test",
        "--json",
    ]);
    let recs: serde_json::Value = serde_json::from_str(&e.stdout).unwrap();
    let pooled = recs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["behaviour"] == "click" && r["cell"] == "all" && r["metric"] == "auc")
        .unwrap()
        .clone();
    assert_eq!(pooled["split"], "test");
    assert_eq!(pooled["n"].as_u64().unwrap(), n_extra as u64);

    // Predictions: one line per valid row plus the header.
    let pred = tmp.path().join("pred.csv");
    ok(&[
        "predict",
        "--model-dir",
        s(&model),
        "--config",
        s(&cfg_path),
        "--split",
        "test",
        "--out",
        s(&pred),
    ]);
    let lines = std::fs::read_to_string(&pred).unwrap().lines().count();
    assert_eq!(lines, n_extra + 1);

    let i = ok(&["inspect", "--model-dir", s(&model)]);
    assert!(
        i.stdout.contains("MMoE") && i.stdout.contains("user_id"),
        "{}",
        i.stdout
    );
}

#[test]
fn empty_test_split_is_a_warning_for_eval() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg_path = prepared(
        tmp.path(),
        &[],
        &[
            ("epochs = 4", "epochs = 1\nmax_steps = 10"),
            (
                "experts = 4\nexpert_layers = [256, 128]",
                "experts = 2\nexpert_layers = [16]",
            ),
        ],
    );
    let model = tmp.path().join("m");
    ok(&[
        "train",
        "--config",
        s(&cfg_path),
        "--out",
        s(&model),
        "--quiet",
    ]);
    let e = ok(&["eval", "--model-dir", s(&model), "--split", "test"]);
    assert!(
        e.stderr.contains("warning") && e.stderr.contains("empty"),
        "{}",
        e.stderr
    );
}

#[test]
fn every_model_of_the_zoo_trains_and_reports_all_twelve_cells() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg_path = prepared(
        tmp.path(),
        &[],
        &[
            ("epochs = 4", "epochs = 1\nmax_steps = 15"),
            ("eval_every = 125", "eval_every = 0"),
        ],
    );
    for model in [
        "single", "sb", "mmoe", "cgc", "ple", "hmtl", "mfh", "pepnet", "stem",
    ] {
        let dir = tmp.path().join(model);
        ok(&[
            "train",
            "--config",
            s(&cfg_path),
            "--model",
            model,
            "--out",
            s(&dir),
            "--quiet",
        ]);
        let e = ok(&["eval", "--model-dir", s(&dir), "--json"]);
        let recs: serde_json::Value = serde_json::from_str(&e.stdout).unwrap();
        let cells: std::collections::BTreeSet<String> = recs
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["metric"] == "auc" && r["cell"].as_str().unwrap().contains(','))
            .map(|r| format!("{}/{}", r["behaviour"], r["cell"]))
            .collect();
        assert_eq!(cells.len(), 12, "{model}: {cells:?}");
        let i = ok(&["inspect", "--model-dir", s(&dir)]);
        assert!(i.stdout.contains("params"), "{model}: {}", i.stdout);
        if model == "pepnet" {
            // The default priors: the IDs joined to the user and video tables.
            assert!(
                i.stdout
                    .contains("priors: user_id (16), video_id (16), 4 facet values"),
                "{}",
                i.stdout
            );
        }
    }
    // A prior that names no input feature is refused by `mfh check`, naming the key.
    let text = std::fs::read_to_string(&cfg_path).unwrap().replace(
        "[models.pepnet]\n",
        "[models.pepnet]\npriors = [\"user_idd\"]\n",
    );
    let bad = cfg_path.with_file_name("bad-priors.toml");
    std::fs::write(&bad, text).unwrap();
    let e = fails(&["check", "--config", s(&bad)]);
    assert!(
        e.stderr.contains("models.pepnet") && e.stderr.contains("`user_idd`"),
        "{}",
        e.stderr
    );
}

#[test]
fn a_funnel_over_pairs_that_break_the_implication_is_refused_with_the_count() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok(&[
        "prepare",
        "kuairand",
        "--raw",
        s(&bundled_raw()),
        "--out",
        s(&data),
    ]);
    let cfg_path = data.join("kuairand.toml");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap().replace(
        "[models.single]",
        "[[train.loss.funnels]]\nkind = \"esmm\"\nfrom = \"click\"\nto = \"like\"\n\n[models.single]",
    );
    // Appending to [train] through a sub-table must come after its keys: put it at the end.
    let cfg = cfg.replace(
        "[[train.loss.funnels]]\nkind = \"esmm\"\nfrom = \"click\"\nto = \"like\"\n\n",
        "",
    ) + "\n[[train.loss.funnels]]\nkind = \"esmm\"\nfrom = \"click\"\nto = \"like\"\n";
    std::fs::write(&cfg_path, cfg).unwrap();
    let e = fails(&[
        "train",
        "--config",
        s(&cfg_path),
        "--model",
        "mmoe",
        "--out",
        s(&tmp.path().join("m")),
        "--quiet",
    ])
    .stderr;
    assert!(e.contains("click → like") && e.contains("positives"), "{e}");
}
