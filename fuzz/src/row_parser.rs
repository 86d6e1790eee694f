//! The row parser: bytes become a CSV source (plain or gzip) or its side table, read by the
//! data pipeline with a small fixed config (header, side-table join, categorical / multi /
//! numeric features, a binary label, a label expression, a facet and GAUC groups): open,
//! fit the train split, stream the rows with a day (all of a good file) to the end.
//!
//! Input: a flags byte, then the file's bytes.
//! - bit 0: gzip the file (else written as given; a body that starts 1f 8b is read as gzip)
//! - bit 1: prepend the main table's header, so that the body is decoded as rows
//! - bit 2: `on_error = "skip"` (else `"fail"`)
//! - bit 3: the body is the side table `users.csv` (its header prepended when bit 1 is set)
//!   and the main table is a fixed good file
//! - flags ≥ 0xfc (other bits ignored): the header and valid rows fill the main file up to
//!   just below the reader's 1 MiB chunk, so that the body straddles a chunk boundary;
//!   about 100× slower than the other modes, so a long run can turn it off with
//!   `MFH_FUZZ_NO_CHUNK_EDGE=1` (the flags then mean what the bits say)
//!
//! Properties beyond "no panic": every batch is well formed (lengths agree, multi offsets
//! ascend to the id count, cells index the grid) and every numeric input is finite.

use mfh_config::Config;
use mfh_data::{Batch, Pipeline, StreamOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

pub const HEADER: &str = "uid,day,tags,price,clicked,play,dur\n";
pub const USERS_HEADER: &str = "uid,tier,age\n";
const USERS_ROWS: &str = "u1,a,30\nu2,c,\nu3,\"b\",50\n";
const LOG_ROWS: &str =
    "u1,1,t1|t2,1.5,1,5,10\nu2,1,,,0,3,0\nu3,2,t2,2e1,1,30,10\nu1,3,t3,0,0,1,2\n";
const CHUNK: usize = 1 << 20;

fn config(skip: bool) -> String {
    let on_error = if skip { "skip" } else { "fail" };
    format!(
        r#"
[data]
sources = ["log.csv"]
gauc_column = "uid"
on_error = "{on_error}"
[[data.side_tables]]
name = "user"
path = "users.csv"
key = "uid"
[splits]
train = {{ where = "day <= 2" }}
valid = {{ where = "day >= 1 and user.tier != \"x\"" }}
[[features]]
type = "categorical"
name = "uid"
dim = 4
[[features]]
type = "multi"
name = "tags"
dim = 4
separator = "|"
[[features]]
type = "numeric"
name = "price"
transform = ["log1p", "standardize"]
[[features]]
type = "numeric"
name = "user.age"
transform = ["standardize"]
[[behaviours]]
type = "binary"
name = "click"
column = "clicked"
[[behaviours]]
type = "regression"
name = "ratio"
expr = "play / dur"
clip = [0.0, 2.0]
[[facets]]
name = "tier"
column = "user.tier"
groups = [{{ name = "gold", values = ["a", "b"] }}]
default = "rest"
"#
    )
}

/// The config for `dir`, parsed once per folder and `on_error` (parsing dominated the
/// cost of a run).
fn parsed_config(dir: &Path, skip: bool) -> Config {
    thread_local! {
        static CACHE: std::cell::RefCell<Vec<(std::path::PathBuf, bool, Config)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if let Some((_, _, cfg)) = c.iter().find(|(d, s, _)| d == dir && *s == skip) {
            return cfg.clone();
        }
        let cfg = Config::from_toml_str(&config(skip), &dir.join("fuzz.toml"), dir)
            .expect("the harness config is valid");
        c.push((dir.to_path_buf(), skip, cfg.clone()));
        cfg
    })
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).expect("in memory");
    enc.finish().expect("in memory")
}

