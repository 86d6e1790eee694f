//! The inputs the model-folder and embedding-file fuzzers found (kept under
//! `tests/fuzz-regressions/`), replayed through the fuzz harnesses themselves (included from
//! `fuzz/src/` by path): each must give its expected outcome and never panic.

#[allow(dead_code)]
#[path = "../../../fuzz/src/embedding_file.rs"]
mod embedding_file;
#[allow(dead_code)]
#[path = "../../../fuzz/src/model_dir.rs"]
mod model_dir;
#[allow(dead_code)]
#[path = "../../../fuzz/src/replay.rs"]
mod replay;

use std::path::Path;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[test]
fn model_dir_regressions() {
    assert!(replay::replay(root(), "model_dir", model_dir::run) > 0);
}

#[test]
fn embedding_file_regressions() {
    assert!(replay::replay(root(), "embedding_file", embedding_file::run) > 0);
}
