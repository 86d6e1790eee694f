//! Bad input: every case exits non-zero with a message naming the config key or the
//! file:line:column, and never panics. `on_error = "skip"` counts and reports skips.

mod common;
use common::*;
use std::path::Path;

const LOG: &str = "uid,item,day,price,clicked\n\
u1,i1,1,3.5,1\n\
u2,i2,1,2.0,0\n\
u1,i3,2,1.0,1\n\
u3,i1,2,4.0,0\n\
u2,i2,3,2.5,1\n\
u3,i3,3,0.5,0\n";

/// The shared tiny config, one epoch.
fn config(log: &str, extra: &str) -> String {
    tiny_config(log, extra, "epochs = 1")
}

fn setup(dir: &Path, log: &str, extra: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("log.csv"), log).unwrap();
    let c = dir.join("c.toml");
    std::fs::write(&c, config("log.csv", extra)).unwrap();
    c
}

fn train_err(log: &str, extra: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let c = setup(tmp.path(), log, extra);
    let out = tmp.path().join("m");
    fails(&["train", "--config", s(&c), "--out", s(&out), "--quiet"]).stderr
}

#[test]
fn a_good_tiny_config_trains() {
    let tmp = tempfile::tempdir().unwrap();
    let c = setup(tmp.path(), LOG, "");
    let out = tmp.path().join("m");
    ok(&["train", "--config", s(&c), "--out", s(&out), "--quiet"]);
    assert!(out.join("model.json").is_file());
}

#[test]
fn non_numeric_cell_names_file_line_column() {
    let e = train_err(&LOG.replace("u1,i3,2,1.0,1", "u1,i3,2,abc,1"), "");
    assert!(
        e.contains("log.csv:4:4") && e.contains("price") && e.contains("abc"),
        "{e}"
    );
}

#[test]
fn nan_and_inf_are_refused_where_a_number_is_required() {
    let e = train_err(&LOG.replace("u1,i3,2,1.0,1", "u1,i3,2,NaN,1"), "");
    assert!(e.contains("log.csv:4:4") && e.contains("finite"), "{e}");
    let e = train_err(&LOG.replace("u1,i3,2,1.0,1", "u1,i3,2,-inf,1"), "");
    assert!(e.contains("log.csv:4:4"), "{e}");
}

#[test]
fn wrong_column_count_names_the_line() {
    let e = train_err(&LOG.replace("u2,i2,1,2.0,0", "u2,i2,1,2.0"), "");
    assert!(e.contains("log.csv:3:") && e.contains("4 cells"), "{e}");
}

#[test]
fn bad_label_names_the_column() {
    let e = train_err(&LOG.replace("u3,i1,2,4.0,0", "u3,i1,2,4.0,7"), "");
    assert!(e.contains("log.csv:5:5") && e.contains("clicked"), "{e}");
}

#[test]
fn skip_mode_counts_and_reports_bad_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let log = LOG.replace("u1,i3,2,1.0,1", "u1,i3,2,abc,1") + "u4,i4,2,1.0,1,9\n";
    let c = setup(tmp.path(), &log, "on_error = \"skip\"");
    let out = tmp.path().join("m");
    let o = ok(&["train", "--config", s(&c), "--out", s(&out), "--quiet"]);
    assert!(
        o.stderr.contains("not a number") && o.stderr.contains("wrong column count"),
        "{}",
        o.stderr
    );
}

#[test]
fn unknown_config_key_is_named() {
    let e = train_err(LOG, "gauc_colum = \"uid\"");
    assert!(e.contains("gauc_colum") && e.contains("c.toml"), "{e}");
}

#[test]
fn wrong_type_is_named() {
    let e = train_err(LOG, "on_error = 3");
    assert!(e.contains("on_error"), "{e}");
}

#[test]
fn feature_over_missing_column_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let c = setup(tmp.path(), LOG, "");
    let text = std::fs::read_to_string(&c)
        .unwrap()
        .replace("name = \"price\"", "name = \"cost\"");
    std::fs::write(&c, text).unwrap();
    let e = fails(&["check", "--config", s(&c)]).stderr;
    assert!(
        e.contains("features[1].column") && e.contains("cost"),
        "{e}"
    );
}

#[test]
fn empty_train_split_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let c = setup(tmp.path(), LOG, "");
    let text = std::fs::read_to_string(&c)
        .unwrap()
        .replace("day <= 2", "day <= 0");
    std::fs::write(&c, text).unwrap();
    let e = fails(&[
        "train",
        "--config",
        s(&c),
        "--out",
        s(&tmp.path().join("m")),
        "--quiet",
    ])
    .stderr;
    assert!(e.contains("train split") && e.contains("empty"), "{e}");
}

