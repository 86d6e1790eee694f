//! The inputs the row-parser and config-loader fuzzers found (kept under
//! `tests/fuzz-regressions/`), replayed through the fuzz harnesses themselves (included from
//! `fuzz/src/` by path): each must give its expected outcome and never panic.

#[allow(dead_code)]
#[path = "../../../fuzz/src/config_loader.rs"]
mod config_loader;
#[allow(dead_code)]
#[path = "../../../fuzz/src/replay.rs"]
mod replay;
#[allow(dead_code)]
#[path = "../../../fuzz/src/row_parser.rs"]
mod row_parser;

use std::path::Path;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[test]
fn row_parser_regressions() {
    assert!(replay::replay(root(), "row_parser", row_parser::run) > 0);
}

#[test]
fn config_loader_regressions() {
    assert!(replay::replay(root(), "config_loader", config_loader::run) > 0);
}
