//! Fuzz harnesses: each module turns arbitrary bytes into the files one loader reads, runs
//! that loader through its public API and returns `Ok` or the loader's error message. A
//! panic, an abort or a huge allocation is the bug being hunted; the fuzz targets under
//! `fuzz_targets/` call these, and the workspace's regression tests include the same files
//! (`#[path]`) to replay the inputs kept under `tests/fuzz-regressions/`.

pub mod config_loader;
pub mod embedding_file;
pub mod model_dir;
pub mod replay;
pub mod row_parser;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A per-process scratch folder for the files a harness writes (under `$TMPDIR`; the run
/// script points that at `/dev/shm`), so that parallel fuzz jobs never share one.
pub fn scratch(target: &str) -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("mfh-fuzz-{target}-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("scratch folder");
        d
    })
}