#[test]
fn behaviour_without_positives_is_an_error() {
    let log = LOG.replace(",1\n", ",0\n");
    let e = train_err(&log, "");
    assert!(e.contains("click") && e.contains("no positive"), "{e}");
}

#[test]
fn missing_file_and_directory_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let c = tmp.path().join("c.toml");
    std::fs::write(&c, config("nope.csv", "")).unwrap();
    let e = fails(&["check", "--config", s(&c)]).stderr;
    assert!(e.contains("nope.csv") && e.contains("cannot open"), "{e}");
    std::fs::create_dir(tmp.path().join("dir.csv")).unwrap();
    std::fs::write(&c, config("dir.csv", "")).unwrap();
    let e = fails(&["check", "--config", s(&c)]).stderr;
    assert!(e.contains("dir.csv") && e.contains("directory"), "{e}");
    let e = fails(&["check", "--config", s(&tmp.path().join("absent.toml"))]).stderr;
    assert!(e.contains("absent.toml"), "{e}");
}

#[test]
fn truncated_gzip_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    use std::io::Write;
    let big: String = std::iter::once("uid,item,day,price,clicked\n".to_string())
        .chain((0..5000).map(|i| format!("u{i},i{},{},{}.5,{}\n", i % 7, 1 + i % 3, i % 11, i % 2)))
        .collect();
    gz.write_all(big.as_bytes()).unwrap();
    let bytes = gz.finish().unwrap();
    std::fs::write(tmp.path().join("log.csv"), &bytes[..bytes.len() / 2]).unwrap();
    let c = tmp.path().join("c.toml");
    std::fs::write(&c, config("log.csv", "")).unwrap();
    let e = fails(&[
        "train",
        "--config",
        s(&c),
        "--out",
        s(&tmp.path().join("m")),
        "--quiet",
    ])
    .stderr;
    assert!(
        e.contains("log.csv") && e.contains("truncated or corrupt"),
        "{e}"
    );
}

#[test]
fn headerless_file_with_named_columns_and_missing_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let body: String = LOG
        .lines()
        .skip(1)
        .map(|l| format!("{}\n", l.replace(",", ";").replace("u2", "?")))
        .collect();
    std::fs::write(tmp.path().join("log.csv"), body).unwrap();
    let extra = "[data.csv]\nheader = false\ncolumns = [\"uid\", \"item\", \"day\", \"price\", \"clicked\"]\ndelimiter = \";\"\nmissing = [\"\", \"?\"]";
    let c = tmp.path().join("c.toml");
    std::fs::write(&c, config("log.csv", extra)).unwrap();
    let o = ok(&["check", "--config", s(&c), "--count"]);
    assert!(
        o.stdout.contains("split train: day <= 2: 4 rows"),
        "{}",
        o.stdout
    );
}

#[test]
fn eval_every_n_steps_evaluates_mid_epoch_and_keeps_training() {
    let tmp = tempfile::tempdir().unwrap();
    let c = setup(tmp.path(), LOG, "");
    let text = std::fs::read_to_string(&c).unwrap().replace("epochs = 1", "epochs = 2\neval_every = 1\nshuffle_buffer = 0\nearly_stopping = { metric = \"loss\", patience = 0 }");
    std::fs::write(&c, text).unwrap();
    let o = ok(&[
        "train",
        "--config",
        s(&c),
        "--out",
        s(&tmp.path().join("m")),
        "--quiet",
    ]);
    // 4 train rows, batch 2: 2 steps per epoch, an evaluation after each.
    for step in 1..=4 {
        assert!(
            o.stderr.contains(&format!("step {step}:")),
            "step {step}:\n{}",
            o.stderr
        );
    }
    assert!(o.stdout.contains("of 4"), "{}", o.stdout);
}

#[test]
fn same_seed_same_model_bit_for_bit_and_other_seed_differs() {
    let tmp = tempfile::tempdir().unwrap();
    let c = setup(tmp.path(), LOG, "");
    let run = |name: &str, seed: &str| {
        let out = tmp.path().join(name);
        ok(&[
            "train",
            "--config",
            s(&c),
            "--out",
            s(&out),
            "--quiet",
            "--seed",
            seed,
        ]);
        (
            std::fs::read(out.join("dense.bin")).unwrap(),
            std::fs::read(out.join("embeddings.bin")).unwrap(),
        )
    };
    let a = run("a", "7");
    assert_eq!(a, run("b", "7"));
    assert_ne!(a, run("c", "8"));
}

