//! The hostile-input corpus (tests/corpus, described case by case in its README.md): each
//! accepted case trains, each rejected case exits non-zero with a message naming the file,
//! line and column (or the config key), and nothing panics. Cases already covered by
//! errors.rs are listed in the README and not repeated here.

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus")
}

/// base.toml with its main file, side table and other text replaced; paths point into
/// the corpus (or at `data` itself when it is absolute). Returns the config's path.
fn variant(dir: &Path, name: &str, data: &str, side: &str, edits: &[(&str, &str)]) -> PathBuf {
    let abs = |f: &str| {
        let p = Path::new(f);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            corpus().join(f)
        }
    };
    let mut text = std::fs::read_to_string(corpus().join("base.toml")).unwrap();
    text = text
        .replace(
            "sources = [\"good.csv\"]",
            &format!("sources = [{:?}]", s(&abs(data))),
        )
        .replace(
            "path = \"users.csv\"",
            &format!("path = {:?}", s(&abs(side))),
        );
    for (from, to) in edits {
        assert!(text.contains(from), "base.toml has no `{from}`");
        text = text.replace(from, to);
    }
    let c = dir.join(format!("{name}.toml"));
    std::fs::write(&c, text).unwrap();
    c
}

fn train(c: &Path, out: &Path) -> Out {
    mfh(&["train", "--config", s(c), "--out", s(out), "--quiet"])
}

#[test]
fn bom_and_crlf_train_the_same_model_as_the_plain_file() {
    let tmp = tempfile::tempdir().unwrap();
    let mut models = Vec::new();
    for data in ["good.csv", "bom.csv", "crlf.csv"] {
        let c = variant(tmp.path(), data, data, "users.csv", &[]);
        let out = tmp.path().join(data);
        let o = train(&c, &out);
        assert_eq!(o.code, 0, "{data}: {}", o.stderr);
        assert!(o.stderr.contains("on 40 rows"), "{data}: {}", o.stderr);
        models.push((
            std::fs::read(out.join("metrics.json")).unwrap(),
            std::fs::read(out.join("dense.bin")).unwrap(),
        ));
    }
    assert!(models[1] == models[0], "the BOM changed the model");
    assert!(models[2] == models[0], "CRLF changed the model");
}

#[test]
fn missing_values_and_a_long_id_train() {
    let tmp = tempfile::tempdir().unwrap();
    for (data, side) in [
        ("missing.csv", "users_missing.csv"),
        ("long_id.csv", "users.csv"),
    ] {
        let c = variant(tmp.path(), data, data, side, &[]);
        let o = ok(&["check", "--config", s(&c), "--count"]);
        assert!(
            o.stdout.contains("split train: day <= 2: 40 rows")
                && o.stdout.contains("split valid: day == 3: 20 rows"),
            "{data}: {}",
            o.stdout
        );
        let o = train(&c, &tmp.path().join(data));
        assert_eq!(o.code, 0, "{data}: {}", o.stderr);
    }
}

#[test]
fn an_empty_evaluation_split_is_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let c = variant(
        tmp.path(),
        "empty_valid",
        "good.csv",
        "users.csv",
        &[("threads = 1", "threads = 1\nvalid_split = \"empty\"")],
    );
    let o = train(&c, &tmp.path().join("m"));
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stderr.contains("warning: the selection split is empty"),
        "{}",
        o.stderr
    );
    let o = ok(&[
        "eval",
        "--model-dir",
        s(&tmp.path().join("m")),
        "--split",
        "empty",
    ]);
    assert!(
        o.stderr.contains("warning: split `empty` is empty"),
        "{}",
        o.stderr
    );
}

#[test]
fn skip_mode_skips_bad_rows_and_counts_them_by_reason() {
    let tmp = tempfile::tempdir().unwrap();
    // On fail, the first bad row stops the run.
    let c = variant(tmp.path(), "fail", "missing_side_key.csv", "users.csv", &[]);
    let e = train(&c, &tmp.path().join("m")).stderr;
    assert!(
        e.contains("missing_side_key.csv:6:1") && e.contains("`u9` has no row in side table"),
        "{e}"
    );
    // On skip, one bad row of each kind in the train split: 40 − 5 rows train.
    let c = variant(
        tmp.path(),
        "skip",
        "bad_rows.csv",
        "users.csv",
        &[("sources =", "on_error = \"skip\"\nsources =")],
    );
    let o = train(&c, &tmp.path().join("m"));
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("on 35 rows"), "{}", o.stderr);
    for (reason, at) in [
        ("wrong column count", "bad_rows.csv:3:"),
        ("missing side-table key", "bad_rows.csv:6:1"),
        ("not a number", "bad_rows.csv:8:4"),
        ("invalid UTF-8", "bad_rows.csv:9:2"),
        ("not a finite number", "bad_rows.csv:12:4"),
    ] {
        let line = o
            .stderr
            .lines()
            .find(|l| l.contains(at))
            .unwrap_or_else(|| panic!("no skip report line for {at}:\n{}", o.stderr));
        assert!(
            line.contains(&format!("1 rows skipped: {reason} (first: ")),
            "{reason}: {line}"
        );
    }
}

/// A rejected case: its variant of base.toml, the commands that must refuse it, and what
/// the message must name.
struct Rejected {
    name: &'static str,
    data: &'static str,
    side: &'static str,
    edits: &'static [(&'static str, &'static str)],
    /// `check` (with --count) and/or `train`.
    commands: &'static [&'static str],
    names: &'static [&'static str],
}

