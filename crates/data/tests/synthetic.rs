//! `mfh prepare synthetic`: seeded runs reproduce, the config reads the data, and the
//! oracle AUC it reports is the AUC of the probabilities stored in the file.

use mfh_config::Config;
use mfh_data::synthetic::{prepare, SyntheticOptions};
use mfh_data::{Pipeline, StreamOptions};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

fn gunzip(p: &Path) -> String {
    let mut s = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(p).unwrap())
        .read_to_string(&mut s)
        .unwrap();
    s
}

/// `key → column` of a gzip CSV side table.
fn table(p: &Path, col: &str) -> HashMap<String, String> {
    let text = gunzip(p);
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    let j = head.iter().position(|c| *c == col).unwrap();
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_string(), f[j].to_string())
        })
        .collect()
}

#[test]
fn seeded_runs_reproduce_and_seeds_differ() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |name: &str, seed: u64| {
        let mut o = SyntheticOptions::new(2_000, tmp.path().join(name));
        o.seed = seed;
        let r = prepare(&o).unwrap();
        let files: Vec<String> = ["log.csv.gz", "users.csv.gz", "items.csv.gz"]
            .iter()
            .map(|f| gunzip(&o.out.join(f)))
            .collect();
        (r, files)
    };
    let (a, fa) = run("a", 7);
    let (b, fb) = run("b", 7);
    let (_, fc) = run("c", 8);
    assert_eq!(fa, fb);
    assert_eq!(
        (a.split_rows, a.positives, a.oracle_auc),
        (b.split_rows, b.positives, b.oracle_auc)
    );
    assert_ne!(fa[0], fc[0]);
    assert_eq!(fa[0].lines().count(), 2_001);
    assert_eq!(a.split_rows.iter().sum::<u64>(), 2_000);
    assert_eq!(a.cell_rows.iter().sum::<u64>(), 2_000);
    // No temporary file is left behind.
    let left: Vec<_> = std::fs::read_dir(tmp.path().join("a"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn the_oracle_auc_is_the_auc_of_the_stored_probabilities_and_the_config_reads_the_data() {
    let tmp = tempfile::tempdir().unwrap();
    let mut o = SyntheticOptions::new(20_000, tmp.path().join("s"));
    o.seed = 3;
    let r = prepare(&o).unwrap();
    let users = table(&o.out.join("users.csv.gz"), "user_group");
    let items = table(&o.out.join("items.csv.gz"), "item_group");
    assert_eq!(users.values().filter(|g| *g == "new").count(), r.new_users);
    assert_eq!(
        items.values().filter(|g| *g == "head").count(),
        r.head_items
    );
    // Recompute per cell from the file: test rows (part 2), labels and stored p.
    let log = gunzip(&o.out.join("log.csv.gz"));
    let mut per: Vec<Vec<(Vec<f32>, Vec<f32>)>> = vec![vec![Default::default(); 3]; 4];
    let mut new_rows = 0u64;
    for line in log.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 9, "{line}");
        let new = users[f[0]] == "new";
        new_rows += new as u64;
        if f[2] != "2" {
            continue;
        }
        let cell = if new { 0 } else { 2 } + if items[f[1]] == "tail" { 0 } else { 1 };
        for k in 0..3 {
            per[cell][k].0.push(f[6 + k].parse().unwrap());
            per[cell][k].1.push(f[3 + k].parse().unwrap());
        }
    }
    for (c, cell) in per.iter().enumerate() {
        for (k, (p, y)) in cell.iter().enumerate() {
            let want = mfh_metrics::auc(p, y);
            assert_eq!(r.oracle_auc[c][k], want, "cell {c} behaviour {k}");
            assert!(want.is_some(), "cell {c} behaviour {k}: no AUC");
        }
    }
    // New users write about `new_user_share` of the rows.
    let share = new_rows as f64 / r.rows as f64;
    assert!((share - 0.1).abs() < 0.02, "new users' share {share}");
    // The config reads the data: every split, with the facets from the side tables.
    let cfg = Config::load(&r.config).unwrap();
    let mut p = Pipeline::new(&cfg).unwrap();
    p.fit("train").unwrap();
    let p = Arc::new(p);
    for (split, want) in ["train", "valid", "test"].iter().zip(r.split_rows) {
        let (mut n, mut cells) = (0u64, [0u64; 4]);
        for b in p.stream(split, StreamOptions::in_order(4096)).unwrap() {
            let b = b.unwrap();
            n += b.n as u64;
            for &c in &b.cells {
                cells[c as usize] += 1;
            }
        }
        assert_eq!(n, want, "{split}");
        if *split == "test" {
            let counted: Vec<u64> = per.iter().map(|c| c[0].0.len() as u64).collect();
            assert_eq!(cells.to_vec(), counted);
        }
    }
}

#[test]
fn bad_knobs_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let mut o = SyntheticOptions::new(1_000, tmp.path().join("s"));
    o.new_user_share = 1.0;
    let e = prepare(&o).unwrap_err().to_string();
    assert!(e.contains("--new-user-share"), "{e}");
    let mut o = SyntheticOptions::new(10, tmp.path().join("s"));
    o.seed = 1;
    assert!(prepare(&o).unwrap_err().to_string().contains("--rows"));
    let mut o = SyntheticOptions::new(1_000, tmp.path().join("s"));
    o.facet_strength = f64::NAN;
    assert!(prepare(&o)
        .unwrap_err()
        .to_string()
        .contains("--facet-strength"));
}