#[test]
fn corrupt_or_foreign_model_folders_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let c = setup(tmp.path(), LOG, "");
    let out = tmp.path().join("m");
    ok(&["train", "--config", s(&c), "--out", s(&out), "--quiet"]);
    let mut bytes = std::fs::read(out.join("dense.bin")).unwrap();
    let k = bytes.len() / 2;
    bytes[k] ^= 0x40;
    std::fs::write(out.join("dense.bin"), &bytes).unwrap();
    let e = fails(&["eval", "--model-dir", s(&out)]).stderr;
    assert!(e.contains("dense.bin") && e.contains("checksum"), "{e}");

    let meta = out.join("model.json");
    let text = std::fs::read_to_string(&meta)
        .unwrap()
        .replace("\"format_version\": 1", "\"format_version\": 99");
    std::fs::write(&meta, text).unwrap();
    let e = fails(&["inspect", "--model-dir", s(&out)]).stderr;
    assert!(e.contains("format version 99"), "{e}");

    let e = fails(&["eval", "--model-dir", s(tmp.path())]).stderr;
    assert!(e.contains("model.json"), "{e}");
}

#[test]
fn eval_with_another_schema_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let c = setup(tmp.path(), LOG, "");
    let out = tmp.path().join("m");
    ok(&["train", "--config", s(&c), "--out", s(&out), "--quiet"]);
    let other = tmp.path().join("other.toml");
    let text = std::fs::read_to_string(&c)
        .unwrap()
        .replace("dim = 4", "dim = 5");
    std::fs::write(&other, text).unwrap();
    let e = fails(&["eval", "--model-dir", s(&out), "--config", s(&other)]).stderr;
    assert!(e.contains("features differ"), "{e}");
}

/// The tiny config with a second behaviour, `buy`, that implies `clicked` on every row.
fn funnel_setup(dir: &Path) -> std::path::PathBuf {
    let mut log = String::from("uid,item,day,price,clicked,buy\n");
    for i in 0..60 {
        let click = (i % 3 != 0) as u8;
        let buy = click * (i % 2) as u8;
        let (u, it, day, p) = (i % 5, i % 4, 1 + i % 3, i % 7);
        log.push_str(&format!("u{u},i{it},{day},{p}.5,{click},{buy}\n"));
    }
    let c = setup(dir, &log, "");
    let text = std::fs::read_to_string(&c).unwrap()
        + "[[behaviours]]\ntype = \"binary\"\nname = \"buy\"\ncolumn = \"buy\"\n";
    std::fs::write(&c, text).unwrap();
    c
}

#[test]
fn esmm_funnel_and_uncertainty_weighting_train_and_reload() {
    let tmp = tempfile::tempdir().unwrap();
    let c = funnel_setup(tmp.path());
    let text = std::fs::read_to_string(&c).unwrap()
        + "[train.loss]\nreduction = \"task_mean\"\nuncertainty = true\n\
           [[train.loss.funnels]]\nkind = \"esmm\"\nfrom = \"click\"\nto = \"buy\"\n";
    std::fs::write(&c, text).unwrap();
    let out = tmp.path().join("m");
    ok(&["train", "--config", s(&c), "--out", s(&out), "--quiet"]);
    let e = ok(&["eval", "--model-dir", s(&out), "--json"]);
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    let again: serde_json::Value = serde_json::from_str(&e.stdout).unwrap();
    assert_eq!(
        saved, again,
        "the log-variances and funnel survive the model folder"
    );
}

#[test]
fn aitm_funnel_trains_and_reloads() {
    let tmp = tempfile::tempdir().unwrap();
    let c = funnel_setup(tmp.path());
    let text = std::fs::read_to_string(&c).unwrap()
        + "[[train.loss.funnels]]\nkind = \"aitm\"\nfrom = \"click\"\nto = \"buy\"\ncalibration = 0.5\n";
    std::fs::write(&c, text).unwrap();
    let out = tmp.path().join("m");
    ok(&["train", "--config", s(&c), "--out", s(&out), "--quiet"]);
    let i = ok(&["inspect", "--model-dir", s(&out)]);
    assert!(i.stdout.contains("AITM"), "{}", i.stdout);
    let e = ok(&["eval", "--model-dir", s(&out), "--json"]);
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    let again: serde_json::Value = serde_json::from_str(&e.stdout).unwrap();
    assert_eq!(saved, again);
}

