//! `mfh tune` on a small generated log: a planted best setting is found, a rerun
//! resumes (and recomputes a lost result alike), other settings in the same folder are
//! refused, bad spaces name their key, and `compare --tuned` trains with the tuned values.

use mfh_compare::tune::{read_best, tune, TuneOptions};
use mfh_compare::{compare, oracle_records, CompareOptions};
use mfh_config::Config;
use mfh_data::synthetic::{prepare, SyntheticOptions};
use std::path::Path;

/// The generated config without its own `[tune.*]` spaces.
fn without_spaces(path: &Path) -> String {
    let mut doc: toml::Table = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(
        doc.remove("tune").is_some(),
        "the generated config has search spaces"
    );
    toml::to_string(&doc).unwrap()
}

/// A 3,000-row synthetic log with a small MMoE and a space where only one setting learns:
/// learning rates of 1e-7 cannot move the model in a few dozen steps.
fn setup(dir: &Path, space: &str) -> Config {
    let mut o = SyntheticOptions::new(3_000, dir.join("data"));
    o.seed = 5;
    let r = prepare(&o).unwrap();
    let mut text = without_spaces(&r.config);
    text.push_str(space);
    std::fs::write(&r.config, text).unwrap();
    let cfg = Config::load(&r.config).unwrap();
    let small = [
        ("models.mmoe.expert_layers", "[16]"),
        ("models.mmoe.tower", "[8]"),
        ("train.batch_size", "256"),
        ("train.threads", "1"),
    ];
    let o: Vec<(String, toml::Value)> = small
        .iter()
        .map(|(k, v)| {
            let t: toml::Table = toml::from_str(&format!("v = {v}")).unwrap();
            (k.to_string(), t["v"].clone())
        })
        .collect();
    cfg.with_overrides(&o).unwrap()
}

const SPACE: &str = r#"
[tune.mmoe]
"train.lr" = [1e-7, 0.003]
"train.embedding.lr" = [1e-7, 0.05]
"#;

fn opts(out: &Path) -> TuneOptions {
    TuneOptions {
        model: "mmoe".into(),
        trials: 8,
        out: out.to_path_buf(),
        seed: 3,
        max_steps: 24,
        eta: 2,
        rungs: 2,
        progress: false,
    }
}

