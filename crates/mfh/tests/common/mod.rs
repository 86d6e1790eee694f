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
