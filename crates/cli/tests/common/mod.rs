//! Helpers for the command-line tests: run the real `mfh` binary and read its output.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn mfh(args: &[&str]) -> Out {
    let o = Command::new(env!("CARGO_BIN_EXE_mfh"))
        .args(args)
        .output()
        .expect("the mfh binary runs");
    let out = Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    };
    assert!(
        !out.stderr.contains("panicked"),
        "mfh {args:?} panicked:\n{}",
        out.stderr
    );
    out
}

pub fn ok(args: &[&str]) -> Out {
    let o = mfh(args);
    assert_eq!(
        o.code, 0,
        "mfh {args:?} failed:\n{}\n{}",
        o.stdout, o.stderr
    );
    o
}

pub fn fails(args: &[&str]) -> Out {
    let o = mfh(args);
    assert_ne!(
        o.code, 0,
        "mfh {args:?} should fail:\n{}\n{}",
        o.stdout, o.stderr
    );
    o
}

pub fn bundled_raw() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/kuairand-pure")
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Prepares the bundled slice into `tmp/data` (with `extra` logs) and applies `edits`
/// (pairs of text replacements) to its config; returns the config path.
pub fn prepared(
    tmp: &std::path::Path,
    extra: &[&std::path::Path],
    edits: &[(&str, &str)],
) -> std::path::PathBuf {
    let data = tmp.join("data");
    let raw = bundled_raw();
    let mut args = vec!["prepare", "kuairand", "--raw", s(&raw), "--out", s(&data)];
    for e in extra {
        args.push("--extra-log");
        args.push(s(e));
    }
    ok(&args);
    let cfg_path = data.join("kuairand.toml");
    let mut cfg = std::fs::read_to_string(&cfg_path).unwrap();
    for (from, to) in edits {
        assert!(
            cfg.contains(from),
            "the bundled config no longer has `{from}`"
        );
        cfg = cfg.replace(from, to);
    }
    std::fs::write(&cfg_path, cfg).unwrap();
    cfg_path
}

/// A tiny data set for fast whole-command tests: `n` rows over days 1–3 (train: days 1–2,
/// valid: day 3), a categorical, a numeric and a binary label.
pub fn tiny_log(n: usize) -> String {
    let mut s = String::from("uid,item,day,price,clicked\n");
    for i in 0..n {
        s.push_str(&format!(
            "u{},i{},{},{}.5,{}\n",
            i % 5,
            i % 7,
            1 + i % 3,
            i % 11,
            (i / 2) % 2
        ));
    }
    s
}

/// A config over `log` (a path relative to the config) with a small shared-bottom model;
/// `data_extra` goes into `[data]`, `train_extra` into `[train]` (epochs: the default, 3).
pub fn tiny_config(log: &str, data_extra: &str, train_extra: &str) -> String {
    format!(
        r#"
[data]
sources = ["{log}"]
{data_extra}
[splits]
train = {{ where = "day <= 2" }}
valid = {{ where = "day == 3" }}
[[features]]
type = "categorical"
name = "uid"
dim = 4
[[features]]
type = "numeric"
name = "price"
transform = ["log1p", "standardize"]
[[behaviours]]
type = "binary"
name = "click"
column = "clicked"
[models.sb]
type = "shared_bottom"
bottom = [8]
tower = [4]
[train]
batch_size = 2
threads = 1
{train_extra}
"#
    )
}
