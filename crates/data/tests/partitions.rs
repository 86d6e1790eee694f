//! Sources as globs over hive-style partition folders (`logs/date=…/part-*.csv`): the
//! files matched in path order, partition values as columns, and a split whose `where`
//! fixes a partition column opening only its files.

use mfh_config::Config;
use mfh_data::{hash_value, Batch, Pipeline, StreamOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

const HEADER: &str = "uid,clicked\n";

/// `logs/date=D/part-K.csv` (part-1 gzip-compressed), plus the files a writer leaves
/// beside them (`_SUCCESS`, a hidden checksum) that the glob must skip.
fn write_logs(dir: &Path, days: &[(&str, &[&[&str]])]) {
    for (day, parts) in days {
        let folder = dir.join(format!("logs/date={day}"));
        std::fs::create_dir_all(&folder).unwrap();
        for (k, rows) in parts.iter().enumerate() {
            let mut text = HEADER.to_string();
            for r in rows.iter() {
                text.push_str(r);
                text.push('\n');
            }
            let path = folder.join(format!("part-{k}.csv"));
            if k == 1 {
                let f = std::fs::File::create(&path).unwrap();
                let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
                gz.write_all(text.as_bytes()).unwrap();
                gz.finish().unwrap();
            } else {
                std::fs::write(&path, text).unwrap();
            }
        }
        std::fs::write(folder.join("_SUCCESS"), "").unwrap();
        std::fs::write(folder.join(".part-0.csv.crc"), "junk,not,csv\n").unwrap();
    }
}

fn config(dir: &Path, sources: &str, partitions: &str, splits: &str) -> Config {
    let first = splits.split_once(" =").expect("a split").0;
    let text = format!(
        r#"
[train]
train_split = "{first}"
valid_split = "{first}"
[data]
sources = {sources}
partitions = {partitions}
[splits]
{splits}
[[features]]
type = "categorical"
name = "uid"
dim = 4
[[features]]
type = "categorical"
name = "date"
dim = 4
[[features]]
type = "numeric"
name = "day_number"
column = "date"
[[behaviours]]
type = "binary"
name = "click"
column = "clicked"
"#
    );
    Config::from_toml_str(&text, Path::new("t.toml"), dir).unwrap()
}

const DAYS: &[(&str, &[&[&str]])] = &[
    ("20220428", &[&["u1,1", "u2,0"], &["u3,1"]]),
    ("20220429", &[&["u4,0"]]),
    ("20220430", &[&["u5,1", "u6,1"], &["u7,0"]]),
];

/// Every row of `split`: (uid hash, date hash, date as a number), and what the pass read.
fn rows(p: &Arc<Pipeline>, split: &str) -> (Vec<(u64, u64, f32)>, u64, u64) {
    let mut s = p.stream(split, StreamOptions::in_order(3)).unwrap();
    let mut out = Vec::new();
    for b in s.by_ref() {
        let b = b.unwrap();
        assert_eq!(b.single.len(), 2 * b.n);
        assert_eq!(b.dense.len(), b.n);
        for i in 0..b.n {
            out.push((b.single[2 * i], b.single[2 * i + 1], b.dense[i]));
        }
    }
    let stats = s.stats().expect("the pass ended").clone();
    (out, stats.files_read, stats.rows_read)
}

#[test]
fn partition_values_become_columns_and_splits_open_only_their_files() {
    let tmp = tempfile::tempdir().unwrap();
    write_logs(tmp.path(), DAYS);
    let cfg = config(
        tmp.path(),
        r#"["logs/date=*/part-*.csv"]"#,
        r#"{ date = "int" }"#,
        r#"train = { where = "date <= 20220429" }
test = { where = "date == \"20220430\"" }
all = { where = "clicked >= 0" }"#,
    );
    let p = Arc::new(Pipeline::new(&cfg).unwrap());
    assert_eq!(p.main_columns(), ["uid", "clicked", "date"]);
    assert_eq!(p.split_file_count("train").unwrap(), (3, 5));
    assert_eq!(p.split_file_count("test").unwrap(), (2, 5));
    assert_eq!(p.split_file_count("all").unwrap(), (5, 5));

    let h = |s: &str| hash_value(s.as_bytes());
    let (train, opened, read) = rows(&p, "train");
    assert_eq!(
        opened, 3,
        "train opens the two days' three files, not the 30th's"
    );
    assert_eq!(read, 4);
    let want: Vec<(u64, u64, f32)> = [
        ("u1", "20220428"),
        ("u2", "20220428"),
        ("u3", "20220428"),
        ("u4", "20220429"),
    ]
    .iter()
    .map(|(u, d)| (h(u), h(d), d.parse::<f32>().unwrap()))
    .collect();
    assert_eq!(train.len(), want.len());
    for (got, want) in train.iter().zip(&want) {
        assert_eq!(got.0, want.0);
        assert_eq!(
            got.1, want.1,
            "the date column's hash is its folder value's"
        );
        assert_eq!(got.2, want.2);
    }

    let (test, opened, _) = rows(&p, "test");
    assert_eq!(opened, 2);
    let uids: Vec<u64> = test.iter().map(|r| r.0).collect();
    assert_eq!(uids, [h("u5"), h("u6"), h("u7")]);

    // A clause on an ordinary column cannot prune: every file is opened, in path order.
    let (all, opened, read) = rows(&p, "all");
    assert_eq!((opened, read), (5, 7));
    let uids: Vec<u64> = all.iter().map(|r| r.0).collect();
    let want: Vec<u64> = ["u1", "u2", "u3", "u4", "u5", "u6", "u7"]
        .iter()
        .map(|u| h(u))
        .collect();
    assert_eq!(uids, want);

    // Ranks read a pruned split's files too: their stripes make the stream's batches.
    let want: Vec<Batch> = p
        .stream("train", StreamOptions::in_order(3))
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    let mut ranks: Vec<_> = (0..2)
        .map(|r| {
            p.stream_striped("train", StreamOptions::in_order(3), r, 2)
                .unwrap()
        })
        .collect();
    for w in &want {
        let mut got = w.empty_like();
        for s in ranks.iter_mut() {
            let stripe = s.next().expect("a stripe per batch").unwrap();
            let mine: Vec<usize> = (0..stripe.batch.n).collect();
            got.extend_from(&stripe.batch, &mine);
        }
        assert_eq!(&got, w);
    }
    for s in ranks.iter_mut() {
        assert!(s.next().is_none());
        assert_eq!(s.stats().map(|st| st.files_read), Some(3));
    }

    // A glob over every file of the folders leaves out `_SUCCESS` and hidden files.
    let everything = config(
        tmp.path(),
        r#"["logs/**/*"]"#,
        r#"{ date = "int" }"#,
        r#"train = { where = "clicked >= 0" }"#,
    );
    let p = Pipeline::new(&everything).unwrap();
    assert_eq!(p.split_file_count("train").unwrap(), (5, 5));
}

#[test]
fn pruned_and_unpruned_passes_give_the_same_rows() {
    // The same split over the partition column and over a copy of it in the files: the
    // pruned pass must keep exactly the rows the row-by-row test keeps.
    let tmp = tempfile::tempdir().unwrap();
    let days: Vec<(String, Vec<Vec<String>>)> = (0..6)
        .map(|d| {
            let parts = (0..2)
                .map(|k| {
                    (0..3)
                        .map(|r| format!("u{d}{k}{r},{}", (d + k + r) % 2))
                        .collect()
                })
                .collect();
            (format!("2022050{d}"), parts)
        })
        .collect();
    for (day, parts) in &days {
        let folder = tmp.path().join(format!("logs/date={day}"));
        std::fs::create_dir_all(&folder).unwrap();
        for (k, rows) in parts.iter().enumerate() {
            let mut text = "uid,clicked,day\n".to_string();
            for r in rows {
                text.push_str(&format!("{r},{day}\n"));
            }
            std::fs::write(folder.join(format!("part-{k}.csv")), text).unwrap();
        }
    }
    for (op, value) in [
        (">=", 20220503),
        ("<", 20220502),
        ("==", 20220504),
        ("!=", 20220500),
    ] {
        let splits = format!(
            "pruned = {{ where = \"date {op} {value}\" }}\nscanned = {{ where = \"day {op} {value}\" }}"
        );
        let cfg = config(
            tmp.path(),
            r#"["logs/*/part-?.csv"]"#,
            r#"{ date = "int" }"#,
            &splits,
        );
        let p = Arc::new(Pipeline::new(&cfg).unwrap());
        let (pruned, opened, _) = rows(&p, "pruned");
        let (scanned, all, _) = rows(&p, "scanned");
        assert_eq!(all, 12);
        let days_kept = (0..6)
            .filter(|d| {
                let v = 20220500 + d;
                match op {
                    ">=" => v >= value,
                    "<" => v < value,
                    "==" => v == value,
                    _ => v != value,
                }
            })
            .count() as u64;
        assert_eq!(opened, 2 * days_kept, "date {op} {value}");
        assert_eq!(pruned, scanned, "date {op} {value}");
    }
}

#[test]
fn bad_layouts_are_errors_naming_the_file_or_key() {
    let tmp = tempfile::tempdir().unwrap();
    write_logs(tmp.path(), DAYS);
    let err = |sources: &str, partitions: &str| {
        let cfg = config(
            tmp.path(),
            sources,
            partitions,
            r#"train = { where = "clicked >= 0" }"#,
        );
        match Pipeline::new(&cfg) {
            Ok(_) => panic!("{sources} with {partitions} opened"),
            Err(e) => e.to_string(),
        }
    };
    let e = err(r#"["logs/date=*/nothing-*.csv"]"#, "{}");
    assert!(
        e.contains("data.sources[0]") && e.contains("matches no file"),
        "{e}"
    );
    let e = err(
        r#"["logs/date=*/part-*.csv", "logs/date=20220429/part-0.csv"]"#,
        "{}",
    );
    assert!(
        e.contains("data.sources[1]") && e.contains("listed twice"),
        "{e}"
    );
    let e = err(
        r#"["logs/date=*/part-*.csv"]"#,
        r#"{ date = "int", hour = "int" }"#,
    );
    assert!(
        e.contains("no `hour=…` folder") && e.contains("part-0.csv"),
        "{e}"
    );
    // A partition named after a file column but with no folder fails on the folder (the
    // name clash itself is tested below, with a `uid=` folder).
    let e = err(
        r#"["logs/date=*/part-*.csv"]"#,
        r#"{ uid = "string", date = "int" }"#,
    );
    assert!(e.contains("no `uid=…` folder"), "{e}");

    std::fs::create_dir_all(tmp.path().join("bad/date=2022-05-01")).unwrap();
    std::fs::write(
        tmp.path().join("bad/date=2022-05-01/part-0.csv"),
        "uid,clicked\nu,1\n",
    )
    .unwrap();
    let e = err(r#"["bad/*/*.csv"]"#, r#"{ date = "int" }"#);
    assert!(e.contains("`2022-05-01` is not a whole number"), "{e}");
    assert!(e.contains("date=2022-05-01"), "{e}");

    std::fs::create_dir_all(tmp.path().join("dup/uid=x")).unwrap();
    std::fs::write(
        tmp.path().join("dup/uid=x/part-0.csv"),
        "uid,clicked\nu,1\n",
    )
    .unwrap();
    let cfg = Config::from_toml_str(
        r#"
[train]
valid_split = "train"
[data]
sources = ["dup/*/*.csv"]
partitions = { uid = "string" }
[splits]
train = { where = "clicked >= 0" }
[[features]]
type = "categorical"
name = "uid"
dim = 4
[[behaviours]]
type = "binary"
name = "click"
column = "clicked"
"#,
        Path::new("t.toml"),
        tmp.path(),
    )
    .unwrap();
    let e = Pipeline::new(&cfg)
        .err()
        .expect("a clash opened")
        .to_string();
    assert!(e.contains("also a partition"), "{e}");
}