/// The compare data (80 rows over 4 days) and config: a second model section `sb2`,
/// selection on split `v1` (day 3) and report on `v2` (day 4); returns the config path.
fn compare_setup(dir: &Path) -> std::path::PathBuf {
    let mut log = String::from("uid,item,day,price,clicked\n");
    for i in 0..80 {
        log.push_str(&format!(
            "u{},i{},{},{}.5,{}\n",
            i % 6,
            i % 5,
            1 + i % 4,
            i % 7,
            (i % 3 == 0) as u8
        ));
    }
    let c = setup(dir, &log, "");
    let text = std::fs::read_to_string(&c).unwrap().replace(
        "valid = { where = \"day == 3\" }",
        "valid = { where = \"day >= 3\" }\nv1 = { where = \"day == 3\" }\nv2 = { where = \"day == 4\" }",
    ) + "[models.sb2]\ntype = \"single\"\ntower = [4]\n[compare]\nselect = \"v1\"\nreport = \"v2\"\n";
    std::fs::write(&c, text).unwrap();
    c
}

#[test]
fn compare_writes_tables_and_resumes_finished_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let c = compare_setup(tmp.path());
    let out = tmp.path().join("cmp");
    let args = [
        "compare",
        "--config",
        s(&c),
        "--models",
        "sb,sb2",
        "--seeds",
        "2",
        "--out",
        s(&out),
        "--quiet",
    ];
    let o = ok(&args);
    let table = std::fs::read_to_string(out.join("table.md")).unwrap();
    assert!(
        table.contains("selected on split `v1` and reported on split `v2`"),
        "{table}"
    );
    assert!(
        table.contains("| sb | shared_bottom |") && table.contains("| sb2 | single |"),
        "{table}"
    );
    assert!(o.stdout.contains("auc: click"));
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let seeds: std::collections::BTreeSet<u64> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seed"].as_u64().unwrap())
        .collect();
    assert_eq!(seeds.len(), 2);
    assert!(results
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["split"] == "v2"));
    // A second run finds every run finished and only rewrites the reports, now with a
    // peer script's results as a row of its own.
    std::fs::create_dir_all(out.join("peers")).unwrap();
    std::fs::write(
        out.join("peers/gbdt.json"),
        r#"[{"model": "gbdt", "seed": 1, "split": "v2", "behaviour": "click", "cell": "all", "metric": "auc", "value": 0.61234, "n": 20, "positives": 7}]"#,
    )
    .unwrap();
    let mut with_tb = args.to_vec();
    with_tb.push("--tensorboard");
    let again = ok(&with_tb);
    // The runs are done (their live scalars were not asked for then): each gets its
    // segments' mean AUC.
    let events: Vec<_> = std::fs::read_dir(out.join("tensorboard/sb-seed42/segments"))
        .unwrap()
        .collect();
    assert_eq!(events.len(), 1, "one segments event file per run");
    let table = std::fs::read_to_string(out.join("table.md")).unwrap();
    assert!(
        table.contains("0.6123 ± 0.0000") && table.contains("| gbdt | peer script |"),
        "{table}"
    );
    assert_eq!(
        again.stderr.matches("already done").count(),
        4,
        "{}",
        again.stderr
    );
    // Same split for selection and report is refused.
    let text = std::fs::read_to_string(&c)
        .unwrap()
        .replace("report = \"v2\"", "report = \"v1\"");
    std::fs::write(&c, text).unwrap();
    let e = fails(&[
        "compare",
        "--config",
        s(&c),
        "--models",
        "sb",
        "--seeds",
        "1",
        "--out",
        s(&tmp.path().join("c2")),
        "--quiet",
    ])
    .stderr;
    assert!(e.contains("two different splits"), "{e}");
}

/// `MFH_KERNEL` naming no path, or a path this CPU lacks, stops every command with a
/// message saying what it may be; each path the CPU has trains the tiny config and says so.
#[test]
fn kernel_path_from_the_environment_is_checked_and_reported() {
    let run = |kernel: &str, args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_mfh"))
            .args(args)
            .env("MFH_KERNEL", kernel)
            .output()
            .expect("the mfh binary runs")
    };
    let o = run("sse9", &["bench", "sgemm", "--n", "8", "--repeats", "1"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        e.contains("MFH_KERNEL") && e.contains("sse9") && e.contains("avx2"),
        "{e}"
    );
    assert!(!e.contains("panicked"), "{e}");
    if !mfh_cpu::Path::Avx512.supported() {
        let o = run("avx512", &["bench", "sgemm", "--n", "8", "--repeats", "1"]);
        let e = String::from_utf8_lossy(&o.stderr);
        assert_ne!(o.status.code(), Some(0));
        assert!(e.contains("does not have avx512"), "{e}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let c = setup(tmp.path(), LOG, "");
    for p in mfh_cpu::supported() {
        let out = tmp.path().join(format!("m-{p}"));
        let o = run(p.name(), &["train", "--config", s(&c), "--out", s(&out)]);
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{p}: {e}");
        assert!(e.contains(&format!("kernel path {p}")), "{p}: {e}");
        println!("trained on kernel path {p}");
    }
}