const REJECTED: &[Rejected] = &[
    Rejected {
        name: "plus_inf",
        data: "plus_inf.csv",
        side: "users.csv",
        edits: &[],
        commands: &["check", "train"],
        names: &["plus_inf.csv:3:4", "`+inf` is not a finite number", "price"],
    },
    Rejected {
        name: "empty_join_key",
        data: "empty_key.csv",
        side: "users.csv",
        edits: &[],
        commands: &["check", "train"],
        names: &[
            "empty_key.csv:4:1",
            "the key is missing (cell ``); joining side table `user` needs one",
            "uid",
        ],
    },
    Rejected {
        name: "empty_side_key",
        data: "good.csv",
        side: "users_empty_key.csv",
        edits: &[],
        commands: &["check", "train"],
        names: &["users_empty_key.csv:7:1", "empty key", "uid"],
    },
    Rejected {
        name: "duplicate_side_key",
        data: "good.csv",
        side: "users_dup.csv",
        edits: &[],
        commands: &["check", "train"],
        names: &["users_dup.csv:7:1", "`u3`", "duplicated (first on line 5)"],
    },
    Rejected {
        name: "invalid_utf8",
        data: "invalid_utf8.csv",
        side: "users.csv",
        edits: &[],
        commands: &["check", "train"],
        names: &["invalid_utf8.csv:3:2", "not valid UTF-8", "item"],
    },
    Rejected {
        name: "invalid_utf8_header",
        data: "invalid_utf8_header.csv",
        side: "users.csv",
        edits: &[],
        commands: &["check", "train"],
        names: &["invalid_utf8_header.csv:1:4", "header is not valid UTF-8"],
    },
    Rejected {
        name: "duplicate_header",
        data: "dup_header.csv",
        side: "users.csv",
        edits: &[],
        commands: &["check", "train"],
        names: &["dup_header.csv:1:6", "`item` appears twice"],
    },
    Rejected {
        name: "empty_file",
        data: "empty.csv",
        side: "users.csv",
        edits: &[],
        commands: &["check", "train"],
        names: &["empty.csv", "the file is empty"],
    },
    Rejected {
        name: "header_only",
        data: "header_only.csv",
        side: "users.csv",
        edits: &[],
        commands: &["train"],
        names: &["train split `train` is empty"],
    },
    Rejected {
        name: "unclosed_quote",
        data: "unclosed_quote.csv",
        side: "users.csv",
        edits: &[],
        commands: &["check", "train"],
        names: &["unclosed_quote.csv:3:", "cells, the header has 5"],
    },
    Rejected {
        name: "huge_numeric_value",
        data: "GENERATED",
        side: "users.csv",
        edits: &[],
        commands: &["check", "train"],
        names: &["huge.csv:3:4", "(1000000 bytes)", "not a finite number"],
    },
    Rejected {
        name: "facet_over_missing_column",
        data: "good.csv",
        side: "users.csv",
        edits: &[("column = \"age\"\nthresholds", "column = \"agee\"\nthresholds")],
        commands: &["check", "train"],
        names: &["facet_over_missing_column.toml", "key `facets[0].column`", "agee"],
    },
    Rejected {
        name: "overlapping_thresholds",
        data: "good.csv",
        side: "users.csv",
        edits: &[(
            "thresholds = [21]\nnames = [\"young\", \"old\"]",
            "thresholds = [22, 21]\nnames = [\"young\", \"mid\", \"old\"]",
        )],
        commands: &["check", "train"],
        names: &["overlapping_thresholds.toml", "key `facets[0].thresholds`"],
    },
    Rejected {
        name: "overlapping_groups",
        data: "good.csv",
        side: "users.csv",
        edits: &[(
            "column = \"age\"\nthresholds = [21]\nnames = [\"young\", \"old\"]",
            "column = \"segment\"\ngroups = [{ name = \"x\", values = [\"a\", \"b\"] }, { name = \"y\", values = [\"b\"] }]",
        )],
        commands: &["check", "train"],
        names: &["overlapping_groups.toml", "key `facets[0].groups`", "`b`"],
    },
];

#[test]
fn rejected_cases_name_file_line_column_or_key() {
    let tmp = tempfile::tempdir().unwrap();
    // A 1 MB value is too big to keep in the repository: made here.
    let huge = tmp.path().join("huge.csv");
    let good = std::fs::read_to_string(corpus().join("good.csv")).unwrap();
    let one_mb = "1".repeat(1_000_000);
    std::fs::write(&huge, good.replacen(",1.5,", &format!(",{one_mb},"), 1)).unwrap();
    let mut failures = Vec::new();
    for case in REJECTED {
        let data = if case.data == "GENERATED" {
            s(&huge)
        } else {
            case.data
        };
        let c = variant(tmp.path(), case.name, data, case.side, case.edits);
        for cmd in case.commands {
            let o = match *cmd {
                "check" => mfh(&["check", "--config", s(&c), "--count"]),
                _ => train(&c, &tmp.path().join(case.name)),
            };
            let missing: Vec<_> = case
                .names
                .iter()
                .filter(|n| !o.stderr.contains(*n))
                .collect();
            if o.code == 0 || !missing.is_empty() || o.stderr.len() > 2000 {
                failures.push(format!(
                    "{} ({cmd}): exit {}, missing {missing:?}:\n{}",
                    case.name,
                    o.code,
                    &o.stderr[..o.stderr.len().min(2000)]
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
