//! Replays the inputs kept under `tests/fuzz-regressions/TARGET/` through a harness: a file
//! named `*.err` must be rejected with an error, `*.ok` accepted, and neither may panic.
//! Used by the workspace's `fuzz_regressions` tests (which include this file by path).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// Runs every kept input of `target` (under `root/tests/fuzz-regressions`) and panics
/// with the list of those that panicked or had the wrong outcome; returns how many ran.
pub fn replay(
    root: &Path,
    target: &str,
    run: impl Fn(&Path, &[u8]) -> Result<(), String>,
) -> usize {
    let dir = root.join("tests/fuzz-regressions").join(target);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a folder entry").path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("ok" | "err")))
        .collect();
    paths.sort();
    let mut failures = Vec::new();
    for path in &paths {
        let data = std::fs::read(path).expect("a kept input reads");
        let scratch = tempfile::tempdir().expect("a temp folder");
        let want_ok = path.extension().is_some_and(|e| e == "ok");
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        match catch_unwind(AssertUnwindSafe(|| run(scratch.path(), &data))) {
            Err(_) => failures.push(format!("{name}: panicked")),
            Ok(Ok(())) if !want_ok => failures.push(format!("{name}: accepted, expected an error")),
            Ok(Err(e)) if want_ok => failures.push(format!("{name}: rejected: {e}")),
            Ok(_) => {}
        }
    }
    assert!(failures.is_empty(), "{target}:\n{}", failures.join("\n"));
    paths.len()
}