/// The two files the flags and body describe: (log.csv, users.csv).
fn files(flags: u8, body: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let header = flags & 2 != 0;
    let mut body_file = Vec::with_capacity(body.len() + 64);
    if flags >= 0xfc && std::env::var_os("MFH_FUZZ_NO_CHUNK_EDGE").is_none() {
        body_file.extend_from_slice(HEADER.as_bytes());
        let row = b"u1,1,t1|t2,1.5,1,5,10\n";
        let target = CHUNK - 64 + (flags as usize & 3) * 9;
        while body_file.len() + row.len() <= target {
            body_file.extend_from_slice(row);
        }
        body_file.resize(target, b'\n');
        body_file.extend_from_slice(body);
        return (
            body_file,
            format!("{USERS_HEADER}{USERS_ROWS}").into_bytes(),
        );
    }
    if flags & 8 != 0 {
        if header {
            body_file.extend_from_slice(USERS_HEADER.as_bytes());
        }
        body_file.extend_from_slice(body);
        let log = format!("{HEADER}{LOG_ROWS}").into_bytes();
        return (log, body_file);
    }
    if header {
        body_file.extend_from_slice(HEADER.as_bytes());
    }
    body_file.extend_from_slice(body);
    let users = format!("{USERS_HEADER}{USERS_ROWS}").into_bytes();
    (body_file, users)
}

/// Writes the files for `data` into `dir` and reads them; `Err` is the reader's message.
pub fn run(dir: &Path, data: &[u8]) -> Result<(), String> {
    let Some((&flags, body)) = data.split_first() else {
        return Ok(());
    };
    let (mut log, mut users) = files(flags, body);
    if flags & 1 != 0 && flags < 0xfc {
        if flags & 8 != 0 {
            users = gzip(&users);
        } else {
            log = gzip(&log);
        }
    }
    std::fs::write(dir.join("log.csv"), &log).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("users.csv"), &users).map_err(|e| e.to_string())?;
    let cfg = parsed_config(dir, flags & 4 != 0);
    let n_cells = cfg.grid().n_cells();
    let mut p = Pipeline::new(&cfg).map_err(|e| e.to_string())?;
    p.fit("train").map_err(|e| e.to_string())?;
    let p = Arc::new(p);
    let (n_single, n_multi, n_dense) = {
        let l = p.layout();
        (l.single.len(), l.multi.len(), l.dense.len())
    };
    // `valid` holds every row with a day: decoded in full, in batches.
    let stream = p
        .stream("valid", StreamOptions::in_order(3))
        .map_err(|e| e.to_string())?;
    for b in stream {
        let b = b.map_err(|e| e.to_string())?;
        check_batch(&b, n_single, n_multi, n_dense, 2, n_cells);
    }
    Ok(())
}

fn check_batch(
    b: &Batch,
    n_single: usize,
    n_multi: usize,
    n_dense: usize,
    n_labels: usize,
    n_cells: usize,
) {
    let n = b.n;
    assert_eq!(b.single.len(), n * n_single, "single ids per row");
    assert_eq!(b.multi.len(), n_multi, "multi columns");
    for m in &b.multi {
        assert_eq!(m.offsets.len(), n + 1, "multi offsets");
        assert!(
            m.offsets.windows(2).all(|w| w[0] <= w[1]),
            "multi offsets ascend"
        );
        assert_eq!(
            *m.offsets.last().unwrap() as usize,
            m.ids.len(),
            "multi offsets end"
        );
    }
    assert_eq!(b.dense.len(), n * n_dense, "dense values per row");
    assert!(
        b.dense.iter().all(|x| x.is_finite()),
        "a numeric input is not finite: {:?}",
        b.dense
    );
    assert_eq!(b.labels.len(), n * n_labels, "labels per row");
    assert!(
        b.labels.iter().all(|x| x.is_nan() || x.is_finite()),
        "a label is infinite: {:?}",
        b.labels
    );
    assert_eq!(b.cells.len(), n, "cells per row");
    assert!(
        b.cells.iter().all(|&c| (c as usize) < n_cells),
        "cell out of range"
    );
    assert_eq!(b.groups.len(), n, "groups per row");
    assert_eq!(b.rows.len(), n, "row indices per row");
}
