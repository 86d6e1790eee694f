//! A log stored as hive-style partitions (`logs/day=N/part-0.csv`, the day only in the
//! folder names) through the whole command line: `mfh check` shows the files each split
//! opens, `mfh train` reads the partition column as a feature and publishes versions,
//! and `mfh predict --data` on one partition's file scores its rows as the split does.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::path::Path;

/// Row index → the click score, from a predictions CSV.
fn scores(path: &Path) -> BTreeMap<u64, f64> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let (row, pred) = (
        header.iter().position(|h| *h == "row").unwrap(),
        header.iter().position(|h| *h == "click_pred").unwrap(),
    );
    lines
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            (c[row].parse().unwrap(), c[pred].parse().unwrap())
        })
        .collect()
}

#[test]
fn partitioned_logs_check_train_publish_and_predict() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // tiny_log's rows, each in its day's folder without the day column.
    let log = tiny_log(90);
    let mut lines = log.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let day = header.iter().position(|h| *h == "day").unwrap();
    let strip = |cells: Vec<&str>| -> String {
        cells
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != day)
            .map(|(_, c)| *c)
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut days: BTreeMap<String, String> = BTreeMap::new();
    for l in lines {
        let cells: Vec<&str> = l.split(',').collect();
        let d = cells[day].to_string();
        let text = days
            .entry(d)
            .or_insert_with(|| strip(header.clone()) + "\n");
        text.push_str(&strip(cells));
        text.push('\n');
    }
    assert_eq!(days.len(), 3);
    for (d, text) in &days {
        let folder = dir.join(format!("logs/day={d}"));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("part-0.csv"), text).unwrap();
        std::fs::write(folder.join("_SUCCESS"), "").unwrap();
    }
    let cfg = tiny_config(
        "logs/day=*/part-*.csv",
        "partitions = { day = \"int\" }",
        "epochs = 1",
    )
    .replace(
        "[[behaviours]]",
        "[[features]]\ntype = \"categorical\"\nname = \"day\"\ndim = 2\n[[behaviours]]",
    );
    let cfg_path = dir.join("c.toml");
    std::fs::write(&cfg_path, cfg).unwrap();

    let o = ok(&["check", "--config", s(&cfg_path)]);
    assert!(
        o.stdout.contains(
            "3 source files; partition columns: day (int); `train` reads 2; `valid` reads 1"
        ),
        "{}",
        o.stdout
    );

    let (model, served) = (dir.join("model"), dir.join("served"));
    ok(&[
        "train",
        "--config",
        s(&cfg_path),
        "--model",
        "sb",
        "--out",
        s(&model),
        "--quiet",
        "--publish",
        s(&served),
        "--publish-every",
        "10",
        "--keep-versions",
        "2",
    ]);
    // 60 train rows in batches of 2: 30 steps; versions at 10, 20, 30, the newest two kept.
    let mut versions: Vec<String> = std::fs::read_dir(&served)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    versions.sort();
    assert_eq!(versions, ["2", "3"]);
    assert!(served.join("3/DONE").is_file() && served.join("3/model.json").is_file());

    // One partition's file scored alone takes its day from the folder, as training did.
    let (by_split, by_file) = (dir.join("split.csv"), dir.join("file.csv"));
    ok(&[
        "predict",
        "--model-dir",
        s(&model),
        "--config",
        s(&cfg_path),
        "--split",
        "valid",
        "--out",
        s(&by_split),
    ]);
    let day3 = dir.join("logs/day=3/part-0.csv");
    ok(&[
        "predict",
        "--model-dir",
        s(&model),
        "--data",
        s(&day3),
        "--out",
        s(&by_file),
    ]);
    let (a, b) = (scores(&by_split), scores(&by_file));
    assert_eq!(a.len(), 30);
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (r, x) in &a {
        assert!((x - b[r]).abs() < 1e-6, "row {r}: {x} against {}", b[r]);
    }
    // A file outside any `day=` folder lacks the partition column: a clear error.
    let loose = dir.join("loose.csv");
    std::fs::copy(&day3, &loose).unwrap();
    let e = fails(&[
        "predict",
        "--model-dir",
        s(&model),
        "--data",
        s(&loose),
        "--out",
        s(&dir.join("x.csv")),
    ]);
    assert!(e.stderr.contains("no `day=…` folder"), "{}", e.stderr);
}