#[test]
fn a_small_search_finds_the_planted_setting_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = setup(tmp.path(), SPACE);
    let out = tmp.path().join("tuned").join("mmoe");
    let s = tune(&cfg, &opts(&out)).unwrap();
    // Keys in the space's (sorted) order.
    let best: Vec<(String, String)> = vec![
        ("train.embedding.lr".into(), "0.05".into()),
        ("train.lr".into(), "0.003".into()),
    ];
    assert_eq!(s.best, best, "{s:?}");
    assert_eq!(s.rung_steps, vec![12, 24]);
    // Rung 0: 8 trials; rung 1: the best 4. The budget is the steps trained.
    let log = std::fs::read_to_string(out.join("trials.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 12);
    assert!(
        s.budget_steps > 0 && s.budget_steps <= 8 * 12 + 4 * 24,
        "{}",
        s.budget_steps
    );
    let o = read_best(&out.join("best.toml")).unwrap();
    assert_eq!(o.len(), 2);
    assert_eq!(o[1].0, "train.lr");
    assert_eq!(o[1].1.as_float(), Some(0.003));
    assert!(std::fs::read_to_string(out.join("trials.md"))
        .unwrap()
        .contains("**best**"));
    // The section to paste: the model section and the tuned train keys.
    let sec: toml::Table =
        toml::from_str(&std::fs::read_to_string(out.join("best_section.toml")).unwrap()).unwrap();
    assert_eq!(sec["train"]["lr"].as_float(), Some(0.003));
    assert_eq!(sec["train"]["embedding"]["lr"].as_float(), Some(0.05));
    assert_eq!(
        sec["models"]["mmoe"]["expert_layers"]
            .as_array()
            .map(|a| a.len()),
        Some(1)
    );
    // Nothing left to train: a rerun reads every result back.
    assert_eq!(tune(&cfg, &opts(&out)).unwrap(), s);
    assert_eq!(
        std::fs::read_to_string(out.join("trials.jsonl")).unwrap(),
        log
    );
    // A lost last result (a crash before it was written) is trained again, alike.
    let cut: Vec<&str> = log.lines().collect();
    std::fs::write(out.join("trials.jsonl"), cut[..11].join("\n") + "\n").unwrap();
    assert_eq!(tune(&cfg, &opts(&out)).unwrap(), s);
    assert_eq!(
        std::fs::read_to_string(out.join("trials.jsonl")).unwrap(),
        log
    );
    // Other settings in the same folder are refused.
    let mut other = opts(&out);
    other.seed = 4;
    let e = format!("{:#}", tune(&cfg, &other).unwrap_err());
    assert!(e.contains("other settings"), "{e}");

    // `compare --tuned`: the run trains with the tuned learning rates.
    let cmp = tmp.path().join("cmp");
    compare(
        &cfg,
        &CompareOptions {
            models: vec!["mmoe".into()],
            seeds: 1,
            out: cmp.clone(),
            bootstrap: 10,
            tensorboard: false,
            progress: false,
            tuned: Some(tmp.path().join("tuned")),
        },
    )
    .unwrap();
    let stored = Config::load(
        &cmp.join("runs")
            .join("mmoe")
            .join(format!("seed{}", cfg.train.seed))
            .join("model")
            .join("config.toml"),
    )
    .unwrap();
    assert_eq!(stored.train.lr, 0.003);
    assert_eq!(stored.train.embedding.lr, 0.05);
    // The generated config names its oracle columns: the table shows the oracle.
    let table = std::fs::read_to_string(cmp.join("table.md")).unwrap();
    assert!(table.contains("## The oracle"), "{table}");
    assert!(cmp.join("oracle.json").exists());
}

/// The comparison's oracle is the generator's: the AUC of the stored probabilities on
/// `test`, per cell and behaviour.
#[test]
fn the_oracle_of_a_comparison_is_the_generators() {
    let tmp = tempfile::tempdir().unwrap();
    let mut o = SyntheticOptions::new(8_000, tmp.path().join("data"));
    o.seed = 9;
    let r = prepare(&o).unwrap();
    let cfg = Config::load(&r.config).unwrap();
    let recs = oracle_records(&cfg, "test").unwrap();
    let cells = cfg.grid().cell_names();
    let behaviours = ["click", "long_view", "like"];
    let mut seen = 0;
    for (c, per) in r.oracle_auc.iter().enumerate() {
        for (k, want) in per.iter().enumerate() {
            let got = recs
                .iter()
                .find(|x| x.behaviour == behaviours[k] && x.cell == cells[c] && x.metric == "auc")
                .and_then(|x| x.value);
            assert!(want.is_some());
            assert_eq!(got, *want, "{} {}", behaviours[k], cells[c]);
            seen += 1;
        }
    }
    assert_eq!(seen, 12);
}

#[test]
fn bad_spaces_name_their_key() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let r = prepare(&SyntheticOptions::new(500, data)).unwrap();
    let base = without_spaces(&r.config);
    for (space, key) in [
        (
            "[tune.mmoe]\n\"train.lr\" = { log_uniform = [0.0, 0.1] }\n",
            "tune.mmoe.\"train.lr\"",
        ),
        (
            "[tune.mmoe]\n\"data.sources\" = [[\"x\"]]\n",
            "tune.mmoe.\"data.sources\"",
        ),
        ("[tune.nope]\n\"train.lr\" = [0.1]\n", "tune.nope"),
        ("[tune.mmoe]\n\"train.lr\" = []\n", "tune.mmoe.\"train.lr\""),
    ] {
        let p = tmp.path().join("c.toml");
        std::fs::write(&p, format!("{base}\n{space}")).unwrap();
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(e.contains(key), "{space}: {e}");
    }
}
